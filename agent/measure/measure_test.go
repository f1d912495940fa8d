package measure

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fullConfig fills every slot, so that every registered leaf is present.
func fullConfig() Config {
	c := Config{
		MemoryBytes: 4 << 30, CPUCount: 8, CPUAffinity: "0-7",
		BootLoader: digestOf("loader"), Kernel: digestOf("kernel"), KernelCmdline: strp("quiet"),
	}
	for i := range MaxNICs {
		c.NICs = append(c.NICs, NIC{MAC: mac(i), VLAN: uint16(10 + i)})
	}
	for i := range MaxDisks {
		c.Disks = append(c.Disks, Disk{Target: fmt.Sprintf("vd%c", 'a'+i), SHA256: digestOf(fmt.Sprint("disk", i))})
	}
	for i := range 20 {
		c.Packages = append(c.Packages, Package{Name: fmt.Sprint("pkg", i), Version: "1", ManifestSHA256: *digestOf(fmt.Sprint(i))})
	}
	return c
}

// clone deep-copies c so that mutations do not leak between subtests.
func clone(c Config) Config {
	b, _ := json.Marshal(c)
	var out Config
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// mutations returns, for every registered name, edits of c that change
// that parameter and nothing else: a different value, and (when the
// parameter can be absent) its removal.
func mutations() map[string][]func(*Config) {
	m := map[string][]func(*Config){
		NameMemoryBytes: {func(c *Config) { c.MemoryBytes++ }, func(c *Config) { c.MemoryBytes = 4000000000 }},
		NameCPUCount:    {func(c *Config) { c.CPUCount = 9 }},
		NameCPUAffinity: {func(c *Config) { c.CPUAffinity = "0-6" }, func(c *Config) { c.CPUAffinity = "" }},
		NameBootLoader:  {func(c *Config) { c.BootLoader = digestOf("other") }, func(c *Config) { c.BootLoader = nil }},
		NameKernel:      {func(c *Config) { c.Kernel[31] ^= 1 }, func(c *Config) { c.Kernel = nil }},
		NameKernelCmdline: {
			func(c *Config) { c.KernelCmdline = strp("quiet ") }, func(c *Config) { c.KernelCmdline = strp("") },
			func(c *Config) { c.KernelCmdline = nil },
		},
		NamePackagesRoot: {
			func(c *Config) { c.Packages[3].Version = "2" },
			func(c *Config) { c.Packages[0].Name = "pkg0x" },
			func(c *Config) { c.Packages[19].ManifestSHA256[0] ^= 0x80 },
			func(c *Config) { c.Packages = c.Packages[:19] },
			func(c *Config) { c.Packages = append(c.Packages, Package{Name: "new", Version: "1"}) },
			func(c *Config) { c.Packages = nil },
		},
	}
	for i := range MaxNICs {
		m[NICMACName(i)] = []func(*Config){func(c *Config) { c.NICs[i].MAC[5] ^= 1 }}
		m[NICVLANName(i)] = []func(*Config){func(c *Config) { c.NICs[i].VLAN = 0 }}
	}
	for i := range MaxDisks {
		m[DiskSHA256Name(i)] = []func(*Config){func(c *Config) { c.Disks[i].SHA256 = digestOf("x") }, func(c *Config) { c.Disks[i].SHA256 = nil }}
		m[DiskTargetName(i)] = []func(*Config){func(c *Config) { c.Disks[i].Target = "zz" }}
	}
	return m
}

// TestEveryParameterChangesRoot: a change to any single parameter changes
// exactly that leaf and the root.
func TestEveryParameterChangesRoot(t *testing.T) {
	secret := vectorSecret(7)
	base := fullConfig()
	bm, err := Measure(&base, secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bm.Leaves {
		if l.Type == TypeAbsent {
			t.Errorf("fullConfig leaves %s absent", l.Name)
		}
	}
	muts := mutations()
	for _, name := range Names() {
		if len(muts[name]) == 0 {
			t.Errorf("no mutation for %s", name)
		}
		for k, mutate := range muts[name] {
			t.Run(fmt.Sprintf("%s/%d", name, k), func(t *testing.T) {
				c := clone(base)
				mutate(&c)
				m, err := Measure(&c, secret)
				if err != nil {
					t.Fatalf("Measure(mutated) = %v", err)
				}
				if r, err := Root(&c, secret); err != nil || r != m.Root {
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
			})
		}
	}
	// Removing a NIC or disk turns both of its leaves absent; the count of
	// leaves never changes.
	c := clone(base)
	c.NICs = c.NICs[:15]
	c.Disks = c.Disks[:3]
	m, err := Measure(&c, secret)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Leaves) != NumLeaves || m.Root == bm.Root {
		t.Errorf("fewer devices: %d leaves, root changed %v; want %d, true", len(m.Leaves), m.Root != bm.Root, NumLeaves)
	}
	for _, n := range []string{NICMACName(15), NICVLANName(15), DiskSHA256Name(3), DiskTargetName(15)} {
		if l, _ := m.Leaf(n); l.Type != TypeAbsent {
			t.Errorf("leaf %s type %v, want absent", n, l.Type)
		}
	}
}

func TestSecretChangesEverySalt(t *testing.T) {
	c := fullConfig()
	a, err := Measure(&c, vectorSecret(1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Measure(&c, vectorSecret(2))
	if err != nil {
		t.Fatal(err)
	}
	if a.Root == b.Root {
		t.Fatal("same root under two VM secrets")
	}
	for i := range a.Leaves {
		if a.Leaves[i].Salt == b.Leaves[i].Salt || a.Leaves[i].Hash == b.Leaves[i].Hash {
			t.Errorf("leaf %s: salt or hash equal under two secrets", a.Leaves[i].Name)
		}
	}
	for i := range a.Packages {
		if a.Packages[i].Salt == b.Packages[i].Salt {
			t.Errorf("package %s: salt equal under two secrets", a.Packages[i].Name)
		}
	}
	if err := a.CheckSecret(vectorSecret(1)); err != nil {
		t.Errorf("CheckSecret(right secret) = %v", err)
	}
	if err := a.CheckSecret(vectorSecret(2)); err == nil {
		t.Error("CheckSecret(wrong secret) = nil, want error")
	}
}

// TestDeterministic: package order in the input does not matter; measuring
// twice gives the same root.
func TestDeterministic(t *testing.T) {
	c := fullConfig()
	a, _ := Measure(&c, vectorSecret(1))
	slices.Reverse(c.Packages)
	b, err := Measure(&c, vectorSecret(1))
	if err != nil || a.Root != b.Root {
		t.Errorf("root depends on package order: %v vs %v (%v)", a.Root, b.Root, err)
	}
}

func TestValidate(t *testing.T) {
	ok := func() Config { return Config{MemoryBytes: 1, CPUCount: 1} }
	tests := []struct {
		name, field string
		edit        func(*Config)
	}{
		{"no memory", NameMemoryBytes, func(c *Config) { c.MemoryBytes = 0 }},
		{"no cpus", NameCPUCount, func(c *Config) { c.CPUCount = 0 }},
		{"affinity not canonical", NameCPUAffinity, func(c *Config) { c.CPUAffinity = "1,0" }},
		{"affinity bad", NameCPUAffinity, func(c *Config) { c.CPUAffinity = "x" }},
		{"too many NICs", "net", func(c *Config) { c.NICs = make([]NIC, MaxNICs+1) }},
		{"vlan", NICVLANName(0), func(c *Config) { c.NICs = []NIC{{VLAN: 4095}} }},
		{"too many disks", "disk", func(c *Config) { c.Disks = make([]Disk, MaxDisks+1) }},
		{"no target", DiskTargetName(0), func(c *Config) { c.Disks = []Disk{{}} }},
		{"dup target", DiskTargetName(1), func(c *Config) { c.Disks = []Disk{{Target: "a"}, {Target: "a"}} }},
		{"bad utf8", NameKernelCmdline, func(c *Config) { c.KernelCmdline = strp("\xff") }},
		{"trailing NUL", NameKernelCmdline, func(c *Config) { c.KernelCmdline = strp("quiet\x00") }},
		{"NUL in target", DiskTargetName(0), func(c *Config) { c.Disks = []Disk{{Target: "vd\x00a"}} }},
		{"pkg no name", "packages/#0", func(c *Config) { c.Packages = []Package{{Version: "1"}} }},
		{"pkg no version", "packages/a", func(c *Config) { c.Packages = []Package{{Name: "a"}} }},
		{"pkg dup", "packages/a", func(c *Config) { c.Packages = []Package{{Name: "a", Version: "1"}, {Name: "a", Version: "2"}} }},
		{"pkg long", "packages/a", func(c *Config) { c.Packages = []Package{{Name: "a", Version: strings.Repeat("1", 70000)}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.edit(&c)
			_, err := Measure(&c, Secret{})
			fe, isFE := errors.AsType[*FieldError](err)
			if !isFE || fe.Field != tt.field {
				t.Errorf("Measure(%s) = %v, want a FieldError for %s", tt.name, err, tt.field)
			}
		})
	}
}

func TestCanonicalCPUSet(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0", "0"}, {"0-3,8", "0-3,8"}, {"8,0-3", "0-3,8"}, {"0,1,2,3", "0-3"}, {"0-1", "0-1"},
		{" 1 , 3 ", "1,3"}, {"0-7,^3", "0-2,4-7"}, {"^0,0-2", "1-2"}, {"0-3,2-5", "0-5"}, {"0-3,4-5", "0-5"},
		{"10,9,11", "9-11"}, {"0-3,^0,^3", "1-2"}, {"07", "7"}, {"1048575", "1048575"},
	}
	for _, tt := range tests {
		if got, err := CanonicalCPUSet(tt.in); err != nil || got != tt.want {
			t.Errorf("CanonicalCPUSet(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", " ", "a", "1-", "-1", "3-1", "^1-2", "0,^0", "1048576", "1,,2", "+1", "0x1", "1 2"} {
		if got, err := CanonicalCPUSet(bad); err == nil {
			t.Errorf("CanonicalCPUSet(%q) = %q, want error", bad, got)
		}
	}
}

func TestCheck(t *testing.T) {
	c := fullConfig()
	m, err := Measure(&c, vectorSecret(3))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back Measurement
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Check(); err != nil {
		t.Fatalf("Check(JSON round trip) = %v", err)
	}
	tampers := map[string]func(*Measurement){
		"value":         func(m *Measurement) { m.Leaves[5].Value[0] ^= 1 },
		"salt":          func(m *Measurement) { m.Leaves[5].Salt[0] ^= 1 },
		"type":          func(m *Measurement) { m.Leaves[5].Type = TypeAbsent; m.Leaves[5].Value = nil },
		"leaf hash":     func(m *Measurement) { m.Leaves[5].Hash[0] ^= 1 },
		"root":          func(m *Measurement) { m.Root[0] ^= 1 },
		"order":         func(m *Measurement) { m.Leaves[1], m.Leaves[2] = m.Leaves[2], m.Leaves[1] },
		"missing leaf":  func(m *Measurement) { m.Leaves = m.Leaves[:70] },
		"package":       func(m *Measurement) { m.Packages[2].Version = "9" },
		"package order": func(m *Measurement) { m.Packages[1], m.Packages[2] = m.Packages[2], m.Packages[1] },
		"package gone":  func(m *Measurement) { m.Packages = m.Packages[1:] },
		"schema":        func(m *Measurement) { m.Schema = "vmledger/config/v2" },
		"display":       func(m *Measurement) { m.Leaves[37].Display = "1" },
	}
	for name, tamper := range tampers {
		t.Run(name, func(t *testing.T) {
			var mm Measurement
			if err := json.Unmarshal(b, &mm); err != nil {
				t.Fatal(err)
			}
			tamper(&mm)
			if err := mm.Check(); err == nil {
				t.Errorf("Check(tampered %s) = nil, want error", name)
			}
		})
	}
}

// TestDisclosure: every parameter's disclosure verifies; a tampered value,
// salt, type, name, index, tree size or proof does not.
func TestDisclosure(t *testing.T) {
	c := fullConfig()
	c.Disks = c.Disks[:2] // some absent leaves too
	m, err := Measure(&c, vectorSecret(5))
	if err != nil {
		t.Fatal(err)
	}
	other := m.Root
	other[0] ^= 1
	for _, name := range Names() {
		d, err := m.Disclose(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Verify(m.Root); err != nil {
			t.Errorf("Disclose(%s).Verify = %v", name, err)
		}
		if err := d.Verify(other); !errors.Is(err, ErrMismatch) {
			t.Errorf("Disclose(%s).Verify(other root) = %v, want ErrMismatch", name, err)
		}
		for what, tamper := range disclosureTampers(d) {
			t.Run(name+"/"+what, func(t *testing.T) {
				dd := *d
				dd.Value = bytes.Clone(d.Value)
				dd.Proof = slices.Clone(d.Proof)
				tamper(&dd)
				if err := dd.Verify(m.Root); err == nil {
					t.Errorf("tampered (%s) disclosure of %s verifies", what, name)
				}
			})
		}
	}
	if _, err := m.Disclose("memory.megabytes"); err == nil {
		t.Error("Disclose(unregistered) = nil error")
	}
}

func disclosureTampers(d *Disclosure) map[string]func(*Disclosure) {
	ts := map[string]func(*Disclosure){
		"salt":        func(d *Disclosure) { d.Salt[31] ^= 1 },
		"index":       func(d *Disclosure) { d.Index = (d.Index + 1) % NumLeaves },
		"index+size":  func(d *Disclosure) { d.Index += NumLeaves; d.TreeSize *= 2 },
		"size":        func(d *Disclosure) { d.TreeSize-- },
		"proof short": func(d *Disclosure) { d.Proof = d.Proof[:len(d.Proof)-1] },
		"proof long":  func(d *Disclosure) { d.Proof = append(d.Proof, Digest{}) },
		"name":        func(d *Disclosure) { d.Name = NICMACName(3) + "x" },
		"swap name": func(d *Disclosure) {
			if d.Name == NameCPUCount {
				d.Name = NameMemoryBytes
			} else {
				d.Name = NameCPUCount
			}
		},
	}
	for i := range d.Proof {
		ts[fmt.Sprintf("proof[%d]", i)] = func(d *Disclosure) { d.Proof[i][i%32] ^= 0x10 }
	}
	if d.Type == TypeAbsent {
		ts["value"] = func(d *Disclosure) { d.Value = []byte{0} }
		ts["type"] = func(d *Disclosure) { d.Type = TypeUTF8 }
	} else {
		ts["value"] = func(d *Disclosure) { d.Value[len(d.Value)-1] ^= 1 }
		ts["type"] = func(d *Disclosure) { d.Type = TypeAbsent; d.Value = nil }
		ts["value longer"] = func(d *Disclosure) { d.Value = append(d.Value, 0) }
	}
	return ts
}

func TestPackageDisclosure(t *testing.T) {
	c := fullConfig()
	m, err := Measure(&c, vectorSecret(6))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Packages {
		d, err := m.DisclosePackage(p.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Verify(m.Root); err != nil {
			t.Errorf("DisclosePackage(%s).Verify = %v", p.Name, err)
		}
	}
	d, err := m.DisclosePackage("pkg7")
	if err != nil {
		t.Fatal(err)
	}
	tampers := map[string]func(*PackageDisclosure){
		"name":          func(d *PackageDisclosure) { d.Package.Name = "pkg8" },
		"version":       func(d *PackageDisclosure) { d.Package.Version = "1.0" },
		"manifest":      func(d *PackageDisclosure) { d.Package.ManifestSHA256[3] ^= 1 },
		"salt":          func(d *PackageDisclosure) { d.Salt[0] ^= 1 },
		"index":         func(d *PackageDisclosure) { d.Index++ },
		"subtree size":  func(d *PackageDisclosure) { d.SubtreeSize++ },
		"proof":         func(d *PackageDisclosure) { d.Proof[0][0] ^= 1 },
		"proof short":   func(d *PackageDisclosure) { d.Proof = d.Proof[1:] },
		"subtree root":  func(d *PackageDisclosure) { d.Subtree.Value[0] ^= 1 },
		"subtree salt":  func(d *PackageDisclosure) { d.Subtree.Salt[0] ^= 1 },
		"subtree proof": func(d *PackageDisclosure) { d.Subtree.Proof[2][5] ^= 1 },
		"outer name":    func(d *PackageDisclosure) { d.Subtree.Name = NameKernel; d.Subtree.Type = TypeBytes },
	}
	for what, tamper := range tampers {
		t.Run(what, func(t *testing.T) {
			b, _ := json.Marshal(d)
			var dd PackageDisclosure
			if err := json.Unmarshal(b, &dd); err != nil {
				t.Fatal(err)
			}
			tamper(&dd)
			if err := dd.Verify(m.Root); err == nil {
				t.Errorf("tampered (%s) package disclosure verifies", what)
			}
		})
	}
	if _, err := m.DisclosePackage("nope"); err == nil {
		t.Error("DisclosePackage(unknown) = nil error")
	}
}

// TestNames pins the indexing rules: decimal, no leading zeros, bytewise
// order.
func TestNames(t *testing.T) {
	names := Names()
	if len(names) != NumLeaves {
		t.Fatalf("len(Names()) = %d, want %d", len(names), NumLeaves)
	}
	want := []string{"boot.loader.sha256", "cpu.affinity", "cpu.count", "disk.0.sha256", "disk.0.target", "disk.1.sha256", "disk.1.target", "disk.10.sha256"}
	if !slices.Equal(names[:len(want)], want) {
		t.Errorf("Names()[:8] = %q, want %q", names[:len(want)], want)
	}
	if names[NumLeaves-1] != NamePackagesRoot {
		t.Errorf("last name = %q, want packages.root", names[NumLeaves-1])
	}
	for i, n := range names {
		if idx, ok := LeafIndex(n); !ok || idx != uint64(i) {
			t.Errorf("LeafIndex(%s) = %d, %v, want %d", n, idx, ok, i)
		}
	}
	for _, n := range []string{"net.01.mac", "net.16.mac", "disk.16.target", "net.-1.vlan", "memory"} {
		if _, ok := LeafIndex(n); ok {
			t.Errorf("LeafIndex(%q) found, want unregistered", n)
		}
	}
}

// onceReader fails if read again after reporting EOF, and counts bytes.
type onceReader struct {
	r    io.Reader
	n    int
	eof  bool
	fail bool
}

func (o *onceReader) Read(p []byte) (int, error) {
	if o.eof {
		o.fail = true
	}
	n, err := o.r.Read(p)
	o.n += n
	if err == io.EOF {
		o.eof = true
	}
	return n, err
}

func TestHashImage(t *testing.T) {
	for _, size := range []int{0, 1, hashBufSize - 1, hashBufSize, 3*hashBufSize + 17} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := bytes.Repeat([]byte{0xa5, 0x5a, 0x01}, size/3+1)[:size]
			r := &onceReader{r: bytes.NewReader(data)}
			var last int64 = -1
			d, n, err := HashImage(r, func(done int64) {
				if done <= last {
					t.Errorf("progress went from %d to %d", last, done)
				}
				last = done
			})
			if err != nil || n != int64(size) || d != *digestOf(string(data)) {
				t.Errorf("HashImage = %v, %d, %v; want %v, %d", d, n, err, digestOf(string(data)), size)
			}
			if r.fail || r.n != size {
				t.Errorf("read %d bytes, read after EOF %v; want %d, false", r.n, r.fail, size)
			}
		})
	}
	boom := errors.New("disk on fire")
	if _, _, err := HashImage(io.MultiReader(strings.NewReader("abc"), iotestErr{boom}), nil); !errors.Is(err, boom) {
		t.Errorf("HashImage(failing reader) = %v, want %v", err, boom)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

func BenchmarkHashFile(b *testing.B) {
	const size = 64 << 20
	path := filepath.Join(b.TempDir(), "image")
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i * 131)
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := HashImage(f, nil); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

func TestParseSecret(t *testing.T) {
	raw := vectorSecret(9)
	hexed := HexBytesString(raw[:])
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"raw", raw[:], true},
		{"hex", []byte(hexed), true},
		{"hex newline", []byte(hexed + "\n"), true},
		{"HEX", []byte(strings.ToUpper(hexed)), true},
		{"short", raw[:31], false},
		{"long", append(raw[:], 0), false},
		{"bad hex", []byte("zz" + hexed[2:]), false},
		{"zero raw", make([]byte, 32), false},
		{"zero hex", []byte(strings.Repeat("0", 64)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSecret(tt.in)
			if (err == nil) != tt.ok || (tt.ok && s != raw) {
				t.Errorf("ParseSecret(%q) = %x, %v; want ok %v", tt.in, s[:], err, tt.ok)
			}
		})
	}
	if got := fmt.Sprintf("%v %+v %#v %s", raw, raw, raw, raw); strings.Contains(got, "0a0b") || strings.Contains(got, "10 11") {
		t.Errorf("a Secret prints its bytes: %s", got)
	}
}

// BenchmarkMeasure measures a whole configuration into its salted tree, as
// the agent does before a launch and a customer does when verifying:
//
//	go test -run '^$' -bench Measure ./agent/measure
func TestRootIsMeasuresRoot(t *testing.T) {
	secret := vectorSecret(3)
	for name, c := range map[string]Config{"full": fullConfig(), "minimal": {MemoryBytes: 1 << 30, CPUCount: 1}} {
		m, err := Measure(&c, secret)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := Root(&c, secret); err != nil || r != m.Root {
			t.Errorf("%s: Root = %v, %v; Measure's root is %v", name, r, err, m.Root)
		}
		// Root must not alias-and-alter the configuration either.
		if again, _ := Measure(&c, secret); again.Root != m.Root {
			t.Errorf("%s: Measure after Root = %v, want %v", name, again.Root, m.Root)
		}
	}
	bad := fullConfig()
	bad.CPUCount = 0
	if _, err := Root(&bad, secret); err == nil {
		t.Error("Root of a configuration without CPUs = nil error")
	} else if _, merr := Measure(&bad, secret); merr == nil || merr.Error() != err.Error() {
		t.Errorf("Root's error %v, Measure's %v: want the same", err, merr)
	}
}

// BenchmarkRoot is Measure without building the manifest, as a verifier
// recomputes the expected root.
func BenchmarkRoot(b *testing.B) {
	cfg := fullConfig()
	var secret Secret
	for b.Loop() {
		if _, err := Root(&cfg, secret); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMeasure(b *testing.B) {
	cfg := fullConfig()
	var secret Secret
	m, err := Measure(&cfg, secret)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(m.Leaves)), "leaves")
	for b.Loop() {
		if _, err := Measure(&cfg, secret); err != nil {
			b.Fatal(err)
		}
	}
}
