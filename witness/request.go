package witness

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxProofLines is the most consistency-proof hashes an add-checkpoint
// request may carry (C2SP tlog-witness).
const MaxProofLines = 63

// MaxBodySize bounds an add-checkpoint request body: 63 proof lines of 45
// bytes, the old line and a checkpoint note with room for many signatures.
const MaxBodySize = 64 << 10

// emptyRoot is SHA-256(""), the root of the empty RFC 6962 tree.
var emptyRoot = sha256.Sum256(nil)

// AddCheckpointRequest is a parsed add-checkpoint request body.
type AddCheckpointRequest struct {
	// Old is the size of the checkpoint the client believes the witness
	// cosigned last for this origin (0 for none).
	Old uint64
	// Proof is the RFC 6962 consistency proof from Old to the checkpoint's
	// size, each hash 32 bytes.
	Proof [][]byte
	// Checkpoint is the complete signed checkpoint note, verbatim.
	Checkpoint []byte
	// Parsed is the checkpoint's body, parsed strictly but not yet
	// authenticated.
	Parsed Checkpoint
}

// Checkpoint is the body of a C2SP tlog-checkpoint note.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   [32]byte
	// Text is the note text (origin, size, root and any extension lines,
	// each LF-terminated).
	Text string
}

// ParseError reports a malformed request body or checkpoint. It maps to
// 400 Bad Request.
type ParseError struct{ Msg string }

func (e *ParseError) Error() string { return "malformed request: " + e.Msg }

func parseErrorf(format string, args ...any) error {
	return &ParseError{Msg: fmt.Sprintf(format, args...)}
}

// ParseAddCheckpoint parses an add-checkpoint request body strictly:
//
//	old <decimal, no leading zeros> LF
//	0 to 63 lines of base64 (32-byte hashes, canonical encoding) LF
//	LF
//	<signed checkpoint note>
//
// No CR anywhere, no trailing bytes after the note's last signature line.
// The note is checked for structure (text, blank line, signature lines) and
// its text must be a checkpoint; its signatures are not verified here.
func ParseAddCheckpoint(body []byte) (*AddCheckpointRequest, error) {
	if len(body) > MaxBodySize {
		return nil, parseErrorf("body larger than %d bytes", MaxBodySize)
	}
	if bytes.IndexByte(body, '\r') >= 0 {
		return nil, parseErrorf("CR in body")
	}
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	if !ok {
		return nil, parseErrorf("missing old line")
	}
	num, ok := bytes.CutPrefix(line, []byte("old "))
	if !ok {
		return nil, parseErrorf("first line is not \"old <size>\"")
	}
	old, err := parseDecimal(num)
	if err != nil {
		return nil, parseErrorf("old size: %v", err)
	}
	req := &AddCheckpointRequest{Old: old}
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil, parseErrorf("missing blank line before the checkpoint")
		}
		if len(line) == 0 {
			break
		}
		if len(req.Proof) == MaxProofLines {
			return nil, parseErrorf("more than %d proof lines", MaxProofLines)
		}
		h, err := decodeHash(line)
		if err != nil {
			return nil, parseErrorf("proof line %d: %v", len(req.Proof)+1, err)
		}
		req.Proof = append(req.Proof, h[:])
	}
	if err := checkNote(rest); err != nil {
		return nil, err
	}
	req.Checkpoint = rest
	text := rest[:bytes.Index(rest, []byte("\n\n"))+1]
	cp, err := ParseCheckpointText(text)
	if err != nil {
		return nil, err
	}
	req.Parsed = *cp
	return req, nil
}

// Marshal encodes the request body; for a request from ParseAddCheckpoint
// it returns the parsed bytes exactly.
func (r *AddCheckpointRequest) Marshal() []byte {
	return MarshalAddCheckpoint(r.Old, r.Proof, r.Checkpoint)
}

// MarshalAddCheckpoint encodes an add-checkpoint request body.
func MarshalAddCheckpoint(old uint64, proof [][]byte, signedCheckpoint []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", old)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(signedCheckpoint)
	return b.Bytes()
}

// parseDecimal parses a decimal uint64 without sign or leading zeros.
func parseDecimal(b []byte) (uint64, error) {
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil || len(b) == 0 || b[0] == '+' || (b[0] == '0' && len(b) > 1) {
		return 0, fmt.Errorf("%q is not a decimal number without leading zeros", b)
	}
	return n, nil
}

// decodeHash decodes a canonical standard-base64 32-byte hash.
func decodeHash(b []byte) ([32]byte, error) {
	var h [32]byte
	if len(b) != 44 {
		return h, fmt.Errorf("not a base64 SHA-256 hash")
	}
	var buf [33]byte // 44 base64 characters without padding decode to 33 bytes
	n, err := base64.StdEncoding.Strict().Decode(buf[:], b)
	if err != nil || n != 32 {
		return h, fmt.Errorf("not a base64 SHA-256 hash")
	}
	copy(h[:], buf[:32])
	return h, nil
}

var sigPrefix = []byte("— ")

// checkNote checks the structure of a signed note (C2SP signed-note): valid
// UTF-8 without control characters other than LF, non-empty text, one empty
// line, then one or more lines "— <name> <base64>" each ending in LF.
func checkNote(n []byte) error {
	if !utf8.Valid(n) {
		return parseErrorf("checkpoint note is not UTF-8")
	}
	for _, c := range n {
		if c < 0x20 && c != '\n' || c == 0x7f {
			return parseErrorf("control character in checkpoint note")
		}
	}
	split := bytes.Index(n, []byte("\n\n"))
	if split < 0 {
		return parseErrorf("checkpoint note has no signature block")
	}
	sigs := n[split+2:]
	if len(sigs) == 0 || sigs[len(sigs)-1] != '\n' {
		return parseErrorf("checkpoint note has no signatures or lacks a final newline")
	}
	count := 0
	for len(sigs) > 0 {
		line, rest, _ := bytes.Cut(sigs, []byte("\n"))
		sigs = rest
		l, ok := bytes.CutPrefix(line, sigPrefix)
		if !ok {
			return parseErrorf("checkpoint note: signature line %d does not start with \"— \"", count+1)
		}
		name, b64, ok := bytes.Cut(l, []byte(" "))
		sig, err := base64.StdEncoding.Strict().DecodeString(string(b64))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, "+ ") || err != nil || len(sig) < 5 {
			return parseErrorf("checkpoint note: malformed signature line %d", count+1)
		}
		if count++; count > 100 {
			return parseErrorf("checkpoint note: more than 100 signatures")
		}
	}
	return nil
}

// ParseCheckpointText parses a checkpoint note text strictly: origin, size in
// decimal without leading zeros, canonical base64 32-byte root, then optional
// non-empty extension lines, every line LF-terminated.
func ParseCheckpointText(text []byte) (*Checkpoint, error) {
	lines := bytes.SplitAfter(text, []byte("\n"))
	if len(lines) < 4 || len(lines[len(lines)-1]) != 0 {
		return nil, parseErrorf("checkpoint text needs origin, size and root lines ending in LF")
	}
	lines = lines[:len(lines)-1]
	for _, l := range lines {
		if len(l) == 1 {
			return nil, parseErrorf("empty line in checkpoint text")
		}
	}
	cp := &Checkpoint{Origin: string(bytes.TrimSuffix(lines[0], []byte("\n"))), Text: string(text)}
	var err error
	if cp.Size, err = parseDecimal(bytes.TrimSuffix(lines[1], []byte("\n"))); err != nil {
		return nil, parseErrorf("checkpoint size: %v", err)
	}
	if cp.Root, err = decodeHash(bytes.TrimSuffix(lines[2], []byte("\n"))); err != nil {
		return nil, parseErrorf("checkpoint root: %v", err)
	}
	return cp, nil
}

// The decisions of [Witness.AddCheckpoint] besides *ParseError (400),
// *ConflictError (409) and *RateLimitError (429); one switch in the HTTP
// handler maps them to status codes.
var (
	// ErrUnknownOrigin: the origin is not a log this witness witnesses (404).
	ErrUnknownOrigin = errors.New("unknown origin")
	// ErrNoTrustedSignature: no signature by a key trusted for the origin,
	// or a trusted key's signature fails (403).
	ErrNoTrustedSignature = errors.New("no valid signature by a trusted log key")
	// ErrOldTooLarge: old is larger than the checkpoint's size (400).
	ErrOldTooLarge = errors.New("old size larger than checkpoint size")
	// ErrUnprocessable is wrapped by every 422 decision below.
	ErrUnprocessable = errors.New("checkpoint not consistent with the witness's state")
	// ErrBadProof: the consistency proof does not verify (422).
	ErrBadProof = fmt.Errorf("%w: consistency proof fails", ErrUnprocessable)
	// ErrProofWithOldZero: a non-empty proof with old size 0 (422).
	ErrProofWithOldZero = fmt.Errorf("%w: non-empty proof from size 0", ErrUnprocessable)
	// ErrBadEmptyRoot: a size-0 checkpoint whose root is not SHA-256("") (422).
	ErrBadEmptyRoot = fmt.Errorf("%w: size-0 checkpoint with a non-empty root", ErrUnprocessable)
	// ErrRootMismatch: same size as the stored checkpoint, different root (422).
	ErrRootMismatch = fmt.Errorf("%w: same size, different root", ErrUnprocessable)
	// ErrRateLimited: the origin's request budget is spent (429); see
	// *RateLimitError.
	ErrRateLimited = errors.New("request budget exceeded")
)

// ConflictError is the 409 decision: old differs from the size of the last
// checkpoint this witness cosigned for the origin (0 if never).
type ConflictError struct{ Size uint64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("old size does not match the witness's size %d", e.Size)
}
