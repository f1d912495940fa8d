package crash

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/coproc/soft"
)

// getStatus returns the status code and body of GET url.
func getStatus(ctx context.Context, hc *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), err
}

// stopAfterStorageFailure sends SIGTERM to p and fails the test unless the
// process ends. Process.Stop waits up to a minute: the bound is for a
// process that ignores SIGTERM (the fault), not a measure of speed.
func stopAfterStorageFailure(t *testing.T, p *Process, logPath string) {
	t.Helper()
	t0 := time.Now()
	err := p.Stop()
	if exited, _ := p.Exited(); !exited || err != nil && strings.Contains(err.Error(), "did not stop") {
		t.Fatalf("SIGTERM after a storage failure: %v; its log:\n%s", err, tail(logPath, 15))
	}
	t.Logf("the process exited %v after SIGTERM: %v", time.Since(t0).Round(100*time.Millisecond), err)
}

// TestWitnessStorageRemoved removes the data directory under a running
// witness (issue 16, fault 6). Badger keeps writing into the files it has
// open, which are gone: a cosignature answered then would claim a state
// that no restart can read. The witness must refuse (503 with a reason)
// from then on, say so at /healthz, and end on SIGTERM.
func TestWitnessStorageRemoved(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	hc := &http.Client{Timeout: time.Minute}
	skey, vkey, err := note.GenerateKey(rand.Reader, "vmledger.test/removed-log")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	l := &testLog{origin: signer.Name(), signer: signer, verifier: verifier, counts: map[string]int{}}
	w, err := NewWitnessServer(ctx, vmledgerBin, filepath.Join(dir, "w"), "vmledger.test/wremoved", []string{vkey}, "--rate", "0")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Proc.Kill() })
	for range 10 {
		l.submit(ctx, hc, w.Proc.URL)
	}
	if l.cosigned == 0 {
		t.Fatalf("the witness cosigned nothing before its data directory was removed: %v %v", l.counts, l.failures)
	}
	removeUnder(t, filepath.Join(w.Dir, "data"))
	before := l.cosigned
	l.counts = map[string]int{}
	for range 10 {
		body, size, err := l.next()
		if err != nil {
			t.Fatal(err)
		}
		status, text, err := postCheckpoint(ctx, hc, w.Proc.URL, body)
		if err != nil {
			t.Fatalf("add-checkpoint after the data directory was removed: %v", err)
		}
		if status == http.StatusOK {
			t.Errorf("add-checkpoint of size %d after the data directory was removed = 200 %q: a cosignature for a state it cannot have persisted", size, text)
		} else if status != http.StatusServiceUnavailable || strings.TrimSpace(text) == "" {
			t.Errorf("add-checkpoint after the data directory was removed = %d %q, want 503 with a reason", status, text)
		}
	}
	monitor := w.Proc.URL + "/" + hex.EncodeToString(sha256Sum(l.origin)) + "/checkpoint"
	if code, body, err := getStatus(ctx, hc, monitor); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("monitoring endpoint after the data directory was removed = %d %q %v, want 503", code, body, err)
	}
	code, body, err := getStatus(ctx, hc, w.Proc.URL+"/healthz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "storage") {
		t.Errorf("GET /healthz after the data directory was removed = %d %q %v, want 503 naming the storage failure", code, body, err)
	}
	t.Logf("cosigned up to size %d before the removal; /healthz then: %d %q", before, code, strings.TrimSpace(body))
	stopAfterStorageFailure(t, w.Proc, w.LogPath())
}

// TestLogStorageRemoved removes the data directory under a running `log
// serve` on the badger engine (issue 16, fault 6): admissions must be
// refused with 503 (never acknowledged into files that are gone),
// /healthz must say so, and SIGTERM must end the process.
func TestLogStorageRemoved(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	hc := &http.Client{Timeout: time.Minute}
	srv, err := NewLogServer(ctx, vmledgerBin, dir, "")
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
	if _, err := srv.WaitCheckpoint(ctx, hc, 1); err != nil {
		t.Fatal(err)
	}
	admitOne := func(vm string) answer {
		t.Helper()
		body, _, err := c.envelope(ctx, hc, srv.URL(), vm, nil, srv)
		if err != nil {
			t.Fatal(err)
		}
		a, err := admit(ctx, hc, srv.URL(), body)
		if err != nil {
			t.Fatalf("admitting: %v", err)
		}
		return a
	}
	for i := range 5 {
		if a := admitOne(fmt.Sprint("vm-", i)); a.status != http.StatusAccepted {
			t.Fatalf("admission before the removal = %+v, want 202", a)
		}
	}
	removeUnder(t, srv.Data)
	for i := range 5 {
		a := admitOne(fmt.Sprint("vm-after-", i))
		if a.status/100 == 2 {
			t.Errorf("admission after the data directory was removed = %+v: acknowledged into files that are gone", a)
		} else if a.status != http.StatusServiceUnavailable {
			t.Errorf("admission after the data directory was removed = %+v, want 503", a)
		}
	}
	code, body, err := getStatus(ctx, hc, srv.URL()+"/healthz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "storage") {
		t.Errorf("GET /healthz after the data directory was removed = %d %q %v, want 503 naming the storage failure", code, body, err)
	}
	t.Logf("/healthz after the removal: %d %q", code, strings.TrimSpace(body))
	stopAfterStorageFailure(t, srv.Proc, srv.LogPath())
}

// removeUnder removes dir from under a running server, as an operator's
// rm -rf would. It renames the directory away first, at once (a plain
// RemoveAll races with the server creating files in it and can fail with
// "directory not empty"), then removes the renamed tree.
func removeUnder(t *testing.T, dir string) {
	t.Helper()
	gone := dir + ".removed"
	if err := os.Rename(dir, gone); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(gone); err != nil {
		t.Logf("removing %s (already out of the server's path): %v", gone, err)
	}
}
