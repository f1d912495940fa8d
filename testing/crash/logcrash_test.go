package crash

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coproc/soft"
	"github.com/vmledger/vmledger/testing/powerloss"
)

// TestLogCrash kills `vmledger log serve` with SIGKILL at random moments
// while co-processors admit attestations concurrently, restarts it on the
// same data directory, and after every restart checks the whole log (see
// checkAfterRestart). Every fourth time it is also killed once while it
// starts (0–300 ms after exec, mostly during recovery).
// VMLEDGER_CRASH_KILLS sets the number of kills (default 20).
func TestLogCrash(t *testing.T) {
	testLogCrash(t, 0, nil)
}

// TestLogCrashWitnessed is TestLogCrash with three `vmledger witness serve`
// processes and a 2-of-3 --witness-policy: only cosigned checkpoints are
// published, so the log is killed also between signing a checkpoint and
// publishing it.
func TestLogCrashWitnessed(t *testing.T) {
	testLogCrash(t, 3, nil)
}

// TestLogPowerLoss is TestLogCrash with the log's data directory on a
// power-loss file system (package powerloss): after every kill the power
// is cut too, so everything the log had not fsynced — file content and
// directory entries — is gone when it restarts. Its data directory is
// created on the mount by the log itself. VMLEDGER_POWERLOSS_CUTS sets the
// number of cuts (default 20).
func TestLogPowerLoss(t *testing.T) {
	testLogCrash(t, 0, powerloss.New(t))
}

// testLogCrash runs the log crash test; with power set, the data directory
// is on it and every kill is also a power cut.
func testLogCrash(t *testing.T, witnesses int, power *powerloss.FS) {
	kills := envInt(t, "VMLEDGER_CRASH_KILLS", 20)
	data := ""
	if power != nil {
		kills = envInt(t, "VMLEDGER_POWERLOSS_CUTS", 20)
		data = filepath.Join(power.Dir(), "data")
	}
	ctx := t.Context()
	dir := t.TempDir()
	hc := &http.Client{Timeout: time.Minute}
	start := time.Now()
	cut := func(k int) {
		if power == nil {
			return
		}
		if err := power.Restart(ctx); err != nil {
			t.Fatalf("kill %d: cutting the power: %v", k+1, err)
		}
	}

	srv, err := NewLogServer(ctx, vmledgerBin, dir, data)
	if err != nil {
		t.Fatal(err)
	}
	if witnesses > 0 {
		var pol strings.Builder
		fmt.Fprintf(&pol, "log %s\n", srv.VKey)
		var names []string
		for i := range witnesses {
			name := fmt.Sprintf("w%d", i+1)
			w, err := NewWitnessServer(ctx, vmledgerBin, filepath.Join(dir, name), "vmledger.test/"+name, []string{srv.VKey}, "--rate", "0")
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(w.Proc.Kill)
			fmt.Fprintf(&pol, "witness %s %s %s/\n", name, w.VKey, w.Proc.URL)
			names = append(names, name)
		}
		fmt.Fprintf(&pol, "group quorum-group 2 %s\nquorum quorum-group\n", strings.Join(names, " "))
		polFile := filepath.Join(dir, "witnesses.policy")
		if err := writeFile(polFile, pol.String()); err != nil {
			t.Fatal(err)
		}
		srv.Args = append(srv.Args, "--witness-policy", polFile)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Proc.Kill() })

	const workers = 4
	var cps []*coprocessor
	for i := range workers + 1 { // the last one is the probe
		alg := soft.Ed25519
		if i%2 == 1 {
			alg = soft.ECDSAP256
		}
		c := newCoprocessor(t, filepath.Join(dir, fmt.Sprintf("coproc-%d", i)), alg)
		if _, err := srv.Enrol(ctx, hc, fmt.Sprintf("host-%d", i), c.cp.PublicKey()); err != nil {
			t.Fatalf("enrolling host-%d: %v", i, err)
		}
		cps = append(cps, c)
	}
	probe := cps[workers]

	led := newLedger()
	g := newGate(srv.URL())
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { work(ctx, g, hc, cps[i], fmt.Sprintf("vm-%d", i), led, srv) })
	}
	// A reader that collects every checkpoint the log publishes.
	wg.Go(func() {
		for ctx.Err() == nil {
			base, ok := g.enter()
			if !ok {
				return
			}
			if b, err := Get(ctx, hc, base+"/checkpoint"); err == nil {
				led.saw(b)
			}
			g.leave()
			time.Sleep(10 * time.Millisecond)
		}
	})
	defer func() {
		g.stop()
		wg.Wait()
	}()

	survived, recoveryKills := 0, 0
	for k := range kills {
		// A random moment: somewhere in the next 30–600 ms of admissions.
		time.Sleep(time.Duration(30+rand.IntN(570)) * time.Millisecond)
		srv.Proc.Kill()
		cut(k)
		g.pause()
		if k%4 == 3 { // and once more while it recovers
			if err := srv.KillDuringStart(ctx, time.Duration(rand.IntN(300))*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			cut(k)
			recoveryKills++
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatalf("kill %d: restarting the log: %v", k+1, err)
		}
		checkAfterRestart(t, fmt.Sprintf("after kill %d", k+1), hc, srv, led, cps[0], probe)
		if t.Failed() {
			t.Logf("log of the log server: %s", srv.LogPath())
			break
		}
		survived++
		g.resume(srv.URL())
	}
	g.stop()
	wg.Wait()
	led.mu.Lock()
	failures := led.failures
	led.mu.Unlock()
	for _, f := range failures {
		t.Error(f)
	}
	// Last, a clean stop and one more check of everything.
	if err := srv.Proc.Stop(); err != nil {
		t.Errorf("log serve after SIGTERM: %v, want exit status 0", err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	checkAfterRestart(t, "after the final clean restart", hc, srv, led, cps[0], probe)
	if err := srv.CheckNoSecrets(); err != nil {
		t.Error(err)
	}
	t.Logf("kills survived: %d of %d, plus %d during recovery (witnesses: %d); %s; %v", survived, kills, recoveryKills, witnesses, led.summary(), time.Since(start).Round(time.Millisecond))
	if power != nil {
		t.Logf("power cuts: %+v", power.Stats())
	}
}

// checkAfterRestart checks, with no admission in flight: every
// acknowledged entry is at its index, every checkpoint seen is a prefix of
// the log's tree, admission refuses a replayed counter of a co-processor
// whose last envelope was acknowledged before the crash, and the log
// accepts a new admission (the probe's).
func checkAfterRestart(t *testing.T, when string, hc *http.Client, srv *LogServer, led *ledger, victim, probe *coprocessor) {
	t.Helper()
	ctx := t.Context()
	seen, acked, maxIdx := led.snapshot()
	final, err := srv.WaitCheckpoint(ctx, hc, maxIdx+1)
	if err != nil {
		t.Errorf("%s: %v", when, err)
		return
	}
	if _, err := CheckLog(ctx, hc, srv.URL(), srv.Verifier, final, seen, acked); err != nil {
		t.Errorf("%s: the log lost or changed what it acknowledged or published:\n%v", when, err)
		return
	}

	// A replayed counter: the victim's last acknowledged counter again,
	// with a fresh root and anchor.
	led.mu.Lock()
	last := led.lastCounter[victim.dir]
	led.mu.Unlock()
	if last > 0 {
		cur, err := victim.counter()
		if err != nil {
			t.Fatal(err)
		}
		if err := victim.setCounter(last - 1); err != nil {
			t.Fatal(err)
		}
		body, n, err := victim.envelope(ctx, hc, srv.URL(), "vm-0", led, srv)
		if err != nil {
			t.Fatalf("%s: signing a replay: %v", when, err)
		}
		if err := victim.setCounter(cur); err != nil {
			t.Fatal(err)
		}
		a, err := admit(ctx, hc, srv.URL(), body)
		switch {
		case err != nil:
			t.Errorf("%s: admitting a replayed counter: %v", when, err)
		case a.status != 409 || a.reason != "replayed-counter":
			t.Errorf("%s: admission of counter %d (already acknowledged) = %d %s, want 409 replayed-counter", when, n, a.status, a.reason)
		}
	}

	// The log still accepts writes.
	body, n, err := probe.envelope(ctx, hc, srv.URL(), "vm-probe", led, srv)
	if err != nil {
		t.Fatalf("%s: signing the probe: %v", when, err)
	}
	a, err := admit(ctx, hc, srv.URL(), body)
	if err != nil || a.status != 202 || a.index < 0 {
		t.Errorf("%s: admission of a fresh envelope = %+v, %v; want 202 with an index", when, a, err)
		return
	}
	led.ack(a.index, body, probe.dir, n)
}
