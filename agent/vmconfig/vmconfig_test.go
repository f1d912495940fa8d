package vmconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
)

// fakeImages stands in for the image files the fixtures name.
var fakeImages = map[string]string{
	"/var/lib/libvirt/images/web01-root.qcow2":     "root filesystem image of web01",
	"/var/lib/libvirt/images/web01-root.raw":       "root filesystem image of web01",
	"/dev/vg0/web01-data":                          "data volume of web01",
	"/var/lib/libvirt/images/web01-data.raw":       "data volume of web01",
	"/usr/share/OVMF/OVMF_CODE_4M.fd":              "OVMF code",
	"/var/lib/libvirt/boot/vmlinuz-6.1.0-28-amd64": "kernel 6.1.0-28",
}

// unreadableImage is an image of the fixtures the agent may not read: its
// digest comes from the domain's metadata.
const unreadableImage = "/srv/customer-4711/web01-logs.raw"

func fakeOpen(t *testing.T, opened map[string]int) func(string) (io.ReadCloser, int64, error) {
	return func(p string) (io.ReadCloser, int64, error) {
		if p == unreadableImage {
			return nil, 0, fmt.Errorf("open %s: %w", p, os.ErrPermission)
		}
		s, ok := fakeImages[p]
		if !ok {
			return nil, 0, fmt.Errorf("open %s: %w", p, os.ErrNotExist)
		}
		if opened != nil {
			opened[p]++
		}
		return io.NopCloser(strings.NewReader(s)), int64(len(s)), nil
	}
}

var testSecret = measure.Secret{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}

func measureFile(t *testing.T, name string) *measure.Measurement {
	t.Helper()
	c, _, err := LoadFile(filepath.Join("testdata", name), "", Options{})
	if err != nil {
		t.Fatalf("LoadFile(%s): %v", name, err)
	}
	opened := map[string]int{}
	mc, err := c.Resolve(t.Context(), ResolveOptions{Open: fakeOpen(t, opened)})
	if err != nil {
		t.Fatalf("Resolve(%s): %v", name, err)
	}
	for p, n := range opened {
		if n != 1 {
			t.Errorf("Resolve(%s) opened %s %d times, want 1", name, p, n)
		}
	}
	m, err := measure.Measure(mc, testSecret)
	if err != nil {
		t.Fatalf("Measure(%s): %v", name, err)
	}
	return m
}

// TestFormatsAgree: the libvirt fixture, its JSON and its YAML equivalent
// measure to the same root.
func TestFormatsAgree(t *testing.T) {
	want := measureFile(t, "web01.json")
	for _, name := range []string{"web01.xml", "web01.yaml"} {
		t.Run(name, func(t *testing.T) {
			got := measureFile(t, name)
			if got.Root != want.Root {
				for i := range got.Leaves {
					if g, w := got.Leaves[i], want.Leaves[i]; g.Hash != w.Hash {
						t.Errorf("leaf %s = %s (%v), want %s (%v)", g.Name, g.Display, g.Type, w.Display, w.Type)
					}
				}
				t.Fatalf("root(%s) = %v, want %v (root of web01.json)", name, got.Root, want.Root)
			}
		})
	}
	// Spot-check what the fixture means, so that agreement is not agreement on nothing.
	checks := map[string]string{
		"memory.bytes":       "8589934592",
		"cpu.count":          "4",
		"cpu.affinity":       `"4-7,12"`,
		"net.0.mac":          "52:54:00:6b:3c:58",
		"net.0.vlan":         "42",
		"net.1.mac":          "52:54:00:a1:0f:02",
		"net.1.vlan":         "0",
		"net.2.mac":          "-",
		"disk.2.sha256":      "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00",
		"disk.3.target":      `"sda"`,
		"disk.3.sha256":      "-",
		"disk.4.target":      "-",
		"kernel.cmdline":     `"console=ttyS0,115200n8 root=/dev/vda1 ro quiet"`,
		"boot.loader.sha256": measure.Digest(sha256Sum("OVMF code")).String(),
	}
	for name, disp := range checks {
		l, ok := want.Leaf(name)
		if !ok || l.Display != disp {
			t.Errorf("web01.json leaf %s = %q, want %q", name, l.Display, disp)
		}
	}
	if len(want.Packages) != 3 {
		t.Errorf("web01.json has %d packages, want 3", len(want.Packages))
	}
}

func TestUnits(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
	}{
		{"1b", 1}, {"7 bytes", 7}, {"3 byte", 3},
		{"1KB", 1000}, {"1kb", 1000}, {"1k", 1024}, {"1K", 1024}, {"1KiB", 1024}, {"2kib", 2048},
		{"1MB", 1000000}, {"1M", 1 << 20}, {"1MiB", 1 << 20},
		{"8GB", 8000000000}, {"8G", 8 << 30}, {"8GiB", 8 << 30}, {" 8 GiB ", 8 << 30},
		{"1TB", 1000000000000}, {"1T", 1 << 40}, {"1TiB", 1 << 40},
		{"1PiB", 1 << 50}, {"1EB", 1000000000000000000}, {"15EiB", 15 << 60},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "8", "8 ", "GiB", "8XB", "8GiBs", "-1GiB", "1.5GiB", "16EiB", "99999999999999999999b", "8 Gib b"} {
		t.Run("bad/"+bad, func(t *testing.T) {
			if got, err := ParseSize(bad); err == nil {
				t.Errorf("ParseSize(%q) = %d, want error", bad, got)
			}
		})
	}
}

// TestLibvirtUnits: <memory> without a unit is KiB; every unit gives the
// same root as the JSON it is equivalent to.
func TestLibvirtUnits(t *testing.T) {
	tests := []struct{ mem, want string }{
		{`<memory>1048576</memory>`, "1073741824"},
		{`<memory unit='KiB'>1048576</memory>`, "1073741824"},
		{`<memory unit='k'>1048576</memory>`, "1073741824"},
		{`<memory unit='KB'>1000000</memory>`, "1000000000"},
		{`<memory unit='M'>1024</memory>`, "1073741824"},
		{`<memory unit='MB'>1000</memory>`, "1000000000"},
		{`<memory unit='GiB'>1</memory>`, "1073741824"},
		{`<memory unit='G'>1</memory>`, "1073741824"},
		{`<memory unit='GB'>1</memory>`, "1000000000"},
		{`<memory unit='b'>1073741824</memory>`, "1073741824"},
		{`<memory unit='bytes'>4096</memory>`, "4096"},
		{`<memory unit='TiB'>1</memory>`, "1099511627776"},
		{`<memory unit='T'>1</memory>`, "1099511627776"},
		{`<memory unit='TB'>2</memory>`, "2000000000000"},
		{`<memory unit='MiB'>1024</memory><currentMemory unit='GiB'>1</currentMemory>`, "1073741824"},
	}
	for _, tt := range tests {
		t.Run(tt.mem, func(t *testing.T) {
			c, err := ParseLibvirt([]byte(`<domain>`+tt.mem+`<vcpu>1</vcpu></domain>`), Options{})
			if err != nil {
				t.Fatalf("ParseLibvirt: %v", err)
			}
			if got := fmt.Sprint(c.MemoryBytes); got != tt.want {
				t.Errorf("memory of %s = %s, want %s", tt.mem, got, tt.want)
			}
		})
	}
}

func TestCPUAffinity(t *testing.T) {
	tests := []struct{ vcpu, cputune, want string }{
		{`<vcpu>2</vcpu>`, ``, ""},
		{`<vcpu cpuset='3,0-2'>2</vcpu>`, ``, "0-3"},
		{`<vcpu cpuset='0-7,^3,^5'>2</vcpu>`, ``, "0-2,4,6-7"},
		{`<vcpu>2</vcpu>`, `<vcpupin vcpu='0' cpuset='8'/><vcpupin vcpu='1' cpuset='9'/>`, "8-9"},
		{`<vcpu>2</vcpu>`, `<vcpupin vcpu='0' cpuset='8'/>`, ""}, // vCPU 1 unrestricted
		{`<vcpu cpuset='1'>2</vcpu>`, `<vcpupin vcpu='0' cpuset='8'/>`, "1,8"},
	}
	for _, tt := range tests {
		t.Run(tt.vcpu+tt.cputune, func(t *testing.T) {
			c, err := ParseLibvirt([]byte(`<domain><memory>1</memory>`+tt.vcpu+`<cputune>`+tt.cputune+`</cputune></domain>`), Options{})
			if err != nil {
				t.Fatalf("ParseLibvirt: %v", err)
			}
			if c.CPUAffinity != tt.want {
				t.Errorf("affinity = %q, want %q", c.CPUAffinity, tt.want)
			}
		})
	}
}

// TestRefused: a configuration that is missing something, malformed or
// ambiguous is refused with a message that names the field in the input's
// own terms (a *FieldError whose Field is that name, and whose message
// says "field NAME"), with the right sentinel. The few refusals that are
// about the whole document, not a field, must say what is wrong instead
// (says). Any case may also require more text in the message (says).
func TestRefused(t *testing.T) {
	const (
		head = `{"schema":"vmledger/config/v1",`
		ok   = `"memory":"1GiB","cpu":{"count":1}`
		dg   = `"0000000000000000000000000000000000000000000000000000000000000000"`
		mac1 = `{"mac":"52:54:00:00:00:01"}`
		yhd  = "schema: vmledger/config/v1\nmemory: 1GiB\ncpu: {count: 1}\n"
	)
	dom := func(s string) string { return `<domain><memory>1024</memory><vcpu>1</vcpu>` + s + `</domain>` }
	disk := func(target, file string) string {
		return `<disk type='file' device='disk'><source file='` + file + `'/><target dev='` + target + `'/></disk>`
	}
	tests := []struct {
		name, format, in, field string
		sentinel                error
		says                    string
	}{
		{"no schema", "json", `{` + ok + `}`, "schema", ErrMissing, ""},
		{"other schema", "json", `{"schema":"vmledger/config/v3",` + ok + `}`, "schema", ErrUnsupported, ""},
		{"v2 field in a v1 file", "json", `{"schema":"vmledger/config/v1","balloon":"512MiB",` + ok + `}`, "balloon", ErrUnsupported, ""},
		{"no memory", "json", head + `"cpu":{"count":1}}`, "memory", ErrMissing, ""},
		{"bare number memory", "json", head + `"memory":4096,"cpu":{"count":1}}`, "memory", ErrInvalid, `size 4096 has no unit: write e.g. "4096GiB"`},
		{"memory object", "json", head + `"memory":{"GiB":1},"cpu":{"count":1}}`, "memory", ErrInvalid, "got an object"},
		{"no unit", "json", head + `"memory":"8","cpu":{"count":1}}`, "memory", ErrInvalid, ""},
		{"overflow", "json", head + `"memory":"99999999999 EiB","cpu":{"count":1}}`, "memory", ErrInvalid, "99999999999 EiB overflows"},
		{"no cpu", "json", head + `"memory":"1GiB"}`, "cpu.count", ErrMissing, ""},
		{"zero cpu", "json", head + `"memory":"1GiB","cpu":{"count":0}}`, "cpu.count", ErrInvalid, ""},
		{"negative cpu", "json", head + `"memory":"1GiB","cpu":{"count":-1}}`, "cpu.count", ErrInvalid, ""},
		{"fractional cpu", "json", head + `"memory":"1GiB","cpu":{"count":1.5}}`, "cpu.count", ErrInvalid, ""},
		{"bad cpuset", "json", head + ok[:len(ok)-1] + `,"affinity":"3-1"}}`, "cpu.affinity", ErrInvalid, ""},
		{"duplicate key", "json", head + ok + `,"memory":"2GiB"}`, "memory", ErrAmbiguous, ""},
		{"unknown field", "json", head + ok + `,"memroy":"2GiB"}`, "memroy", ErrUnsupported, "unknown field"},
		{"field in another case", "json", head + `"Memory":"1GiB","cpu":{"count":1}}`, "Memory", ErrUnsupported, "case-sensitive"},
		{"unknown nested field", "json", head + ok + `,"disks":[{"target":"vda","path":"/x"},{"target":"vdb","path":"/y","size":1}]}`, "disks[1].size", ErrUnsupported, ""},
		{"no mac", "json", head + ok + `,"nics":[{"vlan":3}]}`, "nics[0].mac", ErrMissing, ""},
		{"bad mac", "json", head + ok + `,"nics":[{"mac":"52:54:00:00:00"}]}`, "nics[0].mac", ErrInvalid, ""},
		{"vlan 4095", "json", head + ok + `,"nics":[{"mac":"52:54:00:00:00:01","vlan":4095}]}`, "nics[0].vlan", ErrInvalid, ""},
		{"second vlan 4095", "json", head + ok + `,"nics":[` + mac1 + `,{"mac":"52:54:00:00:00:02","vlan":4095}]}`, "nics[1].vlan", ErrInvalid, ""},
		{"negative vlan", "json", head + ok + `,"nics":[` + mac1 + `,{"mac":"52:54:00:00:00:02","vlan":-1}]}`, "nics[1].vlan", ErrInvalid, "got the number -1"},
		{"vlan string", "json", head + ok + `,"nics":[` + mac1 + `,{"mac":"52:54:00:00:00:02","vlan":"x"}]}`, "nics[1].vlan", ErrInvalid, `got the string "x"`},
		{"nics not a list", "json", head + ok + `,"nics":` + mac1 + `}`, "nics", ErrInvalid, "want a list"},
		{"no target", "json", head + ok + `,"disks":[{"path":"/x"}]}`, "disks[0].target", ErrMissing, ""},
		{"no image", "json", head + ok + `,"disks":[{"target":"vda"}]}`, "disks[0]", ErrMissing, ""},
		{"path and sha", "json", head + ok + `,"disks":[{"target":"vda","path":"/x","sha256":` + dg + `}]}`, "disks[0]", ErrAmbiguous, ""},
		{"empty and path", "json", head + ok + `,"disks":[{"target":"vda","path":"/x","empty":true}]}`, "disks[0]", ErrAmbiguous, ""},
		{"empty not a bool", "json", head + ok + `,"disks":[{"target":"sda","empty":"yes"}]}`, "disks[0].empty", ErrInvalid, ""},
		{"same target", "json", head + ok + `,"disks":[{"target":"vda","path":"/x"},{"target":"vda","path":"/y"}]}`, "disks[1].target", ErrAmbiguous, ""},
		{"short sha", "json", head + ok + `,"boot":{"kernel":{"sha256":"00"}}}`, "boot.kernel.sha256", ErrInvalid, ""},
		{"cmdline with NUL", "json", head + ok + `,"boot":{"cmdline":"a\u0000b"}}`, "boot.cmdline", ErrInvalid, "NUL"},
		{"cmdline number", "json", head + ok + `,"boot":{"cmdline":5}}`, "boot.cmdline", ErrInvalid, "want a string"},
		{"package twice", "json", head + ok + `,"packages":[{"name":"a","version":"1","manifest_sha256":` + dg + `},{"name":"a","version":"2","manifest_sha256":` + dg + `}]}`, "packages[1].name", ErrAmbiguous, ""},
		{"package no version", "json", head + ok + `,"packages":[{"name":"a","manifest_sha256":` + dg + `}]}`, "packages[0].version", ErrMissing, ""},
		{"package version with NUL", "json", head + ok + `,"packages":[{"name":"a","version":"1","manifest_sha256":` + dg + `},{"name":"b","version":"\u0000","manifest_sha256":` + dg + `}]}`, "packages[1]", ErrInvalid, "NUL"},
		{"json array", "json", `[1]`, "", nil, "the configuration is a list, want an object"},
		{"json trailing data", "json", head + ok + `} {}`, "", nil, "trailing data"},
		{"yaml bare memory", "yaml", "schema: vmledger/config/v1\nmemory: 8192\ncpu: {count: 1}\n", "memory", ErrInvalid, "line 2: size 8192 has no unit"},
		{"yaml memory list", "yaml", "schema: vmledger/config/v1\nmemory: [1]\ncpu: {count: 1}\n", "memory", ErrInvalid, "got a list"},
		{"yaml two docs", "yaml", yhd + "---\nmemory: 2GiB\n", "", ErrAmbiguous, "a second document starts at line 4"},
		{"yaml duplicate", "yaml", "schema: vmledger/config/v1\nmemory: 1GiB\nmemory: 2GiB\ncpu: {count: 1}\n", "memory", ErrAmbiguous, "line 3: key appears twice (first at line 2)"},
		{"yaml unknown", "yaml", yhd + "memroy: 2GiB\n", "memroy", ErrUnsupported, "unknown field"},
		{"yaml unknown nested", "yaml", "schema: vmledger/config/v1\nmemory: 1GiB\ncpu: {count: 1, cores: 2}\n", "cpu.cores", ErrUnsupported, "unknown field"},
		{"yaml negative cpu", "yaml", "schema: vmledger/config/v1\nmemory: 1GiB\ncpu: {count: -1}\n", "cpu.count", ErrInvalid, "got the number -1"},
		{"yaml vlan string", "yaml", yhd + "nics:\n- mac: 52:54:00:00:00:01\n- mac: 52:54:00:00:00:02\n  vlan: x\n", "nics[1].vlan", ErrInvalid, `line 7: want a non-negative whole number, got the string "x"`},
		{"yaml vlan 4095", "yaml", yhd + "nics:\n- mac: 52:54:00:00:00:01\n- {mac: 52:54:00:00:00:02, vlan: 4095}\n", "nics[1].vlan", ErrInvalid, ""},
		{"yaml alias", "yaml", yhd + "nics:\n- &n {mac: 52:54:00:00:00:01}\n- *n\n", "nics[0]", ErrUnsupported, "anchors and aliases"},
		{"yaml merge", "yaml", yhd + "disks:\n- {target: vda, sha256: " + dg + "}\n- {<<: {sha256: " + dg + "}, target: vdb}\n", "disks[1].<<", ErrUnsupported, "merge keys"},
		{"yaml same target", "yaml", yhd + "disks:\n- {target: vda, path: /x}\n- {target: vda, path: /y}\n", "disks[1].target", ErrAmbiguous, ""},
		{"yaml list", "yaml", "- a\n", "", nil, "the configuration is a list, want a mapping"},
		{"xml no memory", "libvirt", `<domain><vcpu>1</vcpu></domain>`, "/domain/memory", ErrMissing, ""},
		{"xml two memory", "libvirt", `<domain><memory>1</memory><memory>2</memory><vcpu>1</vcpu></domain>`, "/domain/memory", ErrAmbiguous, ""},
		{"xml balloon above memory", "libvirt", `<domain><memory>2048</memory><currentMemory>4096</currentMemory><vcpu>1</vcpu></domain>`, "/domain/currentMemory", ErrInvalid, ""},
		{"xml hotplug", "libvirt", dom(`<maxMemory slots='16'>4194304</maxMemory>`), "/domain/maxMemory", ErrUnsupported, ""},
		{"xml bad unit", "libvirt", `<domain><memory unit='GiBi'>1</memory><vcpu>1</vcpu></domain>`, "/domain/memory", ErrInvalid, ""},
		{"xml no vcpu", "libvirt", `<domain><memory>1</memory></domain>`, "/domain/vcpu", ErrMissing, ""},
		{"xml numad", "libvirt", `<domain><memory>1</memory><vcpu placement='auto'>1</vcpu></domain>`, "/domain/vcpu/@placement", ErrUnsupported, ""},
		{"xml pin twice", "libvirt", dom(`<cputune><vcpupin vcpu='0' cpuset='1'/><vcpupin vcpu='0' cpuset='2'/></cputune>`), "/domain/cputune/vcpupin[2]", ErrAmbiguous, ""},
		{"xml no mac", "libvirt", dom(`<devices><interface type='network'/></devices>`), "/domain/devices/interface[1]/mac/@address", ErrMissing, ""},
		{"xml trunk two natives", "libvirt", dom(`<devices><interface type='bridge'><mac address='52:54:00:00:00:01'/><vlan trunk='yes'><tag id='1' nativeMode='tagged'/><tag id='2' nativeMode='untagged'/></vlan></interface></devices>`), "/domain/devices/interface[1]/vlan/tag[2]", ErrAmbiguous, ""},
		{"xml trunk repeated vlan", "libvirt", dom(`<devices><interface type='bridge'><mac address='52:54:00:00:00:01'/><vlan><tag id='7'/><tag id='7'/></vlan></interface></devices>`), "/domain/devices/interface[1]/vlan/tag[2]", ErrAmbiguous, ""},
		{"xml no target", "libvirt", dom(`<devices><disk type='file' device='disk'><source file='/x'/></disk></devices>`), "/domain/devices/disk[1]/target/@dev", ErrMissing, ""},
		{"xml same target", "libvirt", dom(`<devices>` + disk("vda", "/x") + disk("vda", "/y") + `</devices>`), "/domain/devices/disk[2]/target/@dev", ErrAmbiguous, ""},
		{"xml long target", "libvirt", dom(`<devices>` + disk("vda", "/x") + disk(strings.Repeat("v", 256), "/y") + `</devices>`), "/domain/devices/disk[2]/target/@dev", ErrInvalid, "at most 255"},
		{"xml long package version", "libvirt", dom(`<metadata><v:config xmlns:v="https://vmledger.dev/xmlns/libvirt/v1"><v:package name="a" version="1" manifest-sha256=` + dg + `/><v:package name="b" version="` + strings.Repeat("1", 0x10000) + `" manifest-sha256=` + dg + `/></v:config></metadata>`), "/domain/metadata/vmledger:config/package[2]", ErrInvalid, "at most 65535"},
		{"xml no source", "libvirt", dom(`<devices><disk type='file' device='disk'><target dev='vda'/></disk></devices>`), "/domain/devices/disk[1]/source", ErrMissing, ""},
		{"xml network disk", "libvirt", dom(`<devices><disk type='network' device='disk'><source protocol='rbd' name='p/x'/><target dev='vda'/></disk></devices>`), "/domain/devices/disk[1]/@type", ErrNotAllowed, "network, volume, block"},
		{"xml backing chain of a raw disk", "libvirt", dom(`<devices><disk type='file' device='disk'><source file='/top'/><backingStore type='file'><source file='/base'/></backingStore><target dev='vda'/></disk></devices>`), "/domain/devices/disk[1]/backingStore", ErrInvalid, ""},
		{"xml efi auto", "libvirt", dom(`<os firmware='efi'><type>hvm</type></os>`), "/domain/os/loader", ErrMissing, ""},
		{"xml two cmdlines", "libvirt", dom(`<os><cmdline>a</cmdline><cmdline>b</cmdline></os>`), "/domain/os/cmdline", ErrAmbiguous, ""},
		{"xml stray image digest", "libvirt", dom(`<metadata><v:config xmlns:v="https://vmledger.dev/xmlns/libvirt/v1"><v:image target="vdz" sha256=` + dg + `/></v:config></metadata>`), "/domain/metadata/vmledger:config/image", ErrInvalid, ""},
		{"xml not a domain", "libvirt", `<network><name>x</name></network>`, "", nil, "<domain>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in), Format(tt.format), Options{})
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, want an error", tt.in, c)
			}
			msg := err.Error()
			if tt.field != "" {
				fe, ok := errors.AsType[*FieldError](err)
				if !ok || fe.Field != tt.field || !strings.Contains(msg, "field "+tt.field+": ") {
					t.Errorf("Parse(%s) error %q does not name field %q", tt.in, msg, tt.field)
				}
			} else if tt.says == "" {
				t.Fatalf("case %q names no field and no text to expect", tt.name)
			}
			if !strings.Contains(msg, tt.says) {
				t.Errorf("Parse(%s) error %q does not say %q", tt.in, msg, tt.says)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("Parse(%s) error %q is not %q", tt.in, msg, tt.sentinel)
			}
			// No Go names: the user wrote a file, not a Go value.
			for _, goName := range []string{"vmconfig.", "uint64", "Go value", "not found in type"} {
				if strings.Contains(msg, goName) {
					t.Errorf("Parse(%s) error %q speaks Go (%q)", tt.in, msg, goName)
				}
			}
			if strings.Contains(msg, "  ") {
				t.Errorf("Parse(%s) error %q has a doubled space", tt.in, msg)
			}
		})
	}
}

// TestPackagesSideFile: a libvirt domain's packages come from a side file or
// the metadata, never both.
func TestPackagesSideFile(t *testing.T) {
	pk, err := ParsePackages([]byte(`{"packages":[{"name":"a","version":"1","manifest_sha256":"`+strings.Repeat("ab", 32)+`"}]}`), FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseLibvirt([]byte(`<domain><memory>1</memory><vcpu>1</vcpu></domain>`), Options{Packages: pk})
	if err != nil || len(c.Packages) != 1 || c.Packages[0].Name != "a" {
		t.Fatalf("ParseLibvirt with side file = %+v, %v, want package a", c, err)
	}
	xml, err := os.ReadFile("testdata/web01.xml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseLibvirt(xml, Options{Packages: pk}); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("ParseLibvirt(metadata + side file) error = %v, want ErrAmbiguous", err)
	}
}

// TestResolveOnce: an image named twice is read once; a missing file is an
// ImageError naming the leaf.
func TestResolveOnce(t *testing.T) {
	in := `{"schema":"vmledger/config/v1","memory":"1GiB","cpu":{"count":1},
	"disks":[{"target":"vda","path":"/dev/vg0/web01-data"},{"target":"vdb","path":"/dev/vg0/../vg0/web01-data"}],
	"boot":{"kernel":{"path":"/dev/vg0/web01-data"}}}`
	c, err := ParseJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	opened := map[string]int{}
	var progress []int64
	mc, err := c.Resolve(t.Context(), ResolveOptions{Open: fakeOpen(t, opened), Progress: func(_ string, done, _ int64) { progress = append(progress, done) }})
	if err != nil {
		t.Fatal(err)
	}
	if n := opened["/dev/vg0/web01-data"]; n != 1 {
		t.Errorf("image opened %d times, want 1", n)
	}
	want := measure.Digest(sha256Sum(fakeImages["/dev/vg0/web01-data"]))
	if *mc.Disks[0].SHA256 != want || *mc.Disks[1].SHA256 != want || *mc.Kernel != want {
		t.Errorf("digests = %v %v %v, want %v", mc.Disks[0].SHA256, mc.Disks[1].SHA256, mc.Kernel, want)
	}
	if len(progress) < 2 || progress[len(progress)-1] != int64(len(fakeImages["/dev/vg0/web01-data"])) {
		t.Errorf("progress = %v, want 0 … %d", progress, len(fakeImages["/dev/vg0/web01-data"]))
	}

	c.Disks[0].Image.Path = "/nonexistent"
	_, err = c.Resolve(t.Context(), ResolveOptions{Open: fakeOpen(t, nil)})
	ie, ok := errors.AsType[*ImageError](err)
	if !ok || ie.Field != "disk.0.sha256" || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Resolve(missing file) = %v, want ImageError for disk.0.sha256 wrapping ErrNotExist", err)
	}
}

// TestResolveRealFile hashes a real file relative to the config's directory.
func TestResolveRealFile(t *testing.T) {
	dir := t.TempDir()
	content := bytes.Repeat([]byte("vmledger"), 300000) // > one read buffer
	if err := os.WriteFile(filepath.Join(dir, "disk.img"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "vm.yaml")
	if err := os.WriteFile(cfg, []byte("schema: vmledger/config/v1\nmemory: 1GiB\ncpu: {count: 1}\ndisks: [{target: vda, path: disk.img}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, ro, err := LoadFile(cfg, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := c.Resolve(t.Context(), ro)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *mc.Disks[0].SHA256, measure.Digest(sha256Sum(string(content))); got != want {
		t.Errorf("disk digest = %v, want %v", got, want)
	}
}

func TestDetectFormat(t *testing.T) {
	tests := []struct {
		name, data string
		want       Format
	}{
		{"a.json", "", FormatJSON}, {"a.YAML", "", FormatYAML}, {"a.yml", "", FormatYAML}, {"a.xml", "", FormatLibvirt},
		{"-", "  <domain/>", FormatLibvirt}, {"-", "\n{}", FormatJSON}, {"-", "schema: x", FormatYAML},
	}
	for _, tt := range tests {
		if got := DetectFormat(tt.name, []byte(tt.data)); got != tt.want {
			t.Errorf("DetectFormat(%q, %q) = %s, want %s", tt.name, tt.data, got, tt.want)
		}
	}
}

// TestMeasureFile: the client's entry point gives the agent's root for a
// configuration whose images are given by digest.
func TestMeasureFile(t *testing.T) {
	got, err := MeasureFile(t.Context(), "testdata/web01.json", "", Options{}, "web01", testSecret, nil)
	if err == nil {
		t.Fatalf("MeasureFile(web01.json) = root %v, want an error: its images are paths that do not exist here", got.Root)
	}
	// The agent's root, under v2 for VM web01.
	wantC, wantRO, err := LoadFile("testdata/web01.json", "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantRO.Open = fakeOpen(t, nil)
	wantMC, err := wantC.Resolve(t.Context(), wantRO)
	if err != nil {
		t.Fatal(err)
	}
	wantMC.VMID = "web01"
	want, err := measure.V2.Measure(wantMC, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	// The same VM, as its owner would describe it: digests instead of paths.
	c, _, err := LoadFile("testdata/web01.json", "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := c.Resolve(t.Context(), ResolveOptions{Open: fakeOpen(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal((&Config{
		MemoryBytes: mc.MemoryBytes, CPUCount: mc.CPUCount, CPUAffinity: mc.CPUAffinity, NICs: mc.NICs,
		Disks:      digestDisks(mc.Disks),
		BootLoader: &Image{SHA256: mc.BootLoader}, Kernel: &Image{SHA256: mc.Kernel},
		KernelCmdline: mc.KernelCmdline, Packages: mc.Packages,
	}).File())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "expected.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := MeasureFile(t.Context(), p, "", Options{}, "web01", testSecret, nil)
	if err != nil || m.Root != want.Root || m.Schema != measure.SchemaV2 {
		t.Errorf("MeasureFile(owner's description) = %v, %v; want root %v", m, err, want.Root)
	}
}

func digestDisks(ds []measure.Disk) []Disk {
	var out []Disk
	for _, d := range ds {
		dd := Disk{Target: d.Target}
		if d.SHA256 != nil {
			dd.Image = &Image{SHA256: d.SHA256}
		}
		out = append(out, dd)
	}
	return out
}
