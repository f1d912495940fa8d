package tlog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/internal/notekey"
)

// HashSize is the size of a tree hash in bytes.
const HashSize = sha256.Size

// Hash is an RFC 6962 SHA-256 tree hash.
type Hash = [HashSize]byte

// EmptyRoot is the root of the empty tree, SHA-256("").
var EmptyRoot = Hash(sha256.Sum256(nil))

// Checkpoint is the body of a C2SP tlog-checkpoint: the log's origin, the
// tree size and the root hash at that size.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
}

// ErrMalformed is wrapped by every parse error of this package.
var ErrMalformed = errors.New("malformed")

// Marshal returns the checkpoint's note text: three LF-terminated lines.
func (c Checkpoint) Marshal() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// String returns the checkpoint text.
func (c Checkpoint) String() string { return string(c.Marshal()) }

// ParseCheckpoint parses checkpoint note text (without signatures). It is
// strict: exactly three lines, each LF-terminated, a size without leading
// zeros and a root that is canonical base64 of 32 bytes. Extension lines are
// refused: this log emits none and accepts none.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	var c Checkpoint
	if !bytes.HasSuffix(text, []byte("\n")) {
		return c, fmt.Errorf("checkpoint: %w: text does not end with a newline", ErrMalformed)
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) != 3 {
		return c, fmt.Errorf("checkpoint: %w: %d lines, want 3 (origin, size, root)", ErrMalformed, len(lines))
	}
	if lines[0] == "" || strings.ContainsAny(lines[0], " \t\r") {
		return c, fmt.Errorf("checkpoint: %w: origin %q", ErrMalformed, lines[0])
	}
	size, err := ParseDecimal(lines[1])
	if err != nil {
		return c, fmt.Errorf("checkpoint: size: %w", err)
	}
	root, err := ParseHash(lines[2])
	if err != nil {
		return c, fmt.Errorf("checkpoint: root: %w", err)
	}
	return Checkpoint{Origin: lines[0], Size: size, Root: root}, nil
}

// ParseDecimal parses a uint64 in canonical decimal: digits only, no sign,
// no leading zeros (except "0" itself).
func ParseDecimal(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(v, 10) != s {
		return 0, fmt.Errorf("%w: %q is not a canonical decimal number", ErrMalformed, s)
	}
	return v, nil
}

// ParseHash parses a hash in canonical standard base64 with padding.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != HashSize || base64.StdEncoding.EncodeToString(b) != s {
		return h, fmt.Errorf("%w: %q is not a base64 SHA-256 hash", ErrMalformed, s)
	}
	copy(h[:], b)
	return h, nil
}

// Sign signs the checkpoint with s and returns the signed note. The signer's
// name must equal the checkpoint's origin.
func (c Checkpoint) Sign(s note.Signer) ([]byte, error) {
	if s.Name() != c.Origin {
		return nil, fmt.Errorf("signing checkpoint: key name %q differs from origin %q", s.Name(), c.Origin)
	}
	return note.Sign(&note.Note{Text: string(c.Marshal())}, s)
}

// OpenCheckpoint verifies a signed checkpoint with the log's verifier and
// parses it. The origin must equal the verifier's name. Signatures by other
// keys (witness cosignatures) are ignored here; the returned note lists them
// in UnverifiedSigs.
func OpenCheckpoint(signed []byte, v note.Verifier) (Checkpoint, *note.Note, error) {
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("opening checkpoint: %w", err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, nil, fmt.Errorf("checkpoint origin %q, want %q", c.Origin, v.Name())
	}
	return c, n, nil
}

// GenerateKey returns a new Ed25519 note key pair for the named log or
// witness: the private key in the x/mod text form
// (PRIVATE+KEY+name+id+base64) and the verifier key.
func GenerateKey(rand io.Reader, name string) (skey, vkey string, err error) {
	if err := CheckKeyName(name); err != nil {
		return "", "", err
	}
	return note.GenerateKey(rand, name)
}

// CheckKeyName checks a signed-note key name: non-empty UTF-8 without
// whitespace or '+'.
func CheckKeyName(name string) error {
	if name == "" || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsSpace) >= 0 || strings.Contains(name, "+") {
		return fmt.Errorf("invalid key name %q: want non-empty UTF-8 without spaces or '+'", name)
	}
	return nil
}

// NewSigner parses a private key in the x/mod text form (surrounding
// whitespace, such as a final newline in a key file, is ignored). Only
// Ed25519 (type 0x01) keys are accepted. It returns the signer and the
// matching verifier key text. A public key given instead (the verifier key
// text, or a PEM public key) is an error wrapping notekey.ErrPublicKey.
func NewSigner(skey string) (note.Signer, string, error) {
	skey = strings.TrimSpace(skey)
	if err := notekey.CheckNotPublic(skey); err != nil {
		return nil, "", fmt.Errorf("parsing private key: %w", err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("parsing private key: %w", err)
	}
	// PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>; NewSigner has checked the form.
	// Names cannot contain '+' but base64 can.
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return nil, "", errors.New("parsing private key: not in the PRIVATE+KEY+name+id+key form")
	}
	b, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 1 {
		return nil, "", errors.New("parsing private key: not an Ed25519 note key")
	}
	pub := ed25519.NewKeyFromSeed(b[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, "", fmt.Errorf("deriving verifier key: %w", err)
	}
	return s, vkey, nil
}
