package measure

import (
	"crypto/sha256"

	"github.com/transparency-dev/merkle/rfc6962"
)

var hasher = rfc6962.DefaultHasher

// treeRoot is MTH(D[n]) of RFC 6962 §2.1 over leaf hashes: for n > 1 the
// left subtree holds the largest power of two k < n leaves and the root is
// SHA-256(0x01 ‖ MTH(D[0:k]) ‖ MTH(D[k:n])). The empty tree hashes to
// SHA-256("").
func treeRoot(leaves []Digest) Digest {
	switch n := len(leaves); n {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	default:
		k := splitPoint(n)
		l, r := treeRoot(leaves[:k]), treeRoot(leaves[k:])
		return hashChildren(l, r)
	}
}

// hashChildren is SHA-256(0x01 ‖ l ‖ r), as rfc6962.HashChildren, without
// allocating.
func hashChildren(l, r Digest) Digest {
	var in [1 + 2*len(Digest{})]byte
	in[0] = 1
	copy(in[1:], l[:])
	copy(in[1+len(l):], r[:])
	return sha256.Sum256(in[:])
}

// inclusionPath is PATH(m, D[n]) of RFC 6962 §2.1.1: the sibling hashes
// from the leaf's sibling up to the root's children.
func inclusionPath(m int, leaves []Digest) []Digest {
	n := len(leaves)
	if n <= 1 {
		return nil
	}
	k := splitPoint(n)
	if m < k {
		return append(inclusionPath(m, leaves[:k]), treeRoot(leaves[k:]))
	}
	return append(inclusionPath(m-k, leaves[k:]), treeRoot(leaves[:k]))
}

// splitPoint is the largest power of two smaller than n (n > 1).
func splitPoint(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}
