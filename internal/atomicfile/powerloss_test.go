package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vmledger/vmledger/testing/powerloss"
)

// TestPowerCut: what MkdirAll and Write return from survives a power cut;
// with os.MkdirAll in place of MkdirAll the new directories and the file in
// them are lost.
func TestPowerCut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mkdir func(string, os.FileMode) error
		want  string
	}{
		{"MkdirAll", MkdirAll, "content"},
		{"os.MkdirAll", os.MkdirAll, "<missing>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := powerloss.New(t)
			dir := filepath.Join(fs.Dir(), "a", "b")
			if err := tc.mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "f")
			if err := Write(p, []byte("content"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := fs.Restart(t.Context()); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if os.IsNotExist(err) {
				got, err = []byte("<missing>"), nil
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("after the cut %s = %q, %v; want %q", p, got, err, tc.want)
			}
		})
	}
}
