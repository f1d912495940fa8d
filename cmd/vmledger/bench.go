package main

import "github.com/spf13/cobra"

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench MODE",
		Short: "Measure the system on this machine (each mode prints a table)",
		Example: `  vmledger bench append --entries 20000
  vmledger bench hash --size 1GiB`,
	}
	cmd.AddCommand(newBenchAppendCmd(), newBenchHashCmd())
	return cmd
}
