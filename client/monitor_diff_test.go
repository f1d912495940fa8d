package client

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
)

// TestMonitorNamesDifferences: an attestation of a watched VM with another
// root names the parameters that differ, with expected and attested values,
// when the provider's manifest of that attestation is at hand; without it,
// the alert says that the log does not hold the values, rather than
// pretending to know them.
func TestMonitorNamesDifferences(t *testing.T) {
	f := newFixture(t)
	logURL, add, tr := monitorLog(t, f)
	measureOf := func(cfg *measure.Config) *measure.Measurement {
		m, err := measure.Measure(cfg, f.secret)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	expected := measureOf(f.cfg)
	changed := *f.cfg
	changed.CPUCount = 64
	attested := measureOf(&changed)
	watch := map[string]Expectation{
		"vm-1": {Root: expected.Root, Manifest: expected, Attested: []*measure.Measurement{attested}},
		"vm-2": {Root: expected.Root, Manifest: expected},
	}
	m, err := NewMonitor(logURL, tr, watch, filepath.Join(t.TempDir(), "m.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	add(f.entries[f.attest("vm-1", &changed)])
	add(f.entries[f.attest("vm-2", &changed)])
	alerts, err := m.Step(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(alerts); !slices.Equal(got, []string{"unexpected-config vm-1@0", "unexpected-config vm-2@1"}) {
		t.Fatalf("alerts %v", got)
	}
	want := []ParameterDiff{{Name: measure.NameCPUCount, Expected: "4", Attested: "64"}}
	if !slices.Equal(alerts[0].Differences, want) || !strings.Contains(alerts[0].Detail, "cpu.count: expected 4, attested 64") {
		t.Errorf("vm-1: differences %+v, detail %q; want %+v named with both values", alerts[0].Differences, alerts[0].Detail, want)
	}
	if alerts[1].Differences != nil || !strings.Contains(alerts[1].Detail, "not the values") || !strings.Contains(alerts[1].Detail, "manifest of entry 1") {
		t.Errorf("vm-2: differences %+v, detail %q; want none, and the log's limit said", alerts[1].Differences, alerts[1].Detail)
	}
}
