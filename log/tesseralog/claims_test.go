package tesseralog

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmledger/vmledger/testing/mysqltest"
)

// TestClaims checks the shared admission state on two front-ends of one
// database: one claim per counter wins, Release puts back only its own
// claim, and a revocation stops claims and counts pending ones.
func TestClaims(t *testing.T) {
	ctx := t.Context()
	s, _ := newKey(t)
	cfg := Config{DSN: mysqltest.NewDatabase(t), Signer: s, BatchMaxAge: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond}
	a, b := open(t, cfg), open(t, cfg)
	defer a.Close()
	defer b.Close()
	stores := []*Claims{a.Claims(), b.Claims()}
	const key = "9a1b2b99055d9f7998663fa8d6d26fed7cfbc0fcbbdce11a18b2b4f4592cc113"
	leaf := func(n byte) [32]byte { return [32]byte{n} }

	// The same counter from 16 goroutines on two front-ends, on a key
	// nobody claimed yet: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			ok, _, _, _, err := stores[i%2].Claim(ctx, key, 5, leaf(5))
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims of counter 5 won, want 1", wins.Load())
	}
	ok, floor, holder, revoked, err := stores[1].Claim(ctx, key, 5, leaf(9))
	if err != nil || ok || floor != 5 || holder != leaf(5) || revoked {
		t.Errorf("Claim(5) again = %v, %d, %x, %v, %v; want refused with floor 5 held by leaf 5", ok, floor, holder[:1], revoked, err)
	}
	ok, floor, holder, _, err = stores[1].Claim(ctx, key, 7, leaf(7))
	if err != nil || !ok || floor != 5 || holder != leaf(5) {
		t.Fatalf("Claim(7) = %v, %d, %x, %v; want ok replacing 5", ok, floor, holder[:1], err)
	}
	// Releasing 5 (settled as done here) must not undo the claim of 7.
	if err := stores[0].Release(ctx, key, 5, leaf(5), 0, [32]byte{}); err != nil {
		t.Fatal(err)
	}
	if ok, floor, _, _, _ := stores[0].Claim(ctx, key, 6, leaf(6)); ok || floor != 7 {
		t.Errorf("after releasing 5 under a claim of 7: Claim(6) = %v with floor %d, want refused at 7", ok, floor)
	}
	// Releasing 7 puts back 5, so 6 can be claimed.
	if err := stores[1].Release(ctx, key, 7, leaf(7), 5, leaf(5)); err != nil {
		t.Fatal(err)
	}
	if ok, floor, _, _, err := stores[0].Claim(ctx, key, 6, leaf(6)); !ok || floor != 5 || err != nil {
		t.Errorf("after releasing 7: Claim(6) = %v, %d, %v; want ok replacing 5", ok, floor, err)
	}
	// Pending: the claim of 6. A revocation counts it and stops claims.
	pending, err := stores[1].Revoke(ctx, key)
	if err != nil || pending != 1 {
		t.Errorf("Revoke = %d, %v; want 1 pending claim", pending, err)
	}
	if ok, _, _, revoked, err := stores[1].Claim(ctx, key, 100, leaf(100)); ok || !revoked || err != nil {
		t.Errorf("Claim after Revoke = %v, revoked %v, %v; want refused as revoked", ok, revoked, err)
	}
	if err := stores[0].Done(ctx, key); err != nil {
		t.Fatal(err)
	}
	if pending, err := stores[0].Revoke(ctx, key); err != nil || pending != 0 {
		t.Errorf("Revoke after Done = %d, %v; want 0 pending", pending, err)
	}
	// A key revoked before any claim.
	const other = "0000000000000000000000000000000000000000000000000000000000000001"
	if pending, err := stores[0].Revoke(ctx, other); err != nil || pending != 0 {
		t.Errorf("Revoke of an unclaimed key = %d, %v", pending, err)
	}
	if ok, _, _, revoked, _ := stores[1].Claim(ctx, other, 1, leaf(1)); ok || !revoked {
		t.Errorf("Claim of a key revoked before any claim = %v, revoked %v; want refused", ok, revoked)
	}
}
