package attest_test

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/agent/attest"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/testing/cluster"
)

// emptyCheckpoint is the checkpoint of the empty tree that the log of the
// cluster in dir, and its three witnesses, sign before the log's first
// entry is published: signed with their own keys.
func emptyCheckpoint(t *testing.T, dir, origin string) []byte {
	t.Helper()
	key := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	logSigner, _, err := tlog.NewSigner(key("log.key"))
	if err != nil {
		t.Fatal(err)
	}
	signers := []note.Signer{logSigner}
	for _, w := range []string{"w1", "w2", "w3"} {
		s, err := fnote.NewSignerForCosignatureV1(key("witness-" + w + ".key"))
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	cp := tlog.Checkpoint{Origin: origin, Size: 0, Root: tlog.Hash(sha256.Sum256(nil))}
	signed, err := note.Sign(&note.Note{Text: string(cp.Marshal())}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// emptyFront serves the log at target, but answers the first n GET
// /checkpoint requests (all of them if n < 0) with empty, as the log did
// before it published its first entry; served counts them.
func emptyFront(t *testing.T, target string, empty []byte, n int64, served *atomic.Int64) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/checkpoint" && (n < 0 || served.Load() < n) {
			served.Add(1)
			w.Write(empty)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestEmptyAnchorRetried: an agent that started before the log published a
// non-empty checkpoint anchors to the empty tree, which admission refuses
// (409 empty-anchor); the agent tries again with the log's next checkpoint
// within its deadline instead of refusing the launch.
func TestEmptyAnchorRetried(t *testing.T) {
	dir := t.TempDir()
	c := start(t, cluster.Options{Dir: dir})
	empty := emptyCheckpoint(t, dir, "vmledger.test/log")
	var served atomic.Int64
	a := c.Agent()
	a.LogURL = emptyFront(t, c.LogURL, empty, 2, &served)
	r, err := attest.Attest(t.Context(), a, attest.Request{VMID: "web01", Config: testConfig(), Secret: secret(1)})
	if err != nil {
		t.Fatalf("an agent that first saw the empty checkpoint: %v", err)
	}
	if served.Load() != 2 || r.Anchor.Size == 0 {
		t.Errorf("served the empty checkpoint %d times, anchor size %d: want 2, and a non-empty anchor", served.Load(), r.Anchor.Size)
	}

	// A log that never publishes a non-empty checkpoint: at the deadline
	// the flow could not complete, which is not a refusal.
	var always atomic.Int64
	b := c.Agent()
	b.LogURL = emptyFront(t, c.LogURL, empty, -1, &always)
	b.WaitTimeout = 3 * time.Second
	_, err = attest.Attest(t.Context(), b, attest.Request{VMID: "web01", Config: testConfig(), Secret: secret(1)})
	if !attest.Incomplete(err) || errors.Is(err, attest.ErrRefused) || always.Load() < 2 {
		t.Errorf("err = %v (Incomplete %v) after %d empty checkpoints, want an incomplete flow that retried", err, attest.Incomplete(err), always.Load())
	}
}
