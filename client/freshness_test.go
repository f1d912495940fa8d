package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/tlog"
)

// attestAnchored is attest with a freshness anchor of the test's choice: the
// software co-processor signs whatever anchor it is given, so the statement
// is validly signed by a trusted key whatever the anchor says.
func (f *fixture) attestAnchored(vmID string, cfg *measure.Config, a coproc.Anchor) uint64 {
	f.t.Helper()
	m, err := measure.Measure(cfg, f.secret)
	if err != nil {
		f.t.Fatal(err)
	}
	env, err := f.cp.Attest(f.t.Context(), coproc.Claim{VMID: vmID, Root: m.Root, Parameters: m.Names(), Freshness: a})
	if err != nil {
		f.t.Fatal(err)
	}
	entry, err := env.Canonical()
	if err != nil {
		f.t.Fatal(err)
	}
	return f.append(entry)
}

// failingProver is a log that cannot be reached.
type failingProver struct{}

var errUnreachable = errors.New("log unreachable")

func (failingProver) ConsistencyProof(context.Context, string, uint64, uint64) ([][]byte, error) {
	return nil, errUnreachable
}

// TestVerifyFreshnessAnchor crafts validly signed, included, log-signed and
// cosigned attestations of the expected configuration whose freshness anchor
// is not a checkpoint of this log made before the entry. Each must fail the
// freshness check with its own sentinel; every other check passes.
func TestVerifyFreshnessAnchor(t *testing.T) {
	// The fixture's tree holds 5 entries; one more makes index 6 even, so
	// that an anchor of size 5 cannot be derived from the inclusion proof
	// (5 is not 6 with low bits cleared) and needs a consistency proof.
	type tc struct {
		name   string
		anchor func(f *fixture) coproc.Anchor
		prover func(f *fixture) ConsistencyProver
		want   error // nil: the anchor is good and Verify passes
		detail string
	}
	goodAt := func(size uint64) func(f *fixture) coproc.Anchor {
		return func(f *fixture) coproc.Anchor {
			return coproc.Anchor{Origin: origin, Size: size, Root: [32]byte(f.tree.HashAt(size))}
		}
	}
	wrongRootAt := func(size uint64) func(f *fixture) coproc.Anchor {
		return func(f *fixture) coproc.Anchor {
			return coproc.Anchor{Origin: origin, Size: size, Root: [32]byte{0xba, 0xd}}
		}
	}
	tree := func(f *fixture) ConsistencyProver { return treeProver{f.tree} }
	for _, c := range []tc{
		{"anchor of another log", func(f *fixture) coproc.Anchor {
			a := goodAt(6)(f)
			a.Origin = "other.example/log"
			return a
		}, nil, ErrAnchorOrigin, `anchor of log "other.example/log"`},
		{"anchor larger than the log at the entry", func(f *fixture) coproc.Anchor {
			return coproc.Anchor{Origin: origin, Size: 1000, Root: [32]byte{1}}
		}, nil, ErrAnchorSize, "size 1000"},
		{"anchor one past the entry", func(f *fixture) coproc.Anchor {
			return coproc.Anchor{Origin: origin, Size: 7, Root: [32]byte{1}}
		}, nil, ErrAnchorSize, "size 7"},
		{"anchor of the empty tree", func(f *fixture) coproc.Anchor {
			return coproc.Anchor{Origin: origin, Size: 0, Root: [32]byte(rfc6962.DefaultHasher.EmptyRoot())}
		}, nil, ErrAnchorEmpty, "empty tree"},
		{"anchor at the entry's index with another root (proven offline)", wrongRootAt(6), nil, ErrAnchorInconsistent, "size 6"},
		{"anchor with another root at a prefix size (proven offline)", wrongRootAt(4), nil, ErrAnchorInconsistent, "size 4"},
		{"anchor with another root, proven through the log", wrongRootAt(5), tree, ErrAnchorInconsistent, "size 5"},
		{"anchor that the log cannot prove", goodAt(5), func(*fixture) ConsistencyProver { return failingProver{} }, errUnreachable, "log unreachable"},
		{"good anchor at the entry's index", goodAt(6), nil, nil, "consistent with the checkpoint (proven by the inclusion proof)"},
		{"good anchor at a prefix size", goodAt(4), nil, nil, "proven by the inclusion proof"},
		{"good anchor proven through the log", goodAt(5), tree, nil, "proven by the log's consistency proof"},
		{"good anchor, no log to prove it", goodAt(5), nil, nil, "not proven offline"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.append([]byte("one more"))
			a := c.anchor(f)
			idx := f.attestAnchored("vm-1", f.cfg, a)
			if idx != 6 {
				t.Fatalf("entry at %d, want 6", idx)
			}
			f.append([]byte("a later entry"))
			opts := Options{Now: f.now}
			if c.prover != nil {
				opts.Prover = c.prover(f)
			}
			r, err := Verify(t.Context(), f.bundle(idx, f.tree.Size(), 0, 1), f.trust(), f.expected(), opts)
			if c.want == nil {
				if err != nil || !r.OK {
					t.Fatalf("Verify = %v, want a pass\n%s", err, dump(r))
				}
			} else if !errors.Is(err, ErrFreshness) || !errors.Is(err, c.want) || r.OK {
				t.Fatalf("Verify = %v, want ErrFreshness and %v\n%s", err, c.want, dump(r))
			}
			var fr *Result
			for i := range r.Results {
				if r.Results[i].Check == CheckFreshness {
					fr = &r.Results[i]
				} else if s := r.Results[i].Status; s != Pass && s != NotRequested {
					t.Errorf("check %q = %s, want only the freshness check to fail\n%s", r.Results[i].Check, s, dump(r))
				}
			}
			if fr == nil {
				t.Fatalf("no %q check in the report\n%s", CheckFreshness, dump(r))
			}
			if want := map[bool]Status{true: Pass, false: Fail}[c.want == nil]; fr.Status != want {
				t.Errorf("freshness check = %s, want %s", fr.Status, want)
			}
			if !strings.Contains(fr.Detail, c.detail) {
				t.Errorf("freshness detail %q does not say %q", fr.Detail, c.detail)
			}
			// Only a proof the log did not give leaves the check incomplete
			// (exit 4, retry later); every proven fault is a refusal.
			if got, want := r.Incomplete(), errors.Is(c.want, errUnreachable); got != want {
				t.Errorf("Incomplete() = %v, want %v", got, want)
			}
		})
	}
}

// TestRootFromInclusion: for every tree size up to 40, every index and every
// size, the root that rootFromInclusion derives from a verified inclusion
// proof is the tree's root at that size, and it derives one exactly for the
// sizes that are the index with low bits cleared.
func TestRootFromInclusion(t *testing.T) {
	tr := testonly.New(rfc6962.DefaultHasher)
	for n := uint64(1); n <= 40; n++ {
		tr.AppendData(fmt.Appendf(nil, "leaf %d", n-1))
		for i := range n {
			p, err := tr.InclusionProof(i, n)
			if err != nil {
				t.Fatal(err)
			}
			for s := uint64(0); s <= n; s++ {
				got, ok := rootFromInclusion(i, n, p, s)
				prefix := false
				for k := 0; k < 64; k++ {
					if s > 0 && (i>>k)<<k == s {
						prefix = true
					}
				}
				if ok != prefix {
					t.Fatalf("n=%d i=%d s=%d: derived %v, want %v", n, i, s, ok, prefix)
				}
				if ok && got != tlog.Hash(tr.HashAt(s)) {
					t.Fatalf("n=%d i=%d s=%d: derived root %x, want %x", n, i, s, got, tr.HashAt(s))
				}
			}
		}
	}
}

// TestVerifyFreshnessWithoutInclusion: when the inclusion proof fails, the
// anchor's origin and size are still checked, but its root is not compared
// (the check is not run rather than failed a second time).
func TestVerifyFreshnessWithoutInclusion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		origin string
		want   Status
	}{
		{"good anchor", origin, NotRun},
		{"anchor of another log", "other.example/log", Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			idx := f.attestAnchored("vm-1", f.cfg, coproc.Anchor{Origin: tc.origin, Size: f.tree.Size(), Root: [32]byte(f.tree.Hash())})
			f.append([]byte("later"))
			b := f.bundle(idx, f.tree.Size(), 0, 1)
			b.Proof.Hashes[0][0] ^= 1
			r, err := Verify(t.Context(), b, f.trust(), f.expected(), Options{Now: f.now})
			if !errors.Is(err, ErrInclusion) {
				t.Fatalf("Verify = %v, want ErrInclusion", err)
			}
			last := r.Results[len(r.Results)-1]
			if last.Check != CheckFreshness || last.Status != tc.want {
				t.Fatalf("last check %+v, want %q %s\n%s", last, CheckFreshness, tc.want, dump(r))
			}
		})
	}
}
