package main

import (
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasExamples: the help of every command, down to the
// leaves and including cobra's completion command, shows examples and a
// one-line summary (issue: "help text with examples on every command").
func TestEveryCommandHasExamples(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		n++
		if c.Example == "" {
			t.Errorf("%q has no examples in its help", c.CommandPath())
		}
		if c.Short == "" {
			t.Errorf("%q has no one-line summary", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	if n < 25 {
		t.Errorf("walked %d commands, want every one (at least 25)", n)
	}
}
