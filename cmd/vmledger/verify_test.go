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

// runCLI runs the command line and returns stdout and stderr together,
// and the error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, errb, err := runCLISplit(t, args...)
	return out + errb, err
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

// TestVerifyMalformedBundle: a bundle file that does not decode is a failed
// verification (exit 3) with a report — with --json a JSON report whose first
// check, the envelope, failed with the reason and whose other checks did not
// run; without it the human summary — never only a message on stderr.
func TestVerifyMalformedBundle(t *testing.T) {
	dir := t.TempDir()
	_, vkey, err := note.GenerateKey(rand.Reader, "malformed.test/log")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	line, _ := client.TrustLine("host-a", pub)
	trust := filepath.Join(dir, "trust.txt")
	if err := os.WriteFile(trust, []byte("log "+vkey+"\nquorum none\n"+line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, content, reason string }{
		{"empty file", "", "not a JSON object"},
		{"not JSON", "this is not a bundle\n", "not a JSON object"},
		{"truncated", `{"mediaType":"application/vnd.vmledger.bundle.v1+json","entry":"AAAA","pro`, "malformed"},
		{"malformed proof", `{"mediaType":"application/vnd.vmledger.bundle.v1+json","entry":"AAAA","proof":"index 0\n"}`, "proof"},
		{"unknown member", `{"mediaType":"application/vnd.vmledger.bundle.v1+json","entry":"AAAA","proof":"x","extra":"y"}`, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bundle.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, err := runCLISplit(t, "verify", "--bundle", path, "--trust", trust, "--json")
			var re refusedError
			if !errors.As(err, &re) {
				t.Fatalf("verify --json = %v, want a refusal (exit 3)\nstdout: %s\nstderr: %s", err, stdout, stderr)
			}
			var report struct {
				OK     *bool `json:"ok"`
				Checks []struct {
					Check, Status, Detail string
				} `json:"checks"`
			}
			if err := json.Unmarshal([]byte(stdout), &report); err != nil {
				t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout)
			}
			if report.OK == nil || *report.OK || len(report.Checks) != 9 {
				t.Fatalf("report: ok %v, %d checks; want ok false and 9 checks\n%s", report.OK, len(report.Checks), stdout)
			}
			first := report.Checks[0]
			if first.Check != client.CheckEnvelope || first.Status != string(client.Fail) ||
				!strings.Contains(first.Detail, path) || !strings.Contains(first.Detail, tc.reason) {
				t.Fatalf("first check = %+v, want the envelope failed, naming %s and %q", first, path, tc.reason)
			}
			for _, c := range report.Checks[1:] {
				if c.Status != string(client.NotRun) {
					t.Fatalf("check %s = %s after a bundle that does not decode, want %q", c.Check, c.Status, client.NotRun)
				}
			}

			stdout, _, err = runCLISplit(t, "verify", "--bundle", path, "--trust", trust)
			if !errors.As(err, &re) || !strings.Contains(stdout, "✗ 1. envelope") || !strings.Contains(stdout, "REFUSED") {
				t.Fatalf("verify (human) = %v, want a refusal with a summary naming the envelope\n%s", err, stdout)
			}
		})
	}
}

// runCLISplit runs the command line and returns stdout, stderr and the error.
func runCLISplit(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(t.Context())
	return out.String(), errb.String(), err
}

// TestVerifyExpectedNeedsVM: --expected without the VM id is refused before
// anything is verified (the root binds the configuration and the secret, not
// the VM); a libvirt domain XML names the VM itself, and must agree with --vm.
func TestVerifyExpectedNeedsVM(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bundle := write("bundle.json", "not a bundle")
	trust := write("trust.txt", "")
	secret := write("vm.secret", strings.Repeat("5a", 32))
	jsonCfg := write("web01.json", `{"schema":"vmledger/config/v1","memory":"1GiB","cpu":{"count":1}}`)
	xmlCfg := write("web01.xml", "<domain type='kvm'>\n  <name>web01</name>\n  <memory unit='GiB'>1</memory>\n  <vcpu>1</vcpu>\n</domain>\n")
	for _, tc := range []struct {
		name      string
		args      []string
		wantUsage string // "" = not a usage error: the VM id is settled
	}{
		{"JSON without --vm", []string{"--expected", jsonCfg}, "--expected needs --vm ID"},
		{"JSON with --vm", []string{"--expected", jsonCfg, "--vm", "web01"}, ""},
		{"libvirt XML names the VM", []string{"--expected", xmlCfg}, ""},
		{"libvirt XML and the same --vm", []string{"--expected", xmlCfg, "--vm", "web01"}, ""},
		{"libvirt XML and another --vm", []string{"--expected", xmlCfg, "--vm", "web02"}, `is the libvirt domain "web01"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"verify", "--bundle", bundle, "--trust", trust, "--vm-secret", secret}, tc.args...)
			out, err := runCLI(t, args...)
			var ue usageError
			if tc.wantUsage != "" {
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantUsage) {
					t.Fatalf("verify %q = %v, want a usage error saying %q\n%s", tc.args, err, tc.wantUsage, out)
				}
				return
			}
			// Past the VM id, the unreadable bundle is refused with a report.
			var re refusedError
			if errors.As(err, &ue) || !errors.As(err, &re) || !strings.Contains(out, "✗ 1. envelope") {
				t.Fatalf("verify %q = %v, want the bundle refused, not a usage error\n%s", tc.args, err, out)
			}
		})
	}
}

// TestPrintReportDifferences: the human report lists each differing
// parameter under the configuration check, with both values, and --json
// carries them as "differences".
func TestPrintReportDifferences(t *testing.T) {
	r := &client.Report{
		Results:     []client.Result{{Check: client.CheckConfiguration, Status: client.Fail, Detail: "attested root …; 1 parameter differs: memory.bytes"}},
		Differences: []client.ParameterDiff{{Name: "memory.bytes", Expected: "4294967296", Attested: "8589934592"}},
	}
	var text, js bytes.Buffer
	if err := printVerifyReport(&text, false, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "memory.bytes") || !strings.Contains(text.String(), "expected 4294967296, attested 8589934592") {
		t.Errorf("human report does not name the parameter with both values:\n%s", text.String())
	}
	if err := printVerifyReport(&js, true, r); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Differences []client.ParameterDiff `json:"differences"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil || len(got.Differences) != 1 || got.Differences[0] != r.Differences[0] {
		t.Errorf("JSON differences = %+v (%v), want %+v\n%s", got.Differences, err, r.Differences, js.String())
	}
}
