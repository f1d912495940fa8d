package main

import (
	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/agent/vmconfig"
	"github.com/vmledger/vmledger/testing/bench"
)

func addBenchHashFlags(cmd *cobra.Command, sizeFlag *string, runs *int) {
	cmd.Flags().StringVar(sizeFlag, "hash-size", "256MiB", "size of the generated file, with a unit (KiB, MiB, GiB, MB, GB, ...)")
	cmd.Flags().IntVar(runs, "runs", 3, "repetitions; the best time of each method is reported")
}

func newBenchHashCmd() *cobra.Command {
	var (
		c        bench.HashConfig
		sizeFlag string
	)
	cmd := &cobra.Command{
		Use:   "hash [--hash-size N] [--dir DIR | --file PATH]",
		Short: "Streaming image hashing (agent measure) against raw crypto/sha256 in memory",
		Long: `hash writes a file of --hash-size bytes (a 64 MiB pseudo-random block repeated)
in --dir, hashes it with the agent's streaming hasher (one pass, as agent
measure hashes disk images), and hashes the same bytes from memory with
crypto/sha256, in the same run. The file was just written, so it is read from
the page cache unless it is larger than memory; drop the cache (echo 3 >
/proc/sys/vm/drop_caches) and use --file to measure a cold read. --file hashes
an existing file instead (compare with: time sha256sum PATH); the in-memory
rate is then taken over the file's first 64 MiB repeated to the file's size.
Target: ≥ 90% of the in-memory rate.`,
		Example: `  vmledger bench hash --hash-size 1GiB
  vmledger bench hash --file /tmp/big.img`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.Runs < 1 {
				return usagef("--runs must be at least 1")
			}
			size, err := vmconfig.ParseSize(sizeFlag)
			if err != nil {
				return usagef("--hash-size: %v", err)
			}
			if c.File == "" && size == 0 {
				return usagef("--hash-size must be greater than 0")
			}
			c.Size = size
			r, err := bench.Hash(c)
			if err != nil {
				return err
			}
			return printBench(cmd, r)
		},
	}
	addBenchHashFlags(cmd, &sizeFlag, &c.Runs)
	cmd.Flags().StringVar(&c.Dir, "dir", "", "directory for the generated file (default: the system temp directory)")
	cmd.Flags().StringVar(&c.File, "file", "", "hash this existing file instead of generating one")
	return cmd
}
