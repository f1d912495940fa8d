package vmconfig

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// UnitScale returns the number of bytes in one unit, with libvirt's rules
// (virScaleInteger), case-insensitive:
//
//	"b", "byte", "bytes"           1
//	"KB" 1000       "k", "KiB"    1024
//	"MB" 1000²      "M", "MiB"    1024²
//	"GB" 1000³      "G", "GiB"    1024³
//	"TB" 1000⁴      "T", "TiB"    1024⁴
//	"PB" 1000⁵      "P", "PiB"    1024⁵
//	"EB" 1000⁶      "E", "EiB"    1024⁶
//
// A single letter is a power of 1024; "<letter>B" a power of 1000;
// "<letter>iB" a power of 1024.
func UnitScale(unit string) (uint64, error) {
	switch strings.ToLower(unit) {
	case "b", "byte", "bytes":
		return 1, nil
	case "":
		return 0, errors.New("no unit")
	}
	var base uint64
	switch rest := strings.ToLower(unit[1:]); rest {
	case "", "ib":
		base = 1024
	case "b":
		base = 1000
	default:
		return 0, fmt.Errorf("unknown unit %q (want b, KB, k, KiB, MB, M, MiB, GB, G, GiB, TB, T, TiB, ...)", unit)
	}
	power := strings.IndexByte("kmgtpe", lower(unit[0])) + 1
	if power == 0 {
		return 0, fmt.Errorf("unknown unit %q (want b, KB, k, KiB, MB, M, MiB, GB, G, GiB, TB, T, TiB, ...)", unit)
	}
	scale := uint64(1)
	for range power {
		scale *= base
	}
	return scale, nil
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// ScaleBytes returns value × UnitScale(unit), refusing overflow. value is a
// decimal integer (blanks around it are ignored).
func ScaleBytes(value, unit string) (uint64, error) {
	v := strings.TrimSpace(value)
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal integer", abbrev(value))
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", abbrev(value))
	}
	u := strings.TrimSpace(unit)
	scale, err := UnitScale(u)
	if err != nil {
		return 0, err
	}
	hi, lo := bits.Mul64(n, scale)
	if hi != 0 {
		return 0, fmt.Errorf("%s %s overflows 64 bits", v, u)
	}
	return lo, nil
}

// ParseSize parses a size with a mandatory unit, "8GiB", "8 GiB" or
// "8589934592 b". A bare number is refused: it is ambiguous (libvirt reads
// it as KiB, people often mean MiB or bytes).
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && '0' <= t[i] && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: want a number and a unit, e.g. \"8GiB\"", abbrev(s))
	}
	if strings.TrimSpace(t[i:]) == "" {
		return 0, fmt.Errorf("size %q has no unit: write e.g. \"%sGiB\", \"%sMiB\" or \"%sb\"", abbrev(s), t, t, t)
	}
	return ScaleBytes(t[:i], t[i:])
}

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
