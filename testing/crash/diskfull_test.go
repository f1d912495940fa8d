package crash

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/coproc/soft"
)

// mountTmpfs mounts a tmpfs of size bytes at dir, or skips the test when
// that is not permitted (not root, no mount(8), a container without
// CAP_SYS_ADMIN); with CI=true it fails instead, since CI runs as root on
// a machine where mount works.
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("mount -t tmpfs at %s is not permitted here (%v: %s); the full-disk test needs root and mount(8)", dir, err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// fill writes a file at path until the file system is full, and returns
// how many bytes it wrote.
func fill(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for chunk := len(buf); chunk > 0; {
		m, err := f.Write(buf[:chunk])
		n += int64(m)
		if errors.Is(err, syscall.ENOSPC) {
			chunk /= 2 // fill the last pages too
			continue
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestFullDisk runs the log on a small tmpfs, fills it, and checks what a
// full disk must never break: nothing acknowledged is lost, every
// checkpoint published stays on the log's tree, and once space is freed the
// log (restarted if it died) accepts admissions again and survives a
// SIGKILL. It also checks what issue 11 asks of a full disk: refusals are
// 503 with Retry-After and the log says why ("disk nearly full").
//
// Badger writes its memtable's write-ahead log through a memory-mapped
// sparse file: on a full file system that write faults and the process
// dies with SIGBUS. The engine therefore refuses batches while less than
// badgerlog.Config.MinFreeBytes is free; a log that still dies here fails
// the test.
func TestFullDisk(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	mountTmpfs(t, mnt, 128<<20)
	hc := &http.Client{Timeout: time.Minute}

	srv, err := NewLogServer(ctx, vmledgerBin, dir, filepath.Join(mnt, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Proc.Kill() })
	c := newCoprocessor(t, filepath.Join(dir, "coproc"), soft.Ed25519)
	if _, err := srv.Enrol(ctx, hc, "host", c.cp.PublicKey()); err != nil {
		t.Fatal(err)
	}
	led := newLedger()
	// admitOne signs and admits one envelope; died reports that the log
	// process exited instead of answering.
	admitOne := func() (a answer, died bool) {
		body, n, err := c.envelope(ctx, hc, srv.URL(), "vm-full", led, srv)
		if err != nil {
			if exited, _ := srv.Proc.Exited(); exited {
				return answer{}, true
			}
			t.Fatalf("signing: %v", err)
		}
		a, err = admit(ctx, hc, srv.URL(), body)
		if err != nil {
			// The process may still be dying: wait for it (bounded).
			for range 100 {
				if exited, _ := srv.Proc.Exited(); exited {
					return answer{}, true
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Fatalf("admitting: %v (the log is still running)", err)
		}
		led.count(fmt.Sprintf("%d-%s", a.status, a.reason))
		if a.status/100 == 2 {
			led.ack(a.index, body, c.dir, n)
		}
		return a, false
	}
	for range 20 {
		if a, died := admitOne(); died || a.status != 202 {
			t.Fatalf("admission before the disk is full = %+v (log died: %v), want 202", a, died)
		}
	}

	filler := filepath.Join(mnt, "filler")
	n, err := fill(filler)
	if err != nil {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	t.Logf("filled the tmpfs with %d MiB", n>>20)

	// Admit until the log refuses ten times (or dies); everything it
	// acknowledges meanwhile must survive (checked below). A refusal must
	// be 503 with Retry-After.
	refused, crash := 0, ""
	for i := 0; i < 2000 && refused < 10; i++ {
		a, died := admitOne()
		if died {
			crash = crashReport(srv.LogPath())
			t.Logf("the log died on the full disk after %d admissions:\n%s", i, crash)
			break
		}
		switch {
		case a.status/100 == 2:
		case a.status == 503 && a.retryAfter != "":
			refused++
		default:
			t.Fatalf("admission on a full disk = %+v, want 202 or 503 with Retry-After", a)
		}
	}
	if crash == "" {
		if refused == 0 {
			t.Fatalf("2000 admissions on a full disk were all acknowledged, want 503 refusals (answers: %s)", led.summary())
		}
		if log := srv.Proc.Log(); !strings.Contains(log, "disk nearly full") && !strings.Contains(log, "no space left on device") {
			t.Errorf("the log's stderr says neither %q nor %q:\n%s", "disk nearly full", "no space left on device", tail(srv.LogPath(), 30))
		}
	}

	// Free the space: the log must accept admissions again (after a
	// restart if it died).
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if crash != "" {
		if err := srv.Start(ctx); err != nil {
			t.Fatalf("restarting the log after its crash on a full disk, with space freed: %v", err)
		}
	}
	recovered := false
	deadline := time.Now().Add(2 * time.Minute) // readiness bound, not a timing assertion
	for !recovered && time.Now().Before(deadline) {
		a, died := admitOne()
		switch {
		case died:
			t.Fatalf("the log died after space was freed:\n%s", crashReport(srv.LogPath()))
		case a.status/100 == 2:
			recovered = true
		case a.status == 503:
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("admission after freeing space = %+v, want 202 or 503", a)
		}
	}
	if !recovered {
		t.Fatalf("the log still refuses admissions 2 minutes after space was freed (answers: %s); its log:\n%s", led.summary(), tail(srv.LogPath(), 30))
	}
	for range 20 {
		if a, died := admitOne(); died || a.status != 202 {
			t.Fatalf("admission after recovery = %+v (log died: %v), want 202", a, died)
		}
	}
	seen, acked, maxIdx := led.snapshot()
	final, err := srv.WaitCheckpoint(ctx, hc, maxIdx+1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckLog(ctx, hc, srv.URL(), srv.Verifier, final, seen, acked); err != nil {
		t.Fatalf("after recovery: %v", err)
	}

	// And once more after a crash.
	srv.Proc.Kill()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	seen, acked, maxIdx = led.snapshot()
	if final, err = srv.WaitCheckpoint(ctx, hc, maxIdx+1); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckLog(ctx, hc, srv.URL(), srv.Verifier, final, seen, acked); err != nil {
		t.Fatalf("after a crash following recovery: %v", err)
	}
	if a, died := admitOne(); died || a.status != 202 {
		t.Errorf("admission after the restart = %+v (log died: %v), want 202", a, died)
	}
	t.Logf("full disk: %d refusals; %s", refused, led.summary())
	if crash != "" {
		first, _, _ := strings.Cut(crash, "\n")
		msg := fmt.Sprintf("on a full disk the log died (%s) instead of answering 503; nothing acknowledged was lost and it recovered after a restart", first)
		t.Fatal(msg)
	}
}

// TestWitnessFullDisk runs a witness on a small tmpfs, fills it while a
// log submits checkpoints, and checks that the witness never answered 200
// for a state it did not persist: after space is freed (and a restart if
// it died), its stored size is at least every size it cosigned, and it
// cosigns again. A crash on the full disk is reported like TestFullDisk's.
func TestWitnessFullDisk(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	mountTmpfs(t, mnt, 128<<20)
	hc := &http.Client{Timeout: time.Minute}

	skey, vkey, err := note.GenerateKey(rand.Reader, "vmledger.test/full-log")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	l := &testLog{origin: signer.Name(), signer: signer, verifier: verifier, counts: map[string]int{}}
	w, err := NewWitnessServer(ctx, vmledgerBin, mnt, "vmledger.test/wfull", []string{vkey}, "--rate", "0")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Proc.Kill() })
	submit := func() (died bool) {
		l.submit(ctx, hc, w.Proc.URL)
		exited, _ := w.Proc.Exited()
		return exited
	}
	for range 20 {
		if submit() {
			t.Fatalf("the witness died before the disk was full:\n%s", crashReport(w.LogPath()))
		}
	}
	filler := filepath.Join(mnt, "filler")
	if _, err := fill(filler); err != nil {
		t.Fatal(err)
	}
	crash := ""
	for i := 0; i < 500; i++ {
		if submit() {
			crash = crashReport(w.LogPath())
			t.Logf("the witness died on the full disk after %d submissions:\n%s", i, crash)
			break
		}
		time.Sleep(5 * time.Millisecond)
		if exited, _ := w.Proc.Exited(); exited {
			crash = crashReport(w.LogPath())
			t.Logf("the witness died on the full disk after %d submissions:\n%s", i, crash)
			break
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// Whatever happened, restart on the freed disk and check its state.
	w.Proc.Kill()
	if err := w.Start(ctx); err != nil {
		t.Fatalf("restarting the witness with space freed: %v", err)
	}
	b, err := Get(ctx, hc, w.Proc.URL+"/"+hex.EncodeToString(sha256Sum(l.origin))+"/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := OpenCheckpoint(b, verifier)
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	cosigned, failures, counts := l.cosigned, l.failures, l.counts
	l.failures = nil
	l.mu.Unlock()
	if stored.Size < cosigned {
		t.Errorf("after the full disk the witness's stored size is %d, but it answered 200 for size %d", stored.Size, cosigned)
	}
	for _, f := range failures {
		t.Logf("on the full disk: %s", f) // refusals on a full disk are expected; only 200s count
	}
	before := cosigned
	for range 5 {
		submit()
	}
	l.mu.Lock()
	after := l.cosigned
	l.mu.Unlock()
	if after <= before {
		t.Errorf("the witness cosigned nothing after space was freed (answers %v)", counts)
	}
	t.Logf("witness full disk: answers %v; stored size %d ≥ cosigned %d", counts, stored.Size, cosigned)
	if crash != "" {
		first, _, _ := strings.Cut(crash, "\n")
		msg := fmt.Sprintf("on a full disk the witness died (%s); it lost no cosigned state and recovered after a restart", first)
		t.Fatal(msg)
	}
}
