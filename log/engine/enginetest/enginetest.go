// Package enginetest is the conformance suite that every log engine must
// pass, and the whole-log checker that other tests run after every step.
//
// An engine's test calls [Run] with a [Config] that creates fresh logs:
//
//	enginetest.Run(t, enginetest.Config{
//		Verifier: v,
//		NewLog: func(t *testing.T) func(t *testing.T) engine.Engine {
//			dir := t.TempDir()
//			return func(t *testing.T) engine.Engine { return open(t, dir) }
//		},
//	})
package enginetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/tlog"
)

// Config describes the engine under test.
type Config struct {
	// Verifier verifies the log's checkpoints; its name is the origin.
	Verifier note.Verifier
	// NewLog creates a new, empty log and returns the function that opens
	// it. Calling open again after Close reopens the same log's storage.
	NewLog func(t *testing.T) (open func(t *testing.T) engine.Engine)
}

// Run runs the conformance suite.
func Run(t *testing.T, c Config) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, c) })
	t.Run("AddConcurrent", func(t *testing.T) { testAddConcurrent(t, c) })
	t.Run("EntrySizes", func(t *testing.T) { testEntrySizes(t, c) })
	t.Run("Reopen", func(t *testing.T) { testReopen(t, c) })
	t.Run("Randomized", func(t *testing.T) { testRandomized(t, c) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, c) })
	t.Run("IntegratedAt", func(t *testing.T) { testIntegratedAt(t, c) })
}

// testIntegratedAt checks an engine's integration times, if it records
// them: each lies between the start of the entry's Add (to the
// millisecond) and its return, never decreases with the index, reads the
// same every time and after a reopen, and is not found for an index the
// log does not have.
func testIntegratedAt(t *testing.T, c Config) {
	ctx := t.Context()
	open := c.NewLog(t)
	e := open(t)
	defer func() { e.Close() }()
	it, ok := e.(engine.IntegrationTimes)
	if !ok {
		t.Skipf("%T does not implement engine.IntegrationTimes", e)
	}
	if _, err := it.IntegratedAt(ctx, 0); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("IntegratedAt(0) on an empty log = %v, want ErrNotFound", err)
	}
	var got []time.Time
	for i := range 3 {
		before := time.UnixMilli(time.Now().UnixMilli())
		idx, err := e.Add(ctx, entryFor("integrated", i, 20))
		if err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		if idx != uint64(i) {
			t.Fatalf("Add #%d returned index %d", i, idx)
		}
		at, err := it.IntegratedAt(ctx, idx)
		if err != nil {
			t.Fatalf("IntegratedAt(%d) = %v", idx, err)
		}
		if at.Before(before) || at.After(after) {
			t.Errorf("IntegratedAt(%d) = %v, not within its Add (%v to %v)", idx, at, before, after)
		}
		if i > 0 && at.Before(got[i-1]) {
			t.Errorf("IntegratedAt(%d) = %v is before IntegratedAt(%d) = %v", idx, at, i-1, got[i-1])
		}
		got = append(got, at)
	}
	if _, err := it.IntegratedAt(ctx, 3); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("IntegratedAt(3) on a log of 3 = %v, want ErrNotFound", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = open(t)
	it = e.(engine.IntegrationTimes)
	for i, want := range got {
		at, err := it.IntegratedAt(ctx, uint64(i))
		if err != nil || !at.Equal(want) {
			t.Errorf("IntegratedAt(%d) after reopen = %v, %v, want %v", i, at, err, want)
		}
	}
}

func testEmpty(t *testing.T, c Config) {
	ctx := t.Context()
	e := c.NewLog(t)(t)
	defer e.Close()
	Check(t, e, c.Verifier, nil)
	cp, err := e.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at0, err := e.CheckpointAt(ctx, 0)
	if err != nil || !bytes.Equal(at0, cp) {
		t.Errorf("CheckpointAt(0) = %q, %v, want %q", at0, err, cp)
	}
	for _, size := range []uint64{1, 2, 1 << 40} {
		if _, err := e.CheckpointAt(ctx, size); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("CheckpointAt(%d) on an empty log = %v, want ErrNotFound", size, err)
		}
	}
	for _, w := range []uint8{0, 1} {
		if _, err := e.ReadTile(ctx, 0, 0, w); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("ReadTile(0, 0, %d) on an empty log = %v, want ErrNotFound", w, err)
		}
		if _, err := e.ReadEntryBundle(ctx, 0, w); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("ReadEntryBundle(0, %d) on an empty log = %v, want ErrNotFound", w, err)
		}
	}
}

// entryFor returns a distinct test entry.
func entryFor(tag string, i int, size int) []byte {
	b := fmt.Appendf(nil, "%s %d ", tag, i)
	for len(b) < size {
		b = append(b, byte('a'+len(b)%26))
	}
	return b
}

// log records what a test added: entries by index.
type record struct {
	mu      sync.Mutex
	entries [][]byte
}

func (l *record) set(i uint64, e []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for uint64(len(l.entries)) <= i {
		l.entries = append(l.entries, nil)
	}
	if l.entries[i] != nil {
		return fmt.Errorf("index %d assigned twice", i)
	}
	l.entries[i] = e
	return nil
}

// add adds n entries with the given concurrency and records them.
func (l *record) add(ctx context.Context, e engine.Engine, tag string, n, workers int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i := range n {
		g.Go(func() error {
			entry := entryFor(tag, i, 10+i%50)
			idx, err := e.Add(ctx, entry)
			if err != nil {
				return fmt.Errorf("Add(%q): %w", entry, err)
			}
			cp, err := e.Checkpoint(ctx)
			if err != nil {
				return err
			}
			c, err := tlog.ParseCheckpoint(cpText(cp))
			if err != nil {
				return err
			}
			if c.Size <= idx {
				return fmt.Errorf("Add returned index %d but Checkpoint has size %d", idx, c.Size)
			}
			return l.set(idx, entry)
		})
	}
	return g.Wait()
}

func cpText(signed []byte) []byte {
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return signed
	}
	return signed[:i+1]
}

func testAddConcurrent(t *testing.T, c Config) {
	e := c.NewLog(t)(t)
	defer e.Close()
	var l record
	if err := l.add(t.Context(), e, "concurrent", 600, 32); err != nil {
		t.Fatal(err)
	}
	for i, x := range l.entries {
		if x == nil {
			t.Fatalf("index %d was never returned by Add (600 adds)", i)
		}
	}
	Check(t, e, c.Verifier, l.entries)
}

func testEntrySizes(t *testing.T, c Config) {
	ctx := t.Context()
	e := c.NewLog(t)(t)
	defer e.Close()
	var l record
	for _, size := range []int{0, 1, tlog.MaxEntrySize} {
		entry := bytes.Repeat([]byte{'s'}, size)
		idx, err := e.Add(ctx, entry)
		if err != nil {
			t.Fatalf("Add(%d bytes) = %v", size, err)
		}
		if err := l.set(idx, entry); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Add(ctx, make([]byte, tlog.MaxEntrySize+1)); !errors.Is(err, engine.ErrEntryTooLarge) {
		t.Errorf("Add(65,536 bytes) = %v, want ErrEntryTooLarge", err)
	}
	Check(t, e, c.Verifier, l.entries)
}

func testReopen(t *testing.T, c Config) {
	ctx := t.Context()
	open := c.NewLog(t)
	e := open(t)
	var l record
	if err := l.add(ctx, e, "before", 300, 8); err != nil {
		t.Fatal(err)
	}
	before, err := e.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	e = open(t)
	defer e.Close()
	after, err := e.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("Checkpoint() after reopen = %q, want %q", after, before)
	}
	Check(t, e, c.Verifier, l.entries)
	idx, err := e.Add(ctx, []byte("after reopen"))
	if err != nil {
		t.Fatal(err)
	}
	if idx != 300 {
		t.Errorf("Add after reopen = %d, want 300", idx)
	}
	if err := l.set(idx, []byte("after reopen")); err != nil {
		t.Fatal(err)
	}
	Check(t, e, c.Verifier, l.entries)
}

// testRandomized adds random batches with random concurrency, reopening the
// engine at random, and checks the whole log after every step.
func testRandomized(t *testing.T, c Config) {
	ctx := t.Context()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	open := c.NewLog(t)
	e := open(t)
	defer func() { e.Close() }()
	var l record
	steps := 12
	if testing.Short() {
		steps = 5
	}
	for step := range steps {
		n := rng.IntN(300)
		if rng.IntN(4) == 0 {
			n = 1
		}
		if err := l.add(ctx, e, fmt.Sprintf("step%d", step), n, 1+rng.IntN(40)); err != nil {
			t.Fatal(err)
		}
		if rng.IntN(3) == 0 {
			if err := e.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			e = open(t)
		}
		Check(t, e, c.Verifier, l.entries)
		if t.Failed() {
			t.Fatalf("whole-log check failed after step %d", step)
		}
	}
}

func testClosed(t *testing.T, c Config) {
	e := c.NewLog(t)(t)
	if err := e.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	if _, err := e.Add(t.Context(), []byte("late")); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
	// Reads after Close fail (or still answer) but never panic.
	e.ReadTile(t.Context(), 0, 0, 0)
	e.ReadEntryBundle(t.Context(), 0, 0)
	e.CheckpointAt(t.Context(), 0)
	e.Checkpoint(t.Context())
}

// Check verifies the whole log: the latest checkpoint is signed by v and
// its tree holds exactly want (when want is not nil; otherwise the
// entries the engine serves are taken as given); every entry bundle hashes
// to its level-0 tile; every tile equals the one recomputed from the
// entries; and every checkpoint in the history (sizes 0 … latest) that the
// engine has verifies and has the root of the matching prefix of the log,
// so it is consistent with the latest, which a consistency proof built from
// the engine's tiles confirms. It reports failures with t.Errorf.
func Check(t testing.TB, e engine.Engine, v note.Verifier, want [][]byte) {
	t.Helper()
	if err := CheckLog(context.Background(), e, v, want); err != nil {
		t.Errorf("whole-log check: %v", err)
	}
}

// CheckLog is [Check] returning the problems it finds, joined.
func CheckLog(ctx context.Context, e engine.Engine, v note.Verifier, want [][]byte) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	latestSigned, err := e.Checkpoint(ctx)
	if err != nil {
		fail("Checkpoint() = %v", err)
		return errors.Join(errs...)
	}
	latest, _, err := tlog.OpenCheckpoint(latestSigned, v)
	if err != nil {
		fail("Checkpoint() does not verify: %v", err)
		return errors.Join(errs...)
	}
	size := latest.Size
	if want != nil && uint64(len(want)) != size {
		fail("Checkpoint() size = %d, want %d", size, len(want))
		if uint64(len(want)) < size {
			return errors.Join(errs...)
		}
	}

	// Entries, bundle by bundle.
	entries := make([][]byte, 0, size)
	for i := uint64(0); i*tlog.TileWidth < size; i++ {
		tile, _ := tlog.TileForSize(0, i, size)
		b, err := e.ReadEntryBundle(ctx, i, tile.Width)
		if err != nil {
			fail("ReadEntryBundle(%d, %d) = %v", i, tile.Width, err)
			return errors.Join(errs...)
		}
		got, err := tlog.ParseBundle(b)
		if err != nil || len(got) != tile.Count() {
			fail("ReadEntryBundle(%d, %d) = %d entries, %v, want %d", i, tile.Width, len(got), err, tile.Count())
			return errors.Join(errs...)
		}
		entries = append(entries, got...)
	}
	for i := range entries {
		if want != nil && !bytes.Equal(entries[i], want[i]) {
			fail("entry %d = %q, want %q", i, entries[i], want[i])
			return errors.Join(errs...)
		}
	}

	// Recompute every tile and every prefix root from the entries alone.
	expTiles := make(map[[2]uint64][]byte)
	roots := make([]tlog.Hash, size+1)
	roots[0] = tlog.EmptyRoot
	cr := tlog.RangeFactory.NewEmptyRange(0)
	for i, entry := range entries {
		lh := tlog.LeafHash(entry)
		if err := cr.Append(lh[:], func(id compact.NodeID, h []byte) {
			if l, n, _, ok := tlog.TileSlot(id); ok {
				expTiles[[2]uint64{l, n}] = append(expTiles[[2]uint64{l, n}], h...)
			}
		}); err != nil {
			return errors.Join(append(errs, err)...)
		}
		r, err := cr.GetRootHash(nil)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		roots[i+1] = tlog.Hash(r)
	}
	if roots[size] != latest.Root {
		fail("latest checkpoint root at size %d = %x, recomputed from the entries %x", size, latest.Root, roots[size])
	}
	for k, exp := range expTiles {
		for _, w := range []uint8{0, uint8(len(exp) / tlog.HashSize % tlog.TileWidth)} {
			if len(exp) < tlog.TileWidth*tlog.HashSize && w == 0 {
				continue
			}
			got, err := e.ReadTile(ctx, k[0], k[1], w)
			n := int(w)
			if w == 0 {
				n = tlog.TileWidth
			}
			if err != nil || !bytes.Equal(got, exp[:n*tlog.HashSize]) {
				fail("ReadTile(%d, %d, %d) = %d bytes, %v, want the %d recomputed hashes", k[0], k[1], w, len(got), err, n)
			}
		}
	}

	// History: every checkpoint the engine has, at every size up to latest.
	r := tlog.NewTileHashReader(size, e)
	found := 0
	for s := uint64(0); s <= size; s++ {
		signed, err := e.CheckpointAt(ctx, s)
		if errors.Is(err, engine.ErrNotFound) {
			continue
		}
		if err != nil {
			fail("CheckpointAt(%d) = %v", s, err)
			continue
		}
		found++
		c, _, err := tlog.OpenCheckpoint(signed, v)
		if err != nil {
			fail("CheckpointAt(%d) does not verify: %v", s, err)
			continue
		}
		if c.Size != s || c.Root != roots[s] {
			fail("CheckpointAt(%d) = size %d root %x, want the root of the first %d entries %x", s, c.Size, c.Root, s, roots[s])
			continue
		}
		// Partial tiles of this size stay served.
		for level := uint64(0); level < 8; level++ {
			atLevel := s >> (level * tlog.TileHeight)
			if atLevel%tlog.TileWidth == 0 {
				continue
			}
			tile, _ := tlog.TileForSize(level, atLevel/tlog.TileWidth, s)
			if _, err := e.ReadTile(ctx, tile.Level, tile.Index, tile.Width); err != nil {
				fail("size %d: ReadTile(%s) = %v", s, tile.Path(), err)
			}
		}
		if s == 0 || s == size || (s%7 != 0 && s != size-1) {
			continue // sample consistency proofs; the root check above already implies consistency
		}
		p, err := tlog.ConsistencyProof(ctx, r, s, size)
		if err != nil {
			fail("ConsistencyProof(%d, %d) = %v", s, size, err)
			continue
		}
		if err := tlog.VerifyConsistency(s, size, p, c.Root, latest.Root); err != nil {
			fail("checkpoint %d is not consistent with checkpoint %d: %v", s, size, err)
		}
	}
	if found == 0 {
		fail("CheckpointAt finds no checkpoint at any size 0…%d", size)
	}
	if _, err := e.CheckpointAt(ctx, size+1); !errors.Is(err, engine.ErrNotFound) {
		fail("CheckpointAt(%d) beyond the latest = %v, want ErrNotFound", size+1, err)
	}
	if !slices.Equal(cpText(latestSigned), latest.Marshal()) {
		fail("latest checkpoint text is not canonical")
	}
	return errors.Join(errs...)
}
