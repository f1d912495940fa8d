package coproc

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Constants of the statement format (package doc, The attestation).
const (
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType is the predicate of every statement made now: v2, whose
	// coprocessor object says how the co-processor state is attested.
	PredicateType = "https://vmledger.dev/attestation/vm-config/v2"
	// PredicateTypeV1 is the predicate of statements made before TPM
	// evidence existed; they still parse, and verifiers accept them only
	// where their policy opts in.
	PredicateTypeV1 = "https://vmledger.dev/attestation/vm-config/v1"
	// AttestedByTPM marks a statement whose coprocessor.evidence holds TPM
	// evidence (package coproc/evidence): TPM2_NV_Certify of the root and
	// counter indexes by the TPM's attestation key.
	AttestedByTPM = "tpm2-nv-certify"
	// AttestedBySoftware marks a statement of a software key: nothing but
	// the signature vouches for the root and the counter.
	AttestedBySoftware = "software"
	// MaxEvidenceSize bounds the decoded evidence.
	MaxEvidenceSize = 2048
	// ConfigSchema is configuration schema v1 (agent/measure), the schema
	// of a statement whose claim names none. The configuration schema is
	// independent of the predicate version: either predicate may carry
	// either schema.
	ConfigSchema = "vmledger/config/v1"
	// ConfigSchemaV2 is the configuration schema the agent measures under
	// since it binds the VM id, backing chains, trunks, … (agent/measure).
	ConfigSchemaV2 = "vmledger/config/v2"
	// SubjectPrefix prefixes the VM id in the subject name.
	SubjectPrefix = "vm:"
	// TimeLayout is the only accepted time format: RFC 3339, UTC, seconds.
	TimeLayout = "2006-01-02T15:04:05Z"
	// MaxSafeInteger bounds every integer in the statement, so that
	// JavaScript and other float64 JSON readers read exactly what we wrote.
	MaxSafeInteger = 1<<53 - 1
	// MaxParameters bounds the parameter list.
	MaxParameters = 4096
	// MaxNameLen bounds a VM id, an origin and a parameter name, in bytes.
	MaxNameLen = 255
)

// Statement is an in-toto Statement v1 with the vm-config predicate. Field
// order is the canonical order. Strings hold the wire form; use the accessor
// methods for typed values.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     Predicate `json:"predicate"`
}

// Subject is the attested VM: name "vm:<vm id>", digest the config root.
type Subject struct {
	Name   string `json:"name"`
	Digest Digest `json:"digest"`
}

// Digest holds the config root as lowercase hex.
type Digest struct {
	SHA256 string `json:"sha256"`
}

// Predicate is the vm-config/v1 predicate.
type Predicate struct {
	// ConfigSchema is the configuration tree's schema, ConfigSchema
	// ("vmledger/config/v1") or ConfigSchemaV2: the verifier measures
	// under it.
	ConfigSchema string `json:"configSchema"`
	// LeafCount is the number of leaves of the config tree, = len(Parameters).
	LeafCount uint64 `json:"leafCount"`
	// Parameters are the leaf names, sorted bytewise, unique. Never values.
	Parameters []string `json:"parameters"`
	// Coprocessor identifies the signing key and its monotonic counter.
	Coprocessor CoprocessorState `json:"coprocessor"`
	// Time is when the co-processor made the statement (TimeLayout).
	Time string `json:"time"`
	// Freshness is the log checkpoint the statement was made after.
	Freshness Freshness `json:"freshness"`
}

// CoprocessorState is the co-processor part of the predicate: which key
// signed, and the state it recorded.
type CoprocessorState struct {
	// KeyID equals the DSSE signature's keyid.
	KeyID string `json:"keyid"`
	// Counter is the NV counter value after this attestation's increment.
	Counter uint64 `json:"counter"`
	// RootNVIndex is the TPM NV index holding the root; 0 for a software key.
	RootNVIndex uint32 `json:"rootNVIndex"`
	// CounterNVIndex is the TPM NV counter index; 0 for a software key.
	CounterNVIndex uint32 `json:"counterNVIndex"`
	// AttestedBy (v2 only) is AttestedByTPM or AttestedBySoftware.
	// NewStatement sets AttestedBySoftware when it is empty.
	AttestedBy string `json:"attestedBy,omitempty"`
	// Evidence (v2, AttestedByTPM only) is the standard base64 of the TPM
	// evidence (package coproc/evidence documents its bytes).
	Evidence string `json:"evidence,omitempty"`
}

// Freshness is a checkpoint of the log: origin, tree size, base64 root hash.
type Freshness struct {
	Origin   string `json:"origin"`
	Size     uint64 `json:"size"`
	RootHash string `json:"rootHash"`
}

// NewStatement builds the statement for claim c, signed by the co-processor
// described by cp, at time t (truncated to the second, UTC).
func NewStatement(c Claim, cp CoprocessorState, t time.Time) (*Statement, error) {
	if err := ValidateClaim(c); err != nil {
		return nil, err
	}
	if cp.AttestedBy == "" {
		cp.AttestedBy = AttestedBySoftware
	}
	st := newStatement(c, cp, t)
	if err := st.Validate(); err != nil {
		return nil, err
	}
	return st, nil
}

func newStatement(c Claim, cp CoprocessorState, t time.Time) *Statement {
	return &Statement{
		Type: StatementType,
		Subject: []Subject{{
			Name:   SubjectPrefix + c.VMID,
			Digest: Digest{SHA256: hex.EncodeToString(c.Root[:])},
		}},
		PredicateType: PredicateType,
		Predicate: Predicate{
			ConfigSchema: claimSchema(c),
			LeafCount:    uint64(len(c.Parameters)),
			Parameters:   append([]string{}, c.Parameters...),
			Coprocessor:  cp,
			Time:         t.UTC().Truncate(time.Second).Format(TimeLayout),
			Freshness: Freshness{
				Origin:   c.Freshness.Origin,
				Size:     c.Freshness.Size,
				RootHash: base64.StdEncoding.EncodeToString(c.Freshness.Root[:]),
			},
		},
	}
}

// claimSchema is c's schema, ConfigSchema when c names none.
func claimSchema(c Claim) string {
	if c.ConfigSchema == "" {
		return ConfigSchema
	}
	return c.ConfigSchema
}

func knownSchema(s string) bool { return s == ConfigSchema || s == ConfigSchemaV2 }

// ValidateClaim reports whether c can become a valid statement whose envelope
// fits in MaxEnvelopeSize whatever the counter and signature. Errors wrap
// ErrInvalidClaim (and ErrTooLarge when it would not fit).
func ValidateClaim(c Claim) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidClaim, fmt.Sprintf(format, args...))
	}
	if err := checkName(c.VMID); err != nil {
		return fail("vm id: %v", err)
	}
	if !knownSchema(claimSchema(c)) {
		return fail("config schema %q, want %q or %q", c.ConfigSchema, ConfigSchema, ConfigSchemaV2)
	}
	if len(c.Parameters) == 0 {
		return fail("no parameters")
	}
	if len(c.Parameters) > MaxParameters {
		return fail("%d parameters, at most %d", len(c.Parameters), MaxParameters)
	}
	for i, p := range c.Parameters {
		if err := checkParam(p); err != nil {
			return fail("parameter %d: %v", i, err)
		}
		if i > 0 && c.Parameters[i-1] >= p {
			return fail("parameters not sorted or repeated at %q", p)
		}
	}
	if err := checkName(c.Freshness.Origin); err != nil {
		return fail("freshness origin: %v", err)
	}
	if c.Freshness.Size > MaxSafeInteger {
		return fail("freshness size %d too large", c.Freshness.Size)
	}
	// The largest envelope this claim can produce: the largest counter and
	// the longest signature (DER ECDSA P-256 is at most 72 bytes).
	worst := newStatement(c, CoprocessorState{
		KeyID: strings.Repeat("f", 64), Counter: MaxSafeInteger,
		RootNVIndex: 0xffffffff, CounterNVIndex: 0xffffffff,
		AttestedBy: AttestedByTPM, Evidence: base64.StdEncoding.EncodeToString(make([]byte, MaxEvidenceSize)),
	}, time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC))
	payload, err := worst.Canonical()
	if err != nil {
		return fail("%v", err)
	}
	env := &Envelope{PayloadType: PayloadType, Payload: payload,
		Signatures: []Signature{{KeyID: worst.Predicate.Coprocessor.KeyID, Sig: make([]byte, 72)}}}
	if b := env.encode(); len(b) > MaxEnvelopeSize {
		return fmt.Errorf("%w: %w: envelope would be %d bytes, at most %d", ErrInvalidClaim, ErrTooLarge, len(b), MaxEnvelopeSize)
	}
	return nil
}

// checkName accepts VM ids and origins: 1..MaxNameLen bytes of printable
// UTF-8 without spaces.
func checkName(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%d bytes, at most %d", len(s), MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("not UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("character %U not allowed", r)
		}
	}
	return nil
}

// checkParam accepts parameter names: 1..MaxNameLen printable ASCII bytes
// without spaces (the registered names of package agent/measure are such).
func checkParam(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%d bytes, at most %d", len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return fmt.Errorf("byte 0x%02x not allowed", s[i])
		}
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Validate checks every rule of the format that JSON decoding does not:
// constants, one subject, hex and base64 forms, sorted parameters, the leaf
// count, integer bounds and the time format. Errors are *FormatError wrapping
// ErrInvalidField (or ErrBadBase64).
func (st *Statement) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FormatError{Object: "statement", Field: field, Err: ErrInvalidField, Detail: fmt.Sprintf(format, args...)}
	}
	if st.Type != StatementType {
		return bad("_type", "got %q, want %q", st.Type, StatementType)
	}
	if len(st.Subject) != 1 {
		return bad("subject", "%d subjects, want exactly 1", len(st.Subject))
	}
	name, ok := strings.CutPrefix(st.Subject[0].Name, SubjectPrefix)
	if !ok {
		return bad("subject[0].name", "does not start with %q", SubjectPrefix)
	}
	if err := checkName(name); err != nil {
		return bad("subject[0].name", "vm id: %v", err)
	}
	if !isLowerHex(st.Subject[0].Digest.SHA256, 64) {
		return bad("subject[0].digest.sha256", "want 64 lowercase hex digits")
	}
	if st.PredicateType != PredicateType && st.PredicateType != PredicateTypeV1 {
		return bad("predicateType", "got %q, want %q", st.PredicateType, PredicateType)
	}
	p := &st.Predicate
	if !knownSchema(p.ConfigSchema) {
		return bad("predicate.configSchema", "got %q, want %q or %q", p.ConfigSchema, ConfigSchema, ConfigSchemaV2)
	}
	if len(p.Parameters) == 0 || len(p.Parameters) > MaxParameters {
		return bad("predicate.parameters", "%d parameters, want 1..%d", len(p.Parameters), MaxParameters)
	}
	for i, n := range p.Parameters {
		if err := checkParam(n); err != nil {
			return bad(fmt.Sprintf("predicate.parameters[%d]", i), "%v", err)
		}
		if i > 0 && p.Parameters[i-1] >= n {
			return bad(fmt.Sprintf("predicate.parameters[%d]", i), "not sorted or repeated")
		}
	}
	if p.LeafCount != uint64(len(p.Parameters)) {
		return bad("predicate.leafCount", "%d, but %d parameters", p.LeafCount, len(p.Parameters))
	}
	if !isLowerHex(p.Coprocessor.KeyID, 64) {
		return bad("predicate.coprocessor.keyid", "want 64 lowercase hex digits")
	}
	if p.Coprocessor.Counter > MaxSafeInteger {
		return bad("predicate.coprocessor.counter", "greater than 2^53-1")
	}
	if err := st.validateAttestedBy(); err != nil {
		return err
	}
	if t, err := time.Parse(TimeLayout, p.Time); err != nil || t.Format(TimeLayout) != p.Time {
		return bad("predicate.time", "%q is not RFC 3339 UTC with seconds (%s)", p.Time, TimeLayout)
	}
	if err := checkName(p.Freshness.Origin); err != nil {
		return bad("predicate.freshness.origin", "%v", err)
	}
	if p.Freshness.Size > MaxSafeInteger {
		return bad("predicate.freshness.size", "greater than 2^53-1")
	}
	if h, err := decodeBase64(p.Freshness.RootHash); err != nil || len(h) != 32 {
		return &FormatError{Object: "statement", Field: "predicate.freshness.rootHash", Err: ErrBadBase64, Detail: "want standard base64 of 32 bytes"}
	}
	return nil
}

// VMID returns the VM id of the subject (without the "vm:" prefix).
func (st *Statement) VMID() string {
	if len(st.Subject) == 0 {
		return ""
	}
	return strings.TrimPrefix(st.Subject[0].Name, SubjectPrefix)
}

// ConfigRoot returns the attested configuration root. Call it on a validated
// statement; otherwise it may return zeros.
func (st *Statement) ConfigRoot() [32]byte {
	var r [32]byte
	if len(st.Subject) == 1 {
		hex.Decode(r[:], []byte(st.Subject[0].Digest.SHA256))
	}
	return r
}

// Anchor returns the freshness anchor in typed form (zeros if invalid).
func (st *Statement) Anchor() Anchor {
	a := Anchor{Origin: st.Predicate.Freshness.Origin, Size: st.Predicate.Freshness.Size}
	if h, err := decodeBase64(st.Predicate.Freshness.RootHash); err == nil && len(h) == 32 {
		copy(a.Root[:], h)
	}
	return a
}

// Time returns the statement time (zero if invalid).
func (st *Statement) Time() time.Time {
	t, _ := time.Parse(TimeLayout, st.Predicate.Time)
	return t
}

// Canonical returns the canonical encoding: compact JSON, fields in the order
// of the Go structs, no HTML escaping. It validates first.
func (st *Statement) Canonical() ([]byte, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	return marshalCanonical(st)
}

// ParseStatement parses a statement strictly: valid UTF-8 JSON, no duplicate
// or unknown keys, right types, every rule of Validate, and the input must be
// exactly the canonical encoding.
func ParseStatement(b []byte) (*Statement, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, &FormatError{Object: "statement", Err: ErrTooLarge, Detail: fmt.Sprintf("%d bytes", len(b))}
	}
	if st, ok := parseCanonicalStatement(b); ok {
		return st, nil
	}
	return parseStatementStrict(b)
}

// parseStatementStrict is ParseStatement with the precise error.
func parseStatementStrict(b []byte) (*Statement, error) {
	var st Statement
	if err := decodeStrict("statement", b, &st); err != nil {
		return nil, err
	}
	if err := st.Validate(); err != nil {
		return nil, err
	}
	c, err := marshalCanonical(&st)
	if err != nil {
		return nil, err
	}
	if string(c) != string(b) {
		return nil, &FormatError{Object: "statement", Err: ErrNotCanonical, Detail: "bytes differ from the canonical encoding"}
	}
	return &st, nil
}

// validateAttestedBy checks attestedBy and evidence against the predicate
// version: absent in v1; in v2 either software without evidence, or TPM
// evidence of 1..MaxEvidenceSize bytes in canonical base64 with both NV
// indexes named. The evidence's own structure is checked by its verifier.
func (st *Statement) validateAttestedBy() error {
	c := &st.Predicate.Coprocessor
	bad := func(field, format string, args ...any) error {
		return &FormatError{Object: "statement", Field: "predicate.coprocessor." + field, Err: ErrInvalidField, Detail: fmt.Sprintf(format, args...)}
	}
	if st.PredicateType == PredicateTypeV1 {
		if c.AttestedBy != "" || c.Evidence != "" {
			return bad("attestedBy", "not part of predicate v1")
		}
		return nil
	}
	switch c.AttestedBy {
	case AttestedBySoftware:
		if c.Evidence != "" {
			return bad("evidence", "a software-attested statement carries no evidence")
		}
	case AttestedByTPM:
		ev, err := decodeBase64(c.Evidence)
		if err != nil || len(ev) == 0 || len(ev) > MaxEvidenceSize {
			return &FormatError{Object: "statement", Field: "predicate.coprocessor.evidence", Err: ErrBadBase64, Detail: fmt.Sprintf("want standard base64 of 1..%d bytes", MaxEvidenceSize)}
		}
		if c.RootNVIndex == 0 || c.CounterNVIndex == 0 {
			return bad("rootNVIndex", "TPM evidence needs both NV indexes")
		}
	default:
		return bad("attestedBy", "got %q, want %q or %q", c.AttestedBy, AttestedByTPM, AttestedBySoftware)
	}
	return nil
}

// EvidenceBytes returns the decoded TPM evidence (nil if there is none).
func (st *Statement) EvidenceBytes() []byte {
	b, err := decodeBase64(st.Predicate.Coprocessor.Evidence)
	if err != nil || len(b) == 0 {
		return nil
	}
	return b
}
