package measure

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxCPU is the largest host CPU number a cpuset may name. It bounds the
// work of parsing untrusted input; libvirt's own bitmap limit is lower.
const MaxCPU = 1<<20 - 1

// CanonicalCPUSet parses a cpuset in libvirt's syntax and returns its
// canonical form, the only form a cpu.affinity leaf may hold.
//
// Input syntax: comma-separated elements, each "N", "N-M" (N <= M) or "^N"
// (exclude N; exclusions apply after all inclusions, in any position).
// Blanks around elements are ignored. Numbers are decimal, 0..MaxCPU.
//
// Canonical form: the selected CPUs in ascending order as maximal runs of
// consecutive numbers, a run of one written "N", a longer run "N-M", joined
// by "," with no blanks and no leading zeros: {0,1,2,3,8,10,11} is
// "0-3,8,10-11". An empty selection is an error.
func CanonicalCPUSet(s string) (string, error) {
	type span struct{ lo, hi uint64 }
	var incl, excl []span
	if strings.TrimSpace(s) == "" {
		return "", errors.New("cpuset is empty")
	}
	for el := range strings.SplitSeq(s, ",") {
		el = strings.TrimSpace(el)
		neg := strings.HasPrefix(el, "^")
		if neg {
			el = el[1:]
		}
		lo, hi, isRange := strings.Cut(el, "-")
		a, err := cpuNumber(lo)
		if err != nil {
			return "", fmt.Errorf("cpuset %q: %w", abbrev(s), err)
		}
		b := a
		if isRange {
			if neg {
				return "", fmt.Errorf("cpuset %q: an exclusion takes one CPU, not a range", abbrev(s))
			}
			if b, err = cpuNumber(hi); err != nil {
				return "", fmt.Errorf("cpuset %q: %w", abbrev(s), err)
			}
			if b < a {
				return "", fmt.Errorf("cpuset %q: range %d-%d is backwards", abbrev(s), a, b)
			}
		}
		if neg {
			excl = append(excl, span{a, a})
		} else {
			incl = append(incl, span{a, b})
		}
	}
	// Merge the inclusions into disjoint sorted runs, then cut out exclusions.
	slices.SortFunc(incl, func(x, y span) int { return int(x.lo) - int(y.lo) })
	var runs []span
	for _, sp := range incl {
		if n := len(runs); n > 0 && sp.lo <= runs[n-1].hi+1 {
			runs[n-1].hi = max(runs[n-1].hi, sp.hi)
			continue
		}
		runs = append(runs, sp)
	}
	for _, x := range excl {
		var next []span
		for _, r := range runs {
			switch {
			case x.lo < r.lo || x.lo > r.hi:
				next = append(next, r)
			default:
				if r.lo < x.lo {
					next = append(next, span{r.lo, x.lo - 1})
				}
				if x.lo < r.hi {
					next = append(next, span{x.lo + 1, r.hi})
				}
			}
		}
		runs = next
	}
	if len(runs) == 0 {
		return "", fmt.Errorf("cpuset %q selects no CPU", abbrev(s))
	}
	var b strings.Builder
	for i, r := range runs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(r.lo, 10))
		if r.hi > r.lo {
			b.WriteByte('-')
			b.WriteString(strconv.FormatUint(r.hi, 10))
		}
	}
	return b.String(), nil
}

func cpuNumber(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a CPU number", abbrev(s))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > MaxCPU {
		return 0, fmt.Errorf("CPU %s is above the limit %d", abbrev(s), MaxCPU)
	}
	return n, nil
}
