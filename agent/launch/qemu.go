package launch

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/vmconfig"
)

// ErrNotAllowed is wrapped by the error for an operator argument that is
// not on QEMU's allowlist (QEMUExtraAllowed).
var ErrNotAllowed = errors.New("not an allowed QEMU argument")

// ErrUnsupported is wrapped when the measured configuration has something
// QEMU cannot be told from the command line alone.
var ErrUnsupported = errors.New("cannot be launched with --qemu")

// QEMU is what the operator adds to the measured configuration to run it.
type QEMU struct {
	Binary string // the QEMU binary (argv[0])
	Name   string // the VM's id: -name guest=NAME
	// NICs names the host side of each measured NIC, in order:
	// "tap:IFNAME" (an existing tap, no scripts), "bridge:BRIDGE" (QEMU's
	// bridge helper) or "user" (QEMU's user-mode network).
	NICs []string
	// Extra are operator arguments, each option allowed by
	// QEMUExtraAllowed.
	Extra []string
}

// QEMUExtraAllowed lists the options an operator may add to a QEMU
// command line built from a measured configuration, with whether each
// takes a value. They choose how the host watches and controls the VM
// (display, serial console, QMP, monitor, start paused, accelerator, pid
// file); none adds a device, a file or code the guest sees. A monitor or
// QMP socket can change the VM while it runs: who may connect to it is the
// operator's responsibility.
var QEMUExtraAllowed = map[string]bool{
	"-display": true, "-vnc": true, "-nographic": false,
	"-serial": true, "-qmp": true, "-monitor": true,
	"-S": false, "-accel": true, "-pidfile": true, "-no-reboot": false, "-no-shutdown": false,
}

// Args builds QEMU's command line (argv, with argv[0] = q.Binary) for the
// measured configuration mc, whose image files h holds: memory, vCPUs,
// one virtio NIC per measured NIC with its MAC, every disk on its held
// descriptor (-add-fd and /dev/fdset/N, format raw), the loader as a
// read-only pflash and the kernel from their sealed copies, the kernel
// command line. -nodefaults and -no-user-config keep QEMU from adding
// devices or reading files of its own. The descriptors must be inherited
// (Inherit). CPU pinning is not an argument: Exec pins the process.
func (q *QEMU) Args(mc *measure.Config, h *vmconfig.Held) ([]string, error) {
	if q.Binary == "" || q.Name == "" {
		return nil, errors.New("QEMU binary and VM name are required")
	}
	if strings.ContainsAny(q.Name, ",\x00") {
		return nil, fmt.Errorf("%w: VM name %q contains a comma", ErrUnsupported, q.Name)
	}
	args := []string{q.Binary, "-nodefaults", "-no-user-config",
		"-name", "guest=" + q.Name,
		"-m", strconv.FormatUint(mc.MemoryBytes, 10) + "B",
		"-smp", strconv.FormatUint(mc.CPUCount, 10),
	}
	set := 0
	addFD := func(role string, fds ...uintptr) string {
		set++
		for _, fd := range fds {
			args = append(args, "-add-fd", fmt.Sprintf("fd=%d,set=%d,opaque=%s", fd, set, role))
		}
		return fmt.Sprintf("/dev/fdset/%d", set)
	}
	// readOnly opens a read-only descriptor of a held image through its
	// descriptor (/proc/self/fd/N names the open file, not a path) and
	// holds it too: QEMU picks from a set the descriptor whose access mode
	// it asks for, and asks for read-only ones too.
	readOnly := func(im *vmconfig.HeldImage) (*os.File, error) {
		ro, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", im.File.Fd()))
		if err != nil {
			return nil, fmt.Errorf("a read-only descriptor of %s: %w", im.Path, err)
		}
		h.Images = append(h.Images, &vmconfig.HeldImage{Role: im.Role + "-ro", Path: im.Path, Real: im.Real, File: ro, Sealed: im.Sealed, Digest: im.Digest, ID: im.ID})
		return ro, nil
	}
	held := func(role string, what string) (*vmconfig.HeldImage, error) {
		im := h.Image(role)
		if im == nil || im.File == nil {
			return nil, fmt.Errorf("%w: %s was not opened by the agent (give it by path, not by digest)", ErrUnsupported, what)
		}
		return im, nil
	}

	// What schema v2 measures and this command line cannot give QEMU is
	// refused, never dropped: the VM would differ from its measurement.
	switch {
	case mc.BalloonBytes != 0:
		return nil, fmt.Errorf("%w: a balloon target below the memory size (set through QMP after start); launch with -- CMD or libvirt", ErrUnsupported)
	case mc.NVRAMTemplate != nil:
		return nil, fmt.Errorf("%w: a UEFI variable store made from a measured template; launch with -- CMD or libvirt", ErrUnsupported)
	}
	if len(q.NICs) != len(mc.NICs) {
		return nil, fmt.Errorf("%w: the configuration has %d NICs, %d host back ends given (--nic)", ErrUnsupported, len(mc.NICs), len(q.NICs))
	}
	for i, n := range mc.NICs {
		if n.VLAN != 0 {
			return nil, fmt.Errorf("%w: NIC %d is on VLAN %d; tag it on the host side and launch with -- CMD", ErrUnsupported, i, n.VLAN)
		}
		if n.Trunk != nil {
			return nil, fmt.Errorf("%w: NIC %d is a VLAN trunk; set it up on the host side and launch with -- CMD", ErrUnsupported, i)
		}
		id := fmt.Sprintf("net%d", i)
		kind, name, _ := strings.Cut(q.NICs[i], ":")
		var netdev string
		switch {
		case kind == "tap" && name != "" && !strings.ContainsAny(name, ",="):
			netdev = "tap,id=" + id + ",ifname=" + name + ",script=no,downscript=no"
		case kind == "bridge" && name != "" && !strings.ContainsAny(name, ",="):
			netdev = "bridge,id=" + id + ",br=" + name
		case q.NICs[i] == "user":
			netdev = "user,id=" + id
		default:
			return nil, fmt.Errorf("%w: NIC back end %q: want tap:IFNAME, bridge:BRIDGE or user", ErrUnsupported, q.NICs[i])
		}
		args = append(args, "-netdev", netdev, "-device", fmt.Sprintf("virtio-net-pci,netdev=%s,mac=%s,id=%s", id, n.MAC, id))
	}

	for i, d := range mc.Disks {
		if strings.ContainsAny(d.Target, ",=") {
			return nil, fmt.Errorf("%w: disk target %q", ErrUnsupported, d.Target)
		}
		if d.Backing != nil {
			return nil, fmt.Errorf("%w: disk %s has a backing chain, which QEMU would open by the names in its header; launch with libvirt or flatten the image", ErrUnsupported, d.Target)
		}
		if d.SHA256 == nil {
			// An empty removable drive.
			args = append(args, "-drive", "if=none,media=cdrom,id="+d.Target, "-device", "ide-cd,drive="+d.Target+",id="+d.Target+"-dev")
			continue
		}
		im, err := held(d.Target, fmt.Sprintf("disk %d (%s)", i, d.Target))
		if err != nil {
			return nil, err
		}
		ro, err := readOnly(im)
		if err != nil {
			return nil, err
		}
		path := addFD(d.Target, im.File.Fd(), ro.Fd())
		args = append(args, "-drive", "file="+path+",format=raw,if=none,id="+d.Target,
			"-device", "virtio-blk-pci,drive="+d.Target+",id="+d.Target+"-dev")
	}

	if mc.BootLoader != nil {
		im, err := held("loader", "the loader")
		if err != nil {
			return nil, err
		}
		// A read-only pflash is opened O_RDONLY: the set holds a read-only
		// descriptor of the sealed copy.
		ro, err := readOnly(im)
		if err != nil {
			return nil, err
		}
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+addFD("loader", ro.Fd()))
	}
	if mc.Kernel != nil {
		im, err := held("kernel", "the kernel")
		if err != nil {
			return nil, err
		}
		// QEMU reads the kernel by name; /dev/fd/N opens the sealed copy.
		args = append(args, "-kernel", fmt.Sprintf("/dev/fd/%d", im.File.Fd()))
		if mc.Initrd != nil {
			ird, err := held("initrd", "the initrd")
			if err != nil {
				return nil, err
			}
			args = append(args, "-initrd", fmt.Sprintf("/dev/fd/%d", ird.File.Fd()))
		}
		if mc.KernelCmdline != nil {
			args = append(args, "-append", *mc.KernelCmdline)
		}
	} else if mc.KernelCmdline != nil && *mc.KernelCmdline != "" {
		return nil, fmt.Errorf("%w: a kernel command line without a kernel (QEMU passes -append only to a kernel it loads)", ErrUnsupported)
	}
	extra, err := CheckExtra(q.Extra)
	if err != nil {
		return nil, err
	}
	return append(args, extra...), nil
}

// CheckExtra checks the operator's arguments against QEMUExtraAllowed.
func CheckExtra(extra []string) ([]string, error) {
	for i := 0; i < len(extra); i++ {
		opt := extra[i]
		if strings.HasPrefix(opt, "--") {
			opt = opt[1:] // QEMU takes --opt as -opt
		}
		takesValue, ok := QEMUExtraAllowed[opt]
		if !ok {
			return nil, fmt.Errorf("%w: %q (allowed: %s)", ErrNotAllowed, extra[i], allowedList())
		}
		if takesValue {
			if i+1 >= len(extra) {
				return nil, fmt.Errorf("%w: %s needs a value", ErrNotAllowed, opt)
			}
			i++
			if opt == "-accel" {
				if a, _, _ := strings.Cut(extra[i], ","); a != "kvm" && a != "tcg" {
					return nil, fmt.Errorf("%w: -accel %q: want kvm or tcg", ErrNotAllowed, extra[i])
				}
			}
		}
	}
	return extra, nil
}

func allowedList() string {
	out := slices.Sorted(maps.Keys(QEMUExtraAllowed))
	return strings.Join(out, " ")
}
