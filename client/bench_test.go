package client

import (
	"testing"

	"github.com/vmledger/vmledger/coproc"
	"golang.org/x/mod/sumdb/note"
)

// BenchmarkVerify measures a whole offline bundle verification (P-256
// co-processor signature, log signature, two witness cosignatures, inclusion,
// recomputing the configuration root) and, in the same run, the signature
// checks alone, so that the overhead of everything else is visible:
//
//	go test -run XXX -bench 'Verify' ./client
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	idx := f.attest("vm-1", f.cfg)
	bd := f.bundle(idx, f.tree.Size(), 0, 1)
	tr, exp := f.trust(), f.expected()
	env, err := coproc.ParseEnvelope(bd.Entry)
	if err != nil {
		b.Fatal(err)
	}
	pub := f.cp.PublicKey()
	verifiers := note.VerifierList(tr.Policy.Logs[0].Verifier, tr.Policy.Witnesses[0].Verifier, tr.Policy.Witnesses[1].Verifier)

	b.Run("bundle", func(b *testing.B) {
		for b.Loop() {
			if _, err := Verify(b.Context(), bd, tr, exp, Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signatures-only", func(b *testing.B) {
		for b.Loop() {
			if err := coproc.Verify(env, pub); err != nil {
				b.Fatal(err)
			}
			n, err := note.Open(bd.Proof.Checkpoint, verifiers)
			if err != nil || len(n.Sigs) != 3 {
				b.Fatal(err)
			}
		}
	})
}
