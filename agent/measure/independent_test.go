package measure

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// The helpers in this file implement the documented format from scratch,
// for the cross-check of TestVectorsIndependently.

func indepSalt(secret []byte, name string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("vmledger/salt/v1\x00" + name))
	return m.Sum(nil)
}

func indepLeafInput(name string, typ byte, value, salt []byte) []byte {
	var b bytes.Buffer
	b.WriteString("vmledger/config-leaf/v1\x00")
	b.Write([]byte{byte(len(name) >> 8), byte(len(name))})
	b.WriteString(name)
	b.WriteByte(typ)
	b.Write([]byte{byte(len(value) >> 24), byte(len(value) >> 16), byte(len(value) >> 8), byte(len(value))})
	b.Write(value)
	b.Write(salt)
	return b.Bytes()
}

func indepPackageInput(p Package, salt []byte) []byte {
	var b bytes.Buffer
	b.WriteString("vmledger/package-leaf/v1\x00")
	b.Write([]byte{byte(len(p.Name) >> 8), byte(len(p.Name))})
	b.WriteString(p.Name)
	b.Write([]byte{byte(len(p.Version) >> 8), byte(len(p.Version))})
	b.WriteString(p.Version)
	b.Write(p.ManifestSHA256[:])
	b.Write(salt)
	return b.Bytes()
}

// hashReader serves stored tlog hashes computed from leaf hashes.
type hashReader []tlog.Hash

func (h hashReader) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = h[x]
	}
	return out, nil
}

// tlogRoot computes the root of leaf hashes with x/mod's tlog.
func tlogRoot(t *testing.T, leafHashes [][]byte) (tlog.Hash, hashReader) {
	t.Helper()
	var stored hashReader
	for i, lh := range leafHashes {
		var h tlog.Hash
		copy(h[:], lh)
		// tlog.StoredHashesForRecordHash wants the hashes stored so far.
		add, err := tlog.StoredHashesForRecordHash(int64(i), h, stored)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, add...)
	}
	root, err := tlog.TreeHash(int64(len(leafHashes)), stored)
	if err != nil {
		t.Fatal(err)
	}
	return root, stored
}

func checkTlogProof(t *testing.T, what string, index, size uint64, leaf []byte, proof []Digest, root []byte) {
	t.Helper()
	var p tlog.RecordProof
	for _, d := range proof {
		p = append(p, tlog.Hash(d))
	}
	if err := tlog.CheckRecord(p, int64(size), tlog.Hash(root), int64(index), tlog.Hash(leaf)); err != nil {
		t.Errorf("%s: tlog.CheckRecord: %v", what, err)
	}
}

func checkVectorIndependently(t *testing.T, schema string, v Vector) {
	// The expected leaves, from the config, in the documented order.
	names, want := Names(), 71
	if schema == SchemaV2 {
		names, want = V2.Names(), 107
	}
	if len(v.Leaves) != len(names) || len(names) != want {
		t.Fatalf("%d leaves, %d names, want %d", len(v.Leaves), len(names), want)
	}
	var leafHashes [][]byte
	for i, l := range v.Leaves {
		if i > 0 && !(v.Leaves[i-1].Name < l.Name) {
			t.Errorf("leaves not sorted bytewise: %q before %q", v.Leaves[i-1].Name, l.Name)
		}
		salt := indepSalt(v.Secret, l.Name)
		if !bytes.Equal(salt, l.Salt[:]) {
			t.Errorf("%s: salt %v, independently %x", l.Name, l.Salt, salt)
		}
		in := indepLeafInput(l.Name, byte(l.Type), l.Value, salt)
		if !bytes.Equal(in, l.Input) {
			t.Errorf("%s: leaf input %x, independently %x", l.Name, []byte(l.Input), in)
		}
		h := sha256.Sum256(append([]byte{0}, in...))
		if h != l.Hash {
			t.Errorf("%s: leaf hash %v, independently %x", l.Name, l.Hash, h)
		}
		if l.Name != names[i] {
			t.Errorf("leaf %d is %q, want %q", i, l.Name, names[i])
		}
		if want := expectedValue(v, l.Name); !bytes.Equal(want, l.Value) || (want == nil) != (l.Type == TypeAbsent) {
			t.Errorf("%s: value %x type %v, config says %x", l.Name, []byte(l.Value), l.Type, want)
		}
		leafHashes = append(leafHashes, h[:])
	}
	root, _ := tlogRoot(t, leafHashes)
	if Digest(root) != v.Root {
		t.Errorf("root %v, tlog computes %v", v.Root, root)
	}
	var pkgHashes [][]byte
	for i, p := range v.Packages {
		if i > 0 && !(v.Packages[i-1].Name < p.Name) {
			t.Errorf("packages not sorted: %q before %q", v.Packages[i-1].Name, p.Name)
		}
		salt := indepSalt(v.Secret, "packages/"+p.Name)
		in := indepPackageInput(p.Package, salt)
		if !bytes.Equal(in, p.Input) || !bytes.Equal(salt, p.Salt[:]) {
			t.Errorf("package %s: input %x salt %v, independently %x %x", p.Name, []byte(p.Input), p.Salt, in, salt)
		}
		h := sha256.Sum256(append([]byte{0}, in...))
		pkgHashes = append(pkgHashes, h[:])
	}
	if len(v.Packages) != len(v.Config.Packages) {
		t.Errorf("%d package leaves for %d packages", len(v.Packages), len(v.Config.Packages))
	}
	if len(pkgHashes) > 0 {
		pr, _ := tlogRoot(t, pkgHashes)
		if v.PackagesRoot == nil || Digest(pr) != *v.PackagesRoot {
			t.Errorf("packages root %v, tlog computes %v", v.PackagesRoot, pr)
		}
	}
	for _, d := range v.Disclosures {
		checkTlogProof(t, "disclosure "+d.Name, d.Index, d.TreeSize, indepLeafHash(indepLeafInput(d.Name, byte(d.Type), d.Value, d.Salt[:])), d.Proof, v.Root[:])
		if err := d.Verify(v.Root); err != nil {
			t.Errorf("Disclosure(%s).Verify = %v", d.Name, err)
		}
	}
	if pd := v.PackageProof; pd != nil {
		checkTlogProof(t, "package "+pd.Package.Name, pd.Index, pd.SubtreeSize, indepLeafHash(indepPackageInput(pd.Package, pd.Salt[:])), pd.Proof, pd.Subtree.Value)
		if err := pd.Verify(v.Root); err != nil {
			t.Errorf("PackageDisclosure(%s).Verify = %v", pd.Package.Name, err)
		}
	}
}

func indepLeafHash(in []byte) []byte {
	h := sha256.Sum256(append([]byte{0}, in...))
	return h[:]
}

// expectedValue is the value a leaf must hold for cfg, written from the
// documentation's table; nil means absent.
func expectedValue(v Vector, name string) []byte {
	cfg := v.Config
	u := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	switch name {
	case "memory.bytes":
		return u(cfg.MemoryBytes)
	case "cpu.count":
		return u(cfg.CPUCount)
	case "cpu.affinity":
		if cfg.CPUAffinity == "" {
			return nil
		}
		return []byte(cfg.CPUAffinity)
	case "boot.loader.sha256":
		if cfg.BootLoader == nil {
			return nil
		}
		return cfg.BootLoader[:]
	case "kernel.sha256":
		if cfg.Kernel == nil {
			return nil
		}
		return cfg.Kernel[:]
	case "kernel.cmdline":
		if cfg.KernelCmdline == nil {
			return nil
		}
		return []byte(*cfg.KernelCmdline)
	case "packages.root":
		if len(cfg.Packages) == 0 || v.PackagesRoot == nil {
			return nil
		}
		return v.PackagesRoot[:] // recomputed with tlog below
	// Schema v2.
	case "vm.id":
		return []byte(cfg.VMID)
	case "memory.balloon.bytes":
		if cfg.BalloonBytes == 0 {
			return nil
		}
		return u(cfg.BalloonBytes)
	case "initrd.sha256":
		if cfg.Initrd == nil {
			return nil
		}
		return cfg.Initrd[:]
	case "boot.nvram.template.sha256":
		if cfg.NVRAMTemplate == nil {
			return nil
		}
		return cfg.NVRAMTemplate[:]
	}
	for i := range cfg.NICs {
		if name != "net."+strconv.Itoa(i)+".trunk" || cfg.NICs[i].Trunk == nil {
			continue
		}
		// u16 per VLAN: id in the low 12 bits, mode above (1 native
		// tagged, 2 native untagged).
		var b []byte
		for _, tag := range cfg.NICs[i].Trunk {
			e := tag.ID
			switch tag.Native {
			case "tagged":
				e += 0x1000
			case "untagged":
				e += 0x2000
			}
			b = binary.BigEndian.AppendUint16(b, e)
		}
		return b
	}
	for i := range cfg.Disks {
		if name != "disk."+strconv.Itoa(i)+".backing" || cfg.Disks[i].Backing == nil {
			continue
		}
		var b []byte
		for _, d := range cfg.Disks[i].Backing {
			b = append(b, d[:]...)
		}
		return b
	}
	for i := range MaxNICs {
		if i >= len(cfg.NICs) {
			break
		}
		switch name {
		case NICMACName(i):
			return cfg.NICs[i].MAC[:]
		case NICVLANName(i):
			return u(uint64(cfg.NICs[i].VLAN))
		}
	}
	for i := range MaxDisks {
		if i >= len(cfg.Disks) {
			break
		}
		switch name {
		case DiskTargetName(i):
			return []byte(cfg.Disks[i].Target)
		case DiskSHA256Name(i):
			if cfg.Disks[i].SHA256 == nil {
				return nil
			}
			return cfg.Disks[i].SHA256[:]
		}
	}
	return nil
}
