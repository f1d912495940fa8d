package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
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

// TestVerifySchemaV2CLI: `agent measure` measures a ballooned libvirt
// domain with a VLAN trunk and a two-image qcow2 chain under schema v2;
// its root, attested and logged, passes `vmledger verify` with --expected
// (the owner's JSON with digests), --manifest (agent measure --json) and
// --disclosures (agent measure --disclose), and fails for another VM id.
func TestVerifySchemaV2CLI(t *testing.T) {
	qimg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	ctx := t.Context()
	dir := t.TempDir()
	write := func(name string, data []byte, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, perm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := write("base.raw", []byte(strings.Repeat("base ", 1000)), 0o644)
	top := filepath.Join(dir, "top.qcow2")
	if out, err := exec.Command(qimg, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "base.raw", top).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	xml := write("web01.xml", []byte(`<domain type='kvm'><name>web01</name><memory unit='GiB'>2</memory><currentMemory unit='GiB'>1</currentMemory><vcpu>1</vcpu>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='`+top+`'/><target dev='vda'/></disk>
<interface type='bridge'><mac address='52:54:00:00:00:09'/><source bridge='br0'/><vlan><tag id='7'/><tag id='8'/></vlan></interface></devices></domain>`), 0o644)
	secretFile := write("web01.secret", []byte(strings.Repeat("5a", 32)), 0o600)
	sum := func(p string) string {
		b, _ := os.ReadFile(p)
		d, _, _ := measure.HashImage(strings.NewReader(string(b)), nil)
		return d.String()
	}
	ordered := write("web01.json", []byte(`{"schema":"vmledger/config/v2","memory":"2GiB","balloon":"1GiB","cpu":{"count":1},
"nics":[{"mac":"52:54:00:00:00:09","trunk":[{"id":7},{"id":8}]}],
"disks":[{"target":"vda","sha256":"`+sum(top)+`","backing":[{"sha256":"`+sum(base)+`"}]}]}`), 0o644)

	manifestJSON, stderr, err := runCLISplit(t, "agent", "measure", "--vm", "web01", "--config", xml, "--vm-secret", secretFile, "--json")
	if err != nil {
		t.Fatalf("agent measure: %v\n%s", err, stderr)
	}
	var m measure.Measurement
	if err := json.Unmarshal([]byte(manifestJSON), &m); err != nil || m.Schema != measure.SchemaV2 {
		t.Fatalf("manifest: %v, schema %q", err, m.Schema)
	}
	manifest := write("web01.manifest.json", []byte(manifestJSON), 0o600)
	disc, stderr, err := runCLISplit(t, "agent", "measure", "--vm", "web01", "--config", xml, "--vm-secret", secretFile,
		"--disclose", "net.0.trunk", "--disclose", "disk.0.backing", "--disclose", "memory.balloon.bytes", "--disclose", "vm.id")
	if err != nil {
		t.Fatalf("agent measure --disclose: %v\n%s", err, stderr)
	}
	disclosures := write("web01.disclosures.json", []byte(disc), 0o644)

	// Attest the measured root and log it, as the agent would.
	cpDir := filepath.Join(dir, "coproc")
	if _, err := soft.Init(ctx, cpDir, soft.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	cp, err := soft.Open(ctx, cpDir, soft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const origin = "v2.test/log"
	skey, vkey, _ := note.GenerateKey(rand.Reader, origin)
	signer, _ := note.NewSigner(skey)
	line, _ := client.TrustLine("host-a", cp.PublicKey())
	trust := write("trust.txt", []byte("log "+vkey+"\nquorum none\n"+line+"\n"), 0o644)
	tree := testonly.New(rfc6962.DefaultHasher)
	tree.AppendData([]byte("enrolment"))
	bundleFor := func(name, vm string) string {
		env, err := cp.Attest(ctx, coproc.Claim{VMID: vm, Root: m.Root, Parameters: m.Names(), ConfigSchema: m.Schema,
			Freshness: coproc.Anchor{Origin: origin, Size: tree.Size(), Root: [32]byte(tree.Hash())}})
		if err != nil {
			t.Fatal(err)
		}
		entry, _ := env.Canonical()
		tree.AppendData(entry)
		idx := tree.Size() - 1
		p, _ := tree.InclusionProof(idx, tree.Size())
		hashes := make([]tlog.Hash, len(p))
		for i := range p {
			hashes[i] = tlog.Hash(p[i])
		}
		c := tlog.Checkpoint{Origin: origin, Size: tree.Size(), Root: [32]byte(tree.Hash())}
		signed, _ := note.Sign(&note.Note{Text: string(c.Marshal())}, signer)
		enc, _ := (&bundle.Bundle{Entry: entry, Proof: tlog.Proof{Index: idx, Hashes: hashes, Checkpoint: signed}}).Marshal()
		return write(name, enc, 0o644)
	}
	good := bundleFor("web01.bundle.json", "web01")
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"expected", []string{"--bundle", good, "--expected", ordered, "--vm-secret", secretFile, "--vm", "web01"}, true},
		{"expected libvirt XML", []string{"--bundle", good, "--expected", xml, "--vm-secret", secretFile}, true},
		{"manifest", []string{"--bundle", good, "--manifest", manifest}, true},
		{"disclosures", []string{"--bundle", good, "--disclosures", disclosures}, true},
		{"attested as another VM, manifest", []string{"--bundle", bundleFor("web02.bundle.json", "web02"), "--manifest", manifest}, false},
		{"attested as another VM, disclosed vm.id", []string{"--bundle", bundleFor("web02b.bundle.json", "web02"), "--disclosures", disclosures}, false},
		{"attested as another VM, expected", []string{"--bundle", bundleFor("web02c.bundle.json", "web02"), "--expected", ordered, "--vm-secret", secretFile, "--vm", "web02"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runCLISplit(t, append([]string{"verify", "--trust", trust, "--json"}, tc.args...)...)
			var rep client.Report
			if jerr := json.Unmarshal([]byte(stdout), &rep); jerr != nil {
				t.Fatalf("verify --json: %v\n%s%s", jerr, stdout, stderr)
			}
			var cfg client.Result
			for _, r := range rep.Results {
				if r.Check == client.CheckConfiguration {
					cfg = r
				}
			}
			if tc.ok != (err == nil && rep.OK) || tc.ok != (cfg.Status == client.Pass) {
				t.Errorf("verify %q = %v, configuration %s (%s); want ok %v\n%s", tc.args, err, cfg.Status, cfg.Detail, tc.ok, stderr)
			}
		})
	}
}
