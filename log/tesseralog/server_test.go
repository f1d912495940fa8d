package tesseralog

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/server/servertest"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/testing/mysqltest"
)

// httpLog is a Tessera engine behind log/server on a loopback port.
type httpLog struct {
	e       *Engine
	v       note.Verifier
	url     string
	entries [][]byte // by index
}

func newHTTPLog(t *testing.T, c Config, allowRaw bool) *httpLog {
	t.Helper()
	s, v := newKey(t)
	c.DSN, c.Signer = mysqltest.NewDatabase(t), s
	e := open(t, c)
	t.Cleanup(func() { e.Close() })
	srv, err := server.New(server.Config{Engine: e, AllowRawEntries: allowRaw})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &httpLog{e: e, v: v, url: hs.URL + "/"}
}

// grow adds distinct entries from many goroutines until the log has n, and
// records each at the index Add returned.
func (l *httpLog) grow(t *testing.T, n int) {
	t.Helper()
	from := len(l.entries)
	if n <= from {
		return
	}
	l.entries = append(l.entries, make([][]byte, n-from)...)
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(t.Context())
	g.SetLimit(8192)
	for i := from; i < n; i++ {
		g.Go(func() error {
			entry := fmt.Appendf(nil, "entry %d %s", i, strings.Repeat("x", i%97))
			idx, err := l.e.Add(ctx, entry)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if idx >= uint64(n) || l.entries[idx] != nil {
				return fmt.Errorf("Add gave index %d (log should have %d entries, and each index once)", idx, n)
			}
			l.entries[idx] = entry
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func (l *httpLog) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	return servertest.Get(t, l.url+path)
}

// TestIndependentVerifiers grows a Tessera log through sizes that cross
// tile and level boundaries and, at each, has x/mod's sumdb/tlog and
// Tessera's own client verify what log/server serves from it: checkpoint
// signature, tree hash from the tiles (partial ones included), inclusion
// and consistency proofs (ours and theirs), old checkpoints from the
// history, and entry bundles against the level-0 tiles.
func TestIndependentVerifiers(t *testing.T) {
	sizes := []int{0, 1, 255, 256, 257, 1000, 65537 + mrand.IntN(3000), 90000 + mrand.IntN(20000)}
	if testing.Short() {
		sizes = sizes[:6]
	}
	l := newHTTPLog(t, Config{BatchMaxAge: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond, PushbackMaxOutstanding: 1 << 14}, false)
	c := servertest.New(t, l.url, l.v, origin)
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			l.grow(t, n)
			c.Check(t, l.entries, true)
		})
	}
}

// TestHTTPPushback: over the limit, POST /v1/entries answers 503 with
// Retry-After.
func TestHTTPPushback(t *testing.T) {
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	var hold sync.Once
	holding := make(chan struct{})
	l := newHTTPLog(t, Config{
		PushbackMaxOutstanding: 1, BatchMaxAge: 10 * time.Millisecond, PollInterval: 10 * time.Millisecond,
		beforeSign: func() {
			select {
			case <-holding:
				select {
				case held <- struct{}{}:
				default:
				}
				<-release
			default:
			}
		},
	}, true)
	l.grow(t, 1)
	if code, b := l.get(t, "tile/0/000.p/1"); code != http.StatusOK || len(b) != tlog.HashSize {
		t.Errorf("GET tile/0/000.p/1 = %d, %d bytes, want 200 and 1 hash", code, len(b))
	}
	hold.Do(func() { close(holding) })
	<-held
	done := make(chan error, 1)
	go func() { _, err := l.e.Add(t.Context(), []byte("held")); done <- err }()
	for l.e.outstanding.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	resp, err := http.Post(l.url+"v1/entries", "application/octet-stream", strings.NewReader("one too many"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST v1/entries over the limit = %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("held Add = %v", err)
	}
}

// TestTesseraPushback: when Tessera itself pushes back (its appender's
// future fails with tessera.ErrPushback, as it does when integration falls
// behind WithPushback), Add reports engine.ErrPushback (still matching
// Tessera's error) and the HTTP API answers 503 with Retry-After, not 500.
// Tessera's MySQL driver integrates as it sequences, so the test makes the
// appender's future fail rather than waiting for a lag it cannot force.
func TestTesseraPushback(t *testing.T) {
	l := newHTTPLog(t, Config{BatchMaxAge: 10 * time.Millisecond, PollInterval: 10 * time.Millisecond}, true)
	l.grow(t, 1)
	real := l.e.appender.Add
	l.e.appender.Add = func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
		return func() (tessera.Index, error) {
			return tessera.Index{}, fmt.Errorf("integration behind: %w", tessera.ErrPushback)
		}
	}
	if _, err := l.e.Add(t.Context(), []byte("pushed back")); !errors.Is(err, engine.ErrPushback) || !errors.Is(err, tessera.ErrPushback) {
		t.Errorf("Add under Tessera's pushback = %v, want engine.ErrPushback wrapping tessera.ErrPushback", err)
	}
	resp, err := http.Post(l.url+"v1/entries", "application/octet-stream", strings.NewReader("pushed back"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST v1/entries under Tessera's pushback = %d %q, Retry-After %q; want 503 with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	l.e.appender.Add = real
	if _, err := l.e.Add(t.Context(), []byte("after")); err != nil {
		t.Errorf("Add once Tessera accepts again = %v", err)
	}
}

// TestBadInput: the same refusals as on the badger engine (4xx with a
// reason, never 5xx), through log/server on a Tessera log.
func TestBadInput(t *testing.T) {
	l := newHTTPLog(t, Config{BatchMaxAge: 10 * time.Millisecond, PollInterval: 10 * time.Millisecond}, true)
	l.grow(t, 300)
	servertest.BadInput(t, l.url)
}
