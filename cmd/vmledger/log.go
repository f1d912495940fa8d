package main

import "github.com/spf13/cobra"

func newLogCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "log",
		Short: "(log: not implemented yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("log")
		},
	}
}
