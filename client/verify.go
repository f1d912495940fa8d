// Package client is what customers run, and what the agent runs before every
// launch: the offline verification of an attestation bundle (package
// log/bundle) against a trust configuration (ParseTrust) and an expected
// configuration.
//
// # What Verify checks, in order
//
//  1. envelope: the log entry decodes as a canonical DSSE envelope.
//  2. coprocessor signature: the envelope is signed by a co-processor key of
//     the trust file (DSSE PAE; ECDSA P-256 or Ed25519).
//  3. statement: the payload is a well-formed vm-config (v1 or v2) in-toto
//     statement whose key id is the signer's (and whose VM is the expected
//     one, when one is expected).
//  4. tpm evidence: the statement's TPM evidence verifies under the trust
//     file's TPM identity for the key (package coproc/evidence), or it is a
//     software-attested or v1 statement that the key's line accepts.
//  5. inclusion: the entry's RFC 6962 leaf hash is included at the proof's
//     index under the checkpoint's root.
//  6. log signature: the checkpoint is signed by a trusted log.
//  7. witness quorum: the checkpoint's cosignatures satisfy the trust file's
//     witness policy (unknown signatures ignored; a bad signature by a known
//     witness rejects), and, with max-age, the newest cosignature is recent.
//  8. consistency: with a state file, the checkpoint is consistent with the
//     last one this client trusted (proven with a consistency proof from the
//     log when the sizes differ); a contradiction is kept as evidence.
//     Without a state file this check is "not requested": there is nothing
//     earlier to compare with.
//  9. configuration: the attested root equals the root recomputed from the
//     expected configuration and VM secret, or a manifest / disclosures
//     recompute to it; then any Rules hold over the proven values.
//  10. freshness: the statement's freshness anchor (the checkpoint the
//     co-processor was shown before it signed) is a non-empty checkpoint of
//     the bundle's log from before the entry: same origin, size between 1
//     and the entry's index, and its root the root of the checkpoint's tree
//     at that size. The inclusion proof proves that root offline when the
//     anchor's size is the entry's index (the entry directly follows its
//     anchor) or that index with low bits cleared; otherwise a
//     ConsistencyProver proves it, and without one the detail says it is
//     not proven offline.
//
// Each failure wraps its own sentinel (ErrEnvelope … ErrFreshness), so
// callers can tell with errors.Is which link of the chain broke. Every check
// that can run does, so a report names every broken link at once; a check
// whose input is missing because an earlier one failed is reported as not run.
// Verify needs no network: only moving the consistency state forward, and
// proving an anchor that the inclusion proof does not cover, ask the log for
// a proof, through the optional ConsistencyProver.
package client

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/evidence"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/witness/policy"
	"golang.org/x/mod/sumdb/note"
)

// Sentinels, one per check.
var (
	ErrEnvelope             = errors.New("envelope does not decode")
	ErrCoprocessorSignature = errors.New("not signed by a trusted co-processor")
	ErrStatement            = errors.New("statement is not a valid vm-config attestation")
	ErrInclusion            = errors.New("entry is not included under the checkpoint")
	ErrLogSignature         = errors.New("checkpoint is not signed by a trusted log")
	ErrWitnessPolicy        = errors.New("checkpoint does not satisfy the witness policy")
	ErrConsistency          = errors.New("checkpoint is not consistent with the one trusted before")
	ErrConfiguration        = errors.New("attested configuration is not the expected one")

	// ErrOfflineConsistency: the sizes differ and no log was given to prove
	// consistency. Wrapped together with ErrConsistency.
	ErrOfflineConsistency = errors.New("consistency cannot be proven offline")

	// ErrVMNotExpected: an expected configuration was given without the
	// VM id. Wrapped together with ErrConfiguration.
	ErrVMNotExpected = errors.New("an expected configuration needs the VM id")
)

// Check names, in order.
const (
	CheckEnvelope      = "envelope"
	CheckSignature     = "coprocessor signature"
	CheckStatement     = "statement"
	CheckInclusion     = "inclusion"
	CheckLogSignature  = "log signature"
	CheckWitnesses     = "witness quorum"
	CheckConsistency   = "consistency"
	CheckConfiguration = "configuration"
)

// Status of one check.
type Status string

const (
	Pass   Status = "pass"
	Fail   Status = "fail"
	NotRun Status = "not run"
	// NotRequested marks the consistency check when no state was given:
	// there is nothing earlier to compare with. It does not fail a report.
	NotRequested Status = "not requested"
)

// Result is the outcome of one check.
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	err    error
}

// Report is the outcome of Verify.
type Report struct {
	OK      bool     `json:"ok"`
	Results []Result `json:"checks"`

	// What was verified, where known.
	VMID          string   `json:"vm_id,omitempty"`
	ConfigRoot    string   `json:"config_root,omitempty"`
	Coprocessor   string   `json:"coprocessor,omitempty"`
	CoprocKeyID   string   `json:"coprocessor_keyid,omitempty"`
	Counter       uint64   `json:"counter,omitempty"`
	AttestedAt    string   `json:"attested_at,omitempty"`
	Origin        string   `json:"log,omitempty"`
	Index         uint64   `json:"index"`
	TreeSize      uint64   `json:"tree_size,omitempty"`
	Cosigners     []string `json:"cosigners,omitempty"`
	NewestCosigAt string   `json:"newest_cosignature,omitempty"`
	// PredicateType of the statement; Attestation is what vouches for its
	// root and counter (AttestationTPM, AttestationSoftware,
	// AttestationV1); TPM what the TPM evidence says about the TPM.
	PredicateType string           `json:"predicate_type,omitempty"`
	Attestation   string           `json:"attestation,omitempty"`
	TPM           *evidence.Report `json:"tpm,omitempty"`

	// Differences are the parameters whose attested value is not the
	// expected one, when the configuration check failed and the attested
	// values were at hand (a manifest or disclosures).
	Differences []ParameterDiff `json:"differences,omitempty"`

	// Statement is the verified statement (nil if it did not verify).
	Statement *coproc.Statement `json:"-"`
}

// ParameterDiff is one parameter whose attested value differs from the
// expected one, both in measure.Display form ("-" when absent). A package is
// named "package <name>", its value the version.
type ParameterDiff struct {
	Name     string `json:"name"`
	Expected string `json:"expected"`
	Attested string `json:"attested"`
}

// Err returns the error of the first failed check, or nil.
func (r *Report) Err() error {
	for _, c := range r.Results {
		if c.Status == Fail {
			return c.err
		}
	}
	return nil
}

// Expected is what the verifier expects the attestation to say. At least one
// of Config (with Secret and VMID), Manifest or Disclosures must be given: a
// verification that compares the attested root with nothing is refused.
type Expected struct {
	// VMID, if set, must be the attested VM. It is required with Config:
	// the root binds the configuration and the secret, not the VM.
	VMID string
	// Config and Secret: the configuration ordered and the VM secret shared
	// with the provider; the attested root must equal their root.
	Config *measure.Config
	Secret *measure.Secret
	// Manifest: a full manifest (values and salts, as the agent stores it)
	// that must recompute to the attested root.
	Manifest *measure.Measurement
	// Disclosures and PackageDisclosures: single parameters that must be
	// included under the attested root (for a third party without the secret).
	Disclosures        []measure.Disclosure
	PackageDisclosures []measure.PackageDisclosure
	// Rules, if set, must hold over the proven values.
	Rules *Rules
}

// Options are the optional parts of Verify.
type Options struct {
	// Now is the time for max-age checks; zero means time.Now().
	Now time.Time
	// State, if set, is the consistency state to check against and advance.
	State *State
	// Prover, if set, fetches consistency proofs to move State forward and to
	// prove the freshness anchor consistent with the checkpoint.
	Prover ConsistencyProver
}

// Verify verifies b against trust and expected. It returns the report and
// the first failure's error (nil when every check passed).
func Verify(ctx context.Context, b *bundle.Bundle, trust *Trust, expected *Expected, opts Options) (*Report, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	r := &Report{Index: b.Proof.Index}
	pass := func(check, detail string) {
		r.Results = append(r.Results, Result{Check: check, Status: Pass, Detail: detail})
	}
	fail := func(check string, sentinel, err error) {
		if err == nil {
			err = sentinel
		} else if !errors.Is(err, sentinel) {
			err = fmt.Errorf("%w: %w", sentinel, err)
		}
		r.Results = append(r.Results, Result{Check: check, Status: Fail, Detail: err.Error(), err: err})
	}
	notRun := func(check, why string) {
		r.Results = append(r.Results, Result{Check: check, Status: NotRun, Detail: why, err: nil})
	}

	// 1. Envelope.
	env, err := coproc.ParseEnvelope(b.Entry)
	if err != nil {
		fail(CheckEnvelope, ErrEnvelope, err)
	} else {
		pass(CheckEnvelope, fmt.Sprintf("canonical DSSE envelope, %d bytes", len(b.Entry)))
	}

	// 2. Co-processor signature.
	var signer TrustedKey
	signed := false
	switch {
	case env == nil:
		notRun(CheckSignature, "the envelope did not decode")
	case len(env.Signatures) != 1:
		fail(CheckSignature, ErrCoprocessorSignature, fmt.Errorf("%d signatures, want exactly 1", len(env.Signatures)))
	default:
		k, ok := trust.Coprocessors[env.Signatures[0].KeyID]
		if !ok {
			fail(CheckSignature, ErrCoprocessorSignature, fmt.Errorf("key %s is not in the trust file", env.Signatures[0].KeyID))
		} else if err := coproc.Verify(env, k.Public); err != nil {
			fail(CheckSignature, ErrCoprocessorSignature, err)
		} else {
			signer, signed = k, true
			r.Coprocessor, r.CoprocKeyID = k.Name, k.KeyID
			pass(CheckSignature, fmt.Sprintf("signed by co-processor %s (key %s)", k.Name, abbrev(k.KeyID)))
		}
	}

	// 3. Statement.
	var st *coproc.Statement
	if !signed {
		notRun(CheckStatement, "the signature did not verify: an unsigned statement proves nothing")
	} else if st, err = env.Statement(); err != nil {
		fail(CheckStatement, ErrStatement, err)
		st = nil
	} else if st.Predicate.Coprocessor.KeyID != signer.KeyID {
		fail(CheckStatement, ErrStatement, fmt.Errorf("predicate names key %s, signed by %s", st.Predicate.Coprocessor.KeyID, signer.KeyID))
		st = nil
	} else if expected != nil && expected.VMID != "" && st.VMID() != expected.VMID {
		fail(CheckStatement, ErrStatement, fmt.Errorf("attests VM %q, expected VM %q", st.VMID(), expected.VMID))
		st = nil
	} else {
		root := st.ConfigRoot()
		r.Statement, r.VMID, r.ConfigRoot = st, st.VMID(), fmt.Sprintf("%x", root[:])
		r.Counter, r.AttestedAt = st.Predicate.Coprocessor.Counter, st.Predicate.Time
		vm := "VM " + st.VMID()
		if expected != nil && expected.VMID != "" {
			vm += " (the expected VM)"
		}
		pass(CheckStatement, fmt.Sprintf("%s, config root %x, counter %d, at %s", vm, root[:8], r.Counter, r.AttestedAt))
	}

	// 3b. TPM evidence.
	checkEvidence(r, st, signer)

	// 4. Inclusion.
	var cp tlog.Checkpoint
	cpOK, included := false, false
	cpText, _, ok := cutNote(b.Proof.Checkpoint)
	if ok {
		cp, err = tlog.ParseCheckpoint(cpText)
	} else {
		err = fmt.Errorf("checkpoint is not a signed note")
	}
	if err != nil {
		fail(CheckInclusion, ErrInclusion, fmt.Errorf("checkpoint: %w", err))
	} else {
		cpOK = true
		r.Origin, r.TreeSize = cp.Origin, cp.Size
		leaf := tlog.LeafHash(b.Entry)
		if err := tlog.VerifyInclusion(b.Proof.Index, cp.Size, leaf, b.Proof.HashSlices(), cp.Root); err != nil {
			fail(CheckInclusion, ErrInclusion, fmt.Errorf("index %d in tree of size %d: %w", b.Proof.Index, cp.Size, err))
		} else {
			included = true
			pass(CheckInclusion, fmt.Sprintf("entry %d is in %s at tree size %d", b.Proof.Index, cp.Origin, cp.Size))
		}
	}

	// 5 and 6. Log signature and witness policy.
	logOK, quorumOK := false, false
	var v *policy.Verified
	var bad *policy.BadSignatureError
	err = canonicalSignatures(b.Proof.Checkpoint)
	if err == nil {
		v, err = trust.Policy.Verify(b.Proof.Checkpoint)
	}
	switch {
	case errors.As(err, &bad) && bad.Witness:
		pass(CheckLogSignature, "signed by "+cp.Origin)
		logOK = true
		fail(CheckWitnesses, ErrWitnessPolicy, fmt.Errorf("%w: the cosignature by witness key %s+%08x does not verify", ErrWitnessPolicy, bad.Name, bad.KeyHash))
	case errors.As(err, &bad):
		fail(CheckLogSignature, ErrLogSignature, fmt.Errorf("%w: the signature by log key %s+%08x does not verify", ErrLogSignature, bad.Name, bad.KeyHash))
		notRun(CheckWitnesses, "the log signature did not verify")
	case errors.Is(err, policy.ErrNoLogSignature):
		fail(CheckLogSignature, ErrLogSignature, fmt.Errorf("%w: no valid signature by a log of the trust file on this checkpoint of %q", ErrLogSignature, cp.Origin))
		notRun(CheckWitnesses, "the log signature did not verify")
	case err != nil && !errors.Is(err, policy.ErrQuorumNotMet):
		fail(CheckLogSignature, ErrLogSignature, fmt.Errorf("%w: %s", ErrLogSignature, strings.TrimPrefix(err.Error(), "policy: ")))
		notRun(CheckWitnesses, "the log signature did not verify")
	default:
		logOK = true
		pass(CheckLogSignature, fmt.Sprintf("signed by %s (key %08x)", v.Log.Origin, v.Log.Verifier.KeyHash()))
		for _, w := range v.Cosigners {
			r.Cosigners = append(r.Cosigners, w.Name)
		}
		if err != nil {
			fail(CheckWitnesses, ErrWitnessPolicy, fmt.Errorf("%w: cosigned by %s, which is not the policy's quorum", ErrWitnessPolicy, namesOrNone(r.Cosigners)))
			break
		}
		newest, err := newestCosignature(b.Proof.Checkpoint, v)
		if err != nil {
			fail(CheckWitnesses, ErrWitnessPolicy, err)
			break
		}
		if !newest.IsZero() {
			r.NewestCosigAt = newest.UTC().Format(time.RFC3339)
		}
		if trust.MaxAge > 0 && (newest.IsZero() || opts.Now.Sub(newest) > trust.MaxAge) {
			fail(CheckWitnesses, ErrWitnessPolicy, fmt.Errorf("newest cosignature %s is older than max-age %s", r.NewestCosigAt, trust.MaxAge))
			break
		}
		quorumOK = true
		pass(CheckWitnesses, "cosigned by "+namesOrNone(r.Cosigners)+"; quorum met")
	}

	// 7. Consistency.
	switch {
	case opts.State == nil:
		r.Results = append(r.Results, Result{Check: CheckConsistency, Status: NotRequested, Detail: "no state file: nothing earlier to compare with (give --state to track the log across runs)"})
	case !logOK || !quorumOK:
		notRun(CheckConsistency, "the checkpoint is not trusted, so it is not compared or recorded")
	default:
		detail, err := opts.State.advance(ctx, cp, b.Proof.Checkpoint, opts.Prover, opts.Now)
		if err != nil {
			fail(CheckConsistency, ErrConsistency, err)
		} else {
			pass(CheckConsistency, detail)
		}
	}

	// 8. Configuration.
	if st == nil {
		notRun(CheckConfiguration, "no verified statement to compare with")
	} else if detail, diffs, err := checkConfig(st, expected); err != nil {
		r.Differences = diffs
		fail(CheckConfiguration, ErrConfiguration, err)
	} else {
		pass(CheckConfiguration, detail)
	}

	// 9. Freshness.
	switch {
	case st == nil:
		notRun(CheckFreshness, "no verified statement, so no anchor to check")
	case !cpOK:
		notRun(CheckFreshness, "the checkpoint did not parse")
	default:
		detail, err := checkAnchor(ctx, st.Anchor(), b.Proof.Index, cp, b.Proof.HashSlices(), included, opts.Prover)
		switch {
		case errors.Is(err, errAnchorNotCompared):
			notRun(CheckFreshness, err.Error())
		case err != nil:
			fail(CheckFreshness, ErrFreshness, err)
		default:
			pass(CheckFreshness, detail)
		}
	}

	r.OK = true
	for _, c := range r.Results {
		if c.Status != Pass && c.Status != NotRequested {
			r.OK = false
		}
	}
	if err := r.Err(); err != nil {
		return r, err
	}
	if !r.OK {
		return r, errors.New("not every check ran")
	}
	return r, nil
}

// UndecodableReport is the report for a bundle file that does not decode
// (bundle.Parse failed, err): the envelope check fails, since not even the
// entry can be taken out of the bundle, and every later check is not run. It
// lets a caller that reads bundle files answer a malformed one in the same
// form as Verify answers a bad bundle, rather than with no report at all.
func UndecodableReport(err error) *Report {
	if !errors.Is(err, ErrEnvelope) {
		err = fmt.Errorf("%w: the bundle does not decode: %w", ErrEnvelope, err)
	}
	r := &Report{Results: []Result{{Check: CheckEnvelope, Status: Fail, Detail: err.Error(), err: err}}}
	for _, c := range []string{CheckSignature, CheckStatement, CheckEvidence, CheckInclusion, CheckLogSignature, CheckWitnesses, CheckConsistency, CheckConfiguration, CheckFreshness} {
		r.Results = append(r.Results, Result{Check: c, Status: NotRun, Detail: "the bundle did not decode"})
	}
	return r
}

// checkConfig compares the attested root with what is expected. When the
// expected configuration's root is not the attested one, it names the
// parameters that differ if the attested values are at hand.
func checkConfig(st *coproc.Statement, e *Expected) (string, []ParameterDiff, error) {
	root := measure.Digest(st.ConfigRoot())
	if e == nil || (e.Config == nil && e.Manifest == nil && len(e.Disclosures) == 0 && len(e.PackageDisclosures) == 0) {
		return "", nil, errors.New("nothing to compare the attested root with: give the expected configuration and VM secret, a manifest, or disclosures")
	}
	// The statement says which schema the root was built under: the
	// expected root is recomputed under it, and a manifest or disclosure of
	// another schema does not describe this root.
	spec, err := measure.SchemaOf(st.Predicate.ConfigSchema)
	if err != nil {
		return "", nil, err
	}
	var details []string
	var whole *measure.Measurement // the whole configuration, when known
	if e.Config != nil {
		if e.VMID == "" {
			// The root depends only on the configuration and the secret:
			// without the VM id, another VM's attestation would do.
			return "", nil, fmt.Errorf("%w: the same configuration and VM secret attested for another VM give the same root; give the VM id (--vm ID)", ErrVMNotExpected)
		}
		if e.Secret == nil {
			return "", nil, errors.New("an expected configuration needs the VM secret to recompute the salted root")
		}
		cfg := e.Config
		if spec == measure.V2 {
			// Schema v2 binds the VM id: the expected VM's.
			if cfg.VMID != "" && cfg.VMID != e.VMID {
				return "", nil, fmt.Errorf("%w: the expected configuration is of VM %q, the expected VM is %q", ErrVMNotExpected, cfg.VMID, e.VMID)
			}
			c := *cfg
			c.VMID = e.VMID
			cfg = &c
		}
		// The rules read the configuration's leaves; without rules the
		// root alone is compared.
		var want measure.Digest
		if e.Rules != nil {
			m, err := spec.Measure(cfg, *e.Secret)
			if err != nil {
				return "", nil, fmt.Errorf("expected configuration under %s: %w", spec, err)
			}
			whole, want = m, m.Root
		} else {
			var err error
			if want, err = spec.Root(cfg, *e.Secret); err != nil {
				return "", nil, fmt.Errorf("expected configuration under %s: %w", spec, err)
			}
		}
		if want != root {
			m := whole
			if m == nil {
				var err error
				if m, err = spec.Measure(cfg, *e.Secret); err != nil {
					return "", nil, fmt.Errorf("expected configuration: %w", err)
				}
			}
			diffs, why := explainMismatch(m, root, e)
			return "", diffs, fmt.Errorf("attested root %v, expected configuration gives %v under %s; %s", root, want, spec, why)
		}
		details = append(details, "attested root equals the expected configuration's root ("+spec.Name()+")")
	}
	if e.Manifest != nil {
		if e.Manifest.Schema != spec.Name() {
			return "", nil, fmt.Errorf("manifest of schema %q, the attestation's is %q", e.Manifest.Schema, spec)
		}
		if err := e.Manifest.Check(); err != nil {
			return "", nil, fmt.Errorf("manifest: %w", err)
		}
		if e.Manifest.Root != root {
			return "", nil, fmt.Errorf("attested root %v, manifest root %v", root, e.Manifest.Root)
		}
		if spec == measure.V2 {
			if id, _ := e.Manifest.Leaf(measure.NameVMID); string(id.Value) != st.VMID() {
				return "", nil, fmt.Errorf("%w: the manifest measures VM %q, the statement attests VM %q", ErrVMNotExpected, id.Value, st.VMID())
			}
		}
		if whole == nil {
			whole = e.Manifest
		}
		details = append(details, "manifest recomputes to the attested root")
	}
	for _, d := range e.Disclosures {
		if err := d.Verify(root); err != nil {
			return "", nil, fmt.Errorf("disclosed %s: %w", d.Name, err)
		}
		if ds, _ := d.Spec(); ds != spec {
			return "", nil, fmt.Errorf("disclosed %s: a disclosure of schema %s, the attestation's is %s", d.Name, ds, spec)
		}
		if d.Name == measure.NameVMID && string(d.Value) != st.VMID() {
			return "", nil, fmt.Errorf("%w: the disclosed vm.id is %q, the statement attests VM %q", ErrVMNotExpected, d.Value, st.VMID())
		}
	}
	for _, d := range e.PackageDisclosures {
		if err := d.Verify(root); err != nil {
			return "", nil, fmt.Errorf("disclosed package %s: %w", d.Package.Name, err)
		}
		if ds, _ := d.Subtree.Spec(); ds != spec {
			return "", nil, fmt.Errorf("disclosed package %s: a disclosure of schema %s, the attestation's is %s", d.Package.Name, ds, spec)
		}
	}
	if n := len(e.Disclosures) + len(e.PackageDisclosures); n > 0 {
		details = append(details, fmt.Sprintf("%d disclosed parameter(s) included under the attested root", n))
	}
	if e.Rules != nil {
		// What the rules see: the whole configuration when known, and
		// every verified disclosure.
		f := &facts{leaves: map[string]measure.Leaf{}}
		if whole != nil {
			f = factsFromMeasurement(whole)
		}
		for _, d := range e.Disclosures {
			f.leaves[d.Name] = measure.Leaf{Index: d.Index, Name: d.Name, Type: d.Type, Value: d.Value, Salt: d.Salt}
		}
		if !f.complete {
			for _, d := range e.PackageDisclosures {
				f.packages = append(f.packages, d.Package)
			}
		}
		if bad := e.Rules.check(f); len(bad) > 0 {
			return "", nil, fmt.Errorf("rules violated: %s", strings.Join(bad, "; "))
		}
		details = append(details, "rules hold")
	}
	return strings.Join(details, "; "), nil, nil
}

// newestCosignature returns the newest timestamp among the cosignatures of
// the witnesses in v.Cosigners (the zero time if none). Policy.Verify has
// already verified every signature by a known key, so the signature lines
// are only parsed here, not verified a second time.
func newestCosignature(signed []byte, v *policy.Verified) (time.Time, error) {
	_, sigs, _ := cutNote(signed)
	var newest time.Time
	for _, line := range strings.Split(strings.TrimSuffix(string(sigs), "\n"), "\n") {
		rest, ok := strings.CutPrefix(line, "— ")
		if !ok {
			continue
		}
		name, b64, ok := strings.Cut(rest, " ")
		if !ok {
			continue
		}
		for _, w := range v.Cosigners {
			if w.Verifier.Name() != name {
				continue
			}
			t, err := fnote.CoSigV1Timestamp(note.Signature{Name: name, Hash: w.Verifier.KeyHash(), Base64: b64})
			if err != nil {
				continue // another key of the same name: not this witness's line
			}
			if id, ok := keyHash(b64); ok && id == w.Verifier.KeyHash() && t.After(newest) {
				newest = t
			}
		}
	}
	return newest, nil
}

// canonicalSignatures requires every signature line of a signed note to be
// "— <name> <base64>" with canonical base64: a signature whose unused
// padding bits were flipped decodes to the same bytes, and would otherwise
// let anybody make a second, different-looking copy of a signed checkpoint.
func canonicalSignatures(signed []byte) error {
	_, sigs, ok := cutNote(signed)
	if !ok || len(sigs) == 0 || sigs[len(sigs)-1] != '\n' {
		return fmt.Errorf("%w: checkpoint is not a signed note", policy.ErrMalformed)
	}
	for _, line := range strings.Split(string(sigs[:len(sigs)-1]), "\n") {
		rest, ok := strings.CutPrefix(line, "— ")
		name, b64, ok2 := strings.Cut(rest, " ")
		if !ok || !ok2 || name == "" {
			return fmt.Errorf("%w: signature line %q", policy.ErrMalformed, line)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || base64.StdEncoding.EncodeToString(raw) != b64 {
			return fmt.Errorf("%w: signature by %s is not canonical base64", policy.ErrMalformed, name)
		}
	}
	return nil
}

// keyHash returns the key ID at the start of a signature line's payload.
func keyHash(b64 string) (uint32, bool) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(raw[:4]), true
}

func namesOrNone(s []string) string {
	if len(s) == 0 {
		return "no witness"
	}
	return strings.Join(s, ", ")
}

func abbrev(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}
