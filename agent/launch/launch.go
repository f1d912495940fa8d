// Package launch starts the VMM of a measured VM with the image files the
// agent measured: not their paths, which may name other files by then, but
// the descriptors the agent hashed them through (vmconfig.Held).
//
// `vmledger agent launch … -- CMD ARGS` execs CMD with each held descriptor
// left open (its close-on-exec flag cleared) and its number in the
// environment: VMLEDGER_FD_<ROLE>, ROLE being the disk target (VDA, SDA…),
// LOADER or KERNEL (vmconfig.EnvName), and VMLEDGER_FDS listing
// "role=fd" pairs. A command that reads /dev/fd/$VMLEDGER_FD_VDA reads the
// measured image; one that opens the configured path again may not, and
// what CMD does is the operator's responsibility. `agent launch --qemu`
// builds QEMU's command line itself from the measured configuration (see
// QEMU), giving QEMU the descriptors with -add-fd and /dev/fdset/N.
package launch

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vmledger/vmledger/agent/vmconfig"
)

// Inherit clears the close-on-exec flag of every held descriptor, so that
// the program exec'd next inherits them, and returns the environment
// variables that name them (VMLEDGER_FD_<ROLE>=N and VMLEDGER_FDS).
func Inherit(h *vmconfig.Held) ([]string, error) {
	var env, pairs []string
	for _, im := range h.Images {
		fd := im.File.Fd()
		if _, err := unix.FcntlInt(fd, unix.F_SETFD, 0); err != nil {
			return nil, fmt.Errorf("keeping the descriptor of %s open across exec: %w", im.Path, err)
		}
		env = append(env, fmt.Sprintf("%s=%d", vmconfig.EnvName(im.Role), fd))
		pairs = append(pairs, fmt.Sprintf("%s=%d", im.Role, fd))
	}
	return append(env, "VMLEDGER_FDS="+strings.Join(pairs, " ")), nil
}

// Exec replaces the process with path, args and env; it returns only on
// failure. A non-empty affinity (a canonical cpuset, "2-3,8": the measured
// cpu.affinity) confines the new program and all its threads to those host
// CPUs: the calling thread's affinity survives exec.
func Exec(path string, args, env []string, affinity string) error {
	runtime.LockOSThread() // the affinity is this thread's; exec from it
	defer runtime.UnlockOSThread()
	if affinity != "" {
		set, err := cpuSet(affinity)
		if err != nil {
			return err
		}
		if err := unix.SchedSetaffinity(0, set); err != nil {
			return fmt.Errorf("pinning to host CPUs %s: %w", affinity, err)
		}
	}
	return syscall.Exec(path, args, env)
}

// cpuSet parses a canonical cpuset ("0-1,3").
func cpuSet(s string) (*unix.CPUSet, error) {
	var set unix.CPUSet
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a > b || b >= 1024 {
			return nil, fmt.Errorf("cpuset %q: bad part %q", s, part)
		}
		for c := a; c <= b; c++ {
			set.Set(c)
		}
	}
	return &set, nil
}
