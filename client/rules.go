package client

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/internal/strictjson"
)

// Rules are expectations about a configuration beyond exact equality: what a
// customer accepts rather than the one configuration they ordered (`vmledger
// verify --rules FILE`). Each rule is checked against parameter values that
// are proven to be under the attested root — from the expected configuration
// (with the VM secret), a full manifest, or disclosures. A rule about a value
// that is not proven fails: a rule is never satisfied by absence of evidence.
//
// A rules file is one JSON object; every member is optional, and unknown,
// repeated or differently cased members are errors (a typo or a second copy
// must not drop a rule). An example with every
// rule kind:
//
//	{
//	  "memory_bytes": {"min": 2147483648, "max": 17179869184},
//	  "cpu_count": {"min": 2, "max": 8},
//	  "disk_sha256": ["0102030000000000000000000000000000000000000000000000000000000000"],
//	  "boot_loader_sha256": ["3f1a9c0e6b2d4f8a7c5e1b3d9f0a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b0d2f4a"],
//	  "kernel_sha256": ["0900000000000000000000000000000000000000000000000000000000000000"],
//	  "kernel_cmdline": ["console=ttyS0 ro", "console=ttyS0 ro quiet"],
//	  "required_packages": ["openssh-server", "openssl=3.0.15-1"],
//	  "forbidden_packages": ["telnetd", "rsh-server"]
//	}
//
// The rule kinds:
//
//   - memory_bytes, cpu_count: an inclusive range; "max" omitted (or 0)
//     means no upper bound, "min" omitted means 0. {"cpu_count": {"min": 4,
//     "max": 4}} requires exactly 4 vCPUs.
//   - disk_sha256: allowed disk image digests (hex, either case); every disk
//     slot that holds a disk must hold one of these, and empty slots pass.
//   - boot_loader_sha256, kernel_sha256: allowed digests; a VM without a
//     boot loader (or kernel) passes.
//   - kernel_cmdline: allowed command lines, compared exactly; a VM without
//     a command line fails.
//   - required_packages: each "name" or "name=version" must be installed.
//   - forbidden_packages: no package of one of these names may be installed.
//
// What each kind of evidence can prove:
//
//   - --expected with --vm-secret, or --manifest: every value, and the
//     absence of a package, so every rule can be checked.
//   - --disclosures (a third party without the secret): only the disclosed
//     parameters. A range, digest or command-line rule over a parameter that
//     was not disclosed fails with "not disclosed"; disk_sha256 needs all 16
//     disk slots (disk.0.sha256 … disk.15.sha256) disclosed, since an
//     undisclosed slot could hold any disk; a required package must be
//     disclosed; and forbidden_packages always fails, because disclosures
//     cannot prove that a package is absent — ask for the manifest.
type Rules struct {
	MemoryBytes       *Range   `json:"memory_bytes,omitempty"`
	CPUCount          *Range   `json:"cpu_count,omitempty"`
	DiskSHA256        []string `json:"disk_sha256,omitempty"`
	BootLoaderSHA256  []string `json:"boot_loader_sha256,omitempty"`
	KernelSHA256      []string `json:"kernel_sha256,omitempty"`
	KernelCmdline     []string `json:"kernel_cmdline,omitempty"`
	RequiredPackages  []string `json:"required_packages,omitempty"`
	ForbiddenPackages []string `json:"forbidden_packages,omitempty"`
}

// Range is an inclusive range; a zero Max means no upper bound.
type Range struct {
	Min uint64 `json:"min"`
	Max uint64 `json:"max,omitempty"`
}

// ParseRules decodes rules strictly (package internal/strictjson): unknown
// members, members in another case ("Memory_Bytes"), repeated members and
// anything after the object are errors, so that neither a typo nor a second
// copy of a rule can silently drop one.
func ParseRules(b []byte) (*Rules, error) {
	var r Rules
	if err := strictjson.Decode(b, &r); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	for _, list := range [][]string{r.DiskSHA256, r.BootLoaderSHA256, r.KernelSHA256} {
		for _, d := range list {
			if _, err := measure.ParseDigest(d); err != nil {
				return nil, fmt.Errorf("rules: digest %q: %w", d, err)
			}
		}
	}
	for _, rg := range []*Range{r.MemoryBytes, r.CPUCount} {
		if rg != nil && rg.Max != 0 && rg.Max < rg.Min {
			return nil, fmt.Errorf("rules: range max %d below min %d", rg.Max, rg.Min)
		}
	}
	return &r, nil
}

// facts are the parameter values proven to be under an attested root.
type facts struct {
	leaves map[string]measure.Leaf // by name
	// packages is the package list; complete reports whether it is the whole
	// list (from a manifest) or only disclosed packages.
	packages []measure.Package
	complete bool
}

func factsFromMeasurement(m *measure.Measurement) *facts {
	f := &facts{leaves: map[string]measure.Leaf{}, complete: true}
	for _, l := range m.Leaves {
		f.leaves[l.Name] = l
	}
	for _, p := range m.Packages {
		f.packages = append(f.packages, p.Package)
	}
	return f
}

// check evaluates r and returns every violation.
func (r *Rules) check(f *facts) []string {
	var bad []string
	u64 := func(name string) (uint64, bool) {
		l, ok := f.leaves[name]
		if !ok || l.Type != measure.TypeU64 || len(l.Value) != 8 {
			return 0, false
		}
		return binary.BigEndian.Uint64(l.Value), true
	}
	rangeRule := func(name string, rg *Range) {
		if rg == nil {
			return
		}
		v, ok := u64(name)
		switch {
		case !ok:
			bad = append(bad, name+": not disclosed, cannot check its range")
		case v < rg.Min || (rg.Max != 0 && v > rg.Max):
			bad = append(bad, fmt.Sprintf("%s = %d, outside [%d, %s]", name, v, rg.Min, maxString(rg.Max)))
		}
	}
	rangeRule(measure.NameMemoryBytes, r.MemoryBytes)
	rangeRule(measure.NameCPUCount, r.CPUCount)

	digestRule := func(name string, allowed []string, absentOK bool) {
		l, ok := f.leaves[name]
		switch {
		case !ok:
			bad = append(bad, name+": not disclosed, cannot check it against the allowed digests")
		case l.Type == measure.TypeAbsent:
			if !absentOK {
				bad = append(bad, name+": absent")
			}
		case !slices.Contains(lowered(allowed), hex.EncodeToString(l.Value)):
			bad = append(bad, fmt.Sprintf("%s = %x, not an allowed digest", name, []byte(l.Value)))
		}
	}
	if len(r.DiskSHA256) > 0 {
		for i := 0; i < measure.MaxDisks; i++ {
			digestRule(measure.DiskSHA256Name(i), r.DiskSHA256, true)
		}
	}
	if len(r.BootLoaderSHA256) > 0 {
		digestRule(measure.NameBootLoader, r.BootLoaderSHA256, true)
	}
	if len(r.KernelSHA256) > 0 {
		digestRule(measure.NameKernel, r.KernelSHA256, true)
	}
	if len(r.KernelCmdline) > 0 {
		l, ok := f.leaves[measure.NameKernelCmdline]
		switch {
		case !ok:
			bad = append(bad, "kernel.cmdline: not disclosed")
		case l.Type == measure.TypeAbsent:
			bad = append(bad, "kernel.cmdline: absent, want one of the allowed command lines")
		case !slices.Contains(r.KernelCmdline, string(l.Value)):
			bad = append(bad, fmt.Sprintf("kernel.cmdline = %q, not an allowed command line", string(l.Value)))
		}
	}
	for _, want := range r.RequiredPackages {
		name, version, _ := strings.Cut(want, "=")
		found := slices.ContainsFunc(f.packages, func(p measure.Package) bool {
			return p.Name == name && (version == "" || p.Version == version)
		})
		if !found {
			bad = append(bad, "required package "+want+": not present (or not disclosed)")
		}
	}
	for _, name := range r.ForbiddenPackages {
		if slices.ContainsFunc(f.packages, func(p measure.Package) bool { return p.Name == name }) {
			bad = append(bad, "forbidden package "+name+" is installed")
		} else if !f.complete {
			bad = append(bad, "forbidden package "+name+": absence cannot be proven without the full package list (a manifest)")
		}
	}
	return bad
}

func lowered(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strings.ToLower(x)
	}
	return out
}

func maxString(m uint64) string {
	if m == 0 {
		return "∞"
	}
	return fmt.Sprint(m)
}
