package badgerlog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/internal/datadir"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/engine/enginetest"
	"github.com/vmledger/vmledger/log/tlog"
)

func newKey(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := tlog.GenerateKey(rand.Reader, "test.example/log")
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
	return s, v
}

func open(t testing.TB, c Config) *Engine {
	t.Helper()
	e, err := Open(t.Context(), c)
	if err != nil {
		t.Fatalf("Open(%s) = %v", c.Dir, err)
	}
	return e
}

func TestConformance(t *testing.T) {
	s, v := newKey(t)
	enginetest.Run(t, enginetest.Config{
		Verifier: v,
		NewLog: func(t *testing.T) func(t *testing.T) engine.Engine {
			dir := t.TempDir()
			return func(t *testing.T) engine.Engine {
				return open(t, Config{Dir: dir, Signer: s, MemoryBudget: 32 << 20})
			}
		},
	})
}

func TestFailedCommit(t *testing.T) {
	ctx := t.Context()
	s, v := newKey(t)
	dir := t.TempDir()
	var crash atomic.Bool
	c := Config{Dir: dir, Signer: s, MemoryBudget: 32 << 20, testHookCommit: func() error {
		if crash.Load() {
			return errors.New("simulated crash before commit")
		}
		return nil
	}}
	e := open(t, c)
	var acked [][]byte
	for i := range 300 {
		acked = append(acked, fmt.Appendf(nil, "entry %d", i))
	}
	if _, err := e.AddBatch(ctx, acked[:290]); err != nil {
		t.Fatal(err)
	}
	for _, entry := range acked[290:] {
		if _, err := e.Add(ctx, entry); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := e.Checkpoint(ctx)
	crash.Store(true)
	if _, err := e.Add(ctx, []byte("lost")); err == nil {
		t.Fatal("Add during a failing commit = nil error")
	}
	crash.Store(false)
	if _, err := e.Add(ctx, []byte("after failure")); err == nil {
		t.Error("Add after a failed commit = nil error, want the sequencer stopped")
	}
	if got, _ := e.Checkpoint(ctx); !bytes.Equal(got, want) {
		t.Errorf("Checkpoint() after a failed commit = %q, want the last committed %q", got, want)
	}
	e.Close()

	e = open(t, c)
	defer e.Close()
	if got, _ := e.Checkpoint(ctx); !bytes.Equal(got, want) {
		t.Errorf("Checkpoint() after reopen = %q, want the last committed %q", got, want)
	}
	enginetest.Check(t, e, v, acked)
	if idx, err := e.Add(ctx, []byte("next")); err != nil || idx != 300 {
		t.Errorf("Add after reopen = %d, %v, want 300", idx, err)
	}
}

// TestCheckerCatchesCorruption shows that the whole-log checker fails on a
// corrupted tile and on a checkpoint inconsistent with the log.
func TestCheckerCatchesCorruption(t *testing.T) {
	ctx := t.Context()
	s, v := newKey(t)
	for _, tc := range []struct {
		name    string
		corrupt func(e *Engine) error
	}{
		{"tile", func(e *Engine) error {
			b, _ := e.ReadTile(ctx, 0, 0, 0)
			b = bytes.Clone(b)
			b[100] ^= 1
			return e.db.Update(func(txn *badger.Txn) error { return txn.Set(tileKey(0, 0), b) })
		}},
		{"entry", func(e *Engine) error {
			return e.db.Update(func(txn *badger.Txn) error { return txn.Set(entryKey(7), []byte("forged")) })
		}},
		{"checkpoint", func(e *Engine) error {
			signed, err := tlog.Checkpoint{Origin: s.Name(), Size: 3, Root: tlog.LeafHash(nil)}.Sign(s)
			if err != nil {
				return err
			}
			return e.db.Update(func(txn *badger.Txn) error { return txn.Set(checkpointKey(3), signed) })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := open(t, Config{Dir: t.TempDir(), Signer: s, MemoryBudget: 32 << 20})
			defer e.Close()
			var batch [][]byte
			for i := range 300 {
				batch = append(batch, fmt.Appendf(nil, "entry %d", i))
			}
			if _, err := e.AddBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
			if err := enginetest.CheckLog(ctx, e, v, nil); err != nil {
				t.Fatalf("CheckLog before corruption = %v", err)
			}
			if err := tc.corrupt(e); err != nil {
				t.Fatal(err)
			}
			if err := enginetest.CheckLog(ctx, e, v, nil); err == nil {
				t.Errorf("CheckLog after corrupting the %s = nil, want an error", tc.name)
			}
		})
	}
}

func TestOtherKeyRefused(t *testing.T) {
	s, _ := newKey(t)
	dir := t.TempDir()
	open(t, Config{Dir: dir, Signer: s, MemoryBudget: 32 << 20}).Close()
	skey, _, _ := tlog.GenerateKey(rand.Reader, "other.example/log")
	other, _, _ := tlog.NewSigner(skey)
	if e, err := Open(t.Context(), Config{Dir: dir, Signer: other, MemoryBudget: 32 << 20}); err == nil {
		e.Close()
		t.Error("Open with a key for another origin = nil error")
	}
	skey, _, _ = tlog.GenerateKey(rand.Reader, s.Name())
	sameName, _, _ := tlog.NewSigner(skey)
	if e, err := Open(t.Context(), Config{Dir: dir, Signer: sameName, MemoryBudget: 32 << 20}); err == nil {
		e.Close()
		t.Error("Open with another key of the same name = nil error")
	}
	if e, err := Open(t.Context(), Config{Dir: dir, Signer: s, MemoryBudget: 32 << 20}); err != nil {
		t.Errorf("Open with the log's own key = %v", err)
	} else {
		e.Close()
	}
}

// TestKill kills a process that is appending (SIGKILL, no Close) and checks
// that the reopened log holds every entry that process acknowledged and
// verifies as a whole.
func TestKill(t *testing.T) {
	if dir := os.Getenv("BADGERLOG_KILL_CHILD"); dir != "" {
		killChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill$")
	cmd.Env = append(os.Environ(), "BADGERLOG_KILL_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 500 {
		var idx uint64
		var entry string
		if _, err := fmt.Sscanf(sc.Text(), "ack %d %s", &idx, &entry); err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		acked[idx] = entry
	}
	cmd.Process.Kill()
	cmd.Wait()
	if len(acked) < 500 {
		t.Fatalf("child acknowledged only %d entries", len(acked))
	}

	e := open(t, Config{Dir: dir, Signer: killKey(t), MemoryBudget: 32 << 20})
	defer e.Close()
	v, _ := note.NewVerifier(killVKey)
	enginetest.Check(t, e, v, nil)
	for idx, entry := range acked {
		b, err := e.ReadEntryBundle(t.Context(), idx/256, 0)
		if err != nil {
			cp, _ := e.Checkpoint(t.Context())
			c, _ := tlog.ParseCheckpoint(cp[:bytes.Index(cp, []byte("\n\n"))+1])
			b, err = e.ReadEntryBundle(t.Context(), idx/256, uint8(c.Size%256))
			if err != nil {
				t.Fatalf("acknowledged entry %d lost: %v (size %d)", idx, err, c.Size)
			}
		}
		entries, _ := tlog.ParseBundle(b)
		if got := string(entries[idx%256]); got != entry {
			t.Errorf("entry %d = %q, want the acknowledged %q", idx, got, entry)
		}
	}
}

const (
	killSKey = "PRIVATE+KEY+kill.example/log+902dd87c+AYA9dlAbZQFIyKeDMR6k9C48okeHTL9tfS5A1+duMRED" // test key
	killVKey = "kill.example/log+902dd87c+AbEGVcCmaN3HDKb+tDA0sV67ZbaMRapWFNP/Vk/+oWGF"
)

func killKey(t testing.TB) note.Signer {
	s, vkey, err := tlog.NewSigner(killSKey)
	if err != nil || vkey != killVKey {
		t.Fatalf("kill key: %v, vkey %q", err, vkey)
	}
	return s
}

// killChild appends until killed, printing "ack <index> <entry>" after each
// Add returns.
func killChild(dir string) {
	s, _, _ := tlog.NewSigner(killSKey)
	e, err := Open(context.Background(), Config{Dir: dir, Signer: s, MemoryBudget: 32 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				entry := fmt.Sprintf("w%d-%d", w, i)
				idx, err := e.Add(context.Background(), []byte(entry))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Printf("ack %d %s\n", idx, entry)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// BenchmarkAppend measures durable appends of 1 KiB entries with 64
// concurrent writers: every Add returns after its batch is fsynced and
// checkpointed.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, _ := newKey(b)
			e := open(b, Config{Dir: b.TempDir(), Signer: s})
			defer e.Close()
			var mu sync.Mutex
			var lat []time.Duration
			b.SetBytes(1024)
			b.ResetTimer()
			start := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					var mine []time.Duration
					entry := make([]byte, 1024)
					for next.Add(1) <= int64(b.N) {
						rand.Read(entry) // distinct, incompressible entries
						t0 := time.Now()
						if _, err := e.Add(context.Background(), entry); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// TestPushback: with the sequencer stuck in a commit and the queue full,
// Add answers ErrPushback at once.
func TestPushback(t *testing.T) {
	ctx := t.Context()
	s, v := newKey(t)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var block atomic.Bool
	e := open(t, Config{Dir: t.TempDir(), Signer: s, MemoryBudget: 32 << 20, MaxPending: 1, testHookCommit: func() error {
		if block.Load() {
			entered <- struct{}{}
			<-release
		}
		return nil
	}})
	defer e.Close()
	block.Store(true)
	results := make(chan error, 2)
	go func() { _, err := e.Add(ctx, []byte("first")); results <- err }()
	<-entered // the sequencer holds "first" in a commit
	block.Store(false)
	go func() { _, err := e.Add(ctx, []byte("second")); results <- err }()
	for len(e.queue) == 0 {
		runtime.Gosched() // until "second" waits in the queue
	}
	if _, err := e.Add(ctx, []byte("third")); !errors.Is(err, engine.ErrPushback) {
		t.Errorf("Add with a full queue = %v, want ErrPushback", err)
	}
	close(release)
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("Add = %v", err)
		}
	}
	enginetest.Check(t, e, v, nil)
}

// TestPushbackBytes: queued bytes above MaxPendingBytes are refused.
func TestPushbackBytes(t *testing.T) {
	ctx := t.Context()
	s, _ := newKey(t)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var block atomic.Bool
	e := open(t, Config{Dir: t.TempDir(), Signer: s, MemoryBudget: 32 << 20, MaxPendingBytes: 100 << 10, testHookCommit: func() error {
		if block.Load() {
			entered <- struct{}{}
			<-release
		}
		return nil
	}})
	defer e.Close()
	block.Store(true)
	results := make(chan error, 1)
	go func() { _, err := e.Add(ctx, make([]byte, 60<<10)); results <- err }()
	<-entered // 60 KiB pending in the commit
	block.Store(false)
	if _, err := e.Add(ctx, make([]byte, 60<<10)); !errors.Is(err, engine.ErrPushback) {
		t.Errorf("Add(60 KiB) with 60 KiB of 100 KiB pending = %v, want ErrPushback", err)
	}
	close(release)
	if err := <-results; err != nil {
		t.Fatal(err)
	}
	if _, err := e.Add(ctx, make([]byte, 60<<10)); err != nil {
		t.Errorf("Add(60 KiB) with nothing pending = %v", err)
	}
}

// TestFailStopIsReported: after a failed commit every Add fails with
// engine.ErrFailed and Health reports it, so the server answers 503 and
// /healthz tells a supervisor to restart the process.
func TestFailStopIsReported(t *testing.T) {
	ctx := t.Context()
	s, _ := newKey(t)
	var fail atomic.Bool
	e := open(t, Config{Dir: t.TempDir(), Signer: s, MemoryBudget: 32 << 20, testHookCommit: func() error {
		if fail.Load() {
			return errors.New("simulated fsync failure")
		}
		return nil
	}})
	if _, err := e.Add(ctx, []byte("ok")); err != nil || e.Health() != nil {
		t.Fatalf("Add = %v, Health = %v; want both nil", err, e.Health())
	}
	fail.Store(true)
	if _, err := e.Add(ctx, []byte("x")); !errors.Is(err, engine.ErrFailed) {
		t.Fatalf("Add during a failing commit = %v, want ErrFailed", err)
	}
	fail.Store(false)
	if _, err := e.Add(ctx, []byte("y")); !errors.Is(err, engine.ErrFailed) {
		t.Fatalf("Add after a failed commit = %v, want ErrFailed", err)
	}
	if err := e.Health(); !errors.Is(err, engine.ErrFailed) {
		t.Fatalf("Health() = %v, want ErrFailed", err)
	}
}

// TestDiskNearlyFull: below MinFreeBytes a batch is refused with
// ErrPushback before anything is written, the engine stays healthy, and
// writes resume once space is freed.
func TestDiskNearlyFull(t *testing.T) {
	ctx := t.Context()
	s, _ := newKey(t)
	var free atomic.Uint64
	free.Store(1 << 40)
	e := open(t, Config{Dir: t.TempDir(), Signer: s, MemoryBudget: 32 << 20, MinFreeBytes: 64 << 20,
		testHookFree: func() (uint64, error) { return free.Load(), nil }})
	if _, err := e.Add(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	before, _ := e.Checkpoint(ctx)
	free.Store(10 << 20)
	if _, err := e.Add(ctx, []byte("b")); !errors.Is(err, engine.ErrPushback) {
		t.Fatalf("Add on a nearly full disk = %v, want ErrPushback", err)
	}
	if after, _ := e.Checkpoint(ctx); !bytes.Equal(after, before) {
		t.Fatal("the checkpoint moved although the batch was refused")
	}
	if err := e.Health(); err != nil {
		t.Fatalf("Health() = %v on a nearly full disk, want nil (it is not a failure)", err)
	}
	free.Store(1 << 40)
	if i, err := e.Add(ctx, []byte("c")); err != nil || i != 1 {
		t.Fatalf("Add after space was freed = %d, %v; want index 1", i, err)
	}
}

// TestSettle: after a burst that leaves many level-0 tables, Settle returns
// once no level is over its target, and the log still reads back.
func TestSettle(t *testing.T) {
	s, _ := newKey(t)
	e := open(t, Config{Dir: t.TempDir(), Signer: s, MemoryBudget: 12 << 20})
	defer e.Close()
	entry := make([]byte, 4096)
	const batches = 40
	for i := range batches {
		batch := make([][]byte, 256)
		for j := range batch {
			binary.BigEndian.PutUint64(entry, uint64(i*256+j))
			batch[j] = bytes.Clone(entry)
		}
		if _, err := e.AddBatch(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	pending := 0
	for _, l := range e.db.Levels() {
		if l.Score >= 1 {
			pending++
		}
	}
	t.Logf("levels over target before Settle: %d", pending)
	if err := e.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, l := range e.db.Levels() {
		if l.Score >= 1 {
			t.Errorf("after Settle, level %d has score %.2f (%d tables)", l.Level, l.Score, l.NumTables)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(e.cfg.Dir, "*.sst")); len(files) != len(e.db.Tables()) {
		t.Errorf("after Settle, %d table files on disk, badger lists %d", len(files), len(e.db.Tables()))
	}
	binary.BigEndian.PutUint64(entry, 0)
	tile, err := e.ReadTile(t.Context(), 0, 0, 0)
	if leaf := tlog.LeafHash(entry); err != nil || !bytes.Equal(tile[:tlog.HashSize], leaf[:]) {
		t.Fatalf("tile 0/0 after Settle does not start with entry 0's leaf hash (%v)", err)
	}
}

// TestTileTree: a full tile is stored with its interior nodes, equal to
// tlog.TileTree of its hashes; a partial tile is not; ReadTile still
// returns the hashes alone.
func TestTileTree(t *testing.T) {
	s, _ := newKey(t)
	e := open(t, Config{Dir: t.TempDir(), Signer: s, MemoryBudget: 32 << 20})
	defer e.Close()
	entries := make([][]byte, 600)
	for i := range entries {
		entries[i] = fmt.Appendf(nil, "entry %d", i)
	}
	if _, err := e.AddBatch(t.Context(), entries); err != nil {
		t.Fatal(err)
	}
	for _, index := range []uint64{0, 1} {
		tile, err := e.ReadTile(t.Context(), 0, index, 0)
		if err != nil || len(tile) != tlog.TileWidth*tlog.HashSize {
			t.Fatalf("ReadTile(0, %d) = %d bytes, %v", index, len(tile), err)
		}
		nodes, ok, err := e.ReadTileTree(t.Context(), 0, index)
		if err != nil || !ok {
			t.Fatalf("ReadTileTree(0, %d) = %v, %v", index, ok, err)
		}
		if !bytes.Equal(nodes, tlog.TileTree(tile)) {
			t.Errorf("ReadTileTree(0, %d) differs from tlog.TileTree of the tile", index)
		}
	}
	if _, ok, err := e.ReadTileTree(t.Context(), 0, 2); ok || err != nil {
		t.Errorf("ReadTileTree of the partial tile 0/2 = %v, %v; want not stored", ok, err)
	}
}

func TestStats(t *testing.T) {
	signer, _ := newKey(t)
	e := open(t, Config{Dir: t.TempDir(), Signer: signer})
	if st := e.Stats(); st.Batches != 0 || st.Entries != 0 {
		t.Fatalf("Stats of a new log = %+v, want no batches", st)
	}
	if _, err := e.AddBatch(t.Context(), [][]byte{[]byte("a"), []byte("b"), []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Add(t.Context(), []byte("d")); err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	if st.Batches != 2 || st.Entries != 4 || st.CommitSeconds <= 0 {
		t.Errorf("Stats after a batch of 3 and an Add = %+v, want 2 batches, 4 entries, commit time > 0", st)
	}
}

// TestIntegratedAtWithoutStoredTime: a checkpoint stored without its
// signing time (a log written before the times were recorded) gives its
// entries no integration time, rather than the time of a later checkpoint.
func TestIntegratedAtWithoutStoredTime(t *testing.T) {
	s, _ := newKey(t)
	e := open(t, Config{Dir: t.TempDir(), Signer: s, MemoryBudget: 32 << 20})
	defer e.Close()
	ctx := t.Context()
	for i := range 3 { // three batches: checkpoints 1, 2 and 3
		if _, err := e.Add(ctx, fmt.Appendf(nil, "entry %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	at2, err := e.IntegratedAt(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.Update(func(txn *badger.Txn) error { return txn.Delete(signedAtKey(2)) }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.IntegratedAt(ctx, 1); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("IntegratedAt(1) with checkpoint 2's time gone = %v, want ErrNotFound", err)
	}
	if got, err := e.IntegratedAt(ctx, 2); err != nil || !got.Equal(at2) {
		t.Errorf("IntegratedAt(2) = %v, %v, want %v", got, err, at2)
	}
	if _, err := e.IntegratedAt(ctx, math.MaxUint64); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("IntegratedAt(MaxUint64) = %v, want ErrNotFound", err)
	}
}

// TestDirRemoved removes the engine's directory under it (issue 16, fault
// 6), before a batch and between a batch's writes and its commit. Badger
// keeps committing into the unlinked files, so without the directory check
// the engine would acknowledge entries that no reopening can read. The
// batch must fail with ErrFailed, its checkpoint must not be served,
// Health must report it, and Close must return.
func TestDirRemoved(t *testing.T) {
	for _, during := range []bool{false, true} {
		t.Run(fmt.Sprintf("during commit %v", during), func(t *testing.T) {
			ctx := t.Context()
			s, _ := newKey(t)
			dir := filepath.Join(t.TempDir(), "engine")
			var remove atomic.Bool
			e := open(t, Config{Dir: dir, Signer: s, MemoryBudget: 32 << 20, testHookCommit: func() error {
				if remove.Load() {
					return os.RemoveAll(dir)
				}
				return nil
			}})
			if _, err := e.Add(ctx, []byte("kept")); err != nil {
				t.Fatal(err)
			}
			before, err := e.Checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if during {
				remove.Store(true)
			} else if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Add(ctx, []byte("lost")); !errors.Is(err, engine.ErrFailed) {
				t.Errorf("Add with the directory removed = %v, want ErrFailed", err)
			}
			if after, err := e.Checkpoint(ctx); err != nil || !bytes.Equal(after, before) {
				t.Errorf("checkpoint after the removal:\n%s(%v)\nwant the one before:\n%s", after, err, before)
			}
			if err := e.Health(); !errors.Is(err, engine.ErrFailed) || !errors.Is(err, datadir.ErrGone) {
				t.Errorf("Health() = %v, want ErrFailed and datadir.ErrGone", err)
			}
			if err := e.Close(); !errors.Is(err, engine.ErrFailed) {
				t.Errorf("Close() = %v, want the storage failure", err)
			}
		})
	}
}
