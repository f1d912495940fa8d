package admission

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/log/publish"
	"github.com/vmledger/vmledger/witness"
	"github.com/vmledger/vmledger/witness/policy"
)

// ordered is the configuration a customer ordered, and the VM secret.
func ordered(t *testing.T) (*measure.Config, measure.Secret, *measure.Measurement) {
	t.Helper()
	cmdline := "console=ttyS0 ro"
	cfg := &measure.Config{
		MemoryBytes: 4 << 30, CPUCount: 4, CPUAffinity: "0-3",
		NICs:          []measure.NIC{{MAC: measure.MAC{0x52, 0x54, 0, 0x12, 0x34, 0x56}, VLAN: 100}},
		Disks:         []measure.Disk{{Target: "vda", SHA256: &measure.Digest{1, 2, 3}}},
		Kernel:        &measure.Digest{9},
		KernelCmdline: &cmdline,
	}
	var secret measure.Secret
	copy(secret[:], bytes.Repeat([]byte{0x5a}, 32))
	m, err := measure.Measure(cfg, secret)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, secret, m
}

// verifyBundle runs the customer's verifier on a bundle with only the log's
// verifier key (and the witness lines of witnessLines) and the
// co-processor's public key.
func verifyBundle(t *testing.T, raw []byte, trustText string, vm string, cfg *measure.Config, secret measure.Secret) *client.Report {
	t.Helper()
	b, err := bundle.Parse(raw)
	if err != nil {
		t.Fatalf("bundle.Parse: %v\n%s", err, raw)
	}
	trust, err := client.ParseTrust([]byte(trustText), t.TempDir())
	if err != nil {
		t.Fatalf("ParseTrust: %v\n%s", err, trustText)
	}
	rep, err := client.Verify(t.Context(), b, trust, &client.Expected{VMID: vm, Config: cfg, Secret: &secret}, client.Options{})
	if err != nil {
		t.Fatalf("client.Verify: %v\n%+v", err, rep.Results)
	}
	return rep
}

func TestBundleVerifiesOffline(t *testing.T) {
	d := newDeployment(t, nil)
	dv := newDevice(t, true)
	d.enrol(dv, "host-a")
	cfg, secret, m := ordered(t)
	env := dv.attestParams(t, "vm-1", m.Root, m.Names(), 1, d.anchor())

	r := d.post(env, "?wait=1")
	if r.status != http.StatusCreated {
		t.Fatalf("POST ?wait=1 = %d %s, want 201", r.status, r.body)
	}
	var resp AdmitResponse
	r.json(t, &resp)
	line, err := client.TrustLine("host-a", dv.pub)
	if err != nil {
		t.Fatal(err)
	}
	trust := fmt.Sprintf("log %s\nquorum none\n%s\n", d.vkey, line)
	rep := verifyBundle(t, resp.Bundle, trust, "vm-1", cfg, secret)
	if rep.Index != resp.Index || rep.Counter != 1 {
		t.Errorf("report index %d counter %d, want %d and 1", rep.Index, rep.Counter, resp.Index)
	}

	// The agent's retry of the same envelope: 200, the same index, and a
	// bundle that verifies too.
	r = d.post(env, "?wait=1")
	var again AdmitResponse
	r.json(t, &again)
	if r.status != http.StatusOK || again.Index != resp.Index || len(again.Bundle) == 0 {
		t.Fatalf("duplicate POST ?wait=1 = %d %s, want 200 index %d with a bundle", r.status, r.body, resp.Index)
	}
	verifyBundle(t, again.Bundle, trust, "vm-1", cfg, secret)

	// The same entry through the read endpoints, after more entries.
	d.admit(dv.attest(t, "vm-2", rootOf("other"), 2, d.anchor()))
	d.anchor() // published
	for _, path := range []string{fmt.Sprintf("/v1/bundles/%d", resp.Index), "/v1/vms/vm-1/bundle"} {
		r := d.get(path)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, r.status, r.body)
		}
		verifyBundle(t, r.body, trust, "vm-1", cfg, secret)
	}
	for _, tc := range []struct{ path, reason string }{
		{"/v1/bundles/999", "not-found"},
		{"/v1/vms/nobody/bundle", "not-found"},
		{"/v1/bundles/01", "bad-request"},
	} {
		if r := d.get(tc.path); r.reason(t) != tc.reason {
			t.Errorf("GET %s = %d %s, want %s", tc.path, r.status, r.body, tc.reason)
		}
	}
	// A bundle for another VM does not pass as vm-1's.
	b, _ := bundle.Parse(d.get("/v1/vms/vm-2/bundle").body)
	tr, _ := client.ParseTrust([]byte(trust), t.TempDir())
	if _, err := client.Verify(t.Context(), b, tr, &client.Expected{VMID: "vm-1", Config: cfg, Secret: &secret}, client.Options{}); err == nil {
		t.Error("vm-2's bundle verified as vm-1's")
	}
}

// TestBundleWithWitnesses runs three real witness servers and a 2-of-3
// policy: the ?wait=1 answer comes with a cosigned checkpoint that the
// customer's verifier accepts under that quorum.
func TestBundleWithWitnesses(t *testing.T) {
	var trustWitnesses strings.Builder
	d := newWitnessedDeployment(t, nil, func(logVKey string) *policy.Policy {
		logs, err := policy.ParseLogs([]byte("log " + logVKey + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		var pol strings.Builder
		for i := range 3 {
			wskey, wvkey, err := note.GenerateKey(rand.Reader, fmt.Sprintf("w%d.admission.test", i))
			if err != nil {
				t.Fatal(err)
			}
			cos, err := witness.NewCosigner(wskey, nil)
			if err != nil {
				t.Fatal(err)
			}
			store, err := witness.OpenStore(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			w, err := witness.New(witness.Config{Logs: logs, Cosigner: cos, Store: store})
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(w.Handler())
			t.Cleanup(hs.Close)
			fmt.Fprintf(&pol, "witness w%d %s %s\n", i, wvkey, hs.URL)
			fmt.Fprintf(&trustWitnesses, "witness w%d %s\n", i, wvkey)
		}
		pol.WriteString("group two 2 w0 w1 w2\nquorum two\n")
		p, err := publish.LoadPolicy([]byte(pol.String()), logVKey)
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
	dv := newDevice(t, false)
	k := d.enrol(dv, "host-b")
	// The enrolment is answered once the witnesses cosigned a checkpoint
	// that includes it, so that the key's first attestation can anchor to
	// a non-empty tree.
	latest, err := d.pub.Latest(t.Context())
	if err != nil {
		t.Fatalf("no published checkpoint when the enrolment was answered: %v", err)
	}
	if c, err := parseSigned(latest); err != nil || c.Size <= k.EnrolledIndex {
		t.Errorf("published checkpoint when the enrolment at index %d was answered: size %d (%v), want above %d", k.EnrolledIndex, c.Size, err, k.EnrolledIndex)
	}
	cfg, secret, m := ordered(t)
	env := dv.attestParams(t, "vm-w", m.Root, m.Names(), 1, d.anchor())
	r := d.post(env, "?wait=1")
	if r.status != http.StatusCreated {
		t.Fatalf("POST ?wait=1 = %d %s", r.status, r.body)
	}
	var resp AdmitResponse
	r.json(t, &resp)
	line, _ := client.TrustLine("host-b", dv.pub)
	trust := fmt.Sprintf("log %s\n%sgroup two 2 w0 w1 w2\nquorum two\n%s\n", d.vkey, trustWitnesses.String(), line)
	rep := verifyBundle(t, resp.Bundle, trust, "vm-w", cfg, secret)
	if len(rep.Cosigners) < 2 {
		t.Errorf("cosigners %v, want at least 2", rep.Cosigners)
	}
	// Without witness cosignatures the same trust refuses: the log key alone
	// is not enough under this policy.
	b, _ := bundle.Parse(resp.Bundle)
	text, sigs, _ := bytes.Cut(b.Proof.Checkpoint, []byte("\n\n"))
	var logOnly []byte
	for l := range strings.Lines(string(sigs)) {
		if strings.HasPrefix(l, "— "+testOrigin+" ") {
			logOnly = append(logOnly, l...)
		}
	}
	b.Proof.Checkpoint = append(append(text, "\n\n"...), logOnly...)
	tr, _ := client.ParseTrust([]byte(trust), t.TempDir())
	if _, err := client.Verify(t.Context(), b, tr, &client.Expected{VMID: "vm-w", Config: cfg, Secret: &secret}, client.Options{}); !errors.Is(err, client.ErrWitnessPolicy) {
		t.Errorf("a checkpoint with only the log's signature: %v, want %v", err, client.ErrWitnessPolicy)
	}
}
