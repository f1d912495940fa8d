package main

import (
	"context"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/vmledger/vmledger/coproc/spec"
)

// TestMain lets the test binary run as the vmledger command: the scripts'
// `exec vmledger …` start this binary as a separate process that runs main.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"vmledger": main})
}

// TestScripts runs the command-line scripts in testdata/script: each is a
// txtar archive whose commands run the real binary and pin its exit codes,
// reports and JSON output. Scripts that need a log start `vmledger log
// serve` (and a witness) in the background on free loopback ports, with a
// software co-processor, and make their keys themselves.
//
// Besides testscript's own commands, the scripts have:
//
//	exits N PROG [ARGS…]  run PROG and require exit status N (0 included)
//	freeport VAR…         set each VAR to a free TCP port on 127.0.0.1
//	waitfor URL           wait (up to 30 s) until GET URL answers 200
//	envfile VAR FILE      set VAR to FILE's content without surrounding space
//	expand SRC DST        write SRC to DST with $VAR and ${VAR} replaced
//	pem SRC DST           write the first PEM block of SRC (or stdout) to DST
//	replace FILE OLD NEW  replace the one occurrence of OLD in FILE by NEW
//
// and the condition [sim]: the in-process TPM simulator is built in.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"exits":    cmdExits,
			"freeport": cmdFreeport,
			"waitfor":  cmdWaitfor,
			"envfile":  cmdEnvfile,
			"expand":   cmdExpand,
			"pem":      cmdPEM,
			"replace":  cmdReplace,
		},
		Condition: func(cond string) (bool, error) {
			if cond != "sim" {
				return false, errors.New("unknown condition " + cond)
			}
			return haveSimulator()
		},
	})
}

// haveSimulator reports whether this build has the in-process TPM
// simulator (it needs cgo), trying it once.
var haveSimulator = sync.OnceValues(func() (bool, error) {
	c, err := spec.Open(context.Background(), spec.Spec{Kind: spec.Sim}, spec.Options{})
	if errors.Is(err, spec.ErrNoSimulator) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, c.Close()
})

func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

func cmdFreeport(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: freeport VAR...")
	}
	for _, v := range args {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		ts.Setenv(v, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		ln.Close()
	}
}

func cmdWaitfor(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfor URL")
	}
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(args[0])
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not answer 200 within 30s (last: %v)", args[0], err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cmdEnvfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: envfile VAR FILE")
	}
	ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
}

func cmdExpand(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: expand SRC DST")
	}
	out := os.Expand(ts.ReadFile(args[0]), ts.Getenv)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(out), 0o644))
}

func cmdPEM(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: pem SRC DST")
	}
	b, _ := pem.Decode([]byte(ts.ReadFile(args[0])))
	if b == nil {
		ts.Fatalf("%s holds no PEM block", args[0])
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), pem.EncodeToMemory(b), 0o644))
}

func cmdReplace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	s := ts.ReadFile(args[0])
	if n := strings.Count(s, args[1]); n != 1 {
		ts.Fatalf("%s holds %q %d times, want once", args[0], args[1], n)
	}
	s = strings.Replace(s, args[1], args[2], 1)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(s), 0o644))
}
