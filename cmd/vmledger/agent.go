package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vmledger/vmledger/agent/attest"
	"github.com/vmledger/vmledger/agent/launch"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/agent/store"
	"github.com/vmledger/vmledger/agent/vmconfig"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/spec"
	"github.com/vmledger/vmledger/internal/atomicfile"
)

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "The hypervisor agent: measure, attest, launch, libvirt hook",
		Example: `  vmledger agent measure --config web01.json --vm-secret web01.secret
  vmledger agent launch --vm web01 --config web01.json --vm-secret web01.secret \
      --coproc tpm:/dev/tpmrm0 --log https://log.example --trust trust.txt -- qemu-system-x86_64 …`,
		Long: `The hypervisor agent measures a VM configuration into a salted Merkle tree
(schema vmledger/config/v1), has the co-processor attest the root, records the
attestation in the log, and launches the VM only when the whole chain verifies.`,
	}
	cmd.AddCommand(newAgentMeasureCmd(), newAgentAttestCmd(), newAgentLaunchCmd(), newAgentHookCmd(), newAgentSecretCmd())
	return cmd
}

// measureFlags are the flags every agent subcommand that measures shares.
type measureFlags struct {
	config       string
	format       string
	packages     string
	vmSecret     string
	insecureZero bool
	hold         *vmconfig.Held // if set, images are opened once and held (agent launch)
	loaded       *measure.Config
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
		return measure.Secret{}, fmt.Errorf("--vm-secret %s is accessible by group or others (mode %04o): anyone who reads it can confirm guessed parameter values; run chmod 600 %s", f.vmSecret, st.Mode().Perm(), f.vmSecret)
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
	ro.Hold = f.hold
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
	f.loaded = mc
	return mc, err
}

func newAgentMeasureCmd() *cobra.Command {
	var (
		f         measureFlags
		asJSON    bool
		disclose  []string
		discloseP []string
		vmID      string
		schema    string
	)
	cmd := &cobra.Command{
		Use:   "measure --vm ID --config FILE --vm-secret FILE [--json]",
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
(--disclose-package NAME: of one package) for a third party.

It measures under schema vmledger/config/v2, as attest, launch and hook do;
v2 binds the VM id into the root, so --vm ID is required. --schema v1 measures
under the former schema (no VM id), to recompute what an attestation made
under v1 says.`,
		Example: `  head -c 32 /dev/urandom > vm.secret && chmod 600 vm.secret
  vmledger agent measure --vm web01 --config web01.json --vm-secret vm.secret
  virsh dumpxml web01 > web01.xml
  vmledger agent measure --vm web01 --config web01.xml --packages pkgs.yaml --vm-secret vm.secret --json
  vmledger agent measure --vm web01 --config web01.yaml --vm-secret vm.secret --disclose memory.bytes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, err := f.secret(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			var spec *measure.Spec
			switch schema {
			case "v2", measure.SchemaV2:
				spec = measure.V2
				if vmID == "" {
					return usagef("--vm ID is required: schema %s binds the VM id into the root (--schema v1 measures without it)", measure.SchemaV2)
				}
				if err := store.CheckVMID(vmID); err != nil {
					return usagef("--vm %q: %v", vmID, err)
				}
			case "v1", measure.SchemaV1:
				spec = measure.V1
				if vmID != "" {
					return usagef("--vm: schema %s does not measure the VM id; drop --vm or measure under v2", measure.SchemaV1)
				}
			default:
				return usagef("--schema %q: want v2 (the default) or v1", schema)
			}
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			cfg.VMID = vmID
			m, err := spec.Measure(cfg, secret)
			if err != nil {
				return fmt.Errorf("%s: %w", f.config, err)
			}
			out := cmd.OutOrStdout()
			if len(disclose)+len(discloseP) > 0 {
				var ds []any
				for _, n := range disclose {
					d, err := m.Disclose(n)
					if err != nil {
						return usagef("--disclose %s: %v (names: %s)", n, err, strings.Join(spec.Names(), ", "))
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
	cmd.Flags().StringVar(&vmID, "vm", "", "the VM's id (the attestation's subject is vm:<id>); schema v2 measures it")
	cmd.Flags().StringVar(&schema, "schema", "v2", "configuration schema: v2, or v1 to recompute an attestation made under it")
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

// The attest, launch and hook flows run runFlow: measure, attest with the
// co-processor, submit to the log, wait for a witness-cosigned checkpoint
// and verify the bundle as a customer would. attest and launch take its
// settings as flags (flowFlags); hook, which libvirt starts with no flags
// of ours, reads them from the agent configuration file (agentFileConfig).

// flowFlags are the flags that attest, launch and hook share.
type flowFlags struct {
	vmID, coproc, logURL, trust, store, state string
	coprocAuth                                string
	expected                                  string
	timeout                                   time.Duration
}

func (f *flowFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.vmID, "vm", "", "the VM's id (the attestation's subject is vm:<id>)")
	fl.StringVar(&f.coproc, "coproc", "", "co-processor: tpm:/dev/tpmrm0, swtpm:HOST:PORT, sim or soft:PATH")
	fl.StringVar(&f.coprocAuth, "coproc-auth", "", "TPM: file (0600) with the keys' authorization value (coproc init --coproc-auth made it)")
	fl.StringVar(&f.logURL, "log", "", "URL of the log (Attestation Service)")
	fl.StringVar(&f.trust, "trust", "", "trust file: log key, witness policy, co-processor keys (the customer's)")
	fl.StringVar(&f.store, "store", "", "VM configuration store directory: per-VM secret, last manifest and bundle")
	fl.StringVar(&f.state, "state", "", "consistency state file for the log (the agent's view, kept across runs)")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up after this long, the wait for the witness quorum included (exit 4)")
	fl.StringVar(&f.expected, "expected", "", "the configuration the VM's owner ordered (default: --config); the attestation must match it")
}

// loadExpected loads --expected, with the same packages file as --config.
func (ff *flowFlags) loadExpected(cmd *cobra.Command, f *measureFlags) (*measure.Config, error) {
	if ff.expected == "" {
		return nil, nil
	}
	ef := measureFlags{config: ff.expected, packages: f.packages}
	cfg, err := ef.load(cmd)
	if err != nil {
		return nil, fmt.Errorf("--expected: %w", err)
	}
	return cfg, nil
}

// agentFileConfig is the agent configuration file that `agent hook` reads
// (libvirt passes the hook no flags):
//
//	{"log": "https://log.example", "trust": "/etc/vmledger/trust.txt",
//	 "coproc": "tpm:/dev/tpmrm0", "coproc_auth": "/etc/vmledger/coproc.auth",
//	 "store": "/var/lib/vmledger/agent",
//	 "state": "/var/lib/vmledger/agent/log-state.json", "timeout": "2m"}
type agentFileConfig struct {
	Log    string `json:"log"`
	Trust  string `json:"trust"`
	Coproc string `json:"coproc"`
	// CoprocAuth is --coproc-auth.
	CoprocAuth string `json:"coproc_auth,omitempty"`
	Store      string `json:"store"`
	State      string `json:"state"`
	Timeout    string `json:"timeout,omitempty"`
}

// runFlow opens what the flags name and runs the attestation flow. The
// returned error is the reason the launch must not happen.
func runFlow(cmd *cobra.Command, ff *flowFlags, cfg, expected *measure.Config, secret measure.Secret) (*attest.Result, error) {
	ctx := cmd.Context()
	logger, err := newLogger(cmd.Context())
	if err != nil {
		return nil, err
	}
	if ff.vmID == "" || ff.coproc == "" || ff.logURL == "" || ff.trust == "" {
		return nil, usagef("--vm, --coproc, --log and --trust are required")
	}
	if err := store.CheckVMID(ff.vmID); err != nil {
		return nil, usagef("--vm %q: %v", ff.vmID, err)
	}
	trust, err := client.LoadTrust(ff.trust)
	if err != nil {
		return nil, inputError{fmt.Errorf("--trust %s: %w", ff.trust, err)}
	}
	sp, err := spec.Parse(ff.coproc)
	if err != nil {
		return nil, usagef("--coproc: %v", err)
	}
	cp, err := spec.Open(ctx, sp, spec.Options{AuthFile: ff.coprocAuth})
	if err != nil {
		err = coprocError("open", sp, err)
		if !errors.Is(err, coproc.ErrNotInitialized) && !errors.Is(err, coproc.ErrMismatch) && !errors.Is(err, spec.ErrNoSimulator) {
			// Unreachable or failing, not misconfigured: the flow could
			// not complete.
			err = fmt.Errorf("%w: %w", attest.ErrCoprocessor, err)
		}
		return nil, err
	}
	defer cp.Close()
	c := attest.Config{CoProcessor: cp, LogURL: ff.logURL, Trust: trust, Logger: logger, WaitTimeout: ff.timeout}
	if ff.store != "" {
		st, err := store.Open(ff.store)
		if err != nil {
			return nil, inputError{fmt.Errorf("--store: %w", err)}
		}
		have, err := st.Secret(ff.vmID)
		switch {
		case err == nil && have != secret:
			return nil, inputError{fmt.Errorf("--store %s holds another secret for VM %s than the one given", ff.store, ff.vmID)}
		case err != nil:
			if err := st.ImportSecret(ff.vmID, secret); err != nil {
				return nil, inputError{fmt.Errorf("--store: %w", err)}
			}
		}
		c.Store = st
	}
	if ff.state != "" {
		if c.State, err = client.OpenState(ff.state); err != nil {
			return nil, inputError{fmt.Errorf("--state: %w", err)}
		}
	}
	return attest.Attest(ctx, c, attest.Request{VMID: ff.vmID, Config: cfg, Secret: secret, Expected: expected})
}

// runFlowFromFlags loads the secret, the configuration and the expected
// configuration that the flags name, and runs the flow.
func runFlowFromFlags(cmd *cobra.Command, f *measureFlags, ff *flowFlags) (*attest.Result, error) {
	secret, err := f.secret(cmd.ErrOrStderr())
	if err != nil {
		return nil, inputError{err}
	}
	cfg, err := f.load(cmd)
	if errors.Is(err, vmconfig.ErrWritableByOthers) {
		// Not an input that cannot be read: an image anyone may swap is
		// refused, as a changed one is (exit 3).
		return nil, err
	}
	if err != nil {
		return nil, inputError{err}
	}
	expected, err := ff.loadExpected(cmd, f)
	if err != nil {
		return nil, inputError{err}
	}
	return runFlow(cmd, ff, cfg, expected, secret)
}

// printFlow tells what happened, for a person.
func printFlow(w io.Writer, r *attest.Result) {
	fmt.Fprintf(w, "config root   %s\n", r.Measurement.Root)
	if r.Report != nil {
		fmt.Fprintf(w, "co-processor  %s, counter %d\n", r.Report.Coprocessor, r.Report.Counter)
		fmt.Fprintf(w, "log entry     %d in %s (tree size %d)\n", r.Index, r.Report.Origin, r.Report.TreeSize)
		fmt.Fprintf(w, "cosigned by   %s\n", joinOr(r.Report.Cosigners, "no witness"))
		printReport(w, r.Report)
	}
}

func newAgentAttestCmd() *cobra.Command {
	var (
		f   measureFlags
		ff  flowFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "attest --vm ID --config FILE --vm-secret FILE --coproc SPEC --log URL --trust FILE --out BUNDLE",
		Short: "Measure, attest with the co-processor, log, wait for a cosigned checkpoint, verify, write the bundle",
		Long: `attest runs the agent's whole flow for one VM: measure the configuration, take
the log's latest cosigned checkpoint as the freshness anchor, have the
co-processor store the root in NV memory and sign, submit to the log and wait
until the entry is in a checkpoint the witness quorum cosigned, verify the bundle
exactly as a customer would, and write it to --out.

Exit status: 0 verified; 3 refused (a link was checked and does not hold: the
log's refusal, a checkpoint or signature that is not trusted, another
configuration, a log that forked); 4 could not complete (the co-processor, the
log or the witness quorum unreachable, failing, or not done within --timeout:
nothing was proved wrong, retry later); 1 or 2 when the inputs are wrong.`,
		Example: `  vmledger agent attest --vm web01 --config web01.json --vm-secret web01.secret \
      --coproc swtpm:127.0.0.1:2321 --log http://127.0.0.1:8080 --trust trust.txt --out web01.bundle.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out FILE is required: where to write the bundle")
			}
			r, err := runFlowFromFlags(cmd, &f, &ff)
			if err != nil {
				return flowError(err)
			}
			if err := os.WriteFile(out, r.BundleJSON, 0o644); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			printFlow(cmd.OutOrStdout(), r)
			fmt.Fprintf(cmd.OutOrStdout(), "bundle written to %s\n", out)
			return nil
		},
	}
	f.register(cmd)
	ff.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "where to write the bundle")
	return cmd
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func newAgentSecretCmd() *cobra.Command {
	var storeDir, vmID, importPath, out string
	cmd := &cobra.Command{
		Use:   "secret --store DIR --vm ID (--out FILE | --import FILE)",
		Short: "Create or import a VM's secret in the agent's store",
		Long: `secret provisions the 32-byte VM secret that salts a VM's configuration tree: the
provider's agent keeps it in its store (0600), and the VM's owner keeps a copy to
recompute the expected root. Without --import it creates a random secret and writes
the owner's copy to --out; with --import it stores a secret the owner chose. A VM's
secret is never replaced.`,
		Example: `  vmledger agent secret --store /var/lib/vmledger/agent --vm web01 --out web01.secret
  vmledger agent secret --store /var/lib/vmledger/agent --vm web02 --import owner-chosen.secret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if storeDir == "" || vmID == "" || (out == "") == (importPath == "") {
				return usagef("give --store DIR, --vm ID and exactly one of --out FILE (new secret) or --import FILE")
			}
			st, err := store.Open(storeDir)
			if err != nil {
				return fmt.Errorf("--store: %w", err)
			}
			if importPath != "" {
				f := measureFlags{vmSecret: importPath}
				sec, err := f.secret(cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				if err := st.ImportSecret(vmID, sec); err != nil {
					return fmt.Errorf("importing the secret of %s: %w", vmID, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "stored the secret of VM %s in %s\n", vmID, storeDir)
				return nil
			}
			if fileExists(out) {
				return usagef("--out %s exists; refusing to overwrite a secret", out)
			}
			sec, err := st.CreateSecret(vmID)
			if err != nil {
				return fmt.Errorf("creating the secret of %s: %w", vmID, err)
			}
			if err := atomicfile.Write(out, sec[:], 0o600); err != nil {
				return fmt.Errorf("--out: %w (the secret is in the store; copy it from there)", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created the secret of VM %s; the owner's copy is %s (32 bytes, keep it private)\n", vmID, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&storeDir, "store", "", "the agent's VM configuration store directory")
	cmd.Flags().StringVar(&vmID, "vm", "", "the VM's id")
	cmd.Flags().StringVar(&out, "out", "", "write the new secret here, for the VM's owner (mode 0600)")
	cmd.Flags().StringVar(&importPath, "import", "", "store this secret file (32 raw bytes or 64 hex) instead of creating one")
	return cmd
}

// inputError marks a flow failure that happened before the flow began: a
// flag's file could not be read or is invalid. It is neither a refusal nor
// incomplete: the command failed (exit 1), or was misused (exit 2).
type inputError struct{ err error }

func (e inputError) Error() string { return e.err.Error() }
func (e inputError) Unwrap() error { return e.err }

// flowError classifies a flow failure: a part that was unavailable makes
// it incomplete (exit 4), a broken link of the chain a refusal (exit 3); a
// usage error or an input that could not be read stays what it is.
func flowError(err error) error {
	var ue usageError
	var ie inputError
	switch {
	case errors.As(err, &ue), errors.As(err, &ie):
		return err
	case attest.Incomplete(err):
		return incompleteError{err}
	default:
		return refusedError{err}
	}
}

// abortError is the error of a launch (or a libvirt start) that did not
// happen because the flow failed with err.
func abortError(err error) error {
	if attest.Incomplete(err) {
		return flowError(fmt.Errorf("attestation could not complete, launch aborted (nothing was proved wrong; retry later): %w", err))
	}
	return flowError(fmt.Errorf("attestation failed, launch aborted: %w", err))
}

func newAgentLaunchCmd() *cobra.Command {
	var (
		f   measureFlags
		ff  flowFlags
		qf  qemuFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "launch --vm ID --config FILE --vm-secret FILE --coproc SPEC --log URL --trust FILE -- CMD [ARGS...]",
		Short: "Attest, then exec CMD only if the whole chain verifies",
		Long: `launch runs 'agent attest' and, only if every check passes, replaces itself with
CMD (exec). If any link fails — the co-processor, the log, the witness quorum, the
verification — it logs "attestation failed, launch aborted" with the reason and
runs nothing. It exits 3 when the attestation was refused (a link was checked and
does not hold) and 4 when it could not complete (the co-processor, the log or the
witness quorum unreachable, failing, or not done within --timeout: nothing was
proved wrong, retry later).

Every image file the configuration names is opened once (symlinks resolved,
O_NOFOLLOW), hashed through that descriptor and kept open: disks read-write,
loader and kernel as sealed in-memory copies. Images writable by others are
refused; a disk changed in place before the launch is refused. CMD inherits
the descriptors: VMLEDGER_FD_<TARGET> (VMLEDGER_FD_VDA, _LOADER, _KERNEL)
holds each one's number, VMLEDGER_FDS lists them. A command that opens the
configured paths again instead may get other files: that is the operator's
responsibility.

With --qemu PATH, launch builds QEMU's command line itself from the measured
configuration: memory, vCPUs (the process pinned to the measured host CPUs),
one virtio NIC per measured NIC with its MAC on the host back end --nic names
(tap:IFNAME, bridge:BRIDGE or user; NICs on a VLAN are refused), every disk on
its measured descriptor (-add-fd, /dev/fdset/N), the loader and kernel from
their sealed copies, the kernel command line; -nodefaults and -no-user-config.
Arguments after -- are then QEMU options, allowed only for the display, the
serial console, QMP, the monitor, -S, -accel kvm|tcg, -pidfile, -no-reboot and
-no-shutdown.`,
		Example: `  vmledger agent launch --vm web01 --config web01.json --vm-secret web01.secret \
      --coproc tpm:/dev/tpmrm0 --log https://log.example --trust trust.txt \
      -- qemu-system-x86_64 -name web01 -m 4096 ...
  vmledger agent launch --vm web01 --config web01.json --vm-secret web01.secret \
      --coproc tpm:/dev/tpmrm0 --log https://log.example --trust trust.txt \
      --qemu /usr/bin/qemu-system-x86_64 --nic tap:vnet12 -- -display none -qmp unix:/run/web01.qmp,server=on,wait=off`,
		Args: func(cmd *cobra.Command, args []string) error {
			if qf.binary != "" {
				return nil
			}
			return cobra.MinimumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := qf.command(cmd, args)
			if err != nil {
				return err
			}
			logger, err := newLogger(cmd.Context())
			if err != nil {
				return err
			}
			f.hold = &vmconfig.Held{}
			r, err := runFlowFromFlags(cmd, &f, &ff)
			if err != nil {
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				logger.Error("attestation failed, launch aborted", "vm", ff.vmID, "incomplete", attest.Incomplete(err), "reason", err)
				return abortError(err)
			}
			printFlow(cmd.ErrOrStderr(), r)
			if out != "" {
				if err := os.WriteFile(out, r.BundleJSON, 0o644); err != nil {
					return fmt.Errorf("--out: %w (nothing launched)", err)
				}
			}
			env, err := heldForLaunch(cmd.Context(), logger, f.hold)
			if err != nil {
				logger.Error("attestation failed, launch aborted", "vm", ff.vmID, "reason", err)
				return refusedError{fmt.Errorf("attestation failed, launch aborted: %w", err)}
			}
			argv, affinity, err := qf.argv(ff.vmID, args, f.loaded, f.hold)
			if err != nil {
				logger.Error("attestation failed, launch aborted", "vm", ff.vmID, "reason", err)
				return refusedError{fmt.Errorf("attestation failed, launch aborted: %w", err)}
			}
			logger.Info("attestation verified, launching", "vm", ff.vmID, "index", r.Index, "command", path)
			return launch.Exec(path, argv, append(os.Environ(), env...), affinity)
		},
	}
	f.register(cmd)
	ff.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "also write the verified bundle here before launching")
	qf.register(cmd)
	return cmd
}

func newAgentHookCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "hook DOMAIN OPERATION SUB-OPERATION EXTRA",
		Short: "libvirt qemu hook: attest at prepare/begin (domain XML on stdin); non-zero aborts the start",
		Long: `hook is libvirt's qemu hook (https://libvirt.org/hooks.html). Install it as
/etc/libvirt/hooks/qemu:

  #!/bin/sh
  exec /usr/local/bin/vmledger agent hook --agent-config /etc/vmledger/agent.json "$@"

libvirt runs it with DOMAIN prepare begin - and the domain XML on stdin before it
starts a VM; the hook measures that XML (VM id = the domain name; its secret comes
from the store — see 'agent secret' — and its packages from
<store>/<domain>/packages.json if present), attests, verifies against the
configuration the owner ordered if <store>/<domain>/expected.json holds it (a
vmledger/config/v1 JSON or YAML file; otherwise against the XML itself), and exits non-zero — which makes libvirt
abort the start — unless everything verifies: 3 when the attestation was refused,
4 when it could not complete (the co-processor, the log or the witness quorum
unreachable, failing, or not done within the timeout: retry later).

libvirt, not the hook, opens the images, by path, after prepare. So the hook
hashes each image through a descriptor, refuses images writable by others, and
records each image's device, inode, size, mtime and ctime as hashed
(<store>/<domain>/images.json). At "started begin" (QEMU has opened the
images; the guest has not run) it refuses — libvirt then stops the domain —
if a path names another file or one whose size or mtime changed, or if the
QEMU process (its pid from /run/libvirt/qemu/<domain>.pid) does not hold the
measured disk files open, which catches a file swapped in for QEMU's open and
swapped back; at "release end" it reports a path that names another file. Not
guaranteed: a disk changed in place by someone who can write it and resets
its mtime goes unnoticed (the ctime is not compared at started: libvirt's
security drivers relabel images at start), and so does a kernel or loader
swapped around QEMU's read (QEMU does not keep them open). agent launch, which
hands QEMU the measured descriptors, has no such window.
Other operations exit 0 at once.

The agent configuration file (JSON):

  {"log": "https://log.example", "trust": "/etc/vmledger/trust.txt",
   "coproc": "tpm:/dev/tpmrm0", "store": "/var/lib/vmledger/agent",
   "state": "/var/lib/vmledger/agent/log-state.json", "timeout": "2m"}`,
		Example: `  virsh dumpxml web01 | vmledger agent hook --agent-config agent.json web01 prepare begin -`,
		Args:    cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			domain, op, sub := args[0], args[1], args[2]
			if (op == "started" && sub == "begin") || (op == "release" && sub == "end") {
				return hookRecheck(cmd, configPath, domain, op)
			}
			if op != "prepare" || sub != "begin" {
				return nil
			}
			logger, err := newLogger(cmd.Context())
			if err != nil {
				return err
			}
			var ac agentFileConfig
			if err := readJSONFile(configPath, &ac); err != nil {
				return fmt.Errorf("--agent-config: %w", err)
			}
			if ac.Store == "" {
				return fmt.Errorf("--agent-config %s: \"store\" is required: the hook takes each VM's secret from the store", configPath)
			}
			ff := flowFlags{vmID: domain, coproc: ac.Coproc, coprocAuth: ac.CoprocAuth, logURL: ac.Log, trust: ac.Trust, store: ac.Store, state: ac.State, timeout: 2 * time.Minute}
			if ac.Timeout != "" {
				if ff.timeout, err = time.ParseDuration(ac.Timeout); err != nil {
					return fmt.Errorf("--agent-config: timeout: %w", err)
				}
			}
			st, err := store.Open(ac.Store)
			if err != nil {
				return fmt.Errorf("store: %w", err)
			}
			secret, err := st.Secret(domain)
			if err != nil {
				logger.Error("attestation failed, launch aborted", "vm", domain, "reason", err)
				return refusedError{fmt.Errorf("attestation failed, launch aborted: VM %s has no secret in %s (provision it with the VM's owner first): %w", domain, ac.Store, err)}
			}
			xmlData, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), vmconfig.MaxFileSize+1))
			if err != nil {
				return fmt.Errorf("reading the domain XML on stdin: %w", err)
			}
			var opts vmconfig.Options
			if pk, err := vmconfig.LoadPackagesFile(filepath.Join(ac.Store, domain, "packages.json")); err == nil {
				opts.Packages = pk
			}
			// The configuration the owner ordered, if the store has it: the
			// domain XML must measure to the same root.
			var expected *measure.Config
			if p := filepath.Join(ac.Store, domain, "expected.json"); fileExists(p) {
				ef := measureFlags{config: p}
				if expected, err = ef.load(cmd); err != nil {
					logger.Error("attestation failed, launch aborted", "vm", domain, "reason", err)
					return refusedError{fmt.Errorf("attestation failed, launch aborted: %s: %w", p, err)}
				}
			}
			vc, err := vmconfig.ParseLibvirt(xmlData, opts)
			if err == nil {
				var cfg *measure.Config
				held := &vmconfig.Held{StandIns: true, ReadOnly: true}
				defer held.Close()
				if cfg, err = vc.Resolve(cmd.Context(), vmconfig.ResolveOptions{Hold: held}); err == nil {
					var r *attest.Result
					if r, err = runFlow(cmd, &ff, cfg, expected, secret); err == nil {
						err = saveHookImages(ac.Store, domain, held)
					}
					if err == nil {
						logger.Info("attestation verified, libvirt may start the domain", "vm", domain, "index", r.Index, "root", r.Measurement.Root.String())
						return nil
					}
				}
			}
			logger.Error("attestation failed, launch aborted", "vm", domain, "incomplete", attest.Incomplete(err), "reason", err)
			return abortError(err)
		},
	}
	cmd.Flags().StringVar(&configPath, "agent-config", "/etc/vmledger/agent.json", "the agent configuration file")
	return cmd
}
