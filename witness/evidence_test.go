package witness

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestVerifyEvidence(t *testing.T) {
	l := newTestLog(t, 8)
	fork := newTestLogPrefix(t, 8, "forked ")
	v := l.policyLog(t, "").Verifier
	otherSkey, _ := seededKey(t, 0x09, testOrigin)
	other, _ := note.NewSigner(otherSkey)
	signedByOther, err := note.Sign(&note.Note{Text: fork.text(8)}, other)
	if err != nil {
		t.Fatal(err)
	}
	sameSize := func() *Evidence {
		return &Evidence{Kind: KindSameSize, Origin: testOrigin, First: string(l.checkpoint(8)), Second: string(fork.checkpoint(8))}
	}
	// The fork's size-5 checkpoint against the honest size-8 tree.
	inconsistent := func() *Evidence {
		return &Evidence{Kind: KindInconsistent, Origin: testOrigin,
			First: string(fork.checkpoint(5)), Second: string(l.checkpoint(8)),
			DerivedRoot: l.tree.HashAt(5), Proof: l.proof(5, 8)}
	}
	tests := []struct {
		name   string
		mutate func(e *Evidence)
		base   func() *Evidence
		ok     bool
	}{
		{"same size", func(*Evidence) {}, sameSize, true},
		{"inconsistent", func(*Evidence) {}, inconsistent, true},
		{"same size, same root", func(e *Evidence) { e.Second = string(l.checkpoint(8)) }, sameSize, false},
		{"same size, sizes differ", func(e *Evidence) { e.Second = string(fork.checkpoint(7)) }, sameSize, false},
		{"same size, second signed by another key", func(e *Evidence) { e.Second = string(signedByOther) }, sameSize, false},
		{"same size, first unsigned", func(e *Evidence) { e.First = l.text(8) }, sameSize, false},
		{"wrong origin", func(e *Evidence) { e.Origin = "other.example/log" }, sameSize, false},
		{"unknown kind", func(e *Evidence) { e.Kind = "rumour" }, sameSize, false},
		{"inconsistent, honest pair", func(e *Evidence) { e.First = string(l.checkpoint(5)) }, inconsistent, false},
		{"inconsistent, proof mangled", func(e *Evidence) { e.Proof[0] = bytes.Repeat([]byte{1}, 32) }, inconsistent, false},
		{"inconsistent, proof missing", func(e *Evidence) { e.Proof = nil }, inconsistent, false},
		{"inconsistent, derived root made up", func(e *Evidence) { e.DerivedRoot = bytes.Repeat([]byte{1}, 32) }, inconsistent, false},
		{"inconsistent, derived root short", func(e *Evidence) { e.DerivedRoot = e.DerivedRoot[:31] }, inconsistent, false},
		{"inconsistent, order swapped", func(e *Evidence) { e.First, e.Second = e.Second, e.First }, inconsistent, false},
		{"inconsistent, same sizes", func(e *Evidence) { e.Second = string(l.checkpoint(5)) }, inconsistent, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.base()
			tt.mutate(e)
			err := VerifyEvidence(e, v)
			if tt.ok && err != nil {
				t.Errorf("VerifyEvidence() = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrNotEvidence) {
				t.Errorf("VerifyEvidence() = %v, want ErrNotEvidence", err)
			}
		})
	}
}
