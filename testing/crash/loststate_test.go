package crash

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusesLostState: a log or witness whose data directory held state
// (it is marked VMLEDGER-STATE) refuses to start when that state is gone,
// naming what is missing, instead of starting afresh with the same key (a
// log would hand out its indexes again, a witness would cosign a fork).
func TestRefusesLostState(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		// start starts the server once and returns its data directory,
		// the database directory to lose, and a restart function.
		start func(t *testing.T) (lose string, restart func() error)
		want  string
	}{{
		name: "log",
		start: func(t *testing.T) (string, func() error) {
			srv, err := NewLogServer(ctx, vmledgerBin, t.TempDir(), "")
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if err := srv.Proc.Stop(); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(srv.Data, "engine"), func() error {
				err := srv.Start(ctx)
				if err == nil {
					srv.Proc.Kill()
				}
				return err
			}
		},
		want: "MANIFEST",
	}, {
		name: "witness",
		start: func(t *testing.T) (string, func() error) {
			dir := t.TempDir()
			w, err := NewWitnessServer(ctx, vmledgerBin, dir, "vmledger.test/w", []string{mustLogVKey(t)})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if err := w.Proc.Stop(); err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(dir, "data")
			return data, func() error {
				err := w.Start(ctx)
				if err == nil {
					w.Proc.Kill()
				}
				return err
			}
		},
		want: "MANIFEST",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			lose, restart := tc.start(t)
			// Lose the database but keep the marker (for the witness the
			// database is the data directory itself).
			entries, err := os.ReadDir(lose)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Name() != "VMLEDGER-STATE" {
					if err := os.RemoveAll(filepath.Join(lose, e.Name())); err != nil {
						t.Fatal(err)
					}
				}
			}
			err = restart()
			if err == nil {
				t.Fatalf("the %s started on a marked data directory whose database was gone", tc.name)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "refusing") {
				t.Errorf("the %s's refusal does not name what is missing (%s): %v", tc.name, tc.want, err)
			}
		})
	}
}

func mustLogVKey(t *testing.T) string {
	t.Helper()
	v, err := keygen(t.Context(), vmledgerBin, "vmledger.test/some-log", filepath.Join(t.TempDir(), "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
