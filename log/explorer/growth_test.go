package explorer_test

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/explorer"
	"github.com/vmledger/vmledger/log/rekorcompat"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/tlog"
)

// growthLog is a real badger log served with the Rekor-compatible reads,
// recording which entries' integration times were asked for.
type growthLog struct {
	e   *badgerlog.Engine
	url string
	n   int

	mu    sync.Mutex
	asked []uint64
}

func newGrowthLog(t *testing.T, wrap func(http.Handler) http.Handler) *growthLog {
	t.Helper()
	skey, _, err := tlog.GenerateKey(rand.Reader, "growth.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, _, err := tlog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	e, err := badgerlog.Open(t.Context(), badgerlog.Config{Dir: t.TempDir(), Signer: signer, MemoryBudget: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	srv, err := server.New(server.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	origin, key, err := rekorcompat.ParseNoteKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rekorcompat.New(rekorcompat.Config{Engine: e, Published: e.Checkpoint, Signer: key, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	rc.Register(srv)
	l := &growthLog{e: e}
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/log/entries" {
			i, err := strconv.ParseUint(r.URL.Query().Get("logIndex"), 10, 64)
			if err != nil {
				t.Errorf("the explorer asked for %s", r.URL)
			}
			l.mu.Lock()
			l.asked = append(l.asked, i)
			l.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	l.url = hs.URL
	return l
}

// grow appends entries until the log holds n.
func (l *growthLog) grow(t *testing.T, n int) {
	t.Helper()
	var batch [][]byte
	for i := l.n; i < n; i++ {
		batch = append(batch, fmt.Appendf(nil, "entry %d", i))
	}
	if _, err := l.e.AddBatch(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	l.n = n
}

func (l *growthLog) takeAsked() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.asked
	l.asked = nil
	slices.Sort(a)
	return a
}

var pointRow = regexp.MustCompile(`<tr><td>(\d+)</td><td><time datetime="([^"]+)">`)

// TestGrowthSampling: against a real badger log, the home page's chart
// reads at most MaxGrowthSamples integration times whatever the log's
// size, always the first and the last entry, shows the log's recorded
// times, reads nothing again for a tree it has charted, and on growth only
// the entries it has not read yet.
func TestGrowthSampling(t *testing.T) {
	l := newGrowthLog(t, nil)
	ex, err := explorer.New(explorer.Config{LogURL: l.url})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ex.Handler())
	defer srv.Close()

	var prev []uint64
	prevN := 0
	for _, n := range []int{1, 2, 5, 32, 33, 50, 300, 1000, 1001, 1900, 70000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			l.grow(t, n)
			code, body := get(t, srv.URL+"/")
			if code != 200 || !strings.Contains(body, `id="growth-chart"`) {
				t.Fatalf("GET / = %d without the chart:\n%s", code, body)
			}
			asked := l.takeAsked()
			var sample []uint64
			for _, m := range pointRow.FindAllStringSubmatch(body, -1) {
				size, _ := strconv.ParseUint(m[1], 10, 64)
				sample = append(sample, size-1)
				want, err := l.e.IntegratedAt(t.Context(), size-1)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := time.Parse(time.RFC3339, m[2]); err != nil || !got.Equal(want.Truncate(time.Second)) {
					t.Errorf("point of size %d at %s, want entry %d's integration time %s", size, m[2], size-1, want)
				}
			}
			if len(sample) > explorer.MaxGrowthSamples || len(sample) < min(n, explorer.MaxGrowthSamples/2) {
				t.Errorf("%d points for a tree of %d, want %d…%d", len(sample), n, min(n, explorer.MaxGrowthSamples/2), explorer.MaxGrowthSamples)
			}
			if strings.Count(body, "<circle") != len(sample) {
				t.Errorf("%d points drawn, %d listed", strings.Count(body, "<circle"), len(sample))
			}
			if len(sample) == 0 || sample[0] != 0 || sample[len(sample)-1] != uint64(n-1) {
				t.Fatalf("sampled entries %v, want the first and the last (%d)", sample, n-1)
			}
			// Read once: only what the previous chart did not have.
			var want []uint64
			for _, i := range sample {
				if !slices.Contains(prev, i) {
					want = append(want, i)
				}
			}
			if !slices.Equal(asked, want) {
				t.Errorf("read the times of entries %v, want only the new ones %v", asked, want)
			}
			// Less than doubling keeps at least half of the sampled entries.
			if prevN > 0 && n < 2*prevN && len(asked) > len(sample)/2+1 {
				t.Errorf("growing from %d to %d read %d of %d times", prevN, n, len(asked), len(sample))
			}
			prev, prevN = sample, n
			if code, _ := get(t, srv.URL+"/"); code != 200 {
				t.Fatalf("second GET / = %d", code)
			}
			if again := l.takeAsked(); len(again) > 0 {
				t.Errorf("the same tree read again: entries %v", again)
			}
		})
	}
}

// TestGrowthHostile: a log that lacks the Rekor-compatible reads or answers
// garbage there still gets its home page, saying why there is no chart,
// never a 5xx, and its script is escaped.
func TestGrowthHostile(t *testing.T) {
	const script = `<script>alert(1)</script>`
	for _, tc := range []struct {
		name, want string
		answer     func(w http.ResponseWriter, i uint64)
	}{
		{"no endpoint", "does not serve integration times", func(w http.ResponseWriter, i uint64) { http.NotFound(w, nil) }},
		{"garbage", "unusable integration time", func(w http.ResponseWriter, i uint64) { w.Write([]byte("not json " + script)) }},
		{"server error", "alert(1)", func(w http.ResponseWriter, i uint64) {
			w.WriteHeader(500)
			w.Write([]byte(`{"error": "` + script + `"}`))
		}},
		{"another entry", "is not entry", func(w http.ResponseWriter, i uint64) {
			fmt.Fprintf(w, `{"x": {"integratedTime": 1700000000, "logIndex": %d}}`, i+1)
		}},
		{"two entries", "2 entries", func(w http.ResponseWriter, i uint64) {
			fmt.Fprintf(w, `{"x": {"integratedTime": 1, "logIndex": %d}, "y": {}}`, i)
		}},
		{"negative time", "no usable integratedTime", func(w http.ResponseWriter, i uint64) {
			fmt.Fprintf(w, `{"x": {"integratedTime": -5, "logIndex": %d}}`, i)
		}},
		{"huge time", "no usable integratedTime", func(w http.ResponseWriter, i uint64) {
			fmt.Fprintf(w, `{"x": {"integratedTime": 9007199254740993, "logIndex": %d}}`, i)
		}},
		{"backwards", "go backwards", func(w http.ResponseWriter, i uint64) {
			fmt.Fprintf(w, `{"x": {"integratedTime": %d, "logIndex": %d}}`, 1800000000-i, i)
		}},
		{"no times", "no integration time", func(w http.ResponseWriter, i uint64) {
			fmt.Fprintf(w, `{"x": {"integratedTime": 0, "logIndex": %d}}`, i)
		}},
		{"oversized", "above", func(w http.ResponseWriter, i uint64) { w.Write([]byte(strings.Repeat(" ", 5<<20))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newGrowthLog(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path != "/api/v1/log/entries" {
						h.ServeHTTP(w, r)
						return
					}
					i, _ := strconv.ParseUint(r.URL.Query().Get("logIndex"), 10, 64)
					tc.answer(w, i)
				})
			})
			l.grow(t, 40)
			ex, err := explorer.New(explorer.Config{LogURL: l.url})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(ex.Handler())
			defer srv.Close()
			code, body := get(t, srv.URL+"/")
			if code != 200 || !strings.Contains(body, "growth of the tree is unavailable") || !strings.Contains(body, tc.want) {
				t.Errorf("GET / = %d, want 200 saying the growth is unavailable (%q):\n%s", code, tc.want, body)
			}
			if strings.Contains(body, "<circle") || !strings.Contains(body, `id="recent-entries"`) {
				t.Errorf("GET /: a chart, or no recent entries:\n%s", body)
			}
			if strings.Contains(body, script) {
				t.Errorf("the log's script reached the page unescaped")
			}
		})
	}
}
