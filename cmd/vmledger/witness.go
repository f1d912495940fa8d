package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/vmledger/vmledger/internal/badgeropen"
	"github.com/vmledger/vmledger/internal/datadir"
	"github.com/vmledger/vmledger/witness"
	"github.com/vmledger/vmledger/witness/policy"
)

// witnessServeFlags are the flags of `vmledger witness serve`.
type witnessServeFlags struct {
	data           string
	listen         string
	keyFile        string
	logsFile       string
	peers          string
	gossipInterval time.Duration
	rate           float64
	burst          int
	tls            tlsFlags
}

func newWitnessCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "witness",
		Short:   "Run a C2SP tlog-witness that cosigns the log's checkpoints",
		Example: `  vmledger witness serve --data ./w1 --listen 127.0.0.1:7001 --key w1.key --logs logs.txt`,
	}
	cmd.AddCommand(newWitnessServeCmd())
	return cmd
}

func newWitnessServeCmd() *cobra.Command {
	var f witnessServeFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve add-checkpoint, the monitoring endpoint and fork evidence; gossip with peers",
		Long: `Serve a C2SP tlog-witness (POST /add-checkpoint) for the logs listed in --logs,
one tlog-policy "log <vkey> [<url>]" line per log (the origin is the key name; the
URL, if given, is where gossip reads the log's checkpoint and tiles).

The witness cosigns a checkpoint only with a valid consistency proof from the last
checkpoint it cosigned for that log, kept in a badger database under --data.
Also served: GET /<hex sha256(origin)>/checkpoint (latest cosigned checkpoint),
GET /v1/evidence (fork evidence, JSON), /metrics, /healthz.

At start it prints its verifier key on stdout in the cosignature/v1 form (key type
0x04). Either that or the plain Ed25519 key that keygen printed can go in a
policy's "witness" line: vmledger (and Tessera) convert the latter.` +
			configHelp(&WitnessServeConfig{}, witnessServeConfigExample),
		Example: `  vmledger keygen --name witness.example/w1 --out w1.key
  echo "log example.com/ledger+edb3e1ea+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU http://127.0.0.1:8080/" > logs
  vmledger witness serve --data ./w1 --listen 127.0.0.1:7001 --key w1.key --logs logs \
      --peers http://127.0.0.1:7002/
  vmledger witness serve --config /etc/vmledger/w1.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWitnessServe(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", "", "directory of the witness's database (created if missing)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:7380", "address to listen on")
	fl.StringVar(&f.keyFile, "key", "", "witness private key file (PRIVATE+KEY+… as keygen writes; mode 0600)")
	fl.StringVar(&f.logsFile, "logs", "", `file of "log <vkey> [<url>]" lines, one per witnessed log`)
	fl.StringVar(&f.peers, "peers", "", "comma-separated base URLs of peer witnesses to gossip with")
	fl.DurationVar(&f.gossipInterval, "gossip-interval", 30*time.Second, "time between gossip rounds")
	fl.Float64Var(&f.rate, "rate", 20, "request budget per second (0: unlimited): per log for add-checkpoint requests that advance the witness's state (replays of the last cosigned checkpoint are free), per log and client address for the monitoring endpoint")
	fl.IntVar(&f.burst, "burst", 100, "request budget: burst size (see --rate)")
	f.tls.register(cmd)
	addConfigFlag(cmd, &WitnessServeConfig{})
	for _, name := range []string{"data", "key", "logs"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runWitnessServe(ctx context.Context, f witnessServeFlags) (err error) {
	logger, err := newLogger(ctx)
	if err != nil {
		return err
	}
	if err := f.tls.check(); err != nil {
		return err
	}
	if f.gossipInterval <= 0 {
		return usagef("--gossip-interval %v: want a positive duration", f.gossipInterval)
	}
	var peers []*url.URL
	for _, p := range strings.Split(f.peers, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		u, err := url.Parse(p)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usagef("--peers: %q is not an http(s) URL", p)
		}
		peers = append(peers, u)
	}
	skey, err := witnessReadKeyFile(f.keyFile)
	if err != nil {
		return err
	}
	cosigner, err := witness.NewCosigner(skey, nil)
	if err != nil {
		return fmt.Errorf("--key %s: %w", f.keyFile, err)
	}
	logsText, err := os.ReadFile(f.logsFile)
	if err != nil {
		return fmt.Errorf("--logs: %w", err)
	}
	logs, err := policy.ParseLogs(logsText)
	if err != nil {
		return fmt.Errorf("--logs %s: %w", f.logsFile, err)
	}
	if len(logs) == 0 {
		return fmt.Errorf("--logs %s: no log lines; add one \"log <vkey> [<url>]\" line per log to witness", f.logsFile)
	}
	marked, err := datadir.Open(f.data, "witness")
	if err != nil {
		return err
	}
	if marked {
		if err := badgeropen.CheckExists(f.data); err != nil {
			return fmt.Errorf("--data: %w: the witness's state is gone; refusing to start afresh and cosign what it may have refused (restore the directory)", err)
		}
	}
	store, err := witness.OpenStore(f.data, logger)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeWithin(logger, time.Now().Add(closeWait), "the witness store", store.Close); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if !marked {
		if err := datadir.Mark(f.data, "witness"); err != nil {
			return err
		}
	}
	w, err := witness.New(witness.Config{
		Logs: logs, Cosigner: cosigner, Store: store, Logger: logger,
		Budget: witness.Budget{Rate: f.rate, Burst: f.burst},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	origins := make([]string, len(logs))
	for i, l := range logs {
		origins[i] = l.Origin
	}
	logger.Info("witness serving", "addr", ln.Addr().String(), "vkey", w.VKey(), "logs", origins, "peers", len(peers))
	fmt.Println(w.VKey())

	srv := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := f.tls.serve(srv, ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	if len(peers) > 0 || witnessLogsHaveURL(logs) {
		gossip := witness.NewGossiper(w, peers, &http.Client{Timeout: 30 * time.Second})
		g.Go(func() error { return gossip.Run(ctx, f.gossipInterval) })
	}
	return g.Wait()
}

func witnessLogsHaveURL(logs []*policy.Log) bool {
	for _, l := range logs {
		if l.URL != nil {
			return true
		}
	}
	return false
}

// witnessReadKeyFile reads a note private key, refusing a file that group
// or other may read.
func witnessReadKeyFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("--key %s: mode %04o lets others read the private key; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
