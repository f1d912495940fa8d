package main

import (
	"context"
	"log/slog"

	"github.com/vmledger/vmledger/agent/launch"
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
