package admission

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/evidence"
)

// RecordType is the _type of an enrolment record.
const RecordType = "https://vmledger.dev/log/enrolment/v1"

// Actions of an enrolment record.
const (
	ActionEnrol  = "enrol"
	ActionRevoke = "revoke"
)

// MaxNameLen bounds a co-processor's name in bytes.
const MaxNameLen = 255

// Record is an enrolment record: the log entry that enrols or revokes a
// co-processor key. Field order is the canonical order.
type Record struct {
	Type   string `json:"_type"`
	Action string `json:"action"`
	KeyID  string `json:"keyid"`
	// PublicKey is the standard base64 of the key's DER SPKI; enrol only.
	PublicKey string `json:"public_key,omitempty"`
	// Name is the operator's name for the co-processor; enrol only, optional.
	Name string `json:"name,omitempty"`
	// TPMIdentity is the standard base64 of the co-processor's TPM
	// identity (package coproc/evidence: the AK's public area and the NV
	// indexes' Names); enrol only, absent for a key enrolled without one.
	// Its statements must then carry TPM evidence that verifies under it.
	TPMIdentity string `json:"tpm_identity,omitempty"`
	// Time is when the log recorded it: RFC 3339 UTC, seconds.
	Time string `json:"time"`
}

// NewEnrolment returns the record that enrols pub under name at t.
func NewEnrolment(pub crypto.PublicKey, name string, t time.Time) (*Record, error) {
	id, err := coproc.KeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("%w: name: %v", ErrBadKey, err)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return &Record{Type: RecordType, Action: ActionEnrol, KeyID: id,
		PublicKey: base64.StdEncoding.EncodeToString(der), Name: name,
		Time: t.UTC().Format(coproc.TimeLayout)}, nil
}

// NewRevocation returns the record that revokes keyID at t.
func NewRevocation(keyID string, t time.Time) *Record {
	return &Record{Type: RecordType, Action: ActionRevoke, KeyID: keyID, Time: t.UTC().Format(coproc.TimeLayout)}
}

// Marshal returns the canonical encoding: compact JSON in field order,
// without HTML escaping and without a trailing newline.
func (r *Record) Marshal() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		panic("admission: encoding a struct of strings failed: " + err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// Public returns the enrolled public key of an enrol record.
func (r *Record) Public() (crypto.PublicKey, error) {
	der, err := base64.StdEncoding.Strict().DecodeString(r.PublicKey)
	if err != nil {
		return nil, err
	}
	return cryptoutils.UnmarshalPEMToPublicKey(cryptoutils.PEMEncode(cryptoutils.PublicKeyPEMType, der))
}

// IsRecord reports whether entry claims to be an enrolment record (it
// starts with the record's type member). Such an entry is never an
// attestation.
func IsRecord(entry []byte) bool {
	return bytes.HasPrefix(entry, []byte(`{"_type":"`+RecordType+`"`))
}

// ErrAdmissionEntry: a raw entry that admission would read as its own (an
// enrolment record or an attestation envelope).
var ErrAdmissionEntry = errors.New("only admission appends enrolment records and attestations")

// RefuseRawEntry refuses an entry that the index would read as an enrolment
// record or an attestation: anything that starts like a record (IsRecord),
// and any canonical DSSE envelope. A log that takes raw entries (the
// server's test endpoint) must refuse these, or whoever can append raw
// bytes could enrol, revoke or raise a key's counter floor. Errors wrap
// ErrAdmissionEntry.
func RefuseRawEntry(entry []byte) error {
	if IsRecord(entry) {
		return fmt.Errorf("%w: this entry is an enrolment record (use POST or DELETE /v1/coprocessors with the admin token)", ErrAdmissionEntry)
	}
	if _, err := coproc.ParseEnvelope(entry); err == nil {
		return fmt.Errorf("%w: this entry is a DSSE envelope (submit attestations to POST /v1/attestations)", ErrAdmissionEntry)
	}
	return nil
}

// ParseRecord parses an enrolment record strictly: the canonical encoding
// only, a known action, a valid key id (equal to the key's for enrol) and
// time. Errors wrap ErrMalformed.
func ParseRecord(entry []byte) (*Record, error) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(entry))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: enrolment record: %v", ErrMalformed, err)
	}
	if !bytes.Equal(r.Marshal(), entry) {
		return nil, fmt.Errorf("%w: enrolment record is not canonical", ErrMalformed)
	}
	if r.Type != RecordType {
		return nil, fmt.Errorf("%w: enrolment record _type %q", ErrMalformed, r.Type)
	}
	if t, err := time.Parse(coproc.TimeLayout, r.Time); err != nil || t.Format(coproc.TimeLayout) != r.Time {
		return nil, fmt.Errorf("%w: enrolment record time %q", ErrMalformed, r.Time)
	}
	switch r.Action {
	case ActionEnrol:
		pub, err := r.Public()
		if err != nil {
			return nil, fmt.Errorf("%w: enrolment record public_key: %v", ErrMalformed, err)
		}
		id, err := coproc.KeyID(pub)
		if err != nil || id != r.KeyID {
			return nil, fmt.Errorf("%w: enrolment record keyid is not the key's", ErrMalformed)
		}
		if err := checkName(r.Name); err != nil {
			return nil, fmt.Errorf("%w: enrolment record name: %v", ErrMalformed, err)
		}
		if r.TPMIdentity != "" {
			if _, err := evidence.ParseIdentityString(r.TPMIdentity); err != nil {
				return nil, fmt.Errorf("%w: enrolment record tpm_identity: %v", ErrMalformed, err)
			}
		}
	case ActionRevoke:
		if !isKeyID(r.KeyID) || r.PublicKey != "" || r.Name != "" || r.TPMIdentity != "" {
			return nil, fmt.Errorf("%w: revocation record with a bad keyid or extra members", ErrMalformed)
		}
	default:
		return nil, fmt.Errorf("%w: enrolment record action %q", ErrMalformed, r.Action)
	}
	return &r, nil
}

// checkName accepts "" or up to MaxNameLen bytes of printable UTF-8 without
// spaces (so that it can stand in a trust file's coprocessor line).
func checkName(s string) error {
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

// isKeyID reports whether s is 64 lowercase hex digits.
func isKeyID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
