package witness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"

	"github.com/dgraph-io/badger/v4"

	"github.com/vmledger/vmledger/internal/badgeropen"
)

// Store is the witness's durable state in an embedded badger database:
//
//	cp/<origin>           the checkpoint last cosigned for origin (State, JSON)
//	ev/<origin>/<id>      fork evidence (Evidence, JSON)
//	rej/<origin>/<sha256> log-signed checkpoints refused as inconsistent
//
// Every write is synced to disk before it returns (SyncWrites). The update of
// cp/<origin> is a compare-and-swap: a badger transaction reads the key and
// writes it, and commits only if no other transaction wrote the key since the
// read (badger's conflict detection); a conflicting transaction is re-run
// from the read. So the stored size of an origin never decreases, whatever
// the concurrency.
type Store struct {
	db   *badger.DB
	dir  string
	dirs *badgeropen.DirSync // synced after each write, before it is acknowledged
	stop func()              // stops dirs' background sync

	// testHookUpdated, if set, runs inside Update between fn and the commit
	// (tests use it to hold racing transactions open together).
	testHookUpdated func()
}

// State is what the witness remembers per origin.
type State struct {
	Size uint64   `json:"size"`
	Root [32]byte `json:"root"`
	// Note is the checkpoint text, the log's signature lines and this
	// witness's cosignature line: what the monitoring endpoint serves.
	Note []byte `json:"note"`
}

// OpenStore opens (or creates) the store in dir.
func OpenStore(dir string, logger *slog.Logger) (*Store, error) {
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{logger}).
		WithMemTableSize(8 << 20).
		WithValueLogFileSize(64 << 20).
		WithBlockCacheSize(8 << 20).
		WithNumVersionsToKeep(1)
	db, err := badgeropen.Open(context.Background(), opts, logger)
	if err != nil {
		return nil, fmt.Errorf("open witness store %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, dirs: badgeropen.NewDirSync(opts)}
	s.stop = s.dirs.Start()
	return s, nil
}

// MinFreeBytes is the free space the store's filesystem must keep for an
// update: badger writes its memtable log through a memory-mapped file, and
// a write into it on a full filesystem kills the process (SIGBUS), so
// updates are refused first (ErrStorageFull, HTTP 503).
const MinFreeBytes = 32 << 20

// ErrStorageFull: the store's filesystem is nearly full; nothing was written.
var ErrStorageFull = errors.New("witness storage nearly full")

func (s *Store) checkFree() error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return nil // cannot tell: let the write show
	}
	if free := st.Bavail * uint64(st.Bsize); free < MinFreeBytes {
		return fmt.Errorf("%w: %d MiB free, at least %d MiB needed", ErrStorageFull, free>>20, MinFreeBytes>>20)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.stop()
	return s.db.Close()
}

func stateKey(origin string) []byte { return []byte("cp/" + origin) }

// Latest returns the state of origin, or nil if nothing was ever cosigned.
func (s *Store) Latest(ctx context.Context, origin string) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var st *State
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		st, err = getState(txn, origin)
		return err
	})
	return st, err
}

func getState(txn *badger.Txn, origin string) (*State, error) {
	item, err := txn.Get(stateKey(origin))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st := new(State)
	err = item.Value(func(v []byte) error { return json.Unmarshal(v, st) })
	return st, err
}

// Update runs fn on the current state of origin (nil if none) and stores
// what it returns, atomically: if another update of origin commits between
// the read and the write, fn runs again on the new state. An error from fn
// aborts without writing. Update returns once the new state is on disk.
func (s *Store) Update(ctx context.Context, origin string, fn func(cur *State) (*State, error)) error {
	if err := s.checkFree(); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.db.Update(func(txn *badger.Txn) error {
			cur, err := getState(txn, origin)
			if err != nil {
				return err
			}
			next, err := fn(cur)
			if err != nil {
				return err
			}
			v, err := json.Marshal(next)
			if err != nil {
				return err
			}
			if s.testHookUpdated != nil {
				s.testHookUpdated()
			}
			return txn.Set(stateKey(origin), v)
		})
		if errors.Is(err, badger.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		return s.dirs.Sync()
	}
}

// AddEvidence stores e unless the same evidence is already stored, and
// reports whether it was new.
func (s *Store) AddEvidence(ctx context.Context, e *Evidence) (bool, error) {
	if err := s.checkFree(); err != nil {
		return false, err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	key := []byte("ev/" + e.Origin + "/" + evidenceID(e))
	added := false
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		err = s.db.Update(func(txn *badger.Txn) error {
			if _, err := txn.Get(key); err == nil {
				return nil
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			added = true
			return txn.Set(key, v)
		})
		if errors.Is(err, badger.ErrConflict) {
			added = false
			continue
		}
		if err == nil {
			err = s.dirs.Sync()
		}
		return added && err == nil, err
	}
}

// evidenceID identifies the contradiction, not the bytes that show it: the
// kind and the two checkpoint texts (signature lines aside, and in either
// order for KindSameSize), so that the same fork seen through notes with
// different cosignatures is stored once.
func evidenceID(e *Evidence) string {
	text := func(n string) string {
		if i := strings.Index(n, "\n\n"); i >= 0 {
			return n[:i+1]
		}
		return n
	}
	a, b := text(e.First), text(e.Second)
	if e.Kind == KindSameSize && b < a {
		a, b = b, a
	}
	id := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s", e.Kind, a, b))
	return hex.EncodeToString(id[:])
}

// Evidence returns all stored fork evidence.
func (s *Store) Evidence(ctx context.Context) ([]*Evidence, error) {
	var out []*Evidence
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("ev/"), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			e := new(Evidence)
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, e) }); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// AddRejected keeps a log-signed checkpoint that this witness refused because
// it is not consistent with its state (a bad proof, or a contradiction). A
// failed proof alone does not prove a fork; gossip may later turn it into
// Evidence.
func (s *Store) AddRejected(ctx context.Context, origin string, signed []byte) error {
	id := sha256.Sum256(signed)
	key := []byte("rej/" + origin + "/" + hex.EncodeToString(id[:]))
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, signed) }); err != nil {
		return err
	}
	return s.dirs.Sync()
}

// Rejected returns the rejected checkpoints of origin.
func (s *Store) Rejected(ctx context.Context, origin string) ([][]byte, error) {
	var out [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("rej/" + origin + "/"), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// badgerLogger sends badger's messages to slog; its info chatter goes to
// debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) logger() *slog.Logger {
	if b.l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.l
}
func (b badgerLogger) Errorf(f string, a ...any) {
	b.logger().Error(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.logger().Warn(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.logger().Debug(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.logger().Debug(fmt.Sprintf(f, a...), "component", "badger")
}
