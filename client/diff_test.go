package client

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
)

// TestVerifyNamesDifferences: when the attested leaves are at hand (the
// provider's manifest, or disclosures), a configuration mismatch names each
// parameter that differs with the expected and the attested value, not only
// the two roots.
func TestVerifyNamesDifferences(t *testing.T) {
	f := newFixture(t)
	ran := *f.cfg // what the host ran and attested
	ran.MemoryBytes = 8 << 30
	ran.CPUCount = 6
	ran.Packages = slices.Clone(f.cfg.Packages)
	ran.Packages[0].ManifestSHA256 = measure.Digest{0xee}
	ran.Packages[1].Version = "3.0.14-1"
	ran.Packages = append(ran.Packages, measure.Package{Name: "telnetd", Version: "0.17-44", ManifestSHA256: measure.Digest{9}})
	attested, err := measure.Measure(&ran, f.secret)
	if err != nil {
		t.Fatal(err)
	}
	idx := f.attest("vm-1", &ran)
	b, tr := f.bundle(idx, f.tree.Size(), 0, 1), f.trust()
	disclose := func(name string) measure.Disclosure {
		d, err := attested.Disclose(name)
		if err != nil {
			t.Fatal(err)
		}
		return *d
	}
	otherSecret := f.secret
	otherSecret[0] ^= 1
	for _, tc := range []struct {
		name   string
		with   func(e *Expected)
		want   []ParameterDiff
		detail string
	}{
		{"roots only", func(e *Expected) {}, nil, "give the provider's manifest (--manifest) or disclosures"},
		{"with the manifest", func(e *Expected) { e.Manifest = attested }, []ParameterDiff{
			{Name: "cpu.count", Expected: "4", Attested: "6"},
			{Name: "memory.bytes", Expected: "4294967296", Attested: "8589934592"},
			{Name: "package openssh-server", Expected: "1:9.2p1-2 (manifest sha256 " + measure.Digest{7}.String() + ")", Attested: "1:9.2p1-2 (manifest sha256 " + measure.Digest{0xee}.String() + ")"},
			{Name: "package openssl", Expected: "3.0.15-1", Attested: "3.0.14-1"},
			{Name: "package telnetd", Expected: "-", Attested: "0.17-44"},
		}, "5 parameters differ: cpu.count, memory.bytes, package openssh-server, package openssl, package telnetd"},
		{"with disclosures", func(e *Expected) {
			e.Disclosures = []measure.Disclosure{disclose("memory.bytes"), disclose("cpu.affinity")}
		}, []ParameterDiff{
			{Name: "memory.bytes", Expected: "4294967296", Attested: "8589934592"},
		}, "1 of 2 disclosed parameters differs: memory.bytes"},
		{"with disclosures of a parameter and a package", func(e *Expected) {
			d, err := attested.DisclosePackage("openssl")
			if err != nil {
				t.Fatal(err)
			}
			e.Disclosures = []measure.Disclosure{disclose("memory.bytes"), disclose("cpu.affinity")}
			e.PackageDisclosures = []measure.PackageDisclosure{*d}
		}, []ParameterDiff{
			{Name: "memory.bytes", Expected: "4294967296", Attested: "8589934592"},
			{Name: "package openssl", Expected: "3.0.15-1", Attested: "3.0.14-1"},
		}, "2 of 3 disclosed parameters differ: memory.bytes, package openssl"},
		{"disclosures that all agree", func(e *Expected) {
			e.Disclosures = []measure.Disclosure{disclose("cpu.affinity")}
		}, nil, "the 1 disclosed parameter has the expected value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := f.expected()
			tc.with(e)
			r, err := Verify(t.Context(), b, tr, e, Options{Now: f.now})
			if !errors.Is(err, ErrConfiguration) {
				t.Fatalf("Verify = %v, want ErrConfiguration\n%s", err, dump(r))
			}
			if !slices.Equal(r.Differences, tc.want) {
				t.Errorf("differences:\n got %+v\nwant %+v", r.Differences, tc.want)
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("error %q does not say %q", err, tc.detail)
			}
		})
	}

	// The same values measured with another VM secret: nothing differs
	// but the salts, and the report says so.
	t.Run("another secret", func(t *testing.T) {
		other := *f.cfg
		m, err := measure.Measure(&other, otherSecret)
		if err != nil {
			t.Fatal(err)
		}
		f2 := newFixture(t)
		f2.secret = otherSecret
		idx := f2.attest("vm-1", f2.cfg)
		e := f2.expected()
		e.Secret = &f.secret
		e.Manifest = m
		r, err := Verify(t.Context(), f2.bundle(idx, f2.tree.Size(), 0, 1), f2.trust(), e, Options{Now: f2.now})
		if !errors.Is(err, ErrConfiguration) || len(r.Differences) != 0 || !strings.Contains(err.Error(), "another VM secret") {
			t.Fatalf("Verify = %v, differences %+v; want ErrConfiguration saying the salts come from another VM secret", err, r.Differences)
		}
	})
}
