package measure

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// fullConfigV2 fills every slot and every v2 parameter, so that every leaf
// of schema v2 is present.
func fullConfigV2() Config {
	c := fullConfig()
	c.VMID = "web01"
	c.BalloonBytes = 3 << 30
	c.Initrd = digestOf("initrd")
	c.NVRAMTemplate = digestOf("vars")
	for i := range c.NICs {
		if i%2 == 1 {
			c.NICs[i].VLAN = 0
			c.NICs[i].Trunk = []VLANTag{{ID: 5}, {ID: uint16(100 + i), Native: NativeUntagged}}
		}
	}
	for i := range c.Disks {
		c.Disks[i].Backing = []Digest{*digestOf(fmt.Sprint("base", i)), *digestOf(fmt.Sprint("base-of-base", i))}
	}
	return c
}

// TestV2EveryParameterChangesRoot: a change to any single parameter of
// schema v2 (including the VM id) changes exactly that leaf and the root.
func TestV2EveryParameterChangesRoot(t *testing.T) {
	secret := vectorSecret(9)
	base := fullConfigV2()
	bm, err := V2.Measure(&base, secret)
	if err != nil {
		t.Fatal(err)
	}
	if len(bm.Leaves) != NumLeavesV2 || V2.NumLeaves() != NumLeavesV2 || bm.Schema != SchemaV2 {
		t.Fatalf("%d leaves (%d registered), schema %q; want %d, %s", len(bm.Leaves), V2.NumLeaves(), bm.Schema, NumLeavesV2, SchemaV2)
	}
	for _, l := range bm.Leaves {
		// Even NICs are access ports: their trunk leaves are absent.
		if l.Type == TypeAbsent && !isTrunkOrVLAN(l.Name) {
			t.Errorf("fullConfigV2 leaves %s absent", l.Name)
		}
	}
	muts := mutations()
	muts[NameVMID] = []func(*Config){func(c *Config) { c.VMID = "web02" }}
	muts[NameBalloonBytes] = []func(*Config){func(c *Config) { c.BalloonBytes = 2 << 30 }, func(c *Config) { c.BalloonBytes = 0 }}
	muts[NameInitrd] = []func(*Config){func(c *Config) { c.Initrd[0] ^= 1 }, func(c *Config) { c.Initrd = nil }}
	muts[NameNVRAMTemplate] = []func(*Config){func(c *Config) { c.NVRAMTemplate[0] ^= 1 }, func(c *Config) { c.NVRAMTemplate = nil }}
	for i := range MaxNICs {
		if i%2 == 1 {
			muts[NICVLANName(i)] = nil // a trunk's access VLAN is 0
			muts[NICTrunkName(i)] = []func(*Config){
				func(c *Config) { c.NICs[i].Trunk[0].ID = 6 },
				func(c *Config) { c.NICs[i].Trunk[1].Native = NativeTagged },
				func(c *Config) { c.NICs[i].Trunk[1].Native = "" },
				func(c *Config) { c.NICs[i].Trunk = c.NICs[i].Trunk[:1] },
				func(c *Config) { c.NICs[i].Trunk = nil },
			}
		} else {
			muts[NICTrunkName(i)] = nil
		}
	}
	for i := range MaxDisks {
		muts[DiskSHA256Name(i)] = muts[DiskSHA256Name(i)][:1] // an empty drive has no chain
		muts[DiskBackingName(i)] = []func(*Config){
			func(c *Config) { c.Disks[i].Backing[1][0] ^= 1 },
			func(c *Config) { c.Disks[i].Backing = c.Disks[i].Backing[:1] },
			func(c *Config) {
				c.Disks[i].Backing[0], c.Disks[i].Backing[1] = c.Disks[i].Backing[1], c.Disks[i].Backing[0]
			},
			func(c *Config) { c.Disks[i].Backing = nil },
		}
	}
	for _, name := range V2.Names() {
		if len(muts[name]) == 0 && !isTrunkOrVLAN(name) {
			t.Errorf("no mutation for %s", name)
		}
		for k, mutate := range muts[name] {
			t.Run(fmt.Sprintf("%s/%d", name, k), func(t *testing.T) {
				c := clone(base)
				mutate(&c)
				m, err := V2.Measure(&c, secret)
				if err != nil {
					t.Fatalf("Measure(mutated) = %v", err)
				}
				if r, err := V2.Root(&c, secret); err != nil || r != m.Root {
					t.Errorf("Root(mutated) = %v, %v; Measure's root is %v", r, err, m.Root)
				}
				if m.Root == bm.Root {
					t.Errorf("root unchanged after changing %s", name)
				}
				for i, l := range m.Leaves {
					if changed := l.Hash != bm.Leaves[i].Hash; changed != (l.Name == name) {
						t.Errorf("changing %s: leaf %s changed = %v", name, l.Name, changed)
					}
				}
				if err := m.Check(); err != nil {
					t.Errorf("Check = %v", err)
				}
			})
		}
	}
}

func isTrunkOrVLAN(name string) bool {
	for i := range MaxNICs {
		if name == NICTrunkName(i) || name == NICVLANName(i) {
			return true
		}
	}
	return false
}

// TestVMIDBindsRoot: the same configuration and secret for another VM id
// give another root under v2 (and the same under v1, which does not bind it).
func TestVMIDBindsRoot(t *testing.T) {
	secret := vectorSecret(1)
	a := Config{VMID: "web01", MemoryBytes: 1 << 30, CPUCount: 1}
	b := a
	b.VMID = "web02"
	ra, err := V2.Root(&a, secret)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := V2.Root(&b, secret)
	if err != nil {
		t.Fatal(err)
	}
	if ra == rb {
		t.Error("v2: another VM id gives the same root")
	}
	r1a, _ := V1.Root(&a, secret)
	r1b, _ := V1.Root(&b, secret)
	if r1a != r1b || r1a == ra {
		t.Errorf("v1 roots %v %v (want equal: v1 does not measure the id), v2 root %v", r1a, r1b, ra)
	}
	a.VMID = ""
	if _, err := V2.Root(&a, secret); !errors.Is(err, ErrMissing) {
		t.Errorf("v2 without VM id = %v, want ErrMissing", err)
	}
}

// TestValidateV2: what v2 refuses, and v1's refusal of every v2 value.
func TestValidateV2(t *testing.T) {
	ok := func() Config {
		return Config{VMID: "vm1", MemoryBytes: 4 << 30, CPUCount: 1,
			NICs:  []NIC{{MAC: mac(1)}},
			Disks: []Disk{{Target: "vda", SHA256: digestOf("a")}, {Target: "sda"}}}
	}
	cases := []struct {
		name, field string
		v1          bool // checked under v1 instead of v2
		edit        func(*Config)
		want        error
	}{
		{"vm id blank", NameVMID, false, func(c *Config) { c.VMID = "web 01" }, ErrInvalid},
		{"vm id long", NameVMID, false, func(c *Config) { c.VMID = string(bytes.Repeat([]byte("a"), 256)) }, ErrInvalid},
		{"balloon = memory", NameBalloonBytes, false, func(c *Config) { c.BalloonBytes = c.MemoryBytes }, ErrInvalid},
		{"balloon > memory", NameBalloonBytes, false, func(c *Config) { c.BalloonBytes = c.MemoryBytes + 1 }, ErrInvalid},
		{"trunk and vlan", NICTrunkName(0), false, func(c *Config) { c.NICs[0].VLAN = 3; c.NICs[0].Trunk = []VLANTag{{ID: 4}} }, ErrAmbiguous},
		{"trunk empty", NICTrunkName(0), false, func(c *Config) { c.NICs[0].Trunk = []VLANTag{} }, ErrInvalid},
		{"trunk unsorted", NICTrunkName(0), false, func(c *Config) { c.NICs[0].Trunk = []VLANTag{{ID: 5}, {ID: 4}} }, ErrInvalid},
		{"trunk repeated", NICTrunkName(0), false, func(c *Config) { c.NICs[0].Trunk = []VLANTag{{ID: 5}, {ID: 5}} }, ErrInvalid},
		{"trunk vlan 0", NICTrunkName(0), false, func(c *Config) { c.NICs[0].Trunk = []VLANTag{{ID: 0}} }, ErrInvalid},
		{"trunk vlan 4095", NICTrunkName(0), false, func(c *Config) { c.NICs[0].Trunk = []VLANTag{{ID: 4095}} }, ErrInvalid},
		{"trunk two natives", NICTrunkName(0), false, func(c *Config) {
			c.NICs[0].Trunk = []VLANTag{{ID: 1, Native: NativeTagged}, {ID: 2, Native: NativeUntagged}}
		}, ErrInvalid},
		{"trunk native mode", NICTrunkName(0), false, func(c *Config) { c.NICs[0].Trunk = []VLANTag{{ID: 1, Native: "yes"}} }, ErrInvalid},
		{"backing on empty drive", DiskBackingName(1), false, func(c *Config) { c.Disks[1].Backing = []Digest{{}} }, ErrInvalid},
		{"backing empty", DiskBackingName(0), false, func(c *Config) { c.Disks[0].Backing = []Digest{} }, ErrInvalid},
		{"backing too long", DiskBackingName(0), false, func(c *Config) { c.Disks[0].Backing = make([]Digest, MaxBacking+1) }, ErrInvalid},
		{"v1 balloon", NameBalloonBytes, true, func(c *Config) { c.BalloonBytes = 1 << 30 }, ErrUnsupported},
		{"v1 initrd", NameInitrd, true, func(c *Config) { c.Initrd = digestOf("i") }, ErrUnsupported},
		{"v1 nvram template", NameNVRAMTemplate, true, func(c *Config) { c.NVRAMTemplate = digestOf("v") }, ErrUnsupported},
		{"v1 trunk", NICTrunkName(0), true, func(c *Config) { c.NICs[0].Trunk = []VLANTag{{ID: 4}} }, ErrUnsupported},
		{"v1 backing", DiskBackingName(0), true, func(c *Config) { c.Disks[0].Backing = []Digest{{}} }, ErrUnsupported},
	}
	base := ok()
	if err := base.ValidateFor(V2); err != nil {
		t.Fatalf("base: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.edit(&c)
			spec := V2
			if tc.v1 {
				spec = V1
			}
			_, err := spec.Measure(&c, vectorSecret(1))
			fe, isField := errors.AsType[*FieldError](err)
			if !errors.Is(err, tc.want) || !isField || fe.Field != tc.field {
				t.Errorf("Measure = %v, want %v on %s", err, tc.want, tc.field)
			}
		})
	}
}

// TestV2Disclosure: every v2 leaf discloses and verifies; a disclosure
// relabelled with the other schema, or tampered, does not.
func TestV2Disclosure(t *testing.T) {
	c := fullConfigV2()
	c.Disks = c.Disks[:2]
	m, err := V2.Measure(&c, vectorSecret(5))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range V2.Names() {
		d, err := m.Disclose(name)
		if err != nil {
			t.Fatal(err)
		}
		if d.Schema != SchemaV2 || d.TreeSize != NumLeavesV2 {
			t.Fatalf("Disclose(%s): schema %q size %d", name, d.Schema, d.TreeSize)
		}
		if err := d.Verify(m.Root); err != nil {
			t.Errorf("Disclose(%s).Verify = %v", name, err)
		}
		for what, tamper := range map[string]func(*Disclosure){
			"as v1":          func(d *Disclosure) { d.Schema = "" },
			"unknown schema": func(d *Disclosure) { d.Schema = "vmledger/config/v3" },
			"salt":           func(d *Disclosure) { d.Salt[0] ^= 1 },
			"index":          func(d *Disclosure) { d.Index = (d.Index + 1) % NumLeavesV2 },
			"size":           func(d *Disclosure) { d.TreeSize = NumLeaves },
			"value longer":   func(d *Disclosure) { d.Value = append(d.Value, 0) },
		} {
			dd := *d
			dd.Value = bytes.Clone(d.Value)
			dd.Proof = slices.Clone(d.Proof)
			tamper(&dd)
			if err := dd.Verify(m.Root); err == nil {
				t.Errorf("tampered (%s) disclosure of %s verifies", what, name)
			}
		}
	}
	pd, err := m.DisclosePackage("pkg7")
	if err != nil {
		t.Fatal(err)
	}
	if err := pd.Verify(m.Root); err != nil {
		t.Errorf("package disclosure: %v", err)
	}
	if err := m.Check(); err != nil {
		t.Errorf("Check = %v", err)
	}
	// A v2 manifest whose vm.id leaf was made absent (and rehashed) is refused.
	mm := *m
	mm.Leaves = slices.Clone(m.Leaves)
	i, _ := V2.LeafIndex(NameVMID)
	l := &mm.Leaves[i]
	l.Type, l.Value, l.Display = TypeAbsent, nil, "-"
	l.Hash = LeafHash(LeafInput(l.Name, l.Type, l.Value, l.Salt))
	hashes := make([]Digest, len(mm.Leaves))
	for j := range mm.Leaves {
		hashes[j] = mm.Leaves[j].Hash
	}
	mm.Root = treeRoot(hashes)
	if err := mm.Check(); !errors.Is(err, ErrInvalid) {
		t.Errorf("Check of a v2 manifest without vm.id = %v, want ErrInvalid", err)
	}
}
