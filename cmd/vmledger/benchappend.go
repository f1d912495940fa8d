package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/testing/bench"
)

// addBenchAppendFlags adds append's flags; entries names the flag of
// bench.AppendConfig.Entries (bench all has its own --entries for proofs).
func addBenchAppendFlags(cmd *cobra.Command, c *bench.AppendConfig, entries string) {
	cmd.Flags().IntVar(&c.Entries, entries, 20000, "entries to append to each engine")
	cmd.Flags().IntVar(&c.Writers, "writers", 64, "concurrent writers")
	cmd.Flags().IntVar(&c.BatchMaxSize, "batch-max-size", 2048, "both engines' largest batch")
	cmd.Flags().DurationVar(&c.BatchMaxAge, "tessera-batch-max-age", 10*time.Millisecond, "Tessera's batch age")
}

func newBenchAppendCmd() *cobra.Command {
	var c bench.AppendConfig
	cmd := &cobra.Command{
		Use:   "append [--entries N] [--writers W] [--size BYTES]",
		Short: "Durable appends: the badger engine against a Tessera POSIX log, same entries, same run",
		Long: `append creates a badger log and a Tessera v1.0.4 POSIX log in temporary
directories under --dir and appends --entries distinct entries of --size
random bytes to each from --writers concurrent writers, fsync per batch on both.
A badger Add returns once its batch is fsynced and a checkpoint covering it is
signed; a Tessera Add once its batch is integrated and fsynced (its checkpoint
is published later). It prints both rates, their latencies, the bytes on disk
per entry and the ratio (target ≥ 3).`,
		Example: `  vmledger bench append
  vmledger bench append --entries 100000 --dir /var/tmp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.Entries < 1 || c.Writers < 1 {
				return usagef("--entries and --writers must be at least 1")
			}
			if c.Size < 0 || c.Size > tlog.MaxEntrySize {
				return usagef("--size must be 0…%d", tlog.MaxEntrySize)
			}
			r, err := bench.Append(cmd.Context(), c)
			if err != nil {
				return err
			}
			return printBench(cmd, r)
		},
	}
	addBenchAppendFlags(cmd, &c, "entries")
	cmd.Flags().IntVar(&c.Size, "size", 1024, "entry size in bytes")
	cmd.Flags().StringVar(&c.Dir, "dir", "", "parent of the temporary log directories (default: the system temp dir)")
	cmd.Flags().StringVar(&c.MySQLDSN, "mysql-dsn", "", "also append to the tessera log engine (log serve --engine tessera) on this existing, empty MySQL/MariaDB database")
	return cmd
}
