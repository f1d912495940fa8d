package client

import (
	"testing"
)

// FuzzParseTrust: the trust-file parser never panics, and what it accepts
// names at least one log and one co-processor.
func FuzzParseTrust(f *testing.F) {
	f.Add([]byte("log example.com/log+5a0c6b3e+AXl0aGVyZS1pcy1ub3QtYS1rZXktYnV0LWl0LWlzLTMyYg==\nquorum none\ncoprocessor a MCowBQYDK2VwAyEAcL7/V/+fLUB0qibqn9UQT45fmNifAvn1rPaseYWdf+E=\nmax-age 1h\n"))
	f.Add([]byte("witness w1 w1.example+0ad7d35e+BIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c\ngroup g 1 w1\nquorum g\n"))
	f.Add([]byte("coprocessor a /nonexistent.pem\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text []byte) {
		tr, err := ParseTrust(text, dir)
		if err != nil {
			return
		}
		if len(tr.Policy.Logs) == 0 || len(tr.Coprocessors) == 0 {
			t.Fatalf("ParseTrust accepted a trust file without a log or a co-processor: %q", text)
		}
	})
}

// FuzzParseRules: the rules parser never panics, and accepted ranges are
// well-ordered.
func FuzzParseRules(f *testing.F) {
	f.Add([]byte(`{"memory_bytes":{"min":1,"max":2},"cpu_count":{"min":1},"disk_sha256":["` + "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff" + `"],"required_packages":["a=1"],"forbidden_packages":["b"]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"kernel_cmdline":["ro"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRules(b)
		if err != nil {
			return
		}
		for _, rg := range []*Range{r.MemoryBytes, r.CPUCount} {
			if rg != nil && rg.Max != 0 && rg.Max < rg.Min {
				t.Fatalf("ParseRules accepted max %d < min %d", rg.Max, rg.Min)
			}
		}
	})
}
