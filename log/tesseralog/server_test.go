package tesseralog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
	xtlog "golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/errgroup"

	"github.com/vmledger/vmledger/log/server"
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
	resp, err := http.Get(l.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func (l *httpLog) proof(t *testing.T, path string) [][]byte {
	t.Helper()
	code, b := l.get(t, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %q", path, code, b)
	}
	var p struct{ Hashes [][]byte }
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return p.Hashes
}

// xmodTiles is x/mod's TileReader over the HTTP tiles (x/mod names tiles
// with their height, tile/8/L/N; the C2SP paths do not).
type xmodTiles struct {
	t *testing.T
	l *httpLog
}

func (x xmodTiles) Height() int { return 8 }

func (x xmodTiles) ReadTiles(tiles []xtlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		if tile.H != 8 || tile.L < 0 {
			return nil, fmt.Errorf("unexpected tile %+v", tile)
		}
		w := uint8(0)
		if tile.W < 256 {
			w = uint8(tile.W)
		}
		p := tlog.Tile{Level: uint64(tile.L), Index: uint64(tile.N), Width: w}.Path()
		code, b := x.l.get(x.t, p)
		if code != http.StatusOK {
			return nil, fmt.Errorf("GET %s = %d", p, code)
		}
		out[i] = b
	}
	return out, nil
}

func (x xmodTiles) SaveTiles([]xtlog.Tile, [][]byte) {}

// TestIndependentVerifiers grows a Tessera log through sizes that cross
// tile and level boundaries and, at each, has x/mod's sumdb/tlog and
// Tessera's own client verify what log/server serves from it: checkpoint
// signature, tree hash from the tiles (partial ones included), inclusion
// and consistency proofs (ours and theirs), old checkpoints from the
// history, and entry bundles against the level-0 tiles.
func TestIndependentVerifiers(t *testing.T) {
	sizes := []int{0, 1, 255, 256, 257, 1000, 65537 + mrand.IntN(3000)}
	if testing.Short() {
		sizes = sizes[:6]
	}
	l := newHTTPLog(t, Config{BatchMaxAge: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond, PushbackMaxOutstanding: 1 << 14}, false)
	ctx := t.Context()
	u, _ := url.Parse(l.url)
	fetcher, err := client.NewHTTPFetcher(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	roots := map[uint64]tlog.Hash{0: tlog.EmptyRoot}
	prev := 0
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			l.grow(t, n)
			size := uint64(n)

			// Tessera's client: the checkpoint verifies under our key.
			cp, _, _, err := client.FetchCheckpoint(ctx, fetcher.ReadCheckpoint, l.v, origin)
			if err != nil {
				t.Fatalf("client.FetchCheckpoint = %v", err)
			}
			if cp.Size != size {
				t.Fatalf("checkpoint size = %d, want %d", cp.Size, size)
			}
			root := tlog.Hash(cp.Hash)
			roots[size] = root

			// x/mod: recompute the root from the tiles.
			thr := xtlog.TileHashReader(xtlog.Tree{N: int64(n), Hash: xtlog.Hash(root)}, xmodTiles{t, l})
			xroot, err := xtlog.TreeHash(int64(n), thr)
			if err != nil {
				t.Fatalf("x/mod TreeHash(%d) = %v", n, err)
			}
			if tlog.Hash(xroot) != root {
				t.Fatalf("x/mod TreeHash(%d) = %x, checkpoint root %x", n, xroot, root)
			}

			pb, err := client.NewProofBuilder(ctx, size, fetcher.ReadTile)
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range sampleIndexes(n) {
				lh := rfc6962.DefaultHasher.HashLeaf(l.entries[i])
				ours := l.proof(t, fmt.Sprintf("v1/proof/inclusion?index=%d&size=%d", i, n))
				var rp xtlog.RecordProof
				for _, h := range ours {
					rp = append(rp, xtlog.Hash(h))
				}
				if err := xtlog.CheckRecord(rp, int64(n), xtlog.Hash(root), int64(i), xtlog.Hash(lh)); err != nil {
					t.Errorf("x/mod CheckRecord(server's proof of %d in %d) = %v", i, n, err)
				}
				tp, err := pb.InclusionProof(ctx, uint64(i))
				if err != nil {
					t.Fatalf("ProofBuilder.InclusionProof(%d) = %v", i, err)
				}
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), size, lh, tp, root[:]); err != nil {
					t.Errorf("VerifyInclusion(Tessera's proof of %d in %d) = %v", i, n, err)
				}
				if !slices.EqualFunc(tp, ours, bytes.Equal) {
					t.Errorf("inclusion proof of %d in %d: the server's differs from Tessera's", i, n)
				}
			}
			for _, old := range []int{prev, n / 2, n - 1, 1} {
				if old < 0 || old > n {
					continue
				}
				oldRoot, ok := roots[uint64(old)]
				if !ok {
					// Not a size the test saw published: the history has it
					// only if Tessera signed one there.
					code, b := l.get(t, fmt.Sprintf("v1/checkpoints/%d", old))
					if code != http.StatusOK {
						continue
					}
					c, _, err := tlog.OpenCheckpoint(b, l.v)
					if err != nil {
						t.Fatalf("GET v1/checkpoints/%d: %v", old, err)
					}
					oldRoot = c.Root
				}
				ours := l.proof(t, fmt.Sprintf("v1/proof/consistency?old=%d&new=%d", old, n))
				if old > 0 {
					var tp xtlog.TreeProof
					for _, h := range ours {
						tp = append(tp, xtlog.Hash(h))
					}
					if err := xtlog.CheckTree(tp, int64(n), xtlog.Hash(root), int64(old), xtlog.Hash(oldRoot)); err != nil {
						t.Errorf("x/mod CheckTree(server's proof %d → %d) = %v", old, n, err)
					}
				}
				cp, err := pb.ConsistencyProof(ctx, uint64(old), size)
				if err != nil {
					t.Fatalf("ProofBuilder.ConsistencyProof(%d, %d) = %v", old, n, err)
				}
				if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(old), size, cp, oldRoot[:], root[:]); err != nil {
					t.Errorf("VerifyConsistency(Tessera's proof %d → %d) = %v", old, n, err)
				}
			}
			// The published checkpoint is in the history, byte for byte.
			_, published := l.get(t, "checkpoint")
			if code, b := l.get(t, fmt.Sprintf("v1/checkpoints/%d", n)); code != http.StatusOK || !bytes.Equal(b, published) {
				t.Errorf("GET v1/checkpoints/%d = %d %q, want the published %q", n, code, b, published)
			}

			for b := uint64(0); b*256 < size; b++ {
				bundle, err := client.GetEntryBundle(ctx, fetcher.ReadEntryBundle, b, size)
				if err != nil {
					t.Fatalf("client.GetEntryBundle(%d) = %v", b, err)
				}
				leaves, err := client.FetchLeafHashes(ctx, fetcher.ReadTile, b*256, uint64(len(bundle.Entries)), size)
				if err != nil {
					t.Fatalf("client.FetchLeafHashes(%d) = %v", b*256, err)
				}
				for i, e := range bundle.Entries {
					if idx := b*256 + uint64(i); !bytes.Equal(e, l.entries[idx]) {
						t.Fatalf("bundle %d entry %d = %q, want %q", b, i, e, l.entries[idx])
					}
					if !bytes.Equal(rfc6962.DefaultHasher.HashLeaf(e), leaves[i]) {
						t.Fatalf("bundle %d entry %d does not hash to its level-0 tile", b, i)
					}
				}
			}
			prev = n
		})
	}
}

// sampleIndexes picks indexes at the edges of tiles and levels, and a few
// at random.
func sampleIndexes(n int) []int {
	var out []int
	for _, i := range []int{0, 1, 254, 255, 256, 257, 65535, 65536, n / 2, n - 2, n - 1, mrand.IntN(max(n, 1))} {
		if i >= 0 && i < n && !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	return out
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
