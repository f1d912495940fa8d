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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/vmledger/vmledger/internal/badgeropen"
	"github.com/vmledger/vmledger/internal/datadir"
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
//
// A storage failure — a write that badger could not commit, or the
// directory removed or replaced under the running process (badger then
// writes into files no restart will read) — stops the store: every later
// read and write returns an error wrapping ErrStorageFailed, and so does a
// write that committed while the directory was already gone, so nothing is
// acknowledged that was not persisted where the next start looks.
type Store struct {
	db     *badger.DB
	dir    string
	home   *datadir.Dir
	failed atomic.Pointer[error] // sticky ErrStorageFailed
	dirs   *badgeropen.DirSync   // synced after each write, before it is acknowledged
	stop   func()                // stops dirs' background sync

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
	home, err := datadir.Watch(dir)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open witness store %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, home: home, dirs: badgeropen.NewDirSync(opts)}
	s.stop = s.dirs.Start()
	return s, nil
}

// ErrStorageFailed: the store stopped after a storage failure and refuses
// every read and write until the witness is restarted (HTTP 503).
var ErrStorageFailed = errors.New("witness storage failed")

// Health returns nil while the store works, or an error wrapping
// ErrStorageFailed once it has stopped (see [Store]).
func (s *Store) Health() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	if err := s.home.Check(); err != nil {
		return s.fail(err)
	}
	return nil
}

func (s *Store) fail(err error) error {
	ferr := fmt.Errorf("%w: %w", ErrStorageFailed, err)
	s.failed.CompareAndSwap(nil, &ferr)
	return *s.failed.Load()
}

// update runs a badger read-write transaction and syncs the store's
// directories (a file badger created for it must not lose its directory
// entry at a power cut). An error from fn is a decision and is returned as
// is; a failed commit or directory sync, or a directory gone by the time the
// commit returned, stops the store.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	if err := s.Health(); err != nil {
		return err
	}
	var fnErr error
	err := s.db.Update(func(txn *badger.Txn) error {
		fnErr = fn(txn)
		return fnErr
	})
	switch {
	case fnErr != nil || errors.Is(err, badger.ErrConflict):
		return err
	case err != nil:
		return s.fail(err)
	}
	if err := s.home.Check(); err != nil {
		return s.fail(err)
	}
	if err := s.dirs.Sync(); err != nil {
		return s.fail(err)
	}
	return nil
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

// closeWait bounds Close after a storage failure.
const closeWait = 5 * time.Second

// Close closes the database. After a storage failure it waits at most
// closeWait: badger retries a failed memtable flush forever, and its Close
// waits for that flush.
func (s *Store) Close() error {
	s.stop()
	if s.Health() == nil {
		return s.db.Close()
	}
	done := make(chan error, 1)
	go func() { done <- s.db.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(closeWait):
		return fmt.Errorf("closing the witness store: %w; not waiting for badger any longer", s.Health())
	}
}

func stateKey(origin string) []byte { return []byte("cp/" + origin) }

// Latest returns the state of origin, or nil if nothing was ever cosigned.
func (s *Store) Latest(ctx context.Context, origin string) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.Health(); err != nil {
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
	if err := s.Health(); err != nil {
		return err
	}
	if err := s.checkFree(); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.update(func(txn *badger.Txn) error {
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
		return err
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
		err = s.update(func(txn *badger.Txn) error {
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
	if err := s.Health(); err != nil {
		return nil, err
	}
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
// it is not consistent with its state (a bad proof, or a contradiction), and
// reports whether it was new. A failed proof alone does not prove a fork;
// gossip may later turn it into Evidence. A checkpoint already kept is not
// written again, so that sending it over and over costs a read.
func (s *Store) AddRejected(ctx context.Context, origin string, signed []byte) (bool, error) {
	id := sha256.Sum256(signed)
	key := []byte("rej/" + origin + "/" + hex.EncodeToString(id[:]))
	if err := s.Health(); err != nil {
		return false, err
	}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(key)
		return err
	})
	if err == nil || !errors.Is(err, badger.ErrKeyNotFound) {
		return false, err
	}
	return true, s.update(func(txn *badger.Txn) error { return txn.Set(key, signed) })
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
