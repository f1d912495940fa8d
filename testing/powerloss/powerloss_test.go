package powerloss

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

// write creates or replaces the file at p with s and fsyncs it if sync.
func write(t *testing.T, p, s string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func appendTo(t *testing.T, p, s string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

// read returns the file's content, or "<missing>".
func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mmapWrite writes s at the start of the file through a shared mapping of
// its first page, and msyncs it if sync. It runs in a child process: a
// page fault on the mount from this process could wait for the FUSE server
// while the Go runtime stops the world, the server included.
func mmapWrite(t *testing.T, p, s string, sync bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMmapChild$")
	cmd.Env = append(os.Environ(), "POWERLOSS_MMAP_FILE="+p, "POWERLOSS_MMAP_DATA="+s, fmt.Sprintf("POWERLOSS_MMAP_SYNC=%t", sync))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mmap child: %v\n%s", err, out)
	}
}

// TestMmapChild is mmapWrite's child process.
func TestMmapChild(t *testing.T) {
	p := os.Getenv("POWERLOSS_MMAP_FILE")
	if p == "" {
		t.Skip("run by mmapWrite")
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	copy(m, os.Getenv("POWERLOSS_MMAP_DATA"))
	if os.Getenv("POWERLOSS_MMAP_SYNC") == "true" {
		if err := unix.Msync(m, unix.MS_SYNC); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCut(t *testing.T) {
	page := string(make([]byte, 4096))
	for _, tc := range []struct {
		name string
		// before runs and is made durable (files and directories synced
		// by the case itself); then during runs, then the power is cut.
		before, during func(t *testing.T, d string)
		path           string
		want           string
	}{{
		name: "unsynced rename is lost",
		before: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "a"), "old", true)
			syncDir(t, d)
		},
		during: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "a.tmp"), "new", true)
			if err := os.Rename(filepath.Join(d, "a.tmp"), filepath.Join(d, "a")); err != nil {
				t.Fatal(err)
			}
		},
		path: "a", want: "old",
	}, {
		name: "synced rename is kept",
		before: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "a"), "old", true)
			syncDir(t, d)
		},
		during: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "a.tmp"), "new", true)
			if err := os.Rename(filepath.Join(d, "a.tmp"), filepath.Join(d, "a")); err != nil {
				t.Fatal(err)
			}
			syncDir(t, d)
		},
		path: "a", want: "new",
	}, {
		name: "rename of an unsynced file leaves it empty",
		before: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "a"), "old", true)
			syncDir(t, d)
		},
		during: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "a.tmp"), "new", false)
			if err := os.Rename(filepath.Join(d, "a.tmp"), filepath.Join(d, "a")); err != nil {
				t.Fatal(err)
			}
			syncDir(t, d)
		},
		path: "a", want: "",
	}, {
		name: "unsynced append is lost",
		before: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "log"), "one ", true)
			syncDir(t, d)
		},
		during: func(t *testing.T, d string) { appendTo(t, filepath.Join(d, "log"), "two", false) },
		path:   "log", want: "one ",
	}, {
		name: "synced append is kept",
		before: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "log"), "one ", true)
			syncDir(t, d)
		},
		during: func(t *testing.T, d string) { appendTo(t, filepath.Join(d, "log"), "two", true) },
		path:   "log", want: "one two",
	}, {
		name:   "new file in an unsynced directory is lost",
		during: func(t *testing.T, d string) { write(t, filepath.Join(d, "new"), "x", true) },
		path:   "new", want: "<missing>",
	}, {
		name: "new directory not synced into its parent is lost with its files",
		during: func(t *testing.T, d string) {
			sub := filepath.Join(d, "sub")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(sub, "f"), "x", true)
			syncDir(t, sub)
		},
		path: "sub/f", want: "<missing>",
	}, {
		name: "new directory synced into its parent keeps its synced files",
		during: func(t *testing.T, d string) {
			sub := filepath.Join(d, "sub")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			syncDir(t, d)
			write(t, filepath.Join(sub, "f"), "x", true)
			syncDir(t, sub)
		},
		path: "sub/f", want: "x",
	}, {
		name: "unsynced unlink is undone",
		before: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "a"), "kept", true)
			syncDir(t, d)
		},
		during: func(t *testing.T, d string) {
			if err := os.Remove(filepath.Join(d, "a")); err != nil {
				t.Fatal(err)
			}
		},
		path: "a", want: "kept",
	}, {
		name: "unsynced truncate is undone",
		before: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "a"), "0123456789", true)
			syncDir(t, d)
		},
		during: func(t *testing.T, d string) {
			if err := os.Truncate(filepath.Join(d, "a"), 3); err != nil {
				t.Fatal(err)
			}
		},
		path: "a", want: "0123456789",
	}, {
		name: "mmap write without msync is lost",
		before: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "m"), page, true)
			syncDir(t, d)
		},
		during: func(t *testing.T, d string) { mmapWrite(t, filepath.Join(d, "m"), "mapped", false) },
		path:   "m", want: page,
	}, {
		name: "mmap write with msync is kept",
		before: func(t *testing.T, d string) {
			write(t, filepath.Join(d, "m"), page, true)
			syncDir(t, d)
		},
		during: func(t *testing.T, d string) { mmapWrite(t, filepath.Join(d, "m"), "mapped", true) },
		path:   "m", want: "mapped" + page[6:],
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := New(t)
			if tc.before != nil {
				tc.before(t, f.Dir())
			}
			tc.during(t, f.Dir())
			if err := f.Restart(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := read(t, filepath.Join(f.Dir(), tc.path)); got != tc.want {
				t.Errorf("after the cut %s = %q, want %q", tc.path, short(got), short(tc.want))
			}
		})
	}
}

func short(s string) string {
	if len(s) > 40 {
		return s[:20] + "…" + s[len(s)-10:]
	}
	return s
}

// TestNothingDurableAfterCut: fsyncs between Cut and Restart change
// nothing.
func TestNothingDurableAfterCut(t *testing.T) {
	f := New(t)
	p := filepath.Join(f.Dir(), "a")
	write(t, p, "before", true)
	syncDir(t, f.Dir())
	f.Cut()
	write(t, p, "after", true)
	syncDir(t, f.Dir())
	write(t, filepath.Join(f.Dir(), "b"), "after", true)
	syncDir(t, f.Dir())
	if err := f.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := read(t, p); got != "before" {
		t.Errorf("a = %q, want %q", got, "before")
	}
	if got := read(t, filepath.Join(f.Dir(), "b")); got != "<missing>" {
		t.Errorf("b = %q, want it missing", got)
	}
	// And the FS works on after the restart: a second round.
	write(t, p, "second", true)
	if err := f.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := read(t, p); got != "second" {
		t.Errorf("after a second cut a = %q, want %q", got, "second")
	}
}
