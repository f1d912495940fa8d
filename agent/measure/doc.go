// Package measure is the vmledger configuration tree (schemas
// vmledger/config/v1 and vmledger/config/v2; docs/formats.md): how a VM configuration becomes the
// 32-byte root that a TPM signs and a transparency log records, and how one
// parameter is disclosed and checked against that root. It is pure: no
// files, no network, no logging. HashImage reads an io.Reader it is given.
//
// The hypervisor agent calls Measure; a customer recomputes the root of the
// configuration they ordered with Root (or Measure) and the VM secret they
// share with the provider, and compares it with the attested root. A third
// party checks a single disclosed parameter with Disclosure.Verify or
// PackageDisclosure.Verify.
//
// Everything below is enough to implement the format in another language;
// testing/vectors/config-tree-v1.json and config-tree-v2.json hold vectors
// to check against.
//
// # Schemas
//
// The agent measures under schema v2 (Current, V2.Measure). Schema v1 (V1;
// the package-level Measure, Root, Names, LeafIndex, CheckParam and
// NumLeaves are v1's) stays so that attestations made under it still
// verify: the attestation's predicate names the schema (configSchema), and a
// verifier measures under that schema (SchemaOf). Schema v2 is v1 plus the
// leaves of the section "Schema v2" below; everything else (leaf encoding
// and its label, salts, package subtree, canonical values, disclosure) is
// the same. The sections up to "Schema v2" describe v1.
//
// # Parameters
//
// Every tree has the same NumLeaves = 71 leaves, one per registered name,
// whatever the configuration. A parameter that does not apply is an absent
// leaf (type 5, empty value). Names and their types when present:
//
//	memory.bytes        1 u64    memory size in bytes (libvirt units normalised; never "8G")
//	cpu.count           1 u64    number of vCPUs (> 0)
//	cpu.affinity        2 UTF-8  host CPUs the vCPUs may run on, canonical cpuset (below); absent if unpinned
//	net.<i>.mac         3 bytes  6 bytes, the MAC of NIC slot i
//	net.<i>.vlan        1 u64    802.1Q VLAN id of NIC slot i, 0 = untagged
//	disk.<i>.sha256     3 bytes  32-byte SHA-256 of disk slot i's image; absent for an empty removable drive
//	disk.<i>.target     2 UTF-8  guest device name of disk slot i ("vda")
//	boot.loader.sha256  3 bytes  SHA-256 of the firmware/boot loader image; absent if none is given
//	kernel.sha256       3 bytes  SHA-256 of the directly booted kernel; absent if none
//	kernel.cmdline      2 UTF-8  the exact kernel command line, no terminator (NUL is refused); absent if not given
//	                             (a present empty command line is type 2 with an empty value)
//	packages.root       4 root   root of the package subtree (below); absent when no package is listed
//
// # Slots: indexing and hidden counts
//
// NICs and disks occupy slots i = 0 … 15 (MaxNICs, MaxDisks) in the order of
// the configuration (the order of <interface> and <disk> elements in libvirt
// XML). i is written in decimal without leading zeros. Every slot has both
// of its leaves in every tree; an unused slot's two leaves are absent. So a
// tree always has 7 + 2·16 + 2·16 = 71 leaves and its shape — and the
// parameter names an attestation lists — reveal neither the number of NICs
// nor the number of disks. A configuration with more than 16 of either is
// refused. A NIC slot is used iff its mac is present; a disk slot iff its
// target is present.
//
// Leaves are sorted bytewise by name (Go string order, memcmp), which puts
// "disk.10.sha256" before "disk.2.sha256": the full order starts
//
//	0 boot.loader.sha256, 1 cpu.affinity, 2 cpu.count, 3 disk.0.sha256, 4 disk.0.target,
//	5 disk.1.sha256, 6 disk.1.target, 7 disk.10.sha256, …, 36 kernel.sha256, 37 memory.bytes,
//	38 net.0.mac, 39 net.0.vlan, 40 net.1.mac, …, 70 packages.root
//
// and Names returns all of it. A leaf's index is its position in this order.
//
// # Leaf encoding
//
// Integers are big-endian. The leaf input is
//
//	"vmledger/config-leaf/v1" 0x00
//	u16  length of name      name (ASCII)
//	u8   type                (1 u64, 2 UTF-8, 3 raw bytes, 4 subtree root, 5 absent)
//	u32  length of value     value (u64: 8 bytes; MAC: 6; digest/root: 32; absent: 0)
//	32-byte salt
//
// salt = HMAC-SHA256(vm_secret, "vmledger/salt/v1" 0x00 name), where vm_secret
// is the VM's 32-byte secret (never reused across VMs). The leaf hash is the
// RFC 6962 leaf hash SHA-256(0x00 ‖ leaf input) and the root is the RFC 6962
// Merkle tree hash over the 71 leaf hashes in index order (interior node
// SHA-256(0x01 ‖ left ‖ right), left subtree of the largest power of two
// smaller than n).
//
// # Package subtree
//
// Each package (name, version, manifest SHA-256) is a leaf of a nested RFC
// 6962 tree whose root is the value of packages.root. Its leaf input is
//
//	"vmledger/package-leaf/v1" 0x00
//	u16 length of name     name (UTF-8, 1..65535 bytes, unique within the VM)
//	u16 length of version  version (UTF-8, 1..65535 bytes)
//	32-byte manifest SHA-256 (e.g. the SHA256 field of the .deb in its repository's index)
//	32-byte salt = HMAC-SHA256(vm_secret, "vmledger/salt/v1" 0x00 "packages/" name)
//
// UTF-8 values (here and in configuration leaves) never contain NUL.
// Package leaves are sorted bytewise by name. No configuration leaf name
// contains "/", so package salts never coincide with parameter salts, and
// the two labels keep a package leaf from being read as a configuration
// leaf. Disclosing one package reveals the subtree size (the number of
// packages), not the others.
//
// # Canonical values
//
// cpusets are written as maximal runs of consecutive CPU numbers in ascending
// order, "N" for a run of one and "N-M" otherwise, joined by "," without
// blanks or leading zeros: "0-3,8,10-11". CanonicalCPUSet converts libvirt's
// syntax (which also has "^N" exclusions). MACs are 6 raw bytes. Digests
// are raw 32 bytes. Memory is bytes: libvirt's units (KB = 1000, k = KiB =
// 1024, M = MiB, MB = 10⁶, …) are normalised before measuring.
//
// # Disclosure
//
// One parameter is disclosed as (name, type, value, salt, index, tree size,
// inclusion proof): the verifier rebuilds the leaf input, hashes it, and
// checks the RFC 6962 inclusion proof (sibling hashes, leaf's sibling
// first) against the attested root; index and size must be the schema's.
// A package is disclosed with two levels: its package leaf and proof into
// the subtree, plus the disclosure of packages.root whose value is the
// subtree root. The salt is what keeps an undisclosed parameter from being
// guessed (a memory size has a handful of likely values): never publish a
// salt you do not mean to disclose.
//
// # Worked example
//
// The vector "minimal": memory 2 GiB, 2 vCPUs, nothing else;
// vm_secret = 00 01 02 … 1f (byte i = i).
//
//	memory.bytes (index 37), value 2147483648 = 0000000080000000
//	salt  = HMAC-SHA256(secret, "vmledger/salt/v1\x00memory.bytes")
//	      = 114ccb7bdb7c8e868a2719fb77fc0d20ab5e9ecf7674deab2f0cebab19b09e65
//	input = 766d6c65646765722f636f6e6669672d6c6561662f7631 00   "vmledger/config-leaf/v1" 0x00
//	        000c 6d656d6f72792e6279746573                       len 12, "memory.bytes"
//	        01 00000008 0000000080000000                        u64, len 8, value
//	        114ccb7b…b19b09e65                                   salt
//	leaf hash = SHA-256(00 ‖ input)
//	      = 20b6eae22a4d3bfd7f58ef37eb5726c022c60064dd7f9619619d09a5fe210aac
//
//	cpu.affinity (index 1), absent:
//	input = …2f7631 00 000c 6370752e616666696e697479 05 00000000 e7ad132a…b89a5d15
//	leaf hash = c95c2adf0a98996ad042a2780a8c5bbfdbd7cdfa186d79346318db76810dbf21
//
//	root over all 71 leaves
//	      = 0decbc8a74f50bd1aaa9fd9f1b9b285b9fd84ca4020baa0b492813284b3a65c1
//
// The disclosure of memory.bytes in that tree carries index 37, tree size 71
// and a 7-hash proof, listed in the vectors file.
//
// # Schema v2
//
// Schema v2 ("vmledger/config/v2") registers NumLeavesV2 = 107 names: the 71
// of v1 and
//
//	vm.id                       2 UTF-8  the VM id, the attestation's subject without "vm:"; always present
//	                                     (1..255 bytes of printable UTF-8 without blanks): the root binds the VM
//	memory.balloon.bytes        1 u64    balloon target (libvirt <currentMemory>) when it is below memory.bytes;
//	                                     absent when the guest is given all of memory.bytes
//	initrd.sha256               3 bytes  SHA-256 of the initial ramdisk of a direct kernel boot; absent if none
//	boot.nvram.template.sha256  3 bytes  SHA-256 of the template the UEFI variable store is created from
//	                                     (the store itself is the guest's mutable state); absent if none
//	net.<i>.trunk               3 bytes  the VLANs of NIC i when it is a trunk port; absent otherwise. Per
//	                                     VLAN, ids strictly ascending, a big-endian u16: id (1..4094) in
//	                                     the low 12 bits, mode << 12 above (0 tagged member, 1 the native
//	                                     VLAN tagged, 2 the native VLAN untagged; at most one native).
//	                                     A trunk's net.<i>.vlan is 0.
//	disk.<i>.backing            3 bytes  the backing chain of disk i below its top image: the SHA-256 of each
//	                                     backing image in chain order, concatenated (32·n bytes, 1 <= n <= 16:
//	                                     the top image's backing file first, the base last); absent when the
//	                                     disk image has no backing file. disk.<i>.sha256 is the top image,
//	                                     whose digest covers the header that names its backing file.
//
// Sorted bytewise with v1's names they give, for example, 1
// boot.nvram.template.sha256, 4 disk.0.backing, 52 initrd.sha256, 54
// kernel.sha256, 55 memory.balloon.bytes, 56 memory.bytes, 105
// packages.root and 106 vm.id (V2.Names lists them all). A v2 disclosure
// carries "schema": "vmledger/config/v2" (a disclosure without it is v1's)
// and the v2 index and tree size. Under v1 each of these values is refused
// (ErrUnsupported) rather than dropped.
//
// The vector "minimal" of config-tree-v2.json (vm.id "web01", memory 2 GiB,
// 2 vCPUs, vm_secret 00 01 … 1f) has the vm.id leaf (index 106)
//
//	input = 766d6c65646765722f636f6e6669672d6c6561662f7631 00   "vmledger/config-leaf/v1" 0x00 (the same label as v1)
//	        0005 766d2e6964 02 00000005 7765623031              "vm.id", UTF-8, len 5, "web01"
//	        5b4c8074…28c76a5f                                    salt
//	leaf hash = 16a5de1c01b3274639ceff2eeb045d0249c08f3dc2bb4bbf63dababf91720795
//	root      = 3491b2cea060d91d32ff1f57716f7e304378d3933340887080bb7bef6ffbc016
//
// and "minimal-other-vm", the same with vm.id "web02", has the root
// 0daf2f387aab0a8e344acf2715f067542bfdd376e3bc374219b003578c8717f1.
// In "full", net.1.trunk (VLAN 10, 20 native untagged, 4094) is
// 000a 2014 0ffe.
//
// # Vectors file
//
// testing/vectors/config-tree-v1.json and config-tree-v2.json: {"schema",
// "cases": [...]}; each case
// has vm_secret, config (the JSON form of Config: memory_bytes, cpu_count,
// cpu_affinity, nics [{mac, vlan}], disks [{target, sha256}],
// boot_loader_sha256, kernel_sha256, kernel_cmdline, packages [{name,
// version, manifest_sha256}]; v2 adds vm_id, balloon_bytes, initrd_sha256,
// nvram_template_sha256, nics[i].trunk [{id, native}] and disks[i].backing
// [hex digests]; a missing key is an absent leaf), leaves
// [{index, name, type, value, display, salt, leaf_hash, leaf_input}],
// packages (the same for package leaves), packages_root, root, disclosures
// (Disclosure) and package_disclosure (PackageDisclosure). Byte strings are
// lowercase hex; "display" is informative only.
package measure
