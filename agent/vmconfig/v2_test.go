package vmconfig

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
)

// qcow2Chain makes base.raw (raw) and top.qcow2 (qcow2 backed by
// base.raw, relative name, format raw) with qemu-img, as an operator does.
func qcow2Chain(t *testing.T) (dir, base, top string) {
	t.Helper()
	qimg, err := exec.LookPath("qemu-img")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("qemu-img not installed (Debian's qemu-utils; .ci/run installs it)")
		}
		t.Skip("qemu-img not installed")
	}
	dir = t.TempDir()
	base = filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, []byte(strings.Repeat("the base image ", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	top = filepath.Join(dir, "top.qcow2")
	if out, err := exec.Command(qimg, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "base.raw", top).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	return dir, base, top
}

func fileDigest(t *testing.T, path string) measure.Digest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestV2MeasuredNotRefused: a ballooned domain, a VLAN trunk and a
// two-image qcow2 chain, which schema v1 refused, measure under v2 — the
// same from libvirt XML, JSON and YAML — and each of them is in the root.
func TestV2MeasuredNotRefused(t *testing.T) {
	dir, base, top := qcow2Chain(t)
	xml := `<domain type='kvm'>
  <name>web01</name>
  <memory unit='GiB'>4</memory>
  <currentMemory unit='GiB'>3</currentMemory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='` + top + `'/>
      <backingStore type='file'><format type='raw'/><source file='` + base + `'/><backingStore/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:00:00:01'/><source bridge='br0'/>
      <vlan trunk='yes'><tag id='20'/><tag id='10' nativeMode='untagged'/></vlan>
    </interface>
  </devices>
</domain>`
	json := `{"schema": "vmledger/config/v2", "memory": "4GiB", "balloon": "3GiB", "cpu": {"count": 2},
  "nics": [{"mac": "52:54:00:00:00:01", "trunk": [{"id": 20}, {"id": 10, "native": "untagged"}]}],
  "disks": [{"target": "vda", "path": "top.qcow2", "format": "qcow2"}]}`
	yaml := `schema: vmledger/config/v2
memory: 4GiB
balloon: 3GiB
cpu: {count: 2}
nics:
  - mac: "52:54:00:00:00:01"
    trunk: [{id: 10, native: untagged}, {id: 20}]
disks:
  - {target: vda, path: top.qcow2, format: qcow2}
`
	want := &measure.Config{
		VMID: "web01", MemoryBytes: 4 << 30, BalloonBytes: 3 << 30, CPUCount: 2,
		NICs: []measure.NIC{{MAC: measure.MAC{0x52, 0x54, 0, 0, 0, 1}, Trunk: []measure.VLANTag{{ID: 10, Native: measure.NativeUntagged}, {ID: 20}}}},
	}
	topD, baseD := fileDigest(t, top), fileDigest(t, base)
	want.Disks = []measure.Disk{{Target: "vda", SHA256: &topD, Backing: []measure.Digest{baseD}}}
	secret := measure.Secret{7}
	wantRoot, err := measure.V2.Root(want, secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []struct {
		name string
		f    Format
		data string
	}{{"web01.xml", FormatLibvirt, xml}, {"web01.json", FormatJSON, json}, {"web01.yaml", FormatYAML, yaml}} {
		t.Run(in.name, func(t *testing.T) {
			p := filepath.Join(dir, in.name)
			if err := os.WriteFile(p, []byte(in.data), 0o644); err != nil {
				t.Fatal(err)
			}
			c, ro, err := LoadFile(p, "", Options{})
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			mc, err := c.Resolve(t.Context(), ro)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			mc.VMID = "web01"
			m, err := measure.V2.Measure(mc, secret)
			if err != nil {
				t.Fatalf("Measure: %v", err)
			}
			if m.Root != wantRoot {
				t.Errorf("root %v, want %v", m.Root, wantRoot)
			}
			for name, value := range map[string]string{
				measure.NameBalloonBytes:   "00000000c0000000",
				measure.NICTrunkName(0):    "200a0014",
				measure.DiskBackingName(0): baseD.String(),
				measure.DiskSHA256Name(0):  topD.String(),
				measure.NICVLANName(0):     "0000000000000000",
				measure.NameVMID:           fmt.Sprintf("%x", "web01"),
			} {
				if l, _ := m.Leaf(name); measure.HexBytesString(l.Value) != value {
					t.Errorf("leaf %s = %x, want %s", name, []byte(l.Value), value)
				}
			}
			// Schema v1 still refuses what it cannot measure.
			mc.VMID = ""
			if _, err := measure.V1.Measure(mc, secret); !errors.Is(err, measure.ErrUnsupported) {
				t.Errorf("v1 Measure = %v, want ErrUnsupported", err)
			}
		})
	}
}

// TestBackingChainAttacks: each way of making QEMU read an image that is
// not the measured chain is refused or changes the root.
func TestBackingChainAttacks(t *testing.T) {
	dir, base, top := qcow2Chain(t)
	domain := func(backing string) string {
		return `<domain><memory>1024</memory><vcpu>1</vcpu><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='` +
			top + `'/>` + backing + `<target dev='vda'/></disk></devices></domain>`
	}
	resolve := func(xml string) (*measure.Config, error) {
		c, err := ParseLibvirt([]byte(xml), Options{})
		if err != nil {
			return nil, err
		}
		return c.Resolve(t.Context(), ResolveOptions{})
	}
	good, err := resolve(domain(""))
	if err != nil {
		t.Fatalf("control: %v", err)
	}
	if d := good.Disks[0]; len(d.Backing) != 1 || d.Backing[0] != fileDigest(t, base) {
		t.Fatalf("control: backing %v, want the base image's digest", d.Backing)
	}
	good.VMID = "vm"
	goodRoot, _ := measure.V2.Root(good, measure.Secret{1})

	t.Run("declared chain names another file", func(t *testing.T) {
		other := filepath.Join(dir, "other.raw")
		os.WriteFile(other, []byte("other"), 0o644)
		_, err := resolve(domain(`<backingStore type='file'><format type='raw'/><source file='` + other + `'/></backingStore>`))
		if fe, ok := errors.AsType[*FieldError](err); !ok || !errors.Is(err, ErrAmbiguous) || fe.Field != "/domain/devices/disk[1]/backingStore/source/@file" {
			t.Errorf("Resolve = %v, want ErrAmbiguous naming the declared source", err)
		}
	})
	t.Run("declared chain longer than the headers", func(t *testing.T) {
		_, err := resolve(domain(`<backingStore type='file'><source file='` + base + `'/><backingStore type='file'><source file='` + base + `'/></backingStore></backingStore>`))
		if !errors.Is(err, ErrAmbiguous) {
			t.Errorf("Resolve = %v, want ErrAmbiguous", err)
		}
	})
	t.Run("base replaced", func(t *testing.T) {
		saved, _ := os.ReadFile(base)
		defer os.WriteFile(base, saved, 0o644)
		os.WriteFile(base, []byte("an attacker's base image"), 0o644)
		mc, err := resolve(domain(""))
		if err != nil {
			t.Fatal(err)
		}
		mc.VMID = "vm"
		if r, _ := measure.V2.Root(mc, measure.Secret{1}); r == goodRoot {
			t.Error("another base image gives the same root")
		}
	})
	t.Run("backing format unset", func(t *testing.T) {
		qimg, _ := exec.LookPath("qemu-img")
		probe := filepath.Join(dir, "probe.qcow2")
		if out, err := exec.Command(qimg, "create", "-q", "-f", "qcow2", "-u", "-b", "base.raw", "-F", "raw", probe, "64K").CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		// Drop the backing format extension, as old images lack it.
		b, _ := os.ReadFile(probe)
		i := bytes.Index(b, []byte{0xe2, 0x79, 0x2a, 0xca})
		if i < 0 {
			t.Fatal("no backing format extension in the qemu-img image")
		}
		copy(b[i:i+4], []byte{0x6d, 0x6f, 0x6f, 0x31}) // an unknown extension QEMU ignores
		os.WriteFile(probe, b, 0o644)
		xml := strings.Replace(domain(""), top, probe, 1)
		if _, err := resolve(xml); !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "without its format") {
			t.Errorf("Resolve = %v, want ErrNotAllowed: the format would be probed", err)
		}
	})
	t.Run("raw disk is not followed", func(t *testing.T) {
		mc, err := resolve(strings.Replace(domain(""), "type='qcow2'", "type='raw'", 1))
		if err != nil || mc.Disks[0].Backing != nil {
			t.Errorf("Resolve(raw) = %v, backing %v; want a raw image measured alone", err, mc)
		}
	})
	t.Run("held chain", func(t *testing.T) {
		c, err := ParseLibvirt([]byte(domain("")), Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := &Held{}
		defer h.Close()
		if _, err := c.Resolve(t.Context(), ResolveOptions{Hold: h}); err != nil {
			t.Fatal(err)
		}
		im := h.Image(BackingRole("vda", 1))
		if im == nil || im.Path != base || im.Digest != fileDigest(t, base) {
			t.Fatalf("held backing image %+v, want %s", im, base)
		}
		if _, err := im.File.Write([]byte("x")); err == nil {
			t.Error("the held backing image is writable: only the top image is the guest's to write")
		}
	})
}
