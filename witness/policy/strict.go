package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"

	"golang.org/x/mod/sumdb/note"
)

// CheckEverySignature verifies the repeated signature lines of signed whose
// key is known to known: the lines note.Open leaves unchecked.
//
// note.Open (golang.org/x/mod/sumdb/note) verifies only the first line of each
// known key and skips later lines of the same key unchecked, so a note whose
// valid signature is followed by a forged one of the same key opens without
// error, while the same two lines in the other order are refused. A signed
// checkpoint that carries a failing signature by a trusted key must be refused
// whatever the order of its lines, so callers run this after note.Open
// succeeded: the first line of each known key is then known to verify, and
// this verifies every later line of that key that differs from the first
// (so a note without repeated keys costs no signature check here). It returns
// a *note.InvalidSignatureError naming the first line that fails, and nil
// when every known line verifies. Lines of unknown keys are ignored; a note
// that does not parse is left to note.Open to report (this function then
// returns nil).
func CheckEverySignature(signed []byte, known note.Verifiers) error {
	type keyID struct {
		name string
		hash uint32
	}
	first := map[keyID]string{} // the first line's base64 of each key
	split := bytes.LastIndex(signed, []byte("\n\n"))
	if split < 0 {
		return nil
	}
	text, sigs := signed[:split+1], signed[split+2:]
	for len(sigs) > 0 {
		line, rest, ok := bytes.Cut(sigs, []byte("\n"))
		if !ok {
			return nil
		}
		sigs = rest
		body, ok := bytes.CutPrefix(line, []byte("— "))
		if !ok {
			return nil
		}
		name, b64, ok := bytes.Cut(body, []byte(" "))
		if !ok {
			return nil
		}
		sig, err := base64.StdEncoding.DecodeString(string(b64))
		if err != nil || len(sig) < 5 {
			return nil
		}
		hash := binary.BigEndian.Uint32(sig[:4])
		id := keyID{string(name), hash}
		if b, seen := first[id]; !seen || b == string(b64) {
			// The first line of a key (note.Open verified it, if the key
			// is known), or an identical copy of it.
			if !seen {
				first[id] = string(b64)
			}
			continue
		}
		v, err := known.Verifier(string(name), hash)
		if err != nil {
			var unknown *note.UnknownVerifierError
			if errors.As(err, &unknown) {
				continue
			}
			return err
		}
		if !v.Verify(text, sig[4:]) {
			return &note.InvalidSignatureError{Name: string(name), Hash: hash}
		}
	}
	return nil
}
