package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/internal/strictjson"
)

// TestWatchFileStrict: a watch file member that is misspelled, in another
// case or repeated is refused, naming it, instead of being silently ignored
// (a misspelled "expect_within" would turn off the missing-VM alert).
func TestWatchFileStrict(t *testing.T) {
	dir := t.TempDir()
	cfg := vmConfig(t, dir, "web01.json", "4GiB")
	sec := writeFile(t, dir, "web01.secret", strings.Repeat("ab", 32), 0o600)
	vm := fmt.Sprintf(`"vm": "web01", "config": %q, "vm_secret": %q`, cfg, sec)
	tests := []struct {
		name, body, member string
		want               error
	}{
		{"misspelled expect_within", `{"vms": [{` + vm + `, "expect_withn": "1h"}]}`, "expect_withn", strictjson.ErrUnknownField},
		{"another case", `{"vms": [{` + vm + `, "Expect_Within": "1h"}]}`, "Expect_Within", strictjson.ErrUnknownField},
		{"repeated member", `{"vms": [{` + vm + `, "expect_within": "1h", "expect_within": "1000h"}]}`, "expect_within", strictjson.ErrDuplicateKey},
		{"unknown top-level member", `{"vms": [{` + vm + `}], "vm": "web02"}`, "vm", strictjson.ErrUnknownField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, dir, "watch.json", tt.body, 0o644)
			cmd := &cobra.Command{}
			cmd.SetContext(t.Context())
			_, err := loadWatch(cmd, path)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.member) {
				t.Fatalf("err = %v, want %v naming %q", err, tt.want, tt.member)
			}
		})
	}
	path := writeFile(t, dir, "watch.json", `{"vms": [{`+vm+`, "expect_within": "1h"}]}`, 0o644)
	cmd := &cobra.Command{}
	cmd.SetContext(t.Context())
	w, err := loadWatch(cmd, path)
	if err != nil || w["web01"].Within.Hours() != 1 {
		t.Fatalf("a correct watch file: %v, %+v", err, w)
	}
}

// TestMonitorNamesDifferences: monitor's alert for a watched VM attested
// with another configuration names the parameter that differs, with the
// expected and the attested value, when the watch file lists the
// provider's manifest of that attestation; without it, the alert says the
// log does not hold the values.
func TestMonitorNamesDifferences(t *testing.T) {
	d := startFlowDeployment(t)
	dir := d.dir
	cfg := vmConfig(t, dir, "web01.json", "4GiB")
	ordered := vmConfig(t, dir, "web01-8g.json", "8GiB")
	sec := writeFile(t, dir, "web01.secret", strings.Repeat("ab", 32), 0o600)
	if _, stderr, code := runIn(t, "", "agent", "attest", "--out", filepath.Join(dir, "b.json"), "--vm", "web01", "--config", cfg, "--vm-secret", sec,
		"--trust", d.TrustFile, "--coproc", d.coproc, "--log", d.LogURL); code != exitOK {
		t.Fatalf("agent attest: exit %d\n%s", code, stderr)
	}
	manifest, stderr, code := runIn(t, "", "agent", "measure", "--config", cfg, "--vm-secret", sec, "--vm", "web01", "--json")
	if code != exitOK {
		t.Fatalf("agent measure --json: exit %d\n%s", code, stderr)
	}
	writeFile(t, dir, "web01.manifest.json", manifest, 0o600)
	for _, tt := range []struct {
		name, manifests, want string
	}{
		{"with the provider's manifest", `, "manifests": ["web01.manifest.json"]`, "memory.bytes: expected 8589934592, attested 4294967296"},
		{"without it", "", "not the values"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			watch := writeFile(t, dir, "watch.json", fmt.Sprintf(`{"vms": [{"vm": "web01", "config": %q, "vm_secret": %q%s}]}`, ordered, sec, tt.manifests), 0o644)
			stdout, stderr, code := runIn(t, "", "monitor", "--once", "--log", d.LogURL, "--trust", d.TrustFile, "--watch", watch, "--state", filepath.Join(t.TempDir(), "state"))
			if code != exitRefused || !strings.Contains(stdout, "ALERT unexpected-config vm=web01") || !strings.Contains(stdout, tt.want) {
				t.Errorf("exit %d, want %d and an alert saying %q\n%s%s", code, exitRefused, tt.want, stdout, stderr)
			}
		})
	}
}
