package vmconfig

import (
	"errors"
	"fmt"

	"github.com/vmledger/vmledger/agent/measure"
)

// Config is a parsed VM configuration. It differs from measure.Config only
// in that images may still be files to hash; Resolve turns it into a
// measure.Config.
type Config struct {
	MemoryBytes   uint64
	CPUCount      uint64
	CPUAffinity   string // canonical cpuset, "" = not pinned
	NICs          []measure.NIC
	Disks         []Disk
	BootLoader    *Image // nil = none
	Kernel        *Image // nil = none (no direct kernel boot)
	KernelCmdline *string
	Packages      []measure.Package

	// Schema v2 (measure.V2) only.
	BalloonBytes  uint64 // balloon target below MemoryBytes; 0 = none
	Initrd        *Image // nil = none
	NVRAMTemplate *Image // the UEFI variable store's template; nil = none
}

// Disk is one disk or removable drive.
type Disk struct {
	Target string
	Image  *Image // nil = empty removable drive
	// Format is the image format the VMM is told ("raw", "qcow2"; "" =
	// raw). Resolve reads a qcow2 image's header for its backing chain.
	Format string
	// Backing are the images below Image in its backing chain, in chain
	// order. Given by digest (a configuration that names no file), they
	// are measured as given; for an image file, Resolve finds the chain in
	// the qcow2 headers and Backing, if the input declares it (libvirt's
	// <backingStore>), must name the same files.
	Backing []*Image
}

// Image is a disk, bootloader or kernel image: either a file to hash or a
// digest computed elsewhere, never both. A precomputed digest is trusted as
// given; the file it names is not read.
type Image struct {
	Path   string
	SHA256 *measure.Digest
	// Claimed, with Path, is a digest the input claims for the file (libvirt
	// metadata): Resolve hashes the file and refuses a different digest;
	// only if the agent may not read the file does Claimed stand in for it.
	Claimed *measure.Digest
	// Field names where the input gives the image (an XPath for libvirt
	// XML), for errors; "" = the measured field's name.
	Field string
}

// Sentinel errors; FieldError wraps one of them. They are measure's, so
// errors.Is works the same on errors from both packages.
var (
	ErrMissing     = measure.ErrMissing
	ErrInvalid     = measure.ErrInvalid
	ErrAmbiguous   = measure.ErrAmbiguous
	ErrUnsupported = errors.New("not supported by the configuration schema")
	// ErrDigestMismatch: an image file does not hash to the digest the
	// input claims for it.
	ErrDigestMismatch = errors.New("the image does not match the digest given for it")
	// ErrImageChanged: an image changed between its measurement and its
	// use (Held, Linux only).
	ErrImageChanged = errors.New("image changed after it was measured")
	// ErrWritableByOthers: an image anyone on the host may write is
	// refused (Held, Linux only).
	ErrWritableByOthers = errors.New("image is writable by others")
)

// FieldError names the field of the input that is wrong, in the input's
// own terms: "memory" or "nics[1].mac" for JSON and YAML, an XPath such as
// "/domain/devices/interface[2]/mac/@address" for libvirt XML.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return "field " + e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, sentinel error, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))}
}

func wrapField(field string, sentinel, err error) error {
	return &FieldError{Field: field, Err: fmt.Errorf("%w: %w", sentinel, err)}
}

// Format is an input format.
type Format string

// Formats.
const (
	FormatJSON    Format = "json"
	FormatYAML    Format = "yaml"
	FormatLibvirt Format = "libvirt"
)

// Options carries what a libvirt domain XML cannot: the package list, from
// a side file (see ParsePackages). JSON and YAML list their packages
// themselves; Parse refuses Options.Packages with them.
type Options struct {
	Packages []measure.Package
	// Emulators are the VMM binaries a libvirt domain's <emulator> may
	// name; nil means DefaultEmulators.
	Emulators []string
}

// DefaultEmulators are the QEMU binaries of the common distributions.
var DefaultEmulators = []string{
	"/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-system-aarch64", "/usr/bin/kvm",
	"/usr/libexec/qemu-kvm", "/usr/bin/qemu-kvm",
}

// Parse parses data in format f.
func Parse(data []byte, f Format, opts Options) (*Config, error) {
	if f != FormatLibvirt && len(opts.Packages) > 0 {
		return nil, fmt.Errorf("%w: a package side file applies to libvirt XML only; list the packages in the %s file", ErrAmbiguous, f)
	}
	switch f {
	case FormatJSON:
		return ParseJSON(data)
	case FormatYAML:
		return ParseYAML(data)
	case FormatLibvirt:
		return ParseLibvirt(data, opts)
	}
	return nil, fmt.Errorf("unknown format %q (want json, yaml or libvirt)", f)
}
