package attest_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/attest"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/testing/cluster"
)

func testConfig() *measure.Config {
	cmdline := "console=ttyS0 ro"
	return &measure.Config{
		MemoryBytes: 2 << 30, CPUCount: 2,
		NICs:          []measure.NIC{{MAC: measure.MAC{0x52, 0x54, 0, 1, 2, 3}, VLAN: 7}},
		Disks:         []measure.Disk{{Target: "vda", SHA256: &measure.Digest{0xd1}}},
		KernelCmdline: &cmdline,
	}
}

func secret(b byte) measure.Secret {
	var s measure.Secret
	for i := range s {
		s[i] = b
	}
	return s
}

// start runs a deployment (badger log, three witnesses with a 2-of-3
// policy, the TPM simulator) in dir.
func start(t *testing.T, o cluster.Options) *cluster.Cluster {
	t.Helper()
	c, err := cluster.Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// attestWithState runs the flow as one agent run does: the state file is
// opened afresh, as `agent launch --state` does each time.
func attestWithState(t *testing.T, a attest.Config, statePath, vm string) (*attest.Result, error) {
	t.Helper()
	st, err := client.OpenState(statePath)
	if err != nil {
		t.Fatal(err)
	}
	a.State = st
	return attest.Attest(t.Context(), a, attest.Request{VMID: vm, Config: testConfig(), Secret: secret(1)})
}

// consistencyDetail is the detail of the report's consistency check.
func consistencyDetail(r *client.Report) string {
	for _, c := range r.Results {
		if c.Check == client.CheckConsistency && c.Status == client.Pass {
			return c.Detail
		}
	}
	return ""
}

// TestAttestStateAcrossRuns: with a state file, every run after the first
// proves the log's new checkpoint consistent with the one trusted before,
// through the log it attested with.
func TestAttestStateAcrossRuns(t *testing.T) {
	c := start(t, cluster.Options{Dir: t.TempDir()})
	state := filepath.Join(t.TempDir(), "state.json")
	var sizes []uint64
	for i := range 3 {
		r, err := attestWithState(t, c.Agent(), state, "web01")
		if err != nil {
			t.Fatalf("run %d with the state file: %v", i+1, err)
		}
		detail := consistencyDetail(r.Report)
		if i > 0 && !strings.Contains(detail, "consistent with the trusted size") {
			t.Errorf("run %d: consistency %q, want it proved against the trusted checkpoint", i+1, detail)
		}
		sizes = append(sizes, r.Report.TreeSize)
	}
	if !(sizes[0] < sizes[1] && sizes[1] < sizes[2]) {
		t.Errorf("tree sizes %v: want every run to prove consistency with a larger tree", sizes)
	}
	st, err := client.OpenState(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Evidence()) != 0 {
		t.Errorf("evidence %+v after an honest log, want none", st.Evidence())
	}
}

// TestAttestForkedLogRefused: a second log with the same key and
// witnesses, but another history, is refused by an agent whose state file
// trusts the first log's checkpoint — and both signed checkpoints are kept
// as evidence. The honest log still works afterwards.
func TestAttestForkedLogRefused(t *testing.T) {
	honestDir := t.TempDir()
	honest := start(t, cluster.Options{Dir: honestDir})
	state := filepath.Join(t.TempDir(), "state.json")
	first, err := attestWithState(t, honest.Agent(), state, "web01")
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := client.OpenState(state)
	if err != nil {
		t.Fatal(err)
	}
	trustedCP := trusted.Checkpoint(first.Report.Origin)

	// The TPM simulator is one per process: the fork's own enrolled key
	// is a software one.
	forked := start(t, cluster.Options{Dir: t.TempDir(), KeysFrom: honestDir, Coproc: "soft:" + filepath.Join(t.TempDir(), "coproc")})
	if err := forked.Enroll(t.Context(), "host-a", honest.CoProcessor); err != nil {
		t.Fatal(err)
	}
	fa := honest.Agent()
	fa.LogURL = forked.LogURL
	// Without a state file the fork is indistinguishable: its checkpoints
	// carry the same log key and witness keys. This also grows it past the
	// trusted size, so that only a consistency proof can tell.
	for _, vm := range []string{"db01", "db02"} {
		if _, err := attest.Attest(t.Context(), fa, attest.Request{VMID: vm, Config: testConfig(), Secret: secret(1)}); err != nil {
			t.Fatalf("forked log without a state file: %v", err)
		}
	}

	r, err := attestWithState(t, fa, state, "web01")
	var ie *client.InconsistentError
	if !errors.Is(err, attest.ErrVerify) || !errors.Is(err, client.ErrConsistency) || !errors.As(err, &ie) {
		t.Fatalf("forked log with the state file: %v, want ErrVerify, an InconsistentError", err)
	}
	if r != nil && r.Report != nil && r.Report.TreeSize <= first.Report.TreeSize {
		t.Errorf("forked tree size %d, want larger than the trusted %d (the proof path)", r.Report.TreeSize, first.Report.TreeSize)
	}
	after, err := client.OpenState(state)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Checkpoint(first.Report.Origin); string(got) != string(trustedCP) {
		t.Errorf("the state now trusts\n%s\nwant still the honest log's\n%s", got, trustedCP)
	}
	if ev := after.Evidence(); len(ev) != 1 || ev[0].Trusted != string(trustedCP) {
		t.Errorf("evidence %+v, want one record with the honest checkpoint as the trusted one", ev)
	}

	if _, err := attestWithState(t, honest.Agent(), state, "web01"); err != nil {
		t.Errorf("the honest log after the fork was refused: %v", err)
	}
}
