package vmconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vmledger/vmledger/agent/measure"
)

// File is the documented JSON and YAML configuration format (the same
// field names in both). Unknown fields (names are case-sensitive),
// duplicate keys, values of the wrong type, YAML anchors, aliases and merge
// keys, and a second YAML document are refused, with a FieldError that
// names the field as the file writes it ("memory", "nics[1].vlan").
//
//	{
//	  "schema": "vmledger/config/v2",           // required: v2, or v1 (without the v2 fields below)
//	  "memory": "8GiB",                         // required; number + unit, see UnitScale; a bare number is refused
//	  "balloon": "6GiB",                        // v2, optional: balloon target below memory (equal = none)
//	  "cpu": {"count": 4, "affinity": "0-3,8"}, // count required (> 0); affinity optional, libvirt cpuset syntax
//	  "nics": [                                 // optional, at most 16, in slot order
//	    {"mac": "52:54:00:12:34:56", "vlan": 42}, // mac required; vlan optional, 0 or missing = untagged
//	    {"mac": "52:54:00:12:34:57", "trunk": [{"id": 10}, {"id": 20, "native": "untagged"}]} // v2: a trunk port
//	  ],
//	  "disks": [                                // optional, at most 16, in slot order
//	    {"target": "vda", "path": "disk.qcow2", "format": "qcow2"}, // a file, hashed by streaming (relative to the
//	                                               // config file); v2: a qcow2 image's backing chain is read from its header
//	    {"target": "vdc", "sha256": "<64 hex>", "backing": [{"sha256": "<64 hex>"}]}, // v2: a chain given by digests
//	    {"target": "vdb", "sha256": "<64 hex>"},   // or its digest, computed elsewhere
//	    {"target": "sda", "empty": true}           // or an empty removable drive
//	  ],
//	  "boot": {                                 // optional
//	    "loader": {"path": "/usr/share/OVMF/OVMF_CODE.fd"}, // or {"sha256": "..."}
//	    "kernel": {"sha256": "..."},                        // or {"path": "..."}
//	    "initrd": {"path": "initrd.img"},                   // v2
//	    "nvram_template": {"path": "/usr/share/OVMF/OVMF_VARS.fd"}, // v2
//	    "cmdline": "console=ttyS0 root=/dev/vda1"           // exact bytes; "" is present-but-empty
//	  },
//	  "packages": [                             // optional; names unique
//	    {"name": "openssl", "version": "3.0.15-1", "manifest_sha256": "<64 hex>"}
//	  ]
//	}
type File struct {
	Schema   string        `json:"schema" yaml:"schema"`
	Memory   *Size         `json:"memory" yaml:"memory"`
	Balloon  *Size         `json:"balloon,omitempty" yaml:"balloon,omitempty"`
	CPU      *FileCPU      `json:"cpu" yaml:"cpu"`
	NICs     []FileNIC     `json:"nics,omitempty" yaml:"nics,omitempty"`
	Disks    []FileDisk    `json:"disks,omitempty" yaml:"disks,omitempty"`
	Boot     *FileBoot     `json:"boot,omitempty" yaml:"boot,omitempty"`
	Packages []FilePackage `json:"packages,omitempty" yaml:"packages,omitempty"`
}

// FileCPU is File.CPU.
type FileCPU struct {
	Count    *uint64 `json:"count" yaml:"count"`
	Affinity *string `json:"affinity,omitempty" yaml:"affinity,omitempty"`
}

// FileNIC is one of File.NICs.
type FileNIC struct {
	MAC   string        `json:"mac" yaml:"mac"`
	VLAN  *uint64       `json:"vlan" yaml:"vlan"`
	Trunk []FileVLANTag `json:"trunk,omitempty" yaml:"trunk,omitempty"`
}

// FileVLANTag is one VLAN of FileNIC.Trunk.
type FileVLANTag struct {
	ID     uint64 `json:"id" yaml:"id"`
	Native string `json:"native,omitempty" yaml:"native,omitempty"` // "", "tagged" or "untagged"
}

// FileImage names an image by path or by digest.
type FileImage struct {
	Path   string `json:"path,omitempty" yaml:"path,omitempty"`
	SHA256 string `json:"sha256,omitempty" yaml:"sha256,omitempty"`
}

// FileDisk is one of File.Disks.
type FileDisk struct {
	Target  string      `json:"target" yaml:"target"`
	Path    string      `json:"path,omitempty" yaml:"path,omitempty"`
	SHA256  string      `json:"sha256,omitempty" yaml:"sha256,omitempty"`
	Empty   bool        `json:"empty,omitempty" yaml:"empty,omitempty"`
	Format  string      `json:"format,omitempty" yaml:"format,omitempty"`
	Backing []FileImage `json:"backing,omitempty" yaml:"backing,omitempty"`
}

// FileBoot is File.Boot.
type FileBoot struct {
	Loader        *FileImage `json:"loader,omitempty" yaml:"loader,omitempty"`
	Kernel        *FileImage `json:"kernel,omitempty" yaml:"kernel,omitempty"`
	Cmdline       *string    `json:"cmdline,omitempty" yaml:"cmdline,omitempty"`
	Initrd        *FileImage `json:"initrd,omitempty" yaml:"initrd,omitempty"`
	NVRAMTemplate *FileImage `json:"nvram_template,omitempty" yaml:"nvram_template,omitempty"`
}

// FilePackage is one of File.Packages.
type FilePackage struct {
	Name           string `json:"name" yaml:"name"`
	Version        string `json:"version" yaml:"version"`
	ManifestSHA256 string `json:"manifest_sha256" yaml:"manifest_sha256"`
}

// Size is a size written with a unit. It refuses bare numbers in JSON and
// YAML. (ParseJSON and ParseYAML refuse them before decoding, naming the
// field; these methods refuse them for other decoders.)
type Size struct{ Text string }

// UnmarshalJSON accepts only a JSON string.
func (s *Size) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '"' {
		return errors.New(noUnit(abbrev(string(b))))
	}
	return json.Unmarshal(b, &s.Text)
}

// UnmarshalYAML accepts only a YAML string scalar.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return fmt.Errorf("line %d: %s", n.Line, noUnit(abbrev(n.Value)))
	}
	s.Text = n.Value
	return nil
}

// ParseJSON parses the JSON configuration format (see File).
func ParseJSON(data []byte) (*Config, error) {
	var f File
	if err := decodeJSON(data, &f); err != nil {
		return nil, err
	}
	return f.Config()
}

// ParseYAML parses the YAML configuration format (see File).
func ParseYAML(data []byte) (*Config, error) {
	var f File
	if err := decodeYAML(data, &f); err != nil {
		return nil, err
	}
	return f.Config()
}

// PackageFile is the side file that gives the packages of a libvirt domain:
// {"packages": [...]} in JSON or YAML, entries as in File.
type PackageFile struct {
	Packages []FilePackage `json:"packages" yaml:"packages"`
}

// ParsePackages parses a PackageFile in FormatJSON or FormatYAML.
func ParsePackages(data []byte, f Format) ([]measure.Package, error) {
	var pf PackageFile
	var err error
	switch f {
	case FormatJSON:
		err = decodeJSON(data, &pf)
	case FormatYAML:
		err = decodeYAML(data, &pf)
	default:
		err = fmt.Errorf("package file format %q: want json or yaml", f)
	}
	if err != nil {
		return nil, err
	}
	if pf.Packages == nil {
		return nil, fieldErr("packages", ErrMissing, "the package file has no \"packages\" list")
	}
	return convertPackages(pf.Packages, "packages")
}

// Config validates f and converts it.
func (f *File) Config() (*Config, error) {
	if f.Schema == "" {
		return nil, fieldErr("schema", ErrMissing, "add \"schema\": %q", measure.SchemaV2)
	}
	if f.Schema != measure.SchemaV1 && f.Schema != measure.SchemaV2 {
		return nil, fieldErr("schema", ErrUnsupported, "%q, want %q (or %q)", f.Schema, measure.SchemaV2, measure.SchemaV1)
	}
	if f.Schema == measure.SchemaV1 {
		if field := f.v2Field(); field != "" {
			return nil, fieldErr(field, ErrUnsupported, "schema %s has no such field; write \"schema\": %q", measure.SchemaV1, measure.SchemaV2)
		}
	}
	c := &Config{}
	if f.Memory == nil {
		return nil, fieldErr("memory", ErrMissing, "memory size is required, e.g. \"memory\": \"8GiB\"")
	}
	mem, err := ParseSize(f.Memory.Text)
	if err != nil {
		return nil, wrapField("memory", ErrInvalid, err)
	}
	if mem == 0 {
		return nil, fieldErr("memory", ErrInvalid, "memory size is 0")
	}
	c.MemoryBytes = mem
	if f.Balloon != nil {
		b, err := ParseSize(f.Balloon.Text)
		if err != nil {
			return nil, wrapField("balloon", ErrInvalid, err)
		}
		switch {
		case b == 0 || b > mem:
			return nil, fieldErr("balloon", ErrInvalid, "balloon target %d bytes, want 1 byte up to the memory size %d", b, mem)
		case b < mem:
			c.BalloonBytes = b
		}
	}
	if f.CPU == nil || f.CPU.Count == nil {
		return nil, fieldErr("cpu.count", ErrMissing, "vCPU count is required, e.g. \"cpu\": {\"count\": 4}")
	}
	if *f.CPU.Count == 0 {
		return nil, fieldErr("cpu.count", ErrInvalid, "vCPU count is 0")
	}
	c.CPUCount = *f.CPU.Count
	if f.CPU.Affinity != nil {
		cs, err := measure.CanonicalCPUSet(*f.CPU.Affinity)
		if err != nil {
			return nil, wrapField("cpu.affinity", ErrInvalid, err)
		}
		c.CPUAffinity = cs
	}
	if len(f.NICs) > measure.MaxNICs {
		return nil, fieldErr("nics", ErrUnsupported, "%d NICs, at most %d", len(f.NICs), measure.MaxNICs)
	}
	for i, n := range f.NICs {
		field := "nics[" + strconv.Itoa(i) + "]"
		if n.MAC == "" {
			return nil, fieldErr(field+".mac", ErrMissing, "MAC address is required")
		}
		mac, err := measure.ParseMAC(n.MAC)
		if err != nil {
			return nil, wrapField(field+".mac", ErrInvalid, err)
		}
		var vlan uint64
		if n.VLAN != nil {
			vlan = *n.VLAN
		}
		if vlan > measure.MaxVLAN {
			return nil, fieldErr(field+".vlan", ErrInvalid, "VLAN %d out of range 0..%d (0 = untagged)", vlan, measure.MaxVLAN)
		}
		nic := measure.NIC{MAC: mac, VLAN: uint16(vlan)}
		if n.Trunk != nil {
			if vlan != 0 {
				return nil, fieldErr(field, ErrAmbiguous, "\"vlan\" and \"trunk\" together: a trunk's VLANs are its tags")
			}
			var tags []trunkTag
			for k, t := range n.Trunk {
				tags = append(tags, trunkTag{id: t.ID, native: t.Native, field: fmt.Sprintf("%s.trunk[%d]", field, k)})
			}
			if nic.Trunk, err = canonicalTrunk(tags, field+".trunk"); err != nil {
				return nil, err
			}
		}
		c.NICs = append(c.NICs, nic)
	}
	if len(f.Disks) > measure.MaxDisks {
		return nil, fieldErr("disks", ErrUnsupported, "%d disks, at most %d", len(f.Disks), measure.MaxDisks)
	}
	for i, d := range f.Disks {
		field := "disks[" + strconv.Itoa(i) + "]"
		if d.Target == "" {
			return nil, fieldErr(field+".target", ErrMissing, "disk target (guest device name, e.g. \"vda\") is required")
		}
		disk := Disk{Target: d.Target, Format: d.Format}
		switch d.Format {
		case "", "raw", "qcow2":
		default:
			return nil, fieldErr(field+".format", ErrUnsupported, "format %q, want raw or qcow2", d.Format)
		}
		if d.Empty {
			if d.Path != "" || d.SHA256 != "" || d.Backing != nil {
				return nil, fieldErr(field, ErrAmbiguous, "\"empty\": true together with an image")
			}
		} else {
			img, err := convertImage(FileImage{Path: d.Path, SHA256: d.SHA256}, field)
			if err != nil {
				return nil, err
			}
			disk.Image = img
		}
		if d.Backing != nil {
			if d.Path != "" {
				return nil, fieldErr(field+".backing", ErrAmbiguous, "the backing chain of an image file is read from its qcow2 header; give \"backing\" only with \"sha256\"")
			}
			if len(d.Backing) == 0 || len(d.Backing) > measure.MaxBacking {
				return nil, fieldErr(field+".backing", ErrInvalid, "%d backing images, want 1..%d", len(d.Backing), measure.MaxBacking)
			}
			for k, b := range d.Backing {
				bf := fmt.Sprintf("%s.backing[%d]", field, k)
				if b.Path != "" {
					return nil, fieldErr(bf, ErrUnsupported, "a backing image is given by \"sha256\" here (files are found from the qcow2 header)")
				}
				img, err := convertImage(b, bf)
				if err != nil {
					return nil, err
				}
				disk.Backing = append(disk.Backing, img)
			}
		}
		c.Disks = append(c.Disks, disk)
	}
	if f.Boot != nil {
		if f.Boot.Loader != nil {
			if c.BootLoader, err = convertImage(*f.Boot.Loader, "boot.loader"); err != nil {
				return nil, err
			}
		}
		if f.Boot.Kernel != nil {
			if c.Kernel, err = convertImage(*f.Boot.Kernel, "boot.kernel"); err != nil {
				return nil, err
			}
		}
		c.KernelCmdline = f.Boot.Cmdline
		if f.Boot.Initrd != nil {
			if c.Initrd, err = convertImage(*f.Boot.Initrd, "boot.initrd"); err != nil {
				return nil, err
			}
		}
		if f.Boot.NVRAMTemplate != nil {
			if c.NVRAMTemplate, err = convertImage(*f.Boot.NVRAMTemplate, "boot.nvram_template"); err != nil {
				return nil, err
			}
		}
	}
	if c.Packages, err = convertPackages(f.Packages, "packages"); err != nil {
		return nil, err
	}
	return c, c.check(c.fileField)
}

// v2Field names the first field of f that only schema v2 has, or "".
func (f *File) v2Field() string {
	if f.Balloon != nil {
		return "balloon"
	}
	for i, n := range f.NICs {
		if n.Trunk != nil {
			return indexPath("nics", i) + ".trunk"
		}
	}
	for i, d := range f.Disks {
		if d.Backing != nil {
			return indexPath("disks", i) + ".backing"
		}
		if d.Format != "" {
			return indexPath("disks", i) + ".format"
		}
	}
	if f.Boot != nil && f.Boot.Initrd != nil {
		return "boot.initrd"
	}
	if f.Boot != nil && f.Boot.NVRAMTemplate != nil {
		return "boot.nvram_template"
	}
	return ""
}

// trunkTag is one VLAN of a trunk as the input gives it.
type trunkTag struct {
	id     uint64
	native string
	field  string
}

// canonicalTrunk checks a trunk's VLANs and sorts them by id.
func canonicalTrunk(tags []trunkTag, field string) ([]measure.VLANTag, error) {
	if len(tags) == 0 {
		return nil, fieldErr(field, ErrMissing, "a trunk carries at least one VLAN")
	}
	var out []measure.VLANTag
	natives := 0
	seen := map[uint64]bool{}
	for _, t := range tags {
		if t.id == 0 || t.id > measure.MaxVLAN {
			return nil, fieldErr(t.field, ErrInvalid, "VLAN %d out of range 1..%d", t.id, measure.MaxVLAN)
		}
		if seen[t.id] {
			return nil, fieldErr(t.field, ErrAmbiguous, "VLAN %d listed twice", t.id)
		}
		seen[t.id] = true
		switch t.native {
		case "":
		case measure.NativeTagged, measure.NativeUntagged:
			natives++
		default:
			return nil, fieldErr(t.field, ErrInvalid, "native mode %q, want %q or %q", t.native, measure.NativeTagged, measure.NativeUntagged)
		}
		if natives > 1 {
			return nil, fieldErr(t.field, ErrAmbiguous, "a second native VLAN")
		}
		out = append(out, measure.VLANTag{ID: uint16(t.id), Native: t.native})
	}
	slices.SortFunc(out, func(a, b measure.VLANTag) int { return int(a.ID) - int(b.ID) })
	return out, nil
}

// fileField names in File's terms the field behind a field measure's
// validation names (see check).
func (c *Config) fileField(name string) string {
	switch name {
	case measure.NameMemoryBytes:
		return "memory"
	case measure.NameCPUCount, measure.NameCPUAffinity:
		return name
	case measure.NameKernelCmdline:
		return "boot.cmdline"
	case measure.NameBalloonBytes:
		return "balloon"
	case "net":
		return "nics"
	case "disk":
		return "disks"
	}
	for i := range c.NICs {
		if name == measure.NICVLANName(i) {
			return indexPath("nics", i) + ".vlan"
		}
		if name == measure.NICTrunkName(i) {
			return indexPath("nics", i) + ".trunk"
		}
	}
	for i := range c.Disks {
		if name == measure.DiskTargetName(i) {
			return indexPath("disks", i) + ".target"
		}
	}
	if i, ok := packageIndex(c.Packages, name); ok {
		return indexPath("packages", i)
	}
	return ""
}

// packageIndex returns the position in pk of the package that measure's
// validation names "packages/NAME" or "packages/#i".
func packageIndex(pk []measure.Package, name string) (int, bool) {
	p, ok := strings.CutPrefix(name, "packages/")
	if !ok {
		return 0, false
	}
	if n, ok := strings.CutPrefix(p, "#"); ok {
		i, err := strconv.Atoi(n)
		return i, err == nil && 0 <= i && i < len(pk)
	}
	for i, q := range pk {
		if q.Name == p {
			return i, true
		}
	}
	return 0, false
}

func convertImage(fi FileImage, field string) (*Image, error) {
	switch {
	case fi.Path != "" && fi.SHA256 != "":
		return nil, fieldErr(field, ErrAmbiguous, "give \"path\" or \"sha256\", not both")
	case fi.Path != "":
		return &Image{Path: fi.Path}, nil
	case fi.SHA256 != "":
		d, err := measure.ParseDigest(fi.SHA256)
		if err != nil {
			return nil, wrapField(field+".sha256", ErrInvalid, err)
		}
		return &Image{SHA256: &d}, nil
	}
	return nil, fieldErr(field, ErrMissing, "an image needs \"path\" (a file to hash) or \"sha256\" (its digest)")
}

func convertPackages(fps []FilePackage, field string) ([]measure.Package, error) {
	var out []measure.Package
	seen := map[string]bool{}
	for i, p := range fps {
		f := field + "[" + strconv.Itoa(i) + "]"
		if p.Name == "" {
			return nil, fieldErr(f+".name", ErrMissing, "package name is required")
		}
		if p.Version == "" {
			return nil, fieldErr(f+".version", ErrMissing, "package %q has no version", p.Name)
		}
		if p.ManifestSHA256 == "" {
			return nil, fieldErr(f+".manifest_sha256", ErrMissing, "package %q has no manifest_sha256", p.Name)
		}
		d, err := measure.ParseDigest(p.ManifestSHA256)
		if err != nil {
			return nil, wrapField(f+".manifest_sha256", ErrInvalid, err)
		}
		if seen[p.Name] {
			return nil, fieldErr(f+".name", ErrAmbiguous, "package %q is listed twice", p.Name)
		}
		seen[p.Name] = true
		out = append(out, measure.Package{Name: p.Name, Version: p.Version, ManifestSHA256: d})
	}
	return out, nil
}

// check runs measure's validation on everything that does not need the
// images, so that a bad configuration fails before any file is hashed.
// measure names a field by its parameter ("disk.1.target") or package
// ("packages/openssl"); name, if not nil, maps that to the field of the
// input (a parser's input; "" keeps measure's name).
func (c *Config) check(name func(string) string) error {
	sk := c.skeleton()
	sk.VMID = "-" // the caller measures with the VM's id; Resolve leaves it empty
	err := sk.ValidateFor(measure.V2)
	if mfe, ok := errors.AsType[*measure.FieldError](err); ok && name != nil {
		if f := name(mfe.Field); f != "" {
			return &FieldError{Field: f, Err: mfe.Err}
		}
	}
	return err
}

// skeleton is c as a measure.Config with placeholder digests.
func (c *Config) skeleton() *measure.Config {
	mc := &measure.Config{
		MemoryBytes: c.MemoryBytes, CPUCount: c.CPUCount, CPUAffinity: c.CPUAffinity,
		NICs: c.NICs, KernelCmdline: c.KernelCmdline, Packages: c.Packages,
		BalloonBytes: c.BalloonBytes,
	}
	for _, d := range c.Disks {
		mc.Disks = append(mc.Disks, measure.Disk{Target: d.Target})
	}
	return mc
}

// File converts c back to the JSON/YAML file form: memory in bytes ("…b"),
// images as they were given (path or digest). ParseJSON of its encoding
// gives back c.
func (c *Config) File() *File {
	f := &File{Schema: measure.SchemaV2, Memory: &Size{Text: strconv.FormatUint(c.MemoryBytes, 10) + "b"}}
	if c.BalloonBytes != 0 {
		f.Balloon = &Size{Text: strconv.FormatUint(c.BalloonBytes, 10) + "b"}
	}
	count := c.CPUCount
	f.CPU = &FileCPU{Count: &count}
	if c.CPUAffinity != "" {
		a := c.CPUAffinity
		f.CPU.Affinity = &a
	}
	for _, n := range c.NICs {
		v := uint64(n.VLAN)
		fn := FileNIC{MAC: n.MAC.String(), VLAN: &v}
		for _, t := range n.Trunk {
			fn.Trunk = append(fn.Trunk, FileVLANTag{ID: uint64(t.ID), Native: t.Native})
		}
		f.NICs = append(f.NICs, fn)
	}
	for _, d := range c.Disks {
		fd := FileDisk{Target: d.Target, Empty: d.Image == nil, Format: d.Format}
		if d.Image != nil {
			img := fileImage(d.Image)
			fd.Path, fd.SHA256 = img.Path, img.SHA256
		}
		if d.Image != nil && d.Image.SHA256 != nil {
			// An image file's chain is read from its header again.
			for _, b := range d.Backing {
				fd.Backing = append(fd.Backing, fileImage(b))
			}
		}
		f.Disks = append(f.Disks, fd)
	}
	if c.BootLoader != nil || c.Kernel != nil || c.KernelCmdline != nil || c.Initrd != nil || c.NVRAMTemplate != nil {
		f.Boot = &FileBoot{Cmdline: c.KernelCmdline}
		if c.Initrd != nil {
			img := fileImage(c.Initrd)
			f.Boot.Initrd = &img
		}
		if c.NVRAMTemplate != nil {
			img := fileImage(c.NVRAMTemplate)
			f.Boot.NVRAMTemplate = &img
		}
		if c.BootLoader != nil {
			img := fileImage(c.BootLoader)
			f.Boot.Loader = &img
		}
		if c.Kernel != nil {
			img := fileImage(c.Kernel)
			f.Boot.Kernel = &img
		}
	}
	for _, p := range c.Packages {
		f.Packages = append(f.Packages, FilePackage{Name: p.Name, Version: p.Version, ManifestSHA256: p.ManifestSHA256.String()})
	}
	return f
}

func fileImage(img *Image) FileImage {
	if img.SHA256 != nil {
		return FileImage{SHA256: img.SHA256.String()}
	}
	return FileImage{Path: img.Path}
}

// MarshalJSON writes a Size as its text.
func (s Size) MarshalJSON() ([]byte, error) { return json.Marshal(s.Text) }

// MarshalYAML writes a Size as its text.
func (s Size) MarshalYAML() (any, error) { return s.Text, nil }
