package tlog

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
)

// ProofHeader is the first line of a C2SP tlog-proof.
const ProofHeader = "c2sp.org/tlog-proof@v1"

// Proof is an offline-verifiable proof that an entry is in the log
// (c2sp.org/tlog-proof): the entry's index, its inclusion proof in the tree
// of the checkpoint, and the signed checkpoint with its cosignatures. The
// entry itself is not part of the proof; the verifier hashes it.
type Proof struct {
	// Extra is optional application data; nil means absent. It is never
	// empty when present.
	Extra      []byte
	Index      uint64
	Hashes     []Hash
	Checkpoint []byte // the signed note, verbatim
}

// Marshal encodes the proof in the tlog-proof text form.
func (p Proof) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(ProofHeader + "\n")
	if p.Extra != nil {
		fmt.Fprintf(&b, "extra %s\n", base64.StdEncoding.EncodeToString(p.Extra))
	}
	fmt.Fprintf(&b, "index %d\n", p.Index)
	for _, h := range p.Hashes {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// HashSlices returns the proof's hashes as byte slices, the form the
// merkle verifiers take.
func (p Proof) HashSlices() [][]byte {
	out := make([][]byte, len(p.Hashes))
	for i := range p.Hashes {
		out[i] = p.Hashes[i][:]
	}
	return out
}

// ParseProof parses a tlog-proof strictly: the header line, an optional
// non-empty extra line, the index in canonical decimal, at most 63 canonical
// base64 hashes, an empty line, and a non-empty checkpoint (not verified
// here: see [OpenCheckpoint]). Every error wraps [ErrMalformed].
func ParseProof(b []byte) (Proof, error) {
	var p Proof
	line := func() (string, bool) {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return "", false
		}
		l := string(b[:i])
		b = b[i+1:]
		return l, true
	}
	l, ok := line()
	if !ok || l != ProofHeader {
		return p, fmt.Errorf("tlog-proof: %w: first line is not %q", ErrMalformed, ProofHeader)
	}
	l, ok = line()
	if ok {
		if x, found := strings.CutPrefix(l, "extra "); found {
			e, err := base64.StdEncoding.Strict().DecodeString(x)
			if err != nil || len(e) == 0 || base64.StdEncoding.EncodeToString(e) != x {
				return p, fmt.Errorf("tlog-proof: %w: extra is not canonical non-empty base64", ErrMalformed)
			}
			p.Extra = e
			l, ok = line()
		}
	}
	x, found := strings.CutPrefix(l, "index ")
	if !ok || !found {
		return p, fmt.Errorf("tlog-proof: %w: missing index line", ErrMalformed)
	}
	index, err := ParseDecimal(x)
	if err != nil {
		return p, fmt.Errorf("tlog-proof: index: %w", err)
	}
	p.Index = index
	for {
		l, ok = line()
		if !ok {
			return p, fmt.Errorf("tlog-proof: %w: missing empty line before the checkpoint", ErrMalformed)
		}
		if l == "" {
			break
		}
		if len(p.Hashes) == 63 {
			return p, fmt.Errorf("tlog-proof: %w: more than 63 hashes", ErrMalformed)
		}
		h, err := ParseHash(l)
		if err != nil {
			return p, fmt.Errorf("tlog-proof: hash %d: %w", len(p.Hashes), err)
		}
		p.Hashes = append(p.Hashes, h)
	}
	if len(b) == 0 {
		return p, fmt.Errorf("tlog-proof: %w: no checkpoint", ErrMalformed)
	}
	p.Checkpoint = bytes.Clone(b)
	return p, nil
}
