package swtpmtest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// fakeTB records how Start ends a test without ending this one.
type fakeTB struct {
	testing.TB
	outcome string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.outcome = "fail: " + fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.outcome = "skip: " + fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func startWithout(t *testing.T, require string) string {
	t.Setenv("PATH", t.TempDir()) // no swtpm here
	t.Setenv("VMLEDGER_REQUIRE_SWTPM", require)
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f)
	}()
	<-done
	return f.outcome
}

// TestMissingSwtpm: without swtpm a test skips with a message, unless
// VMLEDGER_REQUIRE_SWTPM=1, which makes it fail.
func TestMissingSwtpm(t *testing.T) {
	for _, tc := range []struct{ require, want string }{
		{"", "skip: swtpm not found"},
		{"0", "skip: swtpm not found"},
		{"1", "fail: swtpm not found"},
	} {
		t.Run("require="+tc.require, func(t *testing.T) {
			if got := startWithout(t, tc.require); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("Start without swtpm, VMLEDGER_REQUIRE_SWTPM=%q: %q, want prefix %q", tc.require, got, tc.want)
			}
		})
	}
}
