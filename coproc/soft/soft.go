// Package soft is a software co-processor: a private key in a file and a
// counter in another, for development and tests. It is never chosen
// implicitly: the configuration must say soft:PATH.
//
// # Files
//
// PATH is a directory (0700) holding:
//
//	key.pem   the private key, PKCS#8 PEM, 0600 (Ed25519 or ECDSA P-256)
//	counter   the counter, decimal and a newline, 0600; absent before the first attestation
//	root      the root of the latest attestation attempt, lowercase hex and a newline, 0600
//	lock      an flock(2) lock file serialising attestations across processes
//
// The counter and root files are replaced atomically: write a temporary file
// in the directory, fsync it, rename it over the old one, fsync the directory.
// Attest persists the root, then the incremented counter, then signs, the same
// order as the TPM backend, so a crash burns a counter value and never reuses
// one.
//
// # What it does not protect
//
// Anyone who can write the directory can read the key, roll the counter back
// or sign anything. Use a TPM (package coproc/tpm) for real deployments; the
// log may refuse software keys by enrolment policy.
package soft

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/internal/atomicfile"
)

// Algorithm names a software key type.
type Algorithm string

const (
	Ed25519   Algorithm = "ed25519"
	ECDSAP256 Algorithm = "ecdsa-p256"
)

const (
	keyFile     = "key.pem"
	counterFile = "counter"
	rootFile    = "root"
	lockFile    = "lock"
)

// Init creates the directory and a new key of algorithm alg in it. It is
// idempotent: if a key exists it is kept, and Init reports created false; it
// fails with coproc.ErrMismatch if that key is not of algorithm alg.
func Init(ctx context.Context, dir string, alg Algorithm) (created bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("soft: %w", err)
	}
	if priv, err := loadKey(dir); err == nil {
		if keyAlg(priv) != alg {
			return false, fmt.Errorf("soft: %s holds a key of type %s, not %s: %w", filepath.Join(dir, keyFile), keyAlg(priv), alg, coproc.ErrMismatch)
		}
		return false, nil
	} else if !errors.Is(err, coproc.ErrNotInitialized) {
		return false, err
	}
	var priv crypto.Signer
	switch alg {
	case Ed25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case ECDSAP256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return false, fmt.Errorf("soft: unknown algorithm %q (want %s or %s)", alg, Ed25519, ECDSAP256)
	}
	if err != nil {
		return false, fmt.Errorf("soft: generating key: %w", err)
	}
	pemBytes, err := cryptoutils.MarshalPrivateKeyToPEM(priv)
	if err != nil {
		return false, fmt.Errorf("soft: %w", err)
	}
	// O_EXCL: two racing inits cannot both write a key.
	f, err := os.OpenFile(filepath.Join(dir, keyFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("soft: %w", err)
	}
	if _, err := f.Write(pemBytes); err != nil {
		f.Close()
		return false, fmt.Errorf("soft: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, fmt.Errorf("soft: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("soft: %w", err)
	}
	return true, atomicfile.SyncDir(dir)
}

func keyAlg(k crypto.Signer) Algorithm {
	if _, ok := k.(ed25519.PrivateKey); ok {
		return Ed25519
	}
	return ECDSAP256
}

func loadKey(dir string) (crypto.Signer, error) {
	path := filepath.Join(dir, keyFile)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("soft: %s: %w", path, coproc.ErrNotInitialized)
	}
	if err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("soft: %s has mode %04o: the private key must not be accessible by group or others (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	k, err := cryptoutils.UnmarshalPEMToPrivateKey(b, cryptoutils.SkipPassword)
	if err != nil {
		return nil, fmt.Errorf("soft: %s: %w", path, err)
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() {
			return k, nil
		}
	}
	return nil, fmt.Errorf("soft: %s: %T is neither Ed25519 nor ECDSA P-256: %w", path, k, coproc.ErrMismatch)
}

// Options configure Open.
type Options struct {
	// Now returns the statement time; nil means time.Now.
	Now func() time.Time
}

// CoProcessor is the software co-processor. It implements coproc.CoProcessor.
type CoProcessor struct {
	dir   string
	priv  crypto.Signer
	pub   crypto.PublicKey
	keyID string
	now   func() time.Time

	mu sync.Mutex // serialises Attest within the process; lock serialises processes
}

var _ coproc.CoProcessor = (*CoProcessor)(nil)

// Open opens the co-processor in dir. It returns an error wrapping
// coproc.ErrNotInitialized if there is no key.
func Open(ctx context.Context, dir string, opts Options) (*CoProcessor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	priv, err := loadKey(dir)
	if err != nil {
		return nil, err
	}
	id, err := coproc.KeyID(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &CoProcessor{dir: dir, priv: priv, pub: priv.Public(), keyID: id, now: now}, nil
}

// PublicKey implements coproc.CoProcessor.
func (c *CoProcessor) PublicKey() crypto.PublicKey { return c.pub }

// KeyID implements coproc.CoProcessor.
func (c *CoProcessor) KeyID() string { return c.keyID }

// Close implements coproc.CoProcessor.
func (c *CoProcessor) Close() error { return nil }

// Attest implements coproc.CoProcessor: root file, counter file, signature.
func (c *CoProcessor) Attest(ctx context.Context, cl coproc.Claim) (*coproc.Envelope, error) {
	if err := coproc.ValidateClaim(cl); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(c.dir, rootFile), []byte(hex.EncodeToString(cl.Root[:])+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("soft: writing root: %w", err)
	}
	n, _, err := readCounter(c.dir)
	if err != nil {
		return nil, err
	}
	if n >= coproc.MaxSafeInteger {
		return nil, fmt.Errorf("soft: counter exhausted at %d", n)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n++
	if err := atomicfile.Write(filepath.Join(c.dir, counterFile), []byte(strconv.FormatUint(n, 10)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("soft: writing counter: %w", err)
	}
	// From here on, a failure burns counter value n.
	st, err := coproc.NewStatement(cl, coproc.CoprocessorState{KeyID: c.keyID, Counter: n}, c.now())
	if err != nil {
		return nil, err
	}
	return coproc.Seal(st, c.pub, c.sign)
}

func (c *CoProcessor) sign(pae []byte) ([]byte, error) { return coproc.SignPAE(c.priv, pae) }

// Info implements coproc.CoProcessor.
func (c *CoProcessor) Info(ctx context.Context) (*coproc.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(c.pub)
	if err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	n, set, err := readCounter(c.dir)
	if err != nil {
		return nil, err
	}
	info := &coproc.Info{
		Backend: "soft", Device: c.dir, KeyID: c.keyID, PublicKeyPEM: string(pemBytes),
		Algorithm: string(keyAlg(c.priv)), Counter: n, CounterSet: set,
	}
	if b, err := os.ReadFile(filepath.Join(c.dir, rootFile)); err == nil {
		info.Root = strings.TrimSpace(string(b))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("soft: %w", err)
	}
	return info, nil
}

// readCounter returns the counter and whether the file exists.
func readCounter(dir string) (uint64, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, counterFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("soft: %w", err)
	}
	s, ok := strings.CutSuffix(string(b), "\n")
	n, err := strconv.ParseUint(s, 10, 64)
	if !ok || err != nil || strconv.FormatUint(n, 10) != s {
		return 0, false, fmt.Errorf("soft: %s: corrupt counter %q", filepath.Join(dir, counterFile), b)
	}
	return n, true, nil
}

func (c *CoProcessor) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(c.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("soft: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("soft: locking %s: %w", f.Name(), err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
