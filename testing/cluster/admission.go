package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/admission"
	"github.com/vmledger/vmledger/log/server"
)

// startAdmission adds the admission service to the log's server, with a
// fresh admin token written to AdminTokenFile.
func (c *Cluster) startAdmission(ctx context.Context, srv *server.Server) error {
	token := randomToken()
	c.AdminTokenFile = filepath.Join(c.opts.Dir, "admin.token")
	if err := os.WriteFile(c.AdminTokenFile, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	svc, err := admission.New(ctx, admission.Config{
		Engine: c.engine, Publisher: c.publisher, Dir: filepath.Join(c.opts.Dir, "log-index"),
		AdminToken: []byte(token), Logger: c.opts.Logger.With("part", "admission"), Registry: c.Metrics,
	})
	if err != nil {
		return err
	}
	c.closers = append(c.closers, svc.Close)
	svc.Register(srv)
	c.adminToken = []byte(token)
	return nil
}

// Enroll enrolls a co-processor's key with the log, through its HTTP API,
// with its TPM identity if it has one (the PEM of its Info).
func (c *Cluster) Enroll(ctx context.Context, name string, cp coproc.CoProcessor) error {
	info, err := cp.Info(ctx)
	if err != nil {
		return err
	}
	pemKey := []byte(info.PublicKeyPEM)
	ec := admission.EnrolClient{Base: c.LogURL, Token: c.adminToken}
	if _, _, err := ec.Enrol(ctx, name, pemKey); err != nil {
		return fmt.Errorf("enrolling co-processor %s: %w", name, err)
	}
	return nil
}
