package measure

import (
	"fmt"
	"slices"
	"strings"

	"github.com/transparency-dev/merkle/proof"
)

// Disclosure reveals one configuration parameter to a third party without
// revealing any other: the leaf's contents and its RFC 6962 inclusion proof
// in the configuration tree. Index and TreeSize are fixed by the schema
// (Spec.LeafIndex(Name), Spec.NumLeaves); they are carried so that a generic
// RFC 6962 verifier needs nothing else.
type Disclosure struct {
	// Schema is the configuration schema of the tree; "" is schema v1
	// (disclosures made before schema v2 carry none).
	Schema   string   `json:"schema,omitempty"`
	Name     string   `json:"name"`
	Type     Type     `json:"type"`
	Value    HexBytes `json:"value"`
	Salt     Digest   `json:"salt"`
	Index    uint64   `json:"index"`
	TreeSize uint64   `json:"tree_size"`
	Proof    []Digest `json:"proof"` // sibling hashes, leaf's sibling first
}

// PackageDisclosure reveals one package: its leaf and inclusion proof in the
// package subtree, and the disclosure of packages.root (whose value is the
// subtree root) in the configuration tree. It reveals the number of
// packages (SubtreeSize) but no other package.
type PackageDisclosure struct {
	Package     Package    `json:"package"`
	Salt        Digest     `json:"salt"`
	Index       uint64     `json:"index"`
	SubtreeSize uint64     `json:"subtree_size"`
	Proof       []Digest   `json:"proof"`
	Subtree     Disclosure `json:"subtree"` // the packages.root leaf
}

// Disclose returns the disclosure of the parameter name.
func (m *Measurement) Disclose(name string) (*Disclosure, error) {
	l, ok := m.Leaf(name)
	if !ok {
		return nil, fmt.Errorf("%w: no parameter %q", ErrInvalid, name)
	}
	hashes := make([]Digest, len(m.Leaves))
	for i, l := range m.Leaves {
		hashes[i] = l.Hash
	}
	schema := m.Schema
	if schema == SchemaV1 {
		schema = "" // as v1 disclosures have always been written
	}
	return &Disclosure{
		Schema: schema, Name: l.Name, Type: l.Type, Value: slices.Clone(l.Value), Salt: l.Salt,
		Index: l.Index, TreeSize: uint64(len(hashes)),
		Proof: append([]Digest{}, inclusionPath(int(l.Index), hashes)...),
	}, nil
}

// DisclosePackage returns the two-level disclosure of package name.
func (m *Measurement) DisclosePackage(name string) (*PackageDisclosure, error) {
	i, ok := slices.BinarySearchFunc(m.Packages, name, func(p PackageLeaf, n string) int { return strings.Compare(p.Name, n) })
	if !ok {
		return nil, fmt.Errorf("%w: no package %q", ErrInvalid, name)
	}
	outer, err := m.Disclose(NamePackagesRoot)
	if err != nil {
		return nil, err
	}
	hashes := make([]Digest, len(m.Packages))
	for j, p := range m.Packages {
		hashes[j] = p.Hash
	}
	p := m.Packages[i]
	return &PackageDisclosure{
		Package: p.Package, Salt: p.Salt, Index: uint64(i), SubtreeSize: uint64(len(hashes)),
		Proof: append([]Digest{}, inclusionPath(i, hashes)...), Subtree: *outer,
	}, nil
}

// LeafHash recomputes the disclosed leaf's hash.
func (d *Disclosure) LeafHash() Digest {
	return LeafHash(LeafInput(d.Name, d.Type, d.Value, d.Salt))
}

// Spec returns the schema of the disclosed tree (Schema; "" is v1).
func (d *Disclosure) Spec() (*Spec, error) {
	if d.Schema == "" {
		return V1, nil
	}
	return SchemaOf(d.Schema)
}

// Verify checks d against a configuration root: a well-formed leaf of a
// registered name of d's schema (Spec.CheckParam), the schema's index and
// tree size for that name, and the inclusion proof
// (merkle/proof.VerifyInclusion). Which schema the root was made under is
// the attestation's to say: a verifier compares d.Spec() with it.
func (d *Disclosure) Verify(root Digest) error {
	spec, err := d.Spec()
	if err != nil {
		return fmt.Errorf("disclosure of %s: %w", d.Name, err)
	}
	if err := spec.CheckParam(d.Name, d.Type, d.Value); err != nil {
		return fmt.Errorf("disclosure: %w", err)
	}
	want, _ := spec.LeafIndex(d.Name)
	if n := uint64(spec.NumLeaves()); d.Index != want || d.TreeSize != n {
		return fmt.Errorf("disclosure of %s: index %d in a tree of %d, schema %s says %d of %d: %w",
			d.Name, d.Index, d.TreeSize, spec, want, n, ErrInvalid)
	}
	h := d.LeafHash()
	if err := proof.VerifyInclusion(hasher, d.Index, d.TreeSize, h[:], digestSlices(d.Proof), root[:]); err != nil {
		return fmt.Errorf("disclosure of %s: %w: %w", d.Name, ErrMismatch, err)
	}
	return nil
}

// LeafHash recomputes the disclosed package leaf's hash.
func (d *PackageDisclosure) LeafHash() Digest {
	return LeafHash(PackageLeafInput(d.Package, d.Salt))
}

// Verify checks the package leaf against the subtree root disclosed in
// d.Subtree, then d.Subtree against the configuration root.
func (d *PackageDisclosure) Verify(root Digest) error {
	if d.Subtree.Name != NamePackagesRoot || d.Subtree.Type != TypeSubtree {
		return fmt.Errorf("%w: package disclosure: outer leaf is %s (%v), want %s (subtree)", ErrInvalid, d.Subtree.Name, d.Subtree.Type, NamePackagesRoot)
	}
	if err := d.Subtree.Verify(root); err != nil {
		return err
	}
	p := d.Package
	if p.Name == "" || p.Version == "" || len(p.Name) > 0xffff || len(p.Version) > 0xffff {
		return fmt.Errorf("%w: package disclosure: name and version must be 1..65535 bytes", ErrInvalid)
	}
	if d.Index >= d.SubtreeSize {
		return fmt.Errorf("%w: package disclosure: index %d in a subtree of %d", ErrInvalid, d.Index, d.SubtreeSize)
	}
	h := d.LeafHash()
	if err := proof.VerifyInclusion(hasher, d.Index, d.SubtreeSize, h[:], digestSlices(d.Proof), d.Subtree.Value); err != nil {
		return fmt.Errorf("package disclosure of %s: %w: %w", p.Name, ErrMismatch, err)
	}
	return nil
}

func digestSlices(ds []Digest) [][]byte {
	out := make([][]byte, len(ds))
	for i := range ds {
		out[i] = ds[i][:]
	}
	return out
}
