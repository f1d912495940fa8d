package spec_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/spec"
	"github.com/vmledger/vmledger/coproc/tpm/swtpmtest"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want spec.Spec
		ok   bool
	}{
		{"tpm:/dev/tpmrm0", spec.Spec{Kind: spec.TPM, Arg: "/dev/tpmrm0"}, true},
		{"swtpm:127.0.0.1:2321", spec.Spec{Kind: spec.Swtpm, Arg: "127.0.0.1:2321"}, true},
		{"swtpm:[::1]:2321", spec.Spec{Kind: spec.Swtpm, Arg: "[::1]:2321"}, true},
		{"sim", spec.Spec{Kind: spec.Sim}, true},
		{"soft:/var/lib/vmledger/coproc", spec.Spec{Kind: spec.Soft, Arg: "/var/lib/vmledger/coproc"}, true},
		{"soft:rel/dir", spec.Spec{Kind: spec.Soft, Arg: "rel/dir"}, true},
		{"", spec.Spec{}, false},
		{"/dev/tpmrm0", spec.Spec{}, false},
		{"tpm:", spec.Spec{}, false},
		{"soft:", spec.Spec{}, false},
		{"sim:x", spec.Spec{}, false},
		{"swtpm:127.0.0.1", spec.Spec{}, false},
		{"swtpm::2321", spec.Spec{}, false},
		{"swtpm:127.0.0.1:0", spec.Spec{}, false},
		{"swtpm:127.0.0.1:99999", spec.Spec{}, false},
		{"swtpm:127.0.0.1:http", spec.Spec{}, false},
		{"hsm:slot0", spec.Spec{}, false},
		{"SIM", spec.Spec{}, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := spec.Parse(tc.in)
			if tc.ok && (err != nil || got != tc.want) {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if !tc.ok && !errors.Is(err, spec.ErrBadSpec) {
				t.Fatalf("Parse(%q) = %+v, %v; want ErrBadSpec", tc.in, got, err)
			}
			if tc.ok && got.String() != tc.in {
				t.Fatalf("Parse(%q).String() = %q", tc.in, got.String())
			}
		})
	}
}

// TestBackends: every backend, opened from a SPEC, attests verifiably.
func TestBackends(t *testing.T) {
	for _, name := range []string{"soft", "sim", "swtpm"} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			var sp spec.Spec
			switch name {
			case "soft":
				sp = spec.Spec{Kind: spec.Soft, Arg: t.TempDir()}
			case "sim":
				sp = spec.Spec{Kind: spec.Sim}
			case "swtpm":
				sp = spec.Spec{Kind: spec.Swtpm, Arg: swtpmtest.Start(t).Addr}
			}
			if sp.Kind != spec.Sim {
				if _, err := spec.Open(ctx, sp, spec.Options{}); !errors.Is(err, coproc.ErrNotInitialized) {
					t.Fatalf("Open before Init = %v, want ErrNotInitialized", err)
				}
			}
			created, err := spec.Init(ctx, sp, spec.Options{})
			if errors.Is(err, spec.ErrNoSimulator) {
				t.Skipf("this test binary has no simulator (needs cgo): %v", err)
			}
			if err != nil || len(created) == 0 {
				t.Fatalf("Init = %q, %v", created, err)
			}
			if sp.Kind != spec.Sim {
				if created, err := spec.Init(ctx, sp, spec.Options{}); err != nil || len(created) != 0 {
					t.Fatalf("second Init = %q, %v; want nothing created", created, err)
				}
			}
			c, err := spec.Open(ctx, sp, spec.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			env, err := c.Attest(ctx, coproc.Claim{
				VMID: "db-7", Root: sha256.Sum256([]byte(name)), Parameters: []string{"cpu.count"},
				Freshness: coproc.Anchor{Origin: "example.com/ledger", Size: 3},
			})
			if err != nil {
				t.Fatal(err)
			}
			st, err := coproc.VerifyStatement(env, c.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Counter != st.Predicate.Coprocessor.Counter || info.KeyID != c.KeyID() || info.Root != fmt.Sprintf("%x", sha256.Sum256([]byte(name))) {
				t.Fatalf("Info = %+v after attesting %+v", info, st.Predicate)
			}
		})
	}
}
