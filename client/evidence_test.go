package client

import (
	"errors"
	"strings"
	"testing"
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
