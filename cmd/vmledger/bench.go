package main

import (
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/testing/bench"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench MODE",
		Short: "Measure the system on this machine (each mode prints a table)",
		Long: `bench runs one part of vmledger under load in this process and compares it with
a reference measured in the same run: ops/s, p50 and p99 latency, CPU% (process
CPU time / wall time; 100% = one core) and peak RSS, then the ratio and its
target. --json prints the same as JSON. See BENCHMARKS.md.`,
		Example: `  vmledger bench all
  vmledger bench append --entries 20000
  vmledger bench admit --json
  vmledger bench hash --hash-size 1GiB`,
	}
	cmd.PersistentFlags().Bool("json", false, "print JSON instead of a table")
	memoryLimitMiB := cmd.PersistentFlags().Int64("memory-limit-mib", defaultMemoryLimitMiB, "soft limit of the Go heap in MiB, as log serve sets it (0: none; GOMEMLIMIT wins)")
	cmd.PersistentPreRun = func(*cobra.Command, []string) { applyMemoryLimit(*memoryLimitMiB) }
	cmd.AddCommand(newBenchAllCmd(), newBenchAppendCmd(), newBenchAdmitCmd(), newBenchLatencyCmd(), newBenchProofsCmd(), newBenchVerifyCmd(), newBenchHashCmd())
	return cmd
}

// printBench prints reports as the command's --json flag says.
func printBench(cmd *cobra.Command, reports ...*bench.Report) error {
	asJSON, _ := cmd.Flags().GetBool("json")
	return bench.Write(cmd.OutOrStdout(), asJSON, reports...)
}
