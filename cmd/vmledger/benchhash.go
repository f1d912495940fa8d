package main

import "github.com/spf13/cobra"

func newBenchHashCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash",
		Short: "(hash: not implemented yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("hash")
		},
	}
}
