package admission

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/publish"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/tesseralog"
	"github.com/vmledger/vmledger/testing/mysqltest"
)

// frontEnd is one `vmledger log serve --engine tessera` process: its own
// Tessera engine, publisher, admission service (with its own index) and
// HTTP server, on the database it shares with the other front-ends.
type frontEnd struct {
	t     *testing.T
	eng   *tesseralog.Engine
	gated *gatedEngine
	pub   *publish.Publisher
	svc   *Service
	url   string
	token []byte
}

// newFrontEnds starts n front-ends of one log on one new database. Each
// front-end's indexer reads what the others appended only once a minute
// (and on Sync), so that within a test only the shared state
// (Config.Claims, set when shared) tells one front-end what another did.
func newFrontEnds(t *testing.T, n int, shared bool) []*frontEnd {
	t.Helper()
	dsn := mysqltest.NewDatabase(t)
	skey, _, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	var fes []*frontEnd
	for i := range n {
		ctx := t.Context()
		eng, err := tesseralog.Open(ctx, tesseralog.Config{DSN: dsn, Signer: signer,
			BatchMaxAge: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		fe := &frontEnd{t: t, eng: eng, gated: &gatedEngine{Engine: eng}, token: []byte("s3cret-admin-token")}
		fe.pub, err = publish.New(publish.Config{Engine: eng, Poll: 20 * time.Millisecond, Retry: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		published := make(chan struct{})
		go func() { fe.pub.Run(pctx); close(published) }()
		srv, err := server.New(server.Config{Engine: fe.gated, Published: fe.pub.Latest})
		if err != nil {
			t.Fatal(err)
		}
		c := Config{Engine: fe.gated, Publisher: fe.pub, Dir: filepath.Join(t.TempDir(), fmt.Sprint("index", i)),
			AdminToken: fe.token, Registry: srv.Registry(), catchUpEvery: time.Minute}
		if shared {
			c.Claims = eng.Claims()
		}
		fe.svc, err = New(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		fe.svc.Register(srv)
		hs := httptest.NewServer(srv.Handler())
		fe.url = hs.URL
		t.Cleanup(func() {
			hs.Close()
			fe.svc.Close()
			cancel()
			<-published
			eng.Close()
		})
		fes = append(fes, fe)
	}
	return fes
}

func (fe *frontEnd) post(body []byte) reply {
	fe.t.Helper()
	return do(fe.t, http.MethodPost, fe.url+"/v1/attestations", body)
}

// sync brings the front-end's index up to the log (what its indexer does
// within a second in production).
func (fe *frontEnd) sync() {
	fe.t.Helper()
	if err := fe.svc.Sync(fe.t.Context()); err != nil {
		fe.t.Fatal(err)
	}
}

func (fe *frontEnd) size() uint64 {
	fe.t.Helper()
	return engineSize(fe.t, fe.eng)
}

// setUp enrols a device through the first front-end, lets every front-end
// index the enrolment, and returns the device and a freshness anchor that
// every front-end accepts.
func setUp(t *testing.T, fes []*frontEnd) (*device, coproc.Anchor) {
	t.Helper()
	dv := newDevice(t, true)
	if _, _, err := (&EnrolClient{Base: fes[0].url, Token: fes[0].token}).Enrol(t.Context(), "host-a", dv.pem(t)); err != nil {
		t.Fatal(err)
	}
	size := fes[0].size()
	var a coproc.Anchor
	for _, fe := range fes {
		fe.sync()
		signed, err := fe.pub.Wait(t.Context(), size)
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseSigned(signed)
		if err != nil {
			t.Fatal(err)
		}
		fe.svc.fresh.observe(c)
		a = coproc.Anchor{Origin: c.Origin, Size: c.Size, Root: c.Root}
	}
	return dv, a
}

// TestFrontEndsDeduplicate posts one envelope many times at once to two
// front-ends: it is appended once, and every answer names that index.
func TestFrontEndsDeduplicate(t *testing.T) {
	fes := newFrontEnds(t, 2, true)
	dv, a := setUp(t, fes)
	before := fes[0].size()
	env := dv.attest(t, "web-01", rootOf("web-01"), 1, a)

	const perFront = 8
	var wg sync.WaitGroup
	replies := make(chan reply, 2*perFront)
	var mu sync.Mutex
	slowest := map[int]time.Duration{}
	for range perFront {
		for i, fe := range fes {
			wg.Go(func() {
				start := time.Now()
				replies <- fe.post(env)
				mu.Lock()
				slowest[i] = max(slowest[i], time.Since(start))
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	close(replies)
	t.Logf("slowest answer: %v at A, %v at B", slowest[0], slowest[1])
	indexes := map[uint64]int{}
	admitted := 0
	for r := range replies {
		if r.status != http.StatusAccepted && r.status != http.StatusOK {
			t.Fatalf("POST = %d %s, want 202 or 200", r.status, r.body)
		}
		if r.status == http.StatusAccepted {
			admitted++
		}
		var ar AdmitResponse
		r.json(t, &ar)
		indexes[ar.Index]++
	}
	if len(indexes) != 1 || admitted != 1 {
		t.Errorf("answers name indexes %v, %d admitted (202); want one index, admitted once", indexes, admitted)
	}
	if got := fes[1].size(); got != before+1 {
		t.Errorf("log grew from %d to %d entries, want exactly one more", before, got)
	}
}

// TestFrontEndsCounterFloor admits an envelope at one front-end and at once
// posts envelopes of the same key with the same and a lower counter at the
// other: both are replays, and nothing is appended.
func TestFrontEndsCounterFloor(t *testing.T) {
	fes := newFrontEnds(t, 2, true)
	dv, a := setUp(t, fes)
	if r := fes[0].post(dv.attest(t, "web-01", rootOf("web-01"), 5, a)); r.status != http.StatusAccepted {
		t.Fatalf("POST at A = %d %s, want 202", r.status, r.body)
	}
	size := fes[0].size()
	for _, counter := range []uint64{5, 4} {
		r := fes[1].post(dv.attest(t, "web-02", rootOf("web-02"), counter, a))
		if r.status != http.StatusConflict || r.reason(t) != "replayed-counter" {
			t.Errorf("POST at B with counter %d after A admitted 5 = %d %s, want 409 replayed-counter", counter, r.status, r.body)
		}
	}
	if r := fes[1].post(dv.attest(t, "web-02", rootOf("web-02"), 6, a)); r.status != http.StatusAccepted {
		t.Errorf("POST at B with counter 6 = %d %s, want 202", r.status, r.body)
	}
	if got := fes[1].size(); got != size+1 {
		t.Errorf("log has %d entries after the replays and counter 6, want %d", got, size+1)
	}
}

// TestFrontEndsRevocation revokes a key at one front-end; the other
// refuses the key at once.
func TestFrontEndsRevocation(t *testing.T) {
	fes := newFrontEnds(t, 2, true)
	dv, a := setUp(t, fes)
	if _, err := (&EnrolClient{Base: fes[0].url, Token: fes[0].token}).Revoke(t.Context(), dv.id); err != nil {
		t.Fatal(err)
	}
	size := fes[0].size()
	r := fes[1].post(dv.attest(t, "web-01", rootOf("web-01"), 1, a))
	if r.status != http.StatusForbidden || r.reason(t) != "revoked-key" {
		t.Errorf("POST at B after the revocation at A = %d %s, want 403 revoked-key", r.status, r.body)
	}
	if got := fes[1].size(); got != size {
		t.Errorf("log has %d entries, want %d (nothing after the revocation)", got, size)
	}
}

// TestFrontEndsFailedAppend: an append that fails releases the shared
// claim, so the same envelope is admitted on a retry at either front-end.
func TestFrontEndsFailedAppend(t *testing.T) {
	fes := newFrontEnds(t, 2, true)
	dv, a := setUp(t, fes)
	env := dv.attest(t, "web-01", rootOf("web-01"), 1, a)
	fes[0].gated.mu.Lock()
	fes[0].gated.fail = fmt.Errorf("test: %w", engine.ErrPushback)
	fes[0].gated.mu.Unlock()
	if r := fes[0].post(env); r.status != http.StatusServiceUnavailable || r.reason(t) != "pushback" {
		t.Fatalf("POST at A with the append failing = %d %s, want 503 pushback", r.status, r.body)
	}
	start := time.Now()
	r := fes[1].post(env)
	if r.status != http.StatusAccepted {
		t.Fatalf("retry at B = %d %s (after %v), want 202", r.status, r.body, time.Since(start))
	}
	// And a failure at B after a claim at the same counter by B.
	env2 := dv.attest(t, "web-02", rootOf("web-02"), 2, a)
	fes[1].gated.mu.Lock()
	fes[1].gated.fail = fmt.Errorf("test: %w", engine.ErrPushback)
	fes[1].gated.mu.Unlock()
	if r := fes[1].post(env2); r.status != http.StatusServiceUnavailable {
		t.Fatalf("POST at B with the append failing = %d %s, want 503", r.status, r.body)
	}
	if r := fes[0].post(env2); r.status != http.StatusAccepted {
		t.Fatalf("retry at A = %d %s, want 202", r.status, r.body)
	}
}

// TestFrontEndsRevokeWaits: a revocation at one front-end waits for an
// append of the key that another front-end claimed before it, so that no
// attestation follows the revocation in the log.
func TestFrontEndsRevokeWaits(t *testing.T) {
	fes := newFrontEnds(t, 2, true)
	dv, a := setUp(t, fes)
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	fes[1].gated.mu.Lock()
	fes[1].gated.gate, fes[1].gated.entered = gate, entered
	fes[1].gated.mu.Unlock()
	admitted := make(chan reply, 1)
	go func() { admitted <- fes[1].post(dv.attest(t, "web-01", rootOf("web-01"), 1, a)) }()
	<-entered // B claimed counter 1 and is about to append
	revoked := make(chan error, 1)
	go func() {
		_, err := (&EnrolClient{Base: fes[0].url, Token: fes[0].token}).Revoke(context.WithoutCancel(t.Context()), dv.id)
		revoked <- err
	}()
	select {
	case err := <-revoked:
		t.Fatalf("revocation at A finished (%v) while B's append of the key was pending", err)
	case <-time.After(500 * time.Millisecond):
	}
	close(gate)
	r := <-admitted
	if r.status != http.StatusAccepted {
		t.Fatalf("POST at B = %d %s, want 202", r.status, r.body)
	}
	var ar AdmitResponse
	r.json(t, &ar)
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
	fes[0].sync()
	for _, k := range fes[0].svc.Keys() {
		if k.KeyID != dv.id {
			continue
		}
		if k.RevokedIndex == nil {
			t.Fatalf("key %s not revoked in the index", dv.id)
		}
		if *k.RevokedIndex < ar.Index {
			t.Errorf("key revoked at index %d, attestation admitted at %d: want the revocation after it", *k.RevokedIndex, ar.Index)
		}
	}
}

// faultyClaims is the real shared state, failing every call while err is
// set.
type faultyClaims struct {
	Claims
	err error
}

func (f *faultyClaims) Claim(ctx context.Context, keyID string, counter uint64, leaf [32]byte) (bool, uint64, [32]byte, bool, error) {
	if f.err != nil {
		return false, 0, [32]byte{}, false, f.err
	}
	return f.Claims.Claim(ctx, keyID, counter, leaf)
}

// TestFrontEndsSharedStateDown: when the shared state cannot be reached,
// an admission is 503 with Retry-After, appends nothing, and succeeds once
// it is back.
func TestFrontEndsSharedStateDown(t *testing.T) {
	fes := newFrontEnds(t, 1, true)
	dv, a := setUp(t, fes)
	fc := &faultyClaims{Claims: fes[0].svc.cfg.Claims, err: fmt.Errorf("test: database unreachable")}
	fes[0].svc.cfg.Claims = fc
	size := fes[0].size()
	env := dv.attest(t, "web-01", rootOf("web-01"), 1, a)
	r := fes[0].post(env)
	if r.status != http.StatusServiceUnavailable || r.reason(t) != "shared-state-unavailable" || r.header.Get("Retry-After") == "" {
		t.Errorf("POST with the shared state down = %d %v %s, want 503 shared-state-unavailable with Retry-After", r.status, r.header, r.body)
	}
	if got := fes[0].size(); got != size {
		t.Errorf("log has %d entries, want %d", got, size)
	}
	fc.err = nil
	if r := fes[0].post(env); r.status != http.StatusAccepted {
		t.Errorf("POST with the shared state back = %d %s, want 202", r.status, r.body)
	}
}
