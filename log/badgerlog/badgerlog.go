// Package badgerlog is the embedded log engine: an [engine.Engine] on
// github.com/dgraph-io/badger/v4, a single-process log with no database
// server to run.
//
// # Sequencing and durability
//
// Add queues its entry for one sequencer goroutine, which takes the queued
// entries as a batch (up to Config.BatchMaxSize entries or
// Config.BatchMaxBytes bytes, waiting up to Config.BatchMaxAge for more
// after the first), assigns them the next indexes, extends the tree, signs
// the new checkpoint and commits, in ONE badger transaction: the entries,
// the changed tiles, the checkpoint (kept forever, by size) and the tree
// state. The database runs with SyncWrites, so the commit returns only after
// badger has fsynced its write-ahead log and its value log (see the storage
// layout for which values live there).
// Badger makes a transaction visible to readers only after its commit
// callback completes, that is after the fsync, so nothing is served that a
// crash could take back. Badger does not sync the directory when it creates
// a file (a new value-log or memtable log file, a flushed table), so after
// each commit the engine fsyncs its directory if its file names changed
// (badgeropen.DirSync): a power cut cannot take back the file that holds
// the commit. Add returns after that sync, and only then does the new
// checkpoint become the latest; CheckpointAt serves no size beyond it. The
// same check runs in the background (every badgeropen.SyncInterval) for
// the tables badger's memtable flushes create between commits. Entries that
// arrive while a batch is being committed form the next batch (group
// commit), so throughput grows with the number of concurrent writers.
//
// If a commit fails the engine stops sequencing (every later Add fails)
// until it is reopened: the in-memory tree may be ahead of the disk, and a
// checkpoint may have been signed but not stored. Reopening reads the last
// committed state; that unstored checkpoint was never served, so no two
// served checkpoints can conflict. The same happens when the directory is
// removed or replaced under the running engine (package internal/datadir):
// badger would keep committing into files no reopening reads, so the
// directory is checked before each batch and after its commit, and a batch
// committed into a directory already gone is not acknowledged. Health then
// reports the failure, and Close does not wait for badger (which retries
// its failed memtable flush forever) longer than closeWait.
//
// # Storage layout
//
// Keys are a one-byte table tag and big-endian integers:
//
//	'e' ‖ u64 index          entry bytes (bundles are assembled on read)
//	't' ‖ u8 level ‖ u64 N   hash tile: the hashes the tree has so far,
//	                         up to 256 × 32 bytes; partial tiles of any
//	                         checkpointed size are prefixes of it
//	'c' ‖ u64 size           the signed checkpoint of that size
//	'i' ‖ u64 size           when it was signed: i64 Unix milliseconds,
//	                         the integration time of the entries it added
//	                         (engine.IntegrationTimes)
//	's'                      tree state: u64 size ‖ compact range hashes
//
// Each entry is stored once (no bundle copies), each tree hash once in its
// tile, so the store holds the entry bytes plus 64 bytes per leaf (a full
// tile keeps its interior nodes, tlog.TileTree) and a small per-key and
// per-checkpoint overhead. Partial tiles are rewritten per batch;
// compaction drops the old versions.
//
// Values of at least 8 KiB (valueThreshold) go to badger's value log and
// the LSM tree holds a pointer to them: full tiles (16,352 bytes) and the
// rare large entry. Both are written once and never replaced or deleted,
// so the value log needs no garbage collection; and a proof reads a tile's
// nodes in place from the memory-mapped value log file, where a value in
// the LSM tree is copied out of its table three times before the caller
// sees it. Partial tiles (at most 8,160 bytes), entries below 8 KiB,
// checkpoints and the state stay in the LSM tree.
package badgerlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/skl"
	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/internal/badgeropen"
	"github.com/vmledger/vmledger/internal/datadir"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/tlog"
)

// Config configures a badger log.
type Config struct {
	// Dir is the database directory; it is created if missing.
	Dir string
	// Signer signs checkpoints; its name is the log's origin. A log opened
	// with a key of another name is refused.
	Signer note.Signer
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger

	// BatchMaxSize is the most entries per batch (default 4096).
	BatchMaxSize int
	// BatchMaxBytes is the most entry bytes per batch (default 2 MiB,
	// which keeps a transaction well under badger's limit).
	BatchMaxBytes int
	// BatchMaxAge is how long the sequencer waits for more entries after
	// the first of a batch arrives. The default, 0, waits for nothing
	// more than the batch in flight: the lowest latency (one fsync), and
	// under load the batches grow by themselves.
	BatchMaxAge time.Duration
	// MaxPending is how many Adds may wait for sequencing before Add
	// answers ErrPushback (default 65,536).
	MaxPending int
	// MaxPendingBytes bounds the entry bytes waiting for sequencing, so
	// that a flood of large entries cannot exhaust memory; above it Add
	// answers ErrPushback (default 64 MiB).
	MaxPendingBytes int64

	// MemoryBudget selects badger's memtable and index cache sizes (see
	// badgerOptions); 0 means the default, 96 MiB.
	MemoryBudget int64

	// MinFreeBytes is the free space the database's filesystem must keep:
	// below it a batch is refused with engine.ErrPushback (HTTP 503) before
	// anything is written, and accepted again once space is freed. Badger
	// writes its memtable log through a memory-mapped file, and a write
	// into it on a full filesystem kills the process with SIGBUS, so the
	// check must come first. Default 64 MiB; negative disables it.
	MinFreeBytes int64

	// MustExist refuses to open a directory that holds no log, where Open
	// would start a new one: set it when the log is known to exist (the
	// server's data directory says so), so that a log whose files were
	// lost stops with an error naming what is missing instead of starting
	// afresh with the same key and handing out indexes again.
	MustExist bool

	// testHookFree, if set, replaces the filesystem's free-space query
	// (tests only).
	testHookFree func() (uint64, error)

	// testHookCommit, if set, runs before each commit; an error makes the
	// commit fail as a crash would (tests only).
	testHookCommit func() error
}

// Engine is the badger log engine. Its methods are safe for concurrent use.
type Engine struct {
	db       *badger.DB
	home     *datadir.Dir // the directory badger opened
	dirs     *badgeropen.DirSync
	stopDirs func() // stops the background directory sync (flushed tables)
	signer   note.Signer
	log      *slog.Logger
	cfg      Config

	// latest is the newest committed signed checkpoint (*[]byte), and
	// latestSize its size.
	latest     atomic.Pointer[[]byte]
	latestSize atomic.Uint64

	mu           sync.RWMutex // guards closed and sends on queue
	closed       bool
	queue        chan *request
	pendingBytes atomic.Int64  // entry bytes queued or in the batch being committed
	done         chan struct{} // closed when the sequencer has exited

	// Owned by the sequencer goroutine.
	size   uint64
	cr     *compact.Range
	edge   map[uint64]*edgeTile // right-edge tile per tile level
	failed error
	// health is failed, for readers outside the sequencer.
	health atomic.Pointer[error]

	// Sequencing counters (Stats).
	batches, entries, commitNanos atomic.Uint64
}

type edgeTile struct {
	index uint64
	data  []byte
	dirty bool
}

// request is one Add (one entry) or one chunk of an AddBatch; its entries
// get consecutive indexes.
type request struct {
	entries [][]byte
	size    int // bytes
	done    chan result
}

type result struct {
	index uint64
	err   error
}

var (
	_ engine.Engine           = (*Engine)(nil)
	_ engine.StatsReporter    = (*Engine)(nil)
	_ engine.IntegrationTimes = (*Engine)(nil)
)

const (
	tagEntry      = 'e'
	tagTile       = 't'
	tagCheckpoint = 'c'
	tagSignedAt   = 'i'
	tagState      = 's'
)

func entryKey(i uint64) []byte { return binary.BigEndian.AppendUint64([]byte{tagEntry}, i) }
func checkpointKey(size uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{tagCheckpoint}, size)
}
func signedAtKey(size uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{tagSignedAt}, size)
}
func tileKey(level, index uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{tagTile, byte(level)}, index)
}

var stateKey = []byte{tagState}

// tableSize is the size of every LSM table, at every level. Badger builds
// a table in memory before writing it, and a compaction runs up to five
// builders side by side (more finished ones queue for writing), so table
// size bounds a compaction's memory. Badger's default doubles the size at
// each level (2 MiB at L1, 32 MiB at L5): a 10 M-entry log reaches L5.
const tableSize = 8 << 20

// valueThreshold sends full tiles (tlog.TileTreeSize) and entries of 8 KiB
// or more to the value log; partial tiles, at most 255 hashes, stay in the
// LSM tree (badger keeps values shorter than the threshold there).
const valueThreshold = 8 << 10

// txnLimits returns badger's per-transaction limits for these options: 15%
// of a memtable, in bytes and in skiplist nodes.
func txnLimits(o badger.Options) (bytes, count int) {
	b := o.MemTableSize * 15 / 100
	return int(b), int(b / int64(skl.MaxNodeSize))
}

// badgerOptions returns the database options. Memory: badger's defaults
// (five 64 MiB memtables, a 256 MiB block cache) would take most of the
// 512 MiB RSS target alone. With the default budget of 96 MiB we keep two
// 16 MiB memtables (which also bounds a transaction to 15% of 16 MiB; Open
// fits the batch limits under half of that) and a 16 MiB index cache.
// Tables are not compressed and there is no block cache: entries are
// mostly signatures and base64 (little for Snappy to take), and an
// uncompressed block is read in place from the memory-mapped table, whose
// pages the kernel caches and can drop, where a compressed one is
// decompressed into a newly allocated block on every block-cache miss —
// which a log of millions of tiles mostly is. (Measured with vmledger
// bench proofs at 1M entries: the same proof rate, the build's anonymous
// memory 1.1 GiB -> 370 MiB.) Which values go to the value log: see the
// package doc.
// SyncWrites makes every commit fsync before it returns. Conflict
// detection is off: the sequencer is the only writer. (The Go heap's
// garbage is bounded separately: vmledger log serve sets a soft memory
// limit.)
func badgerOptions(c Config) badger.Options {
	budget := c.MemoryBudget
	if budget <= 0 {
		budget = 96 << 20
	}
	opts := badger.DefaultOptions(c.Dir).
		WithLogger(badgerLogger{c.Logger}).
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithMemTableSize(budget / 6).
		WithNumMemtables(2).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(10).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(budget / 6).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithBaseTableSize(tableSize).
		WithMetricsEnabled(false)
	opts.TableSizeMultiplier = 1
	return opts
}

// Open opens (or creates) the log in c.Dir and starts its sequencer. A new
// log signs and stores a checkpoint of size 0.
func Open(ctx context.Context, c Config) (*Engine, error) {
	if c.Signer == nil {
		return nil, errors.New("badgerlog: no signer")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	opts := badgerOptions(c)
	// A batch must fit in one transaction with room for its tiles (about
	// 32 bytes of tile per entry, in at most 8 rewritten edge tiles of
	// 8 KiB), its checkpoint and state: keep it under half of the limits.
	maxBytes, maxCount := txnLimits(opts)
	if c.BatchMaxSize <= 0 {
		c.BatchMaxSize = 4096
	}
	c.BatchMaxSize = min(c.BatchMaxSize, maxCount/2)
	if c.BatchMaxBytes <= 0 {
		c.BatchMaxBytes = 2 << 20
	}
	c.BatchMaxBytes = min(c.BatchMaxBytes, maxBytes/2-tlog.MaxEntrySize)
	if c.BatchMaxBytes < tlog.MaxEntrySize || c.BatchMaxSize < 1 {
		return nil, fmt.Errorf("badgerlog: MemoryBudget %d is too small for a batch", c.MemoryBudget)
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 1 << 16
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = 64 << 20
	}
	if c.MustExist {
		if err := badgeropen.CheckExists(c.Dir); err != nil {
			return nil, fmt.Errorf("badgerlog: %w: refusing to start a new log in place of one that existed", err)
		}
	}
	db, err := badgeropen.Open(ctx, opts, c.Logger)
	if err != nil {
		return nil, fmt.Errorf("badgerlog: opening %s: %w", c.Dir, err)
	}
	home, err := datadir.Watch(c.Dir)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("badgerlog: %w", err)
	}
	e := &Engine{
		db:     db,
		home:   home,
		dirs:   badgeropen.NewDirSync(opts),
		signer: c.Signer,
		log:    c.Logger,
		cfg:    c,
		queue:  make(chan *request, c.MaxPending),
		done:   make(chan struct{}),
		edge:   make(map[uint64]*edgeTile),
	}
	if err := e.load(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("badgerlog: %s: %w", c.Dir, err)
	}
	e.stopDirs = e.dirs.Start()
	go e.sequence()
	return e, nil
}

// load reads the tree state and the latest checkpoint, or initialises a new
// log with a checkpoint of size 0.
func (e *Engine) load(ctx context.Context) error {
	var state []byte
	err := e.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(stateKey)
		if err != nil {
			return err
		}
		state, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		if e.cfg.MustExist {
			return fmt.Errorf("%w: the database holds no tree state: refusing to start a new log in place of one that existed", ErrMissingState)
		}
		e.cr = tlog.RangeFactory.NewEmptyRange(0)
		return e.commit(nil)
	}
	if err != nil {
		return fmt.Errorf("reading tree state: %w", err)
	}
	if len(state) < 8 || (len(state)-8)%tlog.HashSize != 0 {
		return fmt.Errorf("corrupt tree state (%d bytes)", len(state))
	}
	e.size = binary.BigEndian.Uint64(state)
	var hashes [][]byte
	for b := state[8:]; len(b) > 0; b = b[tlog.HashSize:] {
		hashes = append(hashes, b[:tlog.HashSize])
	}
	e.cr, err = tlog.RangeFactory.NewRange(0, e.size, hashes)
	if err != nil {
		return fmt.Errorf("corrupt tree state: %w", err)
	}
	signed, err := e.get(checkpointKey(e.size))
	if err != nil {
		return fmt.Errorf("reading the checkpoint of size %d: %w", e.size, err)
	}
	n, err := note.Open(signed, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		n, err = unverified.Note, nil
	}
	if err != nil {
		return fmt.Errorf("stored checkpoint: %w", err)
	}
	cp, err := tlog.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return fmt.Errorf("stored checkpoint: %w", err)
	}
	root, err := e.root()
	if err != nil {
		return err
	}
	if cp.Origin != e.signer.Name() {
		return fmt.Errorf("the log's origin is %q but the key is for %q", cp.Origin, e.signer.Name())
	}
	if !slices.ContainsFunc(n.UnverifiedSigs, func(s note.Signature) bool {
		return s.Name == e.signer.Name() && s.Hash == e.signer.KeyHash()
	}) {
		return fmt.Errorf("the log's checkpoints are signed by another key named %q (key ID not %08x): refusing to sign with a different key", cp.Origin, e.signer.KeyHash())
	}
	if cp.Size != e.size || cp.Root != root {
		return fmt.Errorf("stored checkpoint (size %d) does not match the tree state (size %d)", cp.Size, e.size)
	}
	e.latest.Store(&signed)
	e.latestSize.Store(e.size)
	return nil
}

// ErrMissingState: Config.MustExist was set but the database holds no log.
var ErrMissingState = errors.New("badgerlog: log state missing")

func (e *Engine) root() (tlog.Hash, error) {
	if e.size == 0 {
		return tlog.EmptyRoot, nil
	}
	r, err := e.cr.GetRootHash(nil)
	if err != nil {
		return tlog.Hash{}, err
	}
	return tlog.Hash(r), nil
}

// sequence is the sequencer goroutine: it owns size, cr, edge and failed.
func (e *Engine) sequence() {
	defer close(e.done)
	var carry *request // a request that did not fit in the previous batch
	for {
		first := carry
		carry = nil
		if first == nil {
			var ok bool
			if first, ok = <-e.queue; !ok {
				return
			}
		}
		batch := []*request{first}
		count, bytes := len(first.entries), first.size
		var timeout <-chan time.Time
		var timer *time.Timer
		if e.cfg.BatchMaxAge > 0 {
			timer = time.NewTimer(e.cfg.BatchMaxAge)
			timeout = timer.C
		}
	collect:
		for count < e.cfg.BatchMaxSize && bytes < e.cfg.BatchMaxBytes {
			var r *request
			var ok bool
			if timeout == nil {
				select {
				case r, ok = <-e.queue:
				default:
					break collect
				}
			} else {
				select {
				case r, ok = <-e.queue:
				case <-timeout:
					break collect
				}
			}
			if !ok {
				break
			}
			if count+len(r.entries) > e.cfg.BatchMaxSize || bytes+r.size > e.cfg.BatchMaxBytes {
				carry = r
				break
			}
			batch = append(batch, r)
			count += len(r.entries)
			bytes += r.size
		}
		if timer != nil {
			timer.Stop()
		}
		e.process(batch)
	}
}

func (e *Engine) process(batch []*request) {
	if e.failed == nil {
		if err := e.home.Check(); err != nil {
			e.stop(err, e.size)
		}
	}
	if e.failed != nil {
		for _, r := range batch {
			e.pendingBytes.Add(-int64(r.size))
			r.done <- result{err: fmt.Errorf("badgerlog: sequencing stopped after a failed commit (%w): %w", engine.ErrFailed, e.failed)}
		}
		return
	}
	start := e.size
	var entries [][]byte
	for _, r := range batch {
		entries = append(entries, r.entries...)
	}
	if err := e.checkFreeSpace(); err != nil {
		e.log.Error("refusing writes: disk nearly full", "err", err, "size", start)
		for _, r := range batch {
			e.pendingBytes.Add(-int64(r.size))
			r.done <- result{err: err}
		}
		return
	}
	t0 := time.Now()
	err := e.commit(entries)
	if err == nil {
		e.commitNanos.Add(uint64(time.Since(t0)))
		e.batches.Add(1)
		e.entries.Add(uint64(len(entries)))
	}
	if err != nil {
		e.stop(err, start)
		err = fmt.Errorf("badgerlog: commit: %w: %w", engine.ErrFailed, err)
	}
	next := start
	for _, r := range batch {
		e.pendingBytes.Add(-int64(r.size))
		r.done <- result{index: next, err: err}
		next += uint64(len(r.entries))
	}
}

// stop stops sequencing after a storage failure (called by the sequencer).
func (e *Engine) stop(err error, size uint64) {
	e.failed = err
	ferr := fmt.Errorf("badgerlog: %w: %w", engine.ErrFailed, err)
	e.health.CompareAndSwap(nil, &ferr)
	e.log.Error("storage failed; sequencing stopped until the log is reopened", "err", err, "size", size)
}

// Stats implements [engine.StatsReporter].
func (e *Engine) Stats() engine.Stats {
	return engine.Stats{Batches: e.batches.Load(), Entries: e.entries.Load(), CommitSeconds: float64(e.commitNanos.Load()) / 1e9}
}

// Health implements engine.Health.
func (e *Engine) Health() error {
	if p := e.health.Load(); p != nil {
		return *p
	}
	if err := e.home.Check(); err != nil {
		ferr := fmt.Errorf("badgerlog: %w: %w", engine.ErrFailed, err)
		e.health.CompareAndSwap(nil, &ferr)
		return *e.health.Load()
	}
	return nil
}

// Settle waits until badger has no compaction pending: every level of its
// LSM tree within its target size (score below 1). After a burst of writes
// badger rewrites tables in the background for a while, competing with
// readers; a measurement of reads from a log at rest settles it first.
//
// It also waits until the tables that compactions replaced are deleted:
// until the directory holds exactly the tables badger lists, so that what
// is on disk then is what the log keeps.
func (e *Engine) Settle(ctx context.Context) error {
	for {
		pending := false
		for _, l := range e.db.Levels() {
			pending = pending || l.Score >= 1
		}
		if !pending {
			files, err := filepath.Glob(filepath.Join(e.cfg.Dir, "*.sst"))
			if err != nil {
				return err
			}
			if len(files) <= len(e.db.Tables()) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkFreeSpace refuses a batch when the filesystem holds less than
// MinFreeBytes (see Config.MinFreeBytes).
func (e *Engine) checkFreeSpace() error {
	min := e.cfg.MinFreeBytes
	if min < 0 {
		return nil
	}
	if min == 0 {
		min = 64 << 20
	}
	free, err := e.freeBytes()
	if err != nil {
		return nil // cannot tell: let the write show
	}
	if free < uint64(min) {
		return fmt.Errorf("badgerlog: %w: %d MiB free on the log's filesystem, at least %d MiB needed", engine.ErrPushback, free>>20, min>>20)
	}
	return nil
}

func (e *Engine) freeBytes() (uint64, error) {
	if e.cfg.testHookFree != nil {
		return e.cfg.testHookFree()
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(e.cfg.Dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// commit appends entries to the tree and commits them with the new tiles,
// the new signed checkpoint and the state in one transaction.
func (e *Engine) commit(entries [][]byte) error {
	txn := e.db.NewTransaction(true)
	defer txn.Discard()
	var err error
	for i, entry := range entries {
		idx := e.size + uint64(i)
		if err = txn.Set(entryKey(idx), entry); err != nil {
			return err
		}
		lh := tlog.LeafHash(entry)
		if aerr := e.cr.Append(lh[:], func(id compact.NodeID, h []byte) {
			if err == nil {
				err = e.putNode(txn, id, h)
			}
		}); aerr != nil {
			return aerr
		}
		if err != nil {
			return err
		}
	}
	for level, t := range e.edge {
		if t.dirty {
			if err := txn.Set(tileKey(level, t.index), bytes.Clone(t.data)); err != nil {
				return err
			}
			t.dirty = false
		}
	}
	// From here on the in-memory tree is ahead of the disk until the
	// commit succeeds; a failure stops the sequencer (see process).
	newSize := e.size + uint64(len(entries))
	e.size = newSize
	root, err := e.root()
	if err != nil {
		return err
	}
	signedAt := time.Now()
	signed, err := tlog.Checkpoint{Origin: e.signer.Name(), Size: newSize, Root: root}.Sign(e.signer)
	if err != nil {
		return err
	}
	if err := txn.Set(checkpointKey(newSize), signed); err != nil {
		return err
	}
	if err := txn.Set(signedAtKey(newSize), binary.BigEndian.AppendUint64(nil, uint64(signedAt.UnixMilli()))); err != nil {
		return err
	}
	state := binary.BigEndian.AppendUint64(nil, newSize)
	for _, h := range e.cr.Hashes() {
		state = append(state, h...)
	}
	if err := txn.Set(stateKey, state); err != nil {
		return err
	}
	if e.cfg.testHookCommit != nil {
		if err := e.cfg.testHookCommit(); err != nil {
			return err
		}
	}
	if err := txn.Commit(); err != nil {
		return err
	}
	if err := e.home.Check(); err != nil {
		return err // committed into files no reopening reads: not acknowledged
	}
	if err := e.dirs.Sync(); err != nil {
		return err
	}
	e.latest.Store(&signed)
	e.latestSize.Store(newSize)
	return nil
}

// putNode records a new tree node in its tile if it is a tile's bottom-row
// node. A tile that fills up is written at once; the right-edge tile of
// each level is written at the end of the batch.
func (e *Engine) putNode(txn *badger.Txn, id compact.NodeID, h []byte) error {
	level, index, pos, ok := tlog.TileSlot(id)
	if !ok {
		return nil
	}
	t := e.edge[level]
	if t == nil || t.index != index {
		t = &edgeTile{index: index}
		if pos != 0 {
			// The log was reopened mid-tile: load the stored prefix.
			item, err := txn.Get(tileKey(level, index))
			if err != nil {
				return fmt.Errorf("loading tile %d/%d: %w", level, index, err)
			}
			if t.data, err = item.ValueCopy(make([]byte, 0, tlog.TileWidth*tlog.HashSize)); err != nil {
				return err
			}
		}
		e.edge[level] = t
	}
	if len(t.data) != pos*tlog.HashSize {
		return fmt.Errorf("tile %d/%d has %d hashes, node %+v goes at %d", level, index, len(t.data)/tlog.HashSize, id, pos)
	}
	t.data = append(t.data, h...)
	t.dirty = true
	if pos == tlog.TileWidth-1 {
		// A full tile is stored with its interior nodes (tlog.TileTree):
		// 8 KiB more per 256 entries, and no rehashing to serve a proof
		// through it (ReadTileTree).
		if err := txn.Set(tileKey(level, index), tlog.TileTree(t.data)); err != nil {
			return err
		}
		delete(e.edge, level)
	}
	return nil
}

// Add implements [engine.Engine].
func (e *Engine) Add(ctx context.Context, entry []byte) (uint64, error) {
	if len(entry) > tlog.MaxEntrySize {
		return 0, fmt.Errorf("badgerlog: %d bytes: %w", len(entry), engine.ErrEntryTooLarge)
	}
	return e.submit(ctx, &request{entries: [][]byte{bytes.Clone(entry)}, size: len(entry)})
}

// AddBatch adds entries and returns the index of the first. The entries
// get consecutive indexes if they fit in one batch (BatchMaxSize entries
// and BatchMaxBytes bytes); larger slices are cut into such chunks, each
// with consecutive indexes, and other writers' entries may fall between
// chunks. It returns once every entry is durable and checkpointed. It is
// not part of [engine.Engine]: tests and benchmarks use it to build large
// logs quickly.
func (e *Engine) AddBatch(ctx context.Context, entries [][]byte) (indexes []uint64, err error) {
	for _, x := range entries {
		if len(x) > tlog.MaxEntrySize {
			return nil, fmt.Errorf("badgerlog: %d bytes: %w", len(x), engine.ErrEntryTooLarge)
		}
	}
	for len(entries) > 0 {
		r := &request{}
		for len(entries) > 0 && len(r.entries) < e.cfg.BatchMaxSize && r.size+len(entries[0]) <= e.cfg.BatchMaxBytes {
			r.entries = append(r.entries, bytes.Clone(entries[0]))
			r.size += len(entries[0])
			entries = entries[1:]
		}
		first, err := e.submit(ctx, r)
		if err != nil {
			return indexes, err
		}
		for i := range r.entries {
			indexes = append(indexes, first+uint64(i))
		}
	}
	return indexes, nil
}

func (e *Engine) submit(ctx context.Context, r *request) (uint64, error) {
	r.done = make(chan result, 1)
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return 0, engine.ErrClosed
	}
	if p := e.pendingBytes.Add(int64(r.size)); p > e.cfg.MaxPendingBytes && p != int64(r.size) {
		e.pendingBytes.Add(-int64(r.size))
		e.mu.RUnlock()
		return 0, fmt.Errorf("badgerlog: %d bytes waiting: %w", p-int64(r.size), engine.ErrPushback)
	}
	select {
	case e.queue <- r:
		e.mu.RUnlock()
	default:
		e.pendingBytes.Add(-int64(r.size))
		e.mu.RUnlock()
		return 0, fmt.Errorf("badgerlog: %d requests waiting: %w", cap(e.queue), engine.ErrPushback)
	}
	select {
	case res := <-r.done:
		return res.index, res.err
	case <-ctx.Done():
		return 0, fmt.Errorf("badgerlog: waiting for the entry to be sequenced: %w", ctx.Err())
	}
}

// Checkpoint implements [engine.Engine].
func (e *Engine) Checkpoint(ctx context.Context) ([]byte, error) {
	return *e.latest.Load(), nil
}

// CheckpointAt implements [engine.Engine].
func (e *Engine) CheckpointAt(ctx context.Context, size uint64) ([]byte, error) {
	if size > e.latestSize.Load() {
		// Committed but its directory not yet synced, or not committed.
		return nil, fmt.Errorf("checkpoint of size %d: %w", size, engine.ErrNotFound)
	}
	b, err := e.get(checkpointKey(size))
	if err != nil {
		return nil, fmt.Errorf("checkpoint of size %d: %w", size, err)
	}
	return b, nil
}

// IntegratedAt implements [engine.IntegrationTimes]: the time stored with
// the first checkpoint whose size is above index.
func (e *Engine) IntegratedAt(ctx context.Context, index uint64) (time.Time, error) {
	if index == math.MaxUint64 {
		return time.Time{}, fmt.Errorf("badgerlog: integration time of entry %d: %w", index, engine.ErrNotFound)
	}
	var size uint64
	var at []byte
	err := e.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte{tagCheckpoint}
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Seek(checkpointKey(index + 1))
		if !it.Valid() {
			return badger.ErrKeyNotFound
		}
		size = binary.BigEndian.Uint64(it.Item().Key()[1:])
		item, err := txn.Get(signedAtKey(size))
		if err != nil {
			return err
		}
		at, err = item.ValueCopy(nil)
		return err
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return time.Time{}, fmt.Errorf("badgerlog: integration time of entry %d: %w", index, engine.ErrNotFound)
	case errors.Is(err, badger.ErrDBClosed):
		return time.Time{}, engine.ErrClosed
	case err != nil:
		return time.Time{}, fmt.Errorf("badgerlog: integration time of entry %d: %w", index, err)
	case len(at) != 8:
		return time.Time{}, fmt.Errorf("badgerlog: corrupt signing time of checkpoint %d (%d bytes)", size, len(at))
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(at))), nil
}

func (e *Engine) get(key []byte) ([]byte, error) {
	var v []byte
	err := e.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil, engine.ErrNotFound
	case errors.Is(err, badger.ErrDBClosed):
		return nil, engine.ErrClosed
	}
	return v, err
}

// ReadTileTree implements [tlog.TileTreeReader]: the interior nodes of a
// full tile are stored after its hashes.
func (e *Engine) ReadTileTree(ctx context.Context, level, index uint64) ([]byte, bool, error) {
	if level > tlog.MaxTileLevel {
		return nil, false, fmt.Errorf("tile level %d: %w", level, engine.ErrNotFound)
	}
	b, err := e.get(tileKey(level, index))
	if err != nil {
		return nil, false, fmt.Errorf("tile %d/%d: %w", level, index, err)
	}
	if len(b) != tlog.TileTreeSize {
		return nil, false, nil
	}
	return b, true, nil
}

// ReadTile implements [engine.Engine].
func (e *Engine) ReadTile(ctx context.Context, level, index uint64, width uint8) ([]byte, error) {
	if level > tlog.MaxTileLevel {
		return nil, fmt.Errorf("tile level %d: %w", level, engine.ErrNotFound)
	}
	n := tlog.Tile{Width: width}.Count() * tlog.HashSize
	b, err := e.get(tileKey(level, index))
	if err != nil {
		return nil, fmt.Errorf("tile %d/%d: %w", level, index, err)
	}
	if len(b) < n {
		return nil, fmt.Errorf("tile %d/%d has %d hashes, not %d: %w", level, index, len(b)/tlog.HashSize, n/tlog.HashSize, engine.ErrNotFound)
	}
	return b[:n], nil
}

// ReadEntryBundle implements [engine.Engine].
func (e *Engine) ReadEntryBundle(ctx context.Context, index uint64, width uint8) ([]byte, error) {
	n := uint64(tlog.Tile{Width: width}.Count())
	if index > (1<<64-1)/tlog.TileWidth-1 {
		return nil, fmt.Errorf("entry bundle %d: %w", index, engine.ErrNotFound)
	}
	first := index * tlog.TileWidth
	var bundle []byte
	err := e.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchSize = int(n)
		opts.Prefix = []byte{tagEntry}
		it := txn.NewIterator(opts)
		defer it.Close()
		want := first
		for it.Seek(entryKey(first)); it.Valid() && want < first+n; it.Next() {
			item := it.Item()
			if binary.BigEndian.Uint64(item.Key()[1:]) != want {
				break
			}
			err := item.Value(func(v []byte) error {
				var err error
				bundle, err = tlog.AppendBundleEntry(bundle, v)
				return err
			})
			if err != nil {
				return err
			}
			want++
		}
		if want != first+n {
			return fmt.Errorf("entry bundle %d has %d entries, not %d: %w", index, want-first, n, engine.ErrNotFound)
		}
		return nil
	})
	if errors.Is(err, badger.ErrDBClosed) {
		err = engine.ErrClosed
	}
	return bundle, err
}

// Close implements [engine.Engine]: it stops accepting entries, sequences
// and commits those already queued, then closes the database.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.done
		return nil
	}
	e.closed = true
	close(e.queue)
	e.mu.Unlock()
	<-e.done
	e.stopDirs()
	if herr := e.Health(); herr != nil {
		// Badger retries a failed memtable flush forever, and its Close
		// waits for that flush.
		done := make(chan error, 1)
		go func() { done <- e.db.Close() }()
		select {
		case <-done:
		case <-time.After(closeWait):
			return fmt.Errorf("badgerlog: closing: %w; not waiting for badger any longer", herr)
		}
		return herr
	}
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("badgerlog: closing: %w", err)
	}
	return nil
}

// closeWait bounds Close after a storage failure.
const closeWait = 5 * time.Second

// badgerLogger sends badger's logs to slog at debug level (warnings and
// errors at their own level).
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) logf(level slog.Level, format string, args ...any) {
	if b.l != nil {
		b.l.Log(context.Background(), level, "badger: "+fmt.Sprintf(format, args...))
	}
}
func (b badgerLogger) Errorf(f string, a ...any)   { b.logf(slog.LevelError, f, a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.logf(slog.LevelWarn, f, a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.logf(slog.LevelDebug, f, a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.logf(slog.LevelDebug, f, a...) }
