// Package cluster runs a whole vmledger deployment in one process, on free
// loopback ports, in one directory: the log (badger engine, witnessed
// publishing, admission), three witnesses with a 2-of-3 policy, a
// co-processor (the TPM simulator, a swtpm or a software key) enrolled with
// the log, and the trust file a customer would use. Integration tests and
// `vmledger demo` use it.
//
// Every part is the real component, talking real HTTP over 127.0.0.1; only
// the processes are shared.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmledger/vmledger/agent/attest"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/spec"
	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/publish"
	"github.com/vmledger/vmledger/log/rekorcompat"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/tesseralog"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/witness"
	"github.com/vmledger/vmledger/witness/policy"
	"golang.org/x/mod/sumdb/note"
)

// Options configure a cluster.
type Options struct {
	// Dir holds every part's data. Required.
	Dir string
	// Coproc is the co-processor SPEC (spec.Parse); "" means "sim".
	Coproc string
	// Origin is the log's origin (default "vmledger.test/log").
	Origin string
	// Witnesses is the number of witnesses (default 3) and Quorum how many
	// must cosign (default 2).
	Witnesses, Quorum int
	// Logger receives every part's logs; nil discards them.
	Logger *slog.Logger
	// MySQLDSN, if set, runs the log on the Tessera engine (log/tesseralog)
	// with this database instead of the embedded badger engine.
	MySQLDSN string
	// KeysFrom, if set, is the Dir of an earlier cluster whose log key and
	// witness keys this one reuses: a second log with the same identity
	// and witnesses, but its own history — a fork, as a log restarted on a
	// rewritten store (and witnesses that lost their state) presents it.
	KeysFrom string
}

// Cluster is a running deployment.
type Cluster struct {
	opts Options

	LogURL       string
	LogVKey      string
	WitnessURLs  []string
	WitnessVKeys []string
	// TrustText is the customer's trust file; TrustFile its path.
	TrustText string
	TrustFile string
	Trust     *client.Trust
	// CoProcessor is the agent's co-processor.
	CoProcessor coproc.CoProcessor
	// AdminTokenFile holds the log's admin bearer token.
	AdminTokenFile string

	adminToken []byte
	engine     engine.Engine
	publisher  *publish.Publisher
	// Metrics holds the log's metrics (server, engine, publisher,
	// admission): what its /metrics serves.
	Metrics *prometheus.Registry
	closers []func() error
	servers []*http.Server // log first, then witnesses
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	closed  bool
}

// Start starts a cluster. Close stops it.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.Dir == "" {
		return nil, errors.New("cluster: Options.Dir is required")
	}
	if o.Coproc == "" {
		o.Coproc = "sim"
	}
	if o.Origin == "" {
		o.Origin = "vmledger.test/log"
	}
	if o.Witnesses == 0 {
		o.Witnesses = 3
	}
	if o.Quorum == 0 {
		o.Quorum = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Cluster{opts: o, cancel: cancel}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	// The log's key first: witnesses need its verifier key.
	skey, vkey, err := note.GenerateKey(rand.Reader, o.Origin)
	if err != nil {
		return nil, err
	}
	if o.KeysFrom != "" {
		if skey, vkey, err = readKey(filepath.Join(o.KeysFrom, "log.key")); err != nil {
			return nil, err
		}
	}
	c.LogVKey = vkey
	if err := writeSecret(filepath.Join(o.Dir, "log.key"), skey); err != nil {
		return nil, err
	}
	logLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c.LogURL = "http://" + logLn.Addr().String()

	// Witnesses.
	logs, err := policy.ParseLogs([]byte("log " + vkey + " " + c.LogURL + "\n"))
	if err != nil {
		return nil, err
	}
	var pol strings.Builder
	var names []string
	for i := range o.Witnesses {
		name := fmt.Sprintf("w%d", i+1)
		wskey, _, err := note.GenerateKey(rand.Reader, name+"."+strings.SplitN(o.Origin, "/", 2)[0])
		if err != nil {
			return nil, err
		}
		if o.KeysFrom != "" {
			if wskey, _, err = readKey(filepath.Join(o.KeysFrom, "witness-"+name+".key")); err != nil {
				return nil, err
			}
		}
		dir := filepath.Join(o.Dir, "witness-"+name)
		if err := writeSecret(dir+".key", wskey); err != nil {
			return nil, err
		}
		cos, err := witness.NewCosigner(wskey, nil)
		if err != nil {
			return nil, err
		}
		st, err := witness.OpenStore(dir, o.Logger.With("part", name))
		if err != nil {
			return nil, err
		}
		c.closers = append(c.closers, st.Close)
		w, err := witness.New(witness.Config{Logs: logs, Cosigner: cos, Store: st, Logger: o.Logger.With("part", name)})
		if err != nil {
			return nil, err
		}
		url, err := c.serve(w.Handler(), nil)
		if err != nil {
			return nil, err
		}
		c.WitnessURLs = append(c.WitnessURLs, url)
		c.WitnessVKeys = append(c.WitnessVKeys, w.VKey())
		names = append(names, name)
		fmt.Fprintf(&pol, "witness %s %s %s\n", name, w.VKey(), url)
	}
	fmt.Fprintf(&pol, "group witnesses %d %s\nquorum witnesses\n", o.Quorum, strings.Join(names, " "))
	policyText := pol.String()
	if err := os.WriteFile(filepath.Join(o.Dir, "witness-policy.txt"), []byte(policyText), 0o644); err != nil {
		return nil, err
	}

	// The log: engine, publisher, server (and admission).
	signer, _, err := tlog.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	if o.MySQLDSN != "" {
		c.engine, err = tesseralog.Open(ctx, tesseralog.Config{DSN: o.MySQLDSN, Signer: signer, Logger: o.Logger.With("part", "log")})
	} else {
		c.engine, err = badgerlog.Open(ctx, badgerlog.Config{Dir: filepath.Join(o.Dir, "log"), Signer: signer, Logger: o.Logger.With("part", "log")})
	}
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, c.engine.Close)
	pp, err := publish.LoadPolicy([]byte(policyText), vkey)
	if err != nil {
		return nil, err
	}
	poll := time.Duration(0)
	if o.MySQLDSN != "" {
		poll = 100 * time.Millisecond // a database query, not a memory read
	}
	c.Metrics = prometheus.NewRegistry()
	c.publisher, err = publish.New(publish.Config{Engine: c.engine, Policy: pp, Poll: poll, StateFile: filepath.Join(o.Dir, "log-published"), Logger: o.Logger.With("part", "publish"), Registry: c.Metrics})
	if err != nil {
		return nil, err
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.publisher.Run(runCtx) }()
	srv, err := server.New(server.Config{Engine: c.engine, Published: c.publisher.Latest, Logger: o.Logger.With("part", "log"), Registry: c.Metrics})
	if err != nil {
		return nil, err
	}
	// Rekor v1-compatible reads, as log serve mounts them.
	origin, logKey, err := rekorcompat.ParseNoteKey(skey)
	if err != nil {
		return nil, err
	}
	rc, err := rekorcompat.New(rekorcompat.Config{Engine: c.engine, Published: c.publisher.Latest, Signer: logKey, Origin: origin, Logger: o.Logger.With("part", "rekorcompat")})
	if err != nil {
		return nil, err
	}
	rc.Register(srv)
	if err := c.startAdmission(ctx, srv); err != nil {
		return nil, err
	}
	if _, err := c.serve(srv.Handler(), logLn); err != nil {
		return nil, err
	}

	// The co-processor, enrolled with the log.
	sp, err := spec.Parse(o.Coproc)
	if err != nil {
		return nil, err
	}
	if _, err := spec.Init(ctx, sp, spec.Options{}); err != nil {
		return nil, fmt.Errorf("co-processor %s: %w", o.Coproc, err)
	}
	c.CoProcessor, err = spec.Open(ctx, sp, spec.Options{})
	if err != nil {
		return nil, fmt.Errorf("co-processor %s: %w", o.Coproc, err)
	}
	c.closers = append(c.closers, c.CoProcessor.Close)
	if err := c.Enroll(ctx, "host-a", c.CoProcessor); err != nil {
		return nil, err
	}

	// The customer's trust file.
	info, err := c.CoProcessor.Info(ctx)
	if err != nil {
		return nil, err
	}
	line, err := client.TrustLineInfo("host-a", info)
	if err != nil {
		return nil, err
	}
	c.TrustText = "log " + vkey + " " + c.LogURL + "\n" + policyText + line + "\n"
	c.TrustFile = filepath.Join(o.Dir, "trust.txt")
	if err := os.WriteFile(c.TrustFile, []byte(c.TrustText), 0o644); err != nil {
		return nil, err
	}
	if c.Trust, err = client.ParseTrust([]byte(c.TrustText), o.Dir); err != nil {
		return nil, err
	}
	// Wait for a published checkpoint that holds the enrolment record, so
	// that agents have a non-empty anchor (verifiers refuse the empty tree:
	// anybody can write it down in advance).
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if _, err := c.publisher.Wait(wctx, 1); err != nil {
		return nil, fmt.Errorf("cluster: no checkpoint published: %w", err)
	}
	return c, nil
}

// serve serves h on ln (a new loopback listener if nil) and returns its URL.
func (c *Cluster) serve(h http.Handler, ln net.Listener) (string, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return "", err
		}
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	c.servers = append(c.servers, s)
	c.wg.Add(1)
	go func() { defer c.wg.Done(); s.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// Agent returns the agent configuration for this cluster.
func (c *Cluster) Agent() attest.Config {
	return attest.Config{CoProcessor: c.CoProcessor, LogURL: c.LogURL, Trust: c.Trust, Logger: c.opts.Logger.With("part", "agent")}
}

// Attest runs the agent's flow for one VM.
func (c *Cluster) Attest(ctx context.Context, vmID string, cfg *measure.Config, secret measure.Secret) (*attest.Result, error) {
	return attest.Attest(ctx, c.Agent(), attest.Request{VMID: vmID, Config: cfg, Secret: secret})
}

// StopWitness stops witness i (0-based): it no longer answers.
func (c *Cluster) StopWitness(i int) error {
	return c.servers[1+i].Close()
}

// Close stops everything. It is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	for _, s := range c.servers {
		s.Close()
	}
	c.wg.Wait()
	var errs []error
	for i := len(c.closers) - 1; i >= 0; i-- {
		errs = append(errs, c.closers[i]())
	}
	return errors.Join(errs...)
}

func writeSecret(path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(text+"\n"), 0o600)
}

// readKey reads a note signer key that writeSecret wrote, and derives its
// verifier key.
func readKey(path string) (skey, vkey string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("cluster: KeysFrom: %w", err)
	}
	skey = strings.TrimSpace(string(b))
	if _, vkey, err = tlog.NewSigner(skey); err != nil {
		return "", "", fmt.Errorf("cluster: KeysFrom %s: %w", path, err)
	}
	return skey, vkey, nil
}

// randomToken returns a fresh admin token.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}
