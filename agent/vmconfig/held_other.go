//go:build !linux

package vmconfig

import (
	"errors"
	"io"

	"github.com/vmledger/vmledger/agent/measure"
)

// Held keeps measured images open for the VMM; it needs Linux (O_NOFOLLOW,
// sealed memfds, /proc). Elsewhere — the verifier compiled to WebAssembly,
// which parses configurations but never launches — ResolveOptions.Hold must
// stay nil, and a Held refuses every image.
type Held struct {
	StandIns bool // as on Linux; unused here
}

var errHoldUnsupported = errors.New("holding measured images open needs Linux")

func (h *Held) open(path, role string) (io.ReadCloser, int64, func(measure.Digest) error, error) {
	return nil, 0, nil, errHoldUnsupported
}

func (h *Held) standIn(path, role string, d measure.Digest) error { return errHoldUnsupported }
