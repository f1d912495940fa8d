package measure

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Leaf is one configuration leaf with everything needed to recompute its
// hash. Leaves hold salts: a Measurement is as sensitive as the VM secret
// for the values it contains (with a salt, a guessable value can be
// confirmed offline).
type Leaf struct {
	Index   uint64   `json:"index"`
	Name    string   `json:"name"`
	Type    Type     `json:"type"`
	Value   HexBytes `json:"value"`
	Display string   `json:"display"` // Display(Name, Type, Value), for people; not hashed, but Check insists it matches
	Salt    Digest   `json:"salt"`
	Hash    Digest   `json:"leaf_hash"`
}

// PackageLeaf is one leaf of the package subtree.
type PackageLeaf struct {
	Index uint64 `json:"index"`
	Package
	Salt Digest `json:"salt"`
	Hash Digest `json:"leaf_hash"`
}

// Measurement is a measured configuration: every leaf in tree order, the
// package subtree, and the root. It is the agent's manifest; encode it with
// encoding/json.
type Measurement struct {
	Schema   string        `json:"schema"` // Schema
	Root     Digest        `json:"root"`
	Leaves   []Leaf        `json:"leaves"`             // NumLeaves leaves, index order = name order
	Packages []PackageLeaf `json:"packages,omitempty"` // sorted by name; the subtree of packages.root
}

// Root measures cfg with secret under schema v1 and returns only the root;
// see Spec.Root.
func Root(cfg *Config, secret Secret) (Digest, error) { return V1.Root(cfg, secret) }

// Measure measures cfg under schema v1; see Spec.Measure. The agent
// measures under Current (V2).
func Measure(cfg *Config, secret Secret) (*Measurement, error) { return V1.Measure(cfg, secret) }

// Root measures cfg with secret and returns only the root. It is what a
// customer's client calls to recompute the expected root of the
// configuration they ordered: the same hashing as Measure, without
// building the leaves a manifest lists.
func (s *Spec) Root(cfg *Config, secret Secret) (Digest, error) {
	return s.measure(cfg, secret, nil)
}

// Measure validates cfg and computes its leaves, package subtree and root.
func (s *Spec) Measure(cfg *Config, secret Secret) (*Measurement, error) {
	m := &Measurement{Schema: s.name}
	if _, err := s.measure(cfg, secret, m); err != nil {
		return nil, err
	}
	return m, nil
}

// measure validates cfg and returns its root; if m is not nil it also
// fills m's root, leaves and package leaves.
func (s *Spec) measure(cfg *Config, secret Secret, m *Measurement) (Digest, error) {
	if err := cfg.ValidateFor(s); err != nil {
		return Digest{}, err
	}
	pkgs := slices.Clone(cfg.Packages)
	slices.SortFunc(pkgs, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	salts := newSalter(secret)
	pkgHashes := make([]Digest, len(pkgs))
	if m != nil {
		m.Packages = make([]PackageLeaf, 0, len(pkgs))
	}
	// buf holds 0x00 ‖ leaf input, one leaf at a time: the leaf hash's
	// input (LeafHash), without an allocation per leaf.
	var buf []byte
	for i, p := range pkgs {
		s := salts.pkg(p.Name)
		buf = appendPackageLeafInput(append(buf[:0], 0), p, s)
		h := Digest(sha256.Sum256(buf))
		pkgHashes[i] = h
		if m != nil {
			m.Packages = append(m.Packages, PackageLeaf{Index: uint64(i), Package: p, Salt: s, Hash: h})
		}
	}

	// A manifest's leaves own their values; for the root alone the
	// values are hashed at once and may alias cfg.
	own := func(b []byte) []byte {
		if m == nil {
			return b
		}
		return bytes.Clone(b)
	}
	specs, names := s.registry()
	// values[i] is the value of leaf i (names[i]), if present.
	var valuesBuf [NumLeavesV2]struct {
		v       []byte
		present bool
	}
	values := valuesBuf[:len(names)]
	set := func(name string, v []byte) {
		i, _ := slices.BinarySearch(names, name)
		values[i].v, values[i].present = v, true
	}
	set(NameMemoryBytes, u64(cfg.MemoryBytes))
	set(NameCPUCount, u64(cfg.CPUCount))
	if cfg.CPUAffinity != "" {
		set(NameCPUAffinity, []byte(cfg.CPUAffinity))
	}
	for i, n := range cfg.NICs {
		set(NICMACName(i), own(n.MAC[:]))
		set(NICVLANName(i), u64(uint64(n.VLAN)))
	}
	for i, d := range cfg.Disks {
		set(DiskTargetName(i), []byte(d.Target))
		if d.SHA256 != nil {
			set(DiskSHA256Name(i), own(d.SHA256[:]))
		}
	}
	if cfg.BootLoader != nil {
		set(NameBootLoader, own(cfg.BootLoader[:]))
	}
	if cfg.Kernel != nil {
		set(NameKernel, own(cfg.Kernel[:]))
	}
	if cfg.KernelCmdline != nil {
		set(NameKernelCmdline, []byte(*cfg.KernelCmdline))
	}
	if len(pkgs) > 0 {
		r := treeRoot(pkgHashes)
		set(NamePackagesRoot, r[:])
	}
	if s.v2 {
		set(NameVMID, []byte(cfg.VMID))
		if cfg.BalloonBytes != 0 {
			set(NameBalloonBytes, u64(cfg.BalloonBytes))
		}
		if cfg.Initrd != nil {
			set(NameInitrd, own(cfg.Initrd[:]))
		}
		if cfg.NVRAMTemplate != nil {
			set(NameNVRAMTemplate, own(cfg.NVRAMTemplate[:]))
		}
		for i, n := range cfg.NICs {
			if n.Trunk != nil {
				set(NICTrunkName(i), trunkValue(n.Trunk))
			}
		}
		for i, d := range cfg.Disks {
			if d.Backing != nil {
				b := make([]byte, 0, 32*len(d.Backing))
				for _, dg := range d.Backing {
					b = append(b, dg[:]...)
				}
				set(DiskBackingName(i), b)
			}
		}
	}

	if m != nil {
		m.Leaves = make([]Leaf, 0, len(names))
	}
	var hashesBuf [NumLeavesV2]Digest
	hashes := hashesBuf[:len(names)]
	for i, name := range names {
		typ := TypeAbsent
		v := values[i].v
		if values[i].present {
			typ = specs[name].typ
		} else {
			v = []byte{}
		}
		salt := salts.salt(name)
		buf = appendLeafInput(append(buf[:0], 0), name, typ, v, salt)
		h := Digest(sha256.Sum256(buf))
		hashes[i] = h
		if m != nil {
			m.Leaves = append(m.Leaves, Leaf{
				Index: uint64(i), Name: name, Type: typ, Value: v,
				Display: Display(name, typ, v), Salt: salt, Hash: h,
			})
		}
	}
	root := treeRoot(hashes)
	if m != nil {
		m.Root = root
	}
	return root, nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// ErrMismatch reports a measurement, disclosure or proof that does not
// recompute to the root it claims.
var ErrMismatch = errors.New("does not recompute to the root")

// Check recomputes m from its leaf values and salts alone (no secret): the
// registered names in order, well-formed values, every leaf hash, the
// package subtree and its root in packages.root, and m.Root. A manifest that
// passes Check is exactly the tree whose root is m.Root.
func (m *Measurement) Check() error {
	spec, err := SchemaOf(m.Schema)
	if err != nil {
		return err
	}
	_, names := spec.registry()
	if len(m.Leaves) != len(names) {
		return fmt.Errorf("%w: %d leaves, want %d", ErrInvalid, len(m.Leaves), len(names))
	}
	hashes := make([]Digest, len(names))
	for i, l := range m.Leaves {
		if l.Name != names[i] || l.Index != uint64(i) {
			return fmt.Errorf("%w: leaf %d is %q at index %d, want %q", ErrInvalid, i, l.Name, l.Index, names[i])
		}
		if err := spec.CheckParam(l.Name, l.Type, l.Value); err != nil {
			return err
		}
		h := LeafHash(LeafInput(l.Name, l.Type, l.Value, l.Salt))
		if h != l.Hash {
			return fmt.Errorf("leaf %s: hash %v, recomputed %v: %w", l.Name, l.Hash, h, ErrMismatch)
		}
		if d := Display(l.Name, l.Type, l.Value); l.Display != d {
			return fmt.Errorf("%w: leaf %s: display %q, the value reads %q", ErrInvalid, l.Name, l.Display, d)
		}
		hashes[i] = h
	}
	if err := m.checkPackages(); err != nil {
		return err
	}
	if spec.v2 {
		if id, _ := m.Leaf(NameVMID); id.Type == TypeAbsent {
			return fmt.Errorf("%w: %s is absent: schema %s binds the VM id", ErrInvalid, NameVMID, SchemaV2)
		}
	}
	if r := treeRoot(hashes); r != m.Root {
		return fmt.Errorf("leaves recompute to %v, manifest says %v: %w", r, m.Root, ErrMismatch)
	}
	return nil
}

func (m *Measurement) checkPackages() error {
	pr, _ := m.Leaf(NamePackagesRoot)
	if len(m.Packages) == 0 {
		if pr.Type != TypeAbsent {
			return fmt.Errorf("%w: packages.root present but no packages listed", ErrInvalid)
		}
		return nil
	}
	hashes := make([]Digest, len(m.Packages))
	for i, p := range m.Packages {
		if p.Index != uint64(i) || (i > 0 && m.Packages[i-1].Name >= p.Name) {
			return fmt.Errorf("%w: package %q at position %d (index %d) is out of order", ErrInvalid, p.Name, i, p.Index)
		}
		if p.Name == "" || p.Version == "" || len(p.Name) > 0xffff || len(p.Version) > 0xffff {
			return fmt.Errorf("%w: package %d: name and version must be 1..65535 bytes", ErrInvalid, i)
		}
		h := LeafHash(PackageLeafInput(p.Package, p.Salt))
		if h != p.Hash {
			return fmt.Errorf("package %s: hash %v, recomputed %v: %w", p.Name, p.Hash, h, ErrMismatch)
		}
		hashes[i] = h
	}
	if r := treeRoot(hashes); pr.Type != TypeSubtree || !bytes.Equal(pr.Value, r[:]) {
		return fmt.Errorf("package subtree recomputes to %v, packages.root holds %x: %w", r, []byte(pr.Value), ErrMismatch)
	}
	return nil
}

// CheckSecret checks that every salt in m is the one secret derives, in
// addition to Check.
func (m *Measurement) CheckSecret(secret Secret) error {
	if err := m.Check(); err != nil {
		return err
	}
	salts := newSalter(secret)
	for _, l := range m.Leaves {
		if l.Salt != salts.salt(l.Name) {
			return fmt.Errorf("leaf %s: salt was not derived from this VM secret", l.Name)
		}
	}
	for _, p := range m.Packages {
		if p.Salt != salts.pkg(p.Name) {
			return fmt.Errorf("package %s: salt was not derived from this VM secret", p.Name)
		}
	}
	return nil
}

// Spec returns the schema of m (nil if unknown).
func (m *Measurement) Spec() *Spec {
	s, _ := SchemaOf(m.Schema)
	return s
}

// Leaf returns the leaf named name.
func (m *Measurement) Leaf(name string) (Leaf, bool) {
	spec := m.Spec()
	if spec == nil {
		return Leaf{}, false
	}
	i, ok := spec.LeafIndex(name)
	if !ok || int(i) >= len(m.Leaves) || m.Leaves[i].Name != name {
		return Leaf{}, false
	}
	return m.Leaves[i], true
}

// Names returns the parameter names, never the values: what the
// attestation's predicate lists.
func (m *Measurement) Names() []string {
	out := make([]string, len(m.Leaves))
	for i, l := range m.Leaves {
		out[i] = l.Name
	}
	return out
}
