// Package evidence is the TPM's own testimony in a vm-config v2 statement:
// what makes the configuration root and the counter facts the TPM vouches
// for, not claims the host writes. It is pure: no I/O.
//
// # What the TPM attests
//
// After writing the root to the root NV index and incrementing the counter
// index, the co-processor runs TPM2_NV_Certify (TCG TPM 2.0 Library Part 3
// §31.16) twice, with its attestation key (AK): once over the root index
// (offset 0, 32 bytes) and once over the counter index (offset 0, 8 bytes).
// Each returns a TPM-generated TPMS_ATTEST (Part 2 §10.12.12) — magic
// TPM_GENERATED_VALUE, type TPM_ST_ATTEST_NV, the index's Name, the
// certified bytes, the TPM clock — and the AK's signature over it. The AK
// is restricted: the TPM signs with it only structures it generated itself,
// or digests it computed of data that does not start with
// TPM_GENERATED_VALUE, so nobody can make it sign a TPMS_ATTEST that the TPM
// did not produce. Both commands carry the same qualifyingData (extraData
// in the TPMS_ATTEST): the binding digest of the statement (Binding).
//
// # Binding digest (extraData), 32 bytes
//
//	SHA-256( "vmledger tpm evidence v1" 0x00
//	       ‖ keyid        32 bytes: the statement key id, decoded from hex
//	       ‖ len(vm id)   2 bytes big-endian ‖ vm id (UTF-8)
//	       ‖ root         32 bytes: the configuration root
//	       ‖ counter      8 bytes big-endian
//	       ‖ len(origin)  2 bytes big-endian ‖ freshness origin
//	       ‖ size         8 bytes big-endian: freshness tree size
//	       ‖ anchor root  32 bytes: freshness root hash )
//
// So evidence made for one statement proves nothing for another: another
// VM, root, counter, anchor or key changes the digest.
//
// # Evidence encoding, version 1 (statement field coprocessor.evidence,
// standard base64 of these bytes)
//
//	offset  size  field
//	0       1     version: 0x01
//	1       2     n1: length of A1, big-endian
//	3       n1    A1: the root index's TPMS_ATTEST, exactly the bytes of the
//	              TPM2B_ATTEST the TPM returned (without its size prefix)
//	3+n1    2     m1: length of S1
//	5+n1    m1    S1: the AK's TPMT_SIGNATURE over SHA-256(A1), as the TPM
//	              returned it: sigAlg 0x0018 (ECDSA) ‖ hash 0x000B (SHA-256)
//	              ‖ 2-byte length ‖ r ‖ 2-byte length ‖ s
//	…       2     n2, then A2: the counter index's TPMS_ATTEST
//	…       2     m2, then S2: its TPMT_SIGNATURE
//
// Nothing may follow. Every TPMS_ATTEST and TPMT_SIGNATURE must re-marshal
// (github.com/google/go-tpm/tpm2) to exactly its bytes, so the encoding is
// canonical.
//
// # Identity (what is enrolled)
//
// The verifier must know the AK and the two indexes. An Identity is
//
//	2 bytes length ‖ the AK's TPMT_PUBLIC (Part 2 §12.2.4)
//	2 bytes length ‖ the root index's Name
//	2 bytes length ‖ the counter index's Name
//
// An NV index's Name is nameAlg ‖ H(TPMS_NV_PUBLIC): it commits to the
// index handle, its attributes (including TPMA_NV_WRITTEN, set here since
// certification follows a write) and its authorization policy, so a
// certification of an index defined with other attributes, or of another
// index, does not match. The Identity travels as standard base64 after
// "tpm=" on a trust-file coprocessor line, as the PEM block
// "VMLEDGER TPM IDENTITY" after the PUBLIC KEY block in what
// `vmledger coproc info` prints, and in the log's enrolment record.
//
// # Verification (Verify)
//
// In order, each failure an *Error naming the part: the identity (AK
// public area: ECC P-256, ECDSA/SHA-256, restricted, sign-only, fixedTPM,
// fixedParent, sensitiveDataOrigin), the encoding; then for the root and
// then the counter certification: the AK's ECDSA signature over SHA-256 of
// the TPMS_ATTEST, magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_NV, the
// certified index Name equal to the enrolled one, offset 0 and the
// certified bytes equal to the statement's root (32 bytes) or counter (8
// bytes big-endian); then for both: extraData equal to the binding digest
// and clockInfo.safe YES. Finally both certifications must come from the
// same TPM boot (equal resetCount, restartCount and firmwareVersion, and
// the counter's clock not before the root's).
//
// The clock values in TPMS_ATTEST are obfuscated by the TPM when the AK is
// not in the endorsement or platform hierarchy (ours is a child of the
// owner-hierarchy SRK): resetCount, restartCount and firmwareVersion are
// offset by a per-key constant. They still compare between attestations
// of the same AK, which is what Report is for.
package evidence

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/vmledger/vmledger/coproc"
)

// Version is the evidence encoding's version byte.
const Version = 1

// PEMType is the PEM block type of an Identity.
const PEMType = "VMLEDGER TPM IDENTITY"

// bindingLabel starts the binding digest's preimage.
const bindingLabel = "vmledger tpm evidence v1\x00"

// Sentinels, wrapped by *Error.
var (
	ErrMissing      = errors.New("no TPM evidence")
	ErrIdentity     = errors.New("bad enrolled identity")
	ErrEncoding     = errors.New("malformed evidence")
	ErrSignature    = errors.New("attestation key signature does not verify")
	ErrNotTPM       = errors.New("not a TPM-generated NV certification")
	ErrIndexName    = errors.New("certified NV index is not the enrolled one")
	ErrRoot         = errors.New("certified root differs from the statement's")
	ErrCounter      = errors.New("certified counter differs from the statement's")
	ErrExtraData    = errors.New("extraData does not bind this statement")
	ErrClock        = errors.New("TPM clock not safe")
	ErrInconsistent = errors.New("root and counter certifications are from different TPM boots")
)

// Error says which part of the evidence failed and why.
type Error struct {
	Part   string // "identity", "encoding", "root certification", "counter certification", "evidence"
	Err    error  // a sentinel above
	Detail string
}

func (e *Error) Error() string {
	s := "tpm evidence: " + e.Part + ": " + e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func fail(part string, err error, format string, args ...any) error {
	return &Error{Part: part, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// Identity is what a verifier enrols for a TPM co-processor besides its
// statement key.
type Identity struct {
	// AKPublic is the attestation key's TPMT_PUBLIC, marshalled.
	AKPublic []byte
	// RootNVName and CounterNVName are the Names of the NV indexes as
	// written (TPMA_NV_WRITTEN set).
	RootNVName    []byte
	CounterNVName []byte

	// ak caches the checked AK of an Identity made by ParseIdentity (whose
	// fields must then not change).
	ak *ecdsa.PublicKey
}

// Marshal returns the Identity's bytes (see the package doc).
func (id *Identity) Marshal() []byte {
	var b []byte
	for _, f := range [][]byte{id.AKPublic, id.RootNVName, id.CounterNVName} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// String is the standard base64 of Marshal.
func (id *Identity) String() string { return base64.StdEncoding.EncodeToString(id.Marshal()) }

// PEM returns the Identity as a PEM block of type PEMType.
func (id *Identity) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMType, Bytes: id.Marshal()})
}

// ParseIdentity parses the bytes of Marshal strictly and checks the AK.
func ParseIdentity(b []byte) (*Identity, error) {
	var fields [3][]byte
	rest := b
	for i := range fields {
		if len(rest) < 2 {
			return nil, fail("identity", ErrIdentity, "truncated")
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+n || n == 0 {
			return nil, fail("identity", ErrIdentity, "field %d: bad length %d", i, n)
		}
		fields[i], rest = rest[2:2+n], rest[2+n:]
	}
	if len(rest) != 0 {
		return nil, fail("identity", ErrIdentity, "%d bytes after the last field", len(rest))
	}
	id := &Identity{AKPublic: bytes.Clone(fields[0]), RootNVName: bytes.Clone(fields[1]), CounterNVName: bytes.Clone(fields[2])}
	ak, err := id.AK()
	if err != nil {
		return nil, err
	}
	id.ak = ak
	for _, n := range [][]byte{id.RootNVName, id.CounterNVName} {
		if len(n) != 2+sha256.Size || binary.BigEndian.Uint16(n) != uint16(tpm2.TPMAlgSHA256) {
			return nil, fail("identity", ErrIdentity, "NV Name %x is not a SHA-256 Name", n)
		}
	}
	return id, nil
}

// ParseIdentityString parses the standard base64 form.
func ParseIdentityString(s string) (*Identity, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fail("identity", ErrIdentity, "not standard base64: %v", err)
	}
	return ParseIdentity(b)
}

// FindPEM returns the Identity in the first PEMType block of text, or nil
// if there is none.
func FindPEM(text []byte) (*Identity, error) {
	for {
		var blk *pem.Block
		blk, text = pem.Decode(text)
		if blk == nil {
			return nil, nil
		}
		if blk.Type == PEMType {
			return ParseIdentity(blk.Bytes)
		}
	}
}

// AKTemplate is the attestation key's public area without its point: ECC
// P-256, ECDSA/SHA-256, restricted signing, fixedTPM, fixedParent,
// sensitiveDataOrigin, userWithAuth, noDA.
var AKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme: tpm2.TPMTECCScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
		},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// AK parses the AK's public area, checks it is AKTemplate with a valid
// P-256 point, and returns the key.
func (id *Identity) AK() (*ecdsa.PublicKey, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](id.AKPublic)
	if err != nil {
		return nil, fail("identity", ErrIdentity, "AK public area: %v", err)
	}
	if !bytes.Equal(tpm2.Marshal(pub), id.AKPublic) {
		return nil, fail("identity", ErrIdentity, "AK public area has trailing or non-canonical bytes")
	}
	got := *pub
	got.Unique = AKTemplate.Unique
	if !bytes.Equal(tpm2.Marshal(got), tpm2.Marshal(AKTemplate)) {
		return nil, fail("identity", ErrIdentity, "the AK is not a restricted ECC P-256 ECDSA/SHA-256 fixedTPM signing key")
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fail("identity", ErrIdentity, "AK: %v", err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fail("identity", ErrIdentity, "AK is not on P-256")
	}
	if _, err := ek.ECDH(); err != nil {
		return nil, fail("identity", ErrIdentity, "AK is not a valid P-256 point")
	}
	return ek, nil
}

// Binding returns the binding digest (extraData) of a statement's VM id,
// root, counter, freshness anchor and key id.
func Binding(keyID string, vmID string, root [32]byte, counter uint64, a coproc.Anchor) ([32]byte, error) {
	kid, err := hex.DecodeString(keyID)
	if err != nil || len(kid) != 32 {
		return [32]byte{}, fmt.Errorf("evidence: key id %q is not 64 hex digits", keyID)
	}
	if len(vmID) > 0xffff || len(a.Origin) > 0xffff {
		return [32]byte{}, fmt.Errorf("evidence: vm id or origin too long")
	}
	b := []byte(bindingLabel)
	b = append(b, kid...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(vmID)))
	b = append(b, vmID...)
	b = append(b, root[:]...)
	b = binary.BigEndian.AppendUint64(b, counter)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Origin)))
	b = append(b, a.Origin...)
	b = binary.BigEndian.AppendUint64(b, a.Size)
	b = append(b, a.Root[:]...)
	return sha256.Sum256(b), nil
}

// StatementBinding is Binding of a validated statement.
func StatementBinding(st *coproc.Statement) ([32]byte, error) {
	return Binding(st.Predicate.Coprocessor.KeyID, st.VMID(), st.ConfigRoot(), st.Predicate.Coprocessor.Counter, st.Anchor())
}

// Certification is one TPM2_NV_Certify result: the TPMS_ATTEST bytes and
// the TPMT_SIGNATURE bytes.
type Certification struct {
	Attest    []byte
	Signature []byte
}

// Evidence is the decoded evidence: the root's and the counter's
// certification.
type Evidence struct {
	Root, Counter Certification
}

// Marshal encodes e (see the package doc).
func (e *Evidence) Marshal() []byte {
	b := []byte{Version}
	for _, f := range [][]byte{e.Root.Attest, e.Root.Signature, e.Counter.Attest, e.Counter.Signature} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// Parse decodes the evidence bytes strictly (lengths and version only; the
// contents are checked by Verify).
func Parse(b []byte) (*Evidence, error) {
	if len(b) == 0 {
		return nil, fail("encoding", ErrMissing, "empty")
	}
	if b[0] != Version {
		return nil, fail("encoding", ErrEncoding, "version %d, want %d", b[0], Version)
	}
	var f [4][]byte
	rest := b[1:]
	for i := range f {
		if len(rest) < 2 {
			return nil, fail("encoding", ErrEncoding, "truncated before field %d", i)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n == 0 || len(rest) < 2+n {
			return nil, fail("encoding", ErrEncoding, "field %d: bad length %d", i, n)
		}
		f[i], rest = rest[2:2+n], rest[2+n:]
	}
	if len(rest) != 0 {
		return nil, fail("encoding", ErrEncoding, "%d bytes after the last field", len(rest))
	}
	return &Evidence{Root: Certification{f[0], f[1]}, Counter: Certification{f[2], f[3]}}, nil
}

// Report is what the evidence says about the TPM, for the verifier's
// report. Values are those of the counter certification (the later one);
// see the package doc on obfuscation.
type Report struct {
	FirmwareVersion uint64 `json:"firmware_version"`
	Clock           uint64 `json:"clock_ms"`
	ResetCount      uint32 `json:"reset_count"`
	RestartCount    uint32 `json:"restart_count"`
}

func (r *Report) String() string {
	return fmt.Sprintf("firmware %#x, clock %d ms, resetCount %d, restartCount %d", r.FirmwareVersion, r.Clock, r.ResetCount, r.RestartCount)
}

// Verify checks the TPM evidence of st (a validated v2 statement attested by
// AttestedByTPM) against the enrolled identity. Every failure is an *Error.
func Verify(st *coproc.Statement, id *Identity) (*Report, error) {
	ak := id.ak
	if ak == nil {
		var err error
		if ak, err = id.AK(); err != nil {
			return nil, err
		}
	}
	if st.PredicateType != coproc.PredicateType || st.Predicate.Coprocessor.AttestedBy != coproc.AttestedByTPM {
		return nil, fail("evidence", ErrMissing, "the statement is %s, attested by %q", st.PredicateType, st.Predicate.Coprocessor.AttestedBy)
	}
	raw := st.EvidenceBytes()
	if raw == nil {
		return nil, fail("encoding", ErrMissing, "no evidence in the statement")
	}
	ev, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	binding, err := StatementBinding(st)
	if err != nil {
		return nil, fail("evidence", ErrExtraData, "%v", err)
	}
	root := st.ConfigRoot()
	ctr := binary.BigEndian.AppendUint64(nil, st.Predicate.Coprocessor.Counter)
	// What is certified first, then whether it was certified for this
	// statement: a replayed certification is reported as the value it
	// certifies, which is what the reader needs to know.
	ra, err := checkCert("root certification", ev.Root, ak, id.RootNVName, root[:], ErrRoot)
	if err != nil {
		return nil, err
	}
	ca, err := checkCert("counter certification", ev.Counter, ak, id.CounterNVName, ctr, ErrCounter)
	if err != nil {
		return nil, err
	}
	for _, c := range []struct {
		part string
		att  *tpm2.TPMSAttest
	}{{"root certification", ra}, {"counter certification", ca}} {
		if !bytes.Equal(c.att.ExtraData.Buffer, binding[:]) {
			return nil, fail(c.part, ErrExtraData, "extraData %x, want %x", c.att.ExtraData.Buffer, binding[:])
		}
		if !c.att.ClockInfo.Safe {
			return nil, fail(c.part, ErrClock, "clockInfo.safe is NO: the clock may have gone back")
		}
	}
	if ra.ClockInfo.ResetCount != ca.ClockInfo.ResetCount || ra.ClockInfo.RestartCount != ca.ClockInfo.RestartCount ||
		ra.FirmwareVersion != ca.FirmwareVersion || ra.ClockInfo.Clock > ca.ClockInfo.Clock {
		return nil, fail("evidence", ErrInconsistent, "root: reset %d restart %d clock %d; counter: reset %d restart %d clock %d",
			ra.ClockInfo.ResetCount, ra.ClockInfo.RestartCount, ra.ClockInfo.Clock, ca.ClockInfo.ResetCount, ca.ClockInfo.RestartCount, ca.ClockInfo.Clock)
	}
	return &Report{FirmwareVersion: ca.FirmwareVersion, Clock: ca.ClockInfo.Clock,
		ResetCount: ca.ClockInfo.ResetCount, RestartCount: ca.ClockInfo.RestartCount}, nil
}

func checkCert(part string, c Certification, ak *ecdsa.PublicKey, name, want []byte, wrong error) (*tpm2.TPMSAttest, error) {
	// The signature first: nothing in an unsigned TPMS_ATTEST counts.
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](c.Signature)
	if err != nil || !bytes.Equal(tpm2.Marshal(sig), c.Signature) {
		return nil, fail(part, ErrEncoding, "TPMT_SIGNATURE does not parse canonically")
	}
	es, err := sig.Signature.ECDSA()
	if err != nil || sig.SigAlg != tpm2.TPMAlgECDSA || es.Hash != tpm2.TPMAlgSHA256 {
		return nil, fail(part, ErrSignature, "not an ECDSA/SHA-256 signature")
	}
	d := sha256.Sum256(c.Attest)
	r, s := new(big.Int).SetBytes(es.SignatureR.Buffer), new(big.Int).SetBytes(es.SignatureS.Buffer)
	if !ecdsa.Verify(ak, d[:], r, s) {
		return nil, fail(part, ErrSignature, "over SHA-256 of the TPMS_ATTEST")
	}
	// A signed structure: the TPM made it (magic, type), of the enrolled
	// index, with the statement's bytes.
	if len(c.Attest) < 6 || binary.BigEndian.Uint32(c.Attest) != uint32(tpm2.TPMGeneratedValue) {
		return nil, fail(part, ErrNotTPM, "magic is not TPM_GENERATED_VALUE")
	}
	if binary.BigEndian.Uint16(c.Attest[4:]) != uint16(tpm2.TPMSTAttestNV) {
		return nil, fail(part, ErrNotTPM, "type %#04x is not TPM_ST_ATTEST_NV", binary.BigEndian.Uint16(c.Attest[4:]))
	}
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](c.Attest)
	if err != nil || !bytes.Equal(tpm2.Marshal(att), c.Attest) {
		return nil, fail(part, ErrEncoding, "TPMS_ATTEST does not parse canonically")
	}
	nv, err := att.Attested.NV()
	if err != nil {
		return nil, fail(part, ErrNotTPM, "%v", err)
	}
	if !bytes.Equal(nv.IndexName.Buffer, name) {
		return nil, fail(part, ErrIndexName, "certified %x, enrolled %x", nv.IndexName.Buffer, name)
	}
	if nv.Offset != 0 || !bytes.Equal(nv.NVContents.Buffer, want) {
		return nil, fail(part, wrong, "certified %x at offset %d, statement %x", nv.NVContents.Buffer, nv.Offset, want)
	}
	return att, nil
}
