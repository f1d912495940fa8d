// Package swtpmtest runs a real swtpm process for tests: a software TPM 2.0
// (Debian package swtpm) on free loopback ports with its state in a directory
// that outlives restarts, so tests can kill it (also with SIGKILL) and start
// it again on the same state.
//
// If swtpm is not installed, Start skips the test with a message, unless the
// environment sets VMLEDGER_REQUIRE_SWTPM=1 (CI does): then it fails.
package swtpmtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Swtpm is a running (or stopped) swtpm with a persistent state directory.
type Swtpm struct {
	t   testing.TB
	bin string
	// StateDir holds the TPM state across restarts.
	StateDir string
	// Addr is the server (TPM command) address of the running process; the
	// control channel is on the next port.
	Addr string

	proc   *os.Process
	exited chan error
}

// Start starts swtpm with a new state directory under t.TempDir and kills it
// when the test ends.
func Start(t testing.TB) *Swtpm {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv("VMLEDGER_REQUIRE_SWTPM") == "1" {
			t.Fatalf("swtpm not found in PATH and VMLEDGER_REQUIRE_SWTPM=1: install it (apt-get install swtpm): %v", err)
		}
		t.Skipf("swtpm not found in PATH (apt-get install swtpm; VMLEDGER_REQUIRE_SWTPM=1 makes this a failure): %v", err)
	}
	s := &Swtpm{t: t, bin: bin, StateDir: t.TempDir()}
	s.Restart()
	t.Cleanup(func() {
		if s.proc != nil {
			s.Kill()
		}
	})
	return s
}

// Restart starts swtpm again on the same state (after Kill or Stop), on
// fresh free ports; Addr changes.
func (s *Swtpm) Restart() {
	s.t.Helper()
	if s.proc != nil {
		s.t.Fatalf("swtpmtest: Restart while swtpm is running")
	}
	var lastLog []byte
	for attempt := 0; attempt < 5; attempt++ {
		port := freePortPair(s.t)
		logf, err := os.CreateTemp(s.t.TempDir(), "swtpm-*.log")
		if err != nil {
			s.t.Fatal(err)
		}
		cmd := exec.Command(s.bin, "socket", "--tpm2",
			"--tpmstate", "dir="+s.StateDir,
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
			"--flags", "not-need-init,startup-clear")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			s.t.Fatalf("swtpmtest: starting swtpm: %v", err)
		}
		logf.Close()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if waitReady(addr, exited) {
			s.proc, s.exited, s.Addr = cmd.Process, exited, addr
			return
		}
		cmd.Process.Kill()
		<-exited
		lastLog, _ = os.ReadFile(logf.Name())
	}
	s.t.Fatalf("swtpmtest: swtpm did not start: %s", lastLog)
}

// waitReady waits until addr accepts connections or the process exits. It
// polls; no test asserts on how long this takes.
func waitReady(addr string, exited chan error) bool {
	for i := 0; i < 500; i++ {
		select {
		case err := <-exited:
			exited <- err
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Kill sends SIGKILL and waits for the process to exit: no shutdown, no
// chance to save anything that is not already on disk.
func (s *Swtpm) Kill() { s.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits for the process to exit.
func (s *Swtpm) Stop() { s.signal(syscall.SIGTERM) }

func (s *Swtpm) signal(sig syscall.Signal) {
	s.t.Helper()
	if s.proc == nil {
		s.t.Fatalf("swtpmtest: swtpm is not running")
	}
	if err := s.proc.Signal(sig); err != nil {
		s.t.Fatalf("swtpmtest: signalling swtpm: %v", err)
	}
	<-s.exited
	s.proc, s.exited = nil, nil
}

// freePortPair returns a port p such that p and p+1 were free on 127.0.0.1.
func freePortPair(t testing.TB) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l1.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		l1.Close()
		if err == nil {
			l2.Close()
			return p
		}
	}
	t.Fatal("swtpmtest: no two consecutive free ports")
	return 0
}
