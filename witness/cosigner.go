package witness

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/internal/notekey"
)

// Cosigner makes C2SP tlog-cosignature cosignature/v1 signatures (Ed25519,
// signature type 0x04). It implements note.Signer.
//
// The signed message is
//
//	cosignature/v1 LF
//	time <unix seconds> LF
//	<the checkpoint note text>
//
// and the signature (after the 4-byte key ID on the signature line) is the
// 8-byte big-endian timestamp followed by the 64-byte Ed25519 signature.
//
// transparency-dev/formats/note has an equivalent signer, but it reads the
// wall clock itself; this one takes a clock so that tests can pin exact
// bytes. Its key ID is checked against the formats/note signer's when it is
// built, and every cosignature is verifiable with
// formats/note.NewVerifierForCosignatureV1.
type Cosigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
	now  func() time.Time
}

// NewCosigner builds a cosigner from an x/mod private key text
// ("PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>", as note.GenerateKey
// writes). now may be nil for time.Now.
func NewCosigner(skey string, now func() time.Time) (*Cosigner, error) {
	skey = strings.TrimSpace(skey)
	if err := notekey.CheckNotPublic(skey); err != nil {
		return nil, fmt.Errorf("witness key: %w", err)
	}
	if _, err := note.NewSigner(skey); err != nil { // validates name, ID and key
		return nil, fmt.Errorf("witness key: %w", err)
	}
	ref, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("witness key: %w", err)
	}
	parts := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 0x01 {
		return nil, fmt.Errorf("witness key: not an Ed25519 key")
	}
	if now == nil {
		now = time.Now
	}
	c := &Cosigner{name: parts[2], key: ed25519.NewKeyFromSeed(raw[1:]), now: now}
	c.hash = keyHash(c.name, c.publicKey())
	if c.hash != ref.KeyHash() {
		return nil, fmt.Errorf("witness key: cosignature key ID %08x, formats/note says %08x", c.hash, ref.KeyHash())
	}
	return c, nil
}

func (c *Cosigner) publicKey() []byte {
	return append([]byte{0x04}, c.key.Public().(ed25519.PublicKey)...)
}

func keyHash(name string, key []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write(key)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// Name returns the witness's key name.
func (c *Cosigner) Name() string { return c.name }

// KeyHash returns the cosignature/v1 key ID.
func (c *Cosigner) KeyHash() uint32 { return c.hash }

// VKey returns the witness's cosignature/v1 verifier key (type 0x04).
func (c *Cosigner) VKey() string {
	return fmt.Sprintf("%s+%08x+%s", c.name, c.hash, base64.StdEncoding.EncodeToString(c.publicKey()))
}

// Verifier returns a formats/note cosignature/v1 verifier for this key.
func (c *Cosigner) Verifier() note.Verifier {
	v, err := fnote.NewVerifierForCosignatureV1(c.VKey())
	if err != nil {
		panic(err) // the key was validated in NewCosigner
	}
	return v
}

// Sign signs a checkpoint note text at the cosigner's current time.
func (c *Cosigner) Sign(msg []byte) ([]byte, error) {
	t := c.now().Unix()
	if t < 0 {
		return nil, fmt.Errorf("cosign: clock before 1970")
	}
	m := fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", t, msg)
	sig := binary.BigEndian.AppendUint64(make([]byte, 0, 72), uint64(t))
	return append(sig, ed25519.Sign(c.key, m)...), nil
}

// cosignatureLine returns the signature line "— name base64(keyID ‖ sig)" LF
// for a checkpoint note text.
func (c *Cosigner) cosignatureLine(text string) ([]byte, error) {
	sig, err := c.Sign([]byte(text))
	if err != nil {
		return nil, err
	}
	payload := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(sig)), c.hash)
	payload = append(payload, sig...)
	return fmt.Appendf(nil, "— %s %s\n", c.name, base64.StdEncoding.EncodeToString(payload)), nil
}
