// Package coproc defines the attestation a trusted co-processor makes about a
// VM configuration (see also docs/formats.md), and the CoProcessor interface
// that produces it. The format code here is pure: it does no I/O. Backends live in
// coproc/tpm (TPM 2.0: device, swtpm, simulator via coproc/tpmsim) and
// coproc/soft (a software key); coproc/spec opens one from a SPEC string.
//
// # The attestation
//
// An attestation is a DSSE envelope (github.com/secure-systems-lab/dsse)
// around an in-toto Statement v1 (github.com/in-toto/attestation, spec v1):
//
//	{"payloadType":"application/vnd.in-toto+json",
//	 "payload":"<standard base64 of the statement>",
//	 "signatures":[{"keyid":"<lowercase hex SHA-256 of the DER SPKI>","sig":"<standard base64>"}]}
//
// The signature covers the DSSE pre-authentication encoding
//
//	PAE = "DSSEv1" SP len(payloadType) SP payloadType SP len(payload) SP payload
//
// (lengths in ASCII decimal): ECDSA P-256 over SHA-256(PAE) as an ASN.1 DER
// (r, s) with s ≤ n/2 — TPM keys and soft ECDSA keys — or Ed25519 over PAE —
// soft keys only. There is exactly one signature.
//
// The statement has one subject, the VM and its configuration root, and the
// predicate https://vmledger.dev/attestation/vm-config/v2:
//
//	_type          "https://in-toto.io/Statement/v1"
//	subject        [{"name": "vm:<vm id>", "digest": {"sha256": "<hex config root>"}}]
//	predicateType  "https://vmledger.dev/attestation/vm-config/v2"
//	predicate
//	  configSchema   "vmledger/config/v1" or "vmledger/config/v2" — how the config tree is built
//	                 (package agent/measure); the agent writes v2, v1 statements stay valid.
//	                 Not the predicate's version: see Versions
//	  leafCount      number of leaves of the config tree = len(parameters)
//	  parameters     the leaf names, sorted bytewise, unique; never values
//	  coprocessor
//	    keyid          = the DSSE signature's keyid
//	    counter        the co-processor's monotonic counter after this attestation
//	    rootNVIndex    TPM NV index holding the root (0 for a software key)
//	    counterNVIndex TPM NV counter index (0 for a software key)
//	    attestedBy     "tpm2-nv-certify" (TPM evidence follows) or "software"
//	    evidence       tpm2-nv-certify only: standard base64 of the TPM evidence
//	  time           RFC 3339 UTC, seconds: "2026-11-28T12:00:00Z"
//	  freshness      a checkpoint of the log the statement was made after:
//	    origin         the log's origin line
//	    size           tree size
//	    rootHash       standard base64 of the 32-byte root hash
//
// The time is the host's clock and informational; what proves recency is the
// freshness anchor, and what orders a key's statements is the counter.
//
// # Versions
//
// Predicate v2 (this) added attestedBy and evidence. Statements of predicate
// https://vmledger.dev/attestation/vm-config/v1 (the same object without
// those two members) still parse; what vouches for their root and counter is
// only the signature, so verifiers accept them only where their policy opts
// in (a trust file's `v1`).
//
// The predicate's version is not the configuration schema. The predicate
// (vm-config/v1, vm-config/v2) says what the statement carries about the
// co-processor; configSchema (vmledger/config/v1, vmledger/config/v2) says
// how the configuration tree under the root was built. They change
// independently: a statement of either predicate may name either schema.
//
// # TPM evidence (attestedBy "tpm2-nv-certify")
//
// The TPM's own word that it holds the root and the counter: after writing
// the root and incrementing the counter, the co-processor runs
// TPM2_NV_Certify of each index with its restricted attestation key (AK),
// qualifying data = the binding digest
//
//	SHA-256("vmledger tpm evidence v1" 0x00 ‖ keyid (32 bytes, from hex)
//	        ‖ u16 len(vm id) ‖ vm id ‖ root (32) ‖ u64 counter
//	        ‖ u16 len(origin) ‖ origin ‖ u64 size ‖ anchor root (32))
//
// (integers big-endian). The evidence bytes, version 1:
//
//	offset  size  field
//	0       1     0x01 (version)
//	1       2     n1 = len(A1)
//	3       n1    A1: TPMS_ATTEST of TPM2_NV_Certify of the root index (32 bytes
//	              at offset 0), as the TPM returned it in its TPM2B_ATTEST
//	3+n1    2     m1 = len(S1)
//	5+n1    m1    S1: the AK's TPMT_SIGNATURE over SHA-256(A1) (ECDSA, SHA-256)
//	…       2+n2  A2: TPMS_ATTEST of TPM2_NV_Certify of the counter index (8 bytes)
//	…       2+m2  S2: its TPMT_SIGNATURE
//
// and nothing after. Each TPMS_ATTEST is: magic 0xff544347 (TPM_GENERATED_VALUE),
// type 0x8014 (TPM_ST_ATTEST_NV), qualifiedSigner (TPM2B_NAME), extraData
// (TPM2B_DATA: the binding digest), clockInfo (clock u64, resetCount u32,
// restartCount u32, safe u8), firmwareVersion u64, then TPMS_NV_CERTIFY_INFO:
// indexName (TPM2B_NAME), offset u16, nvContents (TPM2B_MAX_NV_BUFFER). Package
// coproc/evidence verifies it against the enrolled identity (the AK's public
// area and the indexes' Names); this package only checks that it is base64 of
// 1..MaxEvidenceSize bytes.
//
// Integers are at most 2^53−1, so that every JSON reader reads them exactly.
// VM ids and origins are 1–255 bytes of printable UTF-8 without spaces;
// parameter names 1–255 bytes of printable ASCII without spaces.
//
// # Canonical encoding
//
// Both the statement and the envelope are encoded as compact JSON with the
// fields in the order shown above, no insignificant whitespace, no HTML
// escaping, and standard padded base64. The log entry is exactly the canonical
// envelope, at most 65,535 bytes (MaxEnvelopeSize). ParseEnvelope and
// ParseStatement accept only canonical input, so one statement has one entry
// per signature; with low-s ECDSA nobody but the key holder can make another.
// Rejections are *FormatError values wrapping ErrTooLarge, ErrMalformed,
// ErrDuplicateKey, ErrUnknownField, ErrWrongType, ErrBadBase64,
// ErrNotCanonical or ErrInvalidField.
//
// # Worked example
//
// testdata/golden-ed25519.json, pinned by TestGolden (a software key, so
// attestedBy "software"; testdata/golden-v1-ed25519.json is the same claim
// as predicate v1): the Ed25519 key from the
// seed 0x03 × 32 (key id
// 8cef065b7af83669150b7d32704d3d3e75c3e9aee0d4f6740544c68e81b377aa) attests
// VM "web-01" with root SHA-256("example config"), three parameters,
// counter 7, after the checkpoint (example.com/ledger, 8,
// vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=). The payload (one line in
// the entry, wrapped here) is
//
//	{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"vm:web-01",
//	"digest":{"sha256":"1e28f6dba8456d2c98ef3da5bda8d2793bd76ef221a3bff70fa8d2beb0b8adc2"}}],
//	"predicateType":"https://vmledger.dev/attestation/vm-config/v2","predicate":{
//	"configSchema":"vmledger/config/v1","leafCount":3,
//	"parameters":["cpu.count","kernel.cmdline","memory.bytes"],
//	"coprocessor":{"keyid":"8cef065b7af83669150b7d32704d3d3e75c3e9aee0d4f6740544c68e81b377aa",
//	"counter":7,"rootNVIndex":16779776,"counterNVIndex":16779777,"attestedBy":"software"},
//	"time":"2026-11-28T12:00:00Z","freshness":{"origin":"example.com/ledger","size":8,
//	"rootHash":"vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk="}}}
//
// (16779776 = 0x01000A00, the TPM backend's default root index) and the entry
// is
//
//	{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6Imh0…fQ==",
//	"signatures":[{"keyid":"8cef065b7af83669150b7d32704d3d3e75c3e9aee0d4f6740544c68e81b377aa",
//	"sig":"Qg33TK/thPFNNwfLIFm6XtjCm65R0beybImWIe7lPjMtAUmgogqQK5T/lvNaXte6+l7IMNwPSgKKpcpOviGSCA=="}]}
//
// # Verifying
//
// A verifier parses the entry (ParseEnvelope), checks the signature with the
// enrolled key (Verify, or VerifyStatement which also parses the statement and
// checks that the predicate names the same key), checks the TPM evidence
// (coproc/evidence.Verify) or its policy on software-attested and v1
// statements, then applies its own policy:
// counter strictly greater than the last one admitted for the key, freshness
// anchor recent, root equal to the expected configuration's.
//
// Note for users of other DSSE libraries: go-securesystemslib and sigstore
// compute default key ids from the SSH wire form of a key, not from the DER
// SPKI as here; give them our key id explicitly (sigstore's
// dsse.VerifierAdapter.PubKeyID) or they will skip the signature.
package coproc
