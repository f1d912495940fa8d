// Package engine defines the storage engine behind the vmledger log: the
// component that sequences entries, keeps the RFC 6962 tree as C2SP
// tlog-tiles, signs checkpoints and keeps every checkpoint it signed.
//
// The interface is small on purpose: an embedded engine (log/badgerlog) and
// one on Tessera's storage drivers (tessera.NewAppender with the MySQL
// driver: its Add future, its LogReader's ReadTile/ReadEntryBundle/
// ReadCheckpoint, and a note.Signer wrapper that records each checkpoint it
// signs) both fit behind it. Every engine must pass the conformance suite in
// log/engine/enginetest.
//
// The personality (log/server) maps the sentinel errors below to HTTP status
// codes at one switch; engines wrap them with %w and add context.
package engine

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound: the tile, bundle or checkpoint does not exist (yet).
	ErrNotFound = errors.New("not found")
	// ErrEntryTooLarge: the entry is above 65,535 bytes, the most an entry
	// bundle can carry.
	ErrEntryTooLarge = errors.New("entry too large")
	// ErrPushback: the engine is overloaded and refuses new entries for now;
	// the caller should retry later (HTTP 503 with Retry-After).
	ErrPushback = errors.New("pushback")
	// ErrClosed: the engine has been closed.
	ErrClosed = errors.New("engine closed")
	// ErrFailed: the engine stopped after a storage failure (a failed write
	// or fsync) and refuses writes until it is reopened; nothing it did not
	// acknowledge was persisted. Callers answer 503 and report unhealthy,
	// so that a supervisor restarts the process.
	ErrFailed = errors.New("engine stopped after a storage failure")
)

// Health is implemented by engines that can fail while running: Health
// returns nil while the engine accepts writes, or an error wrapping
// ErrFailed once it has stopped.
type Health interface {
	Health() error
}

// Stats are an engine's sequencing counters since it was opened, for
// metrics: entries/batches is the mean batch (group commit) size, and
// CommitSeconds/Batches the mean time to make a batch durable.
type Stats struct {
	// Batches is the number of committed batches (one checkpoint each),
	// Entries the entries in them.
	Batches, Entries uint64
	// CommitSeconds is the time spent committing them: writing entries,
	// tiles and checkpoint, and the fsync.
	CommitSeconds float64
}

// StatsReporter is implemented by engines that count their batches.
type StatsReporter interface {
	Stats() Stats
}

// IntegrationTimes is implemented by engines that record, durably and with
// each checkpoint, when they signed it. An entry's integration time is the
// time the engine signed its first checkpoint that includes the entry (the
// smallest checkpointed size above its index): at or after the entry was
// sequenced, and before Add returned it. It is read, never computed at
// read time, so every read gives the same answer.
type IntegrationTimes interface {
	// IntegratedAt returns the integration time of entry index, or an
	// error wrapping ErrNotFound if no checkpoint the engine serves
	// includes it yet, or if that checkpoint was stored without a time (a
	// log created by an older version).
	IntegratedAt(ctx context.Context, index uint64) (time.Time, error)
}

// Engine is a verifiable log's storage and sequencer. All methods are safe
// for concurrent use.
//
// Invariants every engine keeps:
//   - Entries are numbered 0, 1, 2, … in the order the engine sequences
//     them; an index is never reused or reassigned.
//   - Every checkpoint the engine signs extends the previous one (a
//     consistency proof exists between any two), and it signs at most one
//     checkpoint per tree size. A checkpoint is visible through Checkpoint
//     and CheckpointAt only once it, its entries and its tree hashes are
//     durable; after a crash the engine reopens to the last durable
//     checkpoint.
//   - The tiles and entry bundles of every checkpointed size stay readable,
//     partial ones included (a reader may also get a prefix of a newer
//     partial tile, which holds the same hashes).
type Engine interface {
	// Add sequences entry and returns its index. It returns only once the
	// entry is durable and included in a signed checkpoint that Checkpoint
	// returns (size > index). On error the entry may or may not have been
	// sequenced; the caller may retry (admission later deduplicates).
	// Errors: ErrEntryTooLarge, ErrPushback, ErrClosed, ctx's error, or an
	// I/O error.
	Add(ctx context.Context, entry []byte) (index uint64, err error)

	// Checkpoint returns the latest signed checkpoint: a signed note whose
	// text is a C2SP tlog-checkpoint, signed by the log key. A new log has
	// a checkpoint of size 0.
	Checkpoint(ctx context.Context) ([]byte, error)

	// CheckpointAt returns the checkpoint the engine signed for the given
	// size, byte for byte as it was served, or ErrNotFound if it never
	// signed one at that size.
	CheckpointAt(ctx context.Context, size uint64) ([]byte, error)

	// ReadTile returns the first width hashes (width 0: all 256) of the
	// hash tile at level and index, concatenated, or ErrNotFound if the
	// tree does not have that many hashes in that tile yet.
	ReadTile(ctx context.Context, level, index uint64, width uint8) ([]byte, error)

	// ReadEntryBundle returns the first width entries (width 0: all 256)
	// of entry bundle index, encoded as a C2SP entry bundle, or ErrNotFound
	// if the log does not have that many entries in that bundle yet.
	ReadEntryBundle(ctx context.Context, index uint64, width uint8) ([]byte, error)

	// Close stops sequencing and releases the storage. Adds in flight
	// either complete (their entry is durable and checkpointed) or fail
	// with ErrClosed; no acknowledged entry is lost. Close is idempotent.
	Close() error
}
