package witness

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Kinds of fork evidence.
const (
	// KindSameSize: two log-signed checkpoints with the same size and
	// different roots.
	KindSameSize = "same-size"
	// KindInconsistent: two log-signed checkpoints of sizes m < n, the
	// size-m root derived from the size-n tree, and the consistency proof
	// from that derived root to the size-n root; the derived root differs
	// from the size-m checkpoint's root.
	KindInconsistent = "inconsistent"
)

// Evidence proves that a log signed two checkpoints that cannot both be
// true. Anyone with the log's verifier key can check it offline with
// [VerifyEvidence]; no standard format exists, this is ours (docs/formats.md,
// "Fork evidence"). It is served as JSON at GET /v1/evidence.
type Evidence struct {
	Kind   string `json:"kind"`
	Origin string `json:"origin"`
	// First and Second are the two signed checkpoint notes, verbatim. For
	// KindInconsistent, First is the smaller tree.
	First  string `json:"first"`
	Second string `json:"second"`
	// DerivedRoot is the size-m root computed from the size-n tree
	// (KindInconsistent only).
	DerivedRoot []byte `json:"derived_root,omitempty"`
	// Proof is the RFC 6962 consistency proof from (m, DerivedRoot) to
	// Second's root (KindInconsistent only).
	Proof [][]byte `json:"proof,omitempty"`
	// ObservedAt and Source say when and where the witness saw it; they are
	// informational and not part of the proof.
	ObservedAt time.Time `json:"observed_at"`
	Source     string    `json:"source,omitempty"`
}

// ErrNotEvidence is wrapped by every VerifyEvidence failure.
var ErrNotEvidence = errors.New("not valid fork evidence")

// VerifyEvidence checks fork evidence offline: both checkpoints carry a valid
// signature by logVerifier (whose key name is the origin), and they
// contradict each other as e.Kind says. It returns nil only if the log
// provably signed two incompatible checkpoints.
func VerifyEvidence(e *Evidence, logVerifier note.Verifier) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrNotEvidence, fmt.Sprintf(format, args...))
	}
	if e.Origin != logVerifier.Name() {
		return fail("origin %q, log key %q", e.Origin, logVerifier.Name())
	}
	a, _, _, err := log.ParseCheckpoint([]byte(e.First), e.Origin, logVerifier)
	if err != nil {
		return fail("first checkpoint: %v", err)
	}
	b, _, _, err := log.ParseCheckpoint([]byte(e.Second), e.Origin, logVerifier)
	if err != nil {
		return fail("second checkpoint: %v", err)
	}
	switch e.Kind {
	case KindSameSize:
		if a.Size != b.Size {
			return fail("sizes %d and %d differ", a.Size, b.Size)
		}
		if bytes.Equal(a.Hash, b.Hash) {
			return fail("roots are equal")
		}
		return nil
	case KindInconsistent:
		if a.Size >= b.Size {
			return fail("first size %d is not smaller than second size %d", a.Size, b.Size)
		}
		if len(e.DerivedRoot) != 32 {
			return fail("derived root is %d bytes", len(e.DerivedRoot))
		}
		if a.Size == 0 {
			if len(e.Proof) != 0 || !bytes.Equal(e.DerivedRoot, emptyRoot[:]) {
				return fail("size-0 derived root must be SHA-256(\"\") with an empty proof")
			}
		} else if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, e.Proof, e.DerivedRoot, b.Hash); err != nil {
			return fail("consistency proof from the derived root: %v", err)
		}
		if bytes.Equal(e.DerivedRoot, a.Hash) {
			return fail("derived root equals the first checkpoint's root")
		}
		return nil
	default:
		return fail("unknown kind %q", e.Kind)
	}
}
