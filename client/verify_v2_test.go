package client

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/vmconfig"
	"github.com/vmledger/vmledger/coproc"
)

// attestUnder measures cfg under spec for VM measuredAs, and has the
// co-processor attest that root for VM vmID (the two differ only in an
// attack) under the schema spec.
func (f *fixture) attestUnder(spec *measure.Spec, vmID, measuredAs string, cfg *measure.Config) (uint64, *measure.Measurement) {
	f.t.Helper()
	c := *cfg
	if spec == measure.V2 {
		c.VMID = measuredAs
	}
	m, err := spec.Measure(&c, f.secret)
	if err != nil {
		f.t.Fatal(err)
	}
	env, err := f.cp.Attest(f.t.Context(), coproc.Claim{
		VMID: vmID, Root: m.Root, Parameters: m.Names(), ConfigSchema: spec.Name(),
		Freshness: coproc.Anchor{Origin: origin, Size: f.tree.Size(), Root: [32]byte(f.tree.Hash())},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	entry, err := env.Canonical()
	if err != nil {
		f.t.Fatal(err)
	}
	return f.append(entry), m
}

// v2Domain is a ballooned domain with a VLAN trunk and a two-image qcow2
// chain (made with qemu-img), as the host runs it, measured through
// vmconfig from its libvirt XML; and the same machine as the owner ordered
// it, a JSON file with the images' digests.
func v2Domain(t *testing.T) (ran, ordered *measure.Config) {
	t.Helper()
	qimg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, []byte(strings.Repeat("base ", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top.qcow2")
	if out, err := exec.Command(qimg, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, top).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	xml := `<domain type='kvm'><name>vm-1</name><memory unit='MiB'>4096</memory><currentMemory unit='MiB'>2048</currentMemory><vcpu>2</vcpu>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='` + top + `'/><target dev='vda' bus='virtio'/></disk>
<interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br0'/><vlan trunk='yes'><tag id='100' nativeMode='tagged'/><tag id='200'/></vlan></interface>
</devices></domain>`
	c, err := vmconfig.ParseLibvirt([]byte(xml), vmconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ran, err = c.Resolve(t.Context(), vmconfig.ResolveOptions{}); err != nil {
		t.Fatal(err)
	}
	sum := func(p string) string {
		d, _, _ := measure.HashImage(strings.NewReader(string(must(os.ReadFile(p)))), nil)
		return d.String()
	}
	js := `{"schema":"vmledger/config/v2","memory":"4GiB","balloon":"2GiB","cpu":{"count":2},
"nics":[{"mac":"52:54:00:00:00:01","trunk":[{"id":200},{"id":100,"native":"tagged"}]}],
"disks":[{"target":"vda","sha256":"` + sum(top) + `","backing":[{"sha256":"` + sum(base) + `"}]}]}`
	oc, err := vmconfig.ParseJSON([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if ordered, err = oc.Resolve(t.Context(), vmconfig.ResolveOptions{}); err != nil {
		t.Fatal(err)
	}
	return ran, ordered
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestVerifyV2: a schema v2 attestation of a ballooned domain with a VLAN
// trunk and a qcow2 chain verifies end to end against the ordered
// configuration, the manifest and disclosures; the VM id is bound; v1
// attestations still verify; material of one schema does not pass for the
// other.
func TestVerifyV2(t *testing.T) {
	ran, ordered := v2Domain(t)
	f := newFixture(t)
	idx, m := f.attestUnder(measure.V2, "vm-1", "vm-1", ran)
	b := f.bundle(idx, f.tree.Size(), 0, 2)
	s := f.secret
	verify := func(e *Expected) (*Report, error) {
		return Verify(t.Context(), b, f.trust(), e, Options{Now: f.now})
	}

	t.Run("expected config", func(t *testing.T) {
		r, err := verify(&Expected{VMID: "vm-1", Config: ordered, Secret: &s})
		if err != nil || !r.OK {
			t.Fatalf("Verify = %v\n%s", err, dump(r))
		}
	})
	t.Run("manifest and disclosures", func(t *testing.T) {
		var ds []measure.Disclosure
		for _, n := range []string{measure.NameVMID, measure.NameBalloonBytes, measure.NICTrunkName(0), measure.DiskBackingName(0)} {
			d, err := m.Disclose(n)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, *d)
		}
		if r, err := verify(&Expected{Manifest: m, Disclosures: ds}); err != nil || !r.OK {
			t.Fatalf("Verify = %v\n%s", err, dump(r))
		}
	})
	t.Run("balloon differs", func(t *testing.T) {
		o := *ordered
		o.BalloonBytes = 3 << 30
		r, err := verify(&Expected{VMID: "vm-1", Config: &o, Secret: &s, Manifest: m})
		if !errors.Is(err, ErrConfiguration) || len(r.Differences) != 1 || r.Differences[0].Name != measure.NameBalloonBytes {
			t.Errorf("Verify = %v, differences %+v; want the configuration to fail naming %s", err, r.Differences, measure.NameBalloonBytes)
		}
	})
	t.Run("other VM's expected config", func(t *testing.T) {
		if _, err := verify(&Expected{VMID: "vm-2", Config: ordered, Secret: &s}); !errors.Is(err, ErrStatement) {
			t.Errorf("Verify for vm-2 = %v, want ErrStatement", err)
		}
	})
	t.Run("v1 disclosure against a v2 root", func(t *testing.T) {
		d, _ := m.Disclose(measure.NameMemoryBytes)
		d.Schema = ""
		if _, err := verify(&Expected{Disclosures: []measure.Disclosure{*d}}); !errors.Is(err, ErrConfiguration) {
			t.Errorf("Verify = %v, want ErrConfiguration", err)
		}
	})

	// The host measures VM vm-1 and has the result attested as VM vm-2
	// (same configuration, same secret): under v2 the root binds vm-1 and
	// the verifier of vm-2 refuses; under v1, which binds no id, the very
	// same substitution verifies — why the agent measures v2.
	for _, tc := range []struct {
		spec *measure.Spec
		ok   bool
	}{{measure.V2, false}, {measure.V1, true}} {
		t.Run("substituted VM id under "+tc.spec.Name(), func(t *testing.T) {
			cfg := f.cfg // v1 can measure it
			i, mm := f.attestUnder(tc.spec, "vm-2", "vm-1", cfg)
			bb := f.bundle(i, f.tree.Size(), 0, 2)
			r, err := Verify(t.Context(), bb, f.trust(), &Expected{VMID: "vm-2", Config: cfg, Secret: &s}, Options{Now: f.now})
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrConfiguration)) {
				t.Errorf("Verify = %v, want ok %v\n%s", err, tc.ok, dump(r))
			}
			// The host's own manifest recomputes to the attested root,
			// but under v2 it measures vm-1, not the attested vm-2.
			_, err = Verify(t.Context(), bb, f.trust(), &Expected{Manifest: mm}, Options{Now: f.now})
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrVMNotExpected)) {
				t.Errorf("Verify with the manifest = %v, want ok %v", err, tc.ok)
			}
		})
	}

	t.Run("v1 bundle", func(t *testing.T) {
		i := f.attest("vm-1", f.cfg) // the pre-v2 path: measure.Measure, a claim without a schema
		b1 := f.bundle(i, f.tree.Size(), 0, 2)
		st, _ := must(coproc.ParseEnvelope(b1.Entry)).Statement()
		if st.Predicate.ConfigSchema != measure.SchemaV1 {
			t.Fatalf("statement schema %q", st.Predicate.ConfigSchema)
		}
		m1, _ := measure.Measure(f.cfg, s)
		d1, _ := m1.Disclose(measure.NameMemoryBytes)
		if r, err := Verify(t.Context(), b1, f.trust(), &Expected{VMID: "vm-1", Config: f.cfg, Secret: &s, Manifest: m1, Disclosures: []measure.Disclosure{*d1}}, Options{Now: f.now}); err != nil || !r.OK {
			t.Fatalf("v1 bundle: Verify = %v\n%s", err, dump(r))
		}
		// A v2 manifest of the same configuration is not this root's.
		c2 := *f.cfg
		c2.VMID = "vm-1"
		m2, _ := measure.V2.Measure(&c2, s)
		if _, err := Verify(t.Context(), b1, f.trust(), &Expected{Manifest: m2}, Options{Now: f.now}); !errors.Is(err, ErrConfiguration) {
			t.Errorf("v1 bundle with a v2 manifest: Verify = %v, want ErrConfiguration", err)
		}
	})
}
