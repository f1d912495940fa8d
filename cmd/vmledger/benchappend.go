package main

import (
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/tlog"
)

func newBenchAppendCmd() *cobra.Command {
	var (
		entries, writers, size int
		dir                    string
		batchMaxAge            time.Duration
		memoryLimitMiB         int64
	)
	cmd := &cobra.Command{
		Use:   "append [--entries N] [--writers W] [--size BYTES]",
		Short: "Durable appends to an embedded badger log: entries/s, p50 and p99 latency",
		Long: `append creates a badger log in a temporary directory under --dir and appends
--entries distinct entries of --size random bytes from --writers concurrent writers. Every
append returns only once its entry is fsynced and covered by a signed checkpoint,
as the log's Add does in production. It prints the throughput, the p50 and p99
latency of one append, and the bytes on disk per entry.`,
		Example: `  vmledger bench append --entries 20000
  vmledger bench append --writers 1 --entries 500`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if entries < 1 || writers < 1 {
				return usagef("--entries and --writers must be at least 1")
			}
			if size < 0 || size > tlog.MaxEntrySize {
				return usagef("--size must be 0…%d", tlog.MaxEntrySize)
			}
			applyMemoryLimit(memoryLimitMiB)
			return runBenchAppend(cmd, dir, entries, writers, size, batchMaxAge)
		},
	}
	cmd.Flags().IntVar(&entries, "entries", 20000, "entries to append")
	cmd.Flags().IntVar(&writers, "writers", 64, "concurrent writers")
	cmd.Flags().IntVar(&size, "size", 1024, "entry size in bytes")
	cmd.Flags().StringVar(&dir, "dir", "", "parent of the temporary log directory (default: the system temp dir)")
	cmd.Flags().DurationVar(&batchMaxAge, "batch-max-age", 0, "the engine's BatchMaxAge")
	cmd.Flags().Int64Var(&memoryLimitMiB, "memory-limit-mib", defaultMemoryLimitMiB, "soft limit of the Go heap in MiB, as log serve sets it (0: none)")
	return cmd
}

func runBenchAppend(cmd *cobra.Command, parent string, n, writers, size int, batchMaxAge time.Duration) error {
	ctx := cmd.Context()
	dir, err := os.MkdirTemp(parent, "vmledger-bench-append-*")
	if err != nil {
		return fmt.Errorf("creating the log directory (pick another --dir): %w", err)
	}
	defer os.RemoveAll(dir)
	skey, _, err := tlog.GenerateKey(rand.Reader, "bench.vmledger.invalid/log")
	if err != nil {
		return err
	}
	signer, _, err := tlog.NewSigner(skey)
	if err != nil {
		return err
	}
	e, err := badgerlog.Open(ctx, badgerlog.Config{Dir: dir, Signer: signer, BatchMaxAge: batchMaxAge})
	if err != nil {
		return err
	}
	defer e.Close()

	lat := make([]time.Duration, 0, n)
	var mu sync.Mutex
	var next atomic.Int64
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Go(func() {
			var mine []time.Duration
			entry := make([]byte, size)
			for next.Add(1) <= int64(n) {
				rand.Read(entry) // incompressible and distinct, for an honest disk figure
				t0 := time.Now()
				if _, err := e.Add(ctx, entry); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return fmt.Errorf("append: %w", firstErr)
	}
	if err := e.Close(); err != nil {
		return err
	}
	slices.Sort(lat)
	disk := dirSize(dir)

	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "entries\twriters\tentry bytes\telapsed\tentries/s\tp50\tp99\tdisk bytes/entry\n")
	fmt.Fprintf(w, "%d\t%d\t%d\t%s\t%.0f\t%s\t%s\t%.0f\n", n, writers, size, elapsed.Round(time.Millisecond),
		float64(n)/elapsed.Seconds(), lat[len(lat)/2].Round(10*time.Microsecond),
		lat[len(lat)*99/100].Round(10*time.Microsecond), float64(disk)/float64(n))
	return w.Flush()
}

// dirSize returns the disk space the regular files under dir take: the
// blocks allocated where the platform says (badger preallocates and leaves
// sparse files), the apparent size otherwise.
func dirSize(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += fi.Size()
		}
		return nil
	})
	return total
}
