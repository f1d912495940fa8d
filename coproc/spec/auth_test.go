package spec_test

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/spec"
	"github.com/vmledger/vmledger/coproc/tpm"
	"github.com/vmledger/vmledger/coproc/tpm/swtpmtest"
)

// TestAuthFile: Init makes the auth file (0600, AuthSize bytes) and gives
// its value to the keys; Open with it attests, Open without it or with a
// file others can read does not.
func TestAuthFile(t *testing.T) {
	ctx := t.Context()
	sp := spec.Spec{Kind: spec.Swtpm, Arg: swtpmtest.Start(t).Addr}
	dir := t.TempDir()
	auth := filepath.Join(dir, "coproc.auth")
	if _, err := spec.Init(ctx, sp, spec.Options{AuthFile: auth}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(auth)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != spec.AuthSize {
		t.Fatalf("auth file: %v, %v", st, err)
	}
	cl := coproc.Claim{VMID: "db-7", Root: sha256.Sum256([]byte("x")), Parameters: []string{"cpu.count"},
		Freshness: coproc.Anchor{Origin: "example.com/ledger", Size: 3}}
	attest := func(o spec.Options) error {
		c, err := spec.Open(ctx, sp, o)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Attest(ctx, cl)
		return err
	}
	if err := attest(spec.Options{AuthFile: auth}); err != nil {
		t.Fatalf("Attest with the auth file: %v", err)
	}
	if err := attest(spec.Options{}); !errors.Is(err, tpm.ErrKeyAuth) {
		t.Errorf("Attest without the auth file = %v, want ErrKeyAuth", err)
	}
	if err := os.Chmod(auth, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := attest(spec.Options{AuthFile: auth}); !errors.Is(err, spec.ErrAuthFile) {
		t.Errorf("Attest with a 0640 auth file = %v, want ErrAuthFile", err)
	}
	if err := attest(spec.Options{AuthFile: filepath.Join(dir, "missing")}); !errors.Is(err, spec.ErrAuthFile) {
		t.Errorf("Attest with a missing auth file = %v, want ErrAuthFile", err)
	}
}
