// Package coproc defines the attestation a trusted co-processor makes about a
// VM configuration (DESIGN.md §2.2), and the CoProcessor interface that
// produces it. The format code here is pure: it does no I/O. Backends live in
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
// predicate https://vmledger.dev/attestation/vm-config/v1:
//
//	_type          "https://in-toto.io/Statement/v1"
//	subject        [{"name": "vm:<vm id>", "digest": {"sha256": "<hex config root>"}}]
//	predicateType  "https://vmledger.dev/attestation/vm-config/v1"
//	predicate
//	  configSchema   "vmledger/config/v1" or "vmledger/config/v2" — how the config tree is built
//	                 (package agent/measure); the agent writes v2, v1 statements stay valid
//	  leafCount      number of leaves of the config tree = len(parameters)
//	  parameters     the leaf names, sorted bytewise, unique; never values
//	  coprocessor
//	    keyid          = the DSSE signature's keyid
//	    counter        the co-processor's monotonic counter after this attestation
//	    rootNVIndex    TPM NV index holding the root (0 for a software key)
//	    counterNVIndex TPM NV counter index (0 for a software key)
//	  time           RFC 3339 UTC, seconds: "2026-11-28T12:00:00Z"
//	  freshness      a checkpoint of the log the statement was made after:
//	    origin         the log's origin line
//	    size           tree size
//	    rootHash       standard base64 of the 32-byte root hash
//
// The time is the host's clock and informational; what proves recency is the
// freshness anchor, and what orders a key's statements is the counter.
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
// testdata/golden-ed25519.json, pinned by TestGolden: the Ed25519 key from the
// seed 0x03 × 32 (key id
// 8cef065b7af83669150b7d32704d3d3e75c3e9aee0d4f6740544c68e81b377aa) attests
// VM "web-01" with root SHA-256("example config"), three parameters,
// counter 7, after the checkpoint (example.com/ledger, 8,
// vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=). The payload (one line in
// the entry, wrapped here) is
//
//	{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"vm:web-01",
//	"digest":{"sha256":"1e28f6dba8456d2c98ef3da5bda8d2793bd76ef221a3bff70fa8d2beb0b8adc2"}}],
//	"predicateType":"https://vmledger.dev/attestation/vm-config/v1","predicate":{
//	"configSchema":"vmledger/config/v1","leafCount":3,
//	"parameters":["cpu.count","kernel.cmdline","memory.bytes"],
//	"coprocessor":{"keyid":"8cef065b7af83669150b7d32704d3d3e75c3e9aee0d4f6740544c68e81b377aa",
//	"counter":7,"rootNVIndex":16779776,"counterNVIndex":16779777},
//	"time":"2026-11-28T12:00:00Z","freshness":{"origin":"example.com/ledger","size":8,
//	"rootHash":"vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk="}}}
//
// (16779776 = 0x01000A00, the TPM backend's default root index) and the entry
// is
//
//	{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6Imh0…fX0=",
//	"signatures":[{"keyid":"8cef065b7af83669150b7d32704d3d3e75c3e9aee0d4f6740544c68e81b377aa",
//	"sig":"+1wyS0IsyfoXZHbIQIGZQVXGDvZ3GirKSZ8t4va/ItU9bVrV6wx7uLeX1EGUx5ADLRom+8ygrHUYlcNOxwMhBA=="}]}
//
// # Verifying
//
// A verifier parses the entry (ParseEnvelope), checks the signature with the
// enrolled key (Verify, or VerifyStatement which also parses the statement and
// checks that the predicate names the same key), then applies its own policy:
// counter strictly greater than the last one admitted for the key, freshness
// anchor recent, root equal to the expected configuration's.
//
// Note for users of other DSSE libraries: go-securesystemslib and sigstore
// compute default key ids from the SSH wire form of a key, not from the DER
// SPKI as here; give them our key id explicitly (sigstore's
// dsse.VerifierAdapter.PubKeyID) or they will skip the signature.
package coproc
