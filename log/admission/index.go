package admission

import (
	"context"
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/dgraph-io/badger/v4"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/internal/badgeropen"
	"github.com/vmledger/vmledger/log/tlog"
)

// The index database (Config.Dir). Everything in it is derived from the log
// and can be rebuilt by deleting the directory. Keys are a one-byte tag and
// binary fields:
//
//	'm'                          u64 number of log entries applied (next index)
//	'o'                          the log's origin (an index of another log is refused)
//	'k' ‖ keyid (32 bytes)       Key JSON: enrolment, revocation, counter floor
//	'h' ‖ leaf hash (32 bytes)   u64 index of the first entry with that leaf hash
//	'v' ‖ vm id ‖ 0x00 ‖ u64 i   Attestation JSON (VM ids contain no NUL)
//	'r' ‖ config root ‖ u64 i    Attestation JSON
//	'c' ‖ keyid ‖ u64 i          Attestation JSON
//
// It is written without fsync: a crash may lose its tail, which the next
// start re-applies from the log.
const (
	tagMeta   = 'm'
	tagOrigin = 'o'
	tagKey    = 'k'
	tagLeaf   = 'h'
	tagVM     = 'v'
	tagRoot   = 'r'
	tagCop    = 'c'
)

// Attestation is one search result: an admitted attestation's index and
// what its statement says.
type Attestation struct {
	Index      uint64 `json:"index"`
	VMID       string `json:"vm_id"`
	ConfigRoot string `json:"config_root"`
	KeyID      string `json:"keyid"`
	Counter    uint64 `json:"counter"`
	Time       string `json:"time"`
}

// Key is an enrolled co-processor key, as GET /v1/coprocessors lists it.
type Key struct {
	KeyID         string  `json:"keyid"`
	Name          string  `json:"name"`
	PublicKey     string  `json:"public_key"`
	EnrolledIndex uint64  `json:"enrolled_index"`
	EnrolledAt    string  `json:"enrolled_at"`
	Revoked       bool    `json:"revoked"`
	RevokedIndex  *uint64 `json:"revoked_index,omitempty"`
	RevokedAt     string  `json:"revoked_at,omitempty"`
	// Counter is the highest counter admitted for the key (0: none yet).
	Counter uint64 `json:"counter"`
}

type store struct {
	db  *badger.DB
	log *slog.Logger
	// stop stops the background directory sync: the index is written
	// without fsync, but a table its MANIFEST names must not lose its
	// directory entry, or the index would not open after a power cut.
	stop func()
}

func (s *store) close() error {
	s.stop()
	return s.db.Close()
}

func openStore(dir string, logger *slog.Logger) (*store, error) {
	opts := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithSyncWrites(false).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(10).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueThreshold(1 << 10).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badgeropen.Open(context.Background(), opts, logger)
	if err != nil {
		return nil, fmt.Errorf("admission: opening index %s: %w", dir, err)
	}
	return &store{db: db, log: logger, stop: badgeropen.NewDirSync(opts).Start()}, nil
}

func u64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func keyKey(keyID string) []byte {
	b := []byte{tagKey}
	raw, _ := hex.DecodeString(keyID)
	return append(b, raw...)
}

func leafKey(h tlog.Hash) []byte { return append([]byte{tagLeaf}, h[:]...) }

func vmPrefix(vmID string) []byte {
	return append(append([]byte{tagVM}, vmID...), 0)
}

func rootPrefix(root [32]byte) []byte { return append([]byte{tagRoot}, root[:]...) }

func copPrefix(keyID string) []byte {
	raw, _ := hex.DecodeString(keyID)
	return append([]byte{tagCop}, raw...)
}

// next returns the number of log entries applied.
func (s *store) next() (uint64, error) {
	var n uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{tagMeta})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("index meta of %d bytes", len(v))
			}
			n = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	return n, err
}

// checkOrigin records origin in a new index and refuses an index of
// another log.
func (s *store) checkOrigin(origin string) error {
	return s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{tagOrigin})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set([]byte{tagOrigin}, []byte(origin))
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if string(v) != origin {
				return fmt.Errorf("the index is of log %q, not %q", v, origin)
			}
			return nil
		})
	})
}

// leaf returns the index of the entry with leaf hash h.
func (s *store) leaf(h tlog.Hash) (uint64, bool, error) {
	var idx uint64
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(leafKey(h))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(v []byte) error {
			idx = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	return idx, found, err
}

// keys returns every key record.
func (s *store) keys() ([]*Key, error) {
	var out []*Key
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{tagKey}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var k Key
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &k) }); err != nil {
				return err
			}
			out = append(out, &k)
		}
		return nil
	})
	return out, err
}

// indexEntry is one log entry to index; att, if set, is the entry's
// attestation already checked and parsed by admission (nil: check and
// parse the entry).
type indexEntry struct {
	entry []byte
	att   *Attestation
}

// apply indexes entries first, first+1, … and records the next index, in
// one transaction. It returns the key records it changed and the leaf
// hashes of all the entries.
//
// Only what admission would have admitted takes effect: an attestation
// that admission did not hand over is indexed only if its key was enrolled
// earlier in the log and its signature verifies under that key (an entry
// that fails is counted, logged and otherwise ignored: no search result,
// no leaf for deduplication, no counter floor). Entries that are neither
// attestations nor enrolment records are counted but not indexed.
func (s *store) apply(first uint64, entries []indexEntry) (map[string]*Key, []tlog.Hash, error) {
	changed := map[string]*Key{}
	var leaves []tlog.Hash
	pubs := map[string]crypto.PublicKey{}
	err := s.db.Update(func(txn *badger.Txn) error {
		clear(changed)
		leaves = leaves[:0]
		getKey := func(id string) (*Key, error) {
			if k, ok := changed[id]; ok {
				return k, nil
			}
			item, err := txn.Get(keyKey(id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			var k Key
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &k) }); err != nil {
				return nil, err
			}
			return &k, nil
		}
		for i, ie := range entries {
			index := first + uint64(i)
			e := ie.entry
			h := tlog.LeafHash(e)
			leaves = append(leaves, h)
			setLeaf := func() error {
				_, err := txn.Get(leafKey(h))
				if errors.Is(err, badger.ErrKeyNotFound) {
					return txn.Set(leafKey(h), u64(nil, index))
				}
				return err
			}
			if IsRecord(e) {
				r, err := ParseRecord(e)
				if err != nil {
					s.log.Warn("index: skipping a malformed enrolment record", "index", index, "err", err)
					continue
				}
				if err := setLeaf(); err != nil {
					return err
				}
				k, err := getKey(r.KeyID)
				if err != nil {
					return err
				}
				switch {
				case r.Action == ActionEnrol && k == nil:
					changed[r.KeyID] = &Key{KeyID: r.KeyID, Name: r.Name, PublicKey: r.PublicKey, EnrolledIndex: index, EnrolledAt: r.Time}
				case r.Action == ActionRevoke && k != nil && !k.Revoked:
					k.Revoked, k.RevokedIndex, k.RevokedAt = true, &index, r.Time
					changed[r.KeyID] = k
				}
				continue
			}
			a := ie.att
			if a == nil {
				env, err := coproc.ParseEnvelope(e)
				if err != nil {
					continue
				}
				st, err := env.Statement()
				if err != nil {
					continue
				}
				if err := checkUnadmitted(env, st, getKey, pubs); errors.Is(err, errUnchecked) {
					s.log.Warn("index: ignoring an attestation that admission did not check", "index", index, "err", err)
					continue
				} else if err != nil {
					return err
				}
				a = summarize(st)
			}
			if err := setLeaf(); err != nil {
				return err
			}
			a.Index = index
			var root [32]byte
			hex.Decode(root[:], []byte(a.ConfigRoot))
			v, _ := json.Marshal(a)
			for _, p := range [][]byte{vmPrefix(a.VMID), rootPrefix(root), copPrefix(a.KeyID)} {
				if err := txn.Set(u64(p, index), v); err != nil {
					return err
				}
			}
			k, err := getKey(a.KeyID)
			if err != nil {
				return err
			}
			if k != nil && a.Counter > k.Counter {
				k.Counter = a.Counter
				changed[a.KeyID] = k
			}
		}
		for id, k := range changed {
			v, _ := json.Marshal(k)
			if err := txn.Set(keyKey(id), v); err != nil {
				return err
			}
		}
		return txn.Set([]byte{tagMeta}, u64(nil, first+uint64(len(entries))))
	})
	if err != nil {
		return nil, nil, fmt.Errorf("admission: indexing entries %d..%d: %w", first, first+uint64(len(entries))-1, err)
	}
	return changed, leaves, nil
}

// errUnchecked: an attestation in the log that admission would not have
// admitted.
var errUnchecked = errors.New("not an admitted attestation")

// checkUnadmitted checks an attestation read from the log as admission
// would have (except freshness and the counter, which depend on when it was
// submitted): its key was enrolled before it in the log (getKey sees the
// state up to the entry) and its signature verifies under that key. pubs
// caches parsed public keys.
func checkUnadmitted(env *coproc.Envelope, st *coproc.Statement, getKey func(string) (*Key, error), pubs map[string]crypto.PublicKey) error {
	id := st.Predicate.Coprocessor.KeyID
	k, err := getKey(id)
	if err != nil {
		return err
	}
	if k == nil {
		return fmt.Errorf("%w: key %s is not enrolled before it", errUnchecked, id)
	}
	pub, ok := pubs[id]
	if !ok {
		if pub, err = (&Record{PublicKey: k.PublicKey}).Public(); err != nil {
			return fmt.Errorf("key %s in the index: %w", id, err)
		}
		pubs[id] = pub
	}
	if err := coproc.Verify(env, pub); err != nil {
		return fmt.Errorf("%w: key %s: %w", errUnchecked, id, err)
	}
	return nil
}

// summarize returns the search record of a statement (without its index).
func summarize(st *coproc.Statement) *Attestation {
	root := st.ConfigRoot()
	return &Attestation{VMID: st.VMID(), ConfigRoot: hex.EncodeToString(root[:]),
		KeyID: st.Predicate.Coprocessor.KeyID, Counter: st.Predicate.Coprocessor.Counter, Time: st.Predicate.Time}
}

// list returns up to limit attestations under prefix with an index above
// after (all when after is nil), in index order.
func (s *store) list(prefix []byte, after *uint64, limit int) ([]Attestation, error) {
	out := []Attestation{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchSize = min(limit, 100)
		it := txn.NewIterator(opts)
		defer it.Close()
		start := prefix
		if after != nil {
			if *after == 1<<64-1 {
				return nil
			}
			start = u64(append([]byte{}, prefix...), *after+1)
		}
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			if len(it.Item().Key()) != len(prefix)+8 {
				continue
			}
			var a Attestation
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &a) }); err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// latest returns the attestation under prefix with the highest index below
// below.
func (s *store) latest(prefix []byte, below uint64) (Attestation, bool, error) {
	var a Attestation
	found := false
	if below == 0 {
		return a, false, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.Reverse = true
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(u64(append([]byte{}, prefix...), below-1)); it.Valid(); it.Next() {
			if len(it.Item().Key()) != len(prefix)+8 {
				continue
			}
			found = true
			return it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &a) })
		}
		return nil
	})
	return a, found, err
}
