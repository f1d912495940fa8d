package client

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/server"
)

// TestMonitorCatchesChangedParameter runs a real badger log behind the real
// HTTP server, attests a watched VM correctly and then with one changed
// parameter, and requires the monitor to report exactly the second — also
// after a restart from its state file.
func TestMonitorCatchesChangedParameter(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	eng, err := badgerlog.Open(ctx, badgerlog.Config{Dir: t.TempDir(), Signer: f.logSigner})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	srv, err := server.New(server.Config{Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	// The log's own checkpoints carry no cosignatures yet: this trust file
	// has no witness quorum.
	line, _ := TrustLine("host-a", f.cp.PublicKey())
	tr, err := ParseTrust([]byte("log "+f.logVKey+"\nquorum none\n"+line+"\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want, err := measure.Root(f.cfg, f.secret)
	if err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(t.TempDir(), "monitor.json")
	newMon := func() *Monitor {
		m, err := NewMonitor(hs.URL, tr, map[string]Expectation{"vm-1": {Root: want}}, statePath, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	add := func(e []byte) {
		if _, err := eng.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Entries: unrelated data, a good attestation of vm-1, one of vm-2.
	for i := f.attest("vm-1", f.cfg) - 5; i < uint64(len(f.entries)); i++ {
		add(f.entries[i])
	}
	add(f.entries[f.attest("vm-2", f.cfg)])
	m := newMon()
	alerts, err := m.Step(ctx)
	if err != nil || len(alerts) != 0 {
		t.Fatalf("Step over good entries = %v, %v; want no alerts", alerts, err)
	}
	if m.Next() != 7 {
		t.Fatalf("Next() = %d, want 7", m.Next())
	}

	changed := *f.cfg
	changed.CPUCount = 64
	badIndex := uint64(7)
	add(f.entries[f.attest("vm-1", &changed)])
	add(f.entries[f.attest("vm-3", &changed)]) // not watched

	m = newMon() // a restarted monitor resumes from its state
	alerts, err = m.Step(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 || alerts[0].Kind != AlertUnexpectedConfig || alerts[0].VMID != "vm-1" || alerts[0].Index != badIndex {
		t.Fatalf("alerts = %+v, want one unexpected-config for vm-1 at %d", alerts, badIndex)
	}
	if alerts, err := m.Step(ctx); err != nil || len(alerts) != 0 {
		t.Fatalf("second Step = %v, %v; want nothing new", alerts, err)
	}

	// A key the watch does not allow.
	m2, err := NewMonitor(hs.URL, tr, map[string]Expectation{"vm-1": {Root: want, Keys: []string{"00"}}}, filepath.Join(t.TempDir(), "m2.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err = m2.Step(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, a := range alerts {
		kinds = append(kinds, a.Kind)
	}
	if got := strings.Join(kinds, ","); got != "unexpected-key,unexpected-key,unexpected-config" {
		t.Fatalf("alert kinds = %s", got)
	}
}

// TestMonitorDetectsRewrite points a monitor that verified a log's first
// entries at a second log, signed with the same key, whose history differs:
// the monitor must report it and refuse to advance.
func TestMonitorDetectsRewrite(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	serve := func(entries [][]byte) string {
		eng, err := badgerlog.Open(ctx, badgerlog.Config{Dir: t.TempDir(), Signer: f.logSigner})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
		for _, e := range entries {
			if _, err := eng.Add(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		srv, err := server.New(server.Config{Engine: eng})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		return hs.URL
	}
	honest := serve([][]byte{[]byte("a"), []byte("b"), []byte("c")})
	forked := serve([][]byte{[]byte("a"), []byte("B"), []byte("c"), []byte("d")})
	sameSize := serve([][]byte{[]byte("a"), []byte("b"), []byte("C")})
	tr, err := ParseTrust([]byte("log "+f.logVKey+"\nquorum none\n"+mustLine(t, f)+"\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "m.json")
	m, _ := NewMonitor(honest, tr, nil, state, nil)
	if alerts, err := m.Step(ctx); err != nil || len(alerts) != 0 {
		t.Fatalf("honest log: %v %v", alerts, err)
	}
	m, _ = NewMonitor(forked, tr, nil, state, nil)
	alerts, err := m.Step(ctx)
	if err != nil || len(alerts) != 1 || alerts[0].Kind != AlertInconsistent {
		t.Fatalf("forked log: alerts %+v, err %v; want one inconsistent", alerts, err)
	}
	if m.Next() != 3 {
		t.Fatalf("monitor advanced to %d past a rewritten history", m.Next())
	}

	// Both signed checkpoints are kept as evidence, in the state file, once
	// per pair however often the log presents the same one.
	trusted, presented := getCheckpoint(t, honest), getCheckpoint(t, forked)
	if !strings.Contains(alerts[0].Detail, "kept as evidence") {
		t.Errorf("alert %q does not say the evidence is kept", alerts[0].Detail)
	}
	for range 2 {
		m, _ = NewMonitor(forked, tr, nil, state, nil) // also after a restart
		if ev := m.Evidence(); len(ev) != 1 || ev[0].Origin != origin || ev[0].Trusted != trusted || ev[0].Presented != presented {
			t.Fatalf("evidence = %+v, want the honest and the forked signed checkpoints", ev)
		}
		if alerts, err := m.Step(ctx); err != nil || len(alerts) != 1 || alerts[0].Kind != AlertInconsistent {
			t.Fatalf("forked log again: alerts %+v, err %v; want one inconsistent", alerts, err)
		}
	}
	// The same size with another root: a fork the two notes alone prove.
	m, _ = NewMonitor(sameSize, tr, nil, state, nil)
	alerts, err = m.Step(ctx)
	if err != nil || len(alerts) != 1 || alerts[0].Kind != AlertInconsistent || m.Next() != 3 {
		t.Fatalf("same-size fork: alerts %+v, err %v, next %d; want one inconsistent and no advance", alerts, err, m.Next())
	}
	m, _ = NewMonitor(honest, tr, nil, state, nil)
	ev := m.Evidence()
	if len(ev) != 2 || ev[1].Trusted != trusted || ev[1].Presented != getCheckpoint(t, sameSize) {
		t.Fatalf("evidence = %+v, want a second record with the same-size checkpoint", ev)
	}
	// The honest log still verifies, and the evidence stays.
	if alerts, err := m.Step(ctx); err != nil || len(alerts) != 0 || len(m.Evidence()) != 2 {
		t.Fatalf("honest log after the forks: %v %v, %d evidence records", alerts, err, len(m.Evidence()))
	}
}

// getCheckpoint returns the signed checkpoint a log serves.
func getCheckpoint(t *testing.T, logURL string) string {
	t.Helper()
	resp, err := http.Get(logURL + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/checkpoint: %d, %v", logURL, resp.StatusCode, err)
	}
	return string(b)
}

func mustLine(t testing.TB, f *fixture) string {
	line, err := TrustLine("host-a", f.cp.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return line
}
