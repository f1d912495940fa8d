package client

import (
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
)

// unreachableLog is the URL of a loopback port nobody listens on any more.
func unreachableLog(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	return url
}

// TestReportIncomplete: a consistency proof the log does not give makes the
// verification incomplete (nothing was proved wrong), unless another check
// failed — then it is a refusal.
func TestReportIncomplete(t *testing.T) {
	f := newFixture(t)
	idx := f.attest("vm-1", f.cfg)
	b1 := f.bundle(idx, f.tree.Size(), 0, 1)
	for range 5 {
		f.append([]byte("more"))
	}
	b2 := f.bundle(idx, f.tree.Size(), 0, 1)
	down, err := NewTileProver(unreachableLog(t), &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	otherSecret := *f.expected()
	otherSecret.Secret = new(f.secret)
	otherSecret.Secret[0] ^= 1

	tests := []struct {
		name           string
		expected       *Expected
		prover         ConsistencyProver
		wantIncomplete bool
		wantErr        error
	}{
		{"log down", f.expected(), down, true, ErrProofUnavailable},
		{"log down and another configuration", &otherSecret, down, false, ErrProofUnavailable},
		{"offline", f.expected(), nil, false, ErrOfflineConsistency},
		{"proved", f.expected(), treeProver{f.tree}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			st, err := OpenState(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(t.Context(), b1, f.trust(), f.expected(), Options{Now: f.now, State: st}); err != nil {
				t.Fatalf("first checkpoint: %v", err)
			}
			st, err = OpenState(path)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Verify(t.Context(), b2, f.trust(), tt.expected, Options{Now: f.now, State: st, Prover: tt.prover})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("Verify = %v, want %v", err, tt.wantErr)
			}
			if got := r.Incomplete(); got != tt.wantIncomplete {
				t.Errorf("Incomplete() = %v, want %v\n%s", got, tt.wantIncomplete, dump(r))
			}
		})
	}
}
