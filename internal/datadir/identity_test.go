package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(t *testing.T, dir string)
		gone   bool
	}{
		{"unchanged", func(*testing.T, string) {}, false},
		{"a file added", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"removed", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"renamed away and recreated", func(t *testing.T, dir string) {
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"replaced by a file", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			d, err := Watch(dir)
			if err != nil {
				t.Fatal(err)
			}
			c.change(t, dir)
			err = d.Check()
			if got := errors.Is(err, ErrGone); got != c.gone {
				t.Errorf("Check() = %v, want gone %v", err, c.gone)
			}
		})
	}
	if _, err := Watch(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Watch of a missing directory succeeded")
	}
}
