package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/agent/vmconfig"
	"github.com/vmledger/vmledger/testing/bench"
)

func newBenchAllCmd() *cobra.Command {
	var (
		dir       string
		ap        bench.AppendConfig
		ad        bench.AdmitConfig
		la        bench.LatencyConfig
		pr        bench.ProofsConfig
		ve        bench.VerifyConfig
		ha        bench.HashConfig
		hashSize  string
		entrySize int
	)
	cmd := &cobra.Command{
		Use:   "all [flags of every mode]",
		Short: "Every mode in sequence, in one process, then one table",
		Long: `all runs append, admit, latency, proofs, verify and hash one after the other in
this process (each with the flags of its own command; temporary directories
under --dir) and prints one table of all of them: the run BENCHMARKS.md shows.
Progress goes to stderr.`,
		Example: `  vmledger bench all
  vmledger bench all --entries 10000000 --dir /var/tmp --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			size, err := vmconfig.ParseSize(hashSize)
			if err != nil || size == 0 {
				return usagef("--hash-size must be a size above 0")
			}
			ap.Dir, ad.Dir, la.Dir, pr.Dir, ve.Dir, ha.Dir, ha.Size = dir, dir, dir, dir, dir, dir, size
			ap.Size, pr.Size = entrySize, entrySize
			ctx := cmd.Context()
			var reports []*bench.Report
			for _, m := range []struct {
				name string
				run  func() (*bench.Report, error)
			}{
				{"append", func() (*bench.Report, error) { return bench.Append(ctx, ap) }},
				{"admit", func() (*bench.Report, error) { return bench.Admit(ctx, ad) }},
				{"latency", func() (*bench.Report, error) { return bench.Latency(ctx, la) }},
				{"proofs", func() (*bench.Report, error) { return bench.Proofs(ctx, pr) }},
				{"verify", func() (*bench.Report, error) { return bench.Verify(ctx, ve) }},
				{"hash", func() (*bench.Report, error) { return bench.Hash(ha) }},
			} {
				fmt.Fprintf(cmd.ErrOrStderr(), "bench %s…\n", m.name)
				r, err := m.run()
				if err != nil {
					return err
				}
				reports = append(reports, r)
			}
			return printBench(cmd, reports...)
		},
	}
	addBenchAppendFlags(cmd, &ap, "append-entries")
	addBenchAdmitFlags(cmd, &ad)
	addBenchLatencyFlags(cmd, &la)
	addBenchProofsFlags(cmd, &pr)
	addBenchVerifyFlags(cmd, &ve)
	addBenchHashFlags(cmd, &hashSize, &ha.Runs)
	cmd.Flags().IntVar(&entrySize, "size", 1024, "entry size in bytes (append, proofs)")
	cmd.Flags().StringVar(&dir, "dir", "", "parent of every temporary directory (default: the system temp dir)")
	return cmd
}
