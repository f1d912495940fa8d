package crash

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coproc"
)

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// client is an in-memory Ed25519 co-processor of the overload test: it
// signs with coproc.Seal directly, so that signing costs no fsync and the
// load is on the log.
type client struct {
	priv    ed25519.PrivateKey
	keyID   string
	counter uint64
}

func (c *client) envelope(anchor Checkpoint, vm string) ([]byte, error) {
	c.counter++
	var root [32]byte
	rand.Read(root[:])
	st, err := coproc.NewStatement(coproc.Claim{VMID: vm, Root: root, Parameters: []string{"cpu", "memory"},
		Freshness: coproc.Anchor{Origin: anchor.Origin, Size: uint64(anchor.Size), Root: anchor.Root}},
		coproc.CoprocessorState{KeyID: c.keyID, Counter: c.counter}, time.Now())
	if err != nil {
		return nil, err
	}
	env, err := coproc.Seal(st, c.priv.Public(), func(pae []byte) ([]byte, error) { return ed25519.Sign(c.priv, pae), nil })
	if err != nil {
		return nil, err
	}
	return env.Canonical()
}

// TestOverload drives the real log with many times its admission
// capacity (it runs with --max-in-flight 64, so that it must refuse some)
// of concurrent clients over loopback, each with its own enrolled key, and
// checks: every answer is an acknowledgement with an index, or 429/503
// with Retry-After (or a stale anchor); no request fails in transport; the
// log's RSS stays below a generous bound; and nothing acknowledged is lost,
// before and after a SIGKILL. VMLEDGER_OVERLOAD_CLIENTS (default 1536)
// and VMLEDGER_OVERLOAD_ROUNDS (attempts per client, default 8) scale it.
func TestOverload(t *testing.T) {
	nClients := envInt(t, "VMLEDGER_OVERLOAD_CLIENTS", 1536)
	rounds := envInt(t, "VMLEDGER_OVERLOAD_ROUNDS", 8)
	const rssBoundMiB = 1024 // log serve aims at 512 MiB; twice that is a leak
	const maxInFlight = 64
	ctx := t.Context()
	dir := t.TempDir()
	start := time.Now()
	hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: nClients}}

	// Admission capacity small enough that the clients exceed it on any
	// machine, so the refusals are exercised, not hoped for.
	srv, err := NewLogServer(ctx, vmledgerBin, dir, "", "--max-in-flight", strconv.Itoa(maxInFlight))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Proc.Kill() })

	clients := make([]*client, nClients)
	var enrolErr atomic.Value
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				_, priv, _ := ed25519.GenerateKey(rand.Reader)
				id, err := coproc.KeyID(priv.Public())
				if err == nil {
					_, err = srv.Enrol(ctx, hc, fmt.Sprintf("load-%d", i), priv.Public())
				}
				if err != nil {
					enrolErr.Store(err)
				}
				clients[i] = &client{priv: priv, keyID: id}
			}
		})
	}
	for i := range nClients {
		next <- i
	}
	close(next)
	wg.Wait()
	if err, _ := enrolErr.Load().(error); err != nil {
		t.Fatalf("enrolling %d keys: %v", nClients, err)
	}
	enrolled := time.Since(start)

	led := newLedger()
	var anchor atomic.Pointer[Checkpoint]
	readAnchor := func() error {
		b, err := Get(ctx, hc, srv.URL()+"/checkpoint")
		if err != nil {
			return err
		}
		c, err := OpenCheckpoint(b, srv.Verifier)
		if err != nil {
			return err
		}
		led.saw(b)
		anchor.Store(&c)
		return nil
	}
	if err := readAnchor(); err != nil {
		t.Fatal(err)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var aux sync.WaitGroup
	var maxRSS atomic.Int64
	aux.Go(func() { // anchors and RSS, until the load stops
		for loadCtx.Err() == nil {
			readAnchor()
			if kib, err := rssKiB(srv.Proc.PID()); err == nil && kib > maxRSS.Load() {
				maxRSS.Store(kib)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	var refusals, transportErrs, retried atomic.Int64
	// fresh never reuses a connection: the retry of a request whose pooled
	// connection the server had closed.
	fresh := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	// A bound on the run, not an assertion: past it, clients stop early.
	stopAt := time.Now().Add(time.Minute)
	for i, c := range clients {
		wg.Go(func() {
			for range rounds {
				if time.Now().After(stopAt) {
					led.count("stopped-early")
					return
				}
				body, err := c.envelope(*anchor.Load(), fmt.Sprintf("vm-%d", i))
				if err != nil {
					led.fail("signing: %v", err)
					return
				}
				a, err := admit(ctx, hc, srv.URL(), body)
				if err != nil {
					// A connection the server closed while the client
					// reused it ("server closed idle connection", EOF)
					// carries no answer. Admission deduplicates exact
					// envelopes, so a client may send the same one again:
					// once, on a new connection. Only a second transport
					// failure is a failure.
					retried.Add(1)
					a, err = admit(ctx, fresh, srv.URL(), body)
				}
				if err != nil {
					transportErrs.Add(1)
					led.fail("client %d: admission failed in transport under load, twice: %v", i, err)
					continue
				}
				led.count(fmt.Sprintf("%d-%s", a.status, a.reason))
				switch {
				case (a.status == 202 || a.status == 200) && a.index >= 0:
					led.ack(a.index, body, c.keyID, c.counter)
				case a.status == 429 || a.status == 503:
					refusals.Add(1)
					if a.retryAfter == "" {
						led.fail("%d %s without Retry-After", a.status, a.reason)
					}
					c.counter-- // the envelope was not admitted: retry it next round
					if _, err := strconv.Atoi(a.retryAfter); err == nil {
						time.Sleep(100 * time.Millisecond) // a polite client, not the full Retry-After
					}
				case a.status == 409 && (a.reason == "stale-freshness" || a.reason == "unknown-anchor"):
				default:
					led.fail("client %d: admission under load = %+v, want 202, 429/503 with Retry-After, or a stale anchor", i, a)
				}
			}
		})
	}
	wg.Wait()
	stopLoad()
	aux.Wait()
	loaded := time.Since(start) - enrolled

	led.mu.Lock()
	for _, f := range led.failures {
		t.Error(f)
	}
	led.mu.Unlock()
	if rss := maxRSS.Load(); rss > rssBoundMiB<<10 {
		t.Errorf("the log's RSS reached %d MiB under load, want below %d MiB", rss>>10, rssBoundMiB)
	}

	check := func(when string) {
		seen, acked, maxIdx := led.snapshot()
		final, err := srv.WaitCheckpoint(ctx, hc, maxIdx+1)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if _, err := CheckLog(ctx, hc, srv.URL(), srv.Verifier, final, seen, acked); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	check("after the load")
	srv.Proc.Kill()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	check("after a SIGKILL following the load")
	if refusals.Load() == 0 {
		t.Errorf("the log never refused: %d clients did not exceed --max-in-flight %d", nClients, maxInFlight)
	}
	t.Logf("overload: %d clients × %d rounds; enrolment %v, load %v; max RSS %d MiB (bound %d); refusals %d; resent after a closed connection %d; transport errors %d; %s",
		nClients, rounds, enrolled.Round(time.Millisecond), loaded.Round(time.Millisecond), maxRSS.Load()>>10, rssBoundMiB,
		refusals.Load(), retried.Load(), transportErrs.Load(), led.summary())
}
