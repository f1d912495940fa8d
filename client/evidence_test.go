package client

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/coproc"
)

// TestSoftwareNeedsOptIn: a software-attested statement verifies only when
// the key's trust-file line says `software`, and the report says so.
func TestSoftwareNeedsOptIn(t *testing.T) {
	f := newFixture(t)
	idx := f.attest("vm-1", f.cfg)
	b := f.bundle(idx, f.tree.Size(), 0, 2)
	line, _ := TrustLine("host-a", f.cp.PublicKey())
	if !strings.HasSuffix(line, " software") {
		t.Fatalf("TrustLine of a software key = %q, want it to end in software", line)
	}
	f.trustText = strings.Replace(f.trustText, line, strings.TrimSuffix(line, " software"), 1)
	r, err := Verify(t.Context(), b, f.trust(), f.expected(), Options{Now: f.now})
	if !errors.Is(err, ErrEvidence) || r.OK || r.Attestation != "" {
		t.Fatalf("software statement without opt-in: %v\n%s", err, dump(r))
	}
	for _, res := range r.Results {
		if res.Status == Fail && res.Check != CheckEvidence {
			t.Errorf("check %q failed too: %s", res.Check, res.Detail)
		}
	}
}

func TestParseTrustKeyOptions(t *testing.T) {
	f := newFixture(t)
	line, _ := TrustLine("host-a", f.cp.PublicKey())
	key := strings.Fields(line)[2]
	base := "log " + f.logVKey + "\nquorum none\n"
	for _, tc := range []struct {
		name, line string
		ok         bool
		software   bool
		v1         bool
	}{
		{"bare key", "coprocessor a " + key, true, false, false},
		{"software", "coprocessor a " + key + " software", true, true, false},
		{"software and v1", "coprocessor a " + key + " v1 software", true, true, true},
		{"twice", "coprocessor a " + key + " software software", false, false, false},
		{"unknown option", "coprocessor a " + key + " hardware", false, false, false},
		{"bad identity", "coprocessor a " + key + " tpm=AAAA", false, false, false},
		{"empty identity", "coprocessor a " + key + " tpm=", false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ParseTrust([]byte(base+tc.line+"\n"), t.TempDir())
			if !tc.ok {
				if !errors.Is(err, ErrTrustFile) {
					t.Fatalf("ParseTrust = %v, want ErrTrustFile", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tr.Coprocessors {
				if k.Software != tc.software || k.V1 != tc.v1 || k.Identity != nil {
					t.Errorf("key %+v, want software %v v1 %v", k, tc.software, tc.v1)
				}
			}
		})
	}
}

// TestV1NeedsOptIn: a statement of predicate v1 (made before TPM evidence)
// verifies only when the key's line says v1, and the report names the
// predicate; a v2 statement that claims TPM evidence from a key without a
// tpm= identity is refused.
func TestV1NeedsOptIn(t *testing.T) {
	f := newFixture(t)
	v2 := f.payload(f.attest("vm-1", f.cfg))
	v1 := mustReplace(t, mustReplace(t, v2, `,"attestedBy":"software"`, ""), coproc.PredicateType, coproc.PredicateTypeV1)
	idx := f.sealRaw(v1)
	line, _ := TrustLine("host-a", f.cp.PublicKey())
	for _, tc := range []struct {
		name, line string
		ok         bool
	}{
		{"software only", line, false},
		{"v1", line + " v1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := *f
			g.trustText = strings.Replace(f.trustText, line, tc.line, 1)
			r, err := Verify(t.Context(), g.bundle(idx, g.tree.Size(), 0, 2), g.trust(), g.expected(), Options{Now: g.now})
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrEvidence)) {
				t.Fatalf("Verify = %v\n%s", err, dump(r))
			}
			if tc.ok && (r.Attestation != AttestationV1 || r.PredicateType != coproc.PredicateTypeV1) {
				t.Errorf("report attestation %q predicate %q", r.Attestation, r.PredicateType)
			}
		})
	}

	// TPM evidence claimed, no identity in the trust file.
	tpmClaim := mustReplace(t, v2, `"rootNVIndex":0,"counterNVIndex":0,"attestedBy":"software"`, `"rootNVIndex":1,"counterNVIndex":2,"attestedBy":"tpm2-nv-certify","evidence":"AQ=="`)
	idx = f.sealRaw(tpmClaim)
	r, err := Verify(t.Context(), f.bundle(idx, f.tree.Size(), 0, 2), f.trust(), f.expected(), Options{Now: f.now})
	if !errors.Is(err, ErrEvidence) || !strings.Contains(err.Error(), "no TPM identity") {
		t.Fatalf("TPM claim without an identity: %v\n%s", err, dump(r))
	}
}
