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
	Schema           = "vmledger/config/v1"
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
)

// NICMACName is "net.<i>.mac", i in decimal without leading zeros.
func NICMACName(i int) string { return nicMACNames.name(i) }

// NICVLANName is "net.<i>.vlan".
func NICVLANName(i int) string { return nicVLANNames.name(i) }

// DiskSHA256Name is "disk.<i>.sha256".
func DiskSHA256Name(i int) string { return diskSHA256Names.name(i) }

// DiskTargetName is "disk.<i>.target".
func DiskTargetName(i int) string { return diskTargetNames.name(i) }

var (
	nicMACNames     = newSlotNames("net.", ".mac", MaxNICs)
	nicVLANNames    = newSlotNames("net.", ".vlan", MaxNICs)
	diskSHA256Names = newSlotNames("disk.", ".sha256", MaxDisks)
	diskTargetNames = newSlotNames("disk.", ".target", MaxDisks)
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

// paramSpec is what the registry knows of one name: its type when present
// and the exact value length (-1: variable).
type paramSpec struct {
	typ  Type
	size int
}

var registry = sync.OnceValues(func() (map[string]paramSpec, []string) {
	m := map[string]paramSpec{
		NameMemoryBytes:   {TypeU64, 8},
		NameCPUCount:      {TypeU64, 8},
		NameCPUAffinity:   {TypeUTF8, -1},
		NameBootLoader:    {TypeBytes, 32},
		NameKernel:        {TypeBytes, 32},
		NameKernelCmdline: {TypeUTF8, -1},
		NamePackagesRoot:  {TypeSubtree, 32},
	}
	for i := range MaxNICs {
		m[NICMACName(i)] = paramSpec{TypeBytes, 6}
		m[NICVLANName(i)] = paramSpec{TypeU64, 8}
	}
	for i := range MaxDisks {
		m[DiskSHA256Name(i)] = paramSpec{TypeBytes, 32}
		m[DiskTargetName(i)] = paramSpec{TypeUTF8, -1}
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names) // Go string order is bytewise
	return m, names
})

// Names returns every registered parameter name in tree order (bytewise
// sorted). The position of a name in this list is its leaf index.
func Names() []string {
	_, names := registry()
	return slices.Clone(names)
}

// NumLeaves is the size of every configuration tree: 7 + 2*MaxNICs +
// 2*MaxDisks = 71.
const NumLeaves = 7 + 2*MaxNICs + 2*MaxDisks

// LeafIndex returns the leaf index of a registered name.
func LeafIndex(name string) (uint64, bool) {
	_, names := registry()
	i, ok := slices.BinarySearch(names, name)
	return uint64(i), ok
}

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

// CheckParam checks that (name, typ, value) is a well-formed leaf: a
// registered name, its registered type or TypeAbsent, a value of the right
// length (empty when absent), valid UTF-8 for text, and a canonical cpuset
// for cpu.affinity.
func CheckParam(name string, typ Type, value []byte) error {
	m, _ := registry()
	spec, ok := m[name]
	if !ok {
		return fmt.Errorf("%w: %q is not a registered parameter name", ErrInvalid, name)
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
	if name == NameCPUAffinity {
		if c, err := CanonicalCPUSet(string(value)); err != nil || c != string(value) {
			return fmt.Errorf("%w: %s: %q is not a canonical cpuset", ErrInvalid, name, value)
		}
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
