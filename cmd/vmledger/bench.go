package main

import (
	"fmt"
	"os"
	"runtime/pprof"

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
	cpuProfile := cmd.PersistentFlags().String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	var profile *os.File
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		applyMemoryLimit(*memoryLimitMiB)
		if *cpuProfile == "" {
			return nil
		}
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		profile = f
		return nil
	}
	cmd.PersistentPostRunE = func(*cobra.Command, []string) error {
		if profile == nil {
			return nil
		}
		pprof.StopCPUProfile()
		return profile.Close()
	}
	cmd.AddCommand(newBenchAllCmd(), newBenchAppendCmd(), newBenchAdmitCmd(), newBenchLatencyCmd(), newBenchProofsCmd(), newBenchVerifyCmd(), newBenchHashCmd())
	return cmd
}

// printBench prints reports as the command's --json flag says.
func printBench(cmd *cobra.Command, reports ...*bench.Report) error {
	asJSON, _ := cmd.Flags().GetBool("json")
	return bench.Write(cmd.OutOrStdout(), asJSON, reports...)
}
