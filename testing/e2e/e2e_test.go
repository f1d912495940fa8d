package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// report is the part of `vmledger verify --json` (client.Report) the tests
// read.
type report struct {
	OK     bool `json:"ok"`
	Checks []struct {
		Check  string `json:"check"`
		Status string `json:"status"`
		Detail string `json:"detail"`
	} `json:"checks"`
	VMID        string   `json:"vm_id"`
	ConfigRoot  string   `json:"config_root"`
	CoprocKeyID string   `json:"coprocessor_keyid"`
	Origin      string   `json:"log"`
	Index       uint64   `json:"index"`
	Cosigners   []string `json:"cosigners"`
	Differences []struct {
		Name, Expected, Attested string
	} `json:"differences"`
}

// failed returns the names of the checks that failed.
func (r *report) failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == "fail" {
			out = append(out, c.Check)
		}
	}
	return out
}

// verify runs `vmledger verify --json` with args and decodes its report.
func verify(t *testing.T, args ...string) (*result, *report) {
	t.Helper()
	r := vmledger(t, append([]string{"verify", "--json"}, args...)...)
	var rep report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("verify --json: stdout is not a report: %v\n%s", err, r)
	}
	return r, &rep
}

// mustVerify verifies bundle as the customer of v does (expected
// configuration and VM secret) and fails the test unless every check
// passes.
func mustVerify(t *testing.T, d *deployment, bundle string, v vm) *report {
	t.Helper()
	r, rep := verify(t, "--bundle", bundle, "--trust", d.trust, "--expected", v.config, "--vm-secret", v.secret, "--vm", v.id)
	if r.code != 0 || !rep.OK || len(rep.failed()) > 0 {
		t.Fatalf("verify %s: exit %d, ok %v, failed checks %q; want exit 0, every check passed\n%s", filepath.Base(bundle), r.code, rep.OK, rep.failed(), r)
	}
	return rep
}

// measuredRoot is the configuration root `vmledger agent measure` computes
// for v.
func measuredRoot(t *testing.T, v vm) string {
	t.Helper()
	r := mustRun(t, "agent", "measure", "--vm", v.id, "--config", v.config, "--vm-secret", v.secret, "--json")
	var m struct {
		Root string `json:"root"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.Root == "" {
		t.Fatalf("agent measure --json: no root (%v)\n%s", err, r)
	}
	return m.Root
}

// launchArgs are the arguments of `vmledger agent launch` for v whose
// command writes "launched <id>" to marker.
func launchArgs(d *deployment, v vm, coproc, trust, marker string, extra ...string) []string {
	args := []string{"agent", "launch", "--vm", v.id, "--config", v.config, "--vm-secret", v.secret,
		"--coproc", coproc, "--log", d.logURL, "--trust", trust}
	args = append(args, extra...)
	return append(args, "--", "/bin/sh", "-c", `echo "launched $1" > "$2"`, "sh", v.id, marker)
}

// TestAttestVerifyOffline runs the whole chain as separate processes:
// several VMs attested through a real swtpm, the log and three witnesses
// (agent attest; one VM with agent launch, one with agent hook as libvirt
// runs it); each bundle verified by the customer, also with a consistency
// state; the monitor; then every process stopped and every bundle verified
// again, offline, and refused offline when one input is wrong.
func TestAttestVerifyOffline(t *testing.T) { testAttestVerifyOffline(t, deploy(t)) }

// TestAttestVerifyOfflineTessera is the same chain with the log on the
// Tessera engine (MariaDB): admission, witnessing, the customer's checks,
// the monitor and the Rekor reads do not depend on the engine.
func TestAttestVerifyOfflineTessera(t *testing.T) { testAttestVerifyOffline(t, deployTessera(t)) }

func testAttestVerifyOffline(t *testing.T, d *deployment) {

	vms := []vm{
		d.newVM("web01", "4GiB", 0x58),
		d.newVM("db01", "16GiB", 0x59),
		d.newVM("cache01", "2GiB", 0x5a),
	}
	bundles := map[string]string{} // VM id → bundle path
	indexes := map[uint64]string{} // log index → VM id
	for _, v := range vms {
		bundle := d.path(v.id + ".bundle.json")
		r := mustRun(t, "agent", "attest", "--vm", v.id, "--config", v.config, "--vm-secret", v.secret,
			"--coproc", d.coproc(), "--log", d.logURL, "--trust", d.trust, "--out", bundle)
		if !strings.Contains(r.stdout, "bundle written to "+bundle) {
			t.Errorf("agent attest --vm %s: stdout does not say the bundle was written\n%s", v.id, r)
		}
		bundles[v.id] = bundle
	}

	// One VM through agent launch: the command runs only after the chain
	// verified. --store keeps its bundle.
	app := d.newVM("app01", "8GiB", 0x5b)
	vms = append(vms, app)
	marker := d.path("app01.launched")
	store := d.path("agent-store")
	bundles[app.id] = d.path("app01.bundle.json")
	r := mustRun(t, launchArgs(d, app, d.coproc(), d.trust, marker, "--store", store, "--out", bundles[app.id])...)
	if got, err := os.ReadFile(marker); err != nil || string(got) != "launched app01\n" {
		t.Fatalf("agent launch --vm app01: marker = %q (%v), want %q\n%s", got, err, "launched app01\n", r)
	}
	if !strings.Contains(r.stderr, "attestation verified, launching") {
		t.Errorf("agent launch --vm app01: stderr does not say it verified before launching\n%s", r)
	}
	out, err := os.ReadFile(bundles[app.id])
	if err != nil {
		t.Fatalf("agent launch --out: %v", err)
	}
	if kept, err := os.ReadFile(filepath.Join(store, app.id, "bundle")); err != nil || !bytes.Equal(kept, out) {
		t.Errorf("agent launch --store: the store's bundle of app01 (%v) is not the one written to --out", err)
	}

	// One VM started the libvirt way: agent hook with the domain XML.
	hooked, hookBundle := hookVM(t, d, "web02")
	vms = append(vms, hooked)
	bundles[hooked.id] = hookBundle

	// The customer verifies each bundle against what they ordered.
	for _, v := range vms {
		rep := mustVerify(t, d, bundles[v.id], v)
		if want := measuredRoot(t, v); rep.VMID != v.id || rep.ConfigRoot != want || rep.CoprocKeyID != d.tpmKeyID || rep.Origin != origin {
			t.Errorf("verify %s: report says vm %q, root %s, key %s, log %q; want %q, %s, %s, %q",
				v.id, rep.VMID, rep.ConfigRoot, rep.CoprocKeyID, rep.Origin, v.id, want, d.tpmKeyID, origin)
		}
		if len(rep.Cosigners) < 2 {
			t.Errorf("verify %s: cosigners %q, want at least 2 of the 3 witnesses", v.id, rep.Cosigners)
		}
		if other, dup := indexes[rep.Index]; dup {
			t.Errorf("verify %s: log index %d is also %s's", v.id, rep.Index, other)
		}
		indexes[rep.Index] = v.id
	}

	// A customer who keeps state: each bundle's checkpoint (the tree grows
	// from one to the next) must be consistent with the one verified
	// before, proved from the log's tiles.
	t.Run("consistency state", func(t *testing.T) {
		state := d.path("customer-state.json")
		for i, v := range vms {
			r, rep := verify(t, "--bundle", bundles[v.id], "--trust", d.trust, "--expected", v.config, "--vm-secret", v.secret,
				"--state", state, "--log", d.logURL, "--vm", v.id)
			consistency := ""
			for _, c := range rep.Checks {
				if c.Check == "consistency" && c.Status == "pass" {
					consistency = c.Detail
				}
			}
			if r.code != 0 || consistency == "" || (i > 0 && !strings.Contains(consistency, "consistent with the trusted size")) {
				t.Errorf("verify %s --state: exit %d, consistency %q; want exit 0, consistency proved against the state\n%s", v.id, r.code, consistency, r)
			}
		}
	})

	t.Run("monitor", func(t *testing.T) { testMonitor(t, d, vms[0]) })

	// Sigstore's code reads the same entries through the Rekor v1 API.
	t.Run("rekor reads", func(t *testing.T) { testRekorReads(t, d, bundles) })

	// Stop every process, then verify every bundle again: the bundles
	// carry all the evidence.
	for _, w := range d.witnesses {
		if code := w.stop(); code != 0 {
			t.Errorf("%s: exit %d after SIGTERM, want 0\n%s", w.name, code, w.output())
		}
	}
	if code := d.log.stop(); code != 0 {
		t.Errorf("log: exit %d after SIGTERM, want 0\n%s", code, d.log.output())
	}
	d.tpm.Stop()

	for _, v := range vms {
		mustVerify(t, d, bundles[v.id], v)
		// And as a person reads it.
		r := vmledger(t, "verify", "--bundle", bundles[v.id], "--trust", d.trust, "--expected", v.config, "--vm-secret", v.secret, "--vm", v.id)
		if want := "VERIFIED: VM " + v.id + ","; r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("verify %s (text): exit %d; want exit 0 and %q\n%s", v.id, r.code, want, r)
		}
	}

	t.Run("refused offline", func(t *testing.T) { testVerifyRefused(t, d, vms[0], bundles[vms[0].id]) })
}

// alert is one line of `vmledger monitor --json` (client.Alert).
type alert struct {
	Kind   string `json:"kind"`
	VMID   string `json:"vm_id"`
	Index  uint64 `json:"index"`
	Detail string `json:"detail"`
}

// monitorOnce runs one round of `vmledger monitor --once --json` and
// decodes its alerts.
func monitorOnce(t *testing.T, d *deployment, watch string) (*result, []alert) {
	t.Helper()
	r := vmledger(t, "monitor", "--log", d.logURL, "--trust", d.trust, "--watch", watch, "--once", "--json")
	var alerts []alert
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if line == "" {
			continue
		}
		var a alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("monitor --json: line %q is not an alert: %v\n%s", line, err, r)
		}
		alerts = append(alerts, a)
	}
	return r, alerts
}

// testMonitor attests a watched VM with one changed parameter and checks
// that `vmledger monitor --once --json` reports exactly that attestation,
// and nothing for a VM attested as expected.
func testMonitor(t *testing.T, d *deployment, good vm) {
	watch := func(name string, vms ...vm) string {
		dir := d.path(name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		var entries []string
		for _, v := range vms {
			entries = append(entries, fmt.Sprintf(`{"vm": %q, "config": %q, "vm_secret": %q}`, v.id, v.config, v.secret))
		}
		w := `{"vms": [` + strings.Join(entries, ", ") + `]}`
		return writeFile(t, filepath.Join(dir, "watch.json"), []byte(w), 0o644)
	}

	// The owner of mon01 ordered 4 GiB; the host runs (and attests) 6 GiB.
	ordered := d.newVM("mon01", "4GiB", 0x60)
	ran := ordered
	ran.config = d.writeConfig("mon01-ran.json", "6GiB", 0x60)
	bundle := d.path("mon01.bundle.json")
	mustRun(t, "agent", "attest", "--vm", ran.id, "--config", ran.config, "--vm-secret", ran.secret,
		"--coproc", d.coproc(), "--log", d.logURL, "--trust", d.trust, "--out", bundle)
	rep := mustVerify(t, d, bundle, ran) // what the host ran verifies…
	// …but not as what the owner ordered.
	if r, rep := verify(t, "--bundle", bundle, "--trust", d.trust, "--expected", ordered.config, "--vm-secret", ordered.secret, "--vm", ordered.id); r.code != 3 || !slices.Equal(rep.failed(), []string{"configuration"}) {
		t.Errorf("verify mon01 against the ordered config: exit %d, failed checks %q; want 3, [configuration]\n%s", r.code, rep.failed(), r)
	}
	// With the host's manifest, the refusal names the parameter that
	// differs, with both values.
	manifest := writeFile(t, d.path("mon01-ran.manifest.json"),
		[]byte(mustRun(t, "agent", "measure", "--vm", ran.id, "--config", ran.config, "--vm-secret", ran.secret, "--json").stdout), 0o644)
	r, mrep := verify(t, "--bundle", bundle, "--trust", d.trust, "--expected", ordered.config, "--vm-secret", ordered.secret, "--vm", ordered.id, "--manifest", manifest)
	if d := mrep.Differences; r.code != 3 || len(d) != 1 || d[0].Name != "memory.bytes" || d[0].Expected != "4294967296" || d[0].Attested != "6442450944" {
		t.Errorf("verify mon01 against the ordered config with the manifest: exit %d, differences %+v; want 3 and memory.bytes expected 4294967296, attested 6442450944\n%s", r.code, mrep.Differences, r)
	}
	if r := vmledger(t, "verify", "--bundle", bundle, "--trust", d.trust, "--expected", ordered.config, "--vm-secret", ordered.secret, "--vm", ordered.id, "--manifest", manifest); !strings.Contains(r.stdout, "memory.bytes") || !strings.Contains(r.stdout, "expected 4294967296, attested 6442450944") {
		t.Errorf("verify (text) does not name memory.bytes with both values\n%s", r)
	}

	t.Run("changed parameter", func(t *testing.T) {
		w := watch("watch-both", good, ordered)
		r, alerts := monitorOnce(t, d, w)
		want := alert{Kind: "unexpected-config", VMID: "mon01", Index: rep.Index}
		if r.code != 3 || len(alerts) != 1 || alerts[0].Kind != want.Kind || alerts[0].VMID != want.VMID || alerts[0].Index != want.Index {
			t.Fatalf("monitor --once watching %s and mon01: exit %d, alerts %+v; want exit 3 and only %+v\n%s", good.id, r.code, alerts, want, r)
		}
		// The next round resumes from the state: nothing new to report.
		if r, alerts := monitorOnce(t, d, w); r.code != 0 || len(alerts) != 0 {
			t.Errorf("monitor --once again (same state): exit %d, alerts %+v; want exit 0, none\n%s", r.code, alerts, r)
		}
	})

	t.Run("as expected", func(t *testing.T) {
		if r, alerts := monitorOnce(t, d, watch("watch-good", good)); r.code != 0 || len(alerts) != 0 {
			t.Errorf("monitor --once watching %s: exit %d, alerts %+v; want exit 0, none\n%s", good.id, r.code, alerts, r)
		}
	})
}

// testVerifyRefused runs the customer's verification of a good bundle with
// one wrong input at a time; each must be refused (exit 3) by the check
// that owns that input.
func testVerifyRefused(t *testing.T, d *deployment, v vm, bundle string) {
	// A log key with the right origin that is not the log's.
	otherLogVKey := strings.TrimSpace(mustRun(t, "keygen", "--name", origin, "--out", d.path("other-log.key")).stdout)
	// Witness keys that are not the witnesses'.
	var otherWitnesses strings.Builder
	for i := range 3 {
		name := fmt.Sprintf("w%d.e2e.vmledger.test", i+1)
		vkey := strings.TrimSpace(mustRun(t, "keygen", "--name", name, "--out", d.path(fmt.Sprintf("other-w%d.key", i+1))).stdout)
		fmt.Fprintf(&otherWitnesses, "witness w%d %s\n", i+1, vkey)
	}
	otherWitnesses.WriteString("group witnesses 2 w1 w2 w3\nquorum witnesses\n")
	stranger := d.softKey("stranger")

	coprocLine := "coprocessor host-a " + d.tpmPEM
	tests := []struct {
		name       string
		trust      string
		expected   string
		secret     string
		vmID       string
		wantFailed string
	}{
		{"wrong VM secret", d.trust, v.config, d.newSecret("wrong.secret"), v.id, "configuration"},
		{"changed parameter", d.trust, d.writeConfig("web01-8g.json", "8GiB", 0x58), v.secret, v.id, "configuration"},
		{"another VM", d.trust, v.config, v.secret, "db01", "statement"},
		{"wrong log key", d.writeTrust("trust-other-log.txt", otherLogVKey, d.witnessLines, coprocLine), v.config, v.secret, v.id, "log signature"},
		{"wrong witness keys", d.writeTrust("trust-other-witnesses.txt", d.logVKey, otherWitnesses.String(), coprocLine), v.config, v.secret, v.id, "witness quorum"},
		{"wrong co-processor key", d.writeTrust("trust-other-coproc.txt", d.logVKey, d.witnessLines, "coprocessor host-a "+stranger.pem), v.config, v.secret, v.id, "coprocessor signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, rep := verify(t, "--bundle", bundle, "--trust", tt.trust, "--expected", tt.expected, "--vm-secret", tt.secret, "--vm", tt.vmID)
			if r.code != 3 || rep.OK || !slices.Contains(rep.failed(), tt.wantFailed) {
				t.Errorf("verify (%s): exit %d, ok %v, failed checks %q; want exit 3, %q failed\n%s", tt.name, r.code, rep.OK, rep.failed(), tt.wantFailed, r)
			}
		})
	}
}
