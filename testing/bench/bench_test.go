package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// check runs a mode at a tiny size and checks the shape of its report, its
// table and its JSON (never its figures: those are for the bench command).
func check(t *testing.T, r *Report, err error, rows, comparisons int) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != rows || len(r.Comparisons) != comparisons {
		t.Fatalf("%s: %d rows and %d comparisons, want %d and %d", r.Mode, len(r.Rows), len(r.Comparisons), rows, comparisons)
	}
	for _, row := range r.Rows {
		if row.Ops <= 0 || row.OpsPerSec <= 0 || row.PeakRSSMiB <= 0 {
			t.Errorf("%s %s: %+v: want positive ops, ops/s and RSS", r.Mode, row.Name, row)
		}
	}
	var table bytes.Buffer
	if err := Write(&table, false, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), r.Rows[0].Name) {
		t.Errorf("table lacks row %q:\n%s", r.Rows[0].Name, table.String())
	}
	var js bytes.Buffer
	if err := Write(&js, true, r); err != nil {
		t.Fatal(err)
	}
	var back []Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back) != 1 || len(back[0].Rows) != rows {
		t.Errorf("JSON %s does not round-trip: %v", js.String(), err)
	}
}

func TestAppend(t *testing.T) {
	r, err := Append(t.Context(), AppendConfig{Dir: t.TempDir(), Entries: 50, Writers: 4, Size: 1024})
	check(t, r, err, 2, 1)
}

func TestAdmit(t *testing.T) {
	r, err := Admit(t.Context(), AdmitConfig{Dir: t.TempDir(), Admissions: 20, Clients: 4})
	check(t, r, err, 5, 5)
}

func TestLatency(t *testing.T) {
	r, err := Latency(t.Context(), LatencyConfig{Dir: t.TempDir(), Rate: 50, Duration: time.Second})
	check(t, r, err, 1, 2)
}

func TestProofs(t *testing.T) {
	r, err := Proofs(t.Context(), ProofsConfig{Dir: t.TempDir(), Entries: 600, Size: 100, Clients: 2, Duration: 100 * time.Millisecond})
	check(t, r, err, 3, 7)
}

func TestVerify(t *testing.T) {
	r, err := Verify(t.Context(), VerifyConfig{Dir: t.TempDir(), Verifications: 5, Rounds: 2})
	check(t, r, err, 2, 1)
}

func TestHash(t *testing.T) {
	r, err := Hash(HashConfig{Dir: t.TempDir(), Size: 3 << 20, Runs: 2})
	check(t, r, err, 2, 1)
}
