package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostileDomain is a libvirt domain whose pieces the cases below replace:
// {{NS}} namespace declarations on <domain>, {{TOP}} elements before <os>,
// {{OS}} inside <os>, {{DISK}} the one disk, {{NIC}} inside the interface,
// {{EMU}} the emulator, {{DEV}} more devices, {{META}} inside vmledger's metadata element.
const hostileDomain = `<domain type='kvm'{{NS}}>
  <name>{{NAME}}</name>
  <metadata>
    <vmledger:config xmlns:vmledger="https://vmledger.dev/xmlns/libvirt/v1">{{META}}</vmledger:config>
  </metadata>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>2</vcpu>
{{TOP}}
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <kernel>{{KERNEL}}</kernel>
    <cmdline>console=ttyS0 root=/dev/vda1 ro</cmdline>
{{OS}}
  </os>
  <devices>
{{EMU}}
{{DISK}}
    <interface type='bridge'>
      <mac address='52:54:00:6b:3c:70'/>
      <source bridge='br0'/>
      <model type='virtio'/>
{{NIC}}
    </interface>
{{DEV}}
  </devices>
</domain>
`

const goodDisk = `    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{{IMAGE}}'/>
      <target dev='vda' bus='virtio'/>
    </disk>`

// TestHookRefusesHostileDomain runs `agent hook … prepare begin` as libvirt
// does with domains that measure to the configuration the owner ordered
// (the store's expected.json) but add, or swap in, something the
// measurement does not cover. Each must be refused (exit 3), naming the
// XPath of what is refused; the control must pass.
func TestHookRefusesHostileDomain(t *testing.T) {
	d := deploy(t)
	const id = "hostile01"
	image := writeFile(t, d.path("hostile01.img"), []byte("the image the owner ordered\n"), 0o644)
	kernel := writeFile(t, d.path("hostile01.vmlinuz"), []byte("the kernel the owner ordered\n"), 0o644)
	evil := writeFile(t, d.path("evil.img"), []byte("the attacker's image\n"), 0o644)
	sum := sha256.Sum256([]byte("the image the owner ordered\n"))
	imageDigest := hex.EncodeToString(sum[:])

	store := d.path("hostile-store")
	if err := os.MkdirAll(filepath.Join(store, id), 0o700); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	writeFile(t, filepath.Join(store, id, "secret"), secret, 0o600)
	writeFile(t, filepath.Join(store, id, "expected.json"), fmt.Appendf(nil, `{
  "schema": "vmledger/config/v1",
  "memory": "1GiB",
  "cpu": {"count": 2},
  "nics": [{"mac": "52:54:00:6b:3c:70"}],
  "disks": [{"target": "vda", "sha256": %q}],
  "boot": {"kernel": {"path": %q}, "cmdline": "console=ttyS0 root=/dev/vda1 ro"}
}
`, imageDigest, kernel), 0o644)
	cfg, err := json.Marshal(map[string]string{
		"log": d.logURL, "trust": d.trust, "coproc": d.coproc(), "store": store,
		"timeout": "1m",
	})
	if err != nil {
		t.Fatal(err)
	}
	agentConfig := writeFile(t, d.path("hostile-agent.json"), cfg, 0o644)

	type parts map[string]string
	domain := func(p parts) string {
		r := []string{"{{NAME}}", id, "{{KERNEL}}", kernel}
		defaults := parts{"{{DISK}}": goodDisk, "{{EMU}}": "    <emulator>/usr/bin/qemu-system-x86_64</emulator>"}
		for _, k := range []string{"{{NS}}", "{{TOP}}", "{{OS}}", "{{EMU}}", "{{DISK}}", "{{NIC}}", "{{DEV}}", "{{META}}"} {
			v, ok := p[k]
			if !ok {
				v = defaults[k]
			}
			r = append(r, k, v)
		}
		r = append(r, "{{IMAGE}}", image, "{{EVIL}}", evil, "{{DIGEST}}", imageDigest)
		rep := strings.NewReplacer(r...)
		return rep.Replace(rep.Replace(hostileDomain)) // parts may hold {{IMAGE}} etc.
	}
	metaDigest := `<vmledger:image target="vda" sha256="{{DIGEST}}"/>`
	const qemuNS = ` xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'`

	hook := func(t *testing.T, xml string) *result {
		t.Helper()
		return vmledgerStdin(t, xml, "agent", "hook", "--agent-config", agentConfig, id, "prepare", "begin", "-")
	}
	if r := hook(t, domain(parts{})); r.code != 0 || !strings.Contains(r.stderr, "attestation verified, libvirt may start the domain") {
		t.Fatalf("control: the domain as ordered is not approved\n%s", r)
	}

	for _, c := range []struct {
		name  string
		parts parts
		xpath string // named in the refusal
	}{
		{"qemu:commandline adds a drive and init=/bin/sh", parts{"{{NS}}": qemuNS, "{{TOP}}": `<qemu:commandline>
    <qemu:arg value='-drive'/><qemu:arg value='file={{EVIL}},if=virtio,format=raw'/>
    <qemu:arg value='-append'/><qemu:arg value='init=/bin/sh'/>
  </qemu:commandline>`}, "/domain/qemu:commandline"},
		{"qemu:override", parts{"{{NS}}": qemuNS, "{{TOP}}": `<qemu:override><qemu:device alias='virtio-disk0'><qemu:frontend>
    <qemu:property name='serial' type='string' value='x'/></qemu:frontend></qemu:device></qemu:override>`}, "/domain/qemu:override"},
		// Schema v2 measures an initrd: the attacker's changes the root,
		// which is not the ordered configuration's.
		{"attacker's initrd", parts{"{{OS}}": `<initrd>{{EVIL}}</initrd>`}, "expected configuration gives"},
		{"filesystem passes the host's /", parts{"{{DEV}}": `<filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs'/><source dir='/'/><target dir='hostroot'/></filesystem>`}, "/domain/devices/filesystem"},
		{"PCI hostdev", parts{"{{DEV}}": `<hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source></hostdev>`}, "/domain/devices/hostdev"},
		{"attacker's image under the metadata's digest", parts{"{{META}}": metaDigest, "{{DISK}}": `<disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{{EVIL}}'/><target dev='vda' bus='virtio'/></disk>`}, "/domain/devices/disk[1]/source/@file"},
		{"cdrom media", parts{"{{DISK}}": `<disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='{{IMAGE}}'/><target dev='vda' bus='sata'/><readonly/></disk>`}, "/domain/devices/disk[1]/@device"},
		{"network disk", parts{"{{META}}": metaDigest, "{{DISK}}": `<disk type='network' device='disk'>
      <driver name='qemu' type='raw'/><source protocol='nbd' name='evil'><host name='127.0.0.1' port='10809'/></source>
      <target dev='vda' bus='virtio'/></disk>`}, "/domain/devices/disk[1]/@type"},
		{"volume disk", parts{"{{META}}": metaDigest, "{{DISK}}": `<disk type='volume' device='disk'>
      <driver name='qemu' type='raw'/><source pool='default' volume='evil.img'/><target dev='vda' bus='virtio'/></disk>`}, "/domain/devices/disk[1]/@type"},
		{"block disk", parts{"{{META}}": metaDigest, "{{DISK}}": `<disk type='block' device='disk'>
      <driver name='qemu' type='raw'/><source dev='/dev/null'/><target dev='vda' bus='virtio'/></disk>`}, "/domain/devices/disk[1]/@type"},
		{"option ROM file", parts{"{{NIC}}": `<rom file='{{EVIL}}'/>`}, "/domain/devices/interface[1]/rom/@file"},
		{"sysinfo", parts{"{{TOP}}": `<sysinfo type='smbios'><oemStrings><entry>init=/bin/sh</entry></oemStrings></sysinfo>`}, "/domain/sysinfo"},
		{"launchSecurity", parts{"{{TOP}}": `<launchSecurity type='sev'><policy>0x0001</policy></launchSecurity>`}, "/domain/launchSecurity"},
		{"shared memory backing", parts{"{{TOP}}": `<memoryBacking><access mode='shared'/><source type='memfd'/></memoryBacking>`}, "/domain/memoryBacking/access"},
		{"attacker's emulator", parts{"{{EMU}}": `<emulator>{{EVIL}}</emulator>`}, "/domain/devices/emulator"},
		{"an element libvirt may add one day", parts{"{{DEV}}": `<quantum-entangler mode='on'/>`}, "/domain/devices/quantum-entangler"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := hook(t, domain(c.parts))
			const aborted = "attestation failed, launch aborted"
			if i := strings.Index(r.stderr, aborted); r.code != 3 || i < 0 || !strings.Contains(r.stderr[i:], c.xpath) {
				t.Errorf("agent hook %s prepare begin: exit %d; want exit 3, %q naming %s\n%s", id, r.code, aborted, c.xpath, r)
			}
		})
	}

	// libvirt opens the images itself, by path: the hook records them at
	// prepare and checks them at started (before the guest runs) and at
	// release.
	t.Run("images rechecked at started and release", func(t *testing.T) {
		call := func(op, sub string) *result {
			return vmledgerStdin(t, domain(parts{}), "agent", "hook", "--agent-config", agentConfig, id, op, sub, "-")
		}
		expect := func(what string, r *result, code int, says string) {
			t.Helper()
			if r.code != code || !strings.Contains(r.stderr, says) {
				t.Errorf("%s: exit %d; want exit %d, %q in stderr\n%s", what, r.code, code, says, r)
			}
		}
		prepare := func() { t.Helper(); expect("prepare", hook(t, domain(parts{})), 0, "attestation verified") }
		prepare()
		expect("started, nothing changed", call("started", "begin"), 0, "")
		later := time.Now().Add(time.Hour)
		if err := os.Chtimes(image, later, later); err != nil {
			t.Fatal(err)
		}
		expect("release after the guest wrote its disk", call("release", "end"), 0, "")
		expect("started with an image modified after prepare", call("started", "begin"), 3, "was modified")

		prepare()
		copyOf := writeFile(t, image+".copy", []byte("the image the owner ordered\n"), 0o644)
		if err := os.Rename(copyOf, image); err != nil {
			t.Fatal(err)
		}
		expect("started with the image replaced on its path", call("started", "begin"), 3, "is another file now")
		expect("release with the image replaced on its path", call("release", "end"), 3, "is another file now")

		if err := os.Chmod(image, 0o666); err != nil {
			t.Fatal(err)
		}
		expect("prepare with an image writable by others", hook(t, domain(parts{})), 3, "writable by others")
		os.Chmod(image, 0o644)
		prepare()
		expect("started after a new prepare", call("started", "begin"), 0, "")
	})
}
