package witness

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/witness/policy"
)

// seededKey returns the x/mod key pair of an Ed25519 key from a 32-byte seed
// of one repeated byte.
func seededKey(t testing.TB, b byte, name string) (skey, vkey string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{b}, 32)), name)
	if err != nil {
		t.Fatal(err)
	}
	return skey, vkey
}

// testLog is an in-memory log: leaves "vmcfg 0", "vmcfg 1", … and a signer.
type testLog struct {
	t      testing.TB
	origin string
	vkey   string
	signer note.Signer
	tree   *testonly.Tree
	prefix string // leaf prefix, to build forks
}

const testOrigin = "example.com/ledger"

func newTestLog(t testing.TB, size int) *testLog {
	return newTestLogPrefix(t, size, "vmcfg ")
}

func newTestLogPrefix(t testing.TB, size int, prefix string) *testLog {
	t.Helper()
	skey, vkey := seededKey(t, 0x02, testOrigin)
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l := &testLog{t: t, origin: testOrigin, vkey: vkey, signer: s, tree: testonly.New(rfc6962.DefaultHasher), prefix: prefix}
	l.grow(size)
	return l
}

func (l *testLog) grow(size int) {
	for i := int(l.tree.Size()); i < size; i++ {
		l.tree.AppendData(fmt.Appendf(nil, "%s%d", l.prefix, i))
	}
}

func (l *testLog) text(size uint64) string {
	return fmt.Sprintf("%s\n%d\n%s\n", l.origin, size, base64.StdEncoding.EncodeToString(l.tree.HashAt(size)))
}

// checkpoint returns the log-signed checkpoint at size.
func (l *testLog) checkpoint(size uint64) []byte {
	l.t.Helper()
	n, err := note.Sign(&note.Note{Text: l.text(size)}, l.signer)
	if err != nil {
		l.t.Fatal(err)
	}
	return n
}

func (l *testLog) proof(old, size uint64) [][]byte {
	l.t.Helper()
	if old == 0 {
		return nil
	}
	p, err := l.tree.ConsistencyProof(old, size)
	if err != nil {
		l.t.Fatal(err)
	}
	return p
}

func (l *testLog) body(old, size uint64) []byte {
	return MarshalAddCheckpoint(old, l.proof(old, size), l.checkpoint(size))
}

func (l *testLog) policyLog(t testing.TB, u string) *policy.Log {
	t.Helper()
	line := "log " + l.vkey
	if u != "" {
		line += " " + u
	}
	logs, err := policy.ParseLogs([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return logs[0]
}

// testWitness is a witness with a real badger store in a temp dir, served
// over HTTP on 127.0.0.1.
type testWitness struct {
	w     *Witness
	store *Store
	srv   *httptest.Server
	url   *url.URL
	dir   string
	logs  *syncBuffer // the witness's log output (JSON lines)
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type witnessOpts struct {
	seed   byte
	name   string
	budget Budget
	now    func() time.Time
	logs   []*policy.Log
	dir    string
}

func newTestWitness(t testing.TB, o witnessOpts) *testWitness {
	t.Helper()
	if o.seed == 0 {
		o.seed = 0x01
	}
	if o.name == "" {
		o.name = "witness.example/w1"
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	skey, _ := seededKey(t, o.seed, o.name)
	c, err := NewCosigner(skey, o.now)
	if err != nil {
		t.Fatal(err)
	}
	store, err := OpenStore(o.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	handlers := []slog.Handler{slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})}
	if testing.Verbose() {
		handlers = append(handlers, slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	logger := slog.New(slog.NewMultiHandler(handlers...)).With("witness", o.name)
	w, err := New(Config{Logs: o.logs, Cosigner: c, Store: store, Budget: o.budget, Now: o.now, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	u, _ := url.Parse(srv.URL)
	tw := &testWitness{w: w, store: store, srv: srv, url: u, dir: o.dir, logs: logs}
	t.Cleanup(tw.close)
	return tw
}

func (tw *testWitness) close() {
	if tw.srv != nil {
		tw.srv.Close()
		tw.store.Close()
		tw.srv = nil
	}
}

type response struct {
	code int
	ct   string
	body string
	hdr  http.Header
}

func post(t testing.TB, base *url.URL, body []byte) response {
	t.Helper()
	resp, err := http.Post(base.JoinPath("add-checkpoint").String(), "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: string(b), hdr: resp.Header}
}

func get(t testing.TB, u string) response {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: string(b), hdr: resp.Header}
}

// mustCosign posts and fails the test unless the answer is 200.
func mustCosign(t testing.TB, base *url.URL, body []byte) string {
	t.Helper()
	r := post(t, base, body)
	if r.code != http.StatusOK {
		t.Fatalf("add-checkpoint = %d %q, want 200", r.code, r.body)
	}
	return r.body
}

// replaceLine replaces line i (0-based) of s.
func replaceLine(s string, i int, with string) string {
	lines := strings.Split(s, "\n")
	lines[i] = with
	return strings.Join(lines, "\n")
}
