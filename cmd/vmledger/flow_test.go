package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
