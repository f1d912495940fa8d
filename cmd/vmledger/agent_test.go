package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
)

// runAgent runs the vmledger command tree in-process and returns stdout,
// stderr and the exit code run would return.
func runAgent(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	out, errb, err := runCLISplit(t, args...)
	code := exitOK
	if err != nil {
		errb += err.Error()
		code = exitFailure
		var ue usageError
		if asUsage(err, &ue) || isCobraUsageError(err) {
			code = exitUsage
		}
	}
	return out, errb, code
}

func asUsage(err error, ue *usageError) bool {
	for e := err; e != nil; {
		if u, ok := e.(usageError); ok {
			*ue = u
			return true
		}
		w, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = w.Unwrap()
	}
	return false
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentMeasure(t *testing.T) {
	dir := t.TempDir()
	secretHex := strings.Repeat("42", 32)
	secretFile := writeFile(t, dir, "vm.secret", secretHex+"\n", 0o600)
	writeFile(t, dir, "root.img", strings.Repeat("disk", 100000), 0o600)
	cfg := writeFile(t, dir, "vm.yaml", `schema: vmledger/config/v1
memory: 1GiB
cpu: {count: 2}
disks: [{target: vda, path: root.img}]
`, 0o600)

	out, stderr, code := runAgent(t, "agent", "measure", "--vm", "web01", "--config", cfg, "--vm-secret", secretFile, "--json")
	if code != exitOK {
		t.Fatalf("measure --json: exit %d, stderr %s", code, stderr)
	}
	var m measure.Measurement
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("measure --json output: %v\n%s", err, out)
	}
	if err := m.Check(); err != nil {
		t.Errorf("measure --json manifest does not check: %v", err)
	}
	secret, _ := measure.ParseSecret([]byte(secretHex))
	want, err := measure.V2.Root(&measure.Config{VMID: "web01", MemoryBytes: 1 << 30, CPUCount: 2, Disks: []measure.Disk{{Target: "vda", SHA256: sha256Ptr(strings.Repeat("disk", 100000))}}}, secret)
	if err != nil {
		t.Fatal(err)
	}
	if m.Root != want {
		t.Errorf("measure root = %v, want %v (recomputed from the expected config)", m.Root, want)
	}

	if m.Schema != measure.SchemaV2 {
		t.Errorf("measure schema %q, want %q", m.Schema, measure.SchemaV2)
	}
	if id, _ := m.Leaf(measure.NameVMID); string(id.Value) != "web01" {
		t.Errorf("vm.id leaf %q, want web01", id.Value)
	}
	// --schema v1 measures what an attestation made under v1 says.
	v1out, stderr, code := runAgent(t, "agent", "measure", "--schema", "v1", "--config", cfg, "--vm-secret", secretFile, "--json")
	var m1 measure.Measurement
	if err := json.Unmarshal([]byte(v1out), &m1); code != exitOK || err != nil {
		t.Fatalf("measure --schema v1: exit %d, %v, stderr %s", code, err, stderr)
	}
	if want1, _ := measure.V1.Root(&measure.Config{MemoryBytes: 1 << 30, CPUCount: 2, Disks: []measure.Disk{{Target: "vda", SHA256: sha256Ptr(strings.Repeat("disk", 100000))}}}, secret); m1.Schema != measure.SchemaV1 || m1.Root != want1 {
		t.Errorf("measure --schema v1: schema %q root %v, want %s %v", m1.Schema, m1.Root, measure.SchemaV1, want1)
	}

	text, _, code := runAgent(t, "agent", "measure", "--vm", "web01", "--config", cfg, "--vm-secret", secretFile)
	if code != exitOK || !strings.Contains(text, "root    "+want.String()) || !strings.Contains(text, "memory.bytes") {
		t.Errorf("measure text output (exit %d) lacks the root %v:\n%s", code, want, text)
	}

	disc, _, code := runAgent(t, "agent", "measure", "--vm", "web01", "--config", cfg, "--vm-secret", secretFile, "--disclose", "memory.bytes")
	var dj struct {
		Root        measure.Digest       `json:"root"`
		Disclosures []measure.Disclosure `json:"disclosures"`
	}
	if err := json.Unmarshal([]byte(disc), &dj); code != exitOK || err != nil || len(dj.Disclosures) != 1 {
		t.Fatalf("--disclose: exit %d, %v\n%s", code, err, disc)
	}
	if err := dj.Disclosures[0].Verify(want); err != nil {
		t.Errorf("--disclose memory.bytes does not verify: %v", err)
	}
}

func sha256Ptr(s string) *measure.Digest {
	d, _, _ := measure.HashImage(strings.NewReader(s), nil)
	return &d
}

// TestAgentMeasureErrors: each mistake exits non-zero with a message that
// says what to fix.
func TestAgentMeasureErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "vm.json", `{"schema":"vmledger/config/v1","memory":"1GiB","cpu":{"count":1}}`, 0o600)
	secret := writeFile(t, dir, "vm.secret", strings.Repeat("ab", 32), 0o600)
	tests := []struct {
		name string
		args []string
		code int
		want string
		noVM bool
	}{
		{"no vm", []string{"--config", good, "--vm-secret", secret}, exitUsage, "--vm ID is required", true},
		{"vm with v1", []string{"--config", good, "--vm-secret", secret, "--vm", "web01", "--schema", "v1"}, exitUsage, "does not measure the VM id", true},
		{"bad schema", []string{"--config", good, "--vm-secret", secret, "--schema", "v3"}, exitUsage, "want v2 (the default) or v1", false},
		{"no config", []string{"--vm-secret", secret}, exitUsage, "--config FILE is required", false},
		{"no secret", []string{"--config", good}, exitUsage, "head -c 32 /dev/urandom", false},
		{"both secrets", []string{"--config", good, "--vm-secret", secret, "--insecure-zero-secret"}, exitUsage, "exclude each other", false},
		{"short secret", []string{"--config", good, "--vm-secret", writeFile(t, dir, "short", "abc", 0o600)}, exitFailure, "want 32 raw bytes or 64 hex", false},
		{"zero secret", []string{"--config", good, "--vm-secret", writeFile(t, dir, "zero", strings.Repeat("00", 32), 0o600)}, exitFailure, "all zeros", false},
		{"bad format", []string{"--config", good, "--vm-secret", secret, "--format", "toml"}, exitUsage, "want json, yaml or libvirt", false},
		{"missing memory", []string{"--config", writeFile(t, dir, "nomem.json", `{"schema":"vmledger/config/v1","cpu":{"count":1}}`, 0o600), "--vm-secret", secret}, exitFailure, "field memory", false},
		{"missing image", []string{"--config", writeFile(t, dir, "img.json", `{"schema":"vmledger/config/v1","memory":"1GiB","cpu":{"count":1},"disks":[{"target":"vda","path":"nope.img"}]}`, 0o600), "--vm-secret", secret}, exitFailure, "disk.0.sha256", false},
		{"packages with json", []string{"--config", good, "--vm-secret", secret, "--packages", writeFile(t, dir, "p.json", `{"packages":[{"name":"a","version":"1","manifest_sha256":"`+strings.Repeat("cd", 32)+`"}]}`, 0o600)}, exitFailure, "libvirt XML only", false},
		{"unknown disclosure", []string{"--config", good, "--vm-secret", secret, "--disclose", "memory"}, exitUsage, "names: boot.loader.sha256", false},
		{"demo secret", []string{"--config", good, "--insecure-zero-secret"}, exitOK, "WARNING", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if !tt.noVM {
				args = append([]string{"--vm", "web01"}, args...)
			}
			_, stderr, code := runAgent(t, append([]string{"agent", "measure"}, args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("agent measure %q = exit %d, stderr %q; want exit %d, stderr containing %q", tt.args, code, stderr, tt.code, tt.want)
			}
		})
	}
}

// TestAgentFlowUsage pins what the flow commands say when they are called
// wrongly, and that the libvirt hook ignores operations other than
// prepare/begin. The flows themselves are tested end to end in
// testing/cluster and the e2e tests.
func TestAgentFlowUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"agent", "attest"}, exitUsage, "--out FILE is required"},
		{[]string{"agent", "launch"}, exitUsage, "requires at least 1 arg"},
		{[]string{"agent", "launch", "--", "definitely-not-a-command-xyz"}, exitUsage, "command to launch"},
		{[]string{"agent", "hook", "web01", "started", "begin", "-"}, exitOK, ""},
		{[]string{"agent", "hook", "web01", "release", "end", "-"}, exitOK, ""},
	} {
		_, stderr, code := runAgent(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v = exit %d, %q; want exit %d, %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}
