package vmconfig

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vmledger/vmledger/agent/measure"
)

// MetadataNS is the XML namespace of vmledger's element in a libvirt
// domain's <metadata>.
const MetadataNS = "https://vmledger.dev/xmlns/libvirt/v1"

// ParseLibvirt parses a libvirt domain XML as `virsh dumpxml` prints it.
// It first checks the whole document against the allowlist (see the
// package doc): anything not on it is refused, naming its XPath.
//
// What is measured, and from where (XPath, 1-based positions):
//
//	memory.bytes      /domain/memory, scaled by its unit attribute (default KiB, see UnitScale).
//	                  /domain/maxMemory (memory hotplug) is refused.
//	memory.balloon.bytes /domain/currentMemory when it is below /domain/memory (above is refused).
//	cpu.count         /domain/vcpu (the maximum; the "current" attribute is not measured).
//	cpu.affinity      the host CPUs any vCPU may run on: the union of
//	                  /domain/cputune/vcpupin/@cpuset for pinned vCPUs and /domain/vcpu/@cpuset for
//	                  the others; absent when some vCPU is unrestricted. placement='auto' is refused
//	                  (numad decides at start time).
//	net.<i>.*         /domain/devices/interface[i+1]: mac/@address (required); vlan/tag/@id: one tag
//	                  without trunk='yes' is net.<i>.vlan (none = 0); several tags or trunk='yes' are
//	                  net.<i>.trunk, tag/@nativeMode ('tagged', 'untagged') marking the native VLAN.
//	disk.<i>.*        /domain/devices/disk[i+1]: target/@dev; the image is source/@file (type
//	                  'file' only), hashed by streaming; driver/@type raw (default) or qcow2 (which
//	                  must name no backing or data file). A cdrom or floppy without a source is an
//	                  empty drive (disk.<i>.sha256 absent); with a source it is refused.
//	disk.<i>.backing  a qcow2 image's backing chain, from the images' headers (Resolve); a declared
//	                  <backingStore> chain (nested, each with source/@file) must name the same files.
//	boot.loader.sha256 /domain/os/loader (a path). firmware='efi' without a loader path is refused.
//	kernel.sha256     /domain/os/kernel (a path).
//	initrd.sha256     /domain/os/initrd (a path; only with a kernel).
//	boot.nvram.template.sha256 /domain/os/nvram/@template (a path).
//	kernel.cmdline    /domain/os/cmdline, its exact text.
//	packages.root     not in libvirt's schema: from Options.Packages (a side file, ParsePackages) or
//	                  from the metadata element below, never both.
//
// The metadata element (libvirt keeps it verbatim, `virsh metadata` edits it):
//
//	<metadata>
//	  <vmledger:config xmlns:vmledger="https://vmledger.dev/xmlns/libvirt/v1">
//	    <vmledger:package name="openssl" version="3.0.15-1" manifest-sha256="<64 hex>"/>
//	    <vmledger:image target="vda" sha256="<64 hex>"/>  <!-- digest of disk vda's file -->
//	    <vmledger:image target="loader" sha256="..."/>    <!-- also "kernel", "initrd", "nvram-template" -->
//	  </vmledger:config>
//	</metadata>
//
// An image digest is checked against the file when the agent can read it
// (a different digest is refused) and stands in for the file only when the
// agent may not read it; the domain must still name the file.
//
// Not measured but allowed: <nvram>'s store (the mutable variable store, see the package doc), the
// emulator binary (it must be one of Options.Emulators), and the allowlisted elements.
func ParseLibvirt(data []byte, opts Options) (*Config, error) {
	tree, err := parseXMLTree(data)
	if err != nil {
		return nil, fmt.Errorf("libvirt XML: %w", err)
	}
	if tree.local != "domain" || tree.space != "" {
		return nil, fmt.Errorf("libvirt XML: root element is <%s>, want <domain>", tree.written())
	}
	if err := checkAllowlist(tree); err != nil {
		return nil, err
	}
	var d domainXML
	dec := xml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("libvirt XML: %w", err)
	}
	c := &Config{}
	if c.MemoryBytes, c.BalloonBytes, err = d.memory(); err != nil {
		return nil, err
	}
	if c.CPUCount, c.CPUAffinity, err = d.cpu(); err != nil {
		return nil, err
	}
	meta, err := d.metadata()
	if err != nil {
		return nil, err
	}
	devs := d.Devices
	if len(devs) > 1 {
		return nil, fieldErr("/domain/devices", ErrAmbiguous, "%d <devices> elements", len(devs))
	}
	if len(devs) == 1 {
		if err := devs[0].emulator(opts.Emulators); err != nil {
			return nil, err
		}
		if c.NICs, err = devs[0].nics(); err != nil {
			return nil, err
		}
		if c.Disks, err = devs[0].disks(meta.images); err != nil {
			return nil, err
		}
	}
	if err := d.os(c, meta.images); err != nil {
		return nil, err
	}
	for k := range meta.images {
		return nil, fieldErr("/domain/metadata/vmledger:config/image", ErrInvalid, "digest for %q, which is not a disk target, \"loader\", \"kernel\", \"initrd\" or \"nvram-template\" of this domain", k)
	}
	packages := "/domain/metadata/vmledger:config/package"
	switch {
	case len(meta.packages) > 0 && len(opts.Packages) > 0:
		return nil, fieldErr(packages, ErrAmbiguous, "packages are given both in the domain metadata and in a side file; use one")
	case len(meta.packages) > 0:
		c.Packages = meta.packages
	default:
		c.Packages = opts.Packages
		packages = "packages" // the side file's field
	}
	return c, c.check(func(name string) string { return c.libvirtField(name, packages) })
}

// libvirtField names as an XPath (see ParseLibvirt) the element behind a
// field measure's validation names (see check); packages are at the list
// packages, in the metadata or in the side file.
func (c *Config) libvirtField(name, packages string) string {
	switch name {
	case measure.NameMemoryBytes:
		return "/domain/memory"
	case measure.NameCPUCount:
		return "/domain/vcpu"
	case measure.NameCPUAffinity:
		return "/domain/vcpu/@cpuset"
	case measure.NameKernelCmdline:
		return "/domain/os/cmdline"
	case "net":
		return "/domain/devices/interface"
	case "disk":
		return "/domain/devices/disk"
	}
	for i := range c.NICs {
		if name == measure.NICVLANName(i) {
			return fmt.Sprintf("/domain/devices/interface[%d]/vlan/tag/@id", i+1)
		}
	}
	for i := range c.Disks {
		if name == measure.DiskTargetName(i) {
			return fmt.Sprintf("/domain/devices/disk[%d]/target/@dev", i+1)
		}
	}
	i, ok := packageIndex(c.Packages, name)
	switch {
	case !ok:
		return ""
	case packages == "packages":
		return indexPath(packages, i)
	}
	return fmt.Sprintf("%s[%d]", packages, i+1) // XPath counts from 1
}

type domainXML struct {
	XMLName       xml.Name      `xml:"domain"`
	Memory        []scaledXML   `xml:"memory"`
	CurrentMemory []scaledXML   `xml:"currentMemory"`
	MaxMemory     []scaledXML   `xml:"maxMemory"`
	VCPU          []vcpuXML     `xml:"vcpu"`
	CPUTune       []cputuneXML  `xml:"cputune"`
	OS            []osXML       `xml:"os"`
	Devices       []devicesXML  `xml:"devices"`
	Metadata      []metadataXML `xml:"metadata"`
}

type scaledXML struct {
	Unit  string `xml:"unit,attr"`
	Value string `xml:",chardata"`
}

type vcpuXML struct {
	Placement string `xml:"placement,attr"`
	CPUSet    string `xml:"cpuset,attr"`
	Value     string `xml:",chardata"`
}

type cputuneXML struct {
	VCPUPin []struct {
		VCPU   string `xml:"vcpu,attr"`
		CPUSet string `xml:"cpuset,attr"`
	} `xml:"vcpupin"`
}

type osXML struct {
	Firmware string    `xml:"firmware,attr"`
	Loader   []textXML `xml:"loader"`
	Kernel   []textXML `xml:"kernel"`
	Initrd   []textXML `xml:"initrd"`
	Cmdline  []textXML `xml:"cmdline"`
	NVRAM    []struct {
		Template string `xml:"template,attr"`
	} `xml:"nvram"`
}

type textXML struct {
	Value string `xml:",chardata"`
}

type devicesXML struct {
	Emulators  []textXML  `xml:"emulator"`
	Interfaces []ifaceXML `xml:"interface"`
	Disks      []diskXML  `xml:"disk"`
}

type ifaceXML struct {
	Type string `xml:"type,attr"`
	MAC  []struct {
		Address *string `xml:"address,attr"`
	} `xml:"mac"`
	VLAN []struct {
		Trunk string `xml:"trunk,attr"`
		Tags  []struct {
			ID         *string `xml:"id,attr"`
			NativeMode string  `xml:"nativeMode,attr"`
		} `xml:"tag"`
	} `xml:"vlan"`
}

type diskXML struct {
	Type   string `xml:"type,attr"`
	Device string `xml:"device,attr"`
	Driver []struct {
		Type string `xml:"type,attr"`
	} `xml:"driver"`
	Source []struct {
		File *string `xml:"file,attr"`
		Dev  *string `xml:"dev,attr"`
	} `xml:"source"`
	Target []struct {
		Dev string `xml:"dev,attr"`
	} `xml:"target"`
	BackingStore []backingStoreXML `xml:"backingStore"`
}

// backingStoreXML is libvirt's <backingStore>: the image below, its
// source file, and the next one down.
type backingStoreXML struct {
	Type   string `xml:"type,attr"`
	Format []struct {
		Type string `xml:"type,attr"`
	} `xml:"format"`
	Source []struct {
		File *string `xml:"file,attr"`
	} `xml:"source"`
	BackingStore []backingStoreXML `xml:"backingStore"`
}

type metadataXML struct {
	Config []struct {
		Packages []struct {
			Name           *string `xml:"name,attr"`
			Version        *string `xml:"version,attr"`
			ManifestSHA256 *string `xml:"manifest-sha256,attr"`
		} `xml:"https://vmledger.dev/xmlns/libvirt/v1 package"`
		Images []struct {
			Target string `xml:"target,attr"`
			SHA256 string `xml:"sha256,attr"`
		} `xml:"https://vmledger.dev/xmlns/libvirt/v1 image"`
	} `xml:"https://vmledger.dev/xmlns/libvirt/v1 config"`
}

func (d *domainXML) memory() (mem, balloon uint64, err error) {
	mem, err = d.memorySize()
	if err != nil || len(d.CurrentMemory) == 0 {
		return mem, 0, err
	}
	cur, err := scaled(d.CurrentMemory[0], "/domain/currentMemory")
	if err != nil {
		return 0, 0, err
	}
	switch {
	case cur == 0 || cur > mem:
		return 0, 0, fieldErr("/domain/currentMemory", ErrInvalid, "%d bytes; the balloon target is 1 byte up to <memory> (%d bytes)", cur, mem)
	case cur < mem:
		return mem, cur, nil
	}
	return mem, 0, nil
}

func (d *domainXML) memorySize() (uint64, error) {
	if len(d.Memory) != 1 {
		if len(d.Memory) == 0 {
			return 0, fieldErr("/domain/memory", ErrMissing, "no <memory> element")
		}
		return 0, fieldErr("/domain/memory", ErrAmbiguous, "%d <memory> elements", len(d.Memory))
	}
	mem, err := scaled(d.Memory[0], "/domain/memory")
	if err != nil {
		return 0, err
	}
	if mem == 0 {
		return 0, fieldErr("/domain/memory", ErrInvalid, "memory size is 0")
	}
	if len(d.MaxMemory) > 0 {
		return 0, fieldErr("/domain/maxMemory", ErrUnsupported, "memory hotplug makes the memory size unbounded by <memory>; remove <maxMemory>")
	}
	if len(d.CurrentMemory) > 1 {
		return 0, fieldErr("/domain/currentMemory", ErrAmbiguous, "%d <currentMemory> elements", len(d.CurrentMemory))
	}
	return mem, nil
}

func scaled(s scaledXML, field string) (uint64, error) {
	unit := s.Unit
	if unit == "" {
		unit = "KiB" // libvirt's default for memory
	}
	v, err := ScaleBytes(s.Value, unit)
	if err != nil {
		return 0, wrapField(field, ErrInvalid, err)
	}
	return v, nil
}

func (d *domainXML) cpu() (uint64, string, error) {
	if len(d.VCPU) != 1 {
		if len(d.VCPU) == 0 {
			return 0, "", fieldErr("/domain/vcpu", ErrMissing, "no <vcpu> element")
		}
		return 0, "", fieldErr("/domain/vcpu", ErrAmbiguous, "%d <vcpu> elements", len(d.VCPU))
	}
	v := d.VCPU[0]
	n, err := strconv.ParseUint(strings.TrimSpace(v.Value), 10, 64)
	if err != nil || n == 0 {
		return 0, "", fieldErr("/domain/vcpu", ErrInvalid, "%q is not a positive vCPU count", abbrev(v.Value))
	}
	if v.Placement == "auto" {
		return 0, "", fieldErr("/domain/vcpu/@placement", ErrUnsupported, "placement='auto' lets numad choose the host CPUs at start time; pin them with cpuset=… instead")
	}
	if len(d.CPUTune) > 1 {
		return 0, "", fieldErr("/domain/cputune", ErrAmbiguous, "%d <cputune> elements", len(d.CPUTune))
	}
	// pins[i] is vCPU i's cpuset, "" when unrestricted.
	pins := map[uint64]string{}
	if len(d.CPUTune) == 1 {
		for k, p := range d.CPUTune[0].VCPUPin {
			field := fmt.Sprintf("/domain/cputune/vcpupin[%d]", k+1)
			id, err := strconv.ParseUint(strings.TrimSpace(p.VCPU), 10, 64)
			if err != nil || id >= n {
				return 0, "", fieldErr(field+"/@vcpu", ErrInvalid, "%q is not a vCPU of this domain (0..%d)", p.VCPU, n-1)
			}
			if _, dup := pins[id]; dup {
				return 0, "", fieldErr(field, ErrAmbiguous, "vCPU %d is pinned twice", id)
			}
			if _, err := measure.CanonicalCPUSet(p.CPUSet); err != nil {
				return 0, "", wrapField(field+"/@cpuset", ErrInvalid, err)
			}
			pins[id] = p.CPUSet
		}
	}
	if v.CPUSet != "" {
		if _, err := measure.CanonicalCPUSet(v.CPUSet); err != nil {
			return 0, "", wrapField("/domain/vcpu/@cpuset", ErrInvalid, err)
		}
	}
	if len(pins) == 0 {
		if v.CPUSet == "" {
			return n, "", nil
		}
		cs, _ := measure.CanonicalCPUSet(v.CPUSet)
		return n, cs, nil
	}
	if uint64(len(pins)) < n && v.CPUSet == "" {
		// Some vCPU may run anywhere: the VM is not confined.
		return n, "", nil
	}
	var parts []string
	for _, p := range pins {
		parts = append(parts, p)
	}
	if uint64(len(pins)) < n {
		parts = append(parts, v.CPUSet)
	}
	cs, err := measure.CanonicalCPUSet(strings.Join(parts, ","))
	if err != nil {
		return 0, "", wrapField("/domain/cputune", ErrInvalid, err)
	}
	return n, cs, nil
}

func (d *domainXML) os(c *Config, images map[string]measure.Digest) error {
	if len(d.OS) > 1 {
		return fieldErr("/domain/os", ErrAmbiguous, "%d <os> elements", len(d.OS))
	}
	if len(d.OS) == 0 {
		return nil
	}
	o := d.OS[0]
	var err error
	if c.BootLoader, err = osImage(o.Loader, "/domain/os/loader", "loader", images); err != nil {
		return err
	}
	if c.BootLoader == nil && o.Firmware == "efi" {
		return fieldErr("/domain/os/loader", ErrMissing, "firmware='efi' lets libvirt pick the loader at start time; name the loader file in <loader> or give its digest in the metadata")
	}
	if c.Kernel, err = osImage(o.Kernel, "/domain/os/kernel", "kernel", images); err != nil {
		return err
	}
	if c.Initrd, err = osImage(o.Initrd, "/domain/os/initrd", "initrd", images); err != nil {
		return err
	}
	if c.Initrd != nil && c.Kernel == nil {
		return fieldErr("/domain/os/initrd", ErrInvalid, "an initrd without a <kernel>")
	}
	switch len(o.NVRAM) {
	case 0:
	case 1:
		if t := strings.TrimSpace(o.NVRAM[0].Template); t != "" {
			c.NVRAMTemplate = &Image{Path: t, Field: "/domain/os/nvram/@template"}
			if d, ok := images["nvram-template"]; ok {
				delete(images, "nvram-template")
				c.NVRAMTemplate.Claimed = &d
			}
		}
	default:
		return fieldErr("/domain/os/nvram", ErrAmbiguous, "%d <nvram> elements", len(o.NVRAM))
	}
	switch len(o.Cmdline) {
	case 0:
	case 1:
		s := o.Cmdline[0].Value
		c.KernelCmdline = &s
	default:
		return fieldErr("/domain/os/cmdline", ErrAmbiguous, "%d <cmdline> elements", len(o.Cmdline))
	}
	return nil
}

func osImage(els []textXML, field, key string, images map[string]measure.Digest) (*Image, error) {
	if len(els) > 1 {
		return nil, fieldErr(field, ErrAmbiguous, "%d elements", len(els))
	}
	if len(els) == 0 {
		return nil, nil // a digest for it stays in images and is refused as stray
	}
	p := strings.TrimSpace(els[0].Value)
	if p == "" {
		return nil, fieldErr(field, ErrMissing, "empty path")
	}
	img := &Image{Path: p, Field: field}
	if d, ok := images[key]; ok {
		delete(images, key)
		img.Claimed = &d
	}
	return img, nil
}

// emulator checks that the domain's VMM binary is one of allowed (nil:
// DefaultEmulators). The emulator is not measured: it is the host's, and
// its integrity is the host's (see SECURITY.md).
func (d *devicesXML) emulator(allowed []string) error {
	if allowed == nil {
		allowed = DefaultEmulators
	}
	for i, e := range d.Emulators {
		field := fmt.Sprintf("/domain/devices/emulator[%d]", i+1)
		if i > 0 {
			return fieldErr(field, ErrAmbiguous, "%d <emulator> elements", len(d.Emulators))
		}
		p := strings.TrimSpace(e.Value)
		if !slices.Contains(allowed, p) {
			return fieldErr(field, ErrNotAllowed, "emulator %q is not one of the host's VMM binaries (%s): another binary could run anything", abbrev(p), strings.Join(allowed, ", "))
		}
	}
	return nil
}

func (d *devicesXML) nics() ([]measure.NIC, error) {
	if len(d.Interfaces) > measure.MaxNICs {
		return nil, fieldErr("/domain/devices/interface", ErrUnsupported, "%d interfaces, at most %d", len(d.Interfaces), measure.MaxNICs)
	}
	var out []measure.NIC
	for i, in := range d.Interfaces {
		field := fmt.Sprintf("/domain/devices/interface[%d]", i+1)
		if len(in.MAC) != 1 || in.MAC[0].Address == nil {
			if len(in.MAC) > 1 {
				return nil, fieldErr(field+"/mac", ErrAmbiguous, "%d <mac> elements", len(in.MAC))
			}
			return nil, fieldErr(field+"/mac/@address", ErrMissing, "no MAC address (virsh dumpxml of a defined domain always has one)")
		}
		mac, err := measure.ParseMAC(*in.MAC[0].Address)
		if err != nil {
			return nil, wrapField(field+"/mac/@address", ErrInvalid, err)
		}
		var vlan uint64
		switch len(in.VLAN) {
		case 0:
		case 1:
			v := in.VLAN[0]
			var tags []trunkTag
			for k, t := range v.Tags {
				tf := fmt.Sprintf("%s/vlan/tag[%d]", field, k+1)
				if len(v.Tags) == 1 {
					tf = field + "/vlan/tag"
				}
				if t.ID == nil {
					return nil, fieldErr(tf+"/@id", ErrMissing, "no id")
				}
				id, err := strconv.ParseUint(strings.TrimSpace(*t.ID), 10, 64)
				if err != nil || id == 0 || id > measure.MaxVLAN {
					return nil, fieldErr(tf+"/@id", ErrInvalid, "%q is not a VLAN id 1..%d", *t.ID, measure.MaxVLAN)
				}
				tags = append(tags, trunkTag{id: id, native: t.NativeMode, field: tf})
			}
			if len(tags) == 0 {
				return nil, fieldErr(field+"/vlan", ErrMissing, "no <tag>")
			}
			if v.Trunk == "yes" || len(tags) > 1 {
				// A trunk port: libvirt makes it one with several tags even
				// without trunk='yes'.
				trunk, err := canonicalTrunk(tags, field+"/vlan")
				if err != nil {
					return nil, err
				}
				out = append(out, measure.NIC{MAC: mac, Trunk: trunk})
				continue
			}
			if tags[0].native != "" {
				return nil, fieldErr(tags[0].field+"/@nativeMode", ErrInvalid, "nativeMode on the tag of an access port (one tag, no trunk='yes')")
			}
			vlan = tags[0].id
		default:
			return nil, fieldErr(field+"/vlan", ErrAmbiguous, "%d <vlan> elements", len(in.VLAN))
		}
		out = append(out, measure.NIC{MAC: mac, VLAN: uint16(vlan)})
	}
	return out, nil
}

func (d *devicesXML) disks(images map[string]measure.Digest) ([]Disk, error) {
	if len(d.Disks) > measure.MaxDisks {
		return nil, fieldErr("/domain/devices/disk", ErrUnsupported, "%d disks, at most %d", len(d.Disks), measure.MaxDisks)
	}
	var out []Disk
	for i, dk := range d.Disks {
		field := fmt.Sprintf("/domain/devices/disk[%d]", i+1)
		if len(dk.Target) != 1 || dk.Target[0].Dev == "" {
			if len(dk.Target) > 1 {
				return nil, fieldErr(field+"/target", ErrAmbiguous, "%d <target> elements", len(dk.Target))
			}
			return nil, fieldErr(field+"/target/@dev", ErrMissing, "no target device name")
		}
		disk := Disk{Target: dk.Target[0].Dev}
		switch len(dk.Driver) {
		case 0:
		case 1:
			disk.Format = dk.Driver[0].Type
		default:
			return nil, fieldErr(field+"/driver", ErrAmbiguous, "%d <driver> elements", len(dk.Driver))
		}
		if len(dk.Source) > 1 {
			return nil, fieldErr(field+"/source", ErrAmbiguous, "%d <source> elements", len(dk.Source))
		}
		// A declared backing chain (virsh dumpxml of a running domain
		// lists it) must be the one the qcow2 headers name: Resolve
		// compares them. An empty <backingStore/> ends the chain.
		bf := field
		for bs := dk.BackingStore; len(bs) > 0; bs = bs[0].BackingStore {
			bf += "/backingStore"
			if len(bs) > 1 {
				return nil, fieldErr(bf, ErrAmbiguous, "%d <backingStore> elements", len(bs))
			}
			b := bs[0]
			if len(b.Source) == 0 {
				if len(b.BackingStore) > 0 {
					return nil, fieldErr(bf, ErrMissing, "a backing image without a <source>")
				}
				break
			}
			if len(b.Source) > 1 || b.Source[0].File == nil || *b.Source[0].File == "" {
				return nil, fieldErr(bf+"/source/@file", ErrMissing, "a backing image is a file")
			}
			if len(disk.Backing) == measure.MaxBacking {
				return nil, fieldErr(bf, ErrUnsupported, "more than %d backing images", measure.MaxBacking)
			}
			disk.Backing = append(disk.Backing, &Image{Path: *b.Source[0].File, Field: bf + "/source/@file"})
		}
		if len(disk.Backing) > 0 && disk.Format != "qcow2" {
			return nil, fieldErr(field+"/backingStore", ErrInvalid, "disk %s declares a backing chain but its driver type is %q, not qcow2", disk.Target, disk.Format)
		}
		if dk.Type != "" && dk.Type != "file" {
			return nil, fieldErr(field+"/@type", ErrNotAllowed, "disk type %q: only image files are measured", dk.Type)
		}
		var path string
		if len(dk.Source) == 1 && dk.Source[0].File != nil {
			path = *dk.Source[0].File
		}
		claimed, hasClaim := images[disk.Target]
		delete(images, disk.Target)
		if dk.Device == "cdrom" || dk.Device == "floppy" {
			if path != "" || hasClaim {
				return nil, fieldErr(field+"/@device", ErrNotAllowed, "%s %s holds media: libvirt can change a removable drive's media while the guest runs (virsh change-media) without a new measurement; attach the image with device='disk'", dk.Device, disk.Target)
			}
			out = append(out, disk) // empty removable drive
			continue
		}
		if path == "" {
			return nil, fieldErr(field+"/source", ErrMissing, "disk %s has no source file", disk.Target)
		}
		disk.Image = &Image{Path: path, Field: field + "/source/@file"}
		if hasClaim {
			disk.Image.Claimed = &claimed
		}
		out = append(out, disk)
	}
	return out, nil
}

type libvirtMeta struct {
	packages []measure.Package
	images   map[string]measure.Digest
}

func (d *domainXML) metadata() (libvirtMeta, error) {
	m := libvirtMeta{images: map[string]measure.Digest{}}
	var cfgs int
	for _, md := range d.Metadata {
		cfgs += len(md.Config)
	}
	if cfgs > 1 || len(d.Metadata) > 1 {
		return m, fieldErr("/domain/metadata/vmledger:config", ErrAmbiguous, "more than one vmledger:config element")
	}
	if cfgs == 0 {
		return m, nil
	}
	cfg := d.Metadata[0].Config[0]
	var fps []FilePackage
	for i, p := range cfg.Packages {
		field := fmt.Sprintf("/domain/metadata/vmledger:config/package[%d]", i+1)
		if p.Name == nil || p.Version == nil || p.ManifestSHA256 == nil {
			return m, fieldErr(field, ErrMissing, "a package needs name, version and manifest-sha256 attributes")
		}
		fps = append(fps, FilePackage{Name: *p.Name, Version: *p.Version, ManifestSHA256: *p.ManifestSHA256})
	}
	pk, err := convertPackages(fps, "/domain/metadata/vmledger:config/package")
	if err != nil {
		return m, err
	}
	m.packages = pk
	for i, im := range cfg.Images {
		field := fmt.Sprintf("/domain/metadata/vmledger:config/image[%d]", i+1)
		if im.Target == "" {
			return m, fieldErr(field+"/@target", ErrMissing, "no target (a disk target, \"loader\" or \"kernel\")")
		}
		dg, err := measure.ParseDigest(im.SHA256)
		if err != nil {
			return m, wrapField(field+"/@sha256", ErrInvalid, err)
		}
		if _, dup := m.images[im.Target]; dup {
			return m, fieldErr(field, ErrAmbiguous, "two digests for %q", im.Target)
		}
		m.images[im.Target] = dg
	}
	return m, nil
}
