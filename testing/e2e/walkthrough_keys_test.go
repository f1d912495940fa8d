package e2e

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestWalkthroughKeysTwice runs the key-generation lines of README.md's
// walkthrough (cmd/vmledger/demodata/walkthrough.sh, which
// TestDemoWalkthrough holds equal to the README) twice in the same
// directory, as someone walking through it again would. The second run
// must stop, and leave every key and verifier key file exactly as the first
// run wrote it: no file truncated, none empty.
func TestWalkthroughKeysTwice(t *testing.T) {
	walk, err := os.ReadFile("../../cmd/vmledger/demodata/walkthrough.sh")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for line := range strings.Lines(string(walk)) {
		if strings.Contains(line, "vmledger keygen") {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		t.Fatal("the walkthrough has no vmledger keygen line any more: update this test")
	}
	script := strings.Join(lines, "")
	dir := t.TempDir()
	run := func() ([]byte, error) {
		cmd := exec.CommandContext(t.Context(), "bash", "-e", "-o", "pipefail", "-c", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(vmledgerBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
		return cmd.CombinedOutput()
	}
	if out, err := run(); err != nil {
		t.Fatalf("first run of the walkthrough's keygen lines: %v\n%s\n--- script\n%s", err, out, script)
	}
	first := readDir(t, dir)
	if len(first) < 2 {
		t.Fatalf("the keygen lines wrote %d files: %v", len(first), slices.Sorted(maps.Keys(first)))
	}
	for name, b := range first {
		if len(bytes.TrimSpace(b)) == 0 {
			t.Errorf("first run: %s is empty", name)
		}
	}
	out, err := run()
	if err == nil {
		t.Errorf("second run of the walkthrough's keygen lines in the same directory succeeded; keygen should refuse existing files\n%s", out)
	}
	second := readDir(t, dir)
	for name, b := range first {
		if got, ok := second[name]; !ok || !bytes.Equal(got, b) {
			t.Errorf("the second run changed %s: %d bytes, was %d (%s)", name, len(got), len(b), out)
		}
	}
	for name := range second {
		if _, ok := first[name]; !ok {
			t.Errorf("the second run left a new file %s", name)
		}
	}
}

// readDir returns the regular files of dir by name.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}
