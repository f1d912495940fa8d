package coproc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Verification errors.
var (
	// ErrUnsupportedKey: not an ECDSA P-256 or Ed25519 public key.
	ErrUnsupportedKey = errors.New("unsupported public key")
	// ErrKeyIDMismatch: the signature's keyid is not the key's.
	ErrKeyIDMismatch = errors.New("keyid does not match the public key")
	// ErrBadSignature: the signature does not verify.
	ErrBadSignature = errors.New("signature does not verify")
)

// KeyID returns the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of
// pub, which must be an ECDSA P-256 or Ed25519 public key.
func KeyID(pub crypto.PublicKey) (string, error) {
	if err := checkKey(pub); err != nil {
		return "", err
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
	}
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:]), nil
}

func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ECDSA keys must be on P-256", ErrUnsupportedKey)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 key of %d bytes", ErrUnsupportedKey, len(k))
		}
	default:
		return fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
	}
	return nil
}

// Verify checks the envelope's signature: the keyid must be KeyID(pub) and
// the signature must verify over PAE(payloadType, payload) — ECDSA P-256 over
// SHA-256(PAE) with a DER signature whose s is at most n/2 (our signers
// normalise s so that nobody can re-encode a valid signature into another
// valid one), or Ed25519 over PAE. Verify does not parse the payload; use
// VerifyStatement for the whole check.
func Verify(e *Envelope, pub crypto.PublicKey) error {
	if err := e.validate(); err != nil {
		return err
	}
	id, err := KeyID(pub)
	if err != nil {
		return err
	}
	s := e.Signatures[0]
	if s.KeyID != id {
		return fmt.Errorf("%w: envelope keyid %s, key %s", ErrKeyIDMismatch, s.KeyID, id)
	}
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		if _, sv, ok := parseECDSASig(s.Sig); !ok || sv.Cmp(halfOrder(k.Curve)) > 0 {
			return fmt.Errorf("%w: not a DER ECDSA signature with low s", ErrBadSignature)
		}
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
	}
	if err := v.VerifySignature(bytes.NewReader(s.Sig), bytes.NewReader(PAE(e.PayloadType, e.Payload))); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return nil
}

// VerifyStatement verifies the signature with pub (Verify) and returns the
// strictly parsed statement, whose predicate key id equals the signature's.
func VerifyStatement(e *Envelope, pub crypto.PublicKey) (*Statement, error) {
	if err := Verify(e, pub); err != nil {
		return nil, err
	}
	return e.Statement()
}

// SignPAE signs DSSE PAE bytes with a software key, in the Signature.Sig
// form Verify accepts: Ed25519 over the PAE, or ECDSA P-256 over
// SHA-256(PAE) as an ASN.1 DER signature with low s. It is the signing half
// of Seal for keys held in memory (the soft co-processor, tests,
// benchmarks); a TPM signs the digest itself.
func SignPAE(priv crypto.Signer, pae []byte) ([]byte, error) {
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, pae), nil
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(pae)
		r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
		if err != nil {
			return nil, err
		}
		return ECDSASignature(k.Curve, r, s), nil
	}
	return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, priv)
}

// Seal builds the envelope of st: it encodes st canonically, signs the PAE
// with sign (which returns a signature in the Signature.Sig format for the
// key pub) and checks the result with Verify before returning it.
func Seal(st *Statement, pub crypto.PublicKey, sign func(pae []byte) ([]byte, error)) (*Envelope, error) {
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	if st.Predicate.Coprocessor.KeyID != id {
		return nil, fmt.Errorf("coproc: statement keyid %s is not the signing key's %s", st.Predicate.Coprocessor.KeyID, id)
	}
	payload, err := st.Canonical()
	if err != nil {
		return nil, err
	}
	sig, err := sign(PAE(PayloadType, payload))
	if err != nil {
		return nil, fmt.Errorf("coproc: signing: %w", err)
	}
	e := &Envelope{PayloadType: PayloadType, Payload: payload, Signatures: []Signature{{KeyID: id, Sig: sig}}}
	if _, err := e.Canonical(); err != nil {
		return nil, err
	}
	if err := Verify(e, pub); err != nil {
		return nil, fmt.Errorf("coproc: the co-processor's signature does not verify: %w", err)
	}
	return e, nil
}

// ECDSASignature encodes (r, s) as ASN.1 DER with s replaced by n-s when s >
// n/2 (both verify; the low one is canonical).
func ECDSASignature(curve elliptic.Curve, r, s *big.Int) []byte {
	if s.Cmp(halfOrder(curve)) > 0 {
		s = new(big.Int).Sub(curve.Params().N, s)
	}
	b, err := asn1.Marshal(ecdsaSig{r, s})
	if err != nil {
		panic("coproc: encoding two integers failed: " + err.Error())
	}
	return b
}

type ecdsaSig struct{ R, S *big.Int }

func halfOrder(c elliptic.Curve) *big.Int {
	return new(big.Int).Rsh(c.Params().N, 1)
}

func parseECDSASig(sig []byte) (r, s *big.Int, ok bool) {
	var v ecdsaSig
	rest, err := asn1.Unmarshal(sig, &v)
	if err != nil || len(rest) != 0 || v.R.Sign() <= 0 || v.S.Sign() <= 0 {
		return nil, nil, false
	}
	return v.R, v.S, true
}
