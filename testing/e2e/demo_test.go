package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs `vmledger demo` as a user would and checks that it tells
// both halves of the story: the launch that verifies and the tampered one
// that is refused with its reason and aborted.
func TestDemo(t *testing.T) {
	statSources()
	r := vmledger(t, "demo")
	if r.code != 0 {
		t.Fatalf("vmledger demo: exit %d, want 0\n%s", r.code, r)
	}
	for _, want := range []string{
		"agent: the bundle verifies → ✓ launch web01",
		"VERIFIED: VM web01",
		`kernel.cmdline: "console=ttyS0,115200n8 root=/dev/vda1 ro quiet init=/bin/sh"`,
		"✗ 9. configuration          attested configuration is not the expected one",
		"REFUSED: see the failed checks above",
		"agent: attestation failed, launch aborted: the attestation does not verify: attested configuration is not the expected one",
		"── 6. Run the parts as separate processes",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("vmledger demo printed no %q\n%s", want, r)
		}
	}
}

// demoWalkthrough is the command text at the end of the demo's output,
// without its indentation.
func demoWalkthrough(t *testing.T, out string) string {
	t.Helper()
	_, tail, ok := strings.Cut(out, "── 6. Run the parts as separate processes")
	if !ok {
		t.Fatalf("vmledger demo printed no closing commands:\n%s", out)
	}
	var b strings.Builder
	for _, l := range strings.Split(tail, "\n") {
		switch {
		case l == "":
			b.WriteString("\n")
		case strings.HasPrefix(l, "  "):
			b.WriteString(strings.TrimPrefix(l, "  ") + "\n")
		}
	}
	return strings.Trim(b.String(), "\n") + "\n"
}

// TestDemoWalkthrough runs the commands `vmledger demo` ends with, which
// are README.md's walkthrough, in bash as a person pasting them would: on
// free ports instead of 8080, 7001-7003 and 2321-2322, in a temporary
// directory instead of /tmp/vmledger-run, and with the binary this package
// built instead of the walkthrough's own `go build`. It checks that the
// VM launches, the customer's verification and monitor pass, and that the
// last line leaves no process behind.
func TestDemoWalkthrough(t *testing.T) {
	statSources()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("VMLEDGER_REQUIRE_SWTPM") == "1" {
			t.Fatalf("swtpm not found in PATH and VMLEDGER_REQUIRE_SWTPM=1: install it (apt-get install swtpm): %v", err)
		}
		t.Skipf("the walkthrough runs swtpm, which is not installed (apt-get install swtpm): %v", err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skipf("the walkthrough waits for the log with curl, which is not installed: %v", err)
	}
	walk := demoWalkthrough(t, mustRun(t, "demo").stdout)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```sh\n"+walk+"```\n") {
		t.Errorf("README.md does not hold the demo's closing commands verbatim; they are:\n%s", walk)
	}

	dir := filepath.Join(t.TempDir(), "run")
	port := func() string { return strconv.Itoa(freePort(t)) }
	swtpmPort, swtpmCtrl := port(), port()
	repl := []string{
		"go build -o /tmp/vmledger-run/vmledger ./cmd/vmledger", "cp " + vmledgerBin + " " + dir + "/vmledger",
		"/tmp/vmledger-run", dir,
		"127.0.0.1:8080", "127.0.0.1:" + port(),
		"127.0.0.1:7001", "127.0.0.1:" + port(),
		"127.0.0.1:7002", "127.0.0.1:" + port(),
		"127.0.0.1:7003", "127.0.0.1:" + port(),
		"127.0.0.1:2321", "127.0.0.1:" + swtpmPort,
		"port=2321", "port=" + swtpmPort,
		"port=2322", "port=" + swtpmCtrl,
	}
	for i := 0; i < len(repl); i += 2 {
		if !strings.Contains(walk, repl[i]) {
			t.Fatalf("the walkthrough no longer says %q: update this test's rewriting", repl[i])
		}
	}
	script := strings.NewReplacer(repl...).Replace(walk)
	for _, fixed := range []string{":8080", ":700", "2321", "2322", "/tmp/vmledger-run", "go build"} {
		if strings.Contains(script, fixed) {
			t.Fatalf("the rewritten walkthrough still uses %q: a new fixed port or path needs rewriting here\n%s", fixed, script)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = "../.." // the repository's root, as the walkthrough says
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) }) // whatever the script left running
	if err := cmd.Wait(); errors.Is(err, exec.ErrWaitDelay) {
		t.Fatalf("the walkthrough ended but its background processes kept running (its last line should stop them)\n%s", out.String())
	} else if err != nil {
		t.Fatalf("the walkthrough failed: %v\n%s\n--- script\n%s", err, out.String(), script)
	}
	got := out.String()
	for _, want := range []string{
		"qemu-system-x86_64 -name web01\n", // what /bin/echo printed: the agent launched the VM
		"VERIFIED: VM web01",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the walkthrough printed no %q\n%s", want, got)
		}
	}
	if n := strings.Count(got, "VERIFIED: VM web01"); n != 2 {
		t.Errorf("the walkthrough printed VERIFIED %d times, want 2 (agent launch, customer verify)\n%s", n, got)
	}
	if strings.Contains(got, "ALERT") {
		t.Errorf("the monitor alerted on the walkthrough's own VM\n%s", got)
	}
	// The last line stops every server: none of the script's processes
	// may outlive it for long.
	deadline := time.Now().Add(stopTimeout)
	for {
		err := syscall.Kill(-pgid, 0)
		if errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the walkthrough still run %v after it ended (its last line should stop them): kill(-%d, 0) = %v", stopTimeout, pgid, err)
		}
		time.Sleep(pollInterval)
	}
}
