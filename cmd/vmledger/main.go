// Command vmledger is the single binary of the vmledger system: the log
// (Attestation Service), the witnesses, the co-processor tools, the hypervisor
// agent, the customer's verifier and monitor, the benchmarks and the demo.
//
// main only wires: flags are parsed here, validated, and handed to the
// packages that hold the rules as explicit Config values.
//
// Exit codes:
//
//	0  success
//	1  the command failed (I/O, a server error, a bad configuration)
//	2  usage error (unknown command or flag, missing argument)
//	3  verification failed: the attestation was refused (verify, agent attest|launch|hook,
//	   monitor --once with alerts)
//	4  could not complete: the co-processor, the log or the witness quorum was
//	   unreachable, failed or timed out; nothing was proved wrong, retry later
//	   (verify, agent attest|launch|hook, monitor --once, lookup, bundle, log keys)
//	5  not found: the log has nothing matching (lookup, bundle)
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes, documented in the package doc and the README.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitRefused = 3
	// exitIncomplete: the answer is unknown (a part was unavailable), not "no".
	exitIncomplete = 4
	// exitNotFound: the log has nothing matching (lookup, bundle).
	exitNotFound = 5
)

// usageError marks an error as the user's invocation being wrong.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// refusedError marks a verification failure: the command ran correctly and
// the answer is "no".
type refusedError struct{ err error }

func (e refusedError) Error() string { return e.err.Error() }
func (e refusedError) Unwrap() error { return e.err }

// incompleteError marks a check that could not complete: a part it needs
// was unreachable, failed or timed out, and nothing was proved wrong.
type incompleteError struct{ err error }

func (e incompleteError) Error() string { return e.err.Error() }
func (e incompleteError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

// run executes the command line args and returns the process exit code.
func run(ctx context.Context, args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(os.Stderr, "vmledger: %v\n", err)
	return exitCode(err)
}

// exitCode is the exit code of a command that returned err (not nil).
func exitCode(err error) int {
	var ue usageError
	var re refusedError
	var nf notFoundError
	var ie incompleteError
	switch {
	case errors.As(err, &ie):
		return exitIncomplete
	case errors.As(err, &re):
		return exitRefused
	case errors.As(err, &nf):
		return exitNotFound
	case errors.As(err, &ue), isCobraUsageError(err):
		return exitUsage
	default:
		return exitFailure
	}
}

// isCobraUsageError recognises the errors cobra returns for bad invocations.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "required flag", "accepts ", "requires at least", "invalid argument", "flag needs an argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// globalFlags are the persistent flags of one root command. Each root
// command has its own (tests run several commands at once in one process);
// its PersistentPreRunE puts them in the command's context, where
// newLogger finds them.
type globalFlags struct {
	logLevel  string
	logFormat string
}

type globalsKey struct{}

func init() {
	// Run the root's PersistentPreRunE even under a subcommand that has its
	// own (bench).
	cobra.EnableTraverseRunHooks = true
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vmledger",
		Short: "Verifiable VM configuration: measure, attest with a TPM, log transparently, verify",
		Long: `vmledger makes the intended configuration of a virtual machine verifiable before
it boots. A hypervisor agent measures the configuration into a salted Merkle tree,
a TPM 2.0 stores the root in NV memory and signs a statement over it, the statement
is appended to a transparency log whose checkpoints independent witnesses cosign,
and the customer verifies all of it, offline if they like.`,
		Example: `  vmledger demo                       # the whole trust chain in one process
  vmledger keygen --name example.com/log --out log.key
  vmledger log serve --data ./logdata --listen 127.0.0.1:8080 --key log.key`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildVersion(),
	}
	root.SetVersionTemplate("{{.Version}}\n") // --version: the line `vmledger version` prints
	g := new(globalFlags)
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		cmd.SetContext(context.WithValue(cmd.Context(), globalsKey{}, g))
		return nil
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newKeygenCmd(),
		newLogCmd(),
		newWitnessCmd(),
		newCoprocCmd(),
		newAgentCmd(),
		newVerifyCmd(),
		newLookupCmd(), newBundleCmd(),
		newMonitorCmd(),
		newBenchCmd(),
		newDemoCmd(),
		newVersionCmd(),
		newExploreCmd(),
	)
	// cobra's completion command, with examples like every other command.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = `  source <(vmledger completion bash)                    # this shell
  vmledger completion bash > /etc/bash_completion.d/vmledger
  vmledger completion zsh > "${fpath[1]}/_vmledger"`
			for _, shell := range c.Commands() {
				shell.Example = completionExamples[shell.Name()]
			}
		}
	}
	return root
}

// completionExamples are the examples of `vmledger completion SHELL`.
var completionExamples = map[string]string{
	"bash":       "  source <(vmledger completion bash)\n  vmledger completion bash > /etc/bash_completion.d/vmledger",
	"zsh":        "  vmledger completion zsh > \"${fpath[1]}/_vmledger\"",
	"fish":       "  vmledger completion fish > ~/.config/fish/completions/vmledger.fish",
	"powershell": "  vmledger completion powershell | Out-String | Invoke-Expression",
}

// newLogger builds the process logger from the global flags of the
// command whose context ctx is (defaults without them). Logs go to stderr
// so that stdout carries only the command's data.
func newLogger(ctx context.Context) (*slog.Logger, error) {
	globals, _ := ctx.Value(globalsKey{}).(*globalFlags)
	if globals == nil {
		globals = &globalFlags{logLevel: "info", logFormat: "text"}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(globals.logLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", globals.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch globals.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, usagef("--log-format %q: want text or json", globals.logFormat)
	}
}

// tlsFlags are --tls-cert and --tls-key of the servers.
type tlsFlags struct{ cert, key string }

func (f *tlsFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.cert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain) file; needs --tls-key")
	cmd.Flags().StringVar(&f.key, "tls-key", "", "the certificate's PEM private key file (mode 0600)")
}

// check validates the pair and the key file's mode.
func (f *tlsFlags) check() error {
	if (f.cert == "") != (f.key == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	if f.key == "" {
		return nil
	}
	fi, err := os.Stat(f.key)
	if err != nil {
		return fmt.Errorf("--tls-key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("--tls-key %s has mode %04o: it must not be accessible by group or others (chmod 600 %s)", f.key, fi.Mode().Perm(), f.key)
	}
	if _, err := tls.LoadX509KeyPair(f.cert, f.key); err != nil {
		return fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return nil
}

// serve serves hs on ln, with TLS if the flags ask for it.
func (f *tlsFlags) serve(hs *http.Server, ln net.Listener) error {
	if f.cert != "" {
		return hs.ServeTLS(ln, f.cert, f.key)
	}
	return hs.Serve(ln)
}

// notYet is the answer of a command whose component has not landed.
func notYet(what string) error {
	return fmt.Errorf("%s is not implemented yet", what)
}
