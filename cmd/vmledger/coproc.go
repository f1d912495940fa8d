package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/soft"
	"github.com/vmledger/vmledger/coproc/spec"
)

func newCoprocCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "coproc",
		Short: "Set up and inspect the co-processor (TPM 2.0, swtpm, simulator or software key)",
		Example: `  vmledger coproc init --coproc swtpm:127.0.0.1:2321
  vmledger coproc info --coproc tpm:/dev/tpmrm0 --json`,
		Long: `The co-processor stores each VM configuration root in non-volatile memory,
increments a monotonic counter and signs an in-toto statement over the root
(a DSSE envelope). SPEC says which co-processor:

  tpm:/dev/tpmrm0        a TPM 2.0 through the kernel resource manager
  swtpm:HOST:PORT        swtpm's TCP server socket, e.g. swtpm:127.0.0.1:2321
                         (swtpm socket --tpm2 --server type=tcp,port=2321
                          --ctrl type=tcp,port=2322 --flags not-need-init,startup-clear ...)
  sim                    the in-process TPM simulator; new and empty every run
  soft:DIR               a software key in DIR, for development and tests only

There is no default: a software key is used only when SPEC says soft.`,
	}
	cmd.AddCommand(newCoprocInitCmd(), newCoprocInfoCmd())
	return cmd
}

func coprocSpec(s string) (spec.Spec, error) {
	if s == "" {
		return spec.Spec{}, usagef("--coproc is required (%s)", spec.Usage)
	}
	sp, err := spec.Parse(s)
	if err != nil {
		return spec.Spec{}, usageError{err}
	}
	return sp, nil
}

func newCoprocInitCmd() *cobra.Command {
	var specFlag, alg, authFile string
	var rotate bool
	cmd := &cobra.Command{
		Use:   "init --coproc SPEC [--coproc-auth FILE] [--rotate]",
		Short: "Create the signing key, the root NV index and the NV counter (idempotent)",
		Long: `init creates what attestations need, where it does not exist yet, and then
prints what "coproc info" prints.

On a TPM: a storage primary key (persistent handle 0x81000A00), an ECC P-256
signing key that cannot leave the TPM (0x81000A01), a restricted attestation
key (AK, 0x81000A02) that certifies the NV indexes in every attestation, an NV
index for the latest root (0x01000A00) and an NV counter (0x01000A01), in the
owner hierarchy. With --coproc-auth FILE the two keys get a random
authorization value, written to FILE (0600) if it does not exist: only a
process that can read FILE can then sign or certify with them; give the agent
the same file (agent --coproc-auth, or coproc_auth in its configuration file).

With --rotate, after the log revoked the key: the signing key and the AK are
evicted from the TPM and new ones made at the same handles (with the
authorization value of --coproc-auth); the NV indexes stay and the counter
keeps counting up. Enrol the new key (coproc info prints it) and give
customers its new trust-file line.
Existing objects are checked, never overwritten: if a handle holds something
else, init stops and says so.

With soft:DIR: DIR (0700) with a private key file (0600); --soft-alg picks
Ed25519 or ECDSA P-256.`,
		Example: `  vmledger coproc init --coproc tpm:/dev/tpmrm0
  vmledger coproc init --coproc swtpm:127.0.0.1:2321
  vmledger coproc init --coproc soft:./coproc --soft-alg ecdsa-p256`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.Context())
			if err != nil {
				return err
			}
			sp, err := coprocSpec(specFlag)
			if err != nil {
				return err
			}
			switch soft.Algorithm(alg) {
			case soft.Ed25519, soft.ECDSAP256:
			default:
				return usagef("--soft-alg %q: want %s or %s", alg, soft.Ed25519, soft.ECDSAP256)
			}
			ctx := cmd.Context()
			opts := spec.Options{SoftAlgorithm: soft.Algorithm(alg), AuthFile: authFile}
			initFn, what := spec.Init, "init"
			if rotate {
				if sp.Kind == spec.Soft || sp.Kind == spec.Sim {
					return usagef("--rotate is for tpm: and swtpm:; for soft:, initialize a new directory")
				}
				initFn, what = spec.Rotate, "init --rotate"
			}
			created, err := initFn(ctx, sp, opts)
			if err != nil {
				return coprocError(what, sp, err)
			}
			if len(created) == 0 {
				logger.Info("co-processor already initialized", "coproc", sp.String())
			} else {
				logger.Info("co-processor initialized", "coproc", sp.String(), "created", strings.Join(created, ", "))
			}
			if sp.Kind == spec.Sim {
				fmt.Fprintln(cmd.OutOrStdout(), "note: the simulator is new and empty on every run; this shows a fresh one")
			}
			return printCoprocInfo(cmd, sp, opts, false)
		},
	}
	cmd.Flags().StringVar(&specFlag, "coproc", "", "co-processor SPEC: "+spec.Usage)
	cmd.Flags().StringVar(&alg, "soft-alg", string(soft.Ed25519), "key type for soft:DIR: ed25519 or ecdsa-p256")
	cmd.Flags().BoolVar(&rotate, "rotate", false, "TPM: replace the signing key and the AK with new ones (after the log revoked the old key; it is destroyed)")
	cmd.Flags().StringVar(&authFile, "coproc-auth", "", "TPM: file (0600) with the keys' authorization value, created if missing; the agent needs it to attest")
	return cmd
}

func newCoprocInfoCmd() *cobra.Command {
	var specFlag string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info --coproc SPEC [--json]",
		Short: "Show the public key, key id, TPM Name, NV indexes and counter",
		Long: `info prints the co-processor's public key (PEM) and key id (the lowercase hex
SHA-256 of its DER SubjectPublicKeyInfo: the keyid of its DSSE signatures,
and what "log enroll" registers), the TPM Name of the key and of both NV
indexes, the counter and the root of the latest attestation. It changes
nothing.`,
		Example: `  vmledger coproc info --coproc tpm:/dev/tpmrm0
  vmledger coproc info --coproc swtpm:127.0.0.1:2321 --json
  vmledger coproc info --coproc soft:./coproc --json | jq -r .publicKeyPEM > coproc.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := newLogger(cmd.Context()); err != nil {
				return err
			}
			sp, err := coprocSpec(specFlag)
			if err != nil {
				return err
			}
			return printCoprocInfo(cmd, sp, spec.Options{}, asJSON)
		},
	}
	cmd.Flags().StringVar(&specFlag, "coproc", "", "co-processor SPEC: "+spec.Usage)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printCoprocInfo(cmd *cobra.Command, sp spec.Spec, opts spec.Options, asJSON bool) error {
	ctx := cmd.Context()
	c, err := spec.Open(ctx, sp, opts)
	if err != nil {
		return coprocError("info", sp, err)
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil {
		return coprocError("info", sp, err)
	}
	out := cmd.OutOrStdout()
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	writeCoprocInfo(out, info)
	return nil
}

func writeCoprocInfo(w io.Writer, in *coproc.Info) {
	row := func(k, format string, args ...any) {
		fmt.Fprintf(w, "%-17s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	row("backend", "%s", in.Backend)
	row("device", "%s", in.Device)
	row("algorithm", "%s", in.Algorithm)
	row("key id", "%s", in.KeyID)
	if in.Backend == "tpm" {
		row("key handle", "0x%08x", in.KeyHandle)
		row("key name", "%s", in.KeyName)
		row("srk handle", "0x%08x", in.SRKHandle)
		row("srk name", "%s", in.SRKName)
		row("root NV index", "0x%08x  name %s", in.RootNVIndex, in.RootNVName)
		row("counter NV index", "0x%08x  name %s", in.CounterNVIndex, in.CounterNVName)
	}
	if in.CounterSet {
		row("counter", "%d", in.Counter)
	} else {
		row("counter", "not yet incremented (no attestation yet)")
	}
	if in.Root != "" {
		row("latest root", "%s", in.Root)
	} else {
		row("latest root", "none yet")
	}
	fmt.Fprintf(w, "public key:\n%s", in.PublicKeyPEM)
	if line, err := client.TrustLineInfo("NAME", in); err == nil {
		fmt.Fprintf(w, "trust file line (name it):\n%s\n", line)
	}
}

// coprocError turns a co-processor failure into what to do next.
func coprocError(what string, sp spec.Spec, err error) error {
	switch {
	case errors.Is(err, coproc.ErrNotInitialized):
		return fmt.Errorf("coproc %s %s: %w\nrun: vmledger coproc init --coproc %s", what, sp, err, sp)
	case errors.Is(err, coproc.ErrMismatch) && sp.Kind == spec.Soft:
		return fmt.Errorf("coproc %s %s: %w\nthe directory holds another key; use another directory or move the key away yourself", what, sp, err)
	case errors.Is(err, coproc.ErrMismatch):
		return fmt.Errorf("coproc %s %s: %w\nsomething else occupies a handle vmledger uses; inspect it (tpm2_getcap handles-persistent, tpm2_nvreadpublic) before removing anything", what, sp, err)
	case errors.Is(err, spec.ErrNoSimulator):
		return usageError{fmt.Errorf("coproc %s: %w", what, err)}
	default:
		return fmt.Errorf("coproc %s %s: %w", what, sp, err)
	}
}
