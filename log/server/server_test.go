package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/server/servertest"
	"github.com/vmledger/vmledger/log/tlog"
)

const origin = "test.example/log"

type testLog struct {
	e   *badgerlog.Engine
	v   note.Verifier
	srv *httptest.Server
	url string
	// entries added so far, by index
	entries [][]byte
}

func newTestLog(t *testing.T, allowRaw bool) *testLog {
	t.Helper()
	skey, vkey, err := tlog.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := tlog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	e, err := badgerlog.Open(t.Context(), badgerlog.Config{Dir: t.TempDir(), Signer: s, MemoryBudget: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	srv, err := New(Config{Engine: e, AllowRawEntries: allowRaw})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &testLog{e: e, v: v, srv: hs, url: hs.URL + "/"}
}

// grow appends entries (of varied sizes, some empty) until the log has n.
func (l *testLog) grow(t *testing.T, n int) {
	t.Helper()
	var batch [][]byte
	for i := len(l.entries); i < n; i++ {
		batch = append(batch, fmt.Appendf(nil, "entry %d %s", i, strings.Repeat("x", i%97)))
	}
	if len(batch) == 0 {
		return
	}
	idx, err := l.e.AddBatch(t.Context(), batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range idx {
		if x != uint64(len(l.entries)) {
			t.Fatalf("AddBatch gave index %d to entry %d", x, len(l.entries))
		}
		l.entries = append(l.entries, batch[i])
	}
}

func (l *testLog) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	return servertest.Get(t, l.url+path)
}

// TestIndependentVerifiers grows one log through sizes that cross tile and
// level boundaries and, at each, has x/mod's sumdb/tlog and Tessera's
// client verify what the server serves.
func TestIndependentVerifiers(t *testing.T) {
	sizes := []int{0, 1, 255, 256, 257, 65537, 90000 + mrand.IntN(20000)}
	if testing.Short() {
		sizes = sizes[:5]
	}
	l := newTestLog(t, false)
	c := servertest.New(t, l.url, l.v, origin)
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			l.grow(t, n)
			c.Check(t, l.entries, false)
		})
	}
}

func TestHeaders(t *testing.T) {
	l := newTestLog(t, false)
	l.grow(t, 300)
	for _, tc := range []struct {
		path, contentType, cache string
	}{
		{"checkpoint", "text/plain; charset=utf-8", cacheCheckpoint},
		{"tile/0/000", "application/octet-stream", cacheImmutable},
		{"tile/0/001.p/44", "application/octet-stream", cacheImmutable},
		{"tile/1/000.p/1", "application/octet-stream", cacheImmutable},
		{"tile/entries/000", "application/octet-stream", cacheImmutable},
		{"tile/entries/001.p/44", "application/octet-stream", cacheImmutable},
		{"v1/checkpoints/300", "text/plain; charset=utf-8", cacheImmutable},
		{"v1/proof/inclusion?index=3&size=300", "application/json", cacheCheckpoint},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(l.url + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200", tc.path, resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("GET %s Content-Type = %q, want %q", tc.path, got, tc.contentType)
			}
			if got := resp.Header.Get("Cache-Control"); got != tc.cache {
				t.Errorf("GET %s Cache-Control = %q, want %q", tc.path, got, tc.cache)
			}
		})
	}

	// gzip on entry bundles, only when asked for.
	for _, ae := range []string{"gzip", "br, gzip;q=0.5", "identity", "gzip;q=0", ""} {
		req, _ := http.NewRequest("GET", l.url+"tile/entries/000", nil)
		req.Header.Set("Accept-Encoding", ae)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantGzip := ae == "gzip" || ae == "br, gzip;q=0.5"
		if got := resp.Header.Get("Content-Encoding") == "gzip"; got != wantGzip {
			t.Errorf("Accept-Encoding %q: gzip = %v, want %v", ae, got, wantGzip)
		}
		if wantGzip {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		want, _ := tlog.EncodeBundle(l.entries[:256])
		if !bytes.Equal(body, want) {
			t.Errorf("Accept-Encoding %q: bundle differs from the entries", ae)
		}
	}
}

// TestBadInput: malformed and out-of-range requests get a 4xx with a
// reason, never a 5xx.
func TestBadInput(t *testing.T) {
	l := newTestLog(t, true)
	l.grow(t, 300)
	servertest.BadInput(t, l.url)
}

func TestRawEntries(t *testing.T) {
	l := newTestLog(t, true)
	for i, want := range []uint64{0, 1} {
		resp, err := http.Post(l.url+"v1/entries", "application/octet-stream", strings.NewReader(fmt.Sprint("raw ", i)))
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Index *uint64 }
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || got.Index == nil || *got.Index != want {
			t.Fatalf("POST v1/entries #%d = %d, %v, want index %d", i, resp.StatusCode, err, want)
		}
	}
	resp, err := http.Post(l.url+"v1/entries", "application/octet-stream", bytes.NewReader(make([]byte, tlog.MaxEntrySize)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST v1/entries (65,535 bytes) = %d, want 200", resp.StatusCode)
	}

	off := newTestLog(t, false)
	resp, err = http.Post(off.url+"v1/entries", "application/octet-stream", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST v1/entries without AllowRawEntries = %d, want 404 (the endpoint does not exist)", resp.StatusCode)
	}
	code, b := l.get(t, "metrics")
	if code != 200 || !bytes.Contains(b, []byte("vmledger_log_entries_added_total 3")) || !bytes.Contains(b, []byte("vmledger_log_tree_size 3")) {
		t.Errorf("GET metrics = %d, want the added counter and tree size at 3:\n%s", code, b)
	}
	// Three sequential POSTs: three batches of one entry each.
	if !bytes.Contains(b, []byte("vmledger_log_batches_total 3")) || !bytes.Contains(b, []byte("vmledger_log_batch_entries_total 3")) || !bytes.Contains(b, []byte("vmledger_log_commit_seconds_total ")) {
		t.Errorf("GET metrics: want the engine's batch counters at 3:\n%s", b)
	}
	for _, path := range []string{"v1/proof/consistency?old=0&new=3", "v1/proof/consistency?old=3&new=3", "v1/proof/inclusion?index=0&size=1"} {
		if code, b := l.get(t, path); code != 200 || string(b) != "{\"hashes\":[]}\n" {
			t.Errorf("GET %s = %d %q, want an empty list", path, code, b)
		}
	}
	if code, b := l.get(t, "healthz"); code != 200 {
		t.Errorf("GET healthz = %d %q, want 200", code, b)
	}
}

// TestPublished: /checkpoint comes from the configured source, not the
// engine's latest.
func TestPublished(t *testing.T) {
	l := newTestLog(t, false)
	l.grow(t, 5)
	old, err := l.e.CheckpointAt(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Engine: l.e, Published: func(context.Context) ([]byte, error) { return old, nil }})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/checkpoint", nil))
	if !bytes.Equal(rec.Body.Bytes(), old) {
		t.Errorf("GET /checkpoint = %q, want the published %q", rec.Body.Bytes(), old)
	}
	unavailable, err := New(Config{Engine: l.e, Published: func(context.Context) ([]byte, error) {
		return nil, fmt.Errorf("no cosigned checkpoint yet: %w", engine.ErrNotFound)
	}})
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	unavailable.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/checkpoint", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /checkpoint with nothing published = %d, want 404", rec.Code)
	}
}

// TestErrorStatus pins the one switch from errors to statuses.
func TestErrorStatus(t *testing.T) {
	l := newTestLog(t, false)
	srv, err := New(Config{Engine: l.e})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		err        error
		want       int
		retryAfter bool
	}{
		{fmt.Errorf("x: %w", ErrBadRequest), 400, false},
		{fmt.Errorf("x: %w", tlog.ErrMalformed), 400, false},
		{fmt.Errorf("x: %w", engine.ErrNotFound), 404, false},
		{fmt.Errorf("x: %w", engine.ErrEntryTooLarge), 413, false},
		{fmt.Errorf("x: %w", engine.ErrPushback), 503, true},
		{fmt.Errorf("x: %w", engine.ErrClosed), 503, true},
		{fmt.Errorf("x: %w", engine.ErrFailed), 503, true},
		{context.Canceled, 503, false},
		{fmt.Errorf("disk on fire"), 500, false},
	} {
		rec := httptest.NewRecorder()
		srv.Error(rec, httptest.NewRequest("GET", "/x", nil), tc.err)
		if rec.Code != tc.want {
			t.Errorf("Error(%v) status = %d, want %d", tc.err, rec.Code, tc.want)
		}
		if got := rec.Header().Get("Retry-After") != ""; got != tc.retryAfter {
			t.Errorf("Error(%v) Retry-After set = %v, want %v", tc.err, got, tc.retryAfter)
		}
		if tc.want == 500 && strings.Contains(rec.Body.String(), "fire") {
			t.Errorf("Error(%v) body = %q, want no internal detail", tc.err, rec.Body.String())
		}
	}
}

// BenchmarkInclusionProof measures GET /v1/proof/inclusion through the
// handler (no network) on a log of 100,000 entries.
func BenchmarkInclusionProof(b *testing.B) {
	const n = 100_000
	skey, _, _ := tlog.GenerateKey(rand.Reader, origin)
	s, _, _ := tlog.NewSigner(skey)
	e, err := badgerlog.Open(b.Context(), badgerlog.Config{Dir: b.TempDir(), Signer: s})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	var batch [][]byte
	for i := range n {
		batch = append(batch, fmt.Appendf(nil, "entry %d", i))
	}
	if _, err := e.AddBatch(b.Context(), batch); err != nil {
		b.Fatal(err)
	}
	// cache=1024 holds every full tile of this log; cache=4 misses on
	// nearly every level-0 tile, as a 10M-entry log with the default cache
	// would.
	for _, tiles := range []int{1024, 4} {
		b.Run(fmt.Sprintf("cache=%d", tiles), func(b *testing.B) {
			srv, err := New(Config{Engine: e, ProofCacheTiles: tiles})
			if err != nil {
				b.Fatal(err)
			}
			h := srv.Handler()
			b.RunParallel(func(pb *testing.PB) {
				rng := mrand.New(mrand.NewPCG(mrand.Uint64(), 0))
				for pb.Next() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest("GET", fmt.Sprintf("/v1/proof/inclusion?index=%d&size=%d", rng.IntN(n), n), nil))
					if rec.Code != 200 {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proofs/s")
		})
	}
}

// TestHealthChecks: /healthz answers 503 with the reason while
// Config.Health fails (the publisher's stall, issue 16 fault 9), and 200
// "ok" otherwise.
func TestHealthChecks(t *testing.T) {
	l := newTestLog(t, false)
	var failing error
	srv, err := New(Config{Engine: l.e, Health: func(context.Context) error { return failing }})
	if err != nil {
		t.Fatal(err)
	}
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 200 || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", code, body)
	}
	failing = fmt.Errorf("publishing stalled: the checkpoint of size 9 has waited 31s")
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "publishing stalled") {
		t.Errorf("GET /healthz with a failing check = %d %q, want 503 with the reason", code, body)
	}
	failing = nil
	if code, body := get(); code != 200 {
		t.Errorf("GET /healthz once the check passes again = %d %q, want 200", code, body)
	}
}
