package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	"github.com/vmledger/vmledger/internal/datadir"
	"github.com/vmledger/vmledger/log/admission"
	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/publish"
	"github.com/vmledger/vmledger/log/rekorcompat"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/tesseralog"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/witness/policy"
)

func newLogCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "The log (Attestation Service)",
		Example: `  vmledger log serve --data ./logdata --listen 127.0.0.1:8080 --key log.key --admin-token-file admin.token
  vmledger log enroll --log http://127.0.0.1:8080 --admin-token-file admin.token --key host-a.pem --name host-a`,
	}
	cmd.AddCommand(newLogServeCmd(), newLogEnrollCmd(), newLogRevokeCmd(), newLogKeysCmd())
	return cmd
}

// logServeFlags are the flags of log serve.
type logServeFlags struct {
	data, listen, key string
	allowRawEntries   bool
	batchMaxAge       time.Duration
	batchMaxSize      int
	shutdownTimeout   time.Duration
	memoryLimitMiB    int64
	witnessPolicy     string
	adminTokenFile    string
	freshnessWindow   time.Duration
	maxInFlight       int

	engine             string
	mysqlDSN           string
	checkpointInterval time.Duration
	tls                tlsFlags
}

// defaultMemoryLimitMiB is the Go heap's soft limit for the log. Badger's
// caches and memtables are sized in badgerlog (about 100 MiB); without a
// limit the garbage of its table builds lets the process grow past 600 MiB
// under sustained appends, with it the RSS stays under the 512 MiB target.
const defaultMemoryLimitMiB = 384

// applyMemoryLimit sets the Go runtime's soft memory limit unless the
// GOMEMLIMIT environment variable already does.
func applyMemoryLimit(mib int64) {
	if mib > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(mib << 20)
	}
}

func newLogServeCmd() *cobra.Command {
	var f logServeFlags
	cmd := &cobra.Command{
		Use:   "serve --data DIR --listen ADDR --key FILE",
		Short: "Serve the log: C2SP tlog-tiles, proofs, checkpoint history, metrics",
		Long: `serve opens (or creates) the log — by default in DIR with the embedded badger
engine; with --engine tessera --mysql-dsn DSN on Tessera with a MySQL/MariaDB
database, which several serve processes (front-ends) can share — and serves it
on ADDR: /checkpoint, /tile/…, /tile/entries/…, /v1/proof/inclusion,
/v1/proof/consistency, /v1/checkpoints/<size>, /healthz and /metrics, and the
Rekor v1-compatible reads /api/v1/log, /api/v1/log/proof, /api/v1/log/entries.
The log's origin is the name of the key in FILE (made by vmledger keygen); the
key file must not be readable by group or others.

Layout of DIR: engine/ (the badger database; unused with --engine tessera),
index/ (admission state and the search index, rebuilt from the log if lost),
published (the latest published checkpoint).

Admission (POST /v1/attestations) accepts DSSE envelopes signed by enrolled
co-processor keys; enrolment (POST/DELETE /v1/coprocessors) needs the bearer
token in --admin-token-file. Also served: search, offline bundles
(/v1/bundles/<index>, /v1/vms/<id>/bundle).

With --witness-policy, a checkpoint is published (served at /checkpoint and used
for bundles) only once the policy's quorum of witnesses cosigned it: after each
new checkpoint the log sends it to every witness (C2SP tlog-witness) with a
consistency proof from the size that witness last saw. Without it, every signed
checkpoint is published as it is. /healthz answers 503 with the reason when the
newest checkpoint has waited more than 30 s to be published (the witnesses are
down or refuse), or when the storage failed.

On SIGTERM or SIGINT it stops accepting connections, lets requests in flight
finish (every acknowledged entry is already durable), and closes the log.` +
			configHelp(&LogServeConfig{}, logServeConfigExample),
		Example: `  vmledger log serve --data ./logdata --listen 127.0.0.1:8080 --key log.key
  head -c 32 /dev/urandom | base64 > admin.token && chmod 600 admin.token
  vmledger log serve --data ./logdata --listen 127.0.0.1:8080 --key log.key \
      --witness-policy witnesses.txt --admin-token-file admin.token
  vmledger log serve --config /etc/vmledger/log.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.data == "" || f.listen == "" || f.key == "" {
				return usagef("log serve needs --data DIR, --listen ADDR and --key FILE")
			}
			if err := f.tls.check(); err != nil {
				return err
			}
			if f.allowRawEntries && f.adminTokenFile != "" {
				// Raw entries bypass admission: with enrolment enabled,
				// anyone could append enrolment records and attestations.
				return usagef("--allow-raw-entries and --admin-token-file cannot be combined: raw entries bypass admission (use --allow-raw-entries only on a test or benchmark log without enrolment)")
			}
			switch f.engine {
			case "badger":
				if f.mysqlDSN != "" {
					return usagef("--mysql-dsn needs --engine tessera")
				}
			case "tessera":
				if f.mysqlDSN == "" {
					return usagef("--engine tessera needs --mysql-dsn user:password@tcp(host:port)/dbname")
				}
			default:
				return usagef("--engine %q: want badger or tessera", f.engine)
			}
			return runLogServe(cmd.Context(), f)
		},
	}
	cmd.Flags().StringVar(&f.data, "data", "", "directory of the log's database (created if missing)")
	cmd.Flags().StringVar(&f.listen, "listen", "", "address to listen on, e.g. 127.0.0.1:8080")
	cmd.Flags().StringVar(&f.key, "key", "", "the log's private key file (from vmledger keygen; mode 0600)")
	cmd.Flags().BoolVar(&f.allowRawEntries, "allow-raw-entries", false, "enable POST /v1/entries (raw bytes except enrolment records and attestations; tests and benchmarks only, not with --admin-token-file)")
	cmd.Flags().DurationVar(&f.batchMaxAge, "batch-max-age", 0, "how long a batch waits for more entries after its first (0: commit as soon as the previous batch is durable)")
	cmd.Flags().IntVar(&f.batchMaxSize, "batch-max-size", 0, "most entries per batch (0: the engine's default)")
	cmd.Flags().DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long to wait for requests in flight on shutdown")
	cmd.Flags().Int64Var(&f.memoryLimitMiB, "memory-limit-mib", defaultMemoryLimitMiB, "soft limit of the Go heap in MiB (0: none; GOMEMLIMIT overrides)")
	f.tls.register(cmd)
	cmd.Flags().StringVar(&f.engine, "engine", "badger", "log engine: badger (embedded, in DATA/engine) or tessera (Tessera on MySQL/MariaDB at --mysql-dsn)")
	cmd.Flags().StringVar(&f.mysqlDSN, "mysql-dsn", "", "with --engine tessera: the log's database, user:password@tcp(host:3306)/dbname (it must exist; tables are created)")
	cmd.Flags().DurationVar(&f.checkpointInterval, "checkpoint-interval", time.Second, "with --engine tessera: how often a checkpoint is published (at least 1s)")
	cmd.Flags().StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding the bearer token of the enrolment endpoints (mode 0600; none: enrolment disabled)")
	cmd.Flags().DurationVar(&f.freshnessWindow, "freshness-window", 10*time.Minute, "how long a replaced published checkpoint stays a valid freshness anchor")
	cmd.Flags().IntVar(&f.maxInFlight, "max-in-flight", 512, "admissions handled at once (decoding, verification, append); above it POST /v1/attestations answers 429 with Retry-After")
	cmd.Flags().StringVar(&f.witnessPolicy, "witness-policy", "", "C2SP tlog-policy file of witnesses (with URLs), groups and quorum: publish only checkpoints they cosign")
	addConfigFlag(cmd, &LogServeConfig{})
	return cmd
}

// openEngine opens the engine --engine names.
// With mustExist (the data directory is marked as holding a log), the
// embedded engine refuses to start a new log.
func openEngine(ctx context.Context, f logServeFlags, signer note.Signer, logger *slog.Logger, mustExist bool) (engine.Engine, error) {
	if f.engine == "tessera" {
		if f.batchMaxSize < 0 {
			return nil, usagef("--batch-max-size must be ≥ 0")
		}
		e, err := tesseralog.Open(ctx, tesseralog.Config{
			DSN:                f.mysqlDSN,
			Signer:             signer,
			Logger:             logger.With("part", "engine"),
			CheckpointInterval: f.checkpointInterval,
			BatchMaxAge:        f.batchMaxAge,
			BatchMaxSize:       uint(f.batchMaxSize),
		})
		if err != nil {
			return nil, fmt.Errorf("--engine tessera: %w", err)
		}
		return e, nil
	}
	return badgerlog.Open(ctx, badgerlog.Config{
		Dir:          filepath.Join(f.data, "engine"),
		Signer:       signer,
		Logger:       logger,
		BatchMaxAge:  f.batchMaxAge,
		BatchMaxSize: f.batchMaxSize,
		MustExist:    mustExist,
	})
}

// pollFor is how often the publisher asks the engine for a new checkpoint:
// on tessera that is a database query, not a memory read.
func pollFor(engine string) time.Duration {
	if engine == "tessera" {
		return 100 * time.Millisecond
	}
	return 0 // the publisher's default
}

// readLogKey reads a note private key file, refusing one that group or
// others can read.
func readLogKey(path string) (note.Signer, string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", fmt.Errorf("log key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("log key %s has mode %04o: it must not be accessible by group or others (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("log key: %w", err)
	}
	s, vkey, err := tlog.NewSigner(string(b))
	if err != nil {
		return nil, "", fmt.Errorf("log key %s: %w (make one with vmledger keygen)", path, err)
	}
	return s, vkey, nil
}

func runLogServe(ctx context.Context, f logServeFlags) error {
	if f.maxInFlight < 1 {
		return usagef("--max-in-flight must be ≥ 1")
	}
	logger, err := newLogger(ctx)
	if err != nil {
		return err
	}
	signer, vkey, err := readLogKey(f.key)
	if err != nil {
		return err
	}
	applyMemoryLimit(f.memoryLimitMiB)
	marked, err := datadir.Open(f.data, "log")
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	var adminToken []byte
	if f.adminTokenFile != "" {
		if adminToken, err = readAdminToken(f.adminTokenFile); err != nil {
			return err
		}
	}
	var wpol *policy.Policy
	if f.witnessPolicy != "" {
		text, err := os.ReadFile(f.witnessPolicy)
		if err != nil {
			return fmt.Errorf("--witness-policy: %w", err)
		}
		if wpol, err = publish.LoadPolicy(text, vkey); err != nil {
			return fmt.Errorf("--witness-policy %s: %w", f.witnessPolicy, err)
		}
	}
	eng, err := openEngine(ctx, f, signer, logger, marked)
	if err != nil {
		return err
	}
	pub, err := publish.New(publish.Config{
		Engine:    eng,
		Policy:    wpol,
		StateFile: filepath.Join(f.data, "published"),
		Poll:      pollFor(f.engine),
		Logger:    logger.With("part", "publish"),
	})
	if err != nil {
		eng.Close()
		return err
	}
	srv, err := server.New(server.Config{
		Engine:          eng,
		Logger:          logger,
		AllowRawEntries: f.allowRawEntries,
		RefuseRawEntry:  admission.RefuseRawEntry,
		Published:       pub.Latest,
		Health:          pub.Health,
	})
	if err != nil {
		eng.Close()
		return err
	}
	if err := pub.Register(srv.Registry()); err != nil {
		eng.Close()
		return err
	}
	// Rekor v1-compatible reads, signed with the same key under Rekor's
	// key-ID convention (package rekorcompat).
	keyText, err := os.ReadFile(f.key) // its mode was checked by readLogKey
	if err != nil {
		eng.Close()
		return fmt.Errorf("log key: %w", err)
	}
	origin, logKey, err := rekorcompat.ParseNoteKey(string(keyText))
	if err != nil {
		eng.Close()
		return fmt.Errorf("log key %s: %w", f.key, err)
	}
	rc, err := rekorcompat.New(rekorcompat.Config{Engine: eng, Published: pub.Latest, Signer: logKey, Origin: origin, Logger: logger.With("part", "rekorcompat")})
	if err != nil {
		eng.Close()
		return err
	}
	rc.Register(srv)
	acfg := admission.Config{
		Engine: eng, Publisher: pub, Dir: filepath.Join(f.data, "index"),
		AdminToken: adminToken, FreshnessWindow: f.freshnessWindow, MaxInFlight: f.maxInFlight,
		Logger: logger.With("part", "admission"), Registry: srv.Registry(),
	}
	if te, ok := eng.(*tesseralog.Engine); ok {
		// Front-ends on one database share counter floors, duplicate
		// claims and revocations through it.
		acfg.Claims = te.Claims()
	}
	svc, err := admission.New(ctx, acfg)
	if err != nil {
		eng.Close()
		return err
	}
	if !marked {
		if err := datadir.Mark(f.data, "log"); err != nil {
			eng.Close()
			return err
		}
	}
	svc.Register(srv)
	if err := mountExplorer(srv, logger); err != nil { // the web explorer at /
		svc.Close()
		eng.Close()
		return err
	}

	// Publish first, so that the log never listens without a checkpoint to
	// serve when it can help it. With witnesses that are down, it starts
	// anyway after a bounded wait, and /checkpoint answers 404 until the
	// quorum cosigns.
	pctx, stopPublishing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPublishing()
	published := make(chan struct{})
	go func() { pub.Run(pctx); close(published) }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	if _, err := pub.Wait(wctx, 0); err != nil {
		logger.Warn("starting without a published checkpoint: the witness quorum has not cosigned one yet", "err", err)
	}
	wcancel()

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		stopPublishing()
		<-published
		svc.Close()
		eng.Close()
		return fmt.Errorf("--listen %s: %w", f.listen, err)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	logger.Info("log serving", "addr", ln.Addr().String(), "origin", signer.Name(), "vkey", vkey,
		"data", f.data, "allow_raw_entries", f.allowRawEntries, "witness_policy", f.witnessPolicy,
		"rekor_log_id", rc.LogID(), "rekor_tree_id", rc.TreeID())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := f.tls.serve(hs, ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("shutting down: finishing requests in flight")
		sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	err = g.Wait()
	closeBy := time.Now().Add(closeWait)
	if cerr := closeWithin(logger, closeBy, "the admission index", svc.Close); cerr != nil && err == nil {
		err = cerr
	}
	stopPublishing()
	<-published
	// Every Add that was acknowledged is durable already; Close also
	// commits the entries still queued by requests that were cut off.
	if cerr := closeWithin(logger, closeBy, "the engine", eng.Close); cerr != nil && err == nil {
		err = cerr
	}
	if err == nil {
		logger.Info("log stopped")
	}
	return err
}

// closeWait bounds the closing of the databases at shutdown, all together.
const closeWait = 10 * time.Second

// closeWithin runs close and waits for it until deadline. Everything
// acknowledged was synced before it was acknowledged, so a close that hangs
// (badger retrying a memtable flush into a data directory that is gone)
// must not keep the process from ending on SIGTERM.
func closeWithin(logger *slog.Logger, deadline time.Time, what string, close func() error) error {
	done := make(chan error, 1)
	go func() { done <- close() }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		logger.Error("shutting down without waiting any longer for " + what + " to close")
		return fmt.Errorf("%s did not close within %v of the shutdown", what, closeWait)
	}
}
