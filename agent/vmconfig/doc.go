// Package vmconfig reads VM configurations — the documented JSON and YAML
// format (File) and libvirt domain XML as `virsh dumpxml` prints it
// (ParseLibvirt) — into a Config, and resolves it into the canonical
// measure.Config by hashing the images it names (Resolve).
//
// Parsing is pure (bytes in, Config out); Resolve and LoadFile read files.
// The agent measures with it; a customer's client uses the same code to
// recompute the root of the configuration they ordered (MeasureFile).
//
// # Rules common to all formats
//
//   - Required: the memory size and the vCPU count. Everything else may be
//     missing and becomes an absent leaf (see package measure).
//   - Sizes carry a unit, with libvirt's meanings (UnitScale): KB = 1000,
//     k = KiB = 1024, MB = 1000², M = MiB = 1024², and so on up to E/EiB;
//     "b"/"bytes" are bytes. A bare number is refused in JSON and YAML
//     (libvirt XML defaults to KiB, as libvirt does).
//   - cpusets use libvirt's syntax ("0-3,^2,8") and are canonicalised
//     ("0-1,3,8").
//   - MACs are six hex octets; VLAN ids 1..4094, 0 or missing = untagged.
//   - An image (disk, loader, kernel) is a path — hashed with SHA-256 in one
//     streaming pass, each distinct file once — or a precomputed SHA-256 in
//     hex, which is trusted as given. Relative paths are relative to the
//     configuration file.
//   - At most 16 NICs and 16 disks (the schema's fixed slots); their order
//     in the input is their slot order.
//   - Anything missing, malformed or ambiguous (a duplicate JSON key, a
//     second YAML document, two <memory> elements, a balloon target above
//     the memory size, path and digest together, a package
//     listed twice, …) is refused with a *FieldError naming the field in
//     the input's own terms, wrapping ErrMissing, ErrInvalid, ErrAmbiguous
//     or ErrUnsupported (test with errors.Is). Unknown JSON/YAML fields
//     (names are case-sensitive), values of the wrong type and YAML
//     anchors, aliases and merge keys are refused too, naming the field
//     ("nics[1].vlan"). Libvirt XML is read fail-closed: see below.
//
// # The libvirt allowlist
//
// A libvirt domain can change what the guest runs, sees or reaches in many
// places besides the ones measured (a <qemu:commandline> argument, an
// <initrd>, a <filesystem> passing a host directory, an option ROM file, …).
// ParseLibvirt therefore checks every element, attribute and, where it
// matters, value against an allowlist (LibvirtAllowlist prints it; the
// table is libvirtAllowlist in allowlist.go) before it reads anything, and
// refuses the first one not on it with a *FieldError that names its XPath
// and wraps ErrNotAllowed. An element libvirt adds one day is refused until
// someone decides it does not matter or measures it. The allowlist holds:
//
//   - what is measured (schema v2, see package measure): memory and the
//     balloon target, vCPUs and pinning, NICs (MAC, a VLAN tag or a trunk),
//     image-file disks and their qcow2 backing chains, the loader and the
//     nvram template, the kernel, its initrd and command line;
//   - host placement and limits (cputune, numatune, memtune, blkiotune,
//     hugepages, resource partition, seclabel): where and how fast, not what;
//   - the virtual platform's shape (CPU model and features, <features>,
//     clock, power events, controllers, input, video, sound, a VNC or SPICE
//     display, a balloon, a watchdog, a panic device, an emulated TPM, an
//     IOMMU): which instructions, timers and buses the guest finds, not which
//     code or data it is given;
//   - character devices that are a pseudo-terminal, a socket libvirt binds,
//     or nothing; an RNG fed by /dev/urandom or /dev/random;
//   - metadata: vmledger's own element, and other applications' elements
//     (other namespaces), which libvirt never interprets.
//
// Refused, among others: every <qemu:…> element (commandline, override,
// capabilities), <dtb>, ACPI
// table and SMBIOS files, <sysinfo>, <launchSecurity>, shared or file/memfd
// memory backing and NUMA cells, <hostdev>, <filesystem>, <shmem>,
// <redirdev>, <smartcard>, <vsock>, <memory> devices, disks that are not
// image files (network, volume, block, dir), removable media (a cdrom or
// floppy with a source: virsh change-media can swap it while the guest
// runs; an empty drive is allowed), LUN passthrough, disk formats other than
// raw and qcow2, option ROM files (<rom file>), interface scripts and back
// ends, passthrough and vhost-user interfaces, network boot, console logs
// and character devices backed by host files or devices, and an <emulator>
// that is not one of Options.Emulators (default DefaultEmulators).
//
// Images a domain names are checked when they are hashed (Resolve): a qcow2
// image that keeps its data in an external data file is refused (QEMU would
// open a file that is not measured); a qcow2 image's backing file is read
// from its header (relative names relative to the image's directory),
// hashed and followed in turn down the chain (at most measure.MaxBacking
// images), each measured in disk.<i>.backing; a backing file whose format
// the header does not record is refused (QEMU would probe the format), and
// so is a declared <backingStore> chain that is not the one the headers
// name. A digest in vmledger's metadata
// (<vmledger:image target="vda" sha256="…"/>) is compared with the file's
// own digest when the agent can read the file (ErrDigestMismatch if they
// differ), and stands in for it only when the agent may not read it
// (permission denied), and never for a qcow2 image.
//
// Allowed but not measured, so a customer must not rely on them: where a
// NIC is attached on the host (bridge, network, source device) — the MAC
// and VLANs are measured —, the emulated TPM's state, the display, and the
// elements above.
//
// The UEFI variable store (<nvram>) is state the guest and its firmware
// write at every boot (boot order, Secure Boot keys and databases), so a
// digest of it would differ from boot to boot: it is not measured. Its
// template (<nvram template='…'>), from which libvirt creates the store of
// a new domain, is measured under schema v2 (boot.nvram.template.sha256;
// a metadata digest for it has target "nvram-template"). A store that
// already exists is used as it is: a customer that relies on Secure Boot
// must know that the variables the guest boots with (PK, KEK, db, dbx) are
// the template's only for a store libvirt created from it.
//
// The JSON/YAML format is documented on File; what is read from libvirt XML
// on ParseLibvirt. Packages are not part of libvirt's schema: they come from
// a side file (ParsePackages) or a vmledger element in the domain's
// <metadata>.
package vmconfig
