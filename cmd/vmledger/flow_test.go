package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/store"
	"github.com/vmledger/vmledger/testing/cluster"
)

// runIn runs the command line in-process with stdin and returns stdout,
// stderr (with the error run would print) and the exit code run would
// return.
func runIn(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(t.Context())
	if err == nil {
		return out.String(), errb.String(), exitOK
	}
	return out.String(), errb.String() + "vmledger: " + err.Error(), exitCode(err)
}

// flowDeployment is a running deployment (testing/cluster: badger log,
// three witnesses, 2-of-3) whose enrolled co-processor is a software key
// the agent commands open by SPEC.
type flowDeployment struct {
	*cluster.Cluster
	dir    string
	coproc string
}

func startFlowDeployment(t *testing.T) *flowDeployment {
	t.Helper()
	dir := t.TempDir()
	spec := "soft:" + filepath.Join(dir, "coproc")
	c, err := cluster.Start(t.Context(), cluster.Options{Dir: dir, Coproc: spec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &flowDeployment{Cluster: c, dir: dir, coproc: spec}
}

// hookDomain is a libvirt domain as `virsh dumpxml` prints it.
const hookDomain = `<domain type='kvm'>
  <name>%s</name>
  <memory unit='KiB'>4194304</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
`

// hookSetup provisions VM id in an agent store and writes the agent
// configuration file the hook reads, with a state file. It returns the
// configuration file's path and the domain XML.
func (d *flowDeployment) hookSetup(t *testing.T, id string, extra map[string]string) (string, string) {
	t.Helper()
	storeDir := filepath.Join(d.dir, "agent-store")
	st, err := store.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	var sec measure.Secret
	sec[0] = 0x42
	if err := st.ImportSecret(id, sec); err != nil {
		t.Fatal(err)
	}
	disk := writeFile(t, d.dir, id+".img", "a disk image, hashed by the agent\n", 0o644)
	ac := map[string]string{
		"log": d.LogURL, "trust": d.TrustFile, "coproc": d.coproc, "store": storeDir,
		"state": filepath.Join(d.dir, "agent-state.json"), "timeout": "1m",
	}
	for k, v := range extra {
		ac[k] = v
	}
	b, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, d.dir, "agent-"+id+".json", string(b), 0o644), fmt.Sprintf(hookDomain, id, disk)
}

// TestAgentHookStateAcrossRuns: the libvirt hook with "state" in its
// configuration (as its help shows) starts a domain every time, not only
// the first: each run proves the log consistent with the previous one.
func TestAgentHookStateAcrossRuns(t *testing.T) {
	d := startFlowDeployment(t)
	cfg, xml := d.hookSetup(t, "web01", nil)
	for i := range 3 {
		_, stderr, code := runIn(t, xml, "agent", "hook", "--agent-config", cfg, "web01", "prepare", "begin", "-")
		if code != exitOK {
			t.Fatalf("hook run %d: exit %d, want 0\n%s", i+1, code, stderr)
		}
	}
	raw, err := os.ReadFile(filepath.Join(d.dir, "agent-state.json"))
	if err != nil || !bytes.Contains(raw, []byte(`"checkpoints"`)) {
		t.Fatalf("state file: %v\n%s", err, raw)
	}
}

// vmConfig writes a vmledger/config/v1 configuration with the given memory.
func vmConfig(t *testing.T, dir, name, memory string) string {
	t.Helper()
	return writeFile(t, dir, name, fmt.Sprintf(`{
  "schema": "vmledger/config/v1",
  "memory": %q,
  "cpu": {"count": 2},
  "nics": [{"mac": "52:54:00:6b:3c:58", "vlan": 42}],
  "disks": [{"target": "vda", "sha256": "4f0e5dc7a3a35f29bd7b0f5b7b1c1e4c7d1d7e0e8b6b0f6a3c2b1a0f9e8d7c6b"}]
}
`, memory), 0o644)
}

// closedAddr is a loopback address nobody listens on any more.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return ln.Addr().String()
}

// TestFlowExitCodes: "could not complete" (exit 4: the co-processor, the
// log or the witness quorum unavailable) is told apart from a refusal
// (exit 3) by agent attest|launch|hook, verify and monitor.
func TestFlowExitCodes(t *testing.T) {
	d := startFlowDeployment(t)
	dir := d.dir
	cfg := vmConfig(t, dir, "web01.json", "4GiB")
	other := vmConfig(t, dir, "web01-8g.json", "8GiB")
	sec := writeFile(t, dir, "web01.secret", strings.Repeat("ab", 32), 0o600)
	down := "http://" + closedAddr(t)
	flow := func(args ...string) []string {
		return append([]string{"--vm", "web01", "--config", cfg, "--vm-secret", sec, "--trust", d.TrustFile}, args...)
	}
	attestArgs := func(out string, args ...string) []string {
		return append([]string{"agent", "attest", "--out", filepath.Join(dir, out)}, flow(args...)...)
	}
	launchArgs := func(args ...string) []string {
		// The command is never run: every case fails before the exec.
		return append(append([]string{"agent", "launch"}, flow(args...)...), "--", "true")
	}

	// Two bundles, the second of a larger tree, and a customer's state
	// that trusts the first.
	if _, stderr, code := runIn(t, "", attestArgs("b1.json", "--coproc", d.coproc, "--log", d.LogURL)...); code != exitOK {
		t.Fatalf("agent attest: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := runIn(t, "", attestArgs("b2.json", "--coproc", d.coproc, "--log", d.LogURL)...); code != exitOK {
		t.Fatalf("agent attest: exit %d\n%s", code, stderr)
	}
	state := filepath.Join(dir, "customer-state.json")
	verifyArgs := func(bundle, expected string, args ...string) []string {
		return append([]string{"verify", "--bundle", filepath.Join(dir, bundle), "--trust", d.TrustFile, "--expected", expected, "--vm-secret", sec, "--vm", "web01"}, args...)
	}
	if _, stderr, code := runIn(t, "", verifyArgs("b1.json", cfg, "--state", state)...); code != exitOK {
		t.Fatalf("verify --state: exit %d\n%s", code, stderr)
	}
	hookCfg, xml := d.hookSetup(t, "web02", map[string]string{"log": down})
	watch := writeFile(t, dir, "watch.json", fmt.Sprintf(`{"vms": [{"vm": "web01", "config": %q, "vm_secret": %q}]}`, cfg, sec), 0o644)

	tests := []struct {
		name  string
		stdin string
		args  []string
		want  int
	}{
		{"attest: log unreachable", "", attestArgs("x.json", "--coproc", d.coproc, "--log", down), exitIncomplete},
		{"attest: TPM unreachable", "", attestArgs("x.json", "--coproc", "swtpm:"+closedAddr(t), "--log", d.LogURL), exitIncomplete},
		{"attest: another configuration", "", attestArgs("x.json", "--coproc", d.coproc, "--log", d.LogURL, "--expected", other), exitRefused},
		{"launch: log unreachable", "", launchArgs("--coproc", d.coproc, "--log", down), exitIncomplete},
		{"launch: another configuration", "", launchArgs("--coproc", d.coproc, "--log", d.LogURL, "--expected", other), exitRefused},
		{"hook: log unreachable", xml, []string{"agent", "hook", "--agent-config", hookCfg, "web02", "prepare", "begin", "-"}, exitIncomplete},
		{"verify: consistency proof unavailable", "", verifyArgs("b2.json", cfg, "--state", state, "--log", down), exitIncomplete},
		{"verify: proof unavailable and another configuration", "", verifyArgs("b2.json", other, "--state", state, "--log", down), exitRefused},
		{"verify: consistency proved", "", verifyArgs("b2.json", cfg, "--state", state, "--log", d.LogURL), exitOK},
		{"monitor: log unreachable", "", []string{"monitor", "--once", "--log", down, "--trust", d.TrustFile, "--watch", watch}, exitIncomplete},
		{"monitor: as expected", "", []string{"monitor", "--once", "--log", d.LogURL, "--trust", d.TrustFile, "--watch", watch}, exitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, stderr, code := runIn(t, tt.stdin, tt.args...); code != tt.want {
				t.Errorf("exit %d, want %d\n%s", code, tt.want, stderr)
			}
		})
	}

	// A person's monitor round says what it checked.
	stdout, stderr, code := runIn(t, "", "monitor", "--once", "--log", d.LogURL, "--trust", d.TrustFile, "--watch", watch, "--state", filepath.Join(dir, "fresh.state"))
	if code != exitOK || !strings.Contains(stdout, "attestation(s) of 1 of 1 watched VM(s) (web01): all as expected") {
		t.Errorf("monitor --once: exit %d, want 0 and the round's line\n%s%s", code, stdout, stderr)
	}
	badWatch := writeFile(t, dir, "bad-watch.json", fmt.Sprintf(`{"vms": [{"vm": "web01", "config": %q, "vm_secret": %q, "expect_within": "soon"}]}`, cfg, sec), 0o644)
	if _, stderr, code := runIn(t, "", "monitor", "--once", "--log", d.LogURL, "--trust", d.TrustFile, "--watch", badWatch); code != exitFailure || !strings.Contains(stderr, `expect_within "soon"`) {
		t.Errorf("monitor with expect_within \"soon\": exit %d, want 1 naming it\n%s", code, stderr)
	}

	// The witness quorum down: the flow gives up at --timeout, exit 4.
	d.StopWitness(0)
	d.StopWitness(1)
	_, stderr, code = runIn(t, "", attestArgs("x.json", "--coproc", d.coproc, "--log", d.LogURL, "--timeout", "3s")...)
	if code != exitIncomplete || !strings.Contains(stderr, "no witness-cosigned checkpoint") {
		t.Errorf("attest with 2 of 3 witnesses down: exit %d, want %d and the quorum named\n%s", code, exitIncomplete, stderr)
	}
}
