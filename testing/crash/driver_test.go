package crash

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/soft"
	"github.com/vmledger/vmledger/log/tlog"
)

var vmledgerBin string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmledger-crash-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	vmledgerBin, err = Build(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// envInt reads a count from the environment, def if unset.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a count", name, s)
	}
	return n
}

// gate lets the test park every worker (between two attempts) while it
// kills, restarts and checks the log, and tells workers the log's URL.
type gate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
	done   bool
	active int
	base   string
}

func newGate(base string) *gate {
	g := &gate{base: base}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// enter waits until the workers may run and returns the log's URL; ok is
// false once the test is over. Every enter that returns ok needs a leave.
func (g *gate) enter() (base string, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.paused && !g.done {
		g.cond.Wait()
	}
	if g.done {
		return "", false
	}
	g.active++
	return g.base, true
}

func (g *gate) leave() {
	g.mu.Lock()
	g.active--
	g.cond.Broadcast()
	g.mu.Unlock()
}

// pause parks the workers and waits until no attempt is in flight.
func (g *gate) pause() {
	g.mu.Lock()
	g.paused = true
	for g.active > 0 {
		g.cond.Wait()
	}
	g.mu.Unlock()
}

func (g *gate) resume(base string) {
	g.mu.Lock()
	g.paused, g.base = false, base
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *gate) stop() {
	g.mu.Lock()
	g.done = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

// ledger is what the clients were told: acknowledged entries, checkpoints
// seen, counts of answers, and answers that must never happen.
type ledger struct {
	mu       sync.Mutex
	acked    map[int64][]byte
	seen     map[string]bool
	counts   map[string]int
	failures []string
	// lastCounter is, per co-processor directory, the counter of its last
	// acknowledged envelope.
	lastCounter map[string]uint64
}

func newLedger() *ledger {
	return &ledger{acked: map[int64][]byte{}, seen: map[string]bool{}, counts: map[string]int{}, lastCounter: map[string]uint64{}}
}

func (l *ledger) count(what string) {
	l.mu.Lock()
	l.counts[what]++
	l.mu.Unlock()
}

func (l *ledger) fail(format string, args ...any) {
	l.mu.Lock()
	if len(l.failures) < 50 {
		l.failures = append(l.failures, fmt.Sprintf(format, args...))
	}
	l.mu.Unlock()
}

func (l *ledger) saw(cp []byte) {
	l.mu.Lock()
	l.seen[string(cp)] = true
	l.mu.Unlock()
}

// ack records an acknowledged entry; the same index acknowledged for two
// different entries is a failure.
func (l *ledger) ack(idx int64, entry []byte, cpDir string, counter uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.acked[idx]; ok && !bytes.Equal(old, entry) {
		l.failures = append(l.failures, fmt.Sprintf("index %d acknowledged for two different entries", idx))
	}
	l.acked[idx] = entry
	if counter > l.lastCounter[cpDir] {
		l.lastCounter[cpDir] = counter
	}
}

func (l *ledger) snapshot() (seen [][]byte, acked map[int64][]byte, maxIdx int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	maxIdx = -1
	acked = make(map[int64][]byte, len(l.acked))
	for k, v := range l.acked {
		acked[k] = v
		maxIdx = max(maxIdx, k)
	}
	for s := range l.seen {
		seen = append(seen, []byte(s))
	}
	return seen, acked, maxIdx
}

func (l *ledger) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for k, v := range l.counts {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	return fmt.Sprintf("acknowledged=%d checkpoints_seen=%d answers: %s", len(l.acked), len(l.seen), strings.Join(parts, " "))
}

// coprocessor is a soft co-processor in its own directory.
type coprocessor struct {
	dir string
	cp  *soft.CoProcessor
}

func newCoprocessor(t *testing.T, dir string, alg soft.Algorithm) *coprocessor {
	t.Helper()
	if _, err := soft.Init(t.Context(), dir, alg); err != nil {
		t.Fatalf("soft.Init(%s): %v", dir, err)
	}
	cp, err := soft.Open(t.Context(), dir, soft.Options{})
	if err != nil {
		t.Fatalf("soft.Open(%s): %v", dir, err)
	}
	return &coprocessor{dir: dir, cp: cp}
}

// counter reads the co-processor's counter file.
func (c *coprocessor) counter() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "counter"))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// setCounter rolls the counter file to n: what anyone who can write a soft
// co-processor's directory can do, and what admission must catch.
func (c *coprocessor) setCounter(n uint64) error {
	return os.WriteFile(filepath.Join(c.dir, "counter"), []byte(strconv.FormatUint(n, 10)+"\n"), 0o600)
}

// envelope reads the log's checkpoint at base and signs a claim anchored
// on it; it returns the canonical envelope and its counter.
func (c *coprocessor) envelope(ctx context.Context, hc *http.Client, base, vm string, led *ledger, srv *LogServer) ([]byte, uint64, error) {
	cpText, err := Get(ctx, hc, base+"/checkpoint")
	if err != nil {
		return nil, 0, err
	}
	cp, err := OpenCheckpoint(cpText, srv.Verifier)
	if err != nil {
		led.fail("the log served a checkpoint that does not verify: %v", err)
		return nil, 0, err
	}
	if led != nil {
		led.saw(cpText)
	}
	var root [32]byte
	rand.Read(root[:])
	env, err := c.cp.Attest(ctx, coproc.Claim{
		VMID: vm, Root: root, Parameters: []string{"cpu", "disk/0/image", "memory"},
		Freshness: coproc.Anchor{Origin: cp.Origin, Size: uint64(cp.Size), Root: cp.Root},
	})
	if err != nil {
		return nil, 0, fmt.Errorf("attest: %w", err)
	}
	body, err := env.Canonical()
	if err != nil {
		return nil, 0, err
	}
	n, err := c.counter()
	return body, n, err
}

// answer is the log's answer to an admission.
type answer struct {
	status     int
	reason     string
	index      int64
	retryAfter string
}

func admit(ctx context.Context, hc *http.Client, base string, body []byte) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/attestations", bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	// As the agent does: admission is idempotent, so net/http may resend
	// on a new connection when the server closed the pooled one.
	leaf := tlog.LeafHash(body)
	req.Header.Set("Idempotency-Key", hex.EncodeToString(leaf[:]))
	resp, err := hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, index: -1, retryAfter: resp.Header.Get("Retry-After")}
	var v struct {
		Index  *int64 `json:"index"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return a, fmt.Errorf("admission answered %d with a body that is not JSON: %.200q", resp.StatusCode, b)
	}
	a.reason = v.Reason
	if v.Index != nil {
		a.index = *v.Index
	}
	return a, nil
}

// work drives admissions for one co-processor until the gate stops. An
// answer is counted by status and reason; a 2xx without index, a
// replayed-counter for a counter that only ever increased, and any 5xx but
// 503 with Retry-After are failures.
func work(ctx context.Context, g *gate, hc *http.Client, c *coprocessor, vm string, led *ledger, srv *LogServer) {
	for ctx.Err() == nil {
		base, ok := g.enter()
		if !ok {
			return
		}
		backoff := attempt(ctx, hc, base, c, vm, led, srv)
		g.leave()
		if backoff {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

func attempt(ctx context.Context, hc *http.Client, base string, c *coprocessor, vm string, led *ledger, srv *LogServer) (backoff bool) {
	body, counter, err := c.envelope(ctx, hc, base, vm, led, srv)
	if err != nil {
		led.count("no-envelope")
		return true
	}
	a, err := admit(ctx, hc, base, body)
	if err != nil {
		led.count("transport-error")
		return true
	}
	led.count(fmt.Sprintf("%d-%s", a.status, a.reason))
	switch {
	case a.status == 200 || a.status == 201 || a.status == 202:
		if a.index < 0 {
			led.fail("admission answered %d without an index", a.status)
			return false
		}
		led.ack(a.index, body, c.dir, counter)
	case a.status == 409 && (a.reason == "stale-freshness" || a.reason == "unknown-anchor"):
		// the anchor was replaced between reading it and admitting
	case a.status == 429 || a.status == 503:
		if a.retryAfter == "" {
			led.fail("admission answered %d %s without Retry-After", a.status, a.reason)
		}
		return true
	default:
		led.fail("admission of a fresh envelope (counter %d of %s) answered %d %s", counter, filepath.Base(c.dir), a.status, a.reason)
	}
	return false
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
