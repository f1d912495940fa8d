package powerloss

import (
	"os"
	"path/filepath"
	"testing"
)

// New mounts an FS for the test over a fresh backing directory and
// unmounts it when the test ends. Where FUSE is not available it skips the
// test, saying why, or fails it when the environment variable CI is "true".
func New(t testing.TB) *FS {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the power-loss tests must run)", err)
		}
		t.Skipf("%v: skipping the power-loss test", err)
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := Mount(filepath.Join(dir, "backing"), mnt)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the power-loss tests must run)", err)
		}
		t.Skipf("%v: skipping the power-loss test", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("unmounting: %v", err)
		}
	})
	return f
}
