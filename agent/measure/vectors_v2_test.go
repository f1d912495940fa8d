package measure

import (
	"fmt"
	"testing"
)

const vectorsPathV2 = "../../testing/vectors/config-tree-v2.json"

// vectorCasesV2 are the configurations of the schema v2 vectors: each
// parameter v2 adds appears present and absent, and two cases differ only
// in the VM id.
func vectorCasesV2() []vectorCase {
	full := Config{
		VMID:        "web01",
		MemoryBytes: 8 << 30, BalloonBytes: 6 << 30, CPUCount: 4, CPUAffinity: "4-7,12",
		NICs: []NIC{
			{MAC: MAC{0x52, 0x54, 0x00, 0x6b, 0x3c, 0x58}, VLAN: 42},
			{MAC: MAC{0x52, 0x54, 0x00, 0xa1, 0x0f, 0x02}, Trunk: []VLANTag{{ID: 10}, {ID: 20, Native: NativeUntagged}, {ID: 4094}}},
			{MAC: mac(3)},
		},
		Disks: []Disk{
			{Target: "vda", SHA256: digestOf("overlay image"), Backing: []Digest{*digestOf("base image")}},
			{Target: "vdb", SHA256: digestOf("data image")},
			{Target: "sda"}, // empty cdrom
		},
		BootLoader:    digestOf("OVMF_CODE_4M.fd"),
		NVRAMTemplate: digestOf("OVMF_VARS_4M.fd"),
		Kernel:        digestOf("vmlinuz-6.1.0-28-amd64"),
		Initrd:        digestOf("initrd.img-6.1.0-28-amd64"),
		KernelCmdline: strp("console=ttyS0,115200n8 root=/dev/vda1 ro quiet"),
		Packages: []Package{
			{Name: "openssl", Version: "3.0.15-1~deb12u1", ManifestSHA256: *digestOf("openssl.deb")},
			{Name: "nginx", Version: "1.22.1-9", ManifestSHA256: *digestOf("nginx.deb")},
			{Name: "libc6", Version: "2.36-9+deb12u9", ManifestSHA256: *digestOf("libc6.deb")},
		},
	}
	maxed := Config{VMID: "vm-" + fmt.Sprint(1234567890), MemoryBytes: 1000000000, CPUCount: 64, CPUAffinity: "0-63", KernelCmdline: strp("")}
	for i := range MaxNICs {
		n := NIC{MAC: mac(i), VLAN: uint16(100 + i)}
		if i%2 == 1 {
			n.VLAN = 0
			n.Trunk = []VLANTag{{ID: uint16(i), Native: NativeTagged}, {ID: uint16(200 + i)}}
		}
		maxed.NICs = append(maxed.NICs, n)
	}
	for i := range MaxDisks {
		d := Disk{Target: fmt.Sprintf("vd%c", 'a'+i), SHA256: digestOf(fmt.Sprintf("disk %d", i))}
		for j := range i % 3 {
			d.Backing = append(d.Backing, *digestOf(fmt.Sprintf("disk %d backing %d", i, j)))
		}
		maxed.Disks = append(maxed.Disks, d)
	}
	var chain16 []Digest
	for j := range MaxBacking {
		chain16 = append(chain16, *digestOf(fmt.Sprint("layer ", j)))
	}
	maxed.Disks[15].Backing = chain16
	minimal := Config{VMID: "web01", MemoryBytes: 2 << 30, CPUCount: 2}
	other := minimal
	other.VMID = "web02"
	return []vectorCase{
		{"minimal", "only the required parameters of v2 (vm.id, memory, vCPUs); every other leaf absent", 0x00, minimal},
		{"minimal-other-vm", "the minimal configuration and secret with another VM id: vm.id and the root differ, every other leaf is the same", 0x00, other},
		{"full", "every v2 parameter kind present: a balloon below memory, an access VLAN, a trunk with a native untagged VLAN, an untagged NIC, a two-image qcow2 chain, a disk without backing file, an empty drive, loader and its variables template, kernel, initrd, cmdline, 3 packages", 0x20, full},
		{"all-slots", "16 NICs (every other one a trunk with a native tagged VLAN) and 16 disks with chains of 0, 1, 2 and 16 backing images, a present empty kernel.cmdline", 0x40, maxed},
	}
}

func buildVectorsV2(t *testing.T) []byte {
	return buildVectorsFor(t, V2, vectorCasesV2(), []string{NameVMID, NameMemoryBytes, NameBalloonBytes, NICTrunkName(1), DiskBackingName(0), NameInitrd, NamePackagesRoot})
}
