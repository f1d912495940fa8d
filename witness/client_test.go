package witness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/witness/policy"
)

func TestClientConflictCarriesSize(t *testing.T) {
	l := newTestLog(t, 8)
	tw := newTestWitness(t, witnessOpts{logs: []*policy.Log{l.policyLog(t, "")}})
	c := NewClient(tw.url, nil)
	ctx := t.Context()
	_, err := c.AddCheckpoint(ctx, 5, l.proof(5, 8), l.checkpoint(8))
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Size != 0 {
		t.Fatalf("AddCheckpoint(old 5) on first contact = %v, want *ConflictError{0}", err)
	}
	if _, err := c.AddCheckpoint(ctx, ce.Size, l.proof(ce.Size, 5), l.checkpoint(5)); err != nil {
		t.Fatalf("AddCheckpoint(old 0, size 5) = %v", err)
	}
	_, err = c.AddCheckpoint(ctx, 0, nil, l.checkpoint(8))
	if !errors.As(err, &ce) || ce.Size != 5 {
		t.Fatalf("AddCheckpoint(old 0) after 5 = %v, want *ConflictError{5}", err)
	}
	var se *StatusError
	if _, err := c.AddCheckpoint(ctx, 9, nil, l.checkpoint(8)); !errors.As(err, &se) || se.StatusCode != 400 {
		t.Errorf("AddCheckpoint(old 9, size 8) = %v, want a 400 StatusError", err)
	}
	got, err := c.Checkpoint(ctx, testOrigin)
	if err != nil || !strings.HasPrefix(string(got), string(l.checkpoint(5))) {
		t.Errorf("Checkpoint() = %q, %v; want the size-5 checkpoint", got, err)
	}
	if got, err := c.Checkpoint(ctx, "other.example/log"); got != nil || err != nil {
		t.Errorf("Checkpoint(unknown origin) = %q, %v; want nil, nil", got, err)
	}
}

// TestCollector: the log side gathers cosignatures from a 2-of-3 policy,
// learns witness sizes from 409s, tolerates one witness down, and reports
// a quorum failure with the cosignatures it did get.
func TestCollector(t *testing.T) {
	l := newTestLog(t, 20)
	var ws []*testWitness
	var lines []string
	for i := range 3 {
		tw := newTestWitness(t, witnessOpts{seed: byte(0x21 + i), name: fmt.Sprintf("w%d.example/w", i), logs: []*policy.Log{l.policyLog(t, "")}})
		ws = append(ws, tw)
		lines = append(lines, fmt.Sprintf("witness w%d %s %s", i, tw.w.VKey(), tw.url))
	}
	pol, err := policy.Parse([]byte("log " + l.vkey + "\n" + strings.Join(lines, "\n") + "\ngroup g 2 w0 w1 w2\nquorum g\n"))
	if err != nil {
		t.Fatal(err)
	}
	proofs := func(_ context.Context, old, size uint64) ([][]byte, error) {
		return l.tree.ConsistencyProof(old, size)
	}
	ctx := t.Context()
	collect := func(c *Collector, size uint64) ([]byte, error) {
		t.Helper()
		return c.Collect(ctx, l.checkpoint(size), proofs)
	}
	requireQuorum := func(what string, signed []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: Collect = %v", what, err)
		}
		if v, err := pol.Verify(signed); err != nil || !v.QuorumMet {
			t.Fatalf("%s: policy.Verify(collected) = %v", what, err)
		}
	}

	c := NewCollector(pol, nil)
	for _, size := range []uint64{5, 8, 8, 12} {
		signed, err := collect(c, size)
		requireQuorum(fmt.Sprintf("size %d", size), signed, err)
	}
	// A fresh collector (a restarted log) knows no witness sizes: every
	// witness answers 409 first and is retried from its size.
	signed, err := collect(NewCollector(pol, nil), 14)
	requireQuorum("fresh collector", signed, err)

	// One witness down: 2 of 3 still hold.
	ws[2].close()
	signed, err = collect(c, 16)
	requireQuorum("one witness down", signed, err)

	// Two down: the quorum fails, and the error says so.
	ws[1].close()
	signed, err = collect(c, 18)
	if !errors.Is(err, ErrQuorumNotMet) {
		t.Fatalf("two witnesses down: Collect = %v, want ErrQuorumNotMet", err)
	}
	if v, _ := pol.Verify(signed); v == nil || len(v.Cosigners) != 1 || v.Cosigners[0].Name != "w0" {
		t.Errorf("two witnesses down: collected note %q, want w0's cosignature only", signed)
	}
}
