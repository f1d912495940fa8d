package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/vmledger/vmledger/testing/bench"
)

func addBenchAdmitFlags(cmd *cobra.Command, c *bench.AdmitConfig) {
	cmd.Flags().IntVar(&c.Admissions, "admissions", 20000, "admissions per algorithm (and raw verifications)")
	cmd.Flags().IntVar(&c.Clients, "clients", 64, "concurrent HTTP clients, one enrolled key each")
}

func newBenchAdmitCmd() *cobra.Command {
	var c bench.AdmitConfig
	cmd := &cobra.Command{
		Use:   "admit [--admissions N] [--clients C]",
		Short: "HTTP admission of P-256 and Ed25519 envelopes against the raw verification rate on all cores",
		Long: `admit starts a log (badger engine, publisher, admission service, HTTP server on a
loopback port) in a temporary directory under --dir, enrols --clients keys per
algorithm, signs --admissions envelopes per algorithm beforehand, and posts them
from --clients concurrent clients. In the same run it times as many raw DSSE
verifications (coproc.Verify) on all cores. Target: P-256 admission ≥ 60% of
raw P-256 verification.`,
		Example: `  vmledger bench admit
  vmledger bench admit --clients 256 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.Admissions < 1 || c.Clients < 1 {
				return usagef("--admissions and --clients must be at least 1")
			}
			r, err := bench.Admit(cmd.Context(), c)
			if err != nil {
				return err
			}
			return printBench(cmd, r)
		},
	}
	addBenchAdmitFlags(cmd, &c)
	cmd.Flags().StringVar(&c.Dir, "dir", "", "parent of the temporary log directory (default: the system temp dir)")
	return cmd
}

func addBenchLatencyFlags(cmd *cobra.Command, c *bench.LatencyConfig) {
	cmd.Flags().Float64Var(&c.Rate, "rate", 1000, "offered submissions per second (open loop)")
	cmd.Flags().DurationVar(&c.Duration, "duration", 10*time.Second, "how long the load is offered")
	cmd.Flags().IntVar(&c.Keys, "keys", 0, "enrolled keys the submissions go round-robin over (0: 2 s worth of submissions)")
}

func newBenchLatencyCmd() *cobra.Command {
	var c bench.LatencyConfig
	cmd := &cobra.Command{
		Use:   "latency [--rate R] [--duration D]",
		Short: "Submit → entry in a checkpoint cosigned by 2 of 3 witnesses, at a fixed offered load",
		Long: `latency starts an in-process deployment (testing/cluster: a badger log and three
witnesses, quorum two) under --dir, enrols --keys P-256 keys, and submits signed
envelopes with POST /v1/attestations?wait=1 at --rate per second for --duration,
open loop: each submission starts on schedule whatever earlier ones are doing,
and its latency counts from that scheduled start to the 201 that carries its
bundle. A key's next submission waits for its previous one (counters must reach
the log in order). Targets: p50 ≤ 150 ms, p99 ≤ 400 ms.`,
		Example: `  vmledger bench latency
  vmledger bench latency --rate 2000 --duration 30s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.Rate <= 0 || c.Duration <= 0 {
				return usagef("--rate and --duration must be positive")
			}
			if c.Trace != "" {
				// With a trace, the deployment's logs too (--log-level
				// debug shows badger's flushes), to line stalls up with them.
				logger, err := newLogger(cmd.Context())
				if err != nil {
					return err
				}
				c.Logger = logger
			}
			r, err := bench.Latency(cmd.Context(), c)
			if err != nil {
				return err
			}
			return printBench(cmd, r)
		},
	}
	addBenchLatencyFlags(cmd, &c)
	cmd.Flags().StringVar(&c.Dir, "dir", "", "parent of the temporary cluster directory (default: the system temp dir)")
	cmd.Flags().StringVar(&c.Trace, "trace", "", "write each submission's scheduled start and latency (ms) to this file, to see where a slow tail comes from")
	return cmd
}

func addBenchProofsFlags(cmd *cobra.Command, c *bench.ProofsConfig) {
	cmd.Flags().IntVar(&c.Entries, "entries", 1_000_000, "log size (issue 10's target is at 10,000,000)")
	// 16: on 2 cores proofs/s is the same with 16 and 32 clients (18,667
	// and 18,492 at 10 M entries); more clients only queue, which is what
	// a p99 target should not measure. BENCHMARKS.md has both.
	cmd.Flags().IntVar(&c.Clients, "proof-clients", 16, "concurrent HTTP clients asking for proofs (the least that saturates 2 cores; more only queue)")
	cmd.Flags().DurationVar(&c.Duration, "proof-duration", 10*time.Second, "how long proofs are asked for")
}

func newBenchProofsCmd() *cobra.Command {
	var c bench.ProofsConfig
	cmd := &cobra.Command{
		Use:   "proofs [--entries N] [--proof-clients C] [--proof-duration D]",
		Short: "Inclusion proofs served per second from a large log, storage overhead and RSS",
		Long: `proofs builds a badger log of --entries random entries of --size bytes in a
temporary directory under --dir (AddBatch from 4 writers), then serves GET
/v1/proof/inclusion for random indexes against the whole tree to --proof-clients
concurrent clients on a loopback port for --proof-duration. It reports proofs/s,
p50, p99, bytes on disk / (entry bytes + 32 per leaf) and the peak RSS.
Targets (at 10,000,000 entries): ≥ 15,000/s, p99 ≤ 5 ms, storage ≤ 1.3, RSS ≤ 512
MiB. 10M entries of 1 KiB need about 12 GiB of disk.`,
		Example: `  vmledger bench proofs
  vmledger bench proofs --entries 10000000 --dir /var/tmp
  vmledger bench proofs --entries 10000000 --keep /var/tmp/log10m   # builds once, then serves`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.Entries < 1 || c.Clients < 1 || c.Duration <= 0 {
				return usagef("--entries and --proof-clients must be at least 1, --proof-duration positive")
			}
			r, err := bench.Proofs(cmd.Context(), c)
			if err != nil {
				return err
			}
			return printBench(cmd, r)
		},
	}
	addBenchProofsFlags(cmd, &c)
	cmd.Flags().IntVar(&c.Size, "size", 1024, "entry size in bytes")
	cmd.Flags().StringVar(&c.Dir, "dir", "", "parent of the temporary log directory (default: the system temp dir)")
	cmd.Flags().StringVar(&c.Keep, "keep", "", "build the log in this directory and keep it; a later run with the same --entries serves from it without building")
	cmd.Flags().StringVar(&c.HeapProfile, "heap-profile", "", "write the serving process's in-use heap to this file after the proof rows (go tool pprof)")
	return cmd
}

func addBenchVerifyFlags(cmd *cobra.Command, c *bench.VerifyConfig) {
	cmd.Flags().IntVar(&c.Verifications, "verifications", 2000, "bundle verifications (and signature sets) per round")
	cmd.Flags().IntVar(&c.Rounds, "rounds", 3, "alternating rounds; the best of each is reported")
}

func newBenchVerifyCmd() *cobra.Command {
	var c bench.VerifyConfig
	cmd := &cobra.Command{
		Use:   "verify [--verifications N] [--rounds R]",
		Short: "Customer bundle verifications per second against their signature checks alone",
		Long: `verify attests one VM on an in-process deployment (testing/cluster) under --dir,
then verifies its bundle offline as a customer does (client.Verify, one
goroutine) and, alternating in the same run, only its signatures (the
co-processor's P-256 and the checkpoint's log signature and cosignatures).
Target: a bundle verification takes ≤ 1.25× its signature checks.`,
		Example: `  vmledger bench verify`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.Verifications < 1 || c.Rounds < 1 {
				return usagef("--verifications and --rounds must be at least 1")
			}
			r, err := bench.Verify(cmd.Context(), c)
			if err != nil {
				return err
			}
			return printBench(cmd, r)
		},
	}
	addBenchVerifyFlags(cmd, &c)
	cmd.Flags().StringVar(&c.Dir, "dir", "", "parent of the temporary cluster directory (default: the system temp dir)")
	return cmd
}
