package main

import (
	"context"
	"log/slog"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/agent/launch"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/vmconfig"
)

// heldForLaunch checks, just before the launch, that no held image changed
// in place since it was measured, and readies the held descriptors for the
// command: it returns the environment that names them.
func heldForLaunch(ctx context.Context, logger *slog.Logger, h *vmconfig.Held) ([]string, error) {
	moved, err := h.Recheck(ctx)
	if err != nil {
		return nil, err
	}
	for _, im := range h.Images {
		if im.Real != im.Path {
			logger.Info("image path resolved", "path", im.Path, "file", im.Real)
		}
	}
	for _, p := range moved {
		logger.Warn("image path now names another file than the one measured; the command gets the measured one as a descriptor", "path", p)
	}
	return launch.Inherit(h)
}

// qemuFlags are agent launch's --qemu and --nic.
type qemuFlags struct {
	binary string
	nics   []string
}

func (q *qemuFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&q.binary, "qemu", "", "build QEMU's command line from the measured configuration and run this QEMU binary; arguments after -- are allowlisted QEMU options")
	cmd.Flags().StringArrayVar(&q.nics, "nic", nil, "with --qemu: the host side of each measured NIC, in order: tap:IFNAME, bridge:BRIDGE or user (repeat per NIC)")
}

// command returns the program to exec, checking the arguments first.
func (q *qemuFlags) command(cmd *cobra.Command, args []string) (string, error) {
	if q.binary == "" {
		if len(q.nics) > 0 {
			return "", usagef("--nic needs --qemu")
		}
		if cmd.ArgsLenAtDash() != 0 {
			return "", usagef("put the command to launch after --: launch [flags] -- CMD [ARGS...]")
		}
		path, err := exec.LookPath(args[0])
		if err != nil {
			return "", usagef("command to launch: %v", err)
		}
		return path, nil
	}
	if len(args) > 0 && cmd.ArgsLenAtDash() != 0 {
		return "", usagef("with --qemu, put the extra QEMU options after --")
	}
	if _, err := launch.CheckExtra(args); err != nil {
		return "", usagef("%v", err)
	}
	path, err := exec.LookPath(q.binary)
	if err != nil {
		return "", usagef("--qemu: %v", err)
	}
	return path, nil
}

// argv is the command line to exec and the host CPUs to pin it to.
func (q *qemuFlags) argv(vmID string, args []string, mc *measure.Config, h *vmconfig.Held) ([]string, string, error) {
	if q.binary == "" {
		return args, "", nil
	}
	qa := launch.QEMU{Binary: q.binary, Name: vmID, NICs: q.nics, Extra: args}
	argv, err := qa.Args(mc, h)
	if err != nil {
		return nil, "", err
	}
	// The descriptors Args added (the loader's read-only one) must be
	// inherited too.
	if _, err := launch.Inherit(h); err != nil {
		return nil, "", err
	}
	return argv, mc.CPUAffinity, nil
}
