package main

import "github.com/spf13/cobra"

func newMonitorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "monitor",
		Short: "(monitor: not implemented yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return notYet("monitor")
		},
	}
}
