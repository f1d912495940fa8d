package main

import "github.com/spf13/cobra"

func newCoprocCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "coproc",
		Short: "(coproc: not implemented yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("coproc")
		},
	}
}
