package client

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
)

// TestRules checks every rule kind through Verify, with a case that holds and
// one that is violated, against each kind of evidence a verifier can have:
// the expected configuration (with the VM secret), the provider's full
// manifest, and single disclosures (a third party without the secret). Over
// disclosures, a rule about a parameter that was not disclosed must fail as
// "not disclosed": a rule is never satisfied by absence of evidence.
func TestRules(t *testing.T) {
	f := newFixture(t)
	idx := f.attest("vm-1", f.cfg)
	b := f.bundle(idx, f.tree.Size(), 0, 1)
	tr := f.trust()
	m, err := measure.Measure(f.cfg, f.secret)
	if err != nil {
		t.Fatal(err)
	}
	disclose := func(names ...string) []measure.Disclosure {
		var out []measure.Disclosure
		for _, n := range names {
			d, err := m.Disclose(n)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, *d)
		}
		return out
	}
	allDisks := make([]string, measure.MaxDisks)
	for i := range allDisks {
		allDisks[i] = measure.DiskSHA256Name(i)
	}
	disclosePkg := func(names ...string) []measure.PackageDisclosure {
		var out []measure.PackageDisclosure
		for _, n := range names {
			d, err := m.DisclosePackage(n)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, *d)
		}
		return out
	}

	// The attested configuration (newFixture): 4 GiB, 4 vCPUs, one disk of
	// digest 0102030000…, kernel 0900…, no boot loader, command line
	// "console=ttyS0 ro", packages openssh-server 1:9.2p1-2 and openssl
	// 3.0.15-1.
	disk := measure.Digest{1, 2, 3}.String()
	kernel := measure.Digest{9}.String()
	other := measure.Digest{0xee}.String()
	config := func() *Expected { return f.expected() }
	manifest := func() *Expected { return &Expected{VMID: "vm-1", Manifest: m} }
	disclosures := func(names ...string) func() *Expected {
		return func() *Expected { return &Expected{VMID: "vm-1", Disclosures: disclose(names...)} }
	}
	packages := func(names ...string) func() *Expected {
		return func() *Expected { return &Expected{VMID: "vm-1", PackageDisclosures: disclosePkg(names...)} }
	}

	for _, tc := range []struct {
		name     string
		rules    string
		expected func() *Expected
		wantFail string // "" when the rules must hold; else a substring of the failure
	}{
		// Ranges.
		{"memory in range", `{"memory_bytes":{"min":2147483648,"max":17179869184}}`, config, ""},
		{"memory exactly min, no max", `{"memory_bytes":{"min":4294967296}}`, config, ""},
		{"memory above max", `{"memory_bytes":{"min":1,"max":2147483648}}`, config, "memory.bytes = 4294967296, outside [1, 2147483648]"},
		{"memory below min", `{"memory_bytes":{"min":8589934592}}`, config, "memory.bytes = 4294967296, outside [8589934592, ∞]"},
		{"vCPUs in range", `{"cpu_count":{"min":2,"max":8}}`, config, ""},
		{"vCPUs above max", `{"cpu_count":{"min":1,"max":2}}`, config, "cpu.count = 4, outside [1, 2]"},
		{"vCPUs below min", `{"cpu_count":{"min":8}}`, config, "cpu.count = 4, outside [8, ∞]"},
		// Allowed digests.
		{"disk allowed", `{"disk_sha256":["` + other + `","` + disk + `"]}`, config, ""},
		{"disk allowed, digest in upper case", `{"disk_sha256":["` + strings.ToUpper(disk) + `"]}`, config, ""},
		{"disk not allowed", `{"disk_sha256":["` + other + `"]}`, config, "disk.0.sha256 = " + disk + ", not an allowed digest"},
		{"kernel allowed", `{"kernel_sha256":["` + kernel + `"]}`, config, ""},
		{"kernel not allowed", `{"kernel_sha256":["` + other + `"]}`, config, "kernel.sha256 = " + kernel + ", not an allowed digest"},
		{"no boot loader is allowed", `{"boot_loader_sha256":["` + other + `"]}`, config, ""},
		// Allowed values.
		{"command line allowed", `{"kernel_cmdline":["quiet","console=ttyS0 ro"]}`, config, ""},
		{"command line not allowed", `{"kernel_cmdline":["quiet"]}`, config, `kernel.cmdline = "console=ttyS0 ro", not an allowed command line`},
		// Packages.
		{"required package by name", `{"required_packages":["openssh-server"]}`, config, ""},
		{"required package by name=version", `{"required_packages":["openssl=3.0.15-1"]}`, config, ""},
		{"required package missing", `{"required_packages":["auditd"]}`, config, "required package auditd: not present"},
		{"required package, other version", `{"required_packages":["openssl=3.0.16-1"]}`, config, "required package openssl=3.0.16-1: not present"},
		{"forbidden package absent", `{"forbidden_packages":["telnetd"]}`, config, ""},
		{"forbidden package installed", `{"forbidden_packages":["telnetd","openssl"]}`, config, "forbidden package openssl is installed"},
		{"every rule kind at once", `{"memory_bytes":{"min":1},"cpu_count":{"min":1},"disk_sha256":["` + disk + `"],"boot_loader_sha256":["` + other + `"],"kernel_sha256":["` + kernel + `"],"kernel_cmdline":["console=ttyS0 ro"],"required_packages":["openssh-server"],"forbidden_packages":["telnetd"]}`, config, ""},
		{"every rule kind at once, one violated", `{"memory_bytes":{"min":1},"cpu_count":{"min":1},"disk_sha256":["` + disk + `"],"boot_loader_sha256":["` + other + `"],"kernel_sha256":["` + kernel + `"],"kernel_cmdline":["console=ttyS0 ro"],"required_packages":["openssh-server"],"forbidden_packages":["openssh-server"]}`, config, "forbidden package openssh-server is installed"},

		// A full manifest proves every value, and the absence of a package.
		{"manifest: memory in range", `{"memory_bytes":{"min":1,"max":4294967296}}`, manifest, ""},
		{"manifest: vCPUs out of range", `{"cpu_count":{"max":3}}`, manifest, "cpu.count = 4, outside [0, 3]"},
		{"manifest: forbidden package absent", `{"forbidden_packages":["telnetd"]}`, manifest, ""},
		{"manifest: forbidden package installed", `{"forbidden_packages":["openssh-server"]}`, manifest, "forbidden package openssh-server is installed"},
		{"manifest: required package missing", `{"required_packages":["telnetd"]}`, manifest, "required package telnetd: not present"},

		// Disclosures prove only what they disclose.
		{"disclosed memory in range", `{"memory_bytes":{"min":1}}`, disclosures(measure.NameMemoryBytes), ""},
		{"disclosed memory out of range", `{"memory_bytes":{"max":1024}}`, disclosures(measure.NameMemoryBytes), "memory.bytes = 4294967296, outside [0, 1024]"},
		{"vCPUs not disclosed", `{"cpu_count":{"min":1}}`, disclosures(measure.NameMemoryBytes), "cpu.count: not disclosed"},
		{"memory not disclosed", `{"memory_bytes":{"min":1}}`, disclosures(measure.NameCPUCount), "memory.bytes: not disclosed"},
		{"disclosed kernel allowed", `{"kernel_sha256":["` + kernel + `"]}`, disclosures(measure.NameKernel), ""},
		{"disclosed kernel not allowed", `{"kernel_sha256":["` + other + `"]}`, disclosures(measure.NameKernel), "not an allowed digest"},
		{"kernel not disclosed", `{"kernel_sha256":["` + kernel + `"]}`, disclosures(measure.NameMemoryBytes), "kernel.sha256: not disclosed"},
		{"boot loader not disclosed", `{"boot_loader_sha256":["` + other + `"]}`, disclosures(measure.NameKernel), "boot.loader.sha256: not disclosed"},
		{"disclosed boot loader absent", `{"boot_loader_sha256":["` + other + `"]}`, disclosures(measure.NameBootLoader), ""},
		{"disclosed command line", `{"kernel_cmdline":["console=ttyS0 ro"]}`, disclosures(measure.NameKernelCmdline), ""},
		{"command line not disclosed", `{"kernel_cmdline":["console=ttyS0 ro"]}`, disclosures(measure.NameKernel), "kernel.cmdline: not disclosed"},
		// Every disk slot must be disclosed: an undisclosed slot could hold
		// a disk that is not allowed.
		{"every disk slot disclosed", `{"disk_sha256":["` + disk + `"]}`, disclosures(allDisks...), ""},
		{"only the first disk slot disclosed", `{"disk_sha256":["` + disk + `"]}`, disclosures(measure.DiskSHA256Name(0)), "disk.1.sha256: not disclosed"},
		{"disk slots disclosed, one not allowed", `{"disk_sha256":["` + other + `"]}`, disclosures(allDisks...), "disk.0.sha256 = " + disk + ", not an allowed digest"},
		{"disclosed required package", `{"required_packages":["openssl=3.0.15-1"]}`, packages("openssl"), ""},
		{"required package not disclosed", `{"required_packages":["openssh-server"]}`, packages("openssl"), "required package openssh-server: not present (or not disclosed)"},
		{"disclosed forbidden package", `{"forbidden_packages":["openssl"]}`, packages("openssl"), "forbidden package openssl is installed"},
		// Disclosures cannot prove that a package is absent.
		{"forbidden package, disclosures only", `{"forbidden_packages":["telnetd"]}`, packages("openssl"), "forbidden package telnetd: absence cannot be proven without the full package list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := ParseRules([]byte(tc.rules))
			if err != nil {
				t.Fatalf("ParseRules(%s): %v", tc.rules, err)
			}
			exp := tc.expected()
			exp.Rules = rules
			r, err := Verify(t.Context(), b, tr, exp, Options{Now: f.now})
			if tc.wantFail == "" {
				if err != nil {
					t.Fatalf("Verify = %v, want the rules to hold\n%s", err, dump(r))
				}
				return
			}
			if !errors.Is(err, ErrConfiguration) || !strings.Contains(err.Error(), tc.wantFail) {
				t.Fatalf("Verify = %v, want ErrConfiguration with %q\n%s", err, tc.wantFail, dump(r))
			}
			for _, c := range r.Results {
				if c.Check != CheckConfiguration && c.Status != Pass && c.Status != NotRequested {
					t.Fatalf("check %q = %s: only the configuration check may fail\n%s", c.Check, c.Status, dump(r))
				}
			}
		})
	}
}

// TestParseRulesRejects: a typo or a malformed value is an error, never a
// rule silently dropped.
func TestParseRulesRejects(t *testing.T) {
	for _, text := range []string{
		`{"memory":{"min":1}}`,                              // unknown member
		`{"cpu_count":{"min":4,"max":2}}`,                   // max below min
		`{"cpu_count":{"minimum":4}}`,                       // unknown member of a range
		`{"kernel_sha256":["09"]}`,                          // not a SHA-256
		`{"disk_sha256":"` + strings.Repeat("0", 64) + `"}`, // not a list
		`{"required_packages":[1]}`,                         // not a string
		// Case variants and repeats: encoding/json applies one and drops
		// the other (or applies a key another reader does not know).
		`{"memory_bytes":{"min":4},"Memory_Bytes":{"min":1}}`,
		`{"Memory_Bytes":{"min":1}}`,
		`{"memory_bytes":{"min":4},"memory_bytes":{"min":1}}`,
		`{"memory_bytes":{"min":4,"MIN":1}}`,
		`{"memory_bytes":{"min":4,"min":1}}`,
		`{"memory_bytes":{"min":4},"\u006demory_bytes":{"min":1}}`,
		`{"di\u017fk_sha256":["` + strings.Repeat("0", 64) + `"]}`, // ſ folds to s in encoding/json
		`{"forbidden_packages":["telnetd"],"Forbidden_Packages":[]}`,
		"{\"kernel_cmdline\":[\"ro\"]}\n{}", // a second value
		"{\"kernel_cmdline\":[\"r\xffo\"]}", // invalid UTF-8
	} {
		if _, err := ParseRules([]byte(text)); err == nil {
			t.Errorf("ParseRules(%s) accepted it", text)
		}
	}
}

// TestRulesDocExample parses the example in the Rules doc comment, so that
// the documented example stays a valid rules file with every rule kind.
func TestRulesDocExample(t *testing.T) {
	file, err := parser.ParseFile(token.NewFileSet(), "rules.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var doc string
	for _, d := range file.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE && g.Doc != nil {
			if ts := g.Specs[0].(*ast.TypeSpec); ts.Name.Name == "Rules" {
				doc = g.Doc.Text()
			}
		}
	}
	// The example is the first indented block that starts with "{".
	var example strings.Builder
	in := false
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "{" && strings.HasPrefix(line, "\t"):
			in = true
			example.WriteString(line + "\n")
		case in && !strings.HasPrefix(line, "\t"):
			in = false
		case in:
			example.WriteString(line + "\n")
		}
		if in && strings.TrimSpace(line) == "}" {
			break
		}
	}
	if example.Len() == 0 {
		t.Fatalf("no indented JSON example in the Rules doc comment:\n%s", doc)
	}
	r, err := ParseRules([]byte(example.String()))
	if err != nil {
		t.Fatalf("the Rules doc example does not parse: %v\n%s", err, example.String())
	}
	if r.MemoryBytes == nil || r.CPUCount == nil || len(r.DiskSHA256) == 0 || len(r.BootLoaderSHA256) == 0 ||
		len(r.KernelSHA256) == 0 || len(r.KernelCmdline) == 0 || len(r.RequiredPackages) == 0 || len(r.ForbiddenPackages) == 0 {
		t.Fatalf("the Rules doc example lacks a rule kind: %+v", r)
	}
}
