package measure

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of the v1 schema. The number of NIC and disk slots is fixed so that
// every configuration has the same leaves (see the package documentation).
const (
	MaxNICs  = 16
	MaxDisks = 16
	MaxVLAN  = 4094 // 802.1Q ids 1..4094; 0 means untagged
)

// Config is a VM configuration in canonical form: every value is already
// what a leaf holds (bytes, canonical cpuset, digests). Package vmconfig
// produces it from JSON, YAML or libvirt XML; a customer's client produces it
// from the configuration they ordered.
//
// The JSON form of Config is the one used by the test vectors.
type Config struct {
	MemoryBytes uint64 `json:"memory_bytes"`           // memory.bytes; must be > 0
	CPUCount    uint64 `json:"cpu_count"`              // cpu.count; must be > 0
	CPUAffinity string `json:"cpu_affinity,omitempty"` // cpu.affinity, canonical cpuset; "" = not pinned (absent leaf)
	NICs        []NIC  `json:"nics,omitempty"`         // net.<i>.*, at most MaxNICs, in the configuration's order
	Disks       []Disk `json:"disks,omitempty"`        // disk.<i>.*, at most MaxDisks, in the configuration's order

	BootLoader    *Digest `json:"boot_loader_sha256,omitempty"` // boot.loader.sha256; nil = absent
	Kernel        *Digest `json:"kernel_sha256,omitempty"`      // kernel.sha256; nil = absent
	KernelCmdline *string `json:"kernel_cmdline,omitempty"`     // kernel.cmdline; nil = absent, "" = present and empty

	Packages []Package `json:"packages,omitempty"` // packages.root; none = absent leaf
}

// NIC is one network interface.
type NIC struct {
	MAC  MAC    `json:"mac"`  // net.<i>.mac
	VLAN uint16 `json:"vlan"` // net.<i>.vlan; 0 = untagged
}

// Disk is one disk or removable drive.
type Disk struct {
	Target string  `json:"target"`           // disk.<i>.target, e.g. "vda"
	SHA256 *Digest `json:"sha256,omitempty"` // disk.<i>.sha256; nil = empty removable drive (absent leaf)
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

// Validate checks that c can be measured: required values present, values
// canonical, counts and lengths within the schema's limits, disk targets and
// package names unique.
func (c *Config) Validate() error {
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
