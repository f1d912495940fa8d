// Package publish decides which checkpoints the log shows the world: a
// checkpoint the engine signed is published only once the witnesses of the
// log's policy have cosigned enough of it (C2SP tlog-witness, tlog-policy).
//
//	engine signs size N ──► Publisher.Run: consistency proofs from the engine's
//	                         tiles, add-checkpoint to every witness in parallel
//	                         (witness.Collector), stop when the quorum holds
//	                     ──► published = N with cosignatures: /checkpoint,
//	                         bundles, and every Wait(≥N) returns
//
// A log without a witness policy publishes each signed checkpoint as it is.
// The latest published checkpoint is kept in a file (written atomically) so
// that a restarted log serves it at once and never publishes a smaller one.
//
// One checkpoint is collected at a time, always the engine's newest: while
// the witnesses answer, more entries arrive, and the next round takes them
// all. So the witnesses see one request per round, not per entry.
//
// [Publisher.Health] reports when publishing has stalled: the engine has
// had a checkpoint newer than the published one for longer than
// Config.StaleAfter (the witnesses are down or refuse, or the state file
// cannot be written), with the last round's error. The log's /healthz
// answers 503 with it, so that an operator learns that attestations wait in
// vain before the agents time out.
package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmledger/vmledger/internal/atomicfile"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/witness"
	"github.com/vmledger/vmledger/witness/policy"
)

// Config configures a Publisher.
type Config struct {
	// Engine is the log whose checkpoints are published. Required.
	Engine engine.Engine
	// Policy is the witness policy; nil publishes log-signed checkpoints
	// without cosignatures. It must name the log (see LoadPolicy).
	Policy *policy.Policy
	// Collector sends checkpoints to the policy's witnesses; nil builds
	// one from Policy with a 10-second HTTP timeout.
	Collector *witness.Collector
	// StateFile keeps the latest published checkpoint; "" keeps it in
	// memory only (tests).
	StateFile string
	// Poll is how often the engine is asked for a newer checkpoint
	// (default 5 ms: the call reads memory).
	Poll time.Duration
	// Retry is the pause after a round that failed to reach the quorum
	// (default 500 ms).
	Retry time.Duration
	// MinInterval is the least time between two witnessing rounds (default
	// 100 ms): witnesses budget each log's requests (vmledger's default is
	// 20 per second), and a round covers every entry sequenced since the
	// last, so pacing costs latency, not throughput. Without a policy it
	// does not apply.
	MinInterval time.Duration
	// StaleAfter is how long a checkpoint newer than the published one may
	// wait before Health reports that publishing has stalled (default 30 s).
	StaleAfter time.Duration
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the publisher's metrics; nil registers none.
	Registry prometheus.Registerer
}

// Publisher publishes cosigned checkpoints. Create it with New and run Run
// in a goroutine.
type Publisher struct {
	cfg Config
	log *slog.Logger

	lastRound time.Time // start of the last witnessing round; owned by Run

	mu        sync.Mutex
	published []byte        // latest published signed checkpoint (with cosignatures)
	size      uint64        // its tree size
	changed   chan struct{} // closed and replaced whenever published changes
	// waiting is since when the engine has had a checkpoint newer than
	// published (zero: it has not), waitingSize its size, lastErr the
	// last round's error.
	waiting     time.Time
	waitingSize uint64
	lastErr     error

	rounds   *prometheus.CounterVec
	pubSize  prometheus.Gauge
	roundDur prometheus.Histogram
}

// LoadPolicy parses a witness policy file for the log whose verifier key is
// logVKey. The file holds tlog-policy `witness`, `group` and `quorum` lines
// (witnesses with their URLs); a `log` line for this log is added if the
// file has none.
func LoadPolicy(text []byte, logVKey string) (*policy.Policy, error) {
	origin, _, _ := strings.Cut(logVKey, "+")
	p, err := policy.Parse(text)
	if err == nil && p.Log(origin) != nil {
		return p, nil
	}
	p, err2 := policy.Parse(append([]byte("log "+logVKey+"\n"), text...))
	if err2 != nil {
		if err != nil {
			return nil, err
		}
		return nil, err2
	}
	return p, nil
}

// New returns a Publisher. It loads the state file, if any.
func New(c Config) (*Publisher, error) {
	if c.Engine == nil {
		return nil, errors.New("publish: Config.Engine is required")
	}
	if c.Poll == 0 {
		c.Poll = 5 * time.Millisecond
	}
	if c.Retry == 0 {
		c.Retry = 500 * time.Millisecond
	}
	if c.MinInterval == 0 {
		c.MinInterval = 100 * time.Millisecond
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Policy != nil && c.Collector == nil {
		c.Collector = witness.NewCollector(c.Policy, nil)
	}
	p := &Publisher{cfg: c, log: c.Logger, changed: make(chan struct{})}
	p.rounds = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vmledger_publish_rounds_total", Help: "Witnessing rounds, by result."}, []string{"result"})
	p.pubSize = prometheus.NewGauge(prometheus.GaugeOpts{Name: "vmledger_published_tree_size", Help: "Tree size of the latest published checkpoint."})
	p.roundDur = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vmledger_publish_round_seconds", Help: "Time to collect the witness quorum for one checkpoint.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)})
	if c.Registry != nil {
		if err := p.Register(c.Registry); err != nil {
			return nil, err
		}
	}
	if c.StateFile != "" {
		b, err := os.ReadFile(c.StateFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("publish: %w", err)
		default:
			cp, err := parseSize(b)
			if err != nil {
				return nil, fmt.Errorf("publish: state file %s: %w", c.StateFile, err)
			}
			p.published, p.size = b, cp
		}
	}
	return p, nil
}

func parseSize(signed []byte) (uint64, error) {
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return 0, errors.New("not a signed note")
	}
	c, err := tlog.ParseCheckpoint(signed[:i+1])
	return c.Size, err
}

// Register adds the publisher's metrics to r.
func (p *Publisher) Register(r prometheus.Registerer) error {
	for _, m := range []prometheus.Collector{p.rounds, p.pubSize, p.roundDur} {
		if err := r.Register(m); err != nil {
			return err
		}
	}
	return nil
}

// Latest returns the latest published checkpoint. Before the first round
// completes it returns engine.ErrNotFound. It is a server.CheckpointSource.
func (p *Publisher) Latest(ctx context.Context) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.published == nil {
		return nil, fmt.Errorf("publish: no checkpoint published yet: %w", engine.ErrNotFound)
	}
	return p.published, nil
}

// ErrStalled: a checkpoint newer than the published one has waited longer
// than Config.StaleAfter.
var ErrStalled = errors.New("publishing stalled")

// Health returns nil while publishing keeps up, or an error wrapping
// ErrStalled (and the last round's error) once a newer checkpoint has
// waited longer than Config.StaleAfter to be published.
func (p *Publisher) Health(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting.IsZero() {
		return nil
	}
	waited := time.Since(p.waiting)
	if waited <= p.cfg.StaleAfter {
		return nil
	}
	what := "to be published"
	if p.cfg.Policy != nil {
		what = "for the witness policy's cosignatures"
	}
	err := fmt.Errorf("%w: the checkpoint of size %d has waited %v %s (published size %d)",
		ErrStalled, p.waitingSize, waited.Round(time.Second), what, p.size)
	if p.lastErr != nil {
		err = fmt.Errorf("%w; last round: %w", err, p.lastErr)
	}
	return err
}

// Wait blocks until a checkpoint of at least size is published and returns
// it, or returns ctx's error.
func (p *Publisher) Wait(ctx context.Context, size uint64) ([]byte, error) {
	for {
		p.mu.Lock()
		pub, have, ch := p.published, p.size, p.changed
		p.mu.Unlock()
		if pub != nil && have >= size {
			return pub, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// Run publishes checkpoints until ctx is done.
func (p *Publisher) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Poll)
	defer t.Stop()
	for {
		err := p.round(ctx)
		p.mu.Lock()
		p.lastErr = err
		p.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			p.log.Warn("checkpoint not published yet", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(p.cfg.Retry):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// round publishes the engine's newest checkpoint if it is newer than the
// published one.
func (p *Publisher) round(ctx context.Context) error {
	signed, err := p.cfg.Engine.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("reading the engine's checkpoint: %w", err)
	}
	size, err := parseSize(signed)
	if err != nil {
		return fmt.Errorf("engine checkpoint: %w", err)
	}
	p.mu.Lock()
	have, pub := p.size, p.published
	if pub == nil || size > have {
		if p.waiting.IsZero() {
			p.waiting = time.Now()
		}
		p.waitingSize = size
	}
	p.mu.Unlock()
	if pub != nil && size <= have {
		return nil
	}
	if p.cfg.Policy == nil {
		return p.publish(signed, size)
	}
	if wait := time.Until(p.lastRound.Add(p.cfg.MinInterval)); wait > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		// Take the newest checkpoint after the pause.
		if signed, err = p.cfg.Engine.Checkpoint(ctx); err != nil {
			return fmt.Errorf("reading the engine's checkpoint: %w", err)
		}
		if size, err = parseSize(signed); err != nil {
			return fmt.Errorf("engine checkpoint: %w", err)
		}
	}
	start := time.Now()
	p.lastRound = start
	proofs := func(ctx context.Context, old, new uint64) ([][]byte, error) {
		return tlog.ConsistencyProof(ctx, tlog.NewTileHashReader(new, p.cfg.Engine), old, new)
	}
	cosigned, err := p.cfg.Collector.Collect(ctx, signed, proofs)
	p.roundDur.Observe(time.Since(start).Seconds())
	if err != nil {
		p.rounds.WithLabelValues("failed").Inc()
		return fmt.Errorf("size %d: %w", size, err)
	}
	p.rounds.WithLabelValues("published").Inc()
	return p.publish(cosigned, size)
}

func (p *Publisher) publish(signed []byte, size uint64) error {
	if p.cfg.StateFile != "" {
		if err := atomicfile.Write(p.cfg.StateFile, signed, 0o644); err != nil {
			return fmt.Errorf("saving published checkpoint: %w", err)
		}
	}
	p.mu.Lock()
	p.published, p.size = signed, size
	if size >= p.waitingSize {
		p.waiting = time.Time{}
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	p.pubSize.Set(float64(size))
	p.log.Debug("published checkpoint", "size", size)
	return nil
}
