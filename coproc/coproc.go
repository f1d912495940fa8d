package coproc

import (
	"context"
	"crypto"
	"errors"
)

// CoProcessor is a trusted co-processor that records a VM configuration root
// and signs an attestation over it. Implementations: package coproc/tpm (a TPM
// 2.0 through /dev/tpmrm0, swtpm or the simulator) and package coproc/soft (a
// software key, for development and tests).
//
// Contract of Attest:
//
//   - It validates the claim first (ValidateClaim). An invalid claim returns an
//     error wrapping ErrInvalidClaim and changes no state.
//   - It then persists, in this order and before signing, the root (the TPM
//     writes it to its NV index) and an increment of the monotonic counter. The
//     counter value it reads back after the increment goes into the statement.
//   - It then signs the canonical statement and returns an envelope that
//     verifies under PublicKey (implementations check this before returning).
//   - The counter never goes backwards and is never reused, also across
//     restarts and crashes: every successful Attest carries a counter strictly
//     greater than every earlier one of the same key.
//   - If anything fails after the increment (signing, a transport error, a
//     crash), that counter value is burnt: no envelope will ever carry it. This
//     is safe: the log only requires counters to increase strictly, so a gap
//     costs nothing, and a retry gets a fresh, larger value. The root NV index
//     may then hold a root for which no envelope exists; it always holds the root
//     of the latest attempt, not necessarily of the latest envelope.
//   - ctx is checked between device commands. A command already sent to the
//     device is not interrupted; cancellation before the increment leaves the
//     counter untouched, after it burns the value as above.
//   - Device errors are wrapped with %w: TPM response codes stay matchable with
//     errors.Is (for example errors.Is(err, tpm2.TPMRCNVLocked)). Nobody retries
//     inside Attest; the caller decides.
//
// Implementations are safe for concurrent use; Attest calls are serialised.
// PublicKey and KeyID never change for the lifetime of the value. Close
// releases the device or files; the CoProcessor must not be used afterwards.
type CoProcessor interface {
	// Attest records c.Root and returns a signed envelope over a Statement
	// built from c, as described above.
	Attest(ctx context.Context, c Claim) (*Envelope, error)
	// PublicKey returns the signing key's public key: *ecdsa.PublicKey (P-256)
	// or ed25519.PublicKey.
	PublicKey() crypto.PublicKey
	// KeyID returns KeyID(PublicKey()).
	KeyID() string
	// Info reports the co-processor's key and state, for `vmledger coproc info`.
	Info(ctx context.Context) (*Info, error)
	// Close releases the co-processor.
	Close() error
}

// Claim is what the agent asks the co-processor to attest. It stands for the
// design's (vmID, root, freshness) plus the parameter names that the statement
// also carries; the statement's leafCount is len(Parameters), because every
// registered parameter is one leaf of the configuration tree.
type Claim struct {
	// VMID names the VM; the subject becomes "vm:" + VMID.
	VMID string
	// Root is the configuration tree's root.
	Root [32]byte
	// Parameters are the leaf names of the configuration tree, sorted bytewise,
	// each at most once. Never values.
	Parameters []string
	// Freshness is a recent checkpoint of the log.
	Freshness Anchor
	// ConfigSchema is the schema the configuration tree was built under
	// (ConfigSchema or ConfigSchemaV2); "" is ConfigSchema, v1.
	ConfigSchema string
}

// Anchor is a checkpoint of the log that the statement was made after.
type Anchor struct {
	Origin string
	Size   uint64
	Root   [32]byte
}

// Info describes a co-processor. Fields that do not apply to a backend are
// zero.
type Info struct {
	// Backend is "tpm" or "soft".
	Backend string `json:"backend"`
	// Device says where the co-processor lives: a device path, a swtpm
	// address, "simulator", or the soft key directory.
	Device string `json:"device"`
	// KeyID is the lowercase hex SHA-256 of the public key's DER SPKI.
	KeyID string `json:"keyid"`
	// PublicKeyPEM is the PKIX public key in PEM; for a TPM followed by the
	// "VMLEDGER TPM IDENTITY" block (package coproc/evidence).
	PublicKeyPEM string `json:"publicKeyPEM"`
	// Algorithm is "ecdsa-p256" or "ed25519".
	Algorithm string `json:"algorithm"`
	// KeyHandle is the TPM persistent handle of the signing key.
	KeyHandle uint32 `json:"keyHandle,omitempty"`
	// KeyName is the hex TPM Name of the signing key (nameAlg ‖ digest of its public area).
	KeyName string `json:"keyName,omitempty"`
	// SRKHandle is the TPM persistent handle of the storage primary (the salt key).
	SRKHandle uint32 `json:"srkHandle,omitempty"`
	// SRKName is the hex TPM Name of the storage primary (pin it with tpm.Config.SRKName).
	SRKName string `json:"srkName,omitempty"`
	// AKHandle is the TPM persistent handle of the attestation key.
	AKHandle uint32 `json:"akHandle,omitempty"`
	// AKName is the hex TPM Name of the attestation key.
	AKName string `json:"akName,omitempty"`
	// TPMIdentity is what a verifier enrols besides the key: the AK's
	// public area and the NV indexes' Names, in the standard base64 of
	// package coproc/evidence's Identity. PublicKeyPEM carries it too, as a
	// second PEM block.
	TPMIdentity string `json:"tpmIdentity,omitempty"`
	// RootNVIndex is the NV index that holds the latest root (0 for soft).
	RootNVIndex uint32 `json:"rootNVIndex"`
	// RootNVName is the hex TPM Name of the root NV index.
	RootNVName string `json:"rootNVName,omitempty"`
	// CounterNVIndex is the NV counter index (0 for soft).
	CounterNVIndex uint32 `json:"counterNVIndex"`
	// CounterNVName is the hex TPM Name of the counter NV index.
	CounterNVName string `json:"counterNVName,omitempty"`
	// Counter is the counter's current value; valid only if CounterSet.
	Counter uint64 `json:"counter"`
	// CounterSet is false until the first attestation incremented the counter.
	CounterSet bool `json:"counterSet"`
	// Root is the hex root of the latest attestation attempt, "" if none.
	Root string `json:"root,omitempty"`
}

// Errors of the co-processors. Backends wrap them with %w.
var (
	// ErrInvalidClaim: the claim cannot become a valid statement.
	ErrInvalidClaim = errors.New("invalid claim")
	// ErrNotInitialized: the co-processor has no key or NV indexes yet; run
	// `vmledger coproc init`.
	ErrNotInitialized = errors.New("co-processor not initialized")
	// ErrMismatch: something exists at a handle or path we own but is not what
	// we would have created (other attributes, another key type). Nothing is
	// overwritten; an operator must look.
	ErrMismatch = errors.New("co-processor state does not match the expected layout")
)
