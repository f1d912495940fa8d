// Package servertest checks a running log server the way other people's
// code reads it: golang.org/x/mod/sumdb/tlog and Tessera's client verify the
// checkpoint, recompute the tree from the tiles (partial ones included),
// check our online inclusion and consistency proofs and build their own from
// the tiles, and hash every entry bundle against its level-0 tile. Both
// engines' tests (log/server on badger, log/tesseralog) use it.
package servertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/vmledger/vmledger/log/tlog"
)

// Checker checks one log server at growing sizes. Create it with New.
type Checker struct {
	base     string // with a trailing slash
	verifier note.Verifier
	origin   string
	fetcher  *client.HTTPFetcher
	roots    map[uint64]tlog.Hash
	prev     int
}

// New returns a Checker for the server at base, whose checkpoints v
// verifies and whose origin is origin.
func New(t testing.TB, base string, v note.Verifier, origin string) *Checker {
	t.Helper()
	if len(base) == 0 || base[len(base)-1] != '/' {
		base += "/"
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	f, err := client.NewHTTPFetcher(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Checker{base: base, verifier: v, origin: origin, fetcher: f, roots: map[uint64]tlog.Hash{0: tlog.EmptyRoot}}
}

// Check verifies everything the server serves for a log whose entries, by
// index, are entries; the server's checkpoint must be of size len(entries).
// Consistency is checked from the size of the previous Check, half the size,
// size-1 and 1. If historyIsPublished, the served checkpoint must also be in
// /v1/checkpoints/<size> byte for byte.
func (c *Checker) Check(t *testing.T, entries [][]byte, historyIsPublished bool) {
	t.Helper()
	ctx := t.Context()
	n := len(entries)
	size := uint64(n)

	// Tessera's client: the checkpoint verifies under the log's key.
	cp, _, _, err := client.FetchCheckpoint(ctx, c.fetcher.ReadCheckpoint, c.verifier, c.origin)
	if err != nil {
		t.Fatalf("client.FetchCheckpoint = %v", err)
	}
	if cp.Size != size {
		t.Fatalf("checkpoint size = %d, want %d", cp.Size, size)
	}
	root := tlog.Hash(cp.Hash)
	c.roots[size] = root

	// x/mod: recompute the root from the tiles.
	thr := xtlog.TileHashReader(xtlog.Tree{N: int64(n), Hash: xtlog.Hash(root)}, xmodTiles{t, c})
	xroot, err := xtlog.TreeHash(int64(n), thr)
	if err != nil {
		t.Fatalf("x/mod TreeHash(%d) = %v", n, err)
	}
	if tlog.Hash(xroot) != root {
		t.Fatalf("x/mod TreeHash(%d) = %x, checkpoint root %x", n, xroot, root)
	}

	pb, err := client.NewProofBuilder(ctx, size, c.fetcher.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range SampleIndexes(n) {
		lh := rfc6962.DefaultHasher.HashLeaf(entries[i])
		// The server's online proof, checked by x/mod and by merkle.
		ours := c.proof(t, fmt.Sprintf("v1/proof/inclusion?index=%d&size=%d", i, n))
		var rp xtlog.RecordProof
		for _, h := range ours {
			rp = append(rp, xtlog.Hash(h))
		}
		if err := xtlog.CheckRecord(rp, int64(n), xtlog.Hash(root), int64(i), xtlog.Hash(lh)); err != nil {
			t.Errorf("x/mod CheckRecord(server's proof of %d in %d) = %v", i, n, err)
		}
		// Tessera builds its own proof from the tiles.
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
	for _, old := range []int{c.prev, n / 2, n - 1, 1} {
		if old < 0 || old > n {
			continue
		}
		oldRoot, ok := c.roots[uint64(old)]
		if !ok {
			// A size never seen published: the history has it only if the
			// engine signed a checkpoint there.
			code, b := c.get(t, fmt.Sprintf("v1/checkpoints/%d", old))
			if code != http.StatusOK {
				continue
			}
			oc, _, err := tlog.OpenCheckpoint(b, c.verifier)
			if err != nil {
				t.Fatalf("GET v1/checkpoints/%d: %v", old, err)
			}
			oldRoot = oc.Root
			c.roots[uint64(old)] = oldRoot
		}
		ours := c.proof(t, fmt.Sprintf("v1/proof/consistency?old=%d&new=%d", old, n))
		if old > 0 { // x/mod's CheckTree refuses old size 0: trivially consistent
			var tp xtlog.TreeProof
			for _, h := range ours {
				tp = append(tp, xtlog.Hash(h))
			}
			if err := xtlog.CheckTree(tp, int64(n), xtlog.Hash(root), int64(old), xtlog.Hash(oldRoot)); err != nil {
				t.Errorf("x/mod CheckTree(server's proof %d → %d) = %v", old, n, err)
			}
		}
		cpf, err := pb.ConsistencyProof(ctx, uint64(old), size)
		if err != nil {
			t.Fatalf("ProofBuilder.ConsistencyProof(%d, %d) = %v", old, n, err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(old), size, cpf, oldRoot[:], root[:]); err != nil {
			t.Errorf("VerifyConsistency(Tessera's proof %d → %d) = %v", old, n, err)
		}
	}
	if historyIsPublished {
		_, published := c.get(t, "checkpoint")
		if code, b := c.get(t, fmt.Sprintf("v1/checkpoints/%d", n)); code != http.StatusOK || !bytes.Equal(b, published) {
			t.Errorf("GET v1/checkpoints/%d = %d %q, want the published %q", n, code, b, published)
		}
	}

	// Every entry bundle hashes to its level-0 tile.
	for b := uint64(0); b*256 < size; b++ {
		bundle, err := client.GetEntryBundle(ctx, c.fetcher.ReadEntryBundle, b, size)
		if err != nil {
			t.Fatalf("client.GetEntryBundle(%d) = %v", b, err)
		}
		leaves, err := client.FetchLeafHashes(ctx, c.fetcher.ReadTile, b*256, uint64(len(bundle.Entries)), size)
		if err != nil {
			t.Fatalf("client.FetchLeafHashes(%d) = %v", b*256, err)
		}
		for i, e := range bundle.Entries {
			if idx := b*256 + uint64(i); !bytes.Equal(e, entries[idx]) {
				t.Fatalf("bundle %d entry %d = %q, want %q", b, i, e, entries[idx])
			}
			if !bytes.Equal(rfc6962.DefaultHasher.HashLeaf(e), leaves[i]) {
				t.Fatalf("bundle %d entry %d does not hash to its level-0 tile", b, i)
			}
		}
	}
	c.prev = n
}

// SampleIndexes picks indexes at the edges of tiles and levels, and one at
// random.
func SampleIndexes(n int) []int {
	var out []int
	for _, i := range []int{0, 1, 254, 255, 256, 257, 65535, 65536, n / 2, n - 2, n - 1, mrand.IntN(max(n, 1))} {
		if i >= 0 && i < n && !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	return out
}

func (c *Checker) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	return Get(t, c.base+path)
}

// Get GETs url and returns the status code and the whole body; a transport
// error fails the test.
func Get(t testing.TB, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
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

func (c *Checker) proof(t *testing.T, path string) [][]byte {
	t.Helper()
	code, b := c.get(t, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %q", path, code, b)
	}
	var p struct{ Hashes [][]byte }
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return p.Hashes
}

// xmodTiles is x/mod's TileReader over the HTTP tiles: x/mod names tiles
// with their height (tile/8/L/N), the C2SP paths do not.
type xmodTiles struct {
	t *testing.T
	c *Checker
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
		code, b := x.c.get(x.t, p)
		if code != http.StatusOK {
			return nil, fmt.Errorf("GET %s = %d", p, code)
		}
		out[i] = b
	}
	return out, nil
}

func (x xmodTiles) SaveTiles([]xtlog.Tile, [][]byte) {}

// BadInput sends the server at base (with a trailing slash) malformed,
// out-of-range and oversized requests and checks that each is refused with
// its 4xx status and a reason, never a 5xx; the log must hold exactly 300
// entries and accept raw entries (--allow-raw-entries). Afterwards the
// log still has 300 entries: the refused POSTs appended nothing.
func BadInput(t *testing.T, base string) {
	for _, tc := range []struct {
		method, path string
		body         []byte
		want         int
	}{
		{"GET", "tile/0/001", nil, 404}, // does not exist yet
		{"GET", "tile/0/001.p/45", nil, 404},
		{"GET", "tile/1/000", nil, 404},
		{"GET", "tile/2/000.p/1", nil, 404},
		{"GET", "tile/entries/001", nil, 404},
		{"GET", "tile/entries/001.p/45", nil, 404},
		{"GET", "tile/entries/x999/x999/x999/x999/x999/999", nil, 404},
		{"GET", "tile/63/x018/x446/x744/x073/x709/x551/615", nil, 404},
		{"GET", "tile/64/000", nil, 400},
		{"GET", "tile/01/000", nil, 400},
		{"GET", "tile/0/00", nil, 400},
		{"GET", "tile/0/x000/001", nil, 400},
		{"GET", "tile/0/001/000", nil, 400},
		{"GET", "tile/0/000.p/0", nil, 400},
		{"GET", "tile/0/000.p/256", nil, 400},
		{"GET", "tile/0/000.p/07", nil, 400},
		{"GET", "tile/0/x018/x446/x744/x073/x709/x551/616", nil, 400},
		{"GET", "tile/entries/abc", nil, 400},
		{"GET", "tile/", nil, 400},
		{"GET", "tile/0", nil, 400},
		{"GET", "v1/proof/inclusion?index=300&size=300", nil, 400},
		{"GET", "v1/proof/inclusion?index=0&size=301", nil, 400},
		{"GET", "v1/proof/inclusion?index=0&size=0", nil, 400},
		{"GET", "v1/proof/inclusion?index=-1&size=10", nil, 400},
		{"GET", "v1/proof/inclusion?index=01&size=10", nil, 400},
		{"GET", "v1/proof/inclusion?index=1", nil, 400},
		{"GET", "v1/proof/inclusion?index=1&index=2&size=10", nil, 400},
		{"GET", "v1/proof/inclusion?index=1&size=18446744073709551616", nil, 400},
		{"GET", "v1/proof/inclusion?index=1&size=18446744073709551615", nil, 400},
		{"GET", "v1/proof/consistency?old=10&new=5", nil, 400},
		{"GET", "v1/proof/consistency?old=10&new=301", nil, 400},
		{"GET", "v1/proof/consistency?old=x&new=5", nil, 400},
		{"GET", "v1/proof/consistency?new=5", nil, 400},
		{"GET", "v1/checkpoints/301", nil, 404},
		{"GET", "v1/checkpoints/18446744073709551615", nil, 404},
		{"GET", "v1/checkpoints/007", nil, 400},
		{"GET", "v1/checkpoints/", nil, 404},
		{"GET", "v1/checkpoints/-3", nil, 400},
		{"GET", "nothing", nil, 404},
		{"POST", "checkpoint", nil, 405},
		{"POST", "v1/entries", make([]byte, tlog.MaxEntrySize+1), 413},
		{"POST", "v1/entries", make([]byte, 1<<20), 413},
		{"GET", "v1/entries", nil, 405},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, bytes.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s = %d %q, want %d", tc.method, tc.path, resp.StatusCode, b, tc.want)
			}
			if resp.StatusCode >= 400 && resp.StatusCode < 500 && len(bytes.TrimSpace(b)) == 0 {
				t.Errorf("%s %s = %d with no reason", tc.method, tc.path, resp.StatusCode)
			}
		})
	}
	if code, b := Get(t, base+"v1/checkpoints/301"); code != 404 {
		t.Errorf("after refused entries, GET v1/checkpoints/301 = %d %q, want 404", code, b)
	}
	if code, b := Get(t, base+"v1/checkpoints/300"); code != 200 {
		t.Errorf("GET v1/checkpoints/300 = %d %q, want 200: BadInput needs a log of 300 entries", code, b)
	}
}
