package measure

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Labels and schema identifiers. Each ends the label with one 0x00 byte in
// the encodings below.
const (
	SchemaV1         = "vmledger/config/v1"
	SchemaV2         = "vmledger/config/v2"
	Schema           = SchemaV1 // the schema of the package-level Measure, Root, Names, …
	ConfigLeafLabel  = "vmledger/config-leaf/v1"
	PackageLeafLabel = "vmledger/package-leaf/v1"
	SaltLabel        = "vmledger/salt/v1"
)

// Type is the type byte of a configuration leaf.
type Type uint8

// Leaf types (package doc, Leaf encoding).
const (
	TypeU64     Type = 1 // 8-byte big-endian unsigned integer
	TypeUTF8    Type = 2 // UTF-8 text, no terminator
	TypeBytes   Type = 3 // raw bytes: a MAC, a digest
	TypeSubtree Type = 4 // 32-byte root of a nested RFC 6962 tree
	TypeAbsent  Type = 5 // the parameter does not apply; empty value
)

func (t Type) String() string {
	switch t {
	case TypeU64:
		return "u64"
	case TypeUTF8:
		return "utf8"
	case TypeBytes:
		return "bytes"
	case TypeSubtree:
		return "subtree"
	case TypeAbsent:
		return "absent"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Registered parameter names without an index.
const (
	NameMemoryBytes   = "memory.bytes"
	NameCPUCount      = "cpu.count"
	NameCPUAffinity   = "cpu.affinity"
	NameBootLoader    = "boot.loader.sha256"
	NameKernel        = "kernel.sha256"
	NameKernelCmdline = "kernel.cmdline"
	NamePackagesRoot  = "packages.root"

	// Schema v2 only.
	NameVMID          = "vm.id"
	NameBalloonBytes  = "memory.balloon.bytes"
	NameInitrd        = "initrd.sha256"
	NameNVRAMTemplate = "boot.nvram.template.sha256"
)

// NICMACName is "net.<i>.mac", i in decimal without leading zeros.
func NICMACName(i int) string { return nicMACNames.name(i) }

// NICVLANName is "net.<i>.vlan".
func NICVLANName(i int) string { return nicVLANNames.name(i) }

// DiskSHA256Name is "disk.<i>.sha256".
func DiskSHA256Name(i int) string { return diskSHA256Names.name(i) }

// DiskTargetName is "disk.<i>.target".
func DiskTargetName(i int) string { return diskTargetNames.name(i) }

// NICTrunkName is "net.<i>.trunk" (schema v2).
func NICTrunkName(i int) string { return nicTrunkNames.name(i) }

// DiskBackingName is "disk.<i>.backing" (schema v2).
func DiskBackingName(i int) string { return diskBackingNames.name(i) }

var (
	nicMACNames      = newSlotNames("net.", ".mac", MaxNICs)
	nicVLANNames     = newSlotNames("net.", ".vlan", MaxNICs)
	diskSHA256Names  = newSlotNames("disk.", ".sha256", MaxDisks)
	diskTargetNames  = newSlotNames("disk.", ".target", MaxDisks)
	nicTrunkNames    = newSlotNames("net.", ".trunk", MaxNICs)
	diskBackingNames = newSlotNames("disk.", ".backing", MaxDisks)
)

// slotNames are the names prefix<i>suffix of a kind of slot, the first n
// built once: Measure looks them up for each configuration it hashes.
type slotNames struct {
	prefix, suffix string
	built          []string
}

func newSlotNames(prefix, suffix string, n int) *slotNames {
	s := &slotNames{prefix: prefix, suffix: suffix}
	for i := range n {
		s.built = append(s.built, s.format(i))
	}
	return s
}

func (s *slotNames) name(i int) string {
	if i >= 0 && i < len(s.built) {
		return s.built[i]
	}
	return s.format(i)
}

func (s *slotNames) format(i int) string { return s.prefix + strconv.Itoa(i) + s.suffix }

// paramSpec is what the registry knows of one name: its type when present,
// the exact value length (-1: variable) and, for some, a check of the value.
type paramSpec struct {
	typ   Type
	size  int
	check func([]byte) error
}

func (s *Spec) build(v2 bool) {
	m := map[string]paramSpec{
		NameMemoryBytes:   {typ: TypeU64, size: 8},
		NameCPUCount:      {typ: TypeU64, size: 8},
		NameCPUAffinity:   {typ: TypeUTF8, size: -1, check: checkCPUSetValue},
		NameBootLoader:    {typ: TypeBytes, size: 32},
		NameKernel:        {typ: TypeBytes, size: 32},
		NameKernelCmdline: {typ: TypeUTF8, size: -1},
		NamePackagesRoot:  {typ: TypeSubtree, size: 32},
	}
	for i := range MaxNICs {
		m[NICMACName(i)] = paramSpec{typ: TypeBytes, size: 6}
		m[NICVLANName(i)] = paramSpec{typ: TypeU64, size: 8}
	}
	for i := range MaxDisks {
		m[DiskSHA256Name(i)] = paramSpec{typ: TypeBytes, size: 32}
		m[DiskTargetName(i)] = paramSpec{typ: TypeUTF8, size: -1}
	}
	if v2 {
		m[NameVMID] = paramSpec{typ: TypeUTF8, size: -1, check: checkVMIDValue}
		m[NameBalloonBytes] = paramSpec{typ: TypeU64, size: 8}
		m[NameInitrd] = paramSpec{typ: TypeBytes, size: 32}
		m[NameNVRAMTemplate] = paramSpec{typ: TypeBytes, size: 32}
		for i := range MaxNICs {
			m[NICTrunkName(i)] = paramSpec{typ: TypeBytes, size: -1, check: checkTrunkValue}
		}
		for i := range MaxDisks {
			m[DiskBackingName(i)] = paramSpec{typ: TypeBytes, size: -1, check: checkBackingValue}
		}
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names) // Go string order is bytewise
	s.specs, s.names = m, names
}

// Spec is one schema of the configuration tree: its registered names, in
// tree order, and their types. V1 and V2 are the two there are.
type Spec struct {
	name  string
	once  sync.Once
	v2    bool
	specs map[string]paramSpec
	names []string
}

// The schemas. V2 is what the agent measures; V1 stays to verify what was
// attested under it.
var (
	V1 = &Spec{name: SchemaV1}
	V2 = &Spec{name: SchemaV2, v2: true}
)

// Current is the schema the agent measures new attestations with.
var Current = V2

// SchemaOf returns the schema named name ("vmledger/config/v1" or "…/v2").
func SchemaOf(name string) (*Spec, error) {
	switch name {
	case SchemaV1:
		return V1, nil
	case SchemaV2:
		return V2, nil
	}
	return nil, fmt.Errorf("%w: configuration schema %q (known: %s, %s)", ErrUnsupported, name, SchemaV1, SchemaV2)
}

func (s *Spec) registry() (map[string]paramSpec, []string) {
	s.once.Do(func() { s.build(s.v2) })
	return s.specs, s.names
}

// Name is the schema's identifier, "vmledger/config/v2".
func (s *Spec) Name() string { return s.name }

func (s *Spec) String() string { return s.name }

// NumLeaves is the size of every configuration tree of the schema.
func (s *Spec) NumLeaves() int { _, n := s.registry(); return len(n) }

// Names returns every registered parameter name of the schema in tree
// order (bytewise sorted). The position of a name is its leaf index.
func (s *Spec) Names() []string {
	_, names := s.registry()
	return slices.Clone(names)
}

// LeafIndex returns the leaf index of a registered name.
func (s *Spec) LeafIndex(name string) (uint64, bool) {
	_, names := s.registry()
	i, ok := slices.BinarySearch(names, name)
	return uint64(i), ok
}

// registry is schema v1's registry (the package-level functions below are
// schema v1's).
func registry() (map[string]paramSpec, []string) { return V1.registry() }

// Names returns every parameter name of schema v1 in tree order; see
// Spec.Names for another schema.
func Names() []string { return V1.Names() }

// NumLeaves is the size of every configuration tree of schema v1: 7 +
// 2*MaxNICs + 2*MaxDisks = 71. Schema v2's trees have NumLeavesV2.
const NumLeaves = 7 + 2*MaxNICs + 2*MaxDisks

// NumLeavesV2 is the size of every tree of schema v2: NumLeaves + 4 + 2*16 = 107.
const NumLeavesV2 = NumLeaves + 4 + MaxNICs + MaxDisks

// LeafIndex returns the leaf index of a registered name of schema v1.
func LeafIndex(name string) (uint64, bool) { return V1.LeafIndex(name) }

// ParamSalt derives the salt of configuration leaf name:
// HMAC-SHA256(secret, "vmledger/salt/v1" 0x00 name).
func ParamSalt(secret Secret, name string) Digest {
	return salt(secret, name)
}

// PackageSalt derives the salt of the package leaf for package name:
// HMAC-SHA256(secret, "vmledger/salt/v1" 0x00 "packages/" name). No
// configuration leaf name contains "/", so the two salt spaces are disjoint.
func PackageSalt(secret Secret, name string) Digest {
	return salt(secret, "packages/"+name)
}

func salt(secret Secret, name string) Digest {
	return newSalter(secret).salt(name)
}

// salter derives many salts from one secret. HMAC keys its inner and outer
// hashes once, in hmac.New; Reset restores that keyed state, so each
// further salt costs the hashing of its own message only, not the key
// schedule again. Not safe for concurrent use.
type salter struct {
	mac hash.Hash
	buf []byte
	sum []byte
}

func newSalter(secret Secret) *salter {
	return &salter{mac: hmac.New(sha256.New, secret[:])}
}

// salt returns HMAC-SHA256(secret, "vmledger/salt/v1" 0x00 name).
func (s *salter) salt(name string) Digest {
	s.mac.Reset()
	s.buf = append(append(append(s.buf[:0], SaltLabel...), 0), name...)
	s.mac.Write(s.buf)
	s.sum = s.mac.Sum(s.sum[:0])
	return Digest(s.sum)
}

// pkg returns the salt of the package leaf for package name (PackageSalt).
func (s *salter) pkg(name string) Digest { return s.salt("packages/" + name) }

// LeafInput encodes a configuration leaf (package doc, Leaf encoding):
//
//	"vmledger/config-leaf/v1" 0x00 ‖ u16 len(name) ‖ name ‖ u8 type ‖ u32 len(value) ‖ value ‖ salt (32)
//
// Integers are big-endian. It does not check the value against the
// registry; see CheckParam.
func LeafInput(name string, typ Type, value []byte, salt Digest) []byte {
	b := make([]byte, 0, len(ConfigLeafLabel)+1+2+len(name)+1+4+len(value)+32)
	return appendLeafInput(b, name, typ, value, salt)
}

// appendLeafInput appends LeafInput(name, typ, value, salt) to b.
func appendLeafInput(b []byte, name string, typ Type, value []byte, salt Digest) []byte {
	b = append(b, ConfigLeafLabel...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
	b = append(b, name...)
	b = append(b, byte(typ))
	b = binary.BigEndian.AppendUint32(b, uint32(len(value)))
	b = append(b, value...)
	b = append(b, salt[:]...)
	return b
}

// PackageLeafInput encodes a package leaf:
//
//	"vmledger/package-leaf/v1" 0x00 ‖ u16 len(name) ‖ name ‖ u16 len(version) ‖ version ‖ manifest sha256 (32) ‖ salt (32)
func PackageLeafInput(p Package, salt Digest) []byte {
	b := make([]byte, 0, len(PackageLeafLabel)+1+2+len(p.Name)+2+len(p.Version)+64)
	return appendPackageLeafInput(b, p, salt)
}

// appendPackageLeafInput appends PackageLeafInput(p, salt) to b.
func appendPackageLeafInput(b []byte, p Package, salt Digest) []byte {
	b = append(b, PackageLeafLabel...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.Name)))
	b = append(b, p.Name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.Version)))
	b = append(b, p.Version...)
	b = append(b, p.ManifestSHA256[:]...)
	b = append(b, salt[:]...)
	return b
}

// LeafHash is the RFC 6962 leaf hash SHA-256(0x00 ‖ input). (Hashed from
// a buffer on the stack for leaf inputs of usual size: a configuration has
// dozens of leaves and a customer recomputes them all on every check.)
func LeafHash(input []byte) Digest {
	var buf [256]byte
	return sha256.Sum256(append(append(buf[:0], 0), input...))
}

// CheckParam checks that (name, typ, value) is a well-formed leaf of
// schema v1; see Spec.CheckParam.
func CheckParam(name string, typ Type, value []byte) error { return V1.CheckParam(name, typ, value) }

// CheckParam checks that (name, typ, value) is a well-formed leaf: a
// registered name, its registered type or TypeAbsent, a value of the right
// length (empty when absent), valid UTF-8 for text, and the canonical form
// of the values that have one (cpuset, VM id, trunk, backing chain).
func (s *Spec) CheckParam(name string, typ Type, value []byte) error {
	m, _ := s.registry()
	spec, ok := m[name]
	if !ok {
		return fmt.Errorf("%w: %q is not a registered parameter name of %s", ErrInvalid, name, s.name)
	}
	if typ == TypeAbsent {
		if len(value) != 0 {
			return fmt.Errorf("%w: %s: an absent leaf has an empty value, got %d bytes", ErrInvalid, name, len(value))
		}
		return nil
	}
	if typ != spec.typ {
		return fmt.Errorf("%w: %s: type %v, want %v or absent", ErrInvalid, name, typ, spec.typ)
	}
	if spec.size >= 0 && len(value) != spec.size {
		return fmt.Errorf("%w: %s: value is %d bytes, want %d", ErrInvalid, name, len(value), spec.size)
	}
	if typ == TypeUTF8 {
		if err := checkText(string(value), 1<<20); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if spec.check != nil {
		if err := spec.check(value); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
		}
	}
	return nil
}

func checkCPUSetValue(v []byte) error {
	if c, err := CanonicalCPUSet(string(v)); err != nil || c != string(v) {
		return fmt.Errorf("%q is not a canonical cpuset", v)
	}
	return nil
}

// Display renders a leaf value for people: decimal for u64, the text for
// UTF-8 (quoted), colon hex for a MAC, hex otherwise, "-" when absent.
func Display(name string, typ Type, value []byte) string {
	switch typ {
	case TypeAbsent:
		return "-"
	case TypeU64:
		if len(value) == 8 {
			return strconv.FormatUint(binary.BigEndian.Uint64(value), 10)
		}
	case TypeUTF8:
		return strconv.Quote(string(value))
	case TypeBytes:
		if strings.HasSuffix(name, ".mac") && len(value) == 6 {
			return MAC(value).String()
		}
	}
	return HexBytesString(value)
}

// HexBytesString is the lowercase hex of b.
func HexBytesString(b []byte) string {
	t, _ := HexBytes(b).MarshalText()
	return string(t)
}
