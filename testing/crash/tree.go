package crash

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Tree is an in-memory RFC 6962 tree built with golang.org/x/mod/sumdb/tlog,
// independent of the log's own code: the reference the tests compare the
// log against, and the "log" that feeds a witness in the witness crash test.
// It is not safe for concurrent use.
type Tree struct {
	hashes []tlog.Hash // stored hashes, in x/mod's storage order
	n      int64
}

// Append adds an entry.
func (t *Tree) Append(entry []byte) {
	hs, err := tlog.StoredHashes(t.n, entry, t)
	if err != nil {
		panic(err) // only if t is inconsistent with itself
	}
	t.hashes = append(t.hashes, hs...)
	t.n++
}

// Size is the number of entries.
func (t *Tree) Size() int64 { return t.n }

// ReadHashes implements tlog.HashReader.
func (t *Tree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(t.hashes)) {
			return nil, fmt.Errorf("hash %d not stored (%d stored)", x, len(t.hashes))
		}
		out[i] = t.hashes[x]
	}
	return out, nil
}

// Root is the tree hash of the first size entries.
func (t *Tree) Root(size int64) (tlog.Hash, error) { return tlog.TreeHash(size, t) }

// Proof is the consistency proof from old to new (empty from 0).
func (t *Tree) Proof(old, new int64) (tlog.TreeProof, error) {
	if old == 0 {
		return nil, nil
	}
	return tlog.ProveTree(new, old, t)
}

// Checkpoint is a parsed C2SP tlog-checkpoint body.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// OpenCheckpoint verifies a signed checkpoint with the log's verifier (other
// signatures, such as witnesses' cosignatures, are ignored) and parses it.
func OpenCheckpoint(signed []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("opening checkpoint %q: %w", signed, err)
	}
	return ParseCheckpoint(n.Text)
}

// ParseCheckpoint parses the checkpoint body (origin, size, root, and
// extension lines, which are ignored).
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return Checkpoint{}, fmt.Errorf("checkpoint %q: want at least 3 lines", text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return Checkpoint{}, fmt.Errorf("checkpoint %q: bad size", text)
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("checkpoint %q: bad root", text)
	}
	c := Checkpoint{Origin: lines[0], Size: size}
	copy(c.Root[:], h)
	return c, nil
}

// Text is the checkpoint body, ready to be signed.
func (c Checkpoint) Text() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// BundlePath is the C2SP tlog-tiles path of entry bundle n, partial with
// width w when 0 < w < 256.
func BundlePath(n int64, w int) string {
	s := strconv.FormatInt(n, 10)
	for len(s)%3 != 0 {
		s = "0" + s
	}
	var parts []string
	for i := 0; i < len(s); i += 3 {
		parts = append(parts, "x"+s[i:i+3])
	}
	parts[len(parts)-1] = strings.TrimPrefix(parts[len(parts)-1], "x")
	p := "tile/entries/" + strings.Join(parts, "/")
	if w > 0 && w < 256 {
		p += ".p/" + strconv.Itoa(w)
	}
	return p
}

// ReadEntries reads the first size entries of the log at base through its
// entry bundles (GET /tile/entries/…).
func ReadEntries(ctx context.Context, hc *http.Client, base string, size int64) ([][]byte, error) {
	var entries [][]byte
	for n := int64(0); n*256 < size; n++ {
		w := 256
		if rest := size - n*256; rest < 256 {
			w = int(rest)
		}
		b, err := Get(ctx, hc, base+"/"+BundlePath(n, w))
		if err != nil {
			return nil, err
		}
		es, err := parseBundle(b)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", BundlePath(n, w), err)
		}
		if len(es) != w {
			return nil, fmt.Errorf("bundle %s holds %d entries, want %d", BundlePath(n, w), len(es), w)
		}
		entries = append(entries, es...)
	}
	return entries, nil
}

// parseBundle splits a C2SP entry bundle: big-endian uint16 length, data.
func parseBundle(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, errors.New("truncated length")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, errors.New("truncated entry")
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out, nil
}

// Get fetches url and returns the body of a 200 answer, or an error that
// says what came back.
func Get(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{URL: url, Status: resp.StatusCode, Body: string(bytes.TrimSpace(b))}
	}
	return b, nil
}

// StatusError is a non-200 answer.
type StatusError struct {
	URL    string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: %d %.300s", e.URL, e.Status, e.Body)
}

// CheckLog verifies a log's whole state against what a client saw: the
// log's entries (read from its bundles) must hold every acknowledged entry at
// its acknowledged index, and every checkpoint in seen (signed by v) must
// have the root of the tree of the log's first Size entries, so each is a
// prefix of the final tree (a stronger statement than a consistency proof).
// final is the checkpoint whose size is read; it returns the entries.
func CheckLog(ctx context.Context, hc *http.Client, base string, v note.Verifier, final []byte, seen [][]byte, acked map[int64][]byte) ([][]byte, error) {
	fc, err := OpenCheckpoint(final, v)
	if err != nil {
		return nil, fmt.Errorf("final checkpoint: %w", err)
	}
	entries, err := ReadEntries(ctx, hc, base, fc.Size)
	if err != nil {
		return nil, fmt.Errorf("reading the log's %d entries: %w", fc.Size, err)
	}
	var tree Tree
	for _, e := range entries {
		tree.Append(e)
	}
	var errs []error
	for idx, want := range acked {
		switch {
		case idx >= fc.Size:
			errs = append(errs, fmt.Errorf("acknowledged index %d is beyond the log's size %d", idx, fc.Size))
		case !bytes.Equal(entries[idx], want):
			errs = append(errs, fmt.Errorf("entry %d = %.80q…, want the acknowledged %.80q…", idx, entries[idx], want))
		}
	}
	for _, s := range append([][]byte{final}, seen...) {
		c, err := OpenCheckpoint(s, v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if c.Size > fc.Size {
			errs = append(errs, fmt.Errorf("checkpoint of size %d was published, but the log now has size %d (it went backwards)", c.Size, fc.Size))
			continue
		}
		root, err := tree.Root(c.Size)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if root != c.Root {
			errs = append(errs, fmt.Errorf("checkpoint of size %d has root %v, but the log's first %d entries hash to %v: a fork", c.Size, c.Root, c.Size, root))
		}
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("… and %d more", len(errs)-10))
	}
	return entries, errors.Join(errs...)
}
