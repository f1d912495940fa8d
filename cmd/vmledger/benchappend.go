package main

import "github.com/spf13/cobra"

func newBenchAppendCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "append",
		Short: "(append: not implemented yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("append")
		},
	}
}
