package main

import "github.com/spf13/cobra"

func newVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "(verify: not implemented yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("verify")
		},
	}
}
