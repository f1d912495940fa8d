package badgeropen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/table"

	"github.com/vmledger/vmledger/testing/powerloss"
)

// TestFlushManifestGap cuts the power inside the window that badger v4.9.6
// leaves open in every memtable flush: the flush creates the table file,
// appends the table to the MANIFEST and fsyncs it, and removes the
// memtable's log, all before anything syncs the directory. After the cut
// the MANIFEST names a table whose directory entry is gone (plain
// badger.Open refuses: "file does not exist for table"), and the removed
// log is back. Open must drop the table from the MANIFEST, replay the log,
// and have every acknowledged write; with the log taken away too (what a
// file system that made the removal durable would leave) it must refuse
// with ErrMissingTables.
//
// The child acknowledges a write only after a directory sync that covers
// it, like our servers, but holds its directory syncs back as soon as a
// table file appears, which keeps the window open until the cut.
func TestFlushManifestGap(t *testing.T) {
	fs := powerloss.New(t)
	var dir string
	child := func(mode string, onLine func(string) bool) []string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFlushManifestGapChild$")
		cmd.Env = append(os.Environ(), "BADGEROPEN_GAP_DIR="+dir, "BADGEROPEN_GAP_MODE="+mode)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var lines []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if onLine != nil && onLine(sc.Text()) {
				cmd.Process.Kill()
				break
			}
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
		return lines
	}
	// The child's last directory sync can race with the table's creation
	// and close the window; such an attempt proves nothing, so try again
	// in a new directory.
	var acked []int
	var flushedLog string
	var missing []uint64
	for attempt := 1; len(missing) == 0; attempt++ {
		if attempt > 20 {
			t.Fatal("in 20 attempts, no cut left the MANIFEST naming a missing table: the cut missed the window every time")
		}
		dir = filepath.Join(fs.Dir(), fmt.Sprintf("db%d", attempt))
		acked, flushedLog = nil, ""
		got := child("write", func(line string) bool {
			if n, ok := strings.CutPrefix(line, "ACK "); ok {
				i, _ := strconv.Atoi(n)
				acked = append(acked, i)
			}
			if name, ok := strings.CutPrefix(line, "FLUSHED "); ok {
				flushedLog = name
				fs.Cut()
				return true
			}
			return false
		})
		if flushedLog == "" {
			t.Fatalf("the writer never saw a flush: %q", got[max(0, len(got)-3):])
		}
		if len(acked) == 0 {
			t.Fatal("no write was acknowledged before the flush")
		}
		if err := fs.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		// The state badger's ordering leaves: the MANIFEST names a table
		// that is gone, and the removal of the flushed memtable's log was
		// undone.
		if missing = missingTables(t, dir); len(missing) == 0 {
			t.Logf("attempt %d: the cut missed the window (the table's name was synced)", attempt)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, flushedLog)); err != nil {
		t.Fatalf("the flushed memtable log %s is not back after the cut: %v", flushedLog, err)
	}
	t.Logf("after the cut: the MANIFEST names missing tables %v; the flushed log %s is back; %d writes acknowledged", missing, flushedLog, len(acked))
	if got := child("plain", nil); len(got) == 0 || !strings.Contains(got[0], "file does not exist for table") {
		t.Fatalf("plain badger.Open after the cut = %q; want badger's \"file does not exist for table\" (has badger fixed the ordering?)", got)
	}

	t.Run("refused without the log", func(t *testing.T) {
		cp := t.TempDir()
		copyDir(t, dir, cp)
		if err := os.Remove(filepath.Join(cp, flushedLog)); err != nil {
			t.Fatal(err)
		}
		db, err := Open(t.Context(), gapOptions(cp), nil)
		if err == nil {
			db.Close()
			t.Fatal("Open accepted a MANIFEST naming a missing table whose memtable log is gone too")
		}
		if !errors.Is(err, ErrMissingTables) {
			t.Fatalf("Open = %v; want ErrMissingTables", err)
		}
		t.Logf("refused: %v", err)
		if _, err := os.Stat(table.NewFilename(missing[0], cp)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stat of the missing table: %v", err)
		}
		if got := missingTables(t, cp); !slices.Equal(got, missing) {
			t.Fatalf("a refused Open changed the MANIFEST: missing tables %v, were %v", got, missing)
		}
	})

	got := child("verify", nil)
	if !slices.Contains(got, "VERIFIED") {
		t.Fatalf("after the cut, Open and reading back = %q", got[max(0, len(got)-3):])
	}
	have := map[int]bool{}
	for _, line := range got {
		if n, ok := strings.CutPrefix(line, "HAVE "); ok {
			i, _ := strconv.Atoi(n)
			have[i] = true
		}
	}
	lost := 0
	for _, i := range acked {
		if !have[i] {
			lost++
			t.Errorf("acknowledged write %d is gone", i)
		}
	}
	t.Logf("Open repaired the MANIFEST; %d acknowledged writes, %d lost", len(acked), lost)
	if got := missingTables(t, dir); len(got) != 0 {
		t.Errorf("after Open the MANIFEST still names missing tables %v", got)
	}
}

// missingTables returns the tables the MANIFEST in dir names that dir does
// not have.
func missingTables(t *testing.T, dir string) []uint64 {
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
	var missing []uint64
	for id := range m.Tables {
		if _, err := os.Stat(table.NewFilename(id, dir)); errors.Is(err, os.ErrNotExist) {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	return missing
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		data, err := os.ReadFile(filepath.Join(from, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, de.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func gapOptions(dir string) badger.Options {
	return badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(true).
		WithMemTableSize(1 << 20).WithValueThreshold(8 << 10).WithValueLogFileSize(4 << 20)
}

func gapKey(i int) []byte { return fmt.Appendf(nil, "key %06d", i) }

// TestFlushManifestGapChild is TestFlushManifestGap's child process.
func TestFlushManifestGapChild(t *testing.T) {
	dir := os.Getenv("BADGEROPEN_GAP_DIR")
	if dir == "" {
		t.Skip("run by TestFlushManifestGap")
	}
	opts := gapOptions(dir)
	switch os.Getenv("BADGEROPEN_GAP_MODE") {
	case "plain":
		db, err := badger.Open(opts)
		if err != nil {
			fmt.Println("OPEN FAILED:", err)
			return
		}
		fmt.Println("OPENED")
		db.Close()
		return
	case "verify":
		db, err := Open(context.Background(), opts, nil)
		if err != nil {
			fmt.Println("OPEN FAILED:", err)
			return
		}
		defer db.Close()
		err = db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.DefaultIteratorOptions)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				var i int
				if _, err := fmt.Sscanf(string(it.Item().Key()), "key %d", &i); err != nil {
					return err
				}
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				if len(v) != gapValueLen(i) {
					return fmt.Errorf("key %d: value of %d bytes, want %d", i, len(v), gapValueLen(i))
				}
				fmt.Println("HAVE", i)
			}
			return nil
		})
		if err != nil {
			fmt.Println("READ FAILED:", err)
			return
		}
		fmt.Println("VERIFIED")
		return
	}

	db, err := Open(context.Background(), opts, nil)
	if err != nil {
		fmt.Println("OPEN FAILED:", err)
		return
	}
	logs := func() (mems []string, sst bool) {
		names, _ := os.ReadDir(dir)
		for _, de := range names {
			sst = sst || strings.HasSuffix(de.Name(), ".sst")
			if strings.HasSuffix(de.Name(), ".mem") {
				mems = append(mems, de.Name())
			}
		}
		return mems, sst
	}
	ds := NewDirSync(opts)
	var first string // the oldest memtable log, the one the flush removes
	for i := 0; ; i++ {
		err := db.Update(func(txn *badger.Txn) error { return txn.Set(gapKey(i), make([]byte, gapValueLen(i))) })
		if err != nil {
			t.Fatal(err)
		}
		mems, sst := logs()
		if first == "" {
			first = mems[0]
		}
		if sst {
			break // a flush is under way: no more directory syncs
		}
		if err := ds.Sync(); err != nil {
			t.Fatal(err)
		}
		fmt.Println("ACK", i)
	}
	// Wait for the flush to record the table and remove the flushed log.
	for {
		if mems, _ := logs(); !slices.Contains(mems, first) {
			fmt.Println("FLUSHED", first)
			time.Sleep(time.Minute) // the parent kills us
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// gapValueLen is the length of the value of key i: every tenth value is
// over the value threshold and goes to the value log.
func gapValueLen(i int) int {
	if i%10 == 0 {
		return 16 << 10
	}
	return 4096
}
