package store

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmledger/vmledger/agent/measure"
)

func measured(t *testing.T, sec measure.Secret) *measure.Measurement {
	t.Helper()
	cl := "quiet"
	m, err := measure.Measure(&measure.Config{MemoryBytes: 1 << 30, CPUCount: 2, KernelCmdline: &cl,
		Packages: []measure.Package{{Name: "a", Version: "1"}, {Name: "b", Version: "2"}}}, sec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStoreRoundTrip(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	const vm = "vm-0001"
	sec, err := s.CreateSecret(vm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSecret(vm); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateSecret = %v, want ErrExists", err)
	}
	got, err := s.Secret(vm)
	if err != nil || got != sec {
		t.Fatalf("Secret = %v, %v", got == sec, err)
	}
	m := measured(t, sec)
	if err := s.SaveManifest(vm, m); err != nil {
		t.Fatal(err)
	}
	back, err := s.Manifest(vm, &m.Root)
	if err != nil || back.Root != m.Root {
		t.Fatalf("Manifest = %v, %v; want root %v", back, err, m.Root)
	}
	other := m.Root
	other[0] ^= 1
	if _, err := s.Manifest(vm, &other); !errors.Is(err, ErrRootMismatch) {
		t.Errorf("Manifest(other attested root) = %v, want ErrRootMismatch", err)
	}
	if err := s.SaveBundle(vm, []byte("bundle")); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Bundle(vm); err != nil || string(b) != "bundle" {
		t.Errorf("Bundle = %q, %v", b, err)
	}
	for _, name := range []string{"secret", "manifest.json", "bundle"} {
		st, err := os.Stat(filepath.Join(s.dir, vm, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", name, st.Mode().Perm(), err)
		}
	}
	if _, err := s.Manifest("vm-0002", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("Manifest(unknown VM) = %v, want ErrNotFound", err)
	}
}

// TestStoreRefusesTampering: a manifest that does not recompute to its root,
// or whose salts are not the VM's, is refused on writing and on reading.
func TestStoreRefusesTampering(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	const vm = "web01"
	sec, err := s.CreateSecret(vm)
	if err != nil {
		t.Fatal(err)
	}
	m := measured(t, sec)
	if err := s.SaveManifest(vm, m); err != nil {
		t.Fatal(err)
	}

	foreign := measured(t, measure.Secret{9})
	if err := s.SaveManifest(vm, foreign); err == nil {
		t.Error("SaveManifest(manifest salted with another secret) = nil")
	}
	bad := measured(t, sec)
	bad.Leaves[37].Value[7] ^= 1 // memory.bytes, root not updated
	if err := s.SaveManifest(vm, bad); err == nil {
		t.Error("SaveManifest(manifest that does not recompute) = nil")
	}

	edits := map[string]func(*measure.Measurement){
		"value":           func(m *measure.Measurement) { m.Leaves[37].Value[7] ^= 1 },
		"value and hash":  func(m *measure.Measurement) { m.Leaves[37].Value[7] ^= 1; m.Leaves[37].Hash[0] ^= 1 },
		"root":            func(m *measure.Measurement) { m.Root[1] ^= 1 },
		"package version": func(m *measure.Measurement) { m.Packages[0].Version = "0" },
		"salt":            func(m *measure.Measurement) { m.Leaves[0].Salt[0] ^= 1 },
	}
	path := filepath.Join(s.dir, vm, "manifest.json")
	good, _ := os.ReadFile(path)
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			var mm measure.Measurement
			if err := json.Unmarshal(good, &mm); err != nil {
				t.Fatal(err)
			}
			edit(&mm)
			b, _ := json.Marshal(&mm)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Manifest(vm, nil); !errors.Is(err, ErrTampered) {
				t.Errorf("Manifest(after editing %s) = %v, want ErrTampered", name, err)
			}
		})
	}
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Manifest(vm, nil); !errors.Is(err, ErrTampered) {
		t.Errorf("Manifest(world-readable file) = %v, want ErrTampered", err)
	}
}

func TestVMID(t *testing.T) {
	for _, ok := range []string{"a", "web01", "vm:6f1c0a2e-3b7d", "A.b_c-d"} {
		if err := CheckVMID(ok); err != nil {
			t.Errorf("CheckVMID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", ".hidden", "a/b", "../x", "a b", string(make([]byte, 129))} {
		if err := CheckVMID(bad); !errors.Is(err, ErrBadVMID) {
			t.Errorf("CheckVMID(%q) = %v, want ErrBadVMID", bad, err)
		}
	}
}

func TestOpenRefusesOpenDirectory(t *testing.T) {
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(d); err == nil {
		t.Error("Open(0755 directory) = nil, want an error")
	}
}
