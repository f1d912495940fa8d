package main

import (
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/testing/bench"
)

func addBenchAdmitFlags(cmd *cobra.Command, c *bench.AdmitConfig) {
	cmd.Flags().IntVar(&c.Admissions, "admissions", 20000, "admissions per algorithm (and raw verifications)")
	cmd.Flags().IntVar(&c.Clients, "clients", 64, "concurrent HTTP clients, one enrolled key each")
}

func newBenchAdmitCmd() *cobra.Command {
	var c bench.AdmitConfig
	cmd := &cobra.Command{
		Use:   "admit [--admissions N] [--clients C]",
		Short: "HTTP admission of P-256 and Ed25519 envelopes against the raw verification rate on all cores",
		Long: `admit starts a log (badger engine, publisher, admission service, HTTP server on a
loopback port) in a temporary directory under --dir, enrols --clients keys per
algorithm, signs --admissions envelopes per algorithm beforehand, and posts them
from --clients concurrent clients. In the same run it times as many raw DSSE
verifications (coproc.Verify) on all cores. Target: P-256 admission ≥ 60% of
raw P-256 verification.`,
		Example: `  vmledger bench admit
  vmledger bench admit --clients 256 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.Admissions < 1 || c.Clients < 1 {
				return usagef("--admissions and --clients must be at least 1")
			}
			r, err := bench.Admit(cmd.Context(), c)
			if err != nil {
				return err
			}
			return printBench(cmd, r)
		},
	}
	addBenchAdmitFlags(cmd, &c)
	cmd.Flags().StringVar(&c.Dir, "dir", "", "parent of the temporary log directory (default: the system temp dir)")
	return cmd
}
