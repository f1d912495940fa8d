package admission

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/publish"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/witness/policy"
)

const testOrigin = "admission.test/log"

// clock is a settable clock for freshness tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// gatedEngine is the real engine with fault hooks on Add (tests only).
type gatedEngine struct {
	engine.Engine
	mu      sync.Mutex
	gate    chan struct{} // if set, Add waits for it to close
	entered chan struct{}
	fail    error // if set, Add returns it once without appending
}

func (g *gatedEngine) Add(ctx context.Context, entry []byte) (uint64, error) {
	g.mu.Lock()
	gate, entered, fail := g.gate, g.entered, g.fail
	g.fail = nil
	g.mu.Unlock()
	if fail != nil {
		return 0, fail
	}
	if gate != nil {
		if entered != nil {
			entered <- struct{}{}
		}
		<-gate
	}
	return g.Engine.Add(ctx, entry)
}

// deployment is a real log: a badger engine, a publisher (optionally with
// witnesses), the HTTP server with the admission service, on a loopback port.
type deployment struct {
	t        testing.TB
	logDir   string
	indexDir string
	skey     string
	vkey     string
	token    []byte
	clock    *clock
	policy   *policy.Policy // nil: no witnesses
	opts     func(*Config)

	eng     *badgerlog.Engine
	gated   *gatedEngine
	pub     *publish.Publisher
	svc     *Service
	hs      *httptest.Server
	stopPub func()
}

func newDeployment(t testing.TB, opts func(*Config)) *deployment {
	t.Helper()
	return newWitnessedDeployment(t, opts, nil)
}

// newWitnessedDeployment starts a deployment whose publisher requires the
// witness policy made by witnesses (given the log's verifier key); nil
// means no witnesses.
func newWitnessedDeployment(t testing.TB, opts func(*Config), witnesses func(logVKey string) *policy.Policy) *deployment {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := &deployment{t: t, logDir: filepath.Join(dir, "log"), indexDir: filepath.Join(dir, "index"),
		skey: skey, vkey: vkey, token: []byte("s3cret-admin-token"),
		clock: &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}, opts: opts}
	if witnesses != nil {
		d.policy = witnesses(vkey)
	}
	d.start()
	t.Cleanup(d.stop)
	return d
}

// start opens the engine, publisher, service and server on the
// deployment's directories.
func (d *deployment) start() {
	t := d.t
	t.Helper()
	ctx := t.Context()
	signer, err := note.NewSigner(d.skey)
	if err != nil {
		t.Fatal(err)
	}
	d.eng, err = badgerlog.Open(ctx, badgerlog.Config{Dir: d.logDir, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	d.gated = &gatedEngine{Engine: d.eng}
	d.pub, err = publish.New(publish.Config{Engine: d.eng, Policy: d.policy, Poll: time.Millisecond, Retry: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { d.pub.Run(pctx); close(done) }()
	d.stopPub = func() { cancel(); <-done }
	srv, err := server.New(server.Config{Engine: d.gated, Published: d.pub.Latest})
	if err != nil {
		t.Fatal(err)
	}
	c := Config{Engine: d.gated, Publisher: d.pub, Dir: d.indexDir, AdminToken: d.token,
		Registry: srv.Registry(), Now: d.clock.Now}
	if d.opts != nil {
		d.opts(&c)
	}
	d.svc, err = New(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	d.svc.Register(srv)
	d.hs = httptest.NewServer(srv.Handler())
}

// stop closes everything in order; it is idempotent.
func (d *deployment) stop() {
	if d.hs == nil {
		return
	}
	d.hs.Close()
	d.svc.Close()
	d.stopPub()
	d.eng.Close()
	d.hs = nil
}

func (d *deployment) restart() {
	d.t.Helper()
	d.stop()
	d.start()
}

// size returns the engine's tree size.
func (d *deployment) size() uint64 {
	d.t.Helper()
	return engineSize(d.t, d.eng)
}

// engineSize returns the tree size of eng's latest checkpoint.
func engineSize(t testing.TB, eng engine.Engine) uint64 {
	t.Helper()
	signed, err := eng.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseSigned(signed)
	if err != nil {
		t.Fatal(err)
	}
	return c.Size
}

// anchor returns the latest published checkpoint as a freshness anchor,
// waiting until the engine's latest is published.
func (d *deployment) anchor() coproc.Anchor {
	d.t.Helper()
	signed, err := d.pub.Wait(d.t.Context(), d.size())
	if err != nil {
		d.t.Fatal(err)
	}
	c, err := parseSigned(signed)
	if err != nil {
		d.t.Fatal(err)
	}
	// What the service's tracker does when it sees the publication; done
	// here too so that the replacement time is taken before the test
	// moves the clock.
	d.svc.fresh.observe(c)
	return coproc.Anchor{Origin: c.Origin, Size: c.Size, Root: c.Root}
}

func (d *deployment) client() *EnrolClient {
	return &EnrolClient{Base: d.hs.URL, Token: d.token}
}

// device is a test co-processor: a key that signs statements with
// counters chosen by the test.
type device struct {
	priv crypto.Signer
	pub  crypto.PublicKey
	id   string
}

func newDevice(t testing.TB, p256 bool) *device {
	t.Helper()
	var priv crypto.Signer
	var err error
	if p256 {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	id, err := coproc.KeyID(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &device{priv: priv, pub: priv.Public(), id: id}
}

func (dv *device) pem(t testing.TB) []byte {
	t.Helper()
	b, err := cryptoutils.MarshalPublicKeyToPEM(dv.pub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (dv *device) sign(pae []byte) ([]byte, error) { return coproc.SignPAE(dv.priv, pae) }

var testParams = []string{"cpu.count", "kernel.cmdline", "memory.bytes"}

// attest returns the canonical envelope of a statement about vm with root
// sha256(vm) by default.
func (dv *device) attest(t testing.TB, vm string, root [32]byte, counter uint64, a coproc.Anchor) []byte {
	t.Helper()
	return dv.attestParams(t, vm, root, testParams, counter, a)
}

func (dv *device) attestParams(t testing.TB, vm string, root [32]byte, params []string, counter uint64, a coproc.Anchor) []byte {
	t.Helper()
	st, err := coproc.NewStatement(coproc.Claim{VMID: vm, Root: root, Parameters: params, Freshness: a},
		coproc.CoprocessorState{KeyID: dv.id, Counter: counter}, time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	env, err := coproc.Seal(st, dv.pub, dv.sign)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rootOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// reply is a decoded HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d %q: %v", r.status, r.body, err)
	}
}

func (r reply) reason(t testing.TB) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil || e.Reason == "" || e.Error == "" {
		t.Fatalf("error answer %d %q is not {error, reason}", r.status, r.body)
	}
	return e.Reason
}

func do(t testing.TB, method, url string, body []byte, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (d *deployment) post(body []byte, query string) reply {
	d.t.Helper()
	return do(d.t, http.MethodPost, d.hs.URL+"/v1/attestations"+query, body)
}

// get waits for the index to cover the log (Service.Sync), then GETs path.
func (d *deployment) get(path string) reply {
	d.t.Helper()
	if err := d.svc.Sync(d.t.Context()); err != nil {
		d.t.Fatal(err)
	}
	return do(d.t, http.MethodGet, d.hs.URL+path, nil)
}

// enrol enrols dv through the HTTP API.
func (d *deployment) enrol(dv *device, name string) Key {
	d.t.Helper()
	k, _, err := d.client().Enrol(d.t.Context(), name, dv.pem(d.t))
	if err != nil {
		d.t.Fatalf("enrol %s: %v", name, err)
	}
	return k
}

// admit posts env and requires a 202 or 201 answer; it returns the index.
func (d *deployment) admit(env []byte) uint64 {
	d.t.Helper()
	r := d.post(env, "")
	if r.status != http.StatusAccepted {
		d.t.Fatalf("POST /v1/attestations = %d %s, want 202", r.status, r.body)
	}
	var a AdmitResponse
	r.json(d.t, &a)
	return a.Index
}

func mustf(t testing.TB, cond bool, format string, args ...any) {
	t.Helper()
	if !cond {
		t.Fatalf(format, args...)
	}
}
