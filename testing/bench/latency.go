package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/testing/cluster"
)

// LatencyConfig configures [Latency].
type LatencyConfig struct {
	// Dir is the parent of the cluster's temporary directory.
	Dir string
	// Rate is the offered load in submissions per second, Duration how
	// long it is offered.
	Rate     float64
	Duration time.Duration
	// Keys is how many co-processor keys submit (default: 2 s worth of
	// submissions). Submissions go round-robin over the keys; a key's
	// next submission waits for its previous one to finish, so that its
	// counters reach the log in order.
	Keys int
	// Trace, if set, is a file that receives one line per submission:
	// its scheduled start and its latency in milliseconds (-1: failed),
	// to see whether a slow tail is spread out or one stall.
	Trace string
	// Logger receives the deployment's logs (badger's flushes and
	// compactions at debug level); nil discards them.
	Logger *slog.Logger
}

// Latency measures submit → entry in a checkpoint cosigned by a 2-of-3
// witness quorum: POST /v1/attestations?wait=1 to a testing/cluster
// deployment (log, 3 witnesses) at a fixed offered load, open loop: each
// submission starts on its schedule whether or not earlier ones finished,
// and its latency counts from its scheduled start.
func Latency(ctx context.Context, cfg LatencyConfig) (*Report, error) {
	if cfg.Rate <= 0 || cfg.Duration <= 0 {
		return nil, errors.New("latency: need Rate > 0 and Duration > 0")
	}
	n := max(1, int(cfg.Rate*cfg.Duration.Seconds()))
	if cfg.Keys <= 0 {
		cfg.Keys = max(1, int(2*cfg.Rate))
	}
	cfg.Keys = min(cfg.Keys, n)
	dir, err := os.MkdirTemp(cfg.Dir, "vmledger-bench-latency-*")
	if err != nil {
		return nil, fmt.Errorf("latency: creating the cluster directory (pick another --dir): %w", err)
	}
	defer os.RemoveAll(dir)
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("latency: starting the cluster: %w", err)
	}
	defer c.Close()

	devs := make([]*device, cfg.Keys)
	_, err = collect(16, func(w int) ([]time.Duration, error) {
		for i := w; i < len(devs); i += 16 {
			d, err := newDevice(true)
			if err != nil {
				return nil, err
			}
			if err := c.Enroll(ctx, fmt.Sprintf("bench-%d", i), d); err != nil {
				return nil, err
			}
			devs[i] = d
		}
		return nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("latency: %w", err)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4096}, Timeout: time.Minute}
	defer hc.CloseIdleConnections()
	a, err := fetchAnchor(ctx, hc, c.LogURL)
	if err != nil {
		return nil, err
	}
	envs, err := signEnvelopes(devs, func(i int) int { return (n - i + cfg.Keys - 1) / cfg.Keys }, a, "lat")
	if err != nil {
		return nil, err
	}

	url := c.LogURL + "/v1/attestations?wait=1"
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	done := make([]chan struct{}, n)
	for i := range done {
		done[i] = make(chan struct{})
	}
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	m := startMeter()
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		wg.Go(func() {
			defer close(done[i])
			if i >= cfg.Keys {
				<-done[i-cfg.Keys]
			}
			err := post(ctx, hc, url, envs[i%cfg.Keys][i/cfg.Keys], http.StatusCreated)
			lat[i] = time.Since(at)
			if err != nil {
				failed.Add(1)
				errOnce.Do(func() { firstErr = err })
				lat[i] = -1
			}
		})
	}
	wg.Wait()
	if cfg.Trace != "" {
		if err := writeTrace(cfg.Trace, interval, lat); err != nil {
			return nil, err
		}
	}
	ok := lat[:0]
	for _, d := range lat {
		if d >= 0 {
			ok = append(ok, d)
		}
	}
	row := m.row("submit→cosigned (wait=1)", len(ok), ok)
	row.Extra = map[string]float64{"offered/s": cfg.Rate, "failed": float64(failed.Load())}
	// What the publisher did meanwhile: the wait for a cosigned
	// checkpoint is the wait for the next witnessing round plus the round.
	if r, err := publishRounds(c.Metrics); err == nil {
		maps.Copy(row.Extra, r)
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("latency: every submission failed: %w", firstErr)
	}
	rep := &Report{Mode: "latency", Rows: []Row{row}}
	rep.Comparisons = append(rep.Comparisons,
		atMost("p50 ms", row.P50Ms, 150, "%.0f"),
		atMost("p99 ms", row.P99Ms, 400, "%.0f"))
	rep.Notes = append(rep.Notes, fmt.Sprintf("%d P-256 submissions offered at %.0f/s for %s, open loop, round-robin over %d enrolled keys; each answers 201 with its bundle once a checkpoint covering it has 2 of 3 witness cosignatures (testing/cluster: badger log and 3 witnesses in this process, on loopback)", n, cfg.Rate, cfg.Duration, cfg.Keys))
	if firstErr != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d submissions failed; the first: %v", failed.Load(), firstErr))
	}
	return rep, nil
}

// writeTrace writes "start_ms latency_ms" per submission, in schedule
// order.
func writeTrace(path string, interval time.Duration, lat []time.Duration) error {
	var b strings.Builder
	b.WriteString("# start_ms latency_ms (-1: failed)\n")
	for i, d := range lat {
		l := -1.0
		if d >= 0 {
			l = msOf(d)
		}
		fmt.Fprintf(&b, "%.3f %.3f\n", msOf(time.Duration(i)*interval), l)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("latency trace: %w", err)
	}
	return nil
}

// publishRounds reads the publisher's metrics: rounds published and
// failed, and the mean duration of a round.
func publishRounds(g prometheus.Gatherer) (map[string]float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "vmledger_publish_rounds_total":
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "result" {
						out["rounds "+l.GetValue()] = m.GetCounter().GetValue()
					}
				}
			}
		case "vmledger_publish_round_seconds":
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				if h.GetSampleCount() > 0 {
					out["round mean ms"] = 1000 * h.GetSampleSum() / float64(h.GetSampleCount())
				}
			}
		}
	}
	return out, nil
}

// post posts body to url and wants status want.
func post(ctx context.Context, hc *http.Client, url string, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("POST: %s: %.200s", resp.Status, msg)
	}
	return nil
}

// fetchAnchor returns the log's published checkpoint as a freshness anchor.
func fetchAnchor(ctx context.Context, hc *http.Client, logURL string) (coproc.Anchor, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", logURL+"/checkpoint", nil)
	if err != nil {
		return coproc.Anchor{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return coproc.Anchor{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return coproc.Anchor{}, fmt.Errorf("GET /checkpoint: %s %v", resp.Status, err)
	}
	cp, err := parseSigned(b)
	if err != nil {
		return coproc.Anchor{}, err
	}
	return coproc.Anchor{Origin: cp.Origin, Size: cp.Size, Root: cp.Root}, nil
}
