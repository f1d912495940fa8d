package launch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/vmconfig"
)

func TestCheckExtra(t *testing.T) {
	for _, tt := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-S", "-display", "none", "-qmp", "unix:/run/x.qmp,server=on,wait=off", "-accel", "tcg"}, true},
		{[]string{"--serial", "pty", "-monitor", "none", "-nographic", "-accel", "kvm,kernel-irqchip=on"}, true},
		{[]string{"-drive", "file=/tmp/evil"}, false},
		{[]string{"-append", "init=/bin/sh"}, false},
		{[]string{"-kernel", "/tmp/evil"}, false},
		{[]string{"-accel", "xen"}, false},
		{[]string{"-display"}, false},
		{[]string{"-S", "-device", "vfio-pci,host=03:00.0"}, false},
		{[]string{"-readconfig", "/tmp/evil.cfg"}, false},
	} {
		_, err := CheckExtra(tt.args)
		if (err == nil) != tt.ok || (!tt.ok && !errors.Is(err, ErrNotAllowed)) {
			t.Errorf("CheckExtra(%q) = %v, want ok %v", tt.args, err, tt.ok)
		}
	}
}

// TestQEMUArgs: the command line carries every measured parameter, disks
// only as held descriptors, and nothing QEMU would add by itself.
func TestQEMUArgs(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "vda.raw")
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(disk, []byte("disk"), 0o644)
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	cmdline := "console=ttyS0"
	mac, _ := measure.ParseMAC("52:54:00:00:00:07")
	c := &vmconfig.Config{MemoryBytes: 256 << 20, CPUCount: 3, NICs: []measure.NIC{{MAC: mac}},
		Disks: []vmconfig.Disk{{Target: "vda", Image: &vmconfig.Image{Path: disk}}, {Target: "sda"}}, Kernel: &vmconfig.Image{Path: kernel}, KernelCmdline: &cmdline}
	h := &vmconfig.Held{}
	mc, err := c.Resolve(t.Context(), vmconfig.ResolveOptions{Hold: h})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	q := QEMU{Binary: "qemu", Name: "vm1", NICs: []string{"tap:vnet7"}, Extra: []string{"-S"}}
	args, err := q.Args(mc, h)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{"-nodefaults", "-no-user-config", "-name guest=vm1", "-m 268435456B", "-smp 3",
		"-netdev tap,id=net0,ifname=vnet7,script=no,downscript=no", "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:07",
		"-drive file=/dev/fdset/1,format=raw,if=none,id=vda", "-drive if=none,media=cdrom,id=sda",
		"-append console=ttyS0", "-S"} {
		if !strings.Contains(line, want) {
			t.Errorf("command line lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, disk) || strings.Contains(line, kernel) {
		t.Errorf("command line names an image path, not its descriptor:\n%s", line)
	}
	if i := slices.Index(args, "-kernel"); i < 0 || !strings.HasPrefix(args[i+1], "/dev/fd/") {
		t.Errorf("kernel not given as a descriptor:\n%s", line)
	}

	// A measured initrd reaches QEMU as its sealed copy.
	initrd := filepath.Join(dir, "initrd.img")
	os.WriteFile(initrd, []byte("initrd"), 0o644)
	ci := *c
	ci.Disks = nil
	ci.Initrd = &vmconfig.Image{Path: initrd}
	hi := &vmconfig.Held{}
	defer hi.Close()
	mci, err := ci.Resolve(t.Context(), vmconfig.ResolveOptions{Hold: hi})
	if err != nil {
		t.Fatal(err)
	}
	argsI, err := q.Args(mci, hi)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.Index(argsI, "-initrd"); i < 0 || argsI[i+1] != fmt.Sprintf("/dev/fd/%d", hi.Image("initrd").File.Fd()) || !hi.Image("initrd").Sealed {
		t.Errorf("initrd not given as its sealed copy:\n%s", strings.Join(argsI, " "))
	}

	for _, tt := range []struct {
		name string
		q    QEMU
		mc   func(measure.Config) *measure.Config
	}{
		{"VLAN", q, func(m measure.Config) *measure.Config { m.NICs = []measure.NIC{{MAC: mac, VLAN: 42}}; return &m }},
		{"NIC back ends missing", QEMU{Binary: "qemu", Name: "vm1"}, func(m measure.Config) *measure.Config { return &m }},
		{"NIC back end with options", QEMU{Binary: "qemu", Name: "vm1", NICs: []string{"tap:x,script=/tmp/evil"}}, func(m measure.Config) *measure.Config { return &m }},
		{"disk by digest", q, func(m measure.Config) *measure.Config {
			d := measure.Digest{1}
			m.Disks = []measure.Disk{{Target: "vdz", SHA256: &d}}
			return &m
		}},
		{"cmdline without kernel", q, func(m measure.Config) *measure.Config { m.Kernel = nil; return &m }},
		// Measured under schema v2 but not expressible here: refused, not dropped.
		{"balloon", q, func(m measure.Config) *measure.Config { m.BalloonBytes = 128 << 20; return &m }},
		{"nvram template", q, func(m measure.Config) *measure.Config { m.NVRAMTemplate = &measure.Digest{2}; return &m }},
		{"trunk", q, func(m measure.Config) *measure.Config {
			m.NICs = []measure.NIC{{MAC: mac, Trunk: []measure.VLANTag{{ID: 5}}}}
			return &m
		}},
		{"backing chain", q, func(m measure.Config) *measure.Config {
			m.Disks = slices.Clone(m.Disks)
			m.Disks[0].Backing = []measure.Digest{{3}}
			return &m
		}},
		{"initrd not held", q, func(m measure.Config) *measure.Config { m.Initrd = &measure.Digest{4}; return &m }},
	} {
		if _, err := tt.q.Args(tt.mc(*mc), h); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: Args = %v, want ErrUnsupported", tt.name, err)
		}
	}
}
