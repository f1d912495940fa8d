package client

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/vmledger/vmledger/agent/measure"
)

// explainMismatch compares the expected measurement with the attested values
// at hand, when the roots differ: a manifest that recomputes to the attested
// root gives every attested value, verified disclosures give some. It returns
// the parameters that differ and a sentence for the report.
func explainMismatch(want *measure.Measurement, root measure.Digest, e *Expected) ([]ParameterDiff, string) {
	if m := e.Manifest; m != nil && m.Root == root && m.Check() == nil {
		// packages.root is the salted subtree's root: the packages
		// themselves are compared instead.
		leaves := slices.DeleteFunc(slices.Clone(m.Leaves), func(l measure.Leaf) bool { return l.Name == measure.NamePackagesRoot })
		diffs := diffLeaves(want, leaves)
		diffs = append(diffs, diffPackages(want.Packages, m.Packages)...)
		if len(diffs) == 0 {
			return nil, "the manifest's values are all the expected ones but its salts are not: the attestation was measured with another VM secret"
		}
		return diffs, fmt.Sprintf("%s: %s", plural(len(diffs), "parameter differs", "parameters differ"), names(diffs))
	}
	var leaves []measure.Leaf
	for _, d := range e.Disclosures {
		if d.Verify(root) == nil {
			leaves = append(leaves, measure.Leaf{Name: d.Name, Type: d.Type, Value: d.Value})
		}
	}
	var pkgs []measure.PackageLeaf
	for _, d := range e.PackageDisclosures {
		if d.Verify(root) == nil {
			pkgs = append(pkgs, measure.PackageLeaf{Package: d.Package})
		}
	}
	n := len(leaves) + len(pkgs)
	if n == 0 {
		return nil, "give the provider's manifest (--manifest) or disclosures (--disclosures) to name the parameters that differ"
	}
	diffs := diffLeaves(want, leaves)
	for _, p := range pkgs {
		i := slices.IndexFunc(want.Packages, func(w measure.PackageLeaf) bool { return w.Name == p.Name })
		switch {
		case i < 0:
			diffs = append(diffs, ParameterDiff{Name: "package " + p.Name, Expected: "-", Attested: p.Version})
		case !samePackage(want.Packages[i].Package, p.Package):
			diffs = append(diffs, packageDiff(p.Name, &want.Packages[i].Package, &p.Package))
		}
	}
	if len(diffs) == 0 {
		return nil, fmt.Sprintf("the %s the expected value; the difference is elsewhere (the manifest would name it)", plural(n, "disclosed parameter has", "disclosed parameters have"))
	}
	return diffs, fmt.Sprintf("%d of %s: %s", len(diffs), plural(n, "disclosed parameter differs", "disclosed parameters "+map[bool]string{true: "differs", false: "differ"}[len(diffs) == 1]), names(diffs))
}

// diffLeaves returns the leaves of got whose type or value is not want's.
func diffLeaves(want *measure.Measurement, got []measure.Leaf) []ParameterDiff {
	var diffs []ParameterDiff
	for _, g := range got {
		w, ok := want.Leaf(g.Name)
		if ok && w.Type == g.Type && bytes.Equal(w.Value, g.Value) {
			continue
		}
		exp := "-"
		if ok {
			exp = measure.Display(w.Name, w.Type, w.Value)
		}
		diffs = append(diffs, ParameterDiff{Name: g.Name, Expected: exp, Attested: measure.Display(g.Name, g.Type, g.Value)})
	}
	return diffs
}

// diffPackages compares two whole package lists (sorted by name).
func diffPackages(want, got []measure.PackageLeaf) []ParameterDiff {
	byName := func(l []measure.PackageLeaf) map[string]*measure.Package {
		m := map[string]*measure.Package{}
		for i := range l {
			m[l[i].Name] = &l[i].Package
		}
		return m
	}
	w, g := byName(want), byName(got)
	var all []string
	for n := range w {
		all = append(all, n)
	}
	for n := range g {
		if w[n] == nil {
			all = append(all, n)
		}
	}
	slices.Sort(all)
	var diffs []ParameterDiff
	for _, n := range all {
		if w[n] != nil && g[n] != nil && samePackage(*w[n], *g[n]) {
			continue
		}
		diffs = append(diffs, packageDiff(n, w[n], g[n]))
	}
	return diffs
}

func samePackage(a, b measure.Package) bool {
	return a.Version == b.Version && a.ManifestSHA256 == b.ManifestSHA256
}

// packageDiff shows versions, and the manifest digests when the versions are
// equal; nil is an absent package.
func packageDiff(name string, want, got *measure.Package) ParameterDiff {
	show := func(p *measure.Package, withDigest bool) string {
		switch {
		case p == nil:
			return "-"
		case withDigest:
			return p.Version + " (manifest sha256 " + p.ManifestSHA256.String() + ")"
		}
		return p.Version
	}
	digests := want != nil && got != nil && want.Version == got.Version
	return ParameterDiff{Name: "package " + name, Expected: show(want, digests), Attested: show(got, digests)}
}

func names(diffs []ParameterDiff) string {
	s := make([]string, len(diffs))
	for i, d := range diffs {
		s[i] = d.Name
	}
	return strings.Join(s, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
