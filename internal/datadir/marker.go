// Package datadir guards a server's data directory in two ways.
//
// # The state marker: Open and Mark
//
// It keeps a server from starting afresh on a data directory that held state.
//
// A server that finds its data directory empty creates new state: a log
// starts at size 0, a witness remembers no checkpoint. After a power cut
// or a restore that lost files, that is the worst answer: the log would
// hand out indexes it had already acknowledged for other entries (its own
// fork) and a witness would cosign a fork. So a server marks its data
// directory once its state exists (a small file, VMLEDGER-STATE, synced
// with its directory entry) and, finding the mark, refuses to start when
// the state is missing.
//
// # The directory's identity: Watch and Dir.Check
//
// It notices when a database's directory stops being the one the process
// opened (see identity.go).
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmledger/vmledger/internal/atomicfile"
)

// MarkerName is the marker file's name in the data directory.
const MarkerName = "VMLEDGER-STATE"

// ErrWrongKind: the data directory is marked as another server's.
var ErrWrongKind = errors.New("data directory belongs to another kind of server")

// Open creates dir if it is missing (synced into its parent) and reports
// whether it is marked as holding the state of a server of kind (for
// example "log" or "witness"). A directory marked for another kind is
// refused.
func Open(dir, kind string) (marked bool, err error) {
	if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("creating data directory %s: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, MarkerName))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if got := strings.TrimSpace(string(b)); got != kind {
		return false, fmt.Errorf("%w: %s is marked %q (in %s), not %q", ErrWrongKind, dir, got, MarkerName, kind)
	}
	return true, nil
}

// Mark records, durably, that dir holds the state of a server of kind.
// Call it once that state has been created and synced.
func Mark(dir, kind string) error {
	if err := atomicfile.Write(filepath.Join(dir, MarkerName), []byte(kind+"\n"), 0o600); err != nil {
		return fmt.Errorf("marking data directory %s: %w", dir, err)
	}
	return nil
}
