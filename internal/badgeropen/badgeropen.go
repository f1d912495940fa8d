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
//
// # Directory entries
//
// Badger fsyncs the files it writes but not always the directory that
// names them: it creates value-log and memtable log files, and the table
// files of a memtable flush, without syncing the directory, so a power cut
// can take a file back out of the directory after a commit in it was
// acknowledged. Open creates the database directories with their names
// synced into their parents and syncs them again once badger has opened;
// a [DirSync] syncs them after each commit when their entries changed.
// A memtable flush still records its new table in the MANIFEST (and
// fsyncs it) before anything syncs the directory, and then removes the
// flushed memtable's log: a cut in between leaves a MANIFEST naming a
// table whose name is gone, and badger refuses to open ("file does not
// exist for table N"). The same cut undoes the log's removal, so the
// table's data is still in it. Open checks that (the missing tables are
// the newest, on level 0, and the memtable logs hold every commit version
// after the newest one in the tables that are there) and then drops the
// missing tables from the MANIFEST so that badger replays the logs; when
// it cannot show that, it refuses with ErrMissingTables and changes
// nothing. A DirSync makes such a cut rarer: the window closes at the next
// commit, or at most SyncInterval later when the database is idle
// (DirSync.Start).
package badgeropen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/vmledger/vmledger/internal/atomicfile"
)

// ErrMissing is returned by CheckExists for a database directory that
// holds no database.
var ErrMissing = errors.New("badger database missing")

// CheckExists returns an error wrapping ErrMissing, naming what is
// missing, unless dir holds a badger database (its MANIFEST). A server
// whose data directory says it has state calls it before Open, which would
// otherwise start a new, empty database.
func CheckExists(dir string) error {
	_, err := os.Stat(filepath.Join(dir, badger.ManifestFilename))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s has no %s", ErrMissing, dir, badger.ManifestFilename)
	}
	if err != nil {
		return fmt.Errorf("badgeropen: %w", err)
	}
	return nil
}

func dirsOf(opts badger.Options) []string {
	dirs := []string{opts.Dir}
	if opts.ValueDir != "" && opts.ValueDir != opts.Dir {
		dirs = append(dirs, opts.ValueDir)
	}
	return dirs
}

// Open removes the empty log files a crash can leave in opts.Dir and
// opts.ValueDir, drops from the MANIFEST the tables a power cut took out of
// the directory when their data is provably in the memtable logs (see the
// package doc), creates the directories if missing (synced into their
// parents), opens the database, and syncs the directories.
func Open(ctx context.Context, opts badger.Options, logger *slog.Logger) (*badger.DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !opts.InMemory && !opts.ReadOnly {
		for _, dir := range dirsOf(opts) {
			if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("badgeropen: creating %s: %w", dir, err)
			}
			removed, err := RemoveEmptyLogs(dir)
			if err != nil {
				return nil, err
			}
			for _, name := range removed {
				logger.WarnContext(ctx, "removed an empty badger log file left by a crash", "file", name)
			}
		}
		if err := repairManifest(ctx, opts, logger); err != nil {
			return nil, err
		}
	}
	db, err := badger.Open(opts)
	if err != nil || opts.InMemory || opts.ReadOnly {
		return db, err
	}
	for _, dir := range dirsOf(opts) {
		if err := syncDir(dir); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// DirSync makes the directory entries of a database durable: Sync fsyncs
// its directories if their entries changed since the last Sync. Call it
// after a commit and before acknowledging it. It is safe for concurrent
// use.
type DirSync struct {
	dirs []string

	mu   sync.Mutex
	last [][]string // per directory, its names at the last sync
}

// SyncInterval is how often a started DirSync checks its directories in the
// background.
const SyncInterval = 50 * time.Millisecond

// Start checks the directories every SyncInterval in the background, for
// the files badger creates outside commits (the tables of a memtable
// flush), until stop is called. Errors are left for the next Sync.
func (d *DirSync) Start() (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(SyncInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				d.Sync()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-exited
	}
}

// NewDirSync returns a DirSync for the directories of opts.
func NewDirSync(opts badger.Options) *DirSync {
	return &DirSync{dirs: dirsOf(opts), last: make([][]string, len(dirsOf(opts)))}
}

// Sync fsyncs each directory whose names changed since the last Sync.
// Badger never reuses a file name, so a changed set of names is the only
// sign of a change that needs a sync.
func (d *DirSync) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, dir := range d.dirs {
		f, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("badgeropen: %w", err)
		}
		names, err := f.Readdirnames(-1)
		if err != nil {
			f.Close()
			return fmt.Errorf("badgeropen: reading %s: %w", dir, err)
		}
		slices.Sort(names)
		if slices.Equal(names, d.last[i]) {
			f.Close()
			continue
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("badgeropen: syncing %s: %w", dir, err)
		}
		d.last[i] = names
	}
	return nil
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
