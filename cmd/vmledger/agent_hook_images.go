package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/agent/vmconfig"
)

// The libvirt hook cannot hand QEMU the descriptors it measured: libvirt
// opens the images itself, by path, after the hook returns. At prepare the
// hook records each image's identity (device, inode, size, mtime, ctime)
// as it was when hashed, in <store>/<domain>/images.json; at started
// (QEMU has opened the images, the guest has not run) and at release it
// checks the paths against the records (vmconfig.CheckRecords); at started
// it also checks that QEMU holds the measured disk files open
// (vmconfig.CheckOpenBy), which a swap around QEMU's open cannot fake.

// libvirtRunDir is where libvirt's system qemu driver writes each running
// domain's pid file (<name>.pid).
var libvirtRunDir = "/run/libvirt/qemu"

// checkQEMUHolds checks, at started, that the QEMU process libvirt started
// holds open the measured disk files (vmconfig.CheckOpenBy). Without a pid
// file (another libvirt layout) it says so and checks nothing more.
func checkQEMUHolds(logger *slog.Logger, domain string, recs []vmconfig.ImageRecord) error {
	b, err := os.ReadFile(filepath.Join(libvirtRunDir, domain+".pid"))
	if err != nil {
		logger.Warn("cannot check the files QEMU holds open", "vm", domain, "reason", err)
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s/%s.pid: %w", libvirtRunDir, domain, err)
	}
	return vmconfig.CheckOpenBy(recs, pid)
}

func hookImagesPath(store, domain string) string {
	return filepath.Join(store, domain, "images.json")
}

// saveHookImages writes the records of the images h measured.
func saveHookImages(store, domain string, h *vmconfig.Held) error {
	recs := h.Records()
	if recs == nil {
		recs = []vmconfig.ImageRecord{}
	}
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	p := hookImagesPath(store, domain)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("recording the measured images: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("recording the measured images: %w", err)
	}
	return nil
}

// hookRecheck is the hook at "started begin" and "release end": the
// images must still be the files measured at prepare. A failure at started
// is a refusal (exit 3: libvirt aborts the start); at release it reports
// what changed while the domain ran. Without an agent configuration the
// hook has nothing to check (prepare refuses every start then).
func hookRecheck(cmd *cobra.Command, configPath, domain, op string) error {
	var ac agentFileConfig
	if err := readJSONFile(configPath, &ac); err != nil || ac.Store == "" {
		return nil
	}
	logger, err := newLogger(cmd.Context())
	if err != nil {
		return err
	}
	var recs []vmconfig.ImageRecord
	if err := readJSONFile(hookImagesPath(ac.Store, domain), &recs); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("no images were recorded for %s at prepare: it was not started through this hook", domain)
		}
		logger.Error("measured images cannot be checked", "vm", domain, "operation", op, "reason", err)
		return refusedError{fmt.Errorf("%s: measured images cannot be checked: %w", op, err)}
	}
	mode := vmconfig.RecheckContent
	if op == "release" {
		mode = vmconfig.RecheckIdentity
	}
	err = vmconfig.CheckRecords(recs, mode)
	if err == nil && op == "started" {
		err = checkQEMUHolds(logger, domain, recs)
	}
	if err != nil {
		logger.Error("image changed after measurement", "vm", domain, "operation", op, "reason", err)
		return refusedError{fmt.Errorf("%s: %w", op, err)}
	}
	logger.Info("measured images unchanged", "vm", domain, "operation", op, "images", len(recs))
	return nil
}
