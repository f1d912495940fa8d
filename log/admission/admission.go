package admission

import (
	"cmp"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/evidence"
	"github.com/vmledger/vmledger/internal/atomicfile"
	"github.com/vmledger/vmledger/internal/badgeropen"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/tlog"
)

// Publisher is what the service needs of the witnessing layer
// (*publish.Publisher implements it).
type Publisher interface {
	// Latest returns the latest published (cosigned) checkpoint, or an
	// error wrapping engine.ErrNotFound before the first one.
	Latest(ctx context.Context) ([]byte, error)
	// Wait blocks until a checkpoint of at least size is published and
	// returns it, or returns ctx's error.
	Wait(ctx context.Context, size uint64) ([]byte, error)
}

// Config configures a Service.
type Config struct {
	// Engine is the log. Required.
	Engine engine.Engine
	// Publisher says which checkpoints are published: freshness anchors
	// must be published ones, and bundles carry the latest published
	// checkpoint. Required.
	Publisher Publisher
	// Dir is the index database's directory (e.g. DATA/index); created if
	// missing. Deleting it makes the next New rebuild it from the log; an
	// index that a power cut left with tables badger cannot recover is set
	// aside (DIR.damaged-<time>) and rebuilt the same way.
	Dir string
	// AdminToken is the bearer token of the enrolment endpoints; empty
	// disables them (every request is 401).
	AdminToken []byte
	// FreshnessWindow is how long a published checkpoint stays a valid
	// anchor after a newer one replaced it (default 10 minutes).
	FreshnessWindow time.Duration
	// MaxInFlight bounds concurrent admissions (decode, verification,
	// append); above it POST /v1/attestations answers 429 (default 512).
	// Requests waiting for publication (?wait=1) do not count.
	MaxInFlight int
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the service's metrics; nil registers none.
	Registry prometheus.Registerer
	// Now is the clock for freshness and enrolment times; nil is time.Now.
	Now func() time.Time
	// Claims, if set, is admission state shared with the other front-ends
	// of the same log (the Tessera engine's database: tesseralog's
	// Engine.Claims), so that counter floors, duplicates and revocations
	// hold across front-ends at once rather than once each front-end's
	// index has caught up. nil: this service is the log's only front-end
	// (the badger engine).
	Claims Claims

	// catchUpEvery is how often the indexer reads entries appended
	// elsewhere (default 1 s); tests of several front-ends raise it so
	// that only the shared state can tell one front-end about another.
	catchUpEvery time.Duration
}

// Claims is the per-key admission state that the front-ends of one log
// share. Each method is atomic in the shared store and holds no lock when
// it returns: the append runs between Claim and Done or Release.
type Claims interface {
	// Claim raises keyID's floor to counter, records leaf (the entry's
	// leaf hash) as the floor's holder and counts the claim as pending,
	// if the key is not revoked and counter is above the floor. On
	// success ok is true and floor and holder are the values it replaced;
	// otherwise they are the stored ones and revoked says whether the key
	// is revoked.
	Claim(ctx context.Context, keyID string, counter uint64, leaf [32]byte) (ok bool, floor uint64, holder [32]byte, revoked bool, err error)
	// Release ends a claim whose append failed: if the floor is still that
	// claim it goes back to prevCounter and prevLeaf (compare-and-set),
	// so the same envelope can be admitted on a retry.
	Release(ctx context.Context, keyID string, counter uint64, leaf [32]byte, prevCounter uint64, prevLeaf [32]byte) error
	// Done ends a claim whose append succeeded.
	Done(ctx context.Context, keyID string) error
	// Revoke marks keyID revoked, so that no front-end claims it again,
	// and returns the number of claims still pending; calling it again
	// polls that number.
	Revoke(ctx context.Context, keyID string) (pending int, err error)
}

// How long an admission waits for an identical envelope that another
// front-end claimed to show up in the log, and how long a revocation waits
// for other front-ends' appends of the key to finish. Both outlast a
// Tessera append (about 2 s) by far; they bound the wait when a front-end
// died holding a claim.
// enrolPublishWait bounds how long an enrolment waits for a published
// checkpoint that includes it (witnesses that are down delay publication);
// well within `log enroll`'s default --timeout of 30 s.
var enrolPublishWait = 10 * time.Second

var (
	sharedWait      = 30 * time.Second
	sharedPoll      = 100 * time.Millisecond
	sharedOpTimeout = 10 * time.Second
)

// Service is the Attestation Service's admission, enrolment, search and
// bundle endpoints. Create it with New, add its routes with Register, stop
// it with Close (before closing the engine).
type Service struct {
	cfg    Config
	log    *slog.Logger
	origin string
	store  *store
	fresh  *freshness
	sem    chan struct{}
	token  [sha256.Size]byte

	adminMu sync.Mutex // serialises enrolments and revocations

	// mu guards the fields below. Lock order: mu before a keyState's mu.
	mu        sync.Mutex
	keys      map[string]*keyState
	leaves    map[tlog.Hash]*pending // being admitted, or admitted and not yet indexed
	added     map[uint64]indexEntry  // entries appended here and not yet indexed, by index
	indexed   uint64                 // entries [0, indexed) are in the index
	indexedCh chan struct{}          // closed and replaced when indexed grows

	kick   chan struct{}
	pull   chan struct{} // asks the indexer to read the engine now (Sync)
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	results  *prometheus.CounterVec
	duration prometheus.Histogram
}

// keyState is an enrolled key in memory. The map entry is created by the
// indexer when it applies the enrolment record; info is updated by the
// indexer and, for the counter, by the admission that appended.
type keyState struct {
	pub   crypto.PublicKey
	ident *evidence.Identity // nil: enrolled without a TPM identity

	mu       sync.Mutex
	info     Key      // as in the index; info.Counter is the highest admitted counter
	revoking bool     // a revocation is being recorded: admit nothing more
	reserved []uint64 // counters of admissions between check and append
	idle     sync.Cond
}

// floor is the counter a new admission must exceed. Call with mu held.
func (k *keyState) floor() uint64 {
	f := k.info.Counter
	for _, c := range k.reserved {
		f = max(f, c)
	}
	return f
}

// pending is an admission in progress for one leaf hash; identical
// submissions wait for it instead of appending again.
type pending struct {
	done  chan struct{}
	index uint64
	err   error
}

// New opens (or creates) the index in c.Dir, brings it up to the engine's
// latest checkpoint (rebuilding it entirely if the directory was empty),
// loads the admission state from it and starts following the log and the
// publisher.
func New(ctx context.Context, c Config) (*Service, error) {
	if c.Engine == nil || c.Publisher == nil || c.Dir == "" {
		return nil, errors.New("admission: Config.Engine, Publisher and Dir are required")
	}
	if c.FreshnessWindow <= 0 {
		c.FreshnessWindow = 10 * time.Minute
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 512
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.catchUpEvery <= 0 {
		c.catchUpEvery = time.Second
	}
	signed, err := c.Engine.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("admission: reading the log's checkpoint: %w", err)
	}
	cp, err := parseSigned(signed)
	if err != nil {
		return nil, fmt.Errorf("admission: the log's checkpoint: %w", err)
	}
	if err := atomicfile.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	st, err := openStore(c.Dir, c.Logger)
	if errors.Is(err, badgeropen.ErrMissingTables) {
		// A power cut lost index tables whose data badger cannot show to be
		// in its logs (the index syncs lazily: it is derived from the log).
		// Everything it holds is in the log, so set it aside and rebuild.
		aside := fmt.Sprintf("%s.damaged-%d", c.Dir, c.Now().UnixNano())
		c.Logger.Warn("admission index damaged; rebuilding it from the log", "dir", c.Dir, "set_aside", aside, "err", err)
		if rerr := os.Rename(c.Dir, aside); rerr != nil {
			return nil, fmt.Errorf("admission: setting the damaged index aside: %w (after %w)", rerr, err)
		}
		if err := atomicfile.MkdirAll(c.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("admission: %w", err)
		}
		st, err = openStore(c.Dir, c.Logger)
	}
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:       c,
		log:       c.Logger,
		origin:    cp.Origin,
		store:     st,
		fresh:     &freshness{window: c.FreshnessWindow, now: c.Now, superseded: map[uint64]supersededAnchor{}},
		sem:       make(chan struct{}, c.MaxInFlight),
		keys:      map[string]*keyState{},
		leaves:    map[tlog.Hash]*pending{},
		added:     map[uint64]indexEntry{},
		indexedCh: make(chan struct{}),
		kick:      make(chan struct{}, 1),
		pull:      make(chan struct{}, 1),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmledger_admissions_total",
			Help: "Attestation submissions by result: admitted, duplicate, or the refusal reason.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vmledger_admission_seconds",
			Help:    "Time to admit an attestation (checks and durable append, without waiting for publication).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if len(c.AdminToken) > 0 {
		s.token = sha256.Sum256(c.AdminToken)
	}
	if c.Registry != nil {
		for _, m := range []prometheus.Collector{s.results, s.duration} {
			if err := c.Registry.Register(m); err != nil {
				st.close()
				return nil, fmt.Errorf("admission: registering metrics: %w", err)
			}
		}
	}
	if err := s.load(ctx, cp.Size); err != nil {
		st.close()
		return nil, err
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.runIndexer(bg) }()
	go func() { defer s.wg.Done(); s.trackFreshness(bg) }()
	return s, nil
}

// load reads the key records and catches the index up with the log.
func (s *Service) load(ctx context.Context, size uint64) error {
	if err := s.store.checkOrigin(s.origin); err != nil {
		return fmt.Errorf("admission: %s: %w; delete the directory to rebuild it", s.cfg.Dir, err)
	}
	next, err := s.store.next()
	if err != nil {
		return fmt.Errorf("admission: index: %w", err)
	}
	if next > size {
		return fmt.Errorf("admission: the index in %s covers %d entries but the log has %d: it belongs to another log; delete the directory to rebuild it", s.cfg.Dir, next, size)
	}
	keys, err := s.store.keys()
	if err != nil {
		return fmt.Errorf("admission: index: %w", err)
	}
	changed := map[string]*Key{}
	for _, k := range keys {
		changed[k.KeyID] = k
	}
	if err := s.applyKeys(changed); err != nil {
		return err
	}
	s.indexed = next
	if next < size {
		s.log.Info("index behind the log: catching up", "indexed", next, "size", size)
	}
	return s.catchUp(ctx)
}

// applyKeys brings the in-memory key state up to the given records.
func (s *Service) applyKeys(changed map[string]*Key) error {
	for id, k := range changed {
		s.mu.Lock()
		ks := s.keys[id]
		if ks == nil {
			der, err := base64.StdEncoding.Strict().DecodeString(k.PublicKey)
			if err != nil {
				s.mu.Unlock()
				return fmt.Errorf("admission: index: key %s: %w", id, err)
			}
			r := &Record{PublicKey: base64.StdEncoding.EncodeToString(der)}
			pub, err := r.Public()
			if err != nil {
				s.mu.Unlock()
				return fmt.Errorf("admission: index: key %s: %w", id, err)
			}
			ident, err := parseIdentity(k.TPMIdentity)
			if err != nil {
				s.mu.Unlock()
				return fmt.Errorf("admission: index: key %s: %w", id, err)
			}
			ks = &keyState{pub: pub, ident: ident}
			ks.idle.L = &ks.mu
			s.keys[id] = ks
		}
		s.mu.Unlock()
		ks.mu.Lock()
		counter := max(ks.info.Counter, k.Counter)
		ks.info = *k
		ks.info.Counter = counter
		ks.mu.Unlock()
	}
	return nil
}

// runIndexer applies new log entries to the index until ctx is done: those
// that this service appended as soon as they are handed over, and every
// second whatever else the engine has (entries appended otherwise).
func (s *Service) runIndexer(ctx context.Context) {
	t := time.NewTicker(s.cfg.catchUpEvery)
	defer t.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			err = s.applyAdded()
			if err == nil && s.gap() {
				// Entries appended through other front-ends come
				// before ours: read them now rather than at the tick.
				err = s.catchUp(ctx)
			}
		case <-t.C:
			err = s.catchUp(ctx)
		case <-s.pull:
			err = s.applyAdded()
			if err == nil {
				err = s.catchUp(ctx)
			}
		}
		if err != nil && ctx.Err() == nil {
			s.log.Error("index: catching up with the log", "err", err)
		}
	}
}

// handOff gives the indexer an entry this service appended at index, so
// that it need not read it back from the engine.
func (s *Service) handOff(index uint64, e indexEntry) {
	s.mu.Lock()
	if index >= s.indexed {
		s.added[index] = e
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// gap reports whether entries handed over wait for earlier ones that this
// service did not append.
func (s *Service) gap() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.added) > 0
}

// applyAdded indexes the handed-over entries that continue the index
// without a gap. Only the indexer goroutine calls it.
func (s *Service) applyAdded() error {
	for {
		s.mu.Lock()
		next := s.indexed
		var batch []indexEntry
		for len(batch) < tlog.TileWidth {
			e, ok := s.added[next+uint64(len(batch))]
			if !ok {
				break
			}
			batch = append(batch, e)
		}
		s.mu.Unlock()
		if len(batch) == 0 {
			return nil
		}
		if err := s.applyEntries(next, batch); err != nil {
			return err
		}
	}
}

// catchUp indexes the entries from the indexed count to the engine's
// latest checkpoint, one entry bundle per transaction. Only New (before the
// indexer starts) and the indexer goroutine call it.
func (s *Service) catchUp(ctx context.Context) error {
	signed, err := s.cfg.Engine.Checkpoint(ctx)
	if err != nil {
		return err
	}
	cp, err := parseSigned(signed)
	if err != nil {
		return err
	}
	s.mu.Lock()
	next := s.indexed
	s.mu.Unlock()
	for next < cp.Size {
		entries, err := s.readEntries(ctx, next, cp.Size)
		if err != nil {
			return err
		}
		batch := make([]indexEntry, len(entries))
		for i, e := range entries {
			batch[i].entry = e
		}
		s.preverify(batch)
		if err := s.applyEntries(next, batch); err != nil {
			return err
		}
		next += uint64(len(entries))
	}
	return nil
}

// preverify checks, on all cores, the attestations in batch whose key is
// already in memory (so enrolled earlier in the log than the batch) and
// sets att for those whose signature verifies. apply checks the others one
// by one, in log order.
func (s *Service) preverify(batch []indexEntry) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(batch)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(batch) {
					return
				}
				e := batch[i].entry
				if IsRecord(e) {
					continue
				}
				env, err := coproc.ParseEnvelope(e)
				if err != nil {
					continue
				}
				st, err := env.Statement()
				if err != nil {
					continue
				}
				ks := s.key(st.Predicate.Coprocessor.KeyID)
				if ks == nil || coproc.Verify(env, ks.pub) != nil {
					continue
				}
				batch[i].att = summarize(st)
			}
		})
	}
	wg.Wait()
}

// applyEntries indexes entries first, first+1, … (first is the indexed
// count), updates the keys in memory, and then publishes the new count.
func (s *Service) applyEntries(first uint64, entries []indexEntry) error {
	changed, leaves, err := s.store.apply(first, entries)
	if err != nil {
		return err
	}
	if err := s.applyKeys(changed); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range leaves {
		delete(s.leaves, h)
	}
	for i := range entries {
		delete(s.added, first+uint64(i))
	}
	s.indexed = first + uint64(len(entries))
	close(s.indexedCh)
	s.indexedCh = make(chan struct{})
	return nil
}

// readEntries returns the entries from index first to the end of its entry
// bundle, in a tree of the given size.
func (s *Service) readEntries(ctx context.Context, first, size uint64) ([][]byte, error) {
	n := first / tlog.TileWidth
	start := n * tlog.TileWidth
	end := min(start+tlog.TileWidth, size)
	width := uint8(end - start) // 256 wraps to 0: a full bundle
	b, err := s.cfg.Engine.ReadEntryBundle(ctx, n, width)
	if err != nil {
		return nil, fmt.Errorf("reading entry bundle %d: %w", n, err)
	}
	entries, err := tlog.ParseBundle(b)
	if err != nil {
		return nil, fmt.Errorf("entry bundle %d: %w", n, err)
	}
	if uint64(len(entries)) != end-start {
		return nil, fmt.Errorf("entry bundle %d has %d entries, want %d", n, len(entries), end-start)
	}
	return entries[first-start:], nil
}

// waitIndexed waits until the first n entries are indexed.
func (s *Service) waitIndexed(ctx context.Context, n uint64) error {
	for {
		s.mu.Lock()
		have, ch := s.indexed, s.indexedCh
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Sync waits until the index covers every entry of the engine's latest
// checkpoint. Admission answers once the entry is durable in the log; the
// index (search, GET /v1/vms/…/bundle) follows within moments.
func (s *Service) Sync(ctx context.Context) error {
	signed, err := s.cfg.Engine.Checkpoint(ctx)
	if err != nil {
		return err
	}
	cp, err := parseSigned(signed)
	if err != nil {
		return err
	}
	select {
	case s.pull <- struct{}{}:
	default:
	}
	return s.waitIndexed(ctx, cp.Size)
}

// Close stops following the log and closes the index. Call it before
// closing the engine. It is idempotent.
func (s *Service) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		err = s.store.close()
	})
	return err
}

func (s *Service) key(id string) *keyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[id]
}

// Admit admits one attestation: body must be a canonical DSSE envelope.
// It returns the entry's index and whether it was already in the log (or
// being admitted by a concurrent identical request). Errors wrap the
// package's sentinels or the engine's.
func (s *Service) Admit(ctx context.Context, body []byte) (index uint64, duplicate bool, err error) {
	select {
	case s.sem <- struct{}{}:
	default:
		err = fmt.Errorf("%w (%d); retry later", ErrOverloaded, cap(s.sem))
		s.results.WithLabelValues(reasonOf(err)).Inc()
		return 0, false, err
	}
	start := time.Now()
	index, duplicate, err = s.admit(ctx, body)
	<-s.sem
	switch {
	case err != nil:
		s.results.WithLabelValues(reasonOf(err)).Inc()
	case duplicate:
		s.results.WithLabelValues("duplicate").Inc()
	default:
		s.results.WithLabelValues("admitted").Inc()
		s.duration.Observe(time.Since(start).Seconds())
	}
	return index, duplicate, err
}

func reasonOf(err error) string {
	_, reason := status(err)
	return reason
}

func (s *Service) admit(ctx context.Context, body []byte) (uint64, bool, error) {
	if len(body) > coproc.MaxEnvelopeSize {
		return 0, false, fmt.Errorf("%w: envelope of %d bytes, at most %d", ErrTooLarge, len(body), coproc.MaxEnvelopeSize)
	}
	env, err := coproc.ParseEnvelope(body)
	if err != nil {
		if errors.Is(err, coproc.ErrTooLarge) {
			return 0, false, fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		return 0, false, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	leaf := tlog.LeafHash(body)

	// Deduplicate: an entry already indexed, or one being admitted. The
	// index is read without holding mu (a read can wait for an index
	// write); the indexer commits a leaf before it drops the leaf's pending
	// entry and advances indexed under mu, so if indexed did not move while
	// we read, a leaf missing from both was in neither.
	var p *pending
	var busy bool
	for {
		s.mu.Lock()
		gen := s.indexed
		p, busy = s.leaves[leaf]
		s.mu.Unlock()
		if busy {
			break
		}
		idx, found, err := s.store.leaf(leaf)
		if err != nil {
			return 0, false, err
		}
		if found {
			return idx, true, nil
		}
		s.mu.Lock()
		p, busy = s.leaves[leaf]
		if !busy && s.indexed == gen {
			p = &pending{done: make(chan struct{})}
			s.leaves[leaf] = p // ours
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		if busy {
			break
		}
		// The indexer advanced meanwhile: read the index again.
	}
	if busy {
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-p.done:
		}
		if p.err != nil {
			return 0, false, p.err
		}
		return p.index, true, nil
	}

	idx, att, dup, err := s.admitNew(ctx, env, body, leaf)
	if err != nil || dup {
		// Refused, or admitted through another front-end (the index has
		// it now): no entry of ours for the indexer to settle.
		s.mu.Lock()
		if s.leaves[leaf] == p {
			delete(s.leaves, leaf)
		}
		s.mu.Unlock()
		p.index, p.err = idx, err
		close(p.done)
		if err != nil {
			return 0, false, err
		}
		return idx, true, nil
	}
	// The indexer drops the pending entry once the index has the leaf.
	s.handOff(idx, indexEntry{entry: body, att: att})
	p.index = idx
	close(p.done)
	return idx, false, nil
}

// admitNew checks an envelope that is not in this front-end's index and
// appends it. dup reports that it is already in the log at idx, appended
// through another front-end (only with Config.Claims).
func (s *Service) admitNew(ctx context.Context, env *coproc.Envelope, body []byte, leaf tlog.Hash) (idx uint64, att *Attestation, dup bool, err error) {
	st, err := env.Statement()
	if err != nil {
		return 0, nil, false, fmt.Errorf("%w: %w", ErrBadStatement, err)
	}
	keyID := env.Signatures[0].KeyID
	ks := s.key(keyID)
	if ks == nil {
		return 0, nil, false, fmt.Errorf("%w: %s", ErrUnknownKey, keyID)
	}
	ks.mu.Lock()
	revoked := ks.info.Revoked || ks.revoking
	ks.mu.Unlock()
	if revoked {
		return 0, nil, false, fmt.Errorf("%w: %s", ErrRevokedKey, keyID)
	}
	// Verification runs in the request's goroutine, without locks.
	if err := coproc.Verify(env, ks.pub); err != nil {
		return 0, nil, false, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	if err := checkEvidence(ks.ident, st); err != nil {
		return 0, nil, false, err
	}
	if err := s.checkAnchor(ctx, st.Anchor()); err != nil {
		return 0, nil, false, err
	}

	counter := st.Predicate.Coprocessor.Counter
	var prevFloor uint64
	var prevHolder [32]byte
	deadline := time.Now().Add(sharedWait)
	for {
		// Reserve the counter: from here until the append returns, no
		// other envelope of this key with a counter at or below it gets
		// in through this front-end.
		if err := s.reserve(ks, keyID, counter); err != nil {
			return 0, nil, false, err
		}
		if s.cfg.Claims == nil {
			break
		}
		// And through the others: claim it in the shared state.
		cctx, cancel := context.WithTimeout(ctx, sharedOpTimeout)
		ok, floor, holder, revoked, err := s.cfg.Claims.Claim(cctx, keyID, counter, leaf)
		cancel()
		if err == nil && ok {
			prevFloor, prevHolder = floor, holder
			break
		}
		s.unreserve(ks, counter, false)
		switch {
		case err != nil:
			return 0, nil, false, fmt.Errorf("%w: claiming counter %d of key %s: %w", ErrSharedState, counter, keyID, err)
		case revoked:
			return 0, nil, false, fmt.Errorf("%w: %s (revoked through another front-end)", ErrRevokedKey, keyID)
		}
		// Another front-end claimed this counter or a higher one. If it
		// was this very envelope and its append has finished, it is in
		// the engine's latest checkpoint (an append returns once a
		// published checkpoint covers it): bring the index up to that
		// checkpoint and look.
		idx, found, err := s.lookupPublished(ctx, leaf)
		if err != nil {
			return 0, nil, false, err
		}
		if found {
			return idx, nil, true, nil
		}
		if holder != [32]byte(leaf) || floor != counter {
			return 0, nil, false, fmt.Errorf("%w: counter %d, key %s is at %d (claimed through another front-end)", ErrReplayedCounter, counter, keyID, floor)
		}
		// This envelope is being appended through another front-end:
		// wait for its outcome (in the log, or released after a failed
		// append and then ours to claim).
		if time.Now().After(deadline) {
			return 0, nil, false, fmt.Errorf("%w: counter %d of key %s: another front-end claimed this envelope %v ago and has not appended it; it is lost with that front-end, sign a new attestation", ErrReplayedCounter, counter, keyID, sharedWait)
		}
		select {
		case <-ctx.Done():
			return 0, nil, false, ctx.Err()
		case <-time.After(sharedPoll):
		}
	}

	// The append is not cancelled with the request: once queued it may be
	// sequenced, and the reservation must settle with the real outcome.
	idx, err = s.cfg.Engine.Add(context.WithoutCancel(ctx), body)

	if s.cfg.Claims != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedOpTimeout)
		var serr error
		if err == nil {
			serr = s.cfg.Claims.Done(sctx, keyID)
		} else {
			serr = s.cfg.Claims.Release(sctx, keyID, counter, leaf, prevFloor, prevHolder)
		}
		cancel()
		if serr != nil {
			// The floor stays claimed (safe: nothing below it gets in) or
			// the pending count stays high (a revocation of the key then
			// waits sharedWait for it).
			s.log.Error("settling a shared counter claim", "keyid", keyID, "counter", counter, "appended", err == nil, "err", serr)
		}
	}
	s.unreserve(ks, counter, err == nil)
	if err != nil {
		return 0, nil, false, fmt.Errorf("appending: %w", err)
	}
	return idx, summarize(st), false, nil
}

// reserve adds counter to the key's reservations if the key is not revoked
// and counter is above its floor.
func (s *Service) reserve(ks *keyState, keyID string, counter uint64) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.info.Revoked || ks.revoking {
		return fmt.Errorf("%w: %s", ErrRevokedKey, keyID)
	}
	if floor := ks.floor(); counter <= floor {
		return fmt.Errorf("%w: counter %d, key %s is at %d", ErrReplayedCounter, counter, keyID, floor)
	}
	ks.reserved = append(ks.reserved, counter)
	return nil
}

// unreserve drops a reservation; admitted raises the key's counter to it.
func (s *Service) unreserve(ks *keyState, counter uint64, admitted bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if i := slices.Index(ks.reserved, counter); i >= 0 {
		ks.reserved = slices.Delete(ks.reserved, i, i+1)
	}
	if admitted {
		ks.info.Counter = max(ks.info.Counter, counter)
	}
	if len(ks.reserved) == 0 {
		ks.idle.Broadcast()
	}
}

// lookupPublished brings the index up to the engine's latest checkpoint
// and looks leaf up in it.
func (s *Service) lookupPublished(ctx context.Context, leaf tlog.Hash) (uint64, bool, error) {
	sctx, cancel := context.WithTimeout(ctx, sharedOpTimeout)
	defer cancel()
	if err := s.Sync(sctx); err != nil {
		return 0, false, fmt.Errorf("%w: reading the log up to its latest checkpoint: %w", ErrSharedState, err)
	}
	return s.store.leaf(leaf)
}

// checkToken reports whether header carries the admin bearer token.
func (s *Service) checkToken(header string) error {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || len(s.cfg.AdminToken) == 0 {
		return fmt.Errorf("%w: want Authorization: Bearer <admin token>", ErrUnauthorized)
	}
	got := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(got[:], s.token[:]) != 1 {
		return fmt.Errorf("%w: wrong admin token", ErrUnauthorized)
	}
	return nil
}

// Enrol records the enrolment of pub under name in the log and returns the
// key's record, once a published checkpoint includes the enrolment (or
// after enrolPublishWait without one). Enrolling a key that is already
// enrolled returns its record and created false, without a new entry; a
// revoked key cannot be enrolled again (ErrRevokedKey).
func (s *Service) Enrol(ctx context.Context, pub crypto.PublicKey, name string) (k Key, created bool, err error) {
	return s.EnrolTPM(ctx, pub, name, nil)
}

// EnrolTPM is Enrol with the co-processor's TPM identity (nil: none), which
// the record carries and every later statement's evidence must verify
// under. A key enrolled already with another identity (or none) is refused
// with ErrBadKey.
func (s *Service) EnrolTPM(ctx context.Context, pub crypto.PublicKey, name string, ident *evidence.Identity) (k Key, created bool, err error) {
	rec, err := NewEnrolment(pub, name, s.cfg.Now())
	if err != nil {
		return Key{}, false, err
	}
	if ident != nil {
		rec.TPMIdentity = ident.String()
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if ks := s.key(rec.KeyID); ks != nil {
		ks.mu.Lock()
		k = ks.info
		ks.mu.Unlock()
		if k.Revoked {
			return k, false, fmt.Errorf("%w: %s was revoked at index %d and cannot be enrolled again; use a new key", ErrRevokedKey, k.KeyID, *k.RevokedIndex)
		}
		if k.TPMIdentity != rec.TPMIdentity {
			return k, false, fmt.Errorf("%w: %s is enrolled at index %d with another TPM identity (or none); revoke it and enrol a new key", ErrBadKey, k.KeyID, k.EnrolledIndex)
		}
		return k, false, nil
	}
	entry := rec.Marshal()
	idx, err := s.cfg.Engine.Add(context.WithoutCancel(ctx), entry)
	if err != nil {
		return Key{}, false, fmt.Errorf("recording the enrolment: %w", err)
	}
	s.handOff(idx, indexEntry{entry: entry})
	if err := s.waitIndexed(ctx, idx+1); err != nil {
		return Key{}, false, err
	}
	ks := s.key(rec.KeyID)
	if ks == nil {
		return Key{}, false, fmt.Errorf("admission: enrolment at index %d not applied", idx)
	}
	// Answer once a published checkpoint includes the record, so that the
	// key's first attestation can anchor to a non-empty checkpoint (an
	// anchor of the empty tree is refused). The key is enrolled either way.
	pctx, cancel := context.WithTimeout(ctx, enrolPublishWait)
	_, perr := s.cfg.Publisher.Wait(pctx, idx+1)
	cancel()
	if perr != nil && ctx.Err() == nil {
		s.log.Warn("co-processor enrolled, but no published checkpoint includes the enrolment yet (is the witness quorum up?)", "keyid", rec.KeyID, "index", idx, "waited", enrolPublishWait)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	s.log.Info("co-processor enrolled", "keyid", rec.KeyID, "name", name, "index", idx)
	return ks.info, true, nil
}

// Revoke records the revocation of keyID in the log and returns the key's
// record. New admissions with the key are refused at once; admissions
// already past their checks are let finish before the revocation is
// appended, so no attestation by the key follows its revocation in the log.
// Revoking a revoked key returns its record and changed false.
func (s *Service) Revoke(ctx context.Context, keyID string) (k Key, changed bool, err error) {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	ks := s.key(keyID)
	if ks == nil {
		return Key{}, false, fmt.Errorf("co-processor key %s is not enrolled: %w", keyID, engine.ErrNotFound)
	}
	ks.mu.Lock()
	if ks.info.Revoked {
		k = ks.info
		ks.mu.Unlock()
		return k, false, nil
	}
	ks.revoking = true
	ks.mu.Unlock()
	if s.cfg.Claims != nil {
		// Refuse the key at every front-end from now on. The mark stays
		// if the append below fails: the key stays refused everywhere
		// until the revocation is retried.
		if _, err := s.sharedRevoke(ctx, keyID); err != nil {
			ks.mu.Lock()
			ks.revoking = false
			ks.mu.Unlock()
			return Key{}, false, fmt.Errorf("%w: marking key %s revoked: %w", ErrSharedState, keyID, err)
		}
	}
	ks.mu.Lock()
	for len(ks.reserved) > 0 {
		ks.idle.Wait()
	}
	ks.mu.Unlock()
	if s.cfg.Claims != nil {
		// Let the appends of the key that other front-ends claimed before
		// the mark finish, so that none follows the revocation in the log.
		deadline := time.Now().Add(sharedWait)
		for {
			pending, err := s.sharedRevoke(ctx, keyID)
			if err != nil {
				ks.mu.Lock()
				ks.revoking = false
				ks.mu.Unlock()
				return Key{}, false, fmt.Errorf("%w: marking key %s revoked: %w", ErrSharedState, keyID, err)
			}
			if pending == 0 {
				break
			}
			if time.Now().After(deadline) {
				s.log.Warn("revoking with appends of the key still pending at other front-ends (dead front-ends?)", "keyid", keyID, "pending", pending, "waited", sharedWait)
				break
			}
			select {
			case <-ctx.Done():
				ks.mu.Lock()
				ks.revoking = false
				ks.mu.Unlock()
				return Key{}, false, ctx.Err()
			case <-time.After(sharedPoll):
			}
		}
	}
	entry := NewRevocation(keyID, s.cfg.Now()).Marshal()
	idx, err := s.cfg.Engine.Add(context.WithoutCancel(ctx), entry)
	if err == nil {
		s.handOff(idx, indexEntry{entry: entry})
	}
	if err != nil {
		ks.mu.Lock()
		ks.revoking = false
		ks.mu.Unlock()
		return Key{}, false, fmt.Errorf("recording the revocation: %w", err)
	}
	if err := s.waitIndexed(ctx, idx+1); err != nil {
		return Key{}, false, err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	s.log.Info("co-processor revoked", "keyid", keyID, "index", idx)
	return ks.info, true, nil
}

// sharedRevoke marks keyID revoked in the shared state and returns how
// many of its appends are still pending there.
func (s *Service) sharedRevoke(ctx context.Context, keyID string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, sharedOpTimeout)
	defer cancel()
	return s.cfg.Claims.Revoke(ctx, keyID)
}

// Keys returns the enrolled keys (revoked ones included) in enrolment order.
func (s *Service) Keys() []Key {
	s.mu.Lock()
	states := make([]*keyState, 0, len(s.keys))
	for _, ks := range s.keys {
		states = append(states, ks)
	}
	s.mu.Unlock()
	out := make([]Key, 0, len(states))
	for _, ks := range states {
		ks.mu.Lock()
		out = append(out, ks.info)
		ks.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Key) int { return cmp.Compare(a.EnrolledIndex, b.EnrolledIndex) })
	return out
}

// Bundle returns the offline bundle of the entry at index, proved against
// the latest published checkpoint, or an error wrapping engine.ErrNotFound
// if no published checkpoint includes it yet.
func (s *Service) Bundle(ctx context.Context, index uint64) ([]byte, error) {
	signed, err := s.cfg.Publisher.Latest(ctx)
	if err != nil {
		return nil, err
	}
	return s.bundleAt(ctx, index, nil, signed)
}

// bundleAt builds the bundle of index against the published checkpoint
// signed.
//
// entry, if not nil, is the entry at index, which the caller knows (an
// admission: the log's entry is the envelope as posted); nil reads it from
// the log.
func (s *Service) bundleAt(ctx context.Context, index uint64, entry, signed []byte) ([]byte, error) {
	cp, err := parseSigned(signed)
	if err != nil {
		return nil, fmt.Errorf("published checkpoint: %w", err)
	}
	if index >= cp.Size {
		return nil, fmt.Errorf("entry %d is not in the published checkpoint of size %d (yet): %w", index, cp.Size, engine.ErrNotFound)
	}
	if entry == nil {
		entries, err := s.readEntries(ctx, index, cp.Size)
		if err != nil {
			return nil, err
		}
		entry = entries[0]
	}
	proof, err := tlog.InclusionProof(ctx, tlog.NewTileHashReader(cp.Size, s.cfg.Engine), index, cp.Size)
	if err != nil {
		return nil, err
	}
	hashes := make([]tlog.Hash, len(proof))
	for i, h := range proof {
		hashes[i] = tlog.Hash(h)
	}
	b := &bundle.Bundle{Entry: entry, Proof: tlog.Proof{Index: index, Hashes: hashes, Checkpoint: signed}}
	return b.Marshal()
}

// publishedSize returns the size of the latest published checkpoint (0
// before the first).
func (s *Service) publishedSize(ctx context.Context) (uint64, []byte, error) {
	signed, err := s.cfg.Publisher.Latest(ctx)
	if errors.Is(err, engine.ErrNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	cp, err := parseSigned(signed)
	if err != nil {
		return 0, nil, err
	}
	return cp.Size, signed, nil
}
