// Package crash runs vmledger's real binaries as child processes, kills
// them with SIGKILL at random moments, and checks from the outside what a
// customer would check: every acknowledged entry is in the log at its
// acknowledged index, every checkpoint the log ever published is a prefix of
// the final tree, and a witness never goes back on what it cosigned.
//
// The tests of this package are the crash, full-disk and overload tests of
// issue 11. The helpers here (building the binary, starting and killing a
// process, reading a log's entries through its tiles, an in-memory RFC 6962
// tree) are also used by testing/hostile.
//
// Everything listens on 127.0.0.1 with port 0; the address a process really
// got is read from its "serving" log line (JSON logs on stderr).
package crash

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build compiles ./cmd/vmledger of this module into dir and returns the
// binary's path. It needs the go command on PATH (or in GOROOT/bin).
func Build(ctx context.Context, dir string) (string, error) {
	gocmd := "go"
	if _, err := exec.LookPath(gocmd); err != nil {
		gocmd = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(gocmd); err != nil {
			gocmd = "/usr/local/go/bin/go"
		}
	}
	bin := filepath.Join(dir, "vmledger")
	cmd := exec.CommandContext(ctx, gocmd, "build", "-o", bin, "github.com/vmledger/vmledger/cmd/vmledger")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/vmledger: %w\n%s", err, out)
	}
	return bin, nil
}

// StartTimeout bounds how long Start waits for a process's "serving" line.
// It is a readiness bound, not a performance assertion: a slow machine
// makes it wait longer, never fail sooner.
const StartTimeout = 2 * time.Minute

// Process is a running vmledger server.
type Process struct {
	Addr string // host:port it listens on
	URL  string // "http://" + Addr

	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// Start runs bin with args (which must include --log-format json) and
// appends its stderr to logPath. It returns once the process logged the
// message serving ("log serving" or "witness serving") with its address.
func Start(ctx context.Context, bin, logPath, serving string, args ...string) (*Process, error) {
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(lf, "=== start %s %s\n", filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = io.Discard
	pr, pw, err := os.Pipe()
	if err != nil {
		lf.Close()
		return nil, err
	}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		lf.Close()
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	pw.Close()
	p := &Process{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	addr := make(chan string, 1)
	var copied sync.WaitGroup
	copied.Add(1)
	go func() {
		defer copied.Done()
		defer lf.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			lf.Write(append(line, '\n'))
			var m struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &m) == nil && m.Msg == serving && m.Addr != "" {
				select {
				case addr <- m.Addr:
				default:
				}
			}
		}
		io.Copy(lf, pr)
		pr.Close()
	}()
	go func() {
		copied.Wait()
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	timer := time.NewTimer(StartTimeout)
	defer timer.Stop()
	select {
	case a := <-addr:
		p.Addr, p.URL = a, "http://"+a
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before serving (%v); its log: %s\n%s", filepath.Base(bin), p.waitErr, logPath, tail(logPath, 20))
	case <-ctx.Done():
		p.Kill()
		return nil, ctx.Err()
	case <-timer.C:
		p.Kill()
		return nil, fmt.Errorf("%s did not log %q within %v; its log: %s\n%s", filepath.Base(bin), serving, StartTimeout, logPath, tail(logPath, 20))
	}
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to a minute for a clean exit (then kills).
// It returns the exit error, nil for exit status 0.
func (p *Process) Stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(time.Minute):
		p.Kill()
		return errors.New("did not stop within a minute of SIGTERM; killed")
	}
}

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Log is everything the process (and its earlier runs on the same file)
// wrote to stderr.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// crashReport returns the first lines of a Go panic or fatal error in the
// log at path (the reason and the crashing goroutine), or its tail.
func crashReport(path string) string {
	b, _ := os.ReadFile(path)
	s := string(b)
	for _, marker := range []string{"\npanic: ", "\nfatal error: ", "\nunexpected fault address", "\nSIGBUS", "\nSIGSEGV"} {
		if i := strings.Index(s, marker); i >= 0 {
			lines := strings.SplitN(s[i+1:], "\n", 16)
			if len(lines) > 15 {
				lines = lines[:15]
			}
			return strings.Join(lines, "\n")
		}
	}
	return tail(path, 30)
}
