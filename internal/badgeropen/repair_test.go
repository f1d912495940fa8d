package badgeropen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/table"
)

// TestMissingTableRefused takes a table file out of a database that was
// closed cleanly (so no memtable log holds its data) and checks that Open
// refuses with ErrMissingTables, says why, and leaves the MANIFEST as it
// was: the repair must never drop a table whose data it cannot find.
func TestMissingTableRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flatten bool                      // compact everything out of level 0
		pick    func(ids []uint64) uint64 // the table to take away, from the tables in ID order
		reason  string                    // in the error
	}{
		{name: "newest flushed table", pick: func(ids []uint64) uint64 { return ids[len(ids)-1] }, reason: "their data may be lost"},
		{name: "older flushed table", pick: func(ids []uint64) uint64 { return ids[0] }, reason: "is older than table"},
		{name: "compacted table", flatten: true, pick: func(ids []uint64) uint64 { return ids[len(ids)-1] }, reason: "not a memtable flush"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(1 << 20).WithValueThreshold(1 << 10).WithNumLevelZeroTables(20).WithNumLevelZeroTablesStall(30)
			for round := range 3 { // three memtable flushes, one per close
				db, err := Open(t.Context(), opts, nil)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 100 {
					if err := db.Update(func(txn *badger.Txn) error {
						return txn.Set(fmt.Appendf(nil, "k%d-%03d", round, i), bytes.Repeat([]byte("v"), 100))
					}); err != nil {
						t.Fatal(err)
					}
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.flatten {
				// Over one level-0 table, level 0 is due for compaction.
				db, err := Open(t.Context(), opts.WithNumLevelZeroTables(1), nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Flatten(1); err != nil {
					t.Fatal(err)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			ids := missingAndPresent(t, dir)
			if len(ids) < 2 && !tc.flatten {
				t.Fatalf("want several tables, have %v", ids)
			}
			gone := tc.pick(ids)
			if err := os.Remove(table.NewFilename(gone, dir)); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(filepath.Join(dir, badger.ManifestFilename))
			if err != nil {
				t.Fatal(err)
			}
			db, err := Open(t.Context(), opts, nil)
			if err == nil {
				db.Close()
				t.Fatalf("Open accepted a MANIFEST naming table %d, which is gone with its data", gone)
			}
			if !errors.Is(err, ErrMissingTables) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Open = %v; want ErrMissingTables saying %q", err, tc.reason)
			}
			after, err := os.ReadFile(filepath.Join(dir, badger.ManifestFilename))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatal("a refused Open changed the MANIFEST")
			}
		})
	}
}

// missingAndPresent returns the IDs of the tables the MANIFEST in dir
// names, in order.
func missingAndPresent(t *testing.T, dir string) []uint64 {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, _, err := badger.ReplayManifestFile(f, 0, badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for id := range m.Tables {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestWALVersions checks the memtable log reader against the logs of a
// live badger: it must find exactly the commit versions badger wrote,
// single-key and multi-key transactions alike, and a table's newest
// version once the memtable is flushed.
func TestWALVersions(t *testing.T) {
	dir := t.TempDir()
	opts := badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(true).WithValueThreshold(1 << 10)
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		if err := db.Update(func(txn *badger.Txn) error {
			for j := range 1 + i%3 {
				if err := txn.Set(fmt.Appendf(nil, "k%03d-%d", i, j), bytes.Repeat([]byte("v"), 10+i*40)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	logs, err := walVersionsIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, l := range logs {
		got = append(got, l.versions...)
	}
	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("versions in the memtable logs = %v; want 1..%d", got, n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ids := missingAndPresent(t, dir)
	if len(ids) != 1 {
		t.Fatalf("tables after close = %v; want one", ids)
	}
	if v, err := tableMaxVersion(table.NewFilename(ids[0], dir)); err != nil || v != n {
		t.Fatalf("tableMaxVersion = %d, %v; want %d", v, err, n)
	}
}
