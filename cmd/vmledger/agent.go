package main

import "github.com/spf13/cobra"

func newAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "(agent: not implemented yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("agent")
		},
	}
}
