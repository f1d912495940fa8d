package vmconfig

import (
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
)

const fileVectorsPathV2 = "../../testing/vectors/config-files-v2.json"

// fakeQcow2 is a qcow2 v3 header naming backing file backing of format
// format (header extension 0xe2792aca), as qemu-img writes it.
func fakeQcow2(backing, format string) string {
	h := make([]byte, 128)
	copy(h, "QFI\xfb")
	binary.BigEndian.PutUint32(h[4:], 3)
	binary.BigEndian.PutUint64(h[8:], 128)
	binary.BigEndian.PutUint32(h[16:], uint32(len(backing)))
	binary.BigEndian.PutUint32(h[100:], 104)
	binary.BigEndian.PutUint32(h[104:], 0xe2792aca)
	binary.BigEndian.PutUint32(h[108:], uint32(len(format)))
	copy(h[112:], format)
	return string(append(h, backing...))
}

func init() {
	fakeImages["/var/lib/libvirt/images/web02-top.qcow2"] = fakeQcow2("web02-base.raw", "raw")
	fakeImages["/var/lib/libvirt/images/web02-base.raw"] = "base image of web02"
}

func fileVectorInputsV2() []fileVector {
	xml := `<domain type='kvm'>
  <name>web02</name>
  <memory unit='GiB'>8</memory>
  <currentMemory unit='GiB'>6</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web02-top.qcow2'/>
      <backingStore type='file'>
        <format type='raw'/>
        <source file='/var/lib/libvirt/images/web02-base.raw'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:6b:3c:59'/>
      <source bridge='br0'/>
      <vlan trunk='yes'>
        <tag id='42'/>
        <tag id='7' nativeMode='untagged'/>
      </vlan>
    </interface>
  </devices>
</domain>
`
	js := `{
  "schema": "vmledger/config/v2",
  "memory": "8GiB",
  "balloon": "6GiB",
  "cpu": {"count": 2},
  "nics": [{"mac": "52:54:00:6b:3c:59", "trunk": [{"id": 42}, {"id": 7, "native": "untagged"}]}],
  "disks": [{"target": "vda", "path": "/var/lib/libvirt/images/web02-top.qcow2", "format": "qcow2"}]
}
`
	yml := `schema: vmledger/config/v2
memory: 8GiB
balloon: 6GiB
cpu: {count: 2}
nics:
  - mac: 52:54:00:6B:3C:59
    trunk: [{id: 7, native: untagged}, {id: 42}]
disks:
  - {target: vda, path: /var/lib/libvirt/images/web02-top.qcow2, format: qcow2}
`
	digests := `{
  "schema": "vmledger/config/v2",
  "memory": "8GiB",
  "balloon": "6GiB",
  "cpu": {"count": 2},
  "nics": [{"mac": "52:54:00:6b:3c:59", "trunk": [{"id": 7, "native": "untagged"}, {"id": 42}]}],
  "disks": [{"target": "vda", "sha256": "` + measure.Digest(sha256Sum(fakeImages["/var/lib/libvirt/images/web02-top.qcow2"])).String() + `",
             "backing": [{"sha256": "` + measure.Digest(sha256Sum(fakeImages["/var/lib/libvirt/images/web02-base.raw"])).String() + `"}]}]
}
`
	return []fileVector{
		{Name: "web02.xml", Format: FormatLibvirt, Input: xml, Comment: "a ballooned domain (currentMemory below memory), a VLAN trunk with a native untagged VLAN, a qcow2 image backed by a raw one (the chain is read from the qcow2 header; the declared <backingStore> must match it); VM id web02"},
		{Name: "web02.json", Format: FormatJSON, Input: js, Comment: "the same VM as web02.xml"},
		{Name: "web02.yaml", Format: FormatYAML, Input: yml, Comment: "the same VM: trunk VLANs in another order, upper-case MAC"},
		{Name: "web02-digests.json", Format: FormatJSON, Input: digests, Comment: "the same VM as its owner orders it: the images by digest, the chain given as digests"},
	}
}

// TestFileVectorsV2: the v2 file vectors do not drift, and every input of
// the same VM measures to the same root under schema v2.
func TestFileVectorsV2(t *testing.T) {
	want := checkFileDrift(t, fileVectorsPathV2, buildFileVectorsFor(t, measure.V2, "web02", fileVectorInputsV2()))
	var f struct{ Cases []fileVector }
	if err := json.Unmarshal(want, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) != 4 {
		t.Fatalf("%d cases", len(f.Cases))
	}
	for _, v := range f.Cases[1:] {
		if v.Root != f.Cases[0].Root {
			t.Errorf("root(%s) = %v, want root(%s) = %v", v.Name, v.Root, f.Cases[0].Name, f.Cases[0].Root)
		}
	}
	if d := f.Cases[0].Config.Disks; len(d) != 1 || len(d[0].Backing) != 1 {
		t.Errorf("web02.xml: disks %+v, want one disk with a one-image backing chain", d)
	}
}
