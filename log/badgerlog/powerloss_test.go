package badgerlog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/internal/badgeropen"
	"github.com/vmledger/vmledger/log/engine/enginetest"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/testing/powerloss"
)

// powerLossEntry is the entry a child appends as number seq of run: 2 KiB,
// so that 2 MiB memtables rotate often.
func powerLossEntry(run, seq int) []byte {
	var b []byte
	h := sha256.Sum256(fmt.Appendf(nil, "run %d seq %d", run, seq))
	for len(b) < 2048 {
		b = append(b, h[:]...)
		h = sha256.Sum256(h[:])
	}
	return b
}

// TestPowerLoss runs the engine in a child process on the power-loss file
// system (a process that maps the mount's files must not be the one
// serving it), with small memtables so that badger creates new files all
// the time, and cuts the power at random moments under load. After every
// cut the engine must open (its directory known to exist: MustExist), pass
// the whole-log check, and hold every entry it acknowledged before the
// cut at its index. BADGERLOG_POWERLOSS_CUTS sets the number of cuts
// (default 10).
func TestPowerLoss(t *testing.T) {
	cuts := 10 // the log server takes 20 in testing/crash; this is the engine alone
	if s := os.Getenv("BADGERLOG_POWERLOSS_CUTS"); s != "" {
		var err error
		if cuts, err = strconv.Atoi(s); err != nil {
			t.Fatalf("BADGERLOG_POWERLOSS_CUTS=%q", s)
		}
	}
	fs := powerloss.New(t)
	skey, _, err := tlog.GenerateKey(rand.Reader, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	ackedPath := filepath.Join(t.TempDir(), "acked")
	acked := map[uint64]string{} // index → "run seq"
	saveAcked := func() {
		var b bytes.Buffer
		for idx, rs := range acked {
			fmt.Fprintf(&b, "%d %s\n", idx, rs)
		}
		if err := os.WriteFile(ackedPath, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	saveAcked()
	run := func(k int, checkOnly bool) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPowerLossChild$")
		cmd.Env = append(os.Environ(),
			"BADGERLOG_POWERLOSS_DIR="+filepath.Join(fs.Dir(), "engine"),
			"BADGERLOG_POWERLOSS_SKEY="+skey,
			"BADGERLOG_POWERLOSS_ACKED="+ackedPath,
			fmt.Sprintf("BADGERLOG_POWERLOSS_RUN=%d", k),
			fmt.Sprintf("BADGERLOG_POWERLOSS_MUSTEXIST=%t", k > 0),
			fmt.Sprintf("BADGERLOG_POWERLOSS_CHECKONLY=%t", checkOnly))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		var mu sync.Mutex
		var lines []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				switch {
				case line == "READY":
					close(ready)
				case strings.HasPrefix(line, "ack "):
					f := strings.SplitN(line, " ", 3)
					idx, _ := strconv.ParseUint(f[1], 10, 64)
					mu.Lock()
					if old, ok := acked[idx]; ok {
						t.Errorf("cut %d: index %d acknowledged for entry %q, and before for %q", k, idx, f[2], old)
					}
					acked[idx] = f[2]
					mu.Unlock()
				default:
					mu.Lock()
					lines = append(lines, line)
					mu.Unlock()
				}
			}
		}()
		if checkOnly {
			cmd.Wait()
			<-done
		} else {
			select {
			case <-ready:
				time.Sleep(time.Duration(100+mrand.IntN(400)) * time.Millisecond)
				cmd.Process.Kill()
				cmd.Wait()
				<-done
			case <-done:
				cmd.Wait()
			}
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "FAIL") {
				t.Errorf("after cut %d: %s", k, l)
			}
		}
		if t.Failed() {
			t.Fatalf("child output:\n%s\n%s", strings.Join(lines, "\n"), stderr.String())
		}
		if err := fs.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		saveAcked()
	}
	for k := range cuts {
		run(k, false)
	}
	run(cuts, true)
	st := fs.Stats()
	t.Logf("%d cuts, %d entries acknowledged, all there after every cut; power-loss FS: %+v", cuts, len(acked), st)
}

// TestPowerLossChild is TestPowerLoss's child process.
func TestPowerLossChild(t *testing.T) {
	dir := os.Getenv("BADGERLOG_POWERLOSS_DIR")
	if dir == "" {
		t.Skip("run by TestPowerLoss")
	}
	ctx := context.Background()
	signer, err := note.NewSigner(os.Getenv("BADGERLOG_POWERLOSS_SKEY"))
	if err != nil {
		t.Fatal(err)
	}
	_, vkey, err := tlog.NewSigner(os.Getenv("BADGERLOG_POWERLOSS_SKEY"))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(ctx, Config{Dir: dir, Signer: signer, MemoryBudget: 12 << 20, MustExist: os.Getenv("BADGERLOG_POWERLOSS_MUSTEXIST") == "true"})
	if err != nil {
		fmt.Printf("FAIL opening: %v\n", err)
		return
	}
	defer e.Close()
	// Every acknowledged entry at its index, and the whole log sound.
	b, err := os.ReadFile(os.Getenv("BADGERLOG_POWERLOSS_ACKED"))
	if err != nil {
		t.Fatal(err)
	}
	size := e.latestSize.Load()
	want := make([][]byte, size)
	for line := range strings.Lines(string(b)) {
		var idx uint64
		var run, seq int
		if _, err := fmt.Sscanf(line, "%d %d %d", &idx, &run, &seq); err != nil {
			t.Fatalf("acked line %q: %v", line, err)
		}
		if idx >= size {
			fmt.Printf("FAIL entry %d (run %d seq %d) was acknowledged but the log has size %d\n", idx, run, seq, size)
			continue
		}
		want[idx] = powerLossEntry(run, seq)
	}
	if err := enginetest.CheckLog(ctx, e, verifier, nil); err != nil {
		fmt.Printf("FAIL whole-log check: %v\n", err)
	}
	for i := uint64(0); i*tlog.TileWidth < size; i++ {
		tile, _ := tlog.TileForSize(0, i, size)
		bundle, err := e.ReadEntryBundle(ctx, i, tile.Width)
		if err != nil {
			fmt.Printf("FAIL bundle %d: %v\n", i, err)
			break
		}
		got, err := tlog.ParseBundle(bundle)
		if err != nil {
			fmt.Printf("FAIL bundle %d: %v\n", i, err)
			break
		}
		for j, entry := range got {
			idx := i*tlog.TileWidth + uint64(j)
			if want[idx] != nil && !bytes.Equal(entry, want[idx]) {
				fmt.Printf("FAIL entry %d is not the entry acknowledged at that index\n", idx)
			}
		}
	}
	if os.Getenv("BADGERLOG_POWERLOSS_CHECKONLY") == "true" {
		return
	}
	fmt.Println("READY")
	run, _ := strconv.Atoi(os.Getenv("BADGERLOG_POWERLOSS_RUN"))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var seq int
	for range 8 {
		wg.Go(func() {
			for {
				mu.Lock()
				s := seq
				seq++
				mu.Unlock()
				idx, err := e.Add(ctx, powerLossEntry(run, s))
				if err != nil {
					return
				}
				mu.Lock()
				fmt.Printf("ack %d %d %d\n", idx, run, s)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestMustExist: a log known to exist whose files are gone, or whose
// database holds no tree state, is refused instead of started afresh.
func TestMustExist(t *testing.T) {
	signer, _ := newKey(t)
	ctx := t.Context()
	missing := filepath.Join(t.TempDir(), "engine")
	if _, err := Open(ctx, Config{Dir: missing, Signer: signer, MustExist: true}); !errors.Is(err, badgeropen.ErrMissing) {
		t.Errorf("Open(MustExist) on a missing directory = %v, want ErrMissing", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("Open(MustExist) created %s", missing)
	}
	// A badger database without a log in it.
	empty := filepath.Join(t.TempDir(), "engine")
	db, err := badgeropen.Open(ctx, badger.DefaultOptions(empty).WithLogger(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(ctx, Config{Dir: empty, Signer: signer, MustExist: true}); !errors.Is(err, ErrMissingState) {
		t.Errorf("Open(MustExist) on a database with no log = %v, want ErrMissingState", err)
	}
	// And a log that exists opens.
	dir := filepath.Join(t.TempDir(), "engine")
	e, err := Open(ctx, Config{Dir: dir, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e, err = Open(ctx, Config{Dir: dir, Signer: signer, MustExist: true})
	if err != nil {
		t.Fatalf("Open(MustExist) on an existing log: %v", err)
	}
	e.Close()
}
