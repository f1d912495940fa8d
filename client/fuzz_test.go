package client

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"

	"github.com/vmledger/vmledger/internal/strictjson"
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

// FuzzParseRules: the rules parser never panics, accepted ranges are
// well-ordered, and it is differential-tested against a reader that matches
// keys exactly and keeps the first of repeated keys (strictjson.ReadFirst):
// whatever ParseRules accepts has no repeated key, only exact member names,
// and the same rules under both readings — no rule that one reader applies
// and the other drops.
func FuzzParseRules(f *testing.F) {
	f.Add([]byte(`{"memory_bytes":{"min":1,"max":2},"cpu_count":{"min":1},"disk_sha256":["` + "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff" + `"],"required_packages":["a=1"],"forbidden_packages":["b"]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"kernel_cmdline":["ro"]}`))
	f.Add([]byte(`{"memory_bytes":{"min":4},"Memory_Bytes":{"min":1}}`))
	f.Add([]byte(`{"memory_bytes":{"min":4},"memory_bytes":{"min":1}}`))
	f.Add([]byte(`{"forbidden_packages":["telnetd"],"Forbidden_Packages":[]}`))
	f.Add([]byte(`{"cpu_count":{"min":2,"MAX":1,"max":8}}`))
	f.Add([]byte(`{"kernel_cmdline":null,"cpu_count":{"min":null}}`))
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
		v, repeated, err := strictjson.ReadFirst(b)
		if err != nil {
			t.Fatalf("ParseRules accepted what a plain JSON reader refuses (%v): %q", err, b)
		}
		if repeated {
			t.Fatalf("ParseRules accepted a repeated key: %q", b)
		}
		top, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("ParseRules accepted a non-object: %q", b)
		}
		known := strictjson.Fields(reflect.TypeFor[Rules]())
		for k := range top {
			if _, ok := known[k]; !ok {
				t.Fatalf("ParseRules accepted member %q, which is not exactly a rule's name: %q", k, b)
			}
		}
		rangeOf := func(name string, got *Range) {
			m, _ := top[name].(map[string]any)
			if (m == nil) != (got == nil) {
				t.Fatalf("%s: first-wins reading %v, ParseRules %v: %q", name, top[name], got, b)
			}
			for k, v := range m {
				n, _ := v.(json.Number)
				var want uint64
				if n != "" {
					want, _ = strconv.ParseUint(string(n), 10, 64)
				}
				switch k {
				case "min":
					if got.Min != want {
						t.Fatalf("%s.min: first-wins reading %v, ParseRules %d: %q", name, v, got.Min, b)
					}
				case "max":
					if got.Max != want {
						t.Fatalf("%s.max: first-wins reading %v, ParseRules %d: %q", name, v, got.Max, b)
					}
				default:
					t.Fatalf("ParseRules accepted range member %q: %q", k, b)
				}
			}
		}
		rangeOf("memory_bytes", r.MemoryBytes)
		rangeOf("cpu_count", r.CPUCount)
		for name, got := range map[string][]string{
			"disk_sha256": r.DiskSHA256, "boot_loader_sha256": r.BootLoaderSHA256, "kernel_sha256": r.KernelSHA256,
			"kernel_cmdline": r.KernelCmdline, "required_packages": r.RequiredPackages, "forbidden_packages": r.ForbiddenPackages,
		} {
			l, _ := top[name].([]any)
			if len(l) != len(got) {
				t.Fatalf("%s: first-wins reading %v, ParseRules %q: %q", name, top[name], got, b)
			}
			for i := range l {
				if l[i] != got[i] {
					t.Fatalf("%s[%d]: first-wins reading %v, ParseRules %q: %q", name, i, l[i], got[i], b)
				}
			}
		}
	})
}
