// Package store is the agent's VM Configuration Store: for each VM its
// 32-byte secret, its last manifest (measure.Measurement) and its last
// attestation bundle, in files only root can read.
//
// Layout under the store directory (created 0700):
//
//	<vm id>/            0700
//	<vm id>/secret      0600  32 raw bytes
//	<vm id>/manifest.json 0600  the JSON of measure.Measurement
//	<vm id>/bundle      0600  the last bundle, opaque to this package
//
// Files are replaced atomically (write to a temporary file, fsync, rename,
// fsync the directory), so a crash leaves the old or the new version.
//
// The store is tamper-evident rather than tamper-proof: a manifest is
// accepted, on writing and on reading, only if it recomputes to its own
// root from its values and salts and every salt derives from the VM's
// secret; Manifest also compares that root with the one the caller holds
// from the co-processor's NV memory. Whoever can rewrite the files can
// still delete them or roll back the bundle; the co-processor's monotonic
// counter and the transparency log are what detect that.
//
// A Store is safe for use by one process; concurrent writers to the same VM
// must be serialised by the caller.
package store

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/internal/atomicfile"
)

// Errors for decisions.
var (
	ErrNotFound     = errors.New("not in the store")
	ErrExists       = errors.New("already in the store")
	ErrTampered     = errors.New("store content fails verification")
	ErrRootMismatch = errors.New("manifest root differs from the attested root")
	ErrBadVMID      = errors.New("invalid VM id")
)

// Store is a VM Configuration Store rooted at a directory.
type Store struct {
	dir string
}

// Open opens (creating if needed, mode 0700) the store at dir. It refuses a
// directory that group or others can access.
func Open(dir string) (*Store, error) {
	if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("store %s: mode %v lets group or others in; run chmod 700 %s", dir, st.Mode().Perm(), dir)
	}
	return &Store{dir: dir}, nil
}

// CheckVMID accepts 1..128 characters from [A-Za-z0-9._:-], not "." or
// "..", not starting with "." — a VM id is used as a directory name.
func CheckVMID(id string) error {
	if id == "" || len(id) > 128 || id[0] == '.' {
		return fmt.Errorf("%w %q: 1..128 characters, not starting with '.'", ErrBadVMID, id)
	}
	for _, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-', c == ':':
		default:
			return fmt.Errorf("%w %q: only letters, digits and . _ - :", ErrBadVMID, id)
		}
	}
	return nil
}

func (s *Store) vmDir(id string) (string, error) {
	if err := CheckVMID(id); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, id), nil
}

// CreateSecret makes a new random secret for VM id, failing with ErrExists
// if it has one: a VM secret is never replaced (the owner holds a copy).
func (s *Store) CreateSecret(id string) (measure.Secret, error) {
	var sec measure.Secret
	if _, err := io.ReadFull(rand.Reader, sec[:]); err != nil {
		return sec, err
	}
	return sec, s.ImportSecret(id, sec)
}

// ImportSecret stores a secret chosen elsewhere (e.g. by the VM's owner).
func (s *Store) ImportSecret(id string, sec measure.Secret) error {
	if sec.IsZero() {
		return errors.New("refusing an all-zero VM secret")
	}
	d, err := s.vmDir(id)
	if err != nil {
		return err
	}
	if err := atomicfile.MkdirAll(d, 0o700); err != nil {
		return err
	}
	p := filepath.Join(d, "secret")
	if _, err := os.Lstat(p); err == nil {
		return fmt.Errorf("secret of VM %s: %w", id, ErrExists)
	}
	return atomicfile.Write(p, sec[:], 0o600)
}

// Secret returns VM id's secret.
func (s *Store) Secret(id string) (measure.Secret, error) {
	var sec measure.Secret
	b, err := s.read(id, "secret", 64)
	if err != nil {
		return sec, err
	}
	if len(b) != len(sec) {
		return sec, fmt.Errorf("secret of VM %s: %d bytes, want 32: %w", id, len(b), ErrTampered)
	}
	copy(sec[:], b)
	return sec, nil
}

// SaveManifest stores m as VM id's last manifest, after checking that it
// recomputes to its root and that its salts come from the VM's secret.
func (s *Store) SaveManifest(id string, m *measure.Measurement) error {
	sec, err := s.Secret(id)
	if err != nil {
		return err
	}
	if err := m.CheckSecret(sec); err != nil {
		return fmt.Errorf("refusing manifest of VM %s: %w", id, err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	d, _ := s.vmDir(id)
	return atomicfile.Write(filepath.Join(d, "manifest.json"), b, 0o600)
}

// Manifest returns VM id's last manifest, refusing it (ErrTampered) unless it
// recomputes to its root with salts from the VM's secret and, if attested is
// not nil, (ErrRootMismatch) unless that root equals *attested — the root
// read from the co-processor's NV index.
func (s *Store) Manifest(id string, attested *measure.Digest) (*measure.Measurement, error) {
	sec, err := s.Secret(id)
	if err != nil {
		return nil, err
	}
	b, err := s.read(id, "manifest.json", 64<<20)
	if err != nil {
		return nil, err
	}
	var m measure.Measurement
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest of VM %s: %w: %w", id, ErrTampered, err)
	}
	if err := m.CheckSecret(sec); err != nil {
		return nil, fmt.Errorf("manifest of VM %s: %w: %w", id, ErrTampered, err)
	}
	if attested != nil && m.Root != *attested {
		return nil, fmt.Errorf("manifest of VM %s has root %v, the co-processor holds %v: %w", id, m.Root, *attested, ErrRootMismatch)
	}
	return &m, nil
}

// SaveBundle stores VM id's last bundle.
func (s *Store) SaveBundle(id string, bundle []byte) error {
	d, err := s.vmDir(id)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(d, "secret")); err != nil {
		return fmt.Errorf("VM %s: %w", id, ErrNotFound)
	}
	return atomicfile.Write(filepath.Join(d, "bundle"), bundle, 0o600)
}

// Bundle returns VM id's last bundle.
func (s *Store) Bundle(id string) ([]byte, error) {
	return s.read(id, "bundle", 64<<20)
}

func (s *Store) read(id, name string, limit int64) ([]byte, error) {
	d, err := s.vmDir(id)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(d, name)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s of VM %s: %w", name, id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %v, want a regular file only its owner can read (chmod 600): %w", p, st.Mode(), ErrTampered)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, at most %d: %w", p, st.Size(), limit, ErrTampered)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}
