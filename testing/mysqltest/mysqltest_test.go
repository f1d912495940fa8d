package mysqltest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSkipOrFail runs TestNewDatabase in a child process without a server:
// it must skip by default and fail when VMLEDGER_REQUIRE_MYSQL=1.
func TestSkipOrFail(t *testing.T) {
	if os.Getenv("MYSQLTEST_CHILD") == "1" {
		t.Skip("child process")
	}
	for _, tc := range []struct {
		require  string
		wantFail bool
		wantText string
	}{
		{"", false, "--- SKIP: TestNewDatabase"},
		{"1", true, "--- FAIL: TestNewDatabase"},
	} {
		t.Run("require="+tc.require, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestNewDatabase$", "-test.v")
			cmd.Env = append(os.Environ(), EnvDSN+"=", EnvRequire+"="+tc.require, "MYSQLTEST_CHILD=1")
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tc.wantFail {
				t.Errorf("child with %s=%q: failed = %v, want %v\n%s", EnvRequire, tc.require, failed, tc.wantFail, out)
			}
			if !strings.Contains(string(out), tc.wantText) || !strings.Contains(string(out), EnvDSN) {
				t.Errorf("child output lacks %q and a message naming %s:\n%s", tc.wantText, EnvDSN, out)
			}
		})
	}
}

// TestNewDatabase creates a database and uses it (and, in the child of
// TestSkipOrFail, shows the skip or failure without a server).
func TestNewDatabase(t *testing.T) {
	dsn := NewDatabase(t)
	if !strings.Contains(dsn, "/vmledger_test_") {
		t.Errorf("NewDatabase DSN = %q, want a vmledger_test_ database", dsn)
	}
}
