package rekorcompat

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/vmledger/vmledger/log/tlog"
)

// ParseNoteKey derives the log's Ed25519 private key from its key file
// text, the x/mod form PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 ‖ seed)>
// written by vmledger keygen (surrounding whitespace is ignored). It returns
// the key name, which is the log's origin, and the key. The text is first
// checked by [tlog.NewSigner], so the key ID in it must match the key.
func ParseNoteKey(skey string) (name string, key ed25519.PrivateKey, err error) {
	skey = strings.TrimSpace(skey)
	s, _, err := tlog.NewSigner(skey)
	if err != nil {
		return "", nil, err
	}
	// Names cannot contain '+', base64 can: the key is everything after
	// the fourth '+'.
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", nil, errors.New("parsing private key: not in the PRIVATE+KEY+name+id+key form")
	}
	b, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 1 {
		return "", nil, errors.New("parsing private key: not an Ed25519 note key")
	}
	return s.Name(), ed25519.NewKeyFromSeed(b[1:]), nil
}

// spkiHash returns SHA-256 of the DER SubjectPublicKeyInfo of pub: Rekor's
// log ID, and the source of its checkpoint key hint.
func spkiHash(pub crypto.PublicKey) ([sha256.Size]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("encoding the public key: %w", err)
	}
	return sha256.Sum256(der), nil
}

// LogID returns Rekor's log ID for a log key: lowercase hex SHA-256 of the
// DER SubjectPublicKeyInfo of the public key.
func LogID(pub crypto.PublicKey) (string, error) {
	h, err := spkiHash(pub)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h[:]), nil
}

// KeyHint returns the 4-byte key hint that Rekor's signed-note code puts in
// front of a signature and insists on when it verifies: the first 4 bytes
// (big-endian) of SHA-256 of the DER SubjectPublicKeyInfo. It is not the
// C2SP Ed25519 key ID, SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4].
func KeyHint(pub crypto.PublicKey) (uint32, error) {
	h, err := spkiHash(pub)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(h[:4]), nil
}

// DefaultTreeID is the tree ID used when Config.TreeID is 0: the first 8
// bytes of the log ID as a positive int64 (1 if they are all zero), so it
// is stable for a key and differs between logs.
func DefaultTreeID(pub crypto.PublicKey) (int64, error) {
	h, err := spkiHash(pub)
	if err != nil {
		return 0, err
	}
	id := int64(binary.BigEndian.Uint64(h[:8]) &^ (1 << 63))
	if id == 0 {
		id = 1
	}
	return id, nil
}
