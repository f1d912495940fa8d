package client

import (
	"context"
	"errors"
	"fmt"
	"math/bits"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/tlog"
)

// CheckFreshness names the freshness check: the statement's freshness
// anchor is a checkpoint of the bundle's log made before the entry.
const CheckFreshness = "freshness"

// The freshness check's failures. Each is wrapped together with
// ErrFreshness.
var (
	ErrFreshness = errors.New("freshness anchor is not a checkpoint of this log made before the entry")
	// ErrAnchorOrigin: the anchor names another log than the checkpoint.
	ErrAnchorOrigin = errors.New("anchor names another log")
	// ErrAnchorSize: the anchor is larger than the log was when the entry
	// was appended (its size is more than the entry's index).
	ErrAnchorSize = errors.New("anchor is larger than the log before the entry")
	// ErrAnchorEmpty: the anchor is the empty tree, which anybody can
	// write down in advance, so it proves nothing about when the
	// statement was made.
	ErrAnchorEmpty = errors.New("anchor is the empty tree")
	// ErrAnchorInconsistent: the anchor's root is not the root of the
	// checkpoint's tree at the anchor's size.
	ErrAnchorInconsistent = errors.New("anchor is not consistent with the checkpoint")
)

// errAnchorNotCompared: the anchor's origin and size are right, but the
// inclusion proof did not verify, so there is no tree to compare its root
// with; the check is reported as not run.
var errAnchorNotCompared = errors.New("the inclusion proof did not verify, so the anchor's root is not compared with the checkpoint")

// checkAnchor checks the freshness anchor a of an entry at index, included
// under checkpoint cp. proof is the entry's inclusion proof, already verified
// against cp when included is true. The anchor's root is compared with the
// checkpoint's tree at the anchor's size: offline when the inclusion proof
// holds that root (the anchor's size is the index with low bits cleared, as
// when the entry directly follows its anchor), otherwise through prover when
// there is one.
func checkAnchor(ctx context.Context, a coproc.Anchor, index uint64, cp tlog.Checkpoint, proof [][]byte, included bool, prover ConsistencyProver) (string, error) {
	fail := func(sentinel error, format string, args ...any) error {
		return fmt.Errorf("%w: %w: %s", ErrFreshness, sentinel, fmt.Sprintf(format, args...))
	}
	switch {
	case a.Origin != cp.Origin:
		return "", fail(ErrAnchorOrigin, "anchor of log %q, the entry is in %q", a.Origin, cp.Origin)
	case a.Size == 0:
		return "", fail(ErrAnchorEmpty, "anchor of the empty tree (size 0): anybody can write it in advance")
	case a.Size > index:
		return "", fail(ErrAnchorSize, "anchor of size %d, but the entry is at index %d: the log held %d entries before it", a.Size, index, index)
	case !included:
		return "", errAnchorNotCompared
	}
	anchor := tlog.Hash(a.Root)
	if root, ok := rootFromInclusion(index, cp.Size, proof, a.Size); ok {
		if root != anchor {
			return "", fail(ErrAnchorInconsistent, "anchor of size %d has root %x, the checkpoint's tree at that size has %x (proven by the inclusion proof)", a.Size, anchor[:8], root[:8])
		}
		return fmt.Sprintf("anchor %s size %d is consistent with the checkpoint (proven by the inclusion proof)", a.Origin, a.Size), nil
	}
	if prover == nil {
		return fmt.Sprintf("anchor %s size %d is before the entry; its consistency with the checkpoint is not proven offline (give --log URL to prove it)", a.Origin, a.Size), nil
	}
	p, err := prover.ConsistencyProof(ctx, cp.Origin, a.Size, cp.Size)
	if err != nil {
		return "", fmt.Errorf("%w: %w: fetching the consistency proof from the anchor's size %d to %d: %w", ErrFreshness, ErrProofUnavailable, a.Size, cp.Size, err)
	}
	if err := tlog.VerifyConsistency(a.Size, cp.Size, p, anchor, cp.Root); err != nil {
		return "", fail(ErrAnchorInconsistent, "anchor of size %d: no valid consistency proof to the checkpoint's size %d: %v", a.Size, cp.Size, err)
	}
	return fmt.Sprintf("anchor %s size %d is consistent with the checkpoint (proven by the log's consistency proof)", a.Origin, a.Size), nil
}

// rootFromInclusion returns the root of the tree of size s, taken from the
// inclusion proof of leaf index in the tree of size size, when the proof
// holds it: when s > 0 is index with its low bits cleared. The proof's left
// siblings are the perfect subtrees that make up [0, index), one per set bit
// of index (RFC 6962 §2.1), and the tree of such an s is made of the largest
// of them. The proof must already be verified.
func rootFromInclusion(index, size uint64, proof [][]byte, s uint64) (tlog.Hash, bool) {
	if s == 0 || s > index || index >= size || index-s >= s&-s {
		return tlog.Hash{}, false
	}
	// The inner proof (levels below inner) has a sibling at every level, a
	// left one where index has a 1 bit; the border part above it holds
	// only left siblings, one per 1 bit of index, lowest first.
	inner := bits.Len64(index ^ (size - 1))
	if len(proof) != inner+bits.OnesCount64(index>>inner) {
		return tlog.Hash{}, false
	}
	var left [64][]byte
	next := inner
	for level := range 64 {
		if index>>level&1 == 0 {
			continue
		}
		if level < inner {
			left[level] = proof[level]
		} else {
			left[level] = proof[next]
			next++
		}
	}
	// Fold the subtrees of s's 1 bits, smallest first.
	var root []byte
	for level := range 64 {
		if s>>level&1 == 0 {
			continue
		}
		if root == nil {
			root = left[level]
		} else {
			root = rfc6962.DefaultHasher.HashChildren(left[level], root)
		}
	}
	if len(root) != len(tlog.Hash{}) {
		return tlog.Hash{}, false
	}
	return tlog.Hash(root), true
}
