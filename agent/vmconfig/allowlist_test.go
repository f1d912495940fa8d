package vmconfig

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
)

// skeleton builds a domain holding the elements of an allowlist path
// nested, the innermost with extra attributes and inner content; it returns
// the document and the XPath of the innermost element.
func skeleton(path, attrs, inner string) (doc, xpath string) {
	segs := strings.Split(path, "/")
	var open strings.Builder
	for i, s := range segs {
		name := s
		decl := ""
		if local, ok := strings.CutPrefix(s, "vmledger:"); ok {
			name = "vmledger:" + local
			if !strings.Contains(open.String(), "xmlns:vmledger") {
				decl = ` xmlns:vmledger="` + MetadataNS + `"`
			}
		}
		step := name
		if i > 0 && segs[i-1] == "devices" {
			step += "[1]"
		}
		xpath += "/" + step
		open.WriteString("<" + name + decl)
		if i == len(segs)-1 {
			open.WriteString(attrs)
		}
		open.WriteString(">")
	}
	var end strings.Builder
	for i := len(segs) - 1; i >= 0; i-- {
		end.WriteString("</" + segs[i] + ">")
	}
	return open.String() + inner + end.String(), xpath
}

// TestAllowlistRefusesUnknown walks the whole allowlist: under every element
// it allows, an element it does not know is refused, and so is an unknown
// attribute on it, each naming its XPath. So a libvirt element added one
// day cannot pass unseen anywhere in a domain.
func TestAllowlistRefusesUnknown(t *testing.T) {
	for path, rule := range parsedAllowlist {
		if rule.open {
			continue
		}
		t.Run(path, func(t *testing.T) {
			doc, xpath := skeleton(path, "", "<zz-unknown/>")
			want := xpath + "/zz-unknown"
			if strings.HasSuffix(path, "devices") {
				want += "[1]"
			}
			_, err := ParseLibvirt([]byte(doc), Options{})
			if fe, ok := errors.AsType[*FieldError](err); !ok || fe.Field != want || !errors.Is(err, ErrNotAllowed) {
				t.Errorf("unknown element under %s: ParseLibvirt = %v; want ErrNotAllowed naming %s\n%s", path, err, want, doc)
			}
			doc, xpath = skeleton(path, " zz-attr='1'", "")
			_, err = ParseLibvirt([]byte(doc), Options{})
			if fe, ok := errors.AsType[*FieldError](err); !ok || fe.Field != xpath+"/@zz-attr" || !errors.Is(err, ErrNotAllowed) {
				t.Errorf("unknown attribute on %s: ParseLibvirt = %v; want ErrNotAllowed naming %s/@zz-attr\n%s", path, err, xpath, doc)
			}
		})
	}
	if len(LibvirtAllowlist()) != len(libvirtAllowlist) {
		t.Errorf("LibvirtAllowlist lists %d entries, the table has %d", len(LibvirtAllowlist()), len(libvirtAllowlist))
	}
}

// TestAllowlistPaths: every allowlist path hangs below another one, so
// every entry can be reached.
func TestAllowlistPaths(t *testing.T) {
	for path := range libvirtAllowlist {
		if i := strings.LastIndex(path, "/"); i >= 0 {
			if _, ok := libvirtAllowlist[path[:i]]; !ok {
				t.Errorf("%s: its parent %s is not allowed, so it can never be reached", path, path[:i])
			}
		}
	}
}

const hostileBase = `<domain type='kvm'%s>
  <name>h</name>
  <metadata><vmledger:config xmlns:vmledger="https://vmledger.dev/xmlns/libvirt/v1">%s</vmledger:config></metadata>
  <memory unit='KiB'>1048576</memory>
  <vcpu>2</vcpu>
  %s
  <os><type arch='x86_64'>hvm</type><kernel>/boot/vmlinuz</kernel><cmdline>ro</cmdline>%s</os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    %s
    <interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br0'/>%s</interface>
    %s
  </devices>
</domain>`

const plainDisk = `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/img/vda.raw'/><target dev='vda' bus='virtio'/></disk>`

// TestHostileDomain: what could change what the guest runs, sees or
// reaches without changing the root is refused, naming its XPath. (The
// same cases run through `vmledger agent hook` in testing/e2e.)
func TestHostileDomain(t *testing.T) {
	type parts struct{ ns, meta, top, os, disk, nic, dev string }
	build := func(p parts) string {
		if p.disk == "" {
			p.disk = plainDisk
		}
		return fmt.Sprintf(hostileBase, p.ns, p.meta, p.top, p.os, p.disk, p.nic, p.dev)
	}
	const qemuNS = ` xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'`
	dg := strings.Repeat("ab", 32)
	meta := `<vmledger:image target="vda" sha256="` + dg + `"/>`
	if _, err := ParseLibvirt([]byte(build(parts{})), Options{}); err != nil {
		t.Fatalf("control: %v", err)
	}
	for _, tt := range []struct {
		name  string
		p     parts
		field string
	}{
		{"qemu:commandline", parts{ns: qemuNS, top: `<qemu:commandline><qemu:arg value='-append'/><qemu:arg value='init=/bin/sh'/></qemu:commandline>`}, "/domain/qemu:commandline"},
		{"qemu:override", parts{ns: qemuNS, top: `<qemu:override><qemu:device alias='x'/></qemu:override>`}, "/domain/qemu:override"},
		{"qemu namespace as default", parts{top: `<commandline xmlns='http://libvirt.org/schemas/domain/qemu/1.0'/>`}, "/domain/commandline"},
		{"network boot", parts{os: `<boot dev='network'/>`}, "/domain/os/boot/@dev"},
		{"acpi table", parts{os: `<acpi><table type='slic'>/tmp/evil</table></acpi>`}, "/domain/os/acpi"},
		{"filesystem", parts{dev: `<filesystem type='mount'><source dir='/'/><target dir='r'/></filesystem>`}, "/domain/devices/filesystem[1]"},
		{"hostdev", parts{dev: `<hostdev mode='subsystem' type='pci'/>`}, "/domain/devices/hostdev[1]"},
		{"cdrom media", parts{disk: `<disk type='file' device='cdrom'><source file='/img/vda.raw'/><target dev='vda'/></disk>`}, "/domain/devices/disk[1]/@device"},
		{"empty cdrom with a claimed digest", parts{meta: meta, disk: `<disk type='file' device='cdrom'><target dev='vda'/></disk>`}, "/domain/devices/disk[1]/@device"},
		{"network disk", parts{meta: meta, disk: `<disk type='network' device='disk'><source protocol='nbd' name='x'/><target dev='vda'/></disk>`}, "/domain/devices/disk[1]/@type"},
		{"volume disk", parts{meta: meta, disk: `<disk type='volume' device='disk'><source pool='p' volume='v'/><target dev='vda'/></disk>`}, "/domain/devices/disk[1]/@type"},
		{"block disk", parts{meta: meta, disk: `<disk type='block' device='disk'><source dev='/dev/sda'/><target dev='vda'/></disk>`}, "/domain/devices/disk[1]/@type"},
		{"lun passthrough", parts{disk: `<disk type='file' device='lun'><source file='/img/vda.raw'/><target dev='vda'/></disk>`}, "/domain/devices/disk[1]/@device"},
		{"vmdk", parts{disk: `<disk type='file' device='disk'><driver name='qemu' type='vmdk'/><source file='/img/vda.raw'/><target dev='vda'/></disk>`}, "/domain/devices/disk[1]/driver/@type"},
		{"rom file", parts{nic: `<rom file='/tmp/evil.rom'/>`}, "/domain/devices/interface[1]/rom/@file"},
		{"interface script", parts{nic: `<script path='/tmp/evil.sh'/>`}, "/domain/devices/interface[1]/script"},
		{"vhost-user interface", parts{dev: `<interface type='vhostuser'><mac address='52:54:00:00:00:02'/></interface>`}, "/domain/devices/interface[2]/@type"},
		{"sysinfo", parts{top: `<sysinfo type='smbios'><oemStrings><entry>x</entry></oemStrings></sysinfo>`}, "/domain/sysinfo"},
		{"launchSecurity", parts{top: `<launchSecurity type='sev'><policy>0x0001</policy></launchSecurity>`}, "/domain/launchSecurity"},
		{"shared memory", parts{top: `<memoryBacking><access mode='shared'/></memoryBacking>`}, "/domain/memoryBacking/access/@mode"},
		{"memfd memory", parts{top: `<memoryBacking><source type='memfd'/></memoryBacking>`}, "/domain/memoryBacking/source"},
		{"numa shared cell", parts{top: `<cpu><numa><cell id='0' cpus='0-1' memory='1' memAccess='shared'/></numa></cpu>`}, "/domain/cpu/numa"},
		{"rng reads a host file", parts{dev: `<rng model='virtio'><backend model='random'>/etc/shadow</backend></rng>`}, "/domain/devices/rng[1]/backend"},
		{"serial to a host file", parts{dev: `<serial type='file'><source path='/etc/passwd'/></serial>`}, "/domain/devices/serial[1]/@type"},
		{"passthrough TPM", parts{dev: `<tpm model='tpm-crb'><backend type='passthrough'/></tpm>`}, "/domain/devices/tpm[1]/backend/@type"},
		{"emulator", parts{dev: `<emulator>/tmp/evil-qemu</emulator>`}, "/domain/devices/emulator[2]"},
		{"DTD", parts{}, ""},
		{"duplicate attribute", parts{disk: `<disk type='file' device='disk'><source file='/img/vda.raw' file='/tmp/evil'/><target dev='vda'/></disk>`}, "/domain/devices/disk[1]/source/@file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := build(tt.p)
			if tt.name == "DTD" {
				doc = `<!DOCTYPE domain [<!ENTITY x "y">]>` + doc
			}
			_, err := ParseLibvirt([]byte(doc), Options{})
			if tt.field == "" {
				if err == nil {
					t.Fatalf("ParseLibvirt accepted %s", doc)
				}
				return
			}
			fe, ok := errors.AsType[*FieldError](err)
			if !ok || fe.Field != tt.field {
				t.Fatalf("ParseLibvirt = %v; want a refusal naming %s", err, tt.field)
			}
			if !errors.Is(err, ErrNotAllowed) && !errors.Is(err, ErrAmbiguous) {
				t.Errorf("ParseLibvirt = %v; want ErrNotAllowed", err)
			}
		})
	}
	// The attacker's emulator where the host's was: refused as not allowed.
	doc := strings.Replace(build(parts{}), "/usr/bin/qemu-system-x86_64", "/tmp/evil-qemu", 1)
	if _, err := ParseLibvirt([]byte(doc), Options{}); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("emulator /tmp/evil-qemu: ParseLibvirt = %v, want ErrNotAllowed", err)
	}
	if _, err := ParseLibvirt([]byte(doc), Options{Emulators: []string{"/tmp/evil-qemu"}}); err != nil {
		t.Errorf("emulator the operator allowed: %v", err)
	}
	// nvram (the variable store and its template) is accepted, unmeasured.
	doc = strings.Replace(build(parts{}), "<cmdline>ro</cmdline>", "<cmdline>ro</cmdline><nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/h_VARS.fd</nvram>", 1)
	if _, err := ParseLibvirt([]byte(doc), Options{}); err != nil {
		t.Errorf("nvram: %v", err)
	}
}

// TestClaimedDigest: a digest in the metadata is checked against a file the
// agent can read, and stands in only for one it may not read.
func TestClaimedDigest(t *testing.T) {
	dir := t.TempDir()
	good := []byte("the ordered image\n")
	sum := sha256.Sum256(good)
	img := filepath.Join(dir, "vda.raw")
	if err := os.WriteFile(img, good, 0o644); err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(dir, "evil.raw")
	if err := os.WriteFile(evil, []byte("the attacker's image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	domain := func(path, format string) []byte {
		return fmt.Appendf(nil, hostileBase, "", `<vmledger:image target="vda" sha256="`+hex.EncodeToString(sum[:])+`"/>`, "", "",
			`<disk type='file' device='disk'><driver name='qemu' type='`+format+`'/><source file='`+path+`'/><target dev='vda'/></disk>`, "", "")
	}
	deny := func(p string) (io.ReadCloser, int64, error) {
		return nil, 0, &os.PathError{Op: "open", Path: p, Err: os.ErrPermission}
	}
	for _, tt := range []struct {
		name, path, format string
		open               func(string) (io.ReadCloser, int64, error)
		want               error // nil: resolves to the claimed digest
	}{
		{"readable, matching", img, "raw", nil, nil},
		{"readable, attacker's", evil, "raw", nil, ErrDigestMismatch},
		{"unreadable raw", evil, "raw", deny, nil},
		{"unreadable qcow2", evil, "qcow2", deny, ErrNotAllowed},
		{"missing", filepath.Join(dir, "nope"), "raw", nil, os.ErrNotExist},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseLibvirt(domain(tt.path, tt.format), Options{})
			if err != nil {
				t.Fatal(err)
			}
			open := tt.open
			if open == nil {
				open = openFile
			}
			mc, err := c.Resolve(t.Context(), ResolveOptions{Open: withKernel(open)})
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Resolve = %v, want %v", err, tt.want)
				}
				if tt.want != os.ErrNotExist {
					if fe, ok := errors.AsType[*FieldError](err); !ok || fe.Field != "/domain/devices/disk[1]/source/@file" {
						t.Errorf("Resolve = %v, want it to name /domain/devices/disk[1]/source/@file", err)
					}
				}
				return
			}
			if err != nil || *mc.Disks[0].SHA256 != measure.Digest(sum) {
				t.Fatalf("Resolve = %v, disk digest %v; want %x", err, mc, sum)
			}
		})
	}
}

// withKernel serves the kernel the test domains name, and opens the rest
// with open.
func withKernel(open func(string) (io.ReadCloser, int64, error)) func(string) (io.ReadCloser, int64, error) {
	return func(p string) (io.ReadCloser, int64, error) {
		if p == "/boot/vmlinuz" {
			return io.NopCloser(strings.NewReader("kernel")), 6, nil
		}
		return open(p)
	}
}

// qcow2Header is a qcow2 v3 header (104 bytes) with the given backing file
// offset and incompatible features.
func qcow2Header(backingOffset, incompatible uint64) []byte {
	h := make([]byte, 104)
	copy(h, "QFI\xfb")
	binary.BigEndian.PutUint32(h[4:], 3)
	binary.BigEndian.PutUint64(h[8:], backingOffset)
	binary.BigEndian.PutUint64(h[72:], incompatible)
	binary.BigEndian.PutUint32(h[100:], 104)
	return h
}

// TestQcow2OneFile: a qcow2 disk that makes QEMU open another file (a
// backing file, an external data file) is refused; a self-contained one,
// or a raw disk with any content, measures.
func TestQcow2OneFile(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name    string
		content []byte
		format  string
		ok      bool
	}{
		{"self-contained qcow2", qcow2Header(0, 0), "qcow2", true},
		{"backing file", append(qcow2Header(104, 0), "/tmp/evil-base.img"...), "qcow2", false},
		{"external data file", qcow2Header(0, 1<<2), "qcow2", false},
		{"not qcow2", []byte("raw bytes"), "qcow2", false},
		{"qcow2 bytes as raw", append(qcow2Header(104, 0), "/tmp/base"...), "raw", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(p, tt.content, 0o644); err != nil {
				t.Fatal(err)
			}
			doc := fmt.Sprintf(hostileBase, "", "", "", "",
				`<disk type='file' device='disk'><driver name='qemu' type='`+tt.format+`'/><source file='`+p+`'/><target dev='vda'/></disk>`, "", "")
			c, err := ParseLibvirt([]byte(doc), Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Resolve(t.Context(), ResolveOptions{Open: withKernel(openFile)})
			if tt.ok != (err == nil) || (!tt.ok && !errors.Is(err, ErrNotAllowed)) {
				t.Fatalf("Resolve = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
