package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/evidence"
)

// CheckEvidence is the check of what vouches for the statement's root and
// counter: TPM evidence verified under the trust file's TPM identity, or a
// software-attested or v1 statement the trust file opts in to.
const CheckEvidence = "tpm evidence"

// ErrEvidence: the statement's TPM evidence is missing or does not verify,
// or it is a software-attested or v1 statement the trust file does not
// accept for its key.
var ErrEvidence = errors.New("the TPM does not vouch for the statement")

// Trust-file options of a coprocessor line.
const (
	optTPM      = "tpm="
	optSoftware = "software"
	optV1       = "v1"
)

// Kinds of attestation a Report names.
const (
	AttestationTPM      = "tpm"      // TPM evidence verified
	AttestationSoftware = "software" // software-attested, accepted by the trust file
	AttestationV1       = "v1"       // predicate v1 without evidence, accepted by the trust file
)

// parseKeyOptions reads the options after a coprocessor line's key.
func parseKeyOptions(k *TrustedKey, opts []string) error {
	seen := map[string]bool{}
	for _, o := range opts {
		name := o
		if strings.HasPrefix(o, optTPM) {
			name = optTPM
		}
		if seen[name] {
			return fmt.Errorf("option %q given twice", strings.TrimSuffix(name, "="))
		}
		seen[name] = true
		switch name {
		case optTPM:
			if k.Identity != nil {
				return fmt.Errorf("tpm= given, but the PEM file holds a TPM identity already")
			}
			id, err := evidence.ParseIdentityString(strings.TrimPrefix(o, optTPM))
			if err != nil {
				return err
			}
			k.Identity = id
		case optSoftware:
			k.Software = true
		case optV1:
			k.V1 = true
		default:
			return fmt.Errorf("unknown option %q (want tpm=<identity>, software or v1)", o)
		}
	}
	return nil
}

// checkEvidence decides whether signer's trust-file line accepts what
// vouches for st, and records the check in r.
func checkEvidence(r *Report, st *coproc.Statement, signer TrustedKey) {
	add := func(status Status, detail string, err error) {
		if err != nil && !errors.Is(err, ErrEvidence) {
			err = fmt.Errorf("%w: %w", ErrEvidence, err)
		}
		if err != nil {
			detail = err.Error()
		}
		r.Results = append(r.Results, Result{Check: CheckEvidence, Status: status, Detail: detail, err: err})
	}
	if st == nil {
		add(NotRun, "no verified statement", nil)
		return
	}
	r.PredicateType = st.PredicateType
	switch {
	case st.PredicateType == coproc.PredicateTypeV1:
		if !signer.V1 {
			add(Fail, "", fmt.Errorf("%w: a %s statement carries no TPM evidence; the trust file accepts it only with `v1` on the key's line", ErrEvidence, st.PredicateType))
			return
		}
		r.Attestation = AttestationV1
		add(Pass, "predicate v1 without TPM evidence, accepted by the trust file (v1)", nil)
	case st.Predicate.Coprocessor.AttestedBy == coproc.AttestedBySoftware:
		if !signer.Software {
			add(Fail, "", fmt.Errorf("%w: software-attested statement; the trust file accepts it only with `software` on the key's line", ErrEvidence))
			return
		}
		r.Attestation = AttestationSoftware
		add(Pass, "software-attested: only the key vouches for root and counter (accepted by the trust file)", nil)
	case signer.Identity == nil:
		add(Fail, "", fmt.Errorf("%w: the statement carries TPM evidence but the trust file gives no TPM identity (tpm=) for key %s", ErrEvidence, abbrev(signer.KeyID)))
	default:
		tr, err := evidence.Verify(st, signer.Identity)
		if err != nil {
			add(Fail, "", err)
			return
		}
		r.Attestation, r.TPM = AttestationTPM, tr
		add(Pass, "the TPM certified root and counter (NV_Certify by the enrolled AK); "+tr.String(), nil)
	}
}

// TrustLineInfo returns the trust-file line for the co-processor that Info
// describes: a TPM's with its identity (tpm=…), a soft key's with software.
func TrustLineInfo(name string, info *coproc.Info) (string, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(info.PublicKeyPEM))
	if err != nil {
		return "", err
	}
	ident, err := evidence.FindPEM([]byte(info.PublicKeyPEM))
	if err != nil {
		return "", err
	}
	return TrustLineTPM(name, pub, ident)
}
