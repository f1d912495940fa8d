package tlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

// memTiles is a TileReader over a tree kept in memory, built with the
// merkle compact range the way an engine builds it.
type memTiles struct {
	tiles map[[2]uint64][]byte
	cr    *compact.Range
}

func newMemTiles() *memTiles {
	return &memTiles{tiles: make(map[[2]uint64][]byte), cr: RangeFactory.NewEmptyRange(0)}
}

func (m *memTiles) add(t *testing.T, entry []byte) {
	t.Helper()
	lh := LeafHash(entry)
	if err := m.cr.Append(lh[:], func(id compact.NodeID, h []byte) {
		l, i, pos, ok := TileSlot(id)
		if !ok {
			return
		}
		k := [2]uint64{l, i}
		if len(m.tiles[k]) != pos*HashSize {
			t.Fatalf("node %+v out of order", id)
		}
		m.tiles[k] = append(m.tiles[k], h...)
	}); err != nil {
		t.Fatal(err)
	}
}

func (m *memTiles) ReadTile(_ context.Context, level, index uint64, width uint8) ([]byte, error) {
	b := m.tiles[[2]uint64{level, index}]
	n := int(width)
	if n == 0 {
		n = TileWidth
	}
	if len(b) < n*HashSize {
		return nil, fmt.Errorf("tile %d/%d.p/%d: not found", level, index, width)
	}
	return b[:n*HashSize], nil
}

func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }

// exampleKey is the log key of the worked example (docs/formats.md, Worked
// examples): seed 0x02 × 32.
func exampleKey(t *testing.T) (note.Signer, string) {
	t.Helper()
	seed := append([]byte{1}, bytes.Repeat([]byte{2}, 32)...)
	s, vkey, err := NewSigner("PRIVATE+KEY+example.com/ledger+edb3e1ea+" + b64(seed) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

// TestWorkedExample pins the worked example of docs/formats.md (and the package
// doc): roots, the consistency proof, the verifier key and the signed
// checkpoint, byte for byte.
func TestWorkedExample(t *testing.T) {
	ctx := t.Context()
	m := newMemTiles()
	for i := range 8 {
		m.add(t, fmt.Appendf(nil, "vmcfg %d", i))
	}
	for _, tc := range []struct {
		size uint64
		root string
	}{
		{0, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
		{5, "iOmzfHUeCGffxCxa7Uow9wBv+JqN6lXFK/00Rkd5yGI="},
		{8, "vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk="},
	} {
		got, err := TreeHash(ctx, NewTileHashReader(tc.size, m), tc.size)
		if err != nil {
			t.Fatal(err)
		}
		if b64(got[:]) != tc.root {
			t.Errorf("TreeHash(%d) = %s, want %s", tc.size, b64(got[:]), tc.root)
		}
	}
	p, err := ConsistencyProof(ctx, NewTileHashReader(8, m), 5, 8)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range p {
		got = append(got, b64(h))
	}
	want := []string{"rFr1LssMpdR9f17LJ5cpp7OGhjgNPtqS8bsZok0qOf8=", "H+n58mEFCHxpMBZA+XEBqTfOXrbvO5ai2OcliAzALlA=",
		"fGwZmzcPx665V5Us8Agwd7biI/lEUgKu60AVBoaWYMU=", "I6vsWkJlEMrRhn/X7DlllWJI/Q5WMTB/VtneLkJlbcY="}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("ConsistencyProof(5, 8) = %q, want %q", got, want)
	}

	s, vkey := exampleKey(t)
	if want := "example.com/ledger+edb3e1ea+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU"; vkey != want {
		t.Errorf("NewSigner(seed 0x02) vkey = %q, want %q", vkey, want)
	}
	root, _ := ParseHash("vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=")
	signed, err := Checkpoint{Origin: "example.com/ledger", Size: 8, Root: root}.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	wantSigned := "example.com/ledger\n8\nvBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=\n\n— example.com/ledger 7bPh6nL75+eDWpg1ghEblRgVYRCAJl0vfAhSBsO82p2JITzWz8cjlS0K9BCRfQR1fhuQs9nrOph85AgZekJyKoHcCw4=\n"
	if string(signed) != wantSigned {
		t.Errorf("Sign(size 8) = %q, want %q", signed, wantSigned)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := OpenCheckpoint(signed, v)
	if err != nil || c.Size != 8 || c.Root != root {
		t.Errorf("OpenCheckpoint = %+v, %v, want size 8 and the root", c, err)
	}
}

// TestCheckpointMangling: every truncation and single-byte change of a
// signed checkpoint is refused.
func TestCheckpointMangling(t *testing.T) {
	s, vkey := exampleKey(t)
	v, _ := note.NewVerifier(vkey)
	signed, err := Checkpoint{Origin: "example.com/ledger", Size: 3, Root: EmptyRoot}.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenCheckpoint(signed, v); err != nil {
		t.Fatalf("OpenCheckpoint(original) = %v", err)
	}
	for i := range signed {
		if _, _, err := OpenCheckpoint(signed[:i], v); err == nil {
			t.Errorf("OpenCheckpoint(truncated to %d) = nil error", i)
		}
		m := bytes.Clone(signed)
		m[i] ^= 0x01
		if _, _, err := OpenCheckpoint(m, v); err == nil {
			t.Errorf("OpenCheckpoint(byte %d flipped) = nil error", i)
		}
	}
}

func TestParseCheckpoint(t *testing.T) {
	root := b64(EmptyRoot[:])
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"ok", "o.example/log\n12\n" + root + "\n", true},
		{"zero", "o.example/log\n0\n" + root + "\n", true},
		{"no final newline", "o.example/log\n12\n" + root, false},
		{"leading zero", "o.example/log\n012\n" + root + "\n", false},
		{"sign", "o.example/log\n+12\n" + root + "\n", false},
		{"extension line", "o.example/log\n12\n" + root + "\next\n", false},
		{"short root", "o.example/log\n12\nAAAA\n", false},
		{"unpadded root", "o.example/log\n12\n" + strings.TrimRight(root, "=") + "\n", false},
		{"empty origin", "\n12\n" + root + "\n", false},
		{"space in origin", "o.example log\n12\n" + root + "\n", false},
		{"overflow", "o\n18446744073709551616\n" + root + "\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCheckpoint([]byte(tc.text))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseCheckpoint(%q) = %v, want ok %v", tc.text, err, tc.ok)
			}
			if err == nil && string(c.Marshal()) != tc.text {
				t.Errorf("Marshal(ParseCheckpoint(%q)) = %q, want the input", tc.text, c.Marshal())
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseCheckpoint(%q) = %v, want ErrMalformed", tc.text, err)
			}
		})
	}
}

func TestParseTilePath(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Tile
		ok   bool
	}{
		{"tile/0/000", Tile{}, true},
		{"tile/0/x001/000", Tile{Index: 1000}, true},
		{"tile/0/x001/x234/067", Tile{Index: 1234067}, true},
		{"tile/1/000.p/3", Tile{Level: 1, Width: 3}, true},
		{"tile/63/255.p/255", Tile{Level: 63, Index: 255, Width: 255}, true},
		{"tile/entries/001.p/17", Tile{Index: 1, Width: 17, Entries: true}, true},
		{"tile/entries/x018/x446/x744/x073/x709/x551/615", Tile{Index: 1<<64 - 1, Entries: true}, true},
		{"tile/64/000", Tile{}, false},
		{"tile/01/000", Tile{}, false},
		{"tile/-1/000", Tile{}, false},
		{"tile/0/00", Tile{}, false},
		{"tile/0/0000", Tile{}, false},
		{"tile/0/001/000", Tile{}, false},
		{"tile/0/x000/000", Tile{}, false},
		{"tile/0/x001/x000", Tile{}, false},
		{"tile/0/xx01/000", Tile{}, false},
		{"tile/0/x001", Tile{}, false},
		{"tile/0/000.p/0", Tile{}, false},
		{"tile/0/000.p/256", Tile{}, false},
		{"tile/0/000.p/08", Tile{}, false},
		{"tile/0/000.p/", Tile{}, false},
		{"tile/0/000.p", Tile{}, false},
		{"tile/0/000/", Tile{}, false},
		{"tile/0/", Tile{}, false},
		{"tile/0", Tile{}, false},
		{"tile/entries/000.p/1/2", Tile{}, false},
		{"tile/0/x018/x446/x744/x073/x709/x551/616", Tile{}, false},
		{"tile/0/+01", Tile{}, false},
		{"tiles/0/000", Tile{}, false},
		{"tile/0/000.q/1", Tile{}, false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, err := ParseTilePath(tc.path)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseTilePath(%q) = %+v, %v, want ok %v", tc.path, got, err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("ParseTilePath(%q) = %v, want ErrMalformed", tc.path, err)
				}
				return
			}
			if got != tc.want {
				t.Errorf("ParseTilePath(%q) = %+v, want %+v", tc.path, got, tc.want)
			}
			if got.Path() != tc.path {
				t.Errorf("ParseTilePath(%q).Path() = %q, want the input", tc.path, got.Path())
			}
		})
	}
}

func TestTileForSize(t *testing.T) {
	for _, tc := range []struct {
		level, index, size uint64
		want               Tile
		ok                 bool
	}{
		{0, 0, 0, Tile{}, false},
		{0, 0, 1, Tile{Width: 1}, true},
		{0, 0, 256, Tile{}, true},
		{0, 1, 256, Tile{}, false},
		{0, 1, 257, Tile{Index: 1, Width: 1}, true},
		{1, 0, 255, Tile{}, false},
		{1, 0, 256, Tile{Level: 1, Width: 1}, true},
		{1, 0, 65536, Tile{Level: 1}, true},
		{2, 0, 65537, Tile{Level: 2, Width: 1}, true},
		{63, 0, 1<<64 - 1, Tile{}, false},
		{0, 1<<56 - 1, 1<<64 - 1, Tile{Index: 1<<56 - 1, Width: 255}, true},
	} {
		got, ok := TileForSize(tc.level, tc.index, tc.size)
		if ok != tc.ok || got != tc.want {
			t.Errorf("TileForSize(%d, %d, %d) = %+v, %v, want %+v, %v", tc.level, tc.index, tc.size, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBundle(t *testing.T) {
	entries := [][]byte{{}, []byte("a"), bytes.Repeat([]byte{7}, MaxEntrySize)}
	b, err := EncodeBundle(entries)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 0, 0, 1, 'a', 0xff, 0xff}; !bytes.Equal(b[:len(want)], want) {
		t.Errorf("EncodeBundle prefix = %x, want %x", b[:len(want)], want)
	}
	got, err := ParseBundle(b)
	if err != nil || len(got) != 3 || !bytes.Equal(got[2], entries[2]) {
		t.Errorf("ParseBundle(EncodeBundle(x)) = %d entries, %v, want 3", len(got), err)
	}
	if _, err := EncodeBundle([][]byte{make([]byte, MaxEntrySize+1)}); !errors.Is(err, ErrEntryTooLarge) {
		t.Errorf("EncodeBundle(65536 bytes) = %v, want ErrEntryTooLarge", err)
	}
	for i := 1; i < len(b); i++ {
		if i == 2 || i == 5 {
			continue // cuts on an entry boundary are valid bundles
		}
		if _, err := ParseBundle(b[:i]); err == nil {
			t.Errorf("ParseBundle(truncated to %d) = nil error", i)
		}
	}
	many := bytes.Repeat([]byte{0, 0}, TileWidth+1)
	if _, err := ParseBundle(many); err == nil {
		t.Errorf("ParseBundle(257 entries) = nil error")
	}
}

func TestProofFormat(t *testing.T) {
	s, vkey := exampleKey(t)
	v, _ := note.NewVerifier(vkey)
	ctx := t.Context()
	m := newMemTiles()
	for i := range 8 {
		m.add(t, fmt.Appendf(nil, "vmcfg %d", i))
	}
	root, err := TreeHash(ctx, NewTileHashReader(8, m), 8)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := Checkpoint{Origin: "example.com/ledger", Size: 8, Root: root}.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	hashes, err := InclusionProof(ctx, NewTileHashReader(8, m), 5, 8)
	if err != nil {
		t.Fatal(err)
	}
	p := Proof{Extra: []byte("x"), Index: 5, Checkpoint: signed}
	for _, h := range hashes {
		p.Hashes = append(p.Hashes, Hash(h))
	}
	enc := p.Marshal()
	wantPrefix := "c2sp.org/tlog-proof@v1\nextra eA==\nindex 5\n"
	if !strings.HasPrefix(string(enc), wantPrefix) || !strings.HasSuffix(string(enc), "\n\n"+string(signed)) {
		t.Errorf("Marshal() = %q, want %q…, blank line, checkpoint", enc, wantPrefix)
	}
	got, err := ParseProof(enc)
	if err != nil {
		t.Fatalf("ParseProof(Marshal()) = %v", err)
	}
	if !bytes.Equal(got.Marshal(), enc) {
		t.Errorf("ParseProof(x).Marshal() = %q, want %q", got.Marshal(), enc)
	}
	c, _, err := OpenCheckpoint(got.Checkpoint, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyInclusion(got.Index, c.Size, LeafHash([]byte("vmcfg 5")), got.HashSlices(), c.Root); err != nil {
		t.Errorf("VerifyInclusion(parsed proof) = %v", err)
	}
	// Mangling: every single-byte change of the proof part must be refused
	// by the parser or by the verifier.
	for i := range len(enc) - len(signed) {
		mm := bytes.Clone(enc)
		mm[i] ^= 0x01
		q, err := ParseProof(mm)
		if err != nil {
			continue
		}
		c, _, err := OpenCheckpoint(q.Checkpoint, v)
		if err != nil {
			continue
		}
		if err := VerifyInclusion(q.Index, c.Size, LeafHash([]byte("vmcfg 5")), q.HashSlices(), c.Root); err == nil && !bytes.Equal(q.Extra, p.Extra) {
			continue // extra is unauthenticated application data
		} else if err == nil {
			t.Errorf("byte %d flipped: proof still verifies", i)
		}
	}
	for _, bad := range []string{
		"",
		"c2sp.org/tlog-proof@v2\nindex 1\n\ncp\n",
		"c2sp.org/tlog-proof@v1\nindex 01\n\ncp\n",
		"c2sp.org/tlog-proof@v1\nextra \nindex 1\n\ncp\n",
		"c2sp.org/tlog-proof@v1\nindex 1\n\n",
		"c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\ncp\n",
		"c2sp.org/tlog-proof@v1\nindex 1\ncp\n",
		"c2sp.org/tlog-proof@v1\nextra eA==\n",
	} {
		if _, err := ParseProof([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseProof(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/entries/x001/002.p/3", "tile/63/x999/999.p/255"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tile, err := ParseTilePath(s)
		if err == nil && tile.Path() != s {
			t.Errorf("ParseTilePath(%q).Path() = %q, want the input", s, tile.Path())
		}
	})
}

func FuzzParseProof(f *testing.F) {
	f.Add([]byte("c2sp.org/tlog-proof@v1\nextra eA==\nindex 5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\ncp\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProof(b)
		if err == nil && !bytes.Equal(p.Marshal(), b) {
			t.Errorf("ParseProof(%q).Marshal() = %q, want the input", b, p.Marshal())
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("o.example/log\n12\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCheckpoint(b)
		if err == nil && !bytes.Equal(c.Marshal(), b) {
			t.Errorf("ParseCheckpoint(%q).Marshal() = %q, want the input", b, c.Marshal())
		}
	})
}

func TestGeneratedKeys(t *testing.T) {
	for i := range 20 { // base64 keys often contain '+'
		skey, vkey, err := GenerateKey(rand.Reader, "k.example/log")
		if err != nil {
			t.Fatal(err)
		}
		s, gotV, err := NewSigner(skey)
		if err != nil {
			t.Fatalf("NewSigner(generated key %d) = %v", i, err)
		}
		if gotV != vkey {
			t.Errorf("NewSigner(%q) vkey = %q, want %q", skey, gotV, vkey)
		}
		if s.Name() != "k.example/log" {
			t.Errorf("NewSigner(%q).Name() = %q", skey, s.Name())
		}
	}
	for _, bad := range []string{"", "PRIVATE+KEY+x", "k.example/log+01020304+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU"} {
		if _, _, err := NewSigner(bad); err == nil {
			t.Errorf("NewSigner(%q) = nil error", bad)
		}
	}
}

func TestGenerateKeyNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"example.com/ledger", true},
		{"", false},
		{"a b", false},
		{"a\tb", false},
		{"a+b", false},
		{"a\u00a0b", false},
		{"\xff", false},
	} {
		if _, _, err := GenerateKey(rand.Reader, tc.name); (err == nil) != tc.ok {
			t.Errorf("GenerateKey(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func FuzzParseBundle(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseBundle(b)
		if err != nil {
			return
		}
		enc, err := EncodeBundle(entries)
		if err != nil || !bytes.Equal(enc, b) {
			t.Errorf("EncodeBundle(ParseBundle(%x)) = %x, %v, want the input", b, enc, err)
		}
	})
}

func TestSubtreeRoot(t *testing.T) {
	for _, n := range []int{1, 2, 4, 8, 64, 256} {
		var row []byte
		hashes := make([][]byte, n)
		for i := range n {
			h := LeafHash(fmt.Appendf(nil, "leaf %d", i))
			hashes[i] = h[:]
			row = append(row, h[:]...)
		}
		for len(hashes) > 1 {
			var next [][]byte
			for i := 0; i < len(hashes); i += 2 {
				next = append(next, hashChildren(hashes[i], hashes[i+1]))
			}
			hashes = next
		}
		orig := bytes.Clone(row)
		if got := subtreeRoot(row); !bytes.Equal(got, hashes[0]) {
			t.Errorf("subtreeRoot(%d leaves) = %x, rfc6962 gives %x", n, got, hashes[0])
		}
		if !bytes.Equal(row, orig) {
			t.Errorf("subtreeRoot(%d leaves) modified its input", n)
		}
	}
}

// TestTileCache: proofs and roots read through a shared cache of full
// tiles equal those read without it, at every size and across sizes.
func TestTileCache(t *testing.T) {
	ctx := t.Context()
	m := newMemTiles()
	const n = 70000
	for i := range n {
		m.add(t, fmt.Appendf(nil, "leaf %d", i))
	}
	cache := NewTileCache(3) // small, to exercise eviction
	rng := mathrand.New(mathrand.NewPCG(1, 2))
	for _, size := range []uint64{1, 255, 256, 257, 65536, 65537, n} {
		plain := NewTileHashReader(size, m)
		cached := NewTileHashReader(size, m).WithCache(cache)
		r1, err1 := TreeHash(ctx, plain, size)
		r2, err2 := TreeHash(ctx, cached, size)
		if err1 != nil || err2 != nil || r1 != r2 {
			t.Fatalf("TreeHash(%d) = %x, %v without cache, %x, %v with", size, r1, err1, r2, err2)
		}
		for range 20 {
			i := rng.Uint64N(size)
			p1, err1 := InclusionProof(ctx, plain, i, size)
			p2, err2 := InclusionProof(ctx, cached, i, size)
			if err1 != nil || err2 != nil || !slices.EqualFunc(p1, p2, bytes.Equal) {
				t.Fatalf("InclusionProof(%d, %d) differs with the cache: %v, %v", i, size, err1, err2)
			}
			if err := VerifyInclusion(i, size, LeafHash(fmt.Appendf(nil, "leaf %d", i)), p2, r1); err != nil {
				t.Fatalf("VerifyInclusion(%d, %d) = %v", i, size, err)
			}
			old := rng.Uint64N(size + 1)
			c1, err1 := ConsistencyProof(ctx, plain, old, size)
			c2, err2 := ConsistencyProof(ctx, cached, old, size)
			if err1 != nil || err2 != nil || !slices.EqualFunc(c1, c2, bytes.Equal) {
				t.Fatalf("ConsistencyProof(%d, %d) differs with the cache: %v, %v", old, size, err1, err2)
			}
		}
	}
}

// TestRootMismatchReadable: a proof that leads to another root names both
// roots in hex (merkle's own text lists decimal bytes), and errors.As still
// finds merkle's error.
func TestRootMismatchReadable(t *testing.T) {
	var leaf, root Hash
	leaf[0], root[0] = 1, 2
	err := VerifyInclusion(0, 1, leaf, nil, root)
	var m proof.RootMismatchError
	if !errors.As(err, &m) {
		t.Fatalf("VerifyInclusion = %v, want a proof.RootMismatchError", err)
	}
	want := fmt.Sprintf("calculated root %x does not match the expected root %x", leaf[:], root[:])
	if err.Error() != want {
		t.Errorf("error text = %q, want %q", err, want)
	}
	err = VerifyConsistency(1, 1, nil, leaf, root)
	if !errors.As(err, &m) || !strings.Contains(err.Error(), fmt.Sprintf("%x", root[:])) {
		t.Errorf("VerifyConsistency = %v, want a hex RootMismatchError", err)
	}
}
