package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// versionLine describes the binary from its build info (runtime/debug): the
// main module's version ("(devel)" for a build from a checkout), the Go
// version, and the VCS revision, its time and whether the tree had
// uncommitted changes, as `go build` stamps them (-buildvcs, on by default
// in a git checkout whose .git is a directory).
func versionLine(bi *debug.BuildInfo) string {
	if bi == nil {
		return "vmledger (unknown version: the binary carries no build info)"
	}
	version := bi.Main.Version
	if version == "" {
		version = "(unknown)"
	}
	vcs := map[string]string{}
	for _, s := range bi.Settings {
		if v, ok := strings.CutPrefix(s.Key, "vcs."); ok {
			vcs[v] = s.Value
		}
	}
	rev := "revision unknown (built without VCS stamping)"
	if r := vcs["revision"]; r != "" {
		rev = "revision " + r
		if t := vcs["time"]; t != "" {
			rev += " " + t
		}
		if vcs["modified"] == "true" {
			rev += " with uncommitted changes"
		}
	}
	return fmt.Sprintf("vmledger %s %s, %s", version, bi.GoVersion, rev)
}

// buildVersion is versionLine of this binary.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return versionLine(bi)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the module version and VCS revision this binary was built from",
		Long: `version prints the version of the vmledger module, the Go version, and the
git revision the binary was built from (with its commit time, and whether the
tree had uncommitted changes), from the build information Go stores in every
binary; vmledger --version prints the same line.`,
		Example: `  vmledger version
  vmledger --version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), buildVersion())
			return err
		},
	}
}
