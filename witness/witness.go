// Package witness is a C2SP tlog-witness: it cosigns a transparency log's
// checkpoints only if the log never rewrote its history, remembers the last
// checkpoint it cosigned per log, compares notes with other witnesses, and
// keeps evidence when a log is caught signing two incompatible trees.
//
// # The protocol (https://c2sp.org/tlog-witness)
//
// A log sends each new checkpoint with POST /add-checkpoint:
//
//	old 5
//	rFr1LssMpdR9f17LJ5cpp7OGhjgNPtqS8bsZok0qOf8=
//	H+n58mEFCHxpMBZA+XEBqTfOXrbvO5ai2OcliAzALlA=
//	fGwZmzcPx665V5Us8Agwd7biI/lEUgKu60AVBoaWYMU=
//	I6vsWkJlEMrRhn/X7DlllWJI/Q5WMTB/VtneLkJlbcY=
//
//	example.com/ledger
//	8
//	vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=
//
//	— example.com/ledger 7bPh6nL75+eDWpg1ghEblRgVYRCAJl0vfAhSBsO82p2JITzWz8cjlS0K9BCRfQR1fhuQs9nrOph85AgZekJyKoHcCw4=
//
// "old" is the size of the checkpoint the log believes this witness cosigned
// last, the hashes are the RFC 6962 consistency proof from that size to the
// new one, then comes the signed checkpoint (C2SP tlog-checkpoint,
// signed-note). The witness answers:
//
//	200  cosignature/v1 line(s): it checked everything and persisted the new state
//	400  unparsable body (old 05, trailing bytes, > 63 proof lines, a CR, ...) or old > size
//	403  no signature by a key trusted for the origin, or a trusted key's signature fails
//	404  unknown origin
//	409  old differs from its stored size, even on first contact (stored size 0);
//	     body "<size>\n", Content-Type text/x.tlog.size, so the log can retry
//	422  the proof fails; a non-empty proof with old 0; a size-0 checkpoint
//	     whose root is not SHA-256(""); same size as stored, different root
//	413  body larger than MaxBodySize (not in the spec's table; an HTTP bound)
//	429  the origin's request budget is spent (Retry-After says when to return);
//	     only requests that advance the stored state spend it (see below)
//	503  the disk is nearly full (Retry-After), or the storage failed: the data
//	     directory was removed or replaced, or a write failed (see [Store]);
//	     /healthz then answers 503 with the reason too
//
// The check "old equals the stored size" and the update of the stored state
// are one atomic compare-and-swap in [Store], synced to disk before the reply,
// so racing requests can never roll the state back and a crash loses nothing
// that was cosigned. A checkpoint with a valid log signature that fails the
// consistency checks is never cosigned; it is kept (see [Store.AddRejected]),
// and a same-size contradiction becomes fork [Evidence].
//
// # Replays and the request budget
//
// A log's checkpoints are public, so anyone can send them again. A request
// for exactly the checkpoint cosigned last (same text, old equal to its
// size, no proof) is answered with the stored cosignature line, without a
// write; 409s and failed proofs are decided from the stored state too. None
// of these spends the origin's budget ([Budget]): only a log-signed
// checkpoint larger than the stored one, with old equal to the stored size
// and a valid proof, does. Only the log can make one, and it advances the
// state once: a replay flood cannot starve the log's new checkpoints.
//
// # Cosignatures (https://c2sp.org/tlog-cosignature)
//
// A cosignature/v1 (Ed25519, key type 0x04) line signs "cosignature/v1\n",
// "time <unix seconds>\n" and the checkpoint text; see [Cosigner].
//
// # Other endpoints
//
//	GET /<lowercase hex SHA-256(origin)>/checkpoint  latest cosigned checkpoint (404 if none)
//	GET /v1/evidence                                 fork evidence, JSON array
//	GET /metrics
//	GET /healthz                                     "ok", or 503 and the reason once the storage failed
//
// # Gossip
//
// A [Gossiper] periodically fetches the log's checkpoint and the peers'
// monitoring endpoints, feeds this witness newer checkpoints with a
// consistency proof built from the log's tiles, and records fork evidence
// when two log-signed checkpoints cannot both be true.
//
// # The log's side
//
// [Client] speaks the protocol to one witness; [Collector] sends a checkpoint
// to all the witnesses of a policy (package policy) in parallel, follows 409
// answers, and returns the checkpoint with cosignatures once the policy's
// quorum holds.
package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmledger/vmledger/witness/policy"
)

// Config configures a Witness.
type Config struct {
	// Logs are the logs this witness witnesses; each log's origin is its key
	// name.
	Logs []*policy.Log
	// Cosigner signs cosignatures.
	Cosigner *Cosigner
	// Store holds the state; the Witness does not close it.
	Store *Store
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Budget is the per-origin request budget; the zero value is unlimited.
	Budget Budget
	// Now is the clock of the request budget; nil means time.Now.
	Now func() time.Time
}

// Witness is the witness's logic; [Witness.Handler] is its HTTP face.
type Witness struct {
	logs     map[string]*policy.Log
	cosigner *Cosigner
	store    *Store
	logger   *slog.Logger
	byID     map[string]string // OriginID(origin) → origin
	// addLimiter holds the per-origin budgets of add-checkpoint, and
	// readLimiter those of the monitoring endpoint per origin and client,
	// kept apart so that readers cannot starve the log, nor one reader
	// the others.
	addLimiter  *limiter
	readLimiter *limiter

	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	replays   prometheus.Counter
	evidence  prometheus.Counter
	rejected  prometheus.Counter
	gossipErr prometheus.Counter
}

// New returns a witness.
func New(cfg Config) (*Witness, error) {
	if cfg.Cosigner == nil || cfg.Store == nil {
		return nil, errors.New("witness: Cosigner and Store are required")
	}
	w := &Witness{
		logs:        map[string]*policy.Log{},
		cosigner:    cfg.Cosigner,
		store:       cfg.Store,
		logger:      cfg.Logger,
		byID:        map[string]string{},
		addLimiter:  newLimiter(cfg.Budget, cfg.Now),
		readLimiter: newLimiter(cfg.Budget, cfg.Now),
		registry:    prometheus.NewRegistry(),
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	for _, l := range cfg.Logs {
		if _, dup := w.logs[l.Origin]; dup {
			return nil, fmt.Errorf("witness: log %q listed twice", l.Origin)
		}
		w.logs[l.Origin] = l
		w.byID[OriginID(l.Origin)] = l.Origin
	}
	w.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "witness_add_checkpoint_requests_total",
		Help: "add-checkpoint requests by HTTP status code.",
	}, []string{"code"})
	w.replays = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "witness_add_checkpoint_replays_total",
		Help: "add-checkpoint requests for the checkpoint cosigned last, answered with the stored cosignature.",
	})
	w.evidence = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "witness_fork_evidence_total",
		Help: "Fork evidence bundles recorded (each distinct bundle once).",
	})
	w.rejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "witness_rejected_checkpoints_total",
		Help: "Log-signed checkpoints refused as inconsistent with the witness's state.",
	})
	w.gossipErr = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "witness_gossip_errors_total",
		Help: "Failed gossip fetches (log or peer unreachable, bad answers).",
	})
	w.registry.MustRegister(w.requests, w.replays, w.evidence, w.rejected, w.gossipErr)
	return w, nil
}

// Registry returns the witness's Prometheus registry.
func (w *Witness) Registry() *prometheus.Registry { return w.registry }

// VKey returns the witness's cosignature/v1 verifier key.
func (w *Witness) VKey() string { return w.cosigner.VKey() }

// AddCheckpoint processes an add-checkpoint request body and returns the
// cosignature line(s) to send back. Its errors are the protocol's decisions:
// *ParseError, ErrUnknownOrigin, ErrNoTrustedSignature, *RateLimitError,
// ErrOldTooLarge, *ConflictError, and errors wrapping ErrUnprocessable,
// ErrStorageFull or ErrStorageFailed; any other error is an internal
// failure.
func (w *Witness) AddCheckpoint(ctx context.Context, body []byte) ([]byte, error) {
	req, err := ParseAddCheckpoint(body)
	if err != nil {
		return nil, err
	}
	l := w.logs[req.Parsed.Origin]
	if l == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownOrigin, req.Parsed.Origin)
	}
	logSigned, err := logSignedNote(l, req.Checkpoint)
	if err != nil {
		return nil, err
	}
	// Anyone can replay the log's public checkpoints, so what the stored
	// state decides without a write costs no budget: a replay of the
	// checkpoint cosigned last is answered with the stored cosignature,
	// and a 409 or a failed proof is answered without touching it. Only a
	// request that advances the state (old is the stored size, a larger
	// checkpoint, a valid proof) spends the origin's budget; only the log
	// can make those, and each advances the state once.
	cur, err := w.store.Latest(ctx, req.Parsed.Origin)
	if err != nil {
		return nil, err
	}
	if line := w.replayed(cur, req); line != nil {
		w.replays.Inc()
		return line, nil
	}
	if advances(cur, req) {
		if err := w.addLimiter.allow(req.Parsed.Origin, ""); err != nil {
			return nil, err
		}
	}
	return w.addVerified(ctx, l, req, logSigned)
}

// replayed returns the cosignature line stored with cur if req asks again
// for exactly the checkpoint cur holds (same text, old equal to its size,
// no proof), or nil.
func (w *Witness) replayed(cur *State, req *AddCheckpointRequest) []byte {
	if cur == nil || req.Old != cur.Size || len(req.Proof) != 0 || req.Parsed.Size != cur.Size ||
		!bytes.HasPrefix(cur.Note, []byte(req.Parsed.Text+"\n")) {
		return nil
	}
	_, sigs, _ := bytes.Cut(cur.Note, []byte("\n\n"))
	prefix := []byte("— " + w.cosigner.Name() + " ")
	for line := range bytes.Lines(sigs) {
		b64, ok := bytes.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(string(bytes.TrimSuffix(b64, []byte("\n"))))
		if err == nil && len(sig) > 4 && binary.BigEndian.Uint32(sig) == w.cosigner.KeyHash() {
			return bytes.Clone(line)
		}
	}
	return nil
}

// advances reports whether req would advance the state cur: old is the
// stored size, the checkpoint is larger, and the consistency proof holds.
func advances(cur *State, req *AddCheckpointRequest) bool {
	if cur == nil {
		return req.Old == 0 && len(req.Proof) == 0 && req.Parsed.Size > 0
	}
	return req.Old == cur.Size && req.Parsed.Size > cur.Size &&
		proof.VerifyConsistency(rfc6962.DefaultHasher, cur.Size, req.Parsed.Size, req.Proof, cur.Root[:], req.Parsed.Root[:]) == nil
}

// addVerified continues AddCheckpoint once the log's signature is verified
// (logSigned is the note reduced to the log's signatures). Gossip enters
// here too.
func (w *Witness) addVerified(ctx context.Context, l *policy.Log, req *AddCheckpointRequest, logSigned []byte) ([]byte, error) {
	cp := req.Parsed
	if req.Old > cp.Size {
		return nil, fmt.Errorf("%w: old %d, size %d", ErrOldTooLarge, req.Old, cp.Size)
	}
	var line []byte
	var contradicted *State
	err := w.store.Update(ctx, cp.Origin, func(cur *State) (*State, error) {
		var curSize uint64
		if cur != nil {
			curSize = cur.Size
		}
		contradicted = nil // fn may run again after a conflicting commit
		if cur != nil && cp.Size == cur.Size && cp.Root != cur.Root {
			// A fork in hand, whatever old says: evidence even when the
			// answer is 409.
			contradicted = cur
		}
		if req.Old != curSize {
			return nil, &ConflictError{Size: curSize}
		}
		if req.Old == 0 && len(req.Proof) > 0 {
			return nil, ErrProofWithOldZero
		}
		if cp.Size == 0 && cp.Root != emptyRoot {
			return nil, ErrBadEmptyRoot
		}
		if contradicted != nil {
			return nil, ErrRootMismatch
		}
		if cur != nil {
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, cur.Size, cp.Size, req.Proof, cur.Root[:], cp.Root[:]); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadProof, err)
			}
		}
		var err error
		if line, err = w.cosigner.cosignatureLine(cp.Text); err != nil {
			return nil, err
		}
		return &State{Size: cp.Size, Root: cp.Root, Note: append(bytes.Clone(logSigned), line...)}, nil
	})
	if errors.Is(err, ErrUnprocessable) {
		w.refused(ctx, l, logSigned, err)
	}
	if contradicted != nil {
		w.recordEvidence(ctx, &Evidence{
			Kind:   KindSameSize,
			Origin: l.Origin,
			First:  string(contradicted.Note),
			Second: string(logSigned),
			Source: "add-checkpoint",
		})
	}
	if err != nil {
		return nil, err
	}
	w.logger.DebugContext(ctx, "cosigned", "origin", cp.Origin, "size", cp.Size)
	return line, nil
}

// refused keeps a log-signed checkpoint that failed the consistency checks.
func (w *Witness) refused(ctx context.Context, l *policy.Log, logSigned []byte, why error) {
	w.rejected.Inc()
	added, err := w.store.AddRejected(ctx, l.Origin, logSigned)
	if err != nil {
		w.logger.ErrorContext(ctx, "storing rejected checkpoint", "origin", l.Origin, "err", err)
	}
	if added {
		w.logger.WarnContext(ctx, "refused log-signed checkpoint", "origin", l.Origin, "reason", why.Error())
	}
}

// recordEvidence stores, counts and loudly logs new fork evidence.
func (w *Witness) recordEvidence(ctx context.Context, e *Evidence) {
	if e.ObservedAt.IsZero() {
		e.ObservedAt = time.Now().UTC()
	}
	if err := VerifyEvidence(e, w.logs[e.Origin].Verifier); err != nil {
		w.logger.ErrorContext(ctx, "BUG: built fork evidence that does not verify", "origin", e.Origin, "err", err)
		return
	}
	added, err := w.store.AddEvidence(ctx, e)
	if err != nil {
		w.logger.ErrorContext(ctx, "storing fork evidence", "origin", e.Origin, "err", err)
		return
	}
	if !added {
		return
	}
	w.evidence.Inc()
	w.logger.ErrorContext(ctx, "LOG FORK DETECTED: the log signed two incompatible checkpoints",
		"origin", e.Origin, "kind", e.Kind, "source", e.Source)
}

// logSignedNote verifies the log's signature on signed and returns the note
// reduced to its text and the log's valid signature lines. Any failure is
// ErrNoTrustedSignature: unknown signatures are ignored, but a note whose
// trusted signature fails, or that has none, is refused.
func logSignedNote(l *policy.Log, signed []byte) ([]byte, error) {
	_, _, n, err := flog.ParseCheckpoint(signed, l.Origin, l.Verifier)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoTrustedSignature, err)
	}
	if err := policy.CheckEverySignature(signed, note.VerifierList(l.Verifier)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoTrustedSignature, err)
	}
	out := []byte(n.Text + "\n")
	for _, s := range n.Sigs {
		if s.Name == l.Verifier.Name() && s.Hash == l.Verifier.KeyHash() {
			out = fmt.Appendf(out, "— %s %s\n", s.Name, s.Base64)
		}
	}
	return out, nil
}

// Latest returns the latest checkpoint this witness cosigned for origin
// (with its cosignature), or nil if none.
func (w *Witness) Latest(ctx context.Context, origin string) ([]byte, error) {
	st, err := w.store.Latest(ctx, origin)
	if err != nil || st == nil {
		return nil, err
	}
	return st.Note, nil
}

// Evidence returns the fork evidence recorded so far.
func (w *Witness) Evidence(ctx context.Context) ([]*Evidence, error) {
	return w.store.Evidence(ctx)
}

var _ note.Signer = (*Cosigner)(nil)
