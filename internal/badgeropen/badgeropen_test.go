package badgeropen

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestEmptyLogFilesAfterCrash recreates what a kill -9 between badger's
// create and its header write leaves: an empty value log file after the
// newest one, and an empty memtable log file. Plain badger.Open refuses the
// directory; Open removes the two files, and every committed key is still
// there, written values included.
func TestEmptyLogFilesAfterCrash(t *testing.T) {
	for _, ext := range []string{".vlog", ".mem"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			opts := badger.DefaultOptions(dir).WithLogger(nil).WithValueThreshold(64).WithSyncWrites(true)
			db, err := badger.Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			big := bytes.Repeat([]byte("v"), 1000) // above the threshold: in the value log
			for i := range 100 {
				if err := db.Update(func(txn *badger.Txn) error {
					return txn.Set(fmt.Appendf(nil, "k%03d", i), big)
				}); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			// The newest file of that kind, plus one: what badger was creating.
			highest := 0
			names, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
			for _, n := range names {
				var id int
				fmt.Sscanf(filepath.Base(n), "%d", &id)
				highest = max(highest, id)
			}
			format := "%06d%s" // badger's value log names
			if ext == ".mem" {
				format = "%05d%s" // and its memtable log names
			}
			empty := filepath.Join(dir, fmt.Sprintf(format, highest+1, ext))
			if err := os.WriteFile(empty, nil, 0o644); err != nil {
				t.Fatal(err)
			}

			if db, err := badger.Open(opts); err == nil {
				db.Close()
				t.Fatalf("plain badger.Open accepted an empty %s file: this workaround may no longer be needed", ext)
			} else if !strings.Contains(err.Error(), "Create a new file") {
				t.Fatalf("plain badger.Open failed differently than expected: %v", err)
			}

			db, err = Open(context.Background(), opts, nil)
			if err != nil {
				t.Fatalf("Open after removing empty log files: %v", err)
			}
			defer db.Close()
			if _, err := os.Stat(empty); err == nil {
				// badger may have created a file of that id again; it must not be empty.
				if fi, _ := os.Stat(empty); fi.Size() == 0 {
					t.Errorf("%s is still empty", empty)
				}
			}
			err = db.View(func(txn *badger.Txn) error {
				for i := range 100 {
					item, err := txn.Get(fmt.Appendf(nil, "k%03d", i))
					if err != nil {
						return fmt.Errorf("k%03d: %w", i, err)
					}
					v, err := item.ValueCopy(nil)
					if err != nil {
						return fmt.Errorf("k%03d: %w", i, err)
					}
					if !bytes.Equal(v, big) {
						return fmt.Errorf("k%03d: value changed", i)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// And it still takes writes.
			if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("after"), big) }); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRemoveEmptyLogsLeavesOthers(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"000001.vlog": "x", "000002.vlog": "", "000003.mem": "", "000004.mem": "y",
		"000005.sst": "", "MANIFEST": "",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveEmptyLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Fatalf("removed %v, want the empty 000002.vlog and 000003.mem", removed)
	}
	for _, keep := range []string{"000001.vlog", "000004.mem", "000005.sst", "MANIFEST"} {
		if _, err := os.Stat(filepath.Join(dir, keep)); err != nil {
			t.Errorf("%s: %v", keep, err)
		}
	}
	if r, err := RemoveEmptyLogs(filepath.Join(dir, "missing")); err != nil || r != nil {
		t.Errorf("missing directory: %v, %v", r, err)
	}
}

// BenchmarkDirSync is the per-commit cost of DirSync on a database
// directory whose names did not change (the common case: one listing).
func BenchmarkDirSync(b *testing.B) {
	dir := b.TempDir()
	db, err := Open(context.Background(), badger.DefaultOptions(dir).WithLogger(nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	d := NewDirSync(badger.DefaultOptions(dir))
	if err := d.Sync(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := d.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
