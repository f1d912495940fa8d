// Package tesseralog is the scale-out log engine: an [engine.Engine] on
// github.com/transparency-dev/tessera v1.0.4 with its MySQL driver, so the
// tree lives in a MySQL-compatible database (MariaDB 10.11 here; a
// replicated one in production) and several stateless front-ends can
// append to one log. The embedded engine (log/badgerlog) stays the default;
// both pass the conformance suite in log/engine/enginetest.
//
// # What lives where
//
// One database holds one log. Open creates the tables if they are missing
// (Tessera's driver checks its schema version but creates nothing):
//
//	Tessera's tables (written only by Tessera)
//	  Tessera              (id=0) compatibilityVersion = 1
//	  TreeState            (id=0) size, root of the integrated tree
//	  Checkpoint           (id=0) the latest PUBLISHED signed checkpoint
//	  Subtree              (level, index) → hash tile, rewritten until full
//	  TiledLeaves          (tile_index) → entry bundle, rewritten until full
//	vmledger's tables
//	  vmledger_checkpoints (size) → root, signed note, first-signed time:
//	                       every checkpoint this log ever signed
//	  vmledger_admission   (keyid) → counter floor, its leaf hash, revoked,
//	                       pending claims: admission state shared by the
//	                       front-ends (see Claims)
//
// # Appending
//
// Add hands the entry to Tessera's appender. Each front-end batches the
// entries it receives (Config.BatchMaxSize, Config.BatchMaxAge) and
// sequences a batch in one database transaction that locks TreeState,
// appends to the entry bundles and tiles and writes the new tree state, so
// front-ends that share a database take turns and never assign an index
// twice. Separately, each front-end's publisher wakes after a batch or
// every Config.CheckpointInterval; under a lock on the Checkpoint row it
// signs the current tree state and replaces the published checkpoint, at
// most once per interval for the whole database. Add then waits (Tessera's
// PublicationAwaiter, polling every Config.PollInterval) until a published
// checkpoint covers the entry: only then is the entry durable AND in a
// checkpoint that [Engine.Checkpoint] returns, as the engine contract asks.
// Tessera refuses an interval below one second, and in v1.0.4 its MySQL
// publisher wakes on a ticker of that interval but skips a tick unless a
// full interval has passed since the previous publication, whose time is
// taken after signing: without other wake-ups it publishes on every other
// tick. An Add therefore takes about 2 s at the 1 s minimum (the p50 in
// BenchmarkTesseraAppend), against milliseconds on badgerlog; throughput
// comes from many concurrent Adds sharing each checkpoint.
//
//	Add ──► Tessera queue ──batch──► TX: TreeState, TiledLeaves, Subtree
//	                                        │ (publisher, ≥ 1 s apart)
//	                                        ▼
//	        recordingSigner.Sign ──► INSERT vmledger_checkpoints (durable)
//	                                        │ signature
//	                                        ▼
//	              TX: REPLACE Checkpoint ──► awaiter sees size > index ──► Add returns
//
// # Checkpoint history
//
// Tessera keeps only the latest checkpoint; the log must serve every one it
// published (witnesses and clients ask for old sizes). The signer Tessera
// is given records each checkpoint in vmledger_checkpoints, and the insert
// has committed before the signature goes back to Tessera, so no checkpoint
// is published that the history lacks. Per size the first one wins: an
// identical text signed again gets the stored signature back (published
// bytes = history bytes); a different root for a stored size, or a size
// below the newest stored one, is refused with a [ConflictError] and logged
// at error level, and the log stops publishing: two roots for one size are
// impossible by construction. The row's signed_at (Unix milliseconds, taken
// when the row is inserted) is the integration time [Engine.IntegratedAt]
// reports for the entries that checkpoint added; a size signed again keeps
// its first time.
//
// If a front-end crashes after the history insert but before Tessera commits
// the Checkpoint row, the history holds a checkpoint that nobody was served.
// That is harmless: it was signed over a committed tree state (TreeState
// only grows), so it is consistent with every later checkpoint, and if the
// tree has not grown when the log restarts it is signed again identically.
// [Engine.CheckpointAt] serves the history only up to the latest published
// size, so such a checkpoint becomes visible once a later one is published.
//
// # Reads and partial tiles
//
// Reads go through Tessera's LogReader. The MySQL driver stores one row per
// tile and bundle, rewritten as it grows, and for a partial request returns
// the whole stored row if it is at least as wide as asked. A partial tile
// of width W is a prefix of every wider version of the same tile (likewise
// for bundles), so ReadTile and ReadEntryBundle cut the row to exactly the
// width asked: the tiles of every checkpointed size stay served.
//
// # Pushback
//
// Tessera's MySQL driver never pushes back: its queue grows without bound.
// The engine counts the Adds it has accepted but not yet seen published
// and answers [engine.ErrPushback] above Config.PushbackMaxOutstanding (and
// maps tessera.ErrPushback from any driver the same way), which the server
// turns into 503 with Retry-After. The limit is per front-end.
//
// # Several front-ends
//
// Front-ends share nothing but the database: open one Engine per process
// with the same DSN and key. Each sequences its own batches (serialised by
// the TreeState row lock), any one of them publishes, all read the same
// Checkpoint row and history, and an Add returns on the front-end that took
// it once any front-end's checkpoint covers it. Deduplication is not done
// by the engine (Tessera's is best-effort and absent for MySQL): it is the
// admission layer's job, and [Engine.Claims] gives admission the state it
// must share across front-ends for that (counter floors with the leaf hash
// that claimed them, revocation marks, pending claims) in one more table,
// vmledger_admission, created by Open like the others.
//
// # Known limits
//
//   - A full bundle of 256 maximum-size entries is 16 MiB, MariaDB's default
//     max_allowed_packet; raise it (e.g. 64M) if entries can be that large.
//   - A failed read of the published checkpoint fails every Add waiting in
//     this front-end at that moment (Tessera's awaiter); their entries may
//     still be sequenced, and a retry is deduplicated by admission.
package tesseralog

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/tessera"
	tmysql "github.com/transparency-dev/tessera/storage/mysql"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/tlog"
)

// Config configures a Tessera log front-end.
type Config struct {
	// DSN is the go-sql-driver/mysql data source name of the log's
	// database, which must exist (CREATE DATABASE); e.g.
	// "vmledger:PASSWORD@tcp(db.example:3306)/vmledger".
	DSN string
	// Signer signs checkpoints; its name is the log's origin. A database
	// holding a log of another origin or key is refused. All front-ends of
	// one log use the same key.
	Signer note.Signer
	// Logger receives operational logs; nil discards them. (Tessera itself
	// logs through klog.)
	Logger *slog.Logger

	// CheckpointInterval is how often a checkpoint is published while the
	// log grows (default and minimum: 1 s, Tessera refuses less).
	CheckpointInterval time.Duration
	// BatchMaxSize is the most entries per sequencing transaction (default
	// 1024); BatchMaxAge how long a batch waits to fill (default 100 ms).
	BatchMaxSize uint
	BatchMaxAge  time.Duration
	// PushbackMaxOutstanding is how many Adds may wait for publication in
	// this front-end before Add answers ErrPushback (default 8192).
	PushbackMaxOutstanding int
	// PollInterval is how often a front-end with waiting Adds reads the
	// published checkpoint (default 100 ms).
	PollInterval time.Duration
	// ShutdownTimeout bounds how long Close waits for Adds in flight
	// (default 60 s).
	ShutdownTimeout time.Duration

	// beforeSign, if set, runs before every checkpoint signature (tests).
	beforeSign func()
}

// Engine is a Tessera log front-end. Its methods are safe for concurrent use.
type Engine struct {
	db       *sql.DB
	signer   note.Signer
	log      *slog.Logger
	appender *tessera.Appender
	reader   tessera.LogReader
	awaiter  *tessera.PublicationAwaiter
	shutdown func(context.Context) error
	cancel   context.CancelFunc
	maxOut   int64
	timeout  time.Duration

	// outstanding counts Adds accepted and not yet returned.
	outstanding atomic.Int64

	// mu guards closed; an Add registers in inflight under mu, so Close,
	// after setting closed, can wait for every Add that got in.
	mu       sync.RWMutex
	closed   bool
	inflight sync.WaitGroup
	closeErr error
}

var (
	_ engine.Engine           = (*Engine)(nil)
	_ engine.IntegrationTimes = (*Engine)(nil)
)

// Open connects to the database, creates the tables if needed, checks that
// the stored log (if any) has this signer's origin and key, starts
// Tessera's appender and waits until the log has a published checkpoint (a
// new log publishes size 0 at once). ctx bounds only the start-up; Close
// stops the engine.
func Open(ctx context.Context, c Config) (*Engine, error) {
	if c.Signer == nil {
		return nil, errors.New("tesseralog: no signer")
	}
	if err := tlog.CheckKeyName(c.Signer.Name()); err != nil {
		return nil, fmt.Errorf("tesseralog: %w", err)
	}
	dsn, err := mysql.ParseDSN(c.DSN)
	if err != nil {
		return nil, fmt.Errorf("tesseralog: parsing DSN: %w", err)
	}
	if dsn.DBName == "" {
		return nil, errors.New("tesseralog: the DSN names no database (…/DBNAME); create one for the log")
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Second
	}
	if c.CheckpointInterval < time.Second {
		return nil, fmt.Errorf("tesseralog: CheckpointInterval %v is below Tessera's minimum of 1s", c.CheckpointInterval)
	}
	if c.BatchMaxSize == 0 {
		c.BatchMaxSize = 1024
	}
	if c.BatchMaxAge == 0 {
		c.BatchMaxAge = 100 * time.Millisecond
	}
	if c.PushbackMaxOutstanding == 0 {
		c.PushbackMaxOutstanding = 8192
	}
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = time.Minute
	}
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}

	db, err := sql.Open("mysql", dsn.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("tesseralog: %w", err)
	}
	fail := func(err error) (*Engine, error) {
		db.Close()
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("tesseralog: connecting to database %q: %w", dsn.DBName, err))
	}
	if err := applySchema(ctx, db); err != nil {
		return fail(fmt.Errorf("tesseralog: database %q: %w", dsn.DBName, err))
	}
	if err := checkOwner(ctx, db, c.Signer); err != nil {
		return fail(err)
	}
	driver, err := tmysql.New(ctx, db)
	if err != nil {
		return fail(fmt.Errorf("tesseralog: Tessera's MySQL driver: %w", err))
	}

	// Tessera's background work (sequencing, publishing, polling) runs
	// until Close cancels life.
	life, cancel := context.WithCancel(context.Background())
	rs := &recordingSigner{inner: c.Signer, db: db, log: logger, ctx: life, timeout: c.ShutdownTimeout, beforeSign: c.beforeSign}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(rs).
		WithCheckpointInterval(c.CheckpointInterval).
		WithBatching(c.BatchMaxSize, c.BatchMaxAge).
		WithPushback(uint(c.PushbackMaxOutstanding))
	appender, shutdown, reader, err := tessera.NewAppender(life, driver, opts)
	if err != nil {
		cancel()
		return fail(fmt.Errorf("tesseralog: starting Tessera: %w", err))
	}
	e := &Engine{
		db:       db,
		signer:   c.Signer,
		log:      logger,
		appender: appender,
		reader:   reader,
		awaiter:  tessera.NewPublicationAwaiter(life, reader.ReadCheckpoint, c.PollInterval),
		shutdown: shutdown,
		cancel:   cancel,
		maxOut:   int64(c.PushbackMaxOutstanding),
		timeout:  c.ShutdownTimeout,
	}
	// A new log has no published checkpoint until Tessera's publisher has
	// run once; it runs at start, so this waits a moment at most.
	for {
		_, err := reader.ReadCheckpoint(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			e.Close()
			return nil, fmt.Errorf("tesseralog: reading the checkpoint: %w", err)
		}
		select {
		case <-ctx.Done():
			e.Close()
			return nil, fmt.Errorf("tesseralog: waiting for the first checkpoint: %w", ctx.Err())
		case <-time.After(c.PollInterval):
		}
	}
	logger.Info("tessera log open", "database", dsn.DBName, "origin", c.Signer.Name())
	return e, nil
}

// checkOwner refuses a database whose history was signed by another key.
func checkOwner(ctx context.Context, db *sql.DB, s note.Signer) error {
	latest, err := latestHistory(ctx, db)
	if err != nil || latest == nil {
		return err
	}
	if !bytes.HasPrefix(latest, []byte(s.Name()+"\n")) {
		return fmt.Errorf("tesseralog: the database holds another log (checkpoint %q), not %s", latest, s.Name())
	}
	if _, err := signatureOf(latest, s); err != nil {
		return fmt.Errorf("tesseralog: the database's checkpoints are not signed by this key (%s): %w", s.Name(), err)
	}
	return nil
}

// Add implements [engine.Engine.Add]: it returns once a published checkpoint
// covers the entry.
func (e *Engine) Add(ctx context.Context, entry []byte) (uint64, error) {
	if len(entry) > tlog.MaxEntrySize {
		return 0, fmt.Errorf("tesseralog: entry of %d bytes: %w", len(entry), engine.ErrEntryTooLarge)
	}
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return 0, engine.ErrClosed
	}
	e.inflight.Add(1)
	e.mu.RUnlock()
	defer e.inflight.Done()

	if n := e.outstanding.Add(1); n > e.maxOut {
		e.outstanding.Add(-1)
		return 0, fmt.Errorf("tesseralog: %d adds already wait for a checkpoint: %w", n-1, engine.ErrPushback)
	}
	defer e.outstanding.Add(-1)

	// Tessera hashes the entry now and copies it into a bundle later: give
	// it bytes the caller cannot change in between.
	future := e.appender.Add(ctx, tessera.NewEntry(bytes.Clone(entry)))
	idx, _, err := e.awaiter.Await(ctx, future)
	switch {
	case err == nil:
		return idx.Index, nil
	case errors.Is(err, tessera.ErrPushback):
		return 0, fmt.Errorf("tesseralog: %w: %w", engine.ErrPushback, err)
	case ctx.Err() != nil:
		return 0, fmt.Errorf("tesseralog: add: %w", ctx.Err())
	case e.isClosed():
		return 0, fmt.Errorf("tesseralog: add: %w (%w)", engine.ErrClosed, err)
	default:
		return 0, fmt.Errorf("tesseralog: add: %w", err)
	}
}

func (e *Engine) isClosed() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.closed
}

// Checkpoint implements [engine.Engine.Checkpoint]: the checkpoint Tessera
// published last (by any front-end).
func (e *Engine) Checkpoint(ctx context.Context) ([]byte, error) {
	cp, err := e.reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("tesseralog: reading the checkpoint: %w", mapNotFound(err))
	}
	return cp, nil
}

// CheckpointAt implements [engine.Engine.CheckpointAt] from the history,
// up to the latest published size.
func (e *Engine) CheckpointAt(ctx context.Context, size uint64) ([]byte, error) {
	latest, err := e.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	c, err := tlog.ParseCheckpoint(cpText(latest))
	if err != nil {
		return nil, fmt.Errorf("tesseralog: published checkpoint: %w", err)
	}
	if size > c.Size {
		return nil, fmt.Errorf("tesseralog: checkpoint %d: %w (latest is %d)", size, engine.ErrNotFound, c.Size)
	}
	signed, err := readHistory(ctx, e.db, size)
	if err != nil {
		return nil, err
	}
	if signed == nil {
		return nil, fmt.Errorf("tesseralog: checkpoint %d: %w", size, engine.ErrNotFound)
	}
	return signed, nil
}

// IntegratedAt implements [engine.IntegrationTimes] from the history: the
// signed_at of the first checkpoint above index, if it is published.
func (e *Engine) IntegratedAt(ctx context.Context, index uint64) (time.Time, error) {
	latest, err := e.Checkpoint(ctx)
	if err != nil {
		return time.Time{}, err
	}
	c, err := tlog.ParseCheckpoint(cpText(latest))
	if err != nil {
		return time.Time{}, fmt.Errorf("tesseralog: published checkpoint: %w", err)
	}
	if index >= c.Size {
		return time.Time{}, fmt.Errorf("tesseralog: integration time of entry %d: %w (published size is %d)", index, engine.ErrNotFound, c.Size)
	}
	var ms int64
	err = e.db.QueryRowContext(ctx,
		"SELECT `signed_at` FROM `vmledger_checkpoints` WHERE `size` > ? ORDER BY `size` LIMIT 1", index).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("tesseralog: integration time of entry %d: %w (not in the history)", index, engine.ErrNotFound)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("tesseralog: integration time of entry %d: %w", index, err)
	}
	return time.UnixMilli(ms), nil
}

// ReadTile implements [engine.Engine.ReadTile]: Tessera's stored tile, cut
// to the width asked.
func (e *Engine) ReadTile(ctx context.Context, level, index uint64, width uint8) ([]byte, error) {
	tile, err := e.reader.ReadTile(ctx, level, index, width)
	if err != nil {
		return nil, fmt.Errorf("tesseralog: tile %d/%d: %w", level, index, mapNotFound(err))
	}
	return trimTile(tile, width)
}

// ReadEntryBundle implements [engine.Engine.ReadEntryBundle]: Tessera's
// stored bundle, cut to the width asked.
func (e *Engine) ReadEntryBundle(ctx context.Context, index uint64, width uint8) ([]byte, error) {
	b, err := e.reader.ReadEntryBundle(ctx, index, width)
	if err != nil {
		return nil, fmt.Errorf("tesseralog: entry bundle %d: %w", index, mapNotFound(err))
	}
	return trimBundle(b, width)
}

// Close implements [engine.Engine.Close]: it refuses new Adds, waits for
// the ones in flight (up to Config.ShutdownTimeout), lets Tessera finish,
// and closes the database.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return e.closeErr
	}
	e.closed = true
	e.mu.Unlock()

	done := make(chan struct{})
	go func() { e.inflight.Wait(); close(done) }()
	var errs []error
	select {
	case <-done:
	case <-time.After(e.timeout):
		// An Add still blocked on Tessera's future stays blocked (and
		// leaks) once the sequencer stops; its entry may or may not be in
		// the log, and it was never acknowledged.
		errs = append(errs, fmt.Errorf("tesseralog: adds still waiting after %v", e.timeout))
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	if err := e.shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("tesseralog: Tessera shutdown: %w", err))
	}
	cancel()
	e.cancel() // stops the sequencer, publisher and awaiter
	if err := e.db.Close(); err != nil {
		errs = append(errs, err)
	}
	e.mu.Lock()
	e.closeErr = errors.Join(errs...)
	e.mu.Unlock()
	return e.closeErr
}

func mapNotFound(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w (%w)", engine.ErrNotFound, err)
	}
	return err
}

// trimTile returns the first width hashes of a stored tile (width 0: 256).
func trimTile(tile []byte, width uint8) ([]byte, error) {
	n := int(width)
	if n == 0 {
		n = tlog.TileWidth
	}
	if len(tile)%tlog.HashSize != 0 || len(tile) > tlog.TileWidth*tlog.HashSize {
		return nil, fmt.Errorf("tesseralog: stored tile of %d bytes: %w", len(tile), tlog.ErrMalformed)
	}
	if len(tile) < n*tlog.HashSize {
		return nil, fmt.Errorf("tesseralog: tile has %d hashes, %d asked: %w", len(tile)/tlog.HashSize, n, engine.ErrNotFound)
	}
	return tile[:n*tlog.HashSize], nil
}

// trimBundle returns the first width entries of a stored entry bundle
// (width 0: 256).
func trimBundle(b []byte, width uint8) ([]byte, error) {
	n := int(width)
	if n == 0 {
		n = tlog.TileWidth
	}
	off := 0
	for i := range n {
		if off == len(b) {
			return nil, fmt.Errorf("tesseralog: bundle has %d entries, %d asked: %w", i, n, engine.ErrNotFound)
		}
		if len(b)-off < 2 {
			return nil, fmt.Errorf("tesseralog: stored bundle: %w", tlog.ErrMalformed)
		}
		l := int(b[off])<<8 | int(b[off+1])
		if len(b)-off-2 < l {
			return nil, fmt.Errorf("tesseralog: stored bundle: %w", tlog.ErrMalformed)
		}
		off += 2 + l
	}
	return b[:off], nil
}

// cpText returns the text of a signed note (up to and including the line
// before the blank line).
func cpText(signed []byte) []byte {
	if i := bytes.Index(signed, []byte("\n\n")); i >= 0 {
		return signed[:i+1]
	}
	return signed
}
