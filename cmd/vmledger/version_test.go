package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// TestVersionCommand: `vmledger version` and `vmledger --version` print the
// same one line, naming the module version this binary was built from.
func TestVersionCommand(t *testing.T) {
	out, err := runLogCmd(t.Context(), "version")
	if err != nil {
		t.Fatalf("vmledger version = %v", err)
	}
	flag, err := runLogCmd(t.Context(), "--version")
	if err != nil {
		t.Fatalf("vmledger --version = %v", err)
	}
	if out != flag {
		t.Errorf("version printed %q, --version %q: want the same", out, flag)
	}
	if !strings.HasPrefix(out, "vmledger ") || strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("version printed %q, want one line starting with \"vmledger \"", out)
	}
}

func TestVersionLine(t *testing.T) {
	stamped := []debug.BuildSetting{
		{Key: "-buildmode", Value: "exe"},
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "false"},
	}
	modified := append(slices.Clone(stamped[:4]), debug.BuildSetting{Key: "vcs.modified", Value: "true"})
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"released", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.4.1"}, Settings: stamped},
			"vmledger v0.4.1 go1.26.8, revision 0123456789abcdef0123456789abcdef01234567 2026-12-01T10:00:00Z"},
		{"checkout with changes", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: modified},
			"vmledger (devel) go1.26.8, revision 0123456789abcdef0123456789abcdef01234567 2026-12-01T10:00:00Z with uncommitted changes"},
		{"no VCS stamping", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: stamped[:1]},
			"vmledger (devel) go1.26.8, revision unknown (built without VCS stamping)"},
		{"no build info", nil, "vmledger (unknown version: the binary carries no build info)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionLine(tc.bi); got != tc.want {
				t.Errorf("versionLine = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestVersionOfABuiltBinary builds the real binary with VCS stamping and
// checks that `vmledger version` and `--version` name the commit that
// `git rev-parse HEAD` names and `go version -m` reads from the binary. Go
// stamps only a checkout whose .git is a directory, not a git worktree.
func TestVersionOfABuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout (git rev-parse: %v)", err)
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !fi.IsDir() {
		t.Skip("a git worktree (.git is a file): go build does not stamp VCS information there")
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := strings.TrimSpace(string(head))
	bin := filepath.Join(t.TempDir(), "vmledger")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(info), "vcs.revision="+rev) {
		t.Fatalf("go version -m does not show vcs.revision=%s:\n%s", rev, info)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("vmledger %s: %v", args[0], err)
		}
		if !strings.Contains(string(out), rev) {
			t.Errorf("vmledger %s printed %q, want the revision %s", args[0], out, rev)
		}
	}
}
