package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAgentMismatchNamesParameters: agent attest, launch and hook refuse a
// configuration that is not the one the owner ordered and say which
// parameter differs, with the expected and the attested value — the agent
// measured what it attested — not only two roots.
func TestAgentMismatchNamesParameters(t *testing.T) {
	d := startFlowDeployment(t)
	dir := d.dir
	cfg := vmConfig(t, dir, "web01.json", "4GiB")
	ordered := vmConfig(t, dir, "web01-8g.json", "8GiB")
	sec := writeFile(t, dir, "web01.secret", strings.Repeat("ab", 32), 0o600)
	flow := []string{"--vm", "web01", "--config", cfg, "--vm-secret", sec, "--trust", d.TrustFile, "--coproc", d.coproc, "--log", d.LogURL, "--expected", ordered}

	// The hook: the store holds the configuration the owner ordered, with
	// 8 GiB, and libvirt is about to start the domain with 4 GiB.
	hookCfg, xml := d.hookSetup(t, "web02", nil)
	disk, err := os.ReadFile(filepath.Join(dir, "web02.img"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "agent-store", "web02"), "expected.json", fmt.Sprintf(`{
  "schema": "vmledger/config/v1",
  "memory": "8GiB",
  "cpu": {"count": 2},
  "disks": [{"target": "vda", "sha256": "%x"}]
}
`, sha256.Sum256(disk)), 0o644)

	want := "memory.bytes: expected 8589934592, attested 4294967296"
	tests := []struct {
		name  string
		stdin string
		args  []string
	}{
		{"attest", "", append([]string{"agent", "attest", "--out", filepath.Join(dir, "x.json")}, flow...)},
		{"launch", "", append(append([]string{"agent", "launch"}, flow...), "--", "true")},
		{"hook", xml, []string{"agent", "hook", "--agent-config", hookCfg, "web02", "prepare", "begin", "-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runIn(t, tt.stdin, tt.args...)
			if code != exitRefused || !strings.Contains(stdout+stderr, want) {
				t.Errorf("exit %d, want %d and %q in the output\n%s%s", code, exitRefused, want, stdout, stderr)
			}
		})
	}
}
