// Package notekey recognises public keys given where a private note key is
// expected, so that the tools can say so instead of "malformed private key".
//
// A private note key, as vmledger keygen writes it with --out, is the x/mod
// text
//
//	PRIVATE+KEY+<name>+<8 hex digits key ID>+<base64(0x01 ‖ 32-byte seed)>
//
// The public (verifier) key that keygen prints on stdout is
//
//	<name>+<8 hex digits key ID>+<base64(type ‖ public key)>
//
// (type 0x01 Ed25519; a witness also prints its cosignature/v1 form, type
// 0x04). A co-processor's public key is a PEM "PUBLIC KEY" block.
package notekey

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ErrPublicKey: the text is a public key where a private key is expected.
var ErrPublicKey = errors.New("a public key where a private key is expected")

// CheckNotPublic returns an error wrapping ErrPublicKey that says what to
// give instead if text (surrounding whitespace ignored) is a note verifier
// key or a PEM public key, and nil otherwise: nil does not mean that text
// is a valid private key.
func CheckNotPublic(text string) error {
	text = strings.TrimSpace(text)
	if strings.HasPrefix(text, "-----BEGIN ") && strings.Contains(text, "PUBLIC KEY-----") {
		return fmt.Errorf("%w: this is a PEM public key; give the note private key file that vmledger keygen --out wrote (it starts PRIVATE+KEY+)", ErrPublicKey)
	}
	if strings.HasPrefix(text, "PRIVATE+KEY+") {
		return nil
	}
	// Names cannot contain '+', base64 can.
	parts := strings.SplitN(text, "+", 3)
	if len(parts) != 3 || parts[0] == "" || len(parts[1]) != 8 {
		return nil
	}
	if _, err := hex.DecodeString(parts[1]); err != nil {
		return nil
	}
	if k, err := base64.StdEncoding.DecodeString(parts[2]); err != nil || len(k) < 2 {
		return nil
	}
	return fmt.Errorf("%w: this is the verifier key of %q (name+id+key, as vmledger keygen prints it); give the private key file that keygen --out wrote (it starts PRIVATE+KEY+)", ErrPublicKey, parts[0])
}
