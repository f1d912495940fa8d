// Package badgeropen opens a badger database after a crash that badger
// itself does not recover from.
//
// Badger creates a write-ahead log file (NNNNNN.mem) or a value log file
// (NNNNNN.vlog) in two steps: it creates the file, then extends it and
// writes a 20-byte header. A process killed between the two leaves a file of
// length zero, which badger's open takes for a file it has just created and
// refuses ("Open existing file ... Create a new file", or "while opening
// fid: N: Create a new file"). Such a file holds no record: nothing was ever
// written to it, so nothing committed can point into it. Open removes it,
// says so in the log, and opens the database.
package badgeropen

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Open removes the empty log files a crash can leave in opts.Dir and
// opts.ValueDir, then opens the database.
func Open(ctx context.Context, opts badger.Options, logger *slog.Logger) (*badger.DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !opts.InMemory && !opts.ReadOnly {
		dirs := []string{opts.Dir}
		if opts.ValueDir != "" && opts.ValueDir != opts.Dir {
			dirs = append(dirs, opts.ValueDir)
		}
		for _, dir := range dirs {
			removed, err := RemoveEmptyLogs(dir)
			if err != nil {
				return nil, err
			}
			for _, name := range removed {
				logger.WarnContext(ctx, "removed an empty badger log file left by a crash", "file", name)
			}
		}
	}
	return badger.Open(opts)
}

// RemoveEmptyLogs removes the files in dir named *.mem or *.vlog whose length
// is zero and returns their paths. A directory that does not exist yet holds
// none.
func RemoveEmptyLogs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("badgeropen: reading %s: %w", dir, err)
	}
	var removed []string
	for _, de := range entries {
		name := de.Name()
		if !de.Type().IsRegular() || !(strings.HasSuffix(name, ".mem") || strings.HasSuffix(name, ".vlog")) {
			continue
		}
		info, err := de.Info()
		if err != nil {
			return removed, fmt.Errorf("badgeropen: %w", err)
		}
		if info.Size() != 0 {
			continue
		}
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err != nil {
			return removed, fmt.Errorf("badgeropen: removing empty log file: %w", err)
		}
		removed = append(removed, path)
	}
	if len(removed) > 0 {
		if err := syncDir(dir); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("badgeropen: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("badgeropen: syncing %s: %w", dir, err)
	}
	return nil
}
