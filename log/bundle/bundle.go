// Package bundle defines the offline attestation bundle: everything a
// customer needs to verify one attestation without talking to anybody — the
// log entry (the co-processor's DSSE envelope, in the exact bytes the log
// committed to) and a C2SP tlog-proof (the entry's index, its inclusion proof,
// and the checkpoint with the log's signature and the witnesses'
// cosignatures).
//
// # Format
//
// A bundle is one JSON object with exactly these members:
//
//	{
//	  "mediaType": "application/vnd.vmledger.bundle.v1+json",
//	  "entry": "<standard base64 of the log entry bytes>",
//	  "proof": "<the C2SP tlog-proof text, verbatim>"
//	}
//
// The entry is carried as base64 rather than as a nested JSON object so that
// no reformatting of the bundle (a pretty-printer, a JSON store) can change
// the bytes whose RFC 6962 leaf hash the log committed to. The proof is the
// text form of https://c2sp.org/tlog-proof: "c2sp.org/tlog-proof@v1", an
// "index N" line, the inclusion hashes (leaf sibling first), an empty line
// and the signed checkpoint.
//
// Parse is strict: unknown or repeated members (member names are
// case-sensitive: "Entry" is not "entry", and a bundle holding both is
// refused, since readers disagree on which one counts), a wrong media type, bad
// base64, an entry over 65,535 bytes or a malformed proof are errors wrapping
// ErrMalformed. Parse checks form only; package client verifies the
// signatures, the proof and the claim.
package bundle

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vmledger/vmledger/internal/strictjson"
	"github.com/vmledger/vmledger/log/tlog"
)

// MediaType identifies version 1 of the bundle format.
const MediaType = "application/vnd.vmledger.bundle.v1+json"

// Limits on what Parse accepts.
const (
	MaxEntrySize = 65535
	// MaxSize bounds a whole encoded bundle: a maximal entry in base64, 63
	// proof hashes and a checkpoint with many cosignatures fit well within.
	MaxSize = 256 << 10
)

// ErrMalformed is wrapped by every Parse error.
var ErrMalformed = errors.New("bundle: malformed")

// Bundle is one offline-verifiable attestation.
type Bundle struct {
	// Entry is the log entry: the canonical DSSE envelope bytes.
	Entry []byte
	// Proof proves that Entry is at Proof.Index in the tree of
	// Proof.Checkpoint.
	Proof tlog.Proof
}

type wire struct {
	MediaType string `json:"mediaType"`
	Entry     string `json:"entry"`
	Proof     string `json:"proof"`
}

// Marshal encodes b as indented JSON followed by a newline.
func (b *Bundle) Marshal() ([]byte, error) {
	if len(b.Entry) == 0 || len(b.Entry) > MaxEntrySize {
		return nil, fmt.Errorf("bundle: entry of %d bytes (want 1..%d)", len(b.Entry), MaxEntrySize)
	}
	out, err := json.MarshalIndent(wire{
		MediaType: MediaType,
		Entry:     base64.StdEncoding.EncodeToString(b.Entry),
		Proof:     string(b.Proof.Marshal()),
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Parse decodes a bundle strictly (see the package documentation).
func Parse(data []byte) (*Bundle, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(data), MaxSize)
	}
	if err := checkMembers(data); err != nil {
		return nil, err
	}
	var w wire
	if err := strictjson.Decode(data, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if w.MediaType != MediaType {
		return nil, fmt.Errorf("%w: mediaType %q, want %q", ErrMalformed, w.MediaType, MediaType)
	}
	entry, err := base64.StdEncoding.Strict().DecodeString(w.Entry)
	if err != nil {
		return nil, fmt.Errorf("%w: entry: %v", ErrMalformed, err)
	}
	if len(entry) == 0 || len(entry) > MaxEntrySize {
		return nil, fmt.Errorf("%w: entry of %d bytes (want 1..%d)", ErrMalformed, len(entry), MaxEntrySize)
	}
	if base64.StdEncoding.EncodeToString(entry) != w.Entry {
		return nil, fmt.Errorf("%w: entry is not canonical base64", ErrMalformed)
	}
	p, err := tlog.ParseProof([]byte(w.Proof))
	if err != nil {
		return nil, fmt.Errorf("%w: proof: %v", ErrMalformed, err)
	}
	return &Bundle{Entry: entry, Proof: p}, nil
}

// checkMembers requires a JSON object whose members are exactly mediaType,
// entry and proof, each once, with string values.
func checkMembers(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		key, _ := t.(string)
		if seen[key] {
			return fmt.Errorf("%w: member %q repeated", ErrMalformed, key)
		}
		seen[key] = true
		v, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%w: member %q is not a string", ErrMalformed, key)
		}
	}
	for _, k := range []string{"mediaType", "entry", "proof"} {
		if !seen[k] {
			return fmt.Errorf("%w: member %q missing", ErrMalformed, k)
		}
	}
	return nil
}
