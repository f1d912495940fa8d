package soft_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/soft"
)

func claim(i int) coproc.Claim {
	return coproc.Claim{
		VMID:       "web-01",
		Root:       sha256.Sum256(fmt.Appendf(nil, "config %d", i)),
		Parameters: []string{"cpu.count", "memory.bytes"},
		Freshness:  coproc.Anchor{Origin: "example.com/ledger", Size: 1},
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestSoft(t *testing.T) {
	for _, alg := range []soft.Algorithm{soft.Ed25519, soft.ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			ctx := t.Context()
			dir := filepath.Join(t.TempDir(), "coproc")
			if _, err := soft.Open(ctx, dir, soft.Options{}); !errors.Is(err, coproc.ErrNotInitialized) {
				t.Fatalf("Open before Init = %v, want ErrNotInitialized", err)
			}
			if created, err := soft.Init(ctx, dir, alg); err != nil || !created {
				t.Fatalf("Init = %v, %v; want created", created, err)
			}
			if created, err := soft.Init(ctx, dir, alg); err != nil || created {
				t.Fatalf("second Init = %v, %v; want nothing created", created, err)
			}
			other := soft.Ed25519
			if alg == soft.Ed25519 {
				other = soft.ECDSAP256
			}
			if _, err := soft.Init(ctx, dir, other); !errors.Is(err, coproc.ErrMismatch) {
				t.Fatalf("Init(%s) over a %s key = %v, want ErrMismatch", other, alg, err)
			}
			if m := mode(t, filepath.Join(dir, "key.pem")); m != 0o600 {
				t.Fatalf("key file mode %o, want 600", m)
			}
			if m := mode(t, dir); m != 0o700 {
				t.Fatalf("directory mode %o, want 700", m)
			}

			c, err := soft.Open(ctx, dir, soft.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i := uint64(1); i <= 3; i++ {
				cl := claim(int(i))
				env, err := c.Attest(ctx, cl)
				if err != nil {
					t.Fatal(err)
				}
				st, err := coproc.VerifyStatement(env, c.PublicKey())
				if err != nil {
					t.Fatal(err)
				}
				if st.Predicate.Coprocessor.Counter != i || st.ConfigRoot() != cl.Root {
					t.Fatalf("attestation %d: counter %d root %s", i, st.Predicate.Coprocessor.Counter, st.Subject[0].Digest.SHA256)
				}
				info, err := c.Info(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !info.CounterSet || info.Counter != i || info.Root != st.Subject[0].Digest.SHA256 {
					t.Fatalf("Info after attestation %d = %+v", i, info)
				}
			}
			for _, f := range []string{"counter", "root"} {
				if m := mode(t, filepath.Join(dir, f)); m != 0o600 {
					t.Fatalf("%s file mode %o, want 600", f, m)
				}
			}

			// An invalid claim changes nothing.
			if _, err := c.Attest(ctx, coproc.Claim{}); !errors.Is(err, coproc.ErrInvalidClaim) {
				t.Fatalf("Attest(invalid) = %v, want ErrInvalidClaim", err)
			}
			// Reopening continues the counter with the same key.
			c2, err := soft.Open(ctx, dir, soft.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if c2.KeyID() != c.KeyID() {
				t.Fatalf("key id changed on reopen")
			}
			env, err := c2.Attest(ctx, claim(4))
			if err != nil {
				t.Fatal(err)
			}
			if st, err := coproc.VerifyStatement(env, c.PublicKey()); err != nil || st.Predicate.Coprocessor.Counter != 4 {
				t.Fatalf("after reopen: %v, counter %d, want 4", err, st.Predicate.Coprocessor.Counter)
			}
		})
	}
}

func TestCorruptCounter(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	if _, err := soft.Init(ctx, dir, soft.Ed25519); err != nil {
		t.Fatal(err)
	}
	c, err := soft.Open(ctx, dir, soft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "7", "07\n", "-1\n", "x\n", "18446744073709551616\n"} {
		if err := os.WriteFile(filepath.Join(dir, "counter"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Attest(ctx, claim(1)); err == nil {
			t.Errorf("Attest with counter file %q succeeded", bad)
		}
	}
}

// TestConcurrent: attestations from two handles on one directory (as from
// two processes) never share a counter value.
func TestConcurrent(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	if _, err := soft.Init(ctx, dir, soft.Ed25519); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []uint64
		wg   sync.WaitGroup
	)
	for h := 0; h < 2; h++ {
		c, err := soft.Open(ctx, dir, soft.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 5; i++ {
					env, err := c.Attest(ctx, claim(i))
					if err != nil {
						t.Error(err)
						return
					}
					st, err := env.Statement()
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					seen = append(seen, st.Predicate.Coprocessor.Counter)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	sort.Slice(seen, func(i, j int) bool { return seen[i] < seen[j] })
	for i, n := range seen {
		if n != uint64(i+1) {
			t.Fatalf("counters %v: want 1..%d each once", seen, len(seen))
		}
	}
}

// BenchmarkAttestSoft measures one software attestation (two fsync'd file
// replacements and an Ed25519 signature).
func BenchmarkAttestSoft(b *testing.B) {
	ctx := b.Context()
	dir := b.TempDir()
	if _, err := soft.Init(ctx, dir, soft.Ed25519); err != nil {
		b.Fatal(err)
	}
	c, err := soft.Open(ctx, dir, soft.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Attest(ctx, claim(0)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKeyFileMode: Open refuses a key file that group or others can
// access, as log serve and witness serve do for theirs (issue 11).
func TestKeyFileMode(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "cp")
	if _, err := soft.Init(ctx, dir, soft.Ed25519); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key.pem")
	for _, m := range []os.FileMode{0o640, 0o604, 0o644, 0o660, 0o666} {
		if err := os.Chmod(key, m); err != nil {
			t.Fatal(err)
		}
		if _, err := soft.Open(ctx, dir, soft.Options{}); err == nil {
			t.Errorf("Open with key.pem mode %04o = nil error, want a refusal", m)
		}
	}
	for _, m := range []os.FileMode{0o600, 0o400} {
		if err := os.Chmod(key, m); err != nil {
			t.Fatal(err)
		}
		if _, err := soft.Open(ctx, dir, soft.Options{}); err != nil {
			t.Errorf("Open with key.pem mode %04o = %v, want success", m, err)
		}
	}
}
