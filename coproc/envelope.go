package coproc

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
)

const (
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// MaxEnvelopeSize bounds the canonical envelope: a log entry is at most
	// 65,535 bytes (C2SP tlog-tiles entry bundles use a 16-bit length).
	MaxEnvelopeSize = 65535
	// maxSigLen bounds a decoded signature (DER ECDSA P-256 ≤ 72, Ed25519 64).
	maxSigLen = 512
)

// Envelope is a DSSE envelope with exactly one signature. Payload and Sig
// hold decoded bytes.
type Envelope struct {
	PayloadType string
	Payload     []byte
	Signatures  []Signature
}

// Signature is one DSSE signature.
type Signature struct {
	// KeyID is the lowercase hex SHA-256 of the signer's DER SPKI.
	KeyID string
	// Sig is the raw signature over PAE(PayloadType, Payload): ASN.1 DER
	// ECDSA over SHA-256(PAE), or Ed25519 over PAE.
	Sig []byte
}

// wireEnvelope is the JSON form; field order is the canonical order.
type wireEnvelope struct {
	PayloadType string          `json:"payloadType"`
	Payload     string          `json:"payload"`
	Signatures  []wireSignature `json:"signatures"`
}

type wireSignature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// PAE is the DSSE pre-authentication encoding:
// "DSSEv1" SP len(type) SP type SP len(payload) SP payload.
func PAE(payloadType string, payload []byte) []byte {
	b := make([]byte, 0, 32+len(payloadType)+len(payload))
	b = append(b, "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(payloadType)), 10)
	b = append(b, ' ')
	b = append(b, payloadType...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(payload)), 10)
	b = append(b, ' ')
	b = append(b, payload...)
	return b
}

func (e *Envelope) wire() *wireEnvelope {
	w := &wireEnvelope{
		PayloadType: e.PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(e.Payload),
		Signatures:  []wireSignature{},
	}
	for _, s := range e.Signatures {
		w.Signatures = append(w.Signatures, wireSignature{KeyID: s.KeyID, Sig: base64.StdEncoding.EncodeToString(s.Sig)})
	}
	return w
}

// encode is the canonical encoding without validation.
func (e *Envelope) encode() []byte {
	b, err := marshalCanonical(e.wire())
	if err != nil {
		panic("coproc: encoding a struct of strings failed: " + err.Error())
	}
	return b
}

// validate checks the envelope's own rules (not the payload's).
func (e *Envelope) validate() error {
	bad := func(field string, sentinel error, format string, args ...any) error {
		return &FormatError{Object: "envelope", Field: field, Err: sentinel, Detail: fmt.Sprintf(format, args...)}
	}
	if e.PayloadType != PayloadType {
		return bad("payloadType", ErrInvalidField, "got %q, want %q", e.PayloadType, PayloadType)
	}
	if len(e.Payload) == 0 {
		return bad("payload", ErrInvalidField, "empty")
	}
	if len(e.Signatures) != 1 {
		return bad("signatures", ErrInvalidField, "%d signatures, want exactly 1", len(e.Signatures))
	}
	s := e.Signatures[0]
	if !isLowerHex(s.KeyID, 64) {
		return bad("signatures[0].keyid", ErrInvalidField, "want 64 lowercase hex digits")
	}
	if len(s.Sig) == 0 || len(s.Sig) > maxSigLen {
		return bad("signatures[0].sig", ErrInvalidField, "%d bytes, want 1..%d", len(s.Sig), maxSigLen)
	}
	return nil
}

// Canonical returns the envelope's canonical encoding, which is the log
// entry: compact JSON, fields in the order payloadType, payload, signatures
// (keyid, sig), standard padded base64, no HTML escaping, at most
// MaxEnvelopeSize bytes. The payload itself is not parsed here.
func (e *Envelope) Canonical() ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	b := e.encode()
	if len(b) > MaxEnvelopeSize {
		return nil, &FormatError{Object: "envelope", Err: ErrTooLarge, Detail: fmt.Sprintf("%d bytes, at most %d", len(b), MaxEnvelopeSize)}
	}
	return b, nil
}

// ParseEnvelope parses a log entry strictly. It rejects input longer than
// MaxEnvelopeSize (ErrTooLarge), invalid UTF-8 or JSON (ErrMalformed),
// repeated keys (ErrDuplicateKey), unknown keys (ErrUnknownField), wrong JSON
// types (ErrWrongType), non-canonical base64 (ErrBadBase64), envelope rule
// violations (ErrInvalidField) and any input that is not byte for byte the
// canonical encoding (ErrNotCanonical). The payload is not parsed: call
// Statement. The signature is not checked: call Verify.
func ParseEnvelope(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, &FormatError{Object: "envelope", Err: ErrTooLarge, Detail: fmt.Sprintf("%d bytes, at most %d", len(b), MaxEnvelopeSize)}
	}
	if e, ok := parseCanonicalEnvelope(b); ok {
		return e, nil
	}
	var w wireEnvelope
	if err := decodeStrict("envelope", b, &w); err != nil {
		return nil, err
	}
	e := &Envelope{PayloadType: w.PayloadType}
	var err error
	if e.Payload, err = decodeBase64(w.Payload); err != nil {
		return nil, &FormatError{Object: "envelope", Field: "payload", Err: ErrBadBase64, Detail: err.Error()}
	}
	for i, s := range w.Signatures {
		sig, err := decodeBase64(s.Sig)
		if err != nil {
			return nil, &FormatError{Object: "envelope", Field: fmt.Sprintf("signatures[%d].sig", i), Err: ErrBadBase64, Detail: err.Error()}
		}
		e.Signatures = append(e.Signatures, Signature{KeyID: s.KeyID, Sig: sig})
	}
	c, err := e.Canonical()
	if err != nil {
		return nil, err
	}
	if string(c) != string(b) {
		return nil, &FormatError{Object: "envelope", Err: ErrNotCanonical, Detail: "bytes differ from the canonical encoding"}
	}
	return e, nil
}

// The canonical envelope, cut where its fields go: every envelope that
// ParseEnvelope accepts has exactly this layout.
var (
	canonicalEnvelopeStart = []byte(`{"payloadType":"` + PayloadType + `","payload":"`)
	canonicalEnvelopeKeyID = []byte(`","signatures":[{"keyid":"`)
	canonicalEnvelopeSig   = []byte(`","sig":"`)
	canonicalEnvelopeEnd   = []byte(`"}]}`)
)

// parseCanonicalEnvelope reads an envelope laid out exactly as Canonical
// writes it, without a JSON decoder: the path every valid entry takes, in
// admission and in every verification. The fields it cuts out are then held
// to the same rules as the strict path's (canonical base64, which has no
// character JSON escapes; 64 lowercase hex digits; validate), so the
// envelope it returns re-encodes to b. For anything else it returns false
// and the strict decoder runs, to reject the input with a precise error.
// FuzzCanonicalEnvelope checks that the two paths agree.
func parseCanonicalEnvelope(b []byte) (*Envelope, bool) {
	rest, ok := bytes.CutPrefix(b, canonicalEnvelopeStart)
	if !ok {
		return nil, false
	}
	payload, rest, ok := bytes.Cut(rest, canonicalEnvelopeKeyID)
	if !ok {
		return nil, false
	}
	keyID, rest, ok := bytes.Cut(rest, canonicalEnvelopeSig)
	if !ok {
		return nil, false
	}
	sig, ok := bytes.CutSuffix(rest, canonicalEnvelopeEnd)
	if !ok {
		return nil, false
	}
	p, err := decodeBase64(string(payload))
	if err != nil {
		return nil, false
	}
	sg, err := decodeBase64(string(sig))
	if err != nil {
		return nil, false
	}
	e := &Envelope{PayloadType: PayloadType, Payload: p, Signatures: []Signature{{KeyID: string(keyID), Sig: sg}}}
	if e.validate() != nil {
		return nil, false
	}
	return e, true
}

// Statement parses the payload strictly (ParseStatement) and checks that the
// predicate's key id equals the signature's.
func (e *Envelope) Statement() (*Statement, error) {
	if e.PayloadType != PayloadType {
		return nil, &FormatError{Object: "envelope", Field: "payloadType", Err: ErrInvalidField, Detail: fmt.Sprintf("got %q, want %q", e.PayloadType, PayloadType)}
	}
	st, err := ParseStatement(e.Payload)
	if err != nil {
		return nil, err
	}
	if len(e.Signatures) != 1 || e.Signatures[0].KeyID != st.Predicate.Coprocessor.KeyID {
		return nil, &FormatError{Object: "statement", Field: "predicate.coprocessor.keyid", Err: ErrInvalidField, Detail: "differs from the signature's keyid"}
	}
	return st, nil
}
