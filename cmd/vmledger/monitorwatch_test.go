package main

import (
	"errors"
	"fmt"
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
