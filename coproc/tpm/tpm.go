// Package tpm is the TPM 2.0 co-processor: a non-exportable ECC P-256
// signing key, an NV index holding the latest configuration root, and an NV
// counter, driven through github.com/google/go-tpm/tpm2 over any
// transport.TPM: /dev/tpmrm0 (OpenDevice), swtpm over TCP (DialSwtpm) or the
// in-process simulator (package coproc/tpmsim, kept apart so that this package
// never compiles it).
//
// # Objects (TCG TPM 2.0 Library, Part 1 §27 NV, Part 3 §31 NV commands)
//
// Provision creates, idempotently, in the owner hierarchy:
//
//	0x81000A00  storage primary: the TCG ECC P-256 SRK template, persistent;
//	            the salt key of every HMAC session
//	0x81000A01  signing key: ECC P-256, ECDSA/SHA-256, unrestricted, sign only;
//	            fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA;
//	            child of the SRK, made persistent with TPM2_EvictControl
//	0x81000A02  attestation key (AK): ECC P-256, ECDSA/SHA-256, *restricted*
//	            signing (it signs only TPM-generated structures), same
//	            attributes and parent (coproc/evidence.AKTemplate)
//	0x01000A00  root index: ordinary, 32 bytes, owner write, owner and auth read, noDA
//	0x01000A01  counter index: TPM_NT_COUNTER, owner write, owner and auth read, noDA
//
// (Config overrides the handles.) Config.KeyAuth, if set, is the
// authorization value of the signing key and the AK, given when they are
// created (in the salted, encrypted Create) and needed for every use; empty,
// any process that can open the TPM can use them. Nothing is ever overwritten: a handle that
// holds something else makes Provision and Open fail with coproc.ErrMismatch.
//
// # One attestation
//
//  1. TPM2_NV_Write of the root to the root index;
//  2. TPM2_NV_Increment of the counter index;
//  3. TPM2_NV_Read of the counter: the value goes into the statement;
//  4. TPM2_NV_Certify of the root index (32 bytes) and of the counter index
//     (8 bytes) with the AK, qualifying data the statement's binding digest
//     (package coproc/evidence); if the TPM reports its clock unsafe (after
//     an unorderly shutdown), TPM2_ClockSet moves it forward by 2^22 ms with
//     the owner authorization and both are certified again;
//  5. TPM2_Sign of SHA-256(PAE) with the signing key (hashed on the host: the
//     key is unrestricted, so the TPM needs no hash ticket) over the
//     statement carrying that evidence;
//  6. the (r, s) signature becomes ASN.1 DER with low s, and the envelope and
//     its evidence are verified before it is returned.
//
// Before each NV command the index's public area is re-read
// (TPM2_NV_ReadPublic): its Name changes when TPMA_NV_WRITTEN becomes set and
// the Name goes into the command's HMAC; the attributes are also checked
// again. NV_Write, NV_Increment, NV_Read and Sign run in one-shot HMAC sessions
// salted with the SRK, so the session key is unknown to anyone on the bus;
// NV_Write and Sign encrypt their first parameter (root, digest) with AES-128
// CFB, NV_Read and NV_Certify encrypt their response (NV_Certify's AK
// session; the index itself is authorized by its empty authValue in a
// password session), and every response is authenticated by the session
// HMAC, which go-tpm checks. TPM2_Sign's response (a TPMT_SIGNATURE,
// not a TPM2B) cannot be encrypted; it is authenticated, and public anyway.
// One-shot sessions are flushed by the TPM after their command; transient
// objects made by Provision are flushed before it returns.
//
// The TPM persists NV_Write and NV_Increment before it answers them (the
// indexes are not TPMA_NV_ORDERLY), so steps 1–2 are durable before step 4:
// see coproc.CoProcessor for why a counter value burnt by a failure after step
// 2 is safe. A counter can never go backwards, not even by deleting and
// redefining the index: a new counter index starts at least at the largest
// value any counter of this TPM ever had (TPM 2.0 Library Part 1, "NV
// Counters"; TestCounterRedefined shows it).
//
// # Known gaps
//
// The SRK's public area, used to salt sessions, is read from the TPM when the
// co-processor is opened; an attacker who controls the bus at that moment could
// substitute a key of their own, unless Config.SRKName pins it. The owner authorisation (empty by default) is sent as a
// password by Provision. Without a resource manager (swtpm, a raw /dev/tpm0),
// a session whose command was cut off by a transport failure stays loaded
// until the TPM restarts. Every attestation writes NV twice (root, counter):
// on real TPMs with limited NV endurance and NV rate limiting
// (TPM_RC_NV_RATE, matchable with errors.Is) this bounds the sustained rate.
package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/evidence"
)

// Default handles.
const (
	DefaultSRKHandle    tpm2.TPMHandle = 0x81000A00
	DefaultKeyHandle    tpm2.TPMHandle = 0x81000A01
	DefaultRootIndex    tpm2.TPMHandle = 0x01000A00
	DefaultCounterIndex tpm2.TPMHandle = 0x01000A01
	DefaultAKHandle     tpm2.TPMHandle = 0x81000A02
)

// Config describes where the co-processor's objects live. The zero value
// uses the defaults.
type Config struct {
	SRKHandle    tpm2.TPMHandle
	KeyHandle    tpm2.TPMHandle
	RootIndex    tpm2.TPMHandle
	CounterIndex tpm2.TPMHandle
	AKHandle     tpm2.TPMHandle
	// KeyAuth is the authorization value of the signing key and the AK,
	// set when Provision creates them and needed for every use: only a
	// process that holds it can sign a statement or certify NV. Empty
	// means none (anyone who can open the TPM can use the keys).
	KeyAuth []byte
	// OwnerAuth is the owner hierarchy's authorisation value (usually empty).
	OwnerAuth []byte
	// SRKName, if set, pins the storage primary: Open refuses an SRK whose
	// TPM Name differs (Info.SRKName shows it). This closes the gap of
	// trusting the SRK public area read over the bus.
	SRKName []byte
	// Device names the TPM in Info ("/dev/tpmrm0", "swtpm 127.0.0.1:2321").
	Device string
	// Now returns the statement time; nil means time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.SRKHandle == 0 {
		c.SRKHandle = DefaultSRKHandle
	}
	if c.KeyHandle == 0 {
		c.KeyHandle = DefaultKeyHandle
	}
	if c.RootIndex == 0 {
		c.RootIndex = DefaultRootIndex
	}
	if c.CounterIndex == 0 {
		c.CounterIndex = DefaultCounterIndex
	}
	if c.AKHandle == 0 {
		c.AKHandle = DefaultAKHandle
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// srkTemplate is the TCG ECC P-256 SRK template.
var srkTemplate = tpm2.ECCSRKTemplate

// keyTemplate is the signing key's template.
var keyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
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

func rootNVPublic(h tpm2.TPMHandle) tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: h,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true,
			NT: tpm2.TPMNTOrdinary,
		},
		DataSize: 32,
	}
}

func counterNVPublic(h tpm2.TPMHandle) tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: h,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true,
			NT: tpm2.TPMNTCounter,
		},
		DataSize: 8,
	}
}

// Provision creates the SRK, the signing key and both NV indexes where they
// do not exist yet, and checks the ones that do. It is idempotent. It reports
// what it created, by name ("srk", "key", "root index", "counter index").
func Provision(ctx context.Context, t transport.TPM, cfg Config) (created []string, err error) {
	cfg = cfg.withDefaults()
	if err := CheckKeyAuth(cfg.KeyAuth); err != nil {
		return nil, err
	}
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(cfg.OwnerAuth)}

	// Storage primary.
	srkPub, srkName, err := readObject(t, cfg.SRKHandle, srkTemplate)
	if errors.Is(err, coproc.ErrNotInitialized) {
		if err := createSRK(ctx, t, owner, cfg.SRKHandle); err != nil {
			return created, err
		}
		created = append(created, "srk")
		srkPub, srkName, err = readObject(t, cfg.SRKHandle, srkTemplate)
	}
	if err != nil {
		return created, err
	}

	// Signing key and attestation key.
	for _, k := range []struct {
		what     string
		h        tpm2.TPMHandle
		template tpm2.TPMTPublic
	}{
		{"key", cfg.KeyHandle, keyTemplate},
		{"attestation key", cfg.AKHandle, evidence.AKTemplate},
	} {
		_, _, err = readObject(t, k.h, k.template)
		if errors.Is(err, coproc.ErrNotInitialized) {
			srk := tpm2.AuthHandle{Handle: cfg.SRKHandle, Name: srkName, Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(cfg.SRKHandle, *srkPub), tpm2.AESEncryption(128, tpm2.EncryptIn))}
			if err := createKey(ctx, t, owner, srk, k.h, k.template, cfg.KeyAuth); err != nil {
				return created, err
			}
			created = append(created, k.what)
			_, _, err = readObject(t, k.h, k.template)
		}
		if err != nil {
			return created, err
		}
	}

	// NV indexes.
	for _, nv := range []struct {
		what string
		pub  tpm2.TPMSNVPublic
	}{
		{"root index", rootNVPublic(cfg.RootIndex)},
		{"counter index", counterNVPublic(cfg.CounterIndex)},
	} {
		_, err := readNV(t, nv.pub)
		if errors.Is(err, coproc.ErrNotInitialized) {
			if err := ctx.Err(); err != nil {
				return created, err
			}
			if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(nv.pub)}).Execute(t); err != nil {
				return created, fmt.Errorf("tpm: defining the %s 0x%08x: %w", nv.what, uint32(nv.pub.NVIndex), err)
			}
			created = append(created, nv.what)
			_, err = readNV(t, nv.pub)
		}
		if err != nil {
			return created, err
		}
	}
	return created, nil
}

// Rotate replaces the signing key and the AK with new ones at the same
// handles (for re-enrolment after the old key was revoked): it evicts both
// persistent keys, then provisions as Provision does. The SRK and the NV
// indexes stay, so the counter keeps counting up. The old keys are gone for
// good: run it only once the log has revoked them. It reports what it
// created.
func Rotate(ctx context.Context, t transport.TPM, cfg Config) (created []string, err error) {
	cfg = cfg.withDefaults()
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(cfg.OwnerAuth)}
	for _, k := range []struct {
		h        tpm2.TPMHandle
		template tpm2.TPMTPublic
	}{{cfg.KeyHandle, keyTemplate}, {cfg.AKHandle, evidence.AKTemplate}} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		_, name, err := readObject(t, k.h, k.template)
		if errors.Is(err, coproc.ErrNotInitialized) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if _, err := (tpm2.EvictControl{Auth: owner, ObjectHandle: tpm2.NamedHandle{Handle: k.h, Name: name}, PersistentHandle: k.h}).Execute(t); err != nil {
			return nil, fmt.Errorf("tpm: evicting the key at 0x%08x: %w", uint32(k.h), err)
		}
	}
	return Provision(ctx, t, cfg)
}

func createSRK(ctx context.Context, t transport.TPM, owner tpm2.AuthHandle, h tpm2.TPMHandle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cp, err := tpm2.CreatePrimary{PrimaryHandle: owner, InPublic: tpm2.New2B(srkTemplate)}.Execute(t)
	if err != nil {
		return fmt.Errorf("tpm: creating the storage primary: %w", err)
	}
	if err := evict(t, owner, cp.ObjectHandle, cp.Name, h); err != nil {
		return fmt.Errorf("tpm: persisting the storage primary at 0x%08x: %w", uint32(h), err)
	}
	return nil
}

func createKey(ctx context.Context, t transport.TPM, owner, srk tpm2.AuthHandle, h tpm2.TPMHandle, template tpm2.TPMTPublic, auth []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The auth value is the command's first parameter (inSensitive), which
	// the salted session encrypts.
	cr, err := tpm2.Create{ParentHandle: srk, InPublic: tpm2.New2B(template),
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{UserAuth: tpm2.TPM2BAuth{Buffer: auth}}},
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("tpm: creating the key at 0x%08x: %w", uint32(h), err)
	}
	srk.Auth = tpm2.PasswordAuth(nil)
	ld, err := tpm2.Load{ParentHandle: srk, InPrivate: cr.OutPrivate, InPublic: cr.OutPublic}.Execute(t)
	if err != nil {
		return fmt.Errorf("tpm: loading the key for 0x%08x: %w", uint32(h), err)
	}
	if err := evict(t, owner, ld.ObjectHandle, ld.Name, h); err != nil {
		return fmt.Errorf("tpm: persisting the key at 0x%08x: %w", uint32(h), err)
	}
	return nil
}

// evict makes the transient object h persistent at p and flushes h, also on
// failure.
func evict(t transport.TPM, owner tpm2.AuthHandle, h tpm2.TPMHandle, name tpm2.TPM2BName, p tpm2.TPMHandle) error {
	_, err := tpm2.EvictControl{Auth: owner, ObjectHandle: tpm2.NamedHandle{Handle: h, Name: name}, PersistentHandle: p}.Execute(t)
	_, ferr := tpm2.FlushContext{FlushHandle: h}.Execute(t)
	if ferr != nil {
		ferr = fmt.Errorf("flushing 0x%08x: %w", uint32(h), ferr)
	}
	return errors.Join(err, ferr)
}

// readObject reads the public area at a persistent handle and checks it
// against template (ignoring the unique field). A missing object is
// coproc.ErrNotInitialized; another object is coproc.ErrMismatch.
func readObject(t transport.TPM, h tpm2.TPMHandle, template tpm2.TPMTPublic) (*tpm2.TPMTPublic, tpm2.TPM2BName, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("tpm: no object at 0x%08x: %w", uint32(h), coproc.ErrNotInitialized)
	}
	if err != nil {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("tpm: reading the public area of 0x%08x: %w", uint32(h), err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("tpm: 0x%08x: %w", uint32(h), err)
	}
	got := *pub
	got.Unique = template.Unique
	if !bytes.Equal(tpm2.Marshal(got), tpm2.Marshal(template)) {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("tpm: the object at 0x%08x is not the one vmledger creates: %w", uint32(h), coproc.ErrMismatch)
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil || !bytes.Equal(name.Buffer, rsp.Name.Buffer) {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("tpm: the Name of 0x%08x does not match its public area", uint32(h))
	}
	return pub, rsp.Name, nil
}

// readNV reads an NV index's public area, checks it against want (ignoring
// TPMA_NV_WRITTEN) and returns it with its current Name.
func readNV(t transport.TPM, want tpm2.TPMSNVPublic) (*nvState, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: want.NVIndex}.Execute(t)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, fmt.Errorf("tpm: no NV index 0x%08x: %w", uint32(want.NVIndex), coproc.ErrNotInitialized)
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: reading the public area of NV index 0x%08x: %w", uint32(want.NVIndex), err)
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: NV index 0x%08x: %w", uint32(want.NVIndex), err)
	}
	got := *pub
	got.Attributes.Written = false
	if !bytes.Equal(tpm2.Marshal(got), tpm2.Marshal(want)) {
		return nil, fmt.Errorf("tpm: NV index 0x%08x is not the one vmledger defines: %w", uint32(want.NVIndex), coproc.ErrMismatch)
	}
	name, err := tpm2.NVName(pub)
	if err != nil || !bytes.Equal(name.Buffer, rsp.NVName.Buffer) {
		return nil, fmt.Errorf("tpm: the Name of NV index 0x%08x does not match its public area", uint32(want.NVIndex))
	}
	return &nvState{handle: tpm2.NamedHandle{Handle: want.NVIndex, Name: rsp.NVName}, written: pub.Attributes.Written}, nil
}

type nvState struct {
	handle  tpm2.NamedHandle
	written bool
}

// CoProcessor is the TPM co-processor. It implements coproc.CoProcessor.
type CoProcessor struct {
	cfg     Config
	srkPub  tpm2.TPMTPublic
	srkName tpm2.TPM2BName
	keyName tpm2.TPM2BName
	akName  tpm2.TPM2BName
	ident   *evidence.Identity
	pub     *ecdsa.PublicKey
	keyID   string

	mu sync.Mutex // guards t: one TPM command sequence at a time
	t  transport.TPMCloser
}

var _ coproc.CoProcessor = (*CoProcessor)(nil)

// Open opens a provisioned TPM. It takes ownership of t: Close closes it, and
// so does a failing Open. A TPM that was not provisioned gives an error
// wrapping coproc.ErrNotInitialized.
func Open(ctx context.Context, t transport.TPMCloser, cfg Config) (_ *CoProcessor, err error) {
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := CheckKeyAuth(cfg.KeyAuth); err != nil {
		return nil, err
	}
	srkPub, srkName, err := readObject(t, cfg.SRKHandle, srkTemplate)
	if err != nil {
		return nil, err
	}
	if len(cfg.SRKName) > 0 && !bytes.Equal(cfg.SRKName, srkName.Buffer) {
		return nil, fmt.Errorf("tpm: the storage primary's Name is %x, not the pinned %x: %w", srkName.Buffer, cfg.SRKName, coproc.ErrMismatch)
	}
	keyPub, keyName, err := readObject(t, cfg.KeyHandle, keyTemplate)
	if err != nil {
		return nil, err
	}
	akPub, akName, err := readObject(t, cfg.AKHandle, evidence.AKTemplate)
	if err != nil {
		return nil, err
	}
	ident := &evidence.Identity{AKPublic: tpm2.Marshal(akPub)}
	for i, want := range []tpm2.TPMSNVPublic{rootNVPublic(cfg.RootIndex), counterNVPublic(cfg.CounterIndex)} {
		if _, err := readNV(t, want); err != nil {
			return nil, err
		}
		// The Name the index has once written, which is what NV_Certify
		// reports after the first attestation.
		want.Attributes.Written = true
		name, err := tpm2.NVName(&want)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			ident.RootNVName = name.Buffer
		} else {
			ident.CounterNVName = name.Buffer
		}
	}
	if ident, err = evidence.ParseIdentity(ident.Marshal()); err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	pk, err := tpm2.Pub(*keyPub)
	if err != nil {
		return nil, fmt.Errorf("tpm: signing key: %w", err)
	}
	pub, ok := pk.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("tpm: signing key is not on P-256: %w", coproc.ErrMismatch)
	}
	if _, err := pub.ECDH(); err != nil {
		return nil, fmt.Errorf("tpm: signing key is not a valid P-256 point: %w", coproc.ErrMismatch)
	}
	id, err := coproc.KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &CoProcessor{cfg: cfg, srkPub: *srkPub, srkName: srkName, keyName: keyName, akName: akName, ident: ident, pub: pub, keyID: id, t: t}, nil
}

// PublicKey implements coproc.CoProcessor; it is an *ecdsa.PublicKey.
func (c *CoProcessor) PublicKey() crypto.PublicKey { return c.pub }

// KeyID implements coproc.CoProcessor.
func (c *CoProcessor) KeyID() string { return c.keyID }

// Close closes the transport.
func (c *CoProcessor) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t.Close()
}

// session returns a one-shot HMAC session salted with the SRK, with extra
// options (parameter encryption).
func (c *CoProcessor) session(auth []byte, extra ...tpm2.AuthOption) tpm2.Session {
	opts := append([]tpm2.AuthOption{tpm2.Salted(c.cfg.SRKHandle, c.srkPub), tpm2.Auth(auth)}, extra...)
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16, opts...)
}

var (
	encryptIn  = tpm2.AESEncryption(128, tpm2.EncryptIn)
	encryptOut = tpm2.AESEncryption(128, tpm2.EncryptOut)
)

// Attest implements coproc.CoProcessor.
func (c *CoProcessor) Attest(ctx context.Context, cl coproc.Claim) (*coproc.Envelope, error) {
	if err := coproc.ValidateClaim(cl); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()

	// 1. The root, into its NV index.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rootNV, err := readNV(c.t, rootNVPublic(c.cfg.RootIndex))
	if err != nil {
		return nil, err
	}
	_, err = tpm2.NVWrite{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: c.session(c.cfg.OwnerAuth, encryptIn)},
		NVIndex:    rootNV.handle,
		Data:       tpm2.TPM2BMaxNVBuffer{Buffer: cl.Root[:]},
	}.Execute(c.t)
	if err != nil {
		return nil, fmt.Errorf("tpm: writing the root to NV index 0x%08x: %w", uint32(c.cfg.RootIndex), err)
	}

	// 2. The counter.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctrNV, err := readNV(c.t, counterNVPublic(c.cfg.CounterIndex))
	if err != nil {
		return nil, err
	}
	_, err = tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: c.session(c.cfg.OwnerAuth)},
		NVIndex:    ctrNV.handle,
	}.Execute(c.t)
	if err != nil {
		return nil, fmt.Errorf("tpm: incrementing NV counter 0x%08x: %w", uint32(c.cfg.CounterIndex), err)
	}
	// From here on, a failure burns the counter value.
	n, _, err := c.readCounter()
	if err != nil {
		return nil, err
	}
	if n > coproc.MaxSafeInteger {
		return nil, fmt.Errorf("tpm: counter %d exceeds 2^53-1", n)
	}

	// 3. The TPM's evidence of both.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	binding, err := evidence.Binding(c.keyID, cl.VMID, cl.Root, n, cl.Freshness)
	if err != nil {
		return nil, err
	}
	rootCert, ctrCert, safe, err := c.certifyBoth(binding)
	if err != nil {
		return nil, err
	}
	if !safe {
		// After an unorderly shutdown the TPM's clock may be behind a value
		// it reported before; move it forward past any such value, then
		// certify again.
		if err := c.makeClockSafe(); err != nil {
			return nil, err
		}
		if rootCert, ctrCert, _, err = c.certifyBoth(binding); err != nil {
			return nil, err
		}
	}
	ev := (&evidence.Evidence{Root: rootCert, Counter: ctrCert}).Marshal()

	// 4. The signature.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := coproc.NewStatement(cl, coproc.CoprocessorState{
		KeyID: c.keyID, Counter: n,
		RootNVIndex: uint32(c.cfg.RootIndex), CounterNVIndex: uint32(c.cfg.CounterIndex),
		AttestedBy: coproc.AttestedByTPM, Evidence: base64.StdEncoding.EncodeToString(ev),
	}, c.cfg.Now())
	if err != nil {
		return nil, err
	}
	env, err := coproc.Seal(st, c.pub, c.sign)
	if err != nil {
		return nil, err
	}
	// What a verifier will check, checked before anyone sees it.
	if _, err := evidence.Verify(st, c.ident); err != nil {
		return nil, fmt.Errorf("tpm: the TPM's own evidence does not verify: %w", err)
	}
	return env, nil
}

// certifyBoth certifies the root and the counter index; safe reports
// whether both certifications say the clock is safe. Called with mu held.
func (c *CoProcessor) certifyBoth(binding [32]byte) (root, ctr evidence.Certification, safe bool, err error) {
	if root, err = c.certify(rootNVPublic(c.cfg.RootIndex), 32, binding); err != nil {
		return root, ctr, false, err
	}
	if ctr, err = c.certify(counterNVPublic(c.cfg.CounterIndex), 8, binding); err != nil {
		return root, ctr, false, err
	}
	safe = true
	for _, cert := range []evidence.Certification{root, ctr} {
		att, err := tpm2.Unmarshal[tpm2.TPMSAttest](cert.Attest)
		if err != nil {
			return root, ctr, false, fmt.Errorf("tpm: TPM2_NV_Certify returned an unreadable TPMS_ATTEST: %w", err)
		}
		safe = safe && bool(att.ClockInfo.Safe)
	}
	return root, ctr, safe, nil
}

// clockUpdateInterval is how far ahead of its NV copy a TPM's clock may
// run (2^NV_CLOCK_UPDATE_INTERVAL ms; 22 in the TCG reference code and
// swtpm): setting the clock that far forward writes it to NV and makes it
// safe (TPM 2.0 Library Part 1 §36.4 "Clock").
const clockUpdateInterval = 1 << 22

// makeClockSafe moves the TPM's clock forward by clockUpdateInterval with
// TPM2_ClockSet (owner authorization), so that it exceeds every value the
// TPM reported before an unorderly shutdown. Called with mu held.
func (c *CoProcessor) makeClockSafe() error {
	rc, err := tpm2.ReadClock{}.Execute(c.t)
	if err != nil {
		return fmt.Errorf("tpm: TPM2_ReadClock: %w", err)
	}
	if err := clockSet(c.t, c.cfg.OwnerAuth, rc.CurrentTime.ClockInfo.Clock+clockUpdateInterval); err != nil {
		return fmt.Errorf("tpm: TPM2_ClockSet: %w", err)
	}
	rc, err = tpm2.ReadClock{}.Execute(c.t)
	if err != nil {
		return fmt.Errorf("tpm: TPM2_ReadClock: %w", err)
	}
	if !rc.CurrentTime.ClockInfo.Safe {
		return fmt.Errorf("tpm: the TPM clock is still not safe after TPM2_ClockSet")
	}
	return nil
}

// clockSet sends TPM2_ClockSet (go-tpm v0.9.8 has no command for it) with
// the owner's password session: tag TPM_ST_SESSIONS, size, command code,
// TPM_RH_OWNER, the authorization area, newTime.
func clockSet(t transport.TPM, ownerAuth []byte, newTime uint64) error {
	auth := binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMRSPW))
	auth = binary.BigEndian.AppendUint16(auth, 0) // nonce
	auth = append(auth, 0)                        // session attributes
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(ownerAuth)))
	auth = append(auth, ownerAuth...)
	cmd := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTSessions))
	cmd = binary.BigEndian.AppendUint32(cmd, 0) // size, below
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMCCClockSet))
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMRHOwner))
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(len(auth)))
	cmd = append(cmd, auth...)
	cmd = binary.BigEndian.AppendUint64(cmd, newTime)
	binary.BigEndian.PutUint32(cmd[2:], uint32(len(cmd)))
	rsp, err := t.Send(cmd)
	if err != nil {
		return err
	}
	if len(rsp) < 10 {
		return fmt.Errorf("response of %d bytes", len(rsp))
	}
	if rc := binary.BigEndian.Uint32(rsp[6:]); rc != 0 {
		return tpm2.TPMRC(rc)
	}
	return nil
}

// certify runs TPM2_NV_Certify of size bytes at offset 0 of the index with
// the AK, qualifying data binding. Called with mu held.
func (c *CoProcessor) certify(want tpm2.TPMSNVPublic, size uint16, binding [32]byte) (evidence.Certification, error) {
	nv, err := readNV(c.t, want)
	if err != nil {
		return evidence.Certification{}, err
	}
	rsp, err := tpm2.NVCertify{
		SignHandle: tpm2.AuthHandle{Handle: c.cfg.AKHandle, Name: c.akName, Auth: c.session(c.cfg.KeyAuth, encryptOut)},
		// The index's own (empty, public) authValue authorizes reading it:
		// a password session, no secret to protect. The AK's salted
		// session authenticates the response.
		AuthHandle:     tpm2.AuthHandle{Handle: nv.handle.Handle, Name: nv.handle.Name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:        nv.handle,
		QualifyingData: tpm2.TPM2BData{Buffer: binding[:]},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		Size:           size,
	}.Execute(c.t)
	if err != nil {
		return evidence.Certification{}, fmt.Errorf("tpm: TPM2_NV_Certify of 0x%08x: %w", uint32(want.NVIndex), authErr(err))
	}
	return evidence.Certification{Attest: rsp.CertifyInfo.Bytes(), Signature: tpm2.Marshal(rsp.Signature)}, nil
}

// ErrKeyAuth: the TPM refused the authorization value given for the
// signing key or the AK (Config.KeyAuth).
var ErrKeyAuth = errors.New("the TPM refused the keys' authorization value (the auth file made by coproc init)")

// CheckKeyAuth reports whether auth can serve as Config.KeyAuth: at most 32
// bytes (the SHA-256 nameAlg's digest size) and no zero byte before its last
// non-zero one. The TPM strips only trailing zeros from an authValue, but
// go-tpm v0.9.8 (hmacKeyFromAuthValue) cuts the HMAC key at the first zero
// byte, so such a value would never authorize.
func CheckKeyAuth(auth []byte) error {
	if len(auth) > sha256.Size {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrKeyAuth, len(auth), sha256.Size)
	}
	if i := bytes.IndexByte(bytes.TrimRight(auth, "\x00"), 0); i >= 0 {
		return fmt.Errorf("%w: zero byte at offset %d (go-tpm cannot use such a value)", ErrKeyAuth, i)
	}
	return nil
}

// authErr marks a TPM authorization failure with ErrKeyAuth, keeping the
// response code matchable.
func authErr(err error) error {
	if errors.Is(err, tpm2.TPMRCAuthFail) || errors.Is(err, tpm2.TPMRCBadAuth) {
		return fmt.Errorf("%w: %w", ErrKeyAuth, err)
	}
	return err
}

// Identity returns what a verifier enrols besides the statement key: the
// AK's public area and the NV indexes' Names.
func (c *CoProcessor) Identity() *evidence.Identity { return c.ident }

// sign signs SHA-256(pae) with the TPM key. Called with mu held.
func (c *CoProcessor) sign(pae []byte) ([]byte, error) {
	digest := sha256.Sum256(pae)
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: c.cfg.KeyHandle, Name: c.keyName, Auth: c.session(c.cfg.KeyAuth, encryptIn)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest[:]},
		InScheme:  tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		Validation: tpm2.TPMTTKHashCheck{
			Tag:       tpm2.TPMSTHashCheck,
			Hierarchy: tpm2.TPMRHNull,
		},
	}.Execute(c.t)
	if err != nil {
		return nil, fmt.Errorf("tpm: TPM2_Sign: %w", authErr(err))
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("tpm: TPM2_Sign returned a non-ECDSA signature: %w", err)
	}
	if sig.Hash != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("tpm: TPM2_Sign used hash %v, not SHA-256", sig.Hash)
	}
	r := new(big.Int).SetBytes(sig.SignatureR.Buffer)
	s := new(big.Int).SetBytes(sig.SignatureS.Buffer)
	return coproc.ECDSASignature(elliptic.P256(), r, s), nil
}

// readCounter reads the counter in an authenticated, salted session. set is
// false before the first increment. Called with mu held.
func (c *CoProcessor) readCounter() (n uint64, set bool, err error) {
	nv, err := readNV(c.t, counterNVPublic(c.cfg.CounterIndex))
	if err != nil {
		return 0, false, err
	}
	if !nv.written {
		return 0, false, nil
	}
	b, err := c.nvRead(nv, 8)
	if err != nil {
		return 0, false, fmt.Errorf("tpm: reading NV counter 0x%08x: %w", uint32(c.cfg.CounterIndex), err)
	}
	return binary.BigEndian.Uint64(b), true, nil
}

func (c *CoProcessor) nvRead(nv *nvState, size uint16) ([]byte, error) {
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: c.session(c.cfg.OwnerAuth, encryptOut)},
		NVIndex:    nv.handle,
		Size:       size,
	}.Execute(c.t)
	if err != nil {
		return nil, err
	}
	if len(rsp.Data.Buffer) != int(size) {
		return nil, fmt.Errorf("read %d bytes, want %d", len(rsp.Data.Buffer), size)
	}
	return rsp.Data.Buffer, nil
}

// Counter returns the NV counter's value; set is false before the first
// attestation.
func (c *CoProcessor) Counter(ctx context.Context) (n uint64, set bool, err error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readCounter()
}

// Root returns the root held in the root NV index; set is false before the
// first attestation.
func (c *CoProcessor) Root(ctx context.Context) (root [32]byte, set bool, err error) {
	if err := ctx.Err(); err != nil {
		return root, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readRoot()
}

func (c *CoProcessor) readRoot() (root [32]byte, set bool, err error) {
	nv, err := readNV(c.t, rootNVPublic(c.cfg.RootIndex))
	if err != nil || !nv.written {
		return root, false, err
	}
	b, err := c.nvRead(nv, 32)
	if err != nil {
		return root, false, fmt.Errorf("tpm: reading NV index 0x%08x: %w", uint32(c.cfg.RootIndex), err)
	}
	copy(root[:], b)
	return root, true, nil
}

// Info implements coproc.CoProcessor.
func (c *CoProcessor) Info(ctx context.Context) (*coproc.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(c.pub)
	if err != nil {
		return nil, err
	}
	pemBytes = append(pemBytes, c.ident.PEM()...)
	info := &coproc.Info{
		Backend: "tpm", Device: c.cfg.Device, KeyID: c.keyID, PublicKeyPEM: string(pemBytes),
		Algorithm: "ecdsa-p256", KeyHandle: uint32(c.cfg.KeyHandle), KeyName: hex.EncodeToString(c.keyName.Buffer),
		SRKHandle: uint32(c.cfg.SRKHandle), SRKName: hex.EncodeToString(c.srkName.Buffer),
		AKHandle: uint32(c.cfg.AKHandle), AKName: hex.EncodeToString(c.akName.Buffer), TPMIdentity: c.ident.String(),
		RootNVIndex: uint32(c.cfg.RootIndex), CounterNVIndex: uint32(c.cfg.CounterIndex),
	}
	rootNV, err := readNV(c.t, rootNVPublic(c.cfg.RootIndex))
	if err != nil {
		return nil, err
	}
	info.RootNVName = hex.EncodeToString(rootNV.handle.Name.Buffer)
	ctrNV, err := readNV(c.t, counterNVPublic(c.cfg.CounterIndex))
	if err != nil {
		return nil, err
	}
	info.CounterNVName = hex.EncodeToString(ctrNV.handle.Name.Buffer)
	if info.Counter, info.CounterSet, err = c.readCounter(); err != nil {
		return nil, err
	}
	root, set, err := c.readRoot()
	if err != nil {
		return nil, err
	}
	if set {
		info.Root = hex.EncodeToString(root[:])
	}
	return info, nil
}
