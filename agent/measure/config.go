package measure

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the v1 schema. The number of NIC and disk slots is fixed so that
// every configuration has the same leaves (see the package documentation).
const (
	MaxNICs  = 16
	MaxDisks = 16
	MaxVLAN  = 4094 // 802.1Q ids 1..4094; 0 means untagged
	// MaxBacking bounds a disk's backing chain below its top image (v2).
	MaxBacking = 16
	// MaxVMIDLen bounds a VM id in bytes (as the attestation's subject does).
	MaxVMIDLen = 255
)

// Config is a VM configuration in canonical form: every value is already
// what a leaf holds (bytes, canonical cpuset, digests). Package vmconfig
// produces it from JSON, YAML or libvirt XML; a customer's client produces it
// from the configuration they ordered.
//
// The JSON form of Config is the one used by the test vectors.
type Config struct {
	// VMID is the VM's identity, vm.id (schema v2, required there; schema
	// v1 does not measure it). It is the attestation's subject "vm:<id>".
	VMID string `json:"vm_id,omitempty"`

	MemoryBytes uint64 `json:"memory_bytes"`           // memory.bytes; must be > 0
	CPUCount    uint64 `json:"cpu_count"`              // cpu.count; must be > 0
	CPUAffinity string `json:"cpu_affinity,omitempty"` // cpu.affinity, canonical cpuset; "" = not pinned (absent leaf)
	NICs        []NIC  `json:"nics,omitempty"`         // net.<i>.*, at most MaxNICs, in the configuration's order
	Disks       []Disk `json:"disks,omitempty"`        // disk.<i>.*, at most MaxDisks, in the configuration's order

	BootLoader    *Digest `json:"boot_loader_sha256,omitempty"` // boot.loader.sha256; nil = absent
	Kernel        *Digest `json:"kernel_sha256,omitempty"`      // kernel.sha256; nil = absent
	KernelCmdline *string `json:"kernel_cmdline,omitempty"`     // kernel.cmdline; nil = absent, "" = present and empty

	Packages []Package `json:"packages,omitempty"` // packages.root; none = absent leaf

	// Schema v2 only; each refused by schema v1.
	BalloonBytes  uint64  `json:"balloon_bytes,omitempty"`         // memory.balloon.bytes; 0 = no balloon below memory_bytes
	Initrd        *Digest `json:"initrd_sha256,omitempty"`         // initrd.sha256; nil = absent
	NVRAMTemplate *Digest `json:"nvram_template_sha256,omitempty"` // boot.nvram.template.sha256; nil = absent
}

// NIC is one network interface.
type NIC struct {
	MAC  MAC    `json:"mac"`  // net.<i>.mac
	VLAN uint16 `json:"vlan"` // net.<i>.vlan; 0 = untagged (and 0 for a trunk)
	// Trunk is net.<i>.trunk (schema v2): the VLANs of a trunk port in
	// ascending id order; nil = not a trunk (absent leaf).
	Trunk []VLANTag `json:"trunk,omitempty"`
}

// VLANTag is one VLAN of a trunk.
type VLANTag struct {
	ID uint16 `json:"id"` // 1..MaxVLAN
	// Native is "" for a tagged member VLAN, or "tagged" / "untagged" for
	// the trunk's native VLAN (libvirt's nativeMode); at most one per trunk.
	Native string `json:"native,omitempty"`
}

// Native modes of a VLANTag.
const (
	NativeTagged   = "tagged"
	NativeUntagged = "untagged"
)

// Disk is one disk or removable drive.
type Disk struct {
	Target string  `json:"target"`           // disk.<i>.target, e.g. "vda"
	SHA256 *Digest `json:"sha256,omitempty"` // disk.<i>.sha256; nil = empty removable drive (absent leaf)
	// Backing is disk.<i>.backing (schema v2): the digests of the images
	// below the top one in its backing chain, in chain order (the top
	// image's backing file first, the base last); nil = no backing file.
	Backing []Digest `json:"backing,omitempty"`
}

// Package is one installed package, a leaf of the package subtree.
type Package struct {
	Name           string `json:"name"`
	Version        string `json:"version"`
	ManifestSHA256 Digest `json:"manifest_sha256"`
}

// Sentinel errors, wrapped in FieldError.
var (
	ErrMissing   = errors.New("required value missing")
	ErrInvalid   = errors.New("invalid value")
	ErrAmbiguous = errors.New("ambiguous value")
	// ErrUnsupported: the schema does not measure the value (an initrd,
	// a trunk, … under schema v1), or the schema is unknown.
	ErrUnsupported = errors.New("not measured by this configuration schema")
)

// FieldError says which parameter of a Config is wrong. Field is a leaf name
// ("net.3.mac") or, for packages, "packages/<name>".
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, sentinel error, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))}
}

// Validate checks that c can be measured under schema v1; see ValidateFor.
func (c *Config) Validate() error { return c.ValidateFor(V1) }

// ValidateFor checks that c can be measured under schema s: required values
// present, values canonical, counts and lengths within the schema's limits,
// disk targets and package names unique, and nothing the schema does not
// measure (ErrUnsupported).
func (c *Config) ValidateFor(s *Spec) error {
	if err := c.validateV2(s.v2); err != nil {
		return err
	}
	if c.MemoryBytes == 0 {
		return fieldErr(NameMemoryBytes, ErrMissing, "memory size must be greater than 0")
	}
	if c.CPUCount == 0 {
		return fieldErr(NameCPUCount, ErrMissing, "vCPU count must be greater than 0")
	}
	if c.CPUAffinity != "" {
		canon, err := CanonicalCPUSet(c.CPUAffinity)
		if err != nil {
			return &FieldError{Field: NameCPUAffinity, Err: fmt.Errorf("%w: %w", ErrInvalid, err)}
		}
		if canon != c.CPUAffinity {
			return fieldErr(NameCPUAffinity, ErrInvalid, "cpuset %q is not canonical, want %q", c.CPUAffinity, canon)
		}
	}
	if len(c.NICs) > MaxNICs {
		return fieldErr("net", ErrInvalid, "%d NICs, the schema has %d slots", len(c.NICs), MaxNICs)
	}
	for i, n := range c.NICs {
		if n.VLAN > MaxVLAN {
			return fieldErr(NICVLANName(i), ErrInvalid, "VLAN %d out of range 0..%d", n.VLAN, MaxVLAN)
		}
	}
	if len(c.Disks) > MaxDisks {
		return fieldErr("disk", ErrInvalid, "%d disks, the schema has %d slots", len(c.Disks), MaxDisks)
	}
	targets := make(map[string]int, len(c.Disks))
	for i, d := range c.Disks {
		if d.Target == "" {
			return fieldErr(DiskTargetName(i), ErrMissing, "disk target (e.g. \"vda\") is empty")
		}
		if err := checkText(d.Target, 255); err != nil {
			return &FieldError{Field: DiskTargetName(i), Err: err}
		}
		if j, dup := targets[d.Target]; dup {
			return fieldErr(DiskTargetName(i), ErrAmbiguous, "target %q is also disk %d", d.Target, j)
		}
		targets[d.Target] = i
	}
	if c.KernelCmdline != nil {
		if err := checkText(*c.KernelCmdline, 1<<20); err != nil {
			return &FieldError{Field: NameKernelCmdline, Err: err}
		}
	}
	names := make(map[string]bool, len(c.Packages))
	for i, p := range c.Packages {
		if p.Name == "" {
			return fieldErr("packages/#"+strconv.Itoa(i), ErrMissing, "package name is empty")
		}
		field := p.Name // with "packages/" in front, built only for an error
		if err := checkPackage(p); err != nil {
			return &FieldError{Field: "packages/" + field, Err: err}
		}
		if names[p.Name] {
			return fieldErr("packages/"+field, ErrAmbiguous, "package listed twice")
		}
		names[p.Name] = true
	}
	return nil
}

// validateV2 checks the values only schema v2 measures: required and
// well-formed under v2, absent under v1.
func (c *Config) validateV2(v2 bool) error {
	if !v2 {
		unsupported := func(field string) error {
			return fieldErr(field, ErrUnsupported, "schema %s does not measure it; measure under %s", SchemaV1, SchemaV2)
		}
		switch {
		case c.BalloonBytes != 0:
			return unsupported(NameBalloonBytes)
		case c.Initrd != nil:
			return unsupported(NameInitrd)
		case c.NVRAMTemplate != nil:
			return unsupported(NameNVRAMTemplate)
		}
		for i, n := range c.NICs {
			if n.Trunk != nil {
				return unsupported(NICTrunkName(i))
			}
		}
		for i, d := range c.Disks {
			if d.Backing != nil {
				return unsupported(DiskBackingName(i))
			}
		}
		return nil
	}
	if c.VMID == "" {
		return fieldErr(NameVMID, ErrMissing, "schema %s binds the VM id: it is required", SchemaV2)
	}
	if err := checkVMIDValue([]byte(c.VMID)); err != nil {
		return &FieldError{Field: NameVMID, Err: fmt.Errorf("%w: %w", ErrInvalid, err)}
	}
	if c.BalloonBytes != 0 && c.BalloonBytes >= c.MemoryBytes {
		return fieldErr(NameBalloonBytes, ErrInvalid, "balloon size %d is not below the memory size %d (equal: give 0, no balloon)", c.BalloonBytes, c.MemoryBytes)
	}
	for i, n := range c.NICs {
		if n.Trunk == nil {
			continue
		}
		if n.VLAN != 0 {
			return fieldErr(NICTrunkName(i), ErrAmbiguous, "a trunk and an access VLAN %d on one NIC", n.VLAN)
		}
		if err := checkTrunkValue(trunkValue(n.Trunk)); err != nil {
			return &FieldError{Field: NICTrunkName(i), Err: fmt.Errorf("%w: %w", ErrInvalid, err)}
		}
		for _, t := range n.Trunk {
			if t.Native != "" && t.Native != NativeTagged && t.Native != NativeUntagged {
				return fieldErr(NICTrunkName(i), ErrInvalid, "native mode %q, want %q or %q", t.Native, NativeTagged, NativeUntagged)
			}
		}
	}
	for i, d := range c.Disks {
		if d.Backing == nil {
			continue
		}
		if d.SHA256 == nil {
			return fieldErr(DiskBackingName(i), ErrInvalid, "an empty drive has no backing chain")
		}
		if len(d.Backing) == 0 || len(d.Backing) > MaxBacking {
			return fieldErr(DiskBackingName(i), ErrInvalid, "%d backing images, want 1..%d (nil: none)", len(d.Backing), MaxBacking)
		}
	}
	return nil
}

// trunkValue encodes a trunk as its leaf value: per VLAN, in the order
// given, u16 big-endian id | mode<<12 (mode 0 member, 1 native tagged,
// 2 native untagged).
func trunkValue(tags []VLANTag) []byte {
	b := make([]byte, 0, 2*len(tags))
	for _, t := range tags {
		v := t.ID
		switch t.Native {
		case NativeTagged:
			v |= 1 << 12
		case NativeUntagged:
			v |= 2 << 12
		}
		b = append(b, byte(v>>8), byte(v))
	}
	return b
}

// checkTrunkValue checks a net.<i>.trunk value: 1..MaxVLAN entries of two
// bytes, ids 1..MaxVLAN strictly ascending, modes 0..2, at most one native.
func checkTrunkValue(v []byte) error {
	if len(v) == 0 || len(v)%2 != 0 || len(v) > 2*MaxVLAN {
		return fmt.Errorf("trunk value of %d bytes, want 2 per VLAN, 1..%d VLANs", len(v), MaxVLAN)
	}
	var prev uint16
	natives := 0
	for i := 0; i < len(v); i += 2 {
		e := uint16(v[i])<<8 | uint16(v[i+1])
		id, mode := e&0x0fff, e>>12
		if id == 0 || id > MaxVLAN {
			return fmt.Errorf("VLAN %d out of range 1..%d", id, MaxVLAN)
		}
		if id <= prev {
			return fmt.Errorf("VLAN %d after %d: the trunk's VLANs are listed once each, ascending", id, prev)
		}
		if mode > 2 {
			return fmt.Errorf("VLAN %d: mode %d, want 0 (member), 1 (native tagged) or 2 (native untagged)", id, mode)
		}
		if mode != 0 {
			natives++
		}
		prev = id
	}
	if natives > 1 {
		return fmt.Errorf("%d native VLANs, at most 1", natives)
	}
	return nil
}

// checkBackingValue checks a disk.<i>.backing value: 1..MaxBacking digests.
func checkBackingValue(v []byte) error {
	if len(v) == 0 || len(v)%32 != 0 || len(v) > 32*MaxBacking {
		return fmt.Errorf("backing chain of %d bytes, want 32 per image, 1..%d images", len(v), MaxBacking)
	}
	return nil
}

// checkVMIDValue checks a VM id: 1..MaxVMIDLen bytes of printable UTF-8
// without blanks (the attestation's subject is "vm:" and the id).
func checkVMIDValue(v []byte) error {
	s := string(v)
	if s == "" || len(s) > MaxVMIDLen || !utf8.ValidString(s) {
		return fmt.Errorf("VM id of %d bytes: want 1..%d bytes of UTF-8", len(s), MaxVMIDLen)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("VM id %q: character %U not allowed (printable, no blanks)", abbrev(s), r)
		}
	}
	return nil
}

// checkPackage checks a named package's name and version text.
func checkPackage(p Package) error {
	if err := checkText(p.Name, 0xffff); err != nil {
		return err
	}
	if p.Version == "" {
		return fmt.Errorf("%w: package version is empty", ErrMissing)
	}
	return checkText(p.Version, 0xffff)
}

func checkText(s string, maxLen int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalid)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: contains a NUL byte", ErrInvalid)
	}
	if len(s) > maxLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalid, len(s), maxLen)
	}
	return nil
}
