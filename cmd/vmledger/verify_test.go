package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/witness"
	"golang.org/x/mod/sumdb/note"
)

// runCLI runs the command line and returns stdout and the error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(t.Context())
	return out.String() + errb.String(), err
}

// TestVerifyEvidence checks fork evidence offline: two checkpoints of one
// size with different roots, both signed by the trusted log key, prove a
// fork; the same pair under another log key, or two identical checkpoints,
// do not.
func TestVerifyEvidence(t *testing.T) {
	dir := t.TempDir()
	skey, vkey, err := note.GenerateKey(rand.Reader, "evidence.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	sign := func(root byte) string {
		c := tlog.Checkpoint{Origin: "evidence.test/log", Size: 5, Root: tlog.Hash{root}}
		b, err := c.Sign(signer)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	line, _ := client.TrustLine("host-a", pub)
	trust := filepath.Join(dir, "trust.txt")
	os.WriteFile(trust, []byte("log "+vkey+"\nquorum none\n"+line+"\n"), 0o644)
	_, otherVKey, _ := note.GenerateKey(rand.Reader, "evidence.test/log")
	otherTrust := filepath.Join(dir, "other.txt")
	os.WriteFile(otherTrust, []byte("log "+otherVKey+"\nquorum none\n"+line+"\n"), 0o644)

	write := func(name string, ev []*witness.Evidence) string {
		b, _ := json.Marshal(ev)
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	fork := write("fork.json", []*witness.Evidence{{Kind: witness.KindSameSize, Origin: "evidence.test/log", First: sign(1), Second: sign(2)}})
	noFork := write("same.json", []*witness.Evidence{{Kind: witness.KindSameSize, Origin: "evidence.test/log", First: sign(1), Second: sign(1)}})

	out, err := runCLI(t, "verify", "--evidence", fork, "--trust", trust)
	if err != nil || !strings.Contains(out, "cannot both be true") {
		t.Fatalf("verify --evidence (a real fork) = %v\n%s", err, out)
	}
	for _, tc := range []struct{ name, file, trust string }{
		{"identical checkpoints", noFork, trust},
		{"another log key", fork, otherTrust},
	} {
		out, err := runCLI(t, "verify", "--evidence", tc.file, "--trust", tc.trust)
		var re refusedError
		if !errors.As(err, &re) {
			t.Errorf("%s: verify --evidence = %v, want a refusal (exit 3)\n%s", tc.name, err, out)
		}
	}
	if _, err := runCLI(t, "verify", "--evidence", fork, "--trust", trust, "--bundle", fork); !errors.As(err, new(usageError)) {
		t.Errorf("--evidence with --bundle = %v, want a usage error", err)
	}
}
