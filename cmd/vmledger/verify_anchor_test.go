package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/soft"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/log/tlog"
	"golang.org/x/mod/sumdb/note"
)

// TestVerifyRefusesBadAnchor: `vmledger verify` refuses a validly signed,
// included and log-signed attestation of the expected configuration whose
// freshness anchor names another log or the empty tree, naming the
// freshness check (exit 3), and accepts the same with a good anchor.
func TestVerifyRefusesBadAnchor(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	cpDir := filepath.Join(dir, "coproc")
	if _, err := soft.Init(ctx, cpDir, soft.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	cp, err := soft.Open(ctx, cpDir, soft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const origin = "anchor.test/log"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	line, err := client.TrustLine("host-a", cp.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, perm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	trust := write("trust.txt", []byte("log "+vkey+"\nquorum none\n"+line+"\n"), 0o644)
	cfgFile := write("web01.json", []byte(`{"schema":"vmledger/config/v1","memory":"1GiB","cpu":{"count":1}}`), 0o644)
	secretFile := write("web01.secret", []byte(strings.Repeat("5a", 32)), 0o600)
	var secret measure.Secret
	for i := range secret {
		secret[i] = 0x5a
	}
	m, err := measure.Measure(&measure.Config{MemoryBytes: 1 << 30, CPUCount: 1}, secret)
	if err != nil {
		t.Fatal(err)
	}
	tree := testonly.New(rfc6962.DefaultHasher)
	tree.AppendData([]byte("enrolment"), []byte("other"))

	for _, tc := range []struct {
		name   string
		anchor coproc.Anchor
		want   string // "" = verifies
	}{
		{"good anchor", coproc.Anchor{Origin: origin, Size: 2, Root: [32]byte(tree.Hash())}, ""},
		{"anchor of another log", coproc.Anchor{Origin: "other.test/log", Size: 2, Root: [32]byte(tree.Hash())}, "anchor names another log"},
		{"anchor of the empty tree", coproc.Anchor{Origin: origin, Size: 0, Root: [32]byte(rfc6962.DefaultHasher.EmptyRoot())}, "anchor is the empty tree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := cp.Attest(ctx, coproc.Claim{VMID: "web01", Root: m.Root, Parameters: m.Names(), Freshness: tc.anchor})
			if err != nil {
				t.Fatal(err)
			}
			entry, err := env.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			// The entry goes right after the anchor's tree: a tree of the
			// two earlier entries and this one.
			tr := testonly.New(rfc6962.DefaultHasher)
			tr.AppendData([]byte("enrolment"), []byte("other"), entry)
			p, err := tr.InclusionProof(2, 3)
			if err != nil {
				t.Fatal(err)
			}
			hashes := make([]tlog.Hash, len(p))
			for i := range p {
				hashes[i] = tlog.Hash(p[i])
			}
			c := tlog.Checkpoint{Origin: origin, Size: 3, Root: [32]byte(tr.Hash())}
			signed, err := note.Sign(&note.Note{Text: string(c.Marshal())}, signer)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := (&bundle.Bundle{Entry: entry, Proof: tlog.Proof{Index: 2, Hashes: hashes, Checkpoint: signed}}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			b := write(strings.ReplaceAll(tc.name, " ", "-")+".bundle.json", enc, 0o644)
			args := []string{"verify", "--bundle", b, "--trust", trust, "--expected", cfgFile, "--vm-secret", secretFile, "--vm", "web01"}
			stdout, stderr, err := runCLISplit(t, append(args, "--json")...)
			var rep client.Report
			if jerr := json.Unmarshal([]byte(stdout), &rep); jerr != nil {
				t.Fatalf("verify --json: %v\n%s%s", jerr, stdout, stderr)
			}
			last := rep.Results[len(rep.Results)-1]
			if tc.want == "" {
				if err != nil || !rep.OK || last.Check != client.CheckFreshness || last.Status != client.Pass {
					t.Fatalf("verify = %v, want it to pass\n%s%s", err, stdout, stderr)
				}
				return
			}
			var re refusedError
			if !errors.As(err, &re) || rep.OK || last.Check != client.CheckFreshness || last.Status != client.Fail || !strings.Contains(last.Detail, tc.want) {
				t.Fatalf("verify = %v, want a refusal by the freshness check saying %q\n%s%s", err, tc.want, stdout, stderr)
			}
			for _, c := range rep.Results[:len(rep.Results)-1] {
				if c.Status != client.Pass && c.Status != client.NotRequested {
					t.Errorf("check %s = %s, want only freshness to fail", c.Check, c.Status)
				}
			}
			text, _, _ := runCLISplit(t, args...)
			if !strings.Contains(text, "✗ 9. freshness") || !strings.Contains(text, "REFUSED") {
				t.Errorf("the human report does not name the freshness check:\n%s", text)
			}
		})
	}
}
