package client

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/log/admission"
	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/server"
)

// monitorLog serves a real badger log behind the real HTTP server, and
// returns its URL, a function that appends an entry (returning its index)
// and a trust file for it (no witness quorum: the log's own checkpoints).
func monitorLog(t *testing.T, f *fixture) (string, func([]byte) uint64, *Trust) {
	t.Helper()
	ctx := t.Context()
	eng, err := badgerlog.Open(ctx, badgerlog.Config{Dir: t.TempDir(), Signer: f.logSigner})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	srv, err := server.New(server.Config{Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	line, _ := TrustLine("host-a", f.cp.PublicKey())
	tr, err := ParseTrust([]byte("log "+f.logVKey+"\nquorum none\n"+line+"\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	add := func(e []byte) uint64 {
		i, err := eng.Add(context.WithoutCancel(ctx), e)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	return hs.URL, add, tr
}

// kinds lists the alerts as "kind vm@index".
func kinds(alerts []Alert) []string {
	var out []string
	for _, a := range alerts {
		out = append(out, fmt.Sprintf("%s %s@%d", a.Kind, a.VMID, a.Index))
	}
	return out
}

// TestMonitorRoundReport: each round says what it checked, and that all
// was as expected.
func TestMonitorRoundReport(t *testing.T) {
	f := newFixture(t)
	url, add, tr := monitorLog(t, f)
	root, err := measure.Root(f.cfg, f.secret)
	if err != nil {
		t.Fatal(err)
	}
	add([]byte("unrelated"))
	add(f.entries[f.attest("vm-1", f.cfg)])
	add(f.entries[f.attest("vm-2", f.cfg)]) // not watched
	add(f.entries[f.attest("vm-1", f.cfg)])
	m, err := NewMonitor(url, tr, map[string]Expectation{"vm-1": {Root: root}, "vm-3": {Root: root}}, filepath.Join(t.TempDir(), "m.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Round(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r.From != 0 || r.To != 4 || r.TreeSize != 4 || r.Origin != origin || r.Attestations != 2 || !slices.Equal(r.VMs, []string{"vm-1"}) || r.Watched != 2 || len(r.Alerts) != 0 {
		t.Fatalf("round = %+v, want entries 0..3 checked, 2 attestations of vm-1, no alerts", r)
	}
	if got, want := r.String(), "round: log "+origin+" size 4: checked entries 0..3 (4 new), 2 attestation(s) of 1 of 2 watched VM(s) (vm-1): all as expected"; got != want {
		t.Errorf("line = %q\nwant   %q", got, want)
	}
	r, err = m.Round(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.String(), "round: log "+origin+" size 4: no new entries, 0 attestation(s) of 0 of 2 watched VM(s): all as expected"; got != want {
		t.Errorf("quiet round line = %q\nwant   %q", got, want)
	}
	changed := *f.cfg
	changed.MemoryBytes *= 2
	add(f.entries[f.attest("vm-1", &changed)])
	if r, err = m.Round(t.Context()); err != nil || len(r.Alerts) != 1 || !strings.HasSuffix(r.String(), ": 1 alert(s)") {
		t.Fatalf("round with a changed parameter = %v, %v; want one alert, said in the line", r, err)
	}
}

// TestMonitorRevokedKey: a revocation of a key that attested a watched VM
// is reported for each such VM (also by a monitor restarted from its state),
// and so is an attestation by a key revoked before; a revocation of a key
// that attested no watched VM is not.
func TestMonitorRevokedKey(t *testing.T) {
	f := newFixture(t)
	url, add, tr := monitorLog(t, f)
	root, err := measure.Root(f.cfg, f.secret)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "m.json")
	watch := map[string]Expectation{"vm-1": {Root: root}, "vm-2": {Root: root}, "vm-3": {Root: root}}
	newMon := func() *Monitor {
		m, err := NewMonitor(url, tr, watch, state, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	step := func(m *Monitor) []string {
		t.Helper()
		alerts, err := m.Step(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return kinds(alerts)
	}
	add(f.entries[f.attest("vm-1", f.cfg)])
	add(f.entries[f.attest("vm-2", f.cfg)])
	add(f.entries[f.attest("vm-9", f.cfg)]) // not watched
	if got := step(newMon()); len(got) != 0 {
		t.Fatalf("alerts %q before any revocation, want none", got)
	}
	now := time.Now()
	add(admission.NewRevocation("4ef2d5e8a8c6f7b2e1d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918f7e6", now).Marshal()) // another key
	rev := add(admission.NewRevocation(f.cp.KeyID(), now).Marshal())
	// A monitor restarted from its state knows which keys attested what.
	want := []string{fmt.Sprintf("revoked-key vm-1@%d", rev), fmt.Sprintf("revoked-key vm-2@%d", rev)}
	if got := step(newMon()); !slices.Equal(got, want) {
		t.Fatalf("alerts %q after the revocation, want %q", got, want)
	}
	// A log that admits an attestation by the revoked key anyway.
	late := add(f.entries[f.attest("vm-3", f.cfg)])
	if got, want := step(newMon()), []string{fmt.Sprintf("revoked-key vm-3@%d", late)}; !slices.Equal(got, want) {
		t.Fatalf("alerts %q for an attestation by a revoked key, want %q", got, want)
	}
}

// TestMonitorMissingAttestation: a watched VM with a window that goes
// without an attestation as expected for longer than it is reported, once
// per window while it lasts; an attestation of another configuration does
// not count, one as expected starts the window again. The clock is the
// monitor's and the co-processor's, set by the test.
func TestMonitorMissingAttestation(t *testing.T) {
	f := newFixture(t)
	url, add, tr := monitorLog(t, f)
	root, err := measure.Root(f.cfg, f.secret)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "m.json")
	watch := map[string]Expectation{"vm-1": {Root: root, Within: time.Hour}, "vm-2": {Root: root}}
	t0 := time.Now().Truncate(time.Second)
	add([]byte("unrelated"))
	changed := *f.cfg
	changed.CPUCount = 64
	steps := []struct {
		at     time.Duration
		attest *measure.Config // an attestation of vm-1 made just before the round
		want   []string
	}{
		{0, nil, nil}, // watching begins
		{59 * time.Minute, nil, nil},
		{61 * time.Minute, nil, []string{"missing vm-1@1"}},
		{62 * time.Minute, nil, nil}, // said once per window
		{70 * time.Minute, &changed, []string{"unexpected-config vm-1@1"}},
		{2*time.Hour + 2*time.Minute, nil, []string{"missing vm-1@2"}}, // the other configuration did not count
		{2*time.Hour + 3*time.Minute, f.cfg, nil},
		{3*time.Hour + time.Minute, nil, nil},
		{3*time.Hour + 4*time.Minute, nil, []string{"missing vm-1@3"}},
	}
	for _, s := range steps {
		f.now = t0.Add(s.at) // the co-processor signs one minute before
		if s.attest != nil {
			add(f.entries[f.attest("vm-1", s.attest)])
		}
		// A monitor restarted from its state each round.
		m, err := NewMonitor(url, tr, watch, state, nil)
		if err != nil {
			t.Fatal(err)
		}
		m.now = func() time.Time { return f.now }
		alerts, err := m.Step(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got := kinds(alerts); !slices.Equal(got, s.want) {
			t.Errorf("at t0+%v: alerts %q, want %q", s.at, got, s.want)
		}
	}
}
