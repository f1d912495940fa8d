package main

import "github.com/spf13/cobra"

func newWitnessCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "witness",
		Short: "(witness: not implemented yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("witness")
		},
	}
}
