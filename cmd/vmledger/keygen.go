package main

import "github.com/spf13/cobra"

func newKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "(keygen: not implemented yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("keygen")
		},
	}
}
