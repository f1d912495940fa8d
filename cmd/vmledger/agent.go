package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/vmconfig"
)

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "The hypervisor agent: measure, attest, launch, libvirt hook",
		Long: `The hypervisor agent measures a VM configuration into a salted Merkle tree
(schema vmledger/config/v1), has the co-processor attest the root, records the
attestation in the log, and launches the VM only when the whole chain verifies.`,
	}
	cmd.AddCommand(newAgentMeasureCmd(), newAgentAttestCmd(), newAgentLaunchCmd(), newAgentHookCmd())
	return cmd
}

// measureFlags are the flags every agent subcommand that measures shares.
type measureFlags struct {
	config       string
	format       string
	packages     string
	vmSecret     string
	insecureZero bool
}

func (f *measureFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "VM configuration: JSON or YAML (vmledger/config/v1) or a libvirt domain XML")
	fl.StringVar(&f.format, "format", "", "json, yaml or libvirt (default: by extension, then by content)")
	fl.StringVar(&f.packages, "packages", "", "for libvirt XML: a JSON/YAML file {\"packages\": [{name, version, manifest_sha256}]}")
	fl.StringVar(&f.vmSecret, "vm-secret", "", "file holding the VM's 32-byte secret (32 raw bytes or 64 hex characters)")
	fl.BoolVar(&f.insecureZero, "insecure-zero-secret", false, "demo only: use an all-zero VM secret (salts become public, values guessable)")
}

// secret loads the VM secret the flags name.
func (f *measureFlags) secret(stderr io.Writer) (measure.Secret, error) {
	switch {
	case f.vmSecret != "" && f.insecureZero:
		return measure.Secret{}, usagef("--vm-secret and --insecure-zero-secret exclude each other")
	case f.insecureZero:
		fmt.Fprintln(stderr, "vmledger: WARNING: --insecure-zero-secret: the salts are public and every value can be guessed; never use this for a real VM")
		return measure.Secret{}, nil
	case f.vmSecret == "":
		return measure.Secret{}, usagef("--vm-secret FILE is required: the VM's 32-byte secret shared with its owner (create one with: head -c 32 /dev/urandom > vm.secret; chmod 600 vm.secret), or --insecure-zero-secret for a demo")
	}
	st, err := os.Stat(f.vmSecret)
	if err != nil {
		return measure.Secret{}, fmt.Errorf("--vm-secret: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(stderr, "vmledger: WARNING: VM secret %s is readable by group or others (mode %v); run chmod 600 %s\n", f.vmSecret, st.Mode().Perm(), f.vmSecret)
	}
	if st.Size() > 4096 {
		return measure.Secret{}, fmt.Errorf("--vm-secret %s: %d bytes; want 32 raw bytes or 64 hex characters", f.vmSecret, st.Size())
	}
	data, err := os.ReadFile(f.vmSecret)
	if err != nil {
		return measure.Secret{}, fmt.Errorf("--vm-secret: %w", err)
	}
	s, err := measure.ParseSecret(data)
	if err != nil {
		return measure.Secret{}, fmt.Errorf("--vm-secret %s: %w", f.vmSecret, err)
	}
	return s, nil
}

// load parses the configuration and hashes its images, with a progress bar
// when stderr is a terminal.
func (f *measureFlags) load(cmd *cobra.Command) (*measure.Config, error) {
	if f.config == "" {
		return nil, usagef("--config FILE is required (JSON, YAML or libvirt domain XML)")
	}
	var format vmconfig.Format
	switch f.format {
	case "", "json", "yaml", "libvirt":
		format = vmconfig.Format(f.format)
	case "xml":
		format = vmconfig.FormatLibvirt
	default:
		return nil, usagef("--format %q: want json, yaml or libvirt", f.format)
	}
	var opts vmconfig.Options
	if f.packages != "" {
		pk, err := vmconfig.LoadPackagesFile(f.packages)
		if err != nil {
			return nil, fmt.Errorf("--packages: %w", err)
		}
		opts.Packages = pk
	}
	cfg, ro, err := vmconfig.LoadFile(f.config, format, opts)
	if err != nil {
		return nil, fmt.Errorf("%w\n(fix the configuration; the format is documented in `go doc github.com/vmledger/vmledger/agent/vmconfig`)", err)
	}
	stderr := cmd.ErrOrStderr()
	if fd, ok := stderr.(interface{ Fd() uintptr }); ok && term.IsTerminal(int(fd.Fd())) {
		var bar *progressbar.ProgressBar
		ro.Progress = func(path string, done, size int64) {
			if done == 0 {
				if bar != nil {
					bar.Finish()
				}
				bar = progressbar.DefaultBytes(size, "hashing "+path)
			}
			bar.Set64(done)
		}
		defer func() {
			if bar != nil {
				bar.Finish()
			}
		}()
	}
	mc, err := cfg.Resolve(cmd.Context(), ro)
	if ie, ok := errors.AsType[*vmconfig.ImageError](err); ok {
		return nil, fmt.Errorf("%w\n(fix the path in %s, or give the image's SHA-256 instead of its path)", ie, f.config)
	}
	return mc, err
}

func newAgentMeasureCmd() *cobra.Command {
	var (
		f         measureFlags
		asJSON    bool
		disclose  []string
		discloseP []string
	)
	cmd := &cobra.Command{
		Use:   "measure --config FILE --vm-secret FILE [--json]",
		Short: "Measure a VM configuration: print its parameters, leaf hashes and root",
		Long: `measure parses a VM configuration (JSON or YAML in the vmledger/config/v1 format,
or a libvirt domain XML as virsh dumpxml prints it), hashes the disk, loader and
kernel images it names (one streaming pass per file, a progress bar on a
terminal), and prints every leaf of the configuration tree and its root.

The VM secret file holds 32 random bytes, raw or as 64 hex characters; it is
shared with the VM's owner, who recomputes the same root from the
configuration they ordered. --json prints the whole manifest, salts included:
with a salt, an undisclosed value can be guessed, so treat that output like
the secret. --disclose NAME prints the disclosure proof of one parameter
(--disclose-package NAME: of one package) for a third party.`,
		Example: `  head -c 32 /dev/urandom > vm.secret && chmod 600 vm.secret
  vmledger agent measure --config web01.json --vm-secret vm.secret
  virsh dumpxml web01 > web01.xml
  vmledger agent measure --config web01.xml --packages pkgs.yaml --vm-secret vm.secret --json
  vmledger agent measure --config web01.yaml --vm-secret vm.secret --disclose memory.bytes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, err := f.secret(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			m, err := measure.Measure(cfg, secret)
			if err != nil {
				return fmt.Errorf("%s: %w", f.config, err)
			}
			out := cmd.OutOrStdout()
			if len(disclose)+len(discloseP) > 0 {
				var ds []any
				for _, n := range disclose {
					d, err := m.Disclose(n)
					if err != nil {
						return usagef("--disclose %s: %v (names: %s)", n, err, strings.Join(measure.Names(), ", "))
					}
					ds = append(ds, d)
				}
				for _, n := range discloseP {
					d, err := m.DisclosePackage(n)
					if err != nil {
						return usagef("--disclose-package %s: %v", n, err)
					}
					ds = append(ds, d)
				}
				return writeJSON(out, map[string]any{"root": m.Root, "disclosures": ds})
			}
			if asJSON {
				return writeJSON(out, m)
			}
			return printMeasurement(out, f.config, m, secret.IsZero())
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the manifest as JSON (includes the salts)")
	cmd.Flags().StringArrayVar(&disclose, "disclose", nil, "print the disclosure proof of parameter `NAME` (repeatable)")
	cmd.Flags().StringArrayVar(&discloseP, "disclose-package", nil, "print the two-level disclosure proof of package `NAME` (repeatable)")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printMeasurement(w io.Writer, source string, m *measure.Measurement, zeroSecret bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "config\t%s\n", source)
	fmt.Fprintf(tw, "schema\t%s\n", m.Schema)
	if zeroSecret {
		fmt.Fprintf(tw, "secret\tINSECURE all-zero demo secret\n")
	}
	fmt.Fprintf(tw, "root\t%v\n", m.Root)
	fmt.Fprintf(tw, "leaves\t%d, sorted bytewise by name; \"-\" = absent\n\n", len(m.Leaves))
	fmt.Fprintln(tw, "INDEX\tNAME\tTYPE\tLEAF HASH\tVALUE")
	for _, l := range m.Leaves {
		fmt.Fprintf(tw, "%d\t%s\t%v\t%v\t%s\n", l.Index, l.Name, l.Type, l.Hash, l.Display)
	}
	if len(m.Packages) > 0 {
		fmt.Fprintf(tw, "\npackages\t%d leaves under packages.root\n\n", len(m.Packages))
		fmt.Fprintln(tw, "INDEX\tPACKAGE\tVERSION\tLEAF HASH\tMANIFEST SHA-256")
		for _, p := range m.Packages {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%v\n", p.Index, p.Name, p.Version, p.Hash, p.ManifestSHA256)
		}
	}
	return tw.Flush()
}

// The attest, launch and hook flows need the log, coproc and client
// packages; their flags are declared now so that scripts can be written
// against them.

func newAgentAttestCmd() *cobra.Command {
	var f measureFlags
	var coproc, logURL, trust, out string
	cmd := &cobra.Command{
		Use:   "attest --config FILE --vm-secret FILE --coproc SPEC --log URL --trust FILE --out BUNDLE",
		Short: "Measure, attest with the co-processor, log, wait for a cosigned checkpoint, verify, write the bundle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("agent attest (needs the log, coproc and client packages)")
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&coproc, "coproc", "", "co-processor: tpm:/dev/tpmrm0, swtpm:HOST:PORT, sim or soft:PATH")
	cmd.Flags().StringVar(&logURL, "log", "", "URL of the log (Attestation Service)")
	cmd.Flags().StringVar(&trust, "trust", "", "trust file: log key, witness policy, co-processor keys")
	cmd.Flags().StringVar(&out, "out", "", "where to write the bundle")
	return cmd
}

func newAgentLaunchCmd() *cobra.Command {
	var f measureFlags
	var coproc, logURL, trust string
	cmd := &cobra.Command{
		Use:   "launch --config FILE --vm-secret FILE --coproc SPEC --log URL --trust FILE -- CMD [ARGS...]",
		Short: "Attest, then exec CMD only if the whole chain verifies",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("agent launch (needs the log, coproc and client packages)")
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&coproc, "coproc", "", "co-processor: tpm:/dev/tpmrm0, swtpm:HOST:PORT, sim or soft:PATH")
	cmd.Flags().StringVar(&logURL, "log", "", "URL of the log (Attestation Service)")
	cmd.Flags().StringVar(&trust, "trust", "", "trust file: log key, witness policy, co-processor keys")
	return cmd
}

func newAgentHookCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hook DOMAIN OPERATION SUB-OPERATION EXTRA",
		Short: "libvirt qemu hook: attest at prepare/begin (domain XML on stdin); non-zero aborts the start",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("agent hook (needs the log, coproc and client packages)")
		},
	}
}
