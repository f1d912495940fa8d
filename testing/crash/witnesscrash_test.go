package crash

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vmledger/vmledger/testing/powerloss"
)

// testLog is the log side of the witness crash test: an in-memory tree and
// its key.
type testLog struct {
	mu       sync.Mutex
	origin   string
	signer   note.Signer
	verifier note.Verifier
	tree     Tree
	entries  [][]byte
	believed int64 // the size the log believes the witness cosigned last

	cosigned    int64 // the largest size the witness answered 200 for
	counts      map[string]int
	failures    []string
	submissions int
}

// next grows the tree by 1–3 entries and returns a signed checkpoint of the
// new size with the proof from the size the witness last cosigned.
func (l *testLog) next() (body []byte, size int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for range 1 + mrand.IntN(3) {
		e := make([]byte, 16)
		rand.Read(e)
		l.entries = append(l.entries, e)
		l.tree.Append(e)
	}
	size = l.tree.Size()
	root, err := l.tree.Root(size)
	if err != nil {
		return nil, 0, err
	}
	proof, err := l.tree.Proof(l.believed, size)
	if err != nil {
		return nil, 0, err
	}
	body, err = addCheckpointBody(l.signer, l.believed, proof, Checkpoint{Origin: l.origin, Size: size, Root: root})
	return body, size, err
}

func addCheckpointBody(s note.Signer, old int64, proof []tlog.Hash, c Checkpoint) ([]byte, error) {
	signed, err := note.Sign(&note.Note{Text: c.Text()}, s)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", old)
	for _, h := range proof {
		fmt.Fprintf(&b, "%s\n", base64.StdEncoding.EncodeToString(h[:]))
	}
	b.WriteString("\n")
	b.Write(signed)
	return b.Bytes(), nil
}

func postCheckpoint(ctx context.Context, hc *http.Client, base string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

func (l *testLog) fail(format string, args ...any) {
	l.mu.Lock()
	if len(l.failures) < 50 {
		l.failures = append(l.failures, fmt.Sprintf(format, args...))
	}
	l.mu.Unlock()
}

// submit sends one new checkpoint and records the answer.
func (l *testLog) submit(ctx context.Context, hc *http.Client, base string) (backoff bool) {
	body, size, err := l.next()
	if err != nil {
		l.fail("building a checkpoint: %v", err)
		return true
	}
	status, text, err := postCheckpoint(ctx, hc, base, body)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.submissions++
	if err != nil {
		l.counts["transport-error"]++
		return true
	}
	l.counts[strconv.Itoa(status)]++
	switch status {
	case http.StatusOK:
		if !strings.HasPrefix(text, "— ") {
			l.failures = append(l.failures, fmt.Sprintf("200 for size %d without a cosignature line: %q", size, text))
		}
		l.cosigned = max(l.cosigned, size)
		l.believed = max(l.believed, size)
	case http.StatusConflict:
		n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if err != nil || n > l.tree.Size() {
			l.failures = append(l.failures, fmt.Sprintf("409 with body %q: want a size of this log's tree (≤ %d)", text, l.tree.Size()))
			return true
		}
		l.believed = n
	default:
		l.failures = append(l.failures, fmt.Sprintf("add-checkpoint of a consistent checkpoint of size %d = %d %q, want 200 or 409", size, status, text))
		return true
	}
	return false
}

// TestWitnessCrash kills `vmledger witness serve` with SIGKILL at random
// moments while three clients submit checkpoints of one growing log, and
// after every restart checks that the witness's stored checkpoint never
// went back (its size is at least every size it answered 200 for, and it
// is on the log's tree) and that it refuses forks signed with the same log
// key: the same size with another root, and a larger tree that rewrote
// history (409 or 422, never 200), and a smaller size (4xx). Every fourth
// time it is also killed once while it starts. The number of
// kills is VMLEDGER_CRASH_KILLS (default 20).
func TestWitnessCrash(t *testing.T) {
	testWitnessCrash(t, nil)
}

// TestWitnessPowerLoss is TestWitnessCrash with the witness's data
// directory on a power-loss file system (package powerloss): every kill is
// also a power cut, which takes back everything the witness had not synced.
// VMLEDGER_POWERLOSS_CUTS sets the number of cuts (default 20).
func TestWitnessPowerLoss(t *testing.T) {
	testWitnessCrash(t, powerloss.New(t))
}

func testWitnessCrash(t *testing.T, power *powerloss.FS) {
	kills := envInt(t, "VMLEDGER_CRASH_KILLS", 20)
	if power != nil {
		kills = envInt(t, "VMLEDGER_POWERLOSS_CUTS", 20)
	}
	ctx := t.Context()
	dir := t.TempDir()
	hc := &http.Client{Timeout: time.Minute}
	start := time.Now()

	skey, vkey, err := note.GenerateKey(rand.Reader, "vmledger.test/witnessed-log")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	l := &testLog{origin: signer.Name(), signer: signer, verifier: verifier, counts: map[string]int{}}
	w, err := NewWitnessServer(ctx, vmledgerBin, filepath.Join(dir, "w1"), "vmledger.test/w1", []string{vkey}, "--rate", "0")
	if err != nil {
		t.Fatal(err)
	}
	cut := func(k int) {
		if power == nil {
			return
		}
		if err := power.Restart(ctx); err != nil {
			t.Fatalf("kill %d: cutting the power: %v", k+1, err)
		}
	}
	if power != nil {
		w.Data = filepath.Join(power.Dir(), "w1")
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Proc.Kill() })
	monitorPath := "/" + hex.EncodeToString(sha256Sum(l.origin)) + "/checkpoint"

	g := newGate(w.Proc.URL)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				base, ok := g.enter()
				if !ok {
					return
				}
				backoff := l.submit(ctx, hc, base)
				g.leave()
				if backoff {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	defer func() {
		g.stop()
		wg.Wait()
	}()

	survived, forks, recoveryKills := 0, 0, 0
	var prevStored int64
	for k := range kills {
		time.Sleep(time.Duration(20+mrand.IntN(400)) * time.Millisecond)
		w.Proc.Kill()
		cut(k)
		g.pause()
		if k%4 == 3 { // and once more while it starts
			if err := w.KillDuringStart(ctx, time.Duration(mrand.IntN(200))*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			cut(k)
			recoveryKills++
		}
		if err := w.Start(ctx); err != nil {
			t.Fatalf("kill %d: restarting the witness: %v", k+1, err)
		}
		when := fmt.Sprintf("after kill %d", k+1)
		l.mu.Lock()
		cosigned := l.cosigned
		l.mu.Unlock()

		b, err := Get(ctx, hc, w.Proc.URL+monitorPath)
		if err != nil {
			if se, ok := err.(*StatusError); !(ok && se.Status == 404 && cosigned == 0) {
				t.Fatalf("%s: reading the witness's checkpoint: %v", when, err)
			}
			b = nil
		}
		var stored Checkpoint
		if b != nil {
			if stored, err = OpenCheckpoint(b, verifier); err != nil {
				t.Fatalf("%s: the witness's checkpoint: %v", when, err)
			}
		}
		l.mu.Lock()
		if stored.Size < prevStored {
			t.Errorf("%s: the witness's stored size is %d, after %d at the previous restart: it went backwards", when, stored.Size, prevStored)
		}
		prevStored = stored.Size
		if stored.Size < cosigned {
			t.Errorf("%s: the witness's stored size is %d, but it cosigned size %d before the crash: it went backwards", when, stored.Size, cosigned)
		}
		if stored.Size > l.tree.Size() {
			t.Errorf("%s: the witness's stored size %d is beyond the log's %d", when, stored.Size, l.tree.Size())
		} else if root, _ := l.tree.Root(stored.Size); b != nil && root != stored.Root {
			t.Errorf("%s: the witness's stored checkpoint of size %d has root %v, the log's tree %v", when, stored.Size, stored.Root, root)
		}
		entries := append([][]byte(nil), l.entries...)
		l.mu.Unlock()

		forks += checkForks(t, when, hc, w.Proc.URL, signer, l.origin, entries, stored.Size)
		if b2, err := Get(ctx, hc, w.Proc.URL+monitorPath); (b != nil || err == nil) && !bytes.Equal(b, b2) {
			t.Errorf("%s: the witness's checkpoint changed after fork attempts:\n%s\nbecame\n%s", when, b, b2)
		}
		if t.Failed() {
			t.Logf("log of the witness: %s", w.LogPath())
			break
		}
		survived++
		g.resume(w.Proc.URL)
	}
	g.stop()
	wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.failures {
		t.Error(f)
	}
	if l.cosigned == 0 {
		t.Errorf("the witness never cosigned anything (answers %v)", l.counts)
	}
	t.Logf("kills survived: %d of %d, plus %d while starting; submissions=%d answers=%v largest cosigned size=%d; fork attempts refused=%d; %v",
		survived, kills, recoveryKills, l.submissions, l.counts, l.cosigned, forks, time.Since(start).Round(time.Millisecond))
	if power != nil {
		t.Logf("power cuts: %+v", power.Stats())
	}
}

func sha256Sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// checkForks submits checkpoints signed by the log's key that contradict
// the witness's stored size s, and returns how many were refused.
func checkForks(t *testing.T, when string, hc *http.Client, base string, signer note.Signer, origin string, entries [][]byte, s int64) int {
	t.Helper()
	ctx := t.Context()
	type attempt struct {
		name string
		body []byte
		want []int
	}
	var attempts []attempt
	add := func(name string, old int64, proof []tlog.Hash, c Checkpoint, want ...int) {
		body, err := addCheckpointBody(signer, old, proof, c)
		if err != nil {
			t.Fatal(err)
		}
		attempts = append(attempts, attempt{name, body, want})
	}
	// The same size with another root.
	var other tlog.Hash
	rand.Read(other[:])
	add("same size, other root", s, nil, Checkpoint{origin, s, other}, 409, 422)
	// A tree that rewrote its last entry and grew, with a proof that holds
	// in that tree.
	if s > 0 {
		var fork Tree
		for i, e := range entries[:s] {
			if int64(i) == s-1 {
				e = append([]byte("rewritten "), e...)
			}
			fork.Append(e)
		}
		for range 3 {
			fork.Append([]byte("fork"))
		}
		root, _ := fork.Root(s + 3)
		proof, err := fork.Proof(s, s+3)
		if err != nil {
			t.Fatal(err)
		}
		add("rewritten history", s, proof, Checkpoint{origin, s + 3, root}, 409, 422)
		// A smaller tree (a rollback), claiming the stored size as old.
		var prefix Tree
		for _, e := range entries[:s-1] {
			prefix.Append(e)
		}
		root, _ = prefix.Root(s - 1)
		add("rollback", s, nil, Checkpoint{origin, s - 1, root}, 400, 409, 422)
	}
	refused := 0
	for _, a := range attempts {
		status, text, err := postCheckpoint(ctx, hc, base, a.body)
		if err != nil {
			t.Errorf("%s: %s: %v", when, a.name, err)
			continue
		}
		ok := false
		for _, w := range a.want {
			ok = ok || status == w
		}
		if !ok {
			t.Errorf("%s: fork attempt %q against stored size %d = %d %q, want one of %v", when, a.name, s, status, strings.TrimSpace(text), a.want)
			continue
		}
		refused++
	}
	return refused
}
