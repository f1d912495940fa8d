package vmconfig

import (
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmledger/vmledger/agent/measure"
)

// TestHeld: with Hold, Resolve hashes each image through a descriptor it
// keeps; the kernel is a sealed copy nobody can change; a symlink is
// resolved and reported; the descriptors still read the measured bytes
// after the paths were replaced.
func TestHeld(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	disk := write("disk.img", "disk bytes", 0o644)
	kernel := write("vmlinuz", "kernel bytes", 0o644)
	link := filepath.Join(dir, "disk-link.img")
	if err := os.Symlink(disk, link); err != nil {
		t.Fatal(err)
	}
	c := &Config{MemoryBytes: 1 << 30, CPUCount: 1, Disks: []Disk{{Target: "vda", Image: &Image{Path: link}}}, Kernel: &Image{Path: kernel}}
	var h Held
	mc, err := c.Resolve(t.Context(), ResolveOptions{Hold: &h})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if *mc.Disks[0].SHA256 != measure.Digest(sha256.Sum256([]byte("disk bytes"))) || *mc.Kernel != measure.Digest(sha256.Sum256([]byte("kernel bytes"))) {
		t.Fatalf("digests %v %v", mc.Disks[0].SHA256, mc.Kernel)
	}
	vda, k := h.Image("vda"), h.Image("kernel")
	if vda == nil || k == nil || vda.Real != disk || vda.Path != link || !k.Sealed || vda.Sealed {
		t.Fatalf("held %+v %+v", vda, k)
	}
	// Replace both paths: the descriptors still hold the measured bytes.
	write("disk.img.new", "evil", 0o644)
	os.Rename(filepath.Join(dir, "disk.img.new"), disk)
	write("vmlinuz", "evil kernel", 0o644) // in place: the sealed copy does not follow
	for _, im := range []*HeldImage{vda, k} {
		got, err := io.ReadAll(io.NewSectionReader(im.File, 0, 1<<20))
		if err != nil || sha256.Sum256(got) != [32]byte(im.Digest) {
			t.Errorf("%s: descriptor reads %q (%v), not the measured bytes", im.Role, got, err)
		}
	}
	if _, err := k.File.WriteAt([]byte("x"), 0); err == nil {
		t.Error("the sealed kernel copy accepted a write")
	}
	moved, err := h.Recheck(t.Context())
	if err != nil || len(moved) != 1 || moved[0] != link {
		t.Errorf("Recheck = %v, %v; want the disk path reported as moved", moved, err)
	}
}

func TestHeldRefuses(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := measure.Digest(sha256.Sum256([]byte("y")))
	for _, tt := range []struct {
		name string
		c    *Config
		mode os.FileMode
		want error
	}{
		{"writable by others", &Config{MemoryBytes: 1, CPUCount: 1, Disks: []Disk{{Target: "vda", Image: &Image{Path: p}}}}, 0o666, ErrWritableByOthers},
		{"named twice", &Config{MemoryBytes: 1, CPUCount: 1, Disks: []Disk{{Target: "vda", Image: &Image{Path: p}}, {Target: "vdb", Image: &Image{Path: p}}}}, 0o644, nil},
		{"claimed other digest", &Config{MemoryBytes: 1, CPUCount: 1, Disks: []Disk{{Target: "vda", Image: &Image{Path: p, Claimed: &other}}}}, 0o644, ErrDigestMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.Chmod(p, tt.mode)
			var h Held
			_, err := tt.c.Resolve(t.Context(), ResolveOptions{Hold: &h})
			h.Close()
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Resolve = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestRecords: what the libvirt hook records at prepare and checks later.
func TestRecords(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "vda.raw")
	if err := os.WriteFile(p, []byte("disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Config{MemoryBytes: 1, CPUCount: 1, Disks: []Disk{{Target: "vda", Image: &Image{Path: p}}}}
	h := &Held{StandIns: true}
	if _, err := c.Resolve(t.Context(), ResolveOptions{Hold: h}); err != nil {
		t.Fatal(err)
	}
	recs := h.Records()
	// This process holds the measured file open, as QEMU would.
	if err := CheckRecords(recs, RecheckContent); err != nil {
		t.Errorf("unchanged: %v", err)
	}
	if err := CheckOpenBy(recs, os.Getpid()); err != nil {
		t.Errorf("held open by this process: %v", err)
	}
	// Swapped for another file and back: the path checks pass, but the
	// process no longer holds the measured file.
	h.Close()
	if err := os.Rename(p, p+".measured"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, []byte("evil"), 0o644)
	evil, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	if err := CheckRecords(recs, RecheckIdentity); !errors.Is(err, ErrImageChanged) {
		t.Errorf("swapped: CheckRecords = %v, want ErrImageChanged", err)
	}
	os.Rename(p+".measured", p)
	if err := CheckRecords(recs, RecheckContent); err != nil {
		t.Errorf("swapped back: CheckRecords = %v, want nil (paths cannot tell)", err)
	}
	if err := CheckOpenBy(recs, os.Getpid()); !errors.Is(err, ErrImageChanged) {
		t.Errorf("swapped back: CheckOpenBy = %v, want ErrImageChanged", err)
	}
	// Modified in place (mtime): refused at started, accepted at release.
	later := time.Now().Add(time.Hour)
	os.Chtimes(p, later, later)
	if err := CheckRecords(recs, RecheckContent); !errors.Is(err, ErrImageChanged) {
		t.Errorf("modified: CheckRecords(content) = %v, want ErrImageChanged", err)
	}
	if err := CheckRecords(recs, RecheckIdentity); err != nil {
		t.Errorf("modified: CheckRecords(identity) = %v, want nil", err)
	}
}
