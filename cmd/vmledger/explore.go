package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/vmledger/vmledger/log/explorer"
	"github.com/vmledger/vmledger/log/server"
)

func newExploreCmd() *cobra.Command {
	var logURL, listen string
	var tf tlsFlags
	cmd := &cobra.Command{
		Use:   "explore --log URL --listen ADDR",
		Short: "Serve a web explorer of any log, from its public API",
		Long: `explore serves the log explorer (the pages log serve has at /) for the log at
URL, reading only its public endpoints: the latest checkpoint and its
cosigners, recent entries, lookups by VM id, config root or co-processor key,
enrolled and revoked keys, one page per attestation, and verification in the
browser with the customer's own trust file (nothing picked leaves the page).`,
		Example: `  vmledger explore --log https://log.example --listen 127.0.0.1:8090`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if logURL == "" || listen == "" {
				return usagef("explore needs --log URL and --listen ADDR")
			}
			if err := tf.check(); err != nil {
				return err
			}
			return runExplore(cmd.Context(), logURL, listen, tf)
		},
	}
	cmd.Flags().StringVar(&logURL, "log", "", "the log's base URL, e.g. https://log.example")
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on, e.g. 127.0.0.1:8090")
	tf.register(cmd)
	return cmd
}

func runExplore(ctx context.Context, logURL, listen string, tf tlsFlags) error {
	logger, err := newLogger(ctx)
	if err != nil {
		return err
	}
	ex, err := explorer.New(explorer.Config{LogURL: logURL, Logger: logger})
	if err != nil {
		return usagef("--log: %v", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", listen, err)
	}
	hs := &http.Server{Handler: ex.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	logger.Info("explorer serving", "addr", ln.Addr().String(), "log", logURL, "wasm_verifier", ex.WASM())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := tf.serve(hs, ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	return g.Wait()
}

// mountExplorer serves the explorer at / of the log's own server: it reads
// the log's public API in-process.
func mountExplorer(srv *server.Server, logger *slog.Logger) error {
	ex, err := explorer.New(explorer.Config{
		LogURL: "http://log.local",
		Client: &http.Client{Transport: explorer.HandlerTransport(srv.Handler()), Timeout: 30 * time.Second},
		Logger: logger.With("part", "explorer"),
	})
	if err != nil {
		return err
	}
	for _, p := range explorer.Routes {
		srv.Handle(p, ex.Handler())
	}
	return nil
}
