package publish

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/witness"
	"github.com/vmledger/vmledger/witness/policy"
	"golang.org/x/mod/sumdb/note"
)

// deployment is a real badger log and three real witness servers.
type deployment struct {
	eng       *badgerlog.Engine
	logVKey   string
	policy    string
	witnesses []*httptest.Server
	// refusing makes every witness answer 503, as a witness whose storage
	// failed does.
	refusing atomic.Bool
}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	ctx := t.Context()
	skey, vkey, err := note.GenerateKey(rand.Reader, "publish.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	eng, err := badgerlog.Open(ctx, badgerlog.Config{Dir: t.TempDir(), Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	d := &deployment{eng: eng, logVKey: vkey}
	logs, err := policy.ParseLogs([]byte("log " + vkey + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	var pol strings.Builder
	for i := range 3 {
		wskey, wvkey, err := note.GenerateKey(rand.Reader, fmt.Sprintf("w%d.publish.test", i))
		if err != nil {
			t.Fatal(err)
		}
		cos, err := witness.NewCosigner(wskey, nil)
		if err != nil {
			t.Fatal(err)
		}
		store, err := witness.OpenStore(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		w, err := witness.New(witness.Config{Logs: logs, Cosigner: cos, Store: store})
		if err != nil {
			t.Fatal(err)
		}
		h := w.Handler()
		hs := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if d.refusing.Load() {
				http.Error(rw, "refusing", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(rw, r)
		}))
		t.Cleanup(hs.Close)
		d.witnesses = append(d.witnesses, hs)
		fmt.Fprintf(&pol, "witness w%d %s %s\n", i, wvkey, hs.URL)
	}
	pol.WriteString("group two 2 w0 w1 w2\nquorum two\n")
	d.policy = pol.String()
	return d
}

func (d *deployment) publisher(t *testing.T, state string) *Publisher {
	t.Helper()
	p, err := LoadPolicy([]byte(d.policy), d.logVKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := New(Config{Engine: d.eng, Policy: p, StateFile: state, Retry: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { pub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return pub
}

func TestPublishesOnlyCosigned(t *testing.T) {
	d := newDeployment(t)
	ctx := t.Context()
	state := filepath.Join(t.TempDir(), "published")
	pub := d.publisher(t, state)
	pol, _ := LoadPolicy([]byte(d.policy), d.logVKey)
	for i := range 20 {
		idx, err := d.eng.Add(ctx, fmt.Appendf(nil, "entry %d", i))
		if err != nil {
			t.Fatal(err)
		}
		cp, err := pub.Wait(ctx, idx+1)
		if err != nil {
			t.Fatal(err)
		}
		v, err := pol.Verify(cp)
		if err != nil || !v.QuorumMet || len(v.Cosigners) < 2 {
			t.Fatalf("published checkpoint for entry %d: %v (cosigners %d)", i, err, len(v.Cosigners))
		}
	}
	// One witness down: 2 of 3 still publish.
	d.witnesses[1].Close()
	idx, _ := d.eng.Add(ctx, []byte("with one witness down"))
	if _, err := pub.Wait(ctx, idx+1); err != nil {
		t.Fatalf("2 of 3 witnesses up: %v", err)
	}
	// Two down: nothing new is published. The quorum cannot be met, so no
	// amount of waiting would publish it; the deadline only bounds the test.
	d.witnesses[2].Close()
	idx, _ = d.eng.Add(ctx, []byte("with two witnesses down"))
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if cp, err := pub.Wait(wctx, idx+1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("published without a quorum: %q, %v", cp, err)
	}
	latest, err := pub.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if size, _ := parseSize(latest); size != idx {
		t.Fatalf("latest published size = %d, want %d (the last cosigned)", size, idx)
	}
	// A restarted publisher serves the saved checkpoint at once.
	p2, err := New(Config{Engine: d.eng, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	again, err := p2.Latest(ctx)
	if err != nil || string(again) != string(latest) {
		t.Fatalf("restarted Latest = %q, %v; want the saved checkpoint", again, err)
	}
}

func TestLoadPolicy(t *testing.T) {
	d := newDeployment(t)
	if _, err := LoadPolicy([]byte("witness w0 x\n"), d.logVKey); err == nil {
		t.Error("LoadPolicy accepted a bad witness key")
	}
	p, err := LoadPolicy([]byte(d.policy), d.logVKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.Log("publish.test/log") == nil {
		t.Error("LoadPolicy did not add the log itself")
	}
}

func TestNoPolicyPublishesSigned(t *testing.T) {
	d := newDeployment(t)
	pub, err := New(Config{Engine: d.eng})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go pub.Run(ctx)
	idx, _ := d.eng.Add(ctx, []byte("x"))
	cp, err := pub.Wait(ctx, idx+1)
	if err != nil || !strings.HasPrefix(string(cp), "publish.test/log\n1\n") {
		t.Fatalf("Wait = %q, %v", cp, err)
	}
}

// TestHealthReportsStall: once the engine's newest checkpoint has waited
// longer than StaleAfter for the policy's cosignatures, Health reports it
// with the last round's error (issue 16, fault 9), and it recovers when a
// checkpoint is published again.
func TestHealthReportsStall(t *testing.T) {
	d := newDeployment(t)
	ctx := t.Context()
	p, err := LoadPolicy([]byte(d.policy), d.logVKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := New(Config{Engine: d.eng, Policy: p, Retry: 10 * time.Millisecond, StaleAfter: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { pub.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	idx, err := d.eng.Add(ctx, []byte("cosigned"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Wait(ctx, idx+1); err != nil {
		t.Fatal(err)
	}
	if err := pub.Health(ctx); err != nil {
		t.Fatalf("Health() with every checkpoint published = %v, want nil", err)
	}

	d.refusing.Store(true)
	if idx, err = d.eng.Add(ctx, []byte("waits")); err != nil {
		t.Fatal(err)
	}
	// Wait for a failed round (bounded by the test's deadline only).
	for {
		err := pub.Health(ctx)
		if errors.Is(err, witness.ErrQuorumNotMet) {
			if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), fmt.Sprintf("size %d", idx+1)) {
				t.Errorf("Health() = %v, want ErrStalled naming size %d", err, idx+1)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Health() never reported the refused rounds; last: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}

	d.refusing.Store(false)
	if _, err := pub.Wait(ctx, idx+1); err != nil {
		t.Fatal(err)
	}
	if err := pub.Health(ctx); err != nil {
		t.Errorf("Health() once the checkpoint is published = %v, want nil", err)
	}
}
