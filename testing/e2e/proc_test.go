package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// vmledgerBin is the binary TestMain builds from ./cmd/vmledger, and
// binarySources the files of this module it is built from.
var (
	vmledgerBin   string
	binarySources []string
)

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go env GOMOD: %v\n", err)
		return 1
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if binarySources, err = sourcesOf(root, "./cmd/vmledger"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "vmledger-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	vmledgerBin = filepath.Join(dir, "vmledger")
	build := exec.Command("go", "build", "-o", vmledgerBin, "./cmd/vmledger")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build -o %s ./cmd/vmledger (in %s): %v\n%s", vmledgerBin, root, err, out)
		return 1
	}
	return m.Run()
}

// sourcesOf lists the files of the main module that go into the binary of
// package pkg, and go.mod and go.sum (which pin every other file).
func sourcesOf(root, pkg string) ([]string, error) {
	list := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,CgoFiles,EmbedFiles,Module", pkg)
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %w", pkg, err)
	}
	files := []string{filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			Dir                           string
			GoFiles, CgoFiles, EmbedFiles []string
			Module                        *struct{ Main bool }
		}
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("go list -deps %s: %w", pkg, err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		for _, f := range slices.Concat(p.GoFiles, p.CgoFiles, p.EmbedFiles) {
			files = append(files, filepath.Join(p.Dir, f))
		}
	}
	return files, nil
}

// statSources stats every file the binary is built from, once per test
// process. The test binary does not import ./cmd/vmledger, so without this
// `go test` would replay a cached result after the product changed: it
// reruns a cached test only when a file the test opened or stat'ed changed.
var statSources = sync.OnceFunc(func() {
	for _, f := range binarySources {
		os.Stat(f)
	}
})

// Bounds on waiting. They only stop a broken test from hanging; no test
// asserts how long anything takes.
const (
	readyTimeout   = 30 * time.Second // a server comes up, a first checkpoint is published
	commandTimeout = 2 * time.Minute  // one command-line invocation
	stopTimeout    = 20 * time.Second // a server shuts down after SIGTERM
	pollInterval   = 20 * time.Millisecond
)

// result is the outcome of one vmledger invocation that ran to its end.
type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r *result) String() string {
	return fmt.Sprintf("vmledger %s\nexit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// vmledger runs the binary to its end and returns what it did. It fails
// the test only if the process could not be run or did not finish within
// commandTimeout.
func vmledger(t *testing.T, args ...string) *result {
	t.Helper()
	return vmledgerStdin(t, "", args...)
}

// vmledgerStdin is vmledger with stdin as the process's standard input.
func vmledgerStdin(t *testing.T, stdin string, args ...string) *result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vmledgerBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := &result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("vmledger %s: did not finish within %v\n%s", strings.Join(args, " "), commandTimeout, r)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("vmledger %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustRun runs vmledger and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) *result {
	t.Helper()
	r := vmledger(t, args...)
	if r.code != 0 {
		t.Fatalf("vmledger %s: exit %d, want 0\n%s", args[0], r.code, r)
	}
	return r
}

// proc is a long-running vmledger process (a server). Its stdout and stderr
// go to files that are printed if the test fails; it is killed when the
// test ends.
type proc struct {
	t              *testing.T
	name           string
	cmd            *exec.Cmd
	stdout, stderr string // paths
	exited         chan struct{}
	waitErr        error // valid once exited is closed
}

// startProc starts vmledger with args (logs as JSON on stderr) and
// registers its cleanup: kill it if it still runs, print its output if the
// test failed.
func startProc(t *testing.T, logDir, name string, args ...string) *proc {
	t.Helper()
	p := &proc{
		t:      t,
		name:   name,
		stdout: filepath.Join(logDir, name+".stdout"),
		stderr: filepath.Join(logDir, name+".stderr"),
		exited: make(chan struct{}),
	}
	outf, err := os.Create(p.stdout)
	if err != nil {
		t.Fatal(err)
	}
	defer outf.Close()
	errf, err := os.Create(p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	p.cmd = exec.Command(vmledgerBin, append([]string{"--log-format", "json"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = outf, errf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		if p.running() {
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s: vmledger %s\n%s", name, strings.Join(args, " "), p.output())
		}
	})
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// output returns what the process wrote so far.
func (p *proc) output() string {
	out, _ := os.ReadFile(p.stdout)
	errb, _ := os.ReadFile(p.stderr)
	return fmt.Sprintf("--- %s stdout\n%s--- %s stderr\n%s", p.name, out, p.name, errb)
}

// stop sends SIGTERM and waits for the process to exit; it returns the
// process's exit code.
func (p *proc) stop() int {
	p.t.Helper()
	return p.signal(syscall.SIGTERM)
}

// kill sends SIGKILL and waits for the process to exit.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
}

func (p *proc) signal(sig syscall.Signal) int {
	p.t.Helper()
	if !p.running() {
		p.t.Fatalf("%s exited before it was stopped: %v\n%s", p.name, p.waitErr, p.output())
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signalling %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.exited
		p.t.Fatalf("%s did not exit within %v of %v\n%s", p.name, stopTimeout, sig, p.output())
	}
	return p.cmd.ProcessState.ExitCode()
}

// errExited says that a process ended while the test waited for it.
var errExited = errors.New("the process exited")

// logLine waits until the process logs a JSON line whose msg is msg and
// returns that line's attributes. It returns errExited if the process ends
// first.
func (p *proc) logLine(msg string) (map[string]any, error) {
	p.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		if attrs := findLogLine(p.stderr, msg); attrs != nil {
			return attrs, nil
		}
		if !p.running() {
			// It may have logged the line just before exiting.
			if attrs := findLogLine(p.stderr, msg); attrs != nil {
				return attrs, nil
			}
			return nil, fmt.Errorf("%s: %w (%v) before logging %q", p.name, errExited, p.waitErr, msg)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not log %q within %v\n%s", p.name, msg, readyTimeout, p.output())
		}
		time.Sleep(pollInterval)
	}
}

// findLogLine returns the attributes of the first slog JSON line in path
// whose msg is msg, or nil.
func findLogLine(path, msg string) map[string]any {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var attrs map[string]any
		if json.Unmarshal(sc.Bytes(), &attrs) == nil && attrs["msg"] == msg {
			return attrs
		}
	}
	return nil
}

// listenAddr waits for the process's "… serving" log line and returns its
// addr attribute.
func (p *proc) listenAddr(msg string) (string, error) {
	p.t.Helper()
	attrs, err := p.logLine(msg)
	if err != nil {
		return "", err
	}
	addr, _ := attrs["addr"].(string)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.t.Fatalf("%s logged %q with addr %q: %v", p.name, msg, addr, err)
	}
	return addr, nil
}

// waitHTTP polls url until it answers 200 OK, failing the test if the
// process exits or readyTimeout passes first.
func (p *proc) waitHTTP(url string) {
	p.t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	last := "no answer yet"
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if !p.running() {
			p.t.Fatalf("%s exited (%v) while waiting for GET %s\n%s", p.name, p.waitErr, url, p.output())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("GET %s: not 200 OK within %v (last: %s)\n%s", url, readyTimeout, last, p.output())
		}
		time.Sleep(pollInterval)
	}
}

// freePort returns a port that was free on 127.0.0.1 a moment ago. Whoever
// uses it must retry on a collision.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeFile writes data to path with mode perm.
func writeFile(t *testing.T, path string, data []byte, perm os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	return path
}
