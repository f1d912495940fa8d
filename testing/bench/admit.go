package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/admission"
	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/publish"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/tlog"
)

// AdmitConfig configures [Admit].
type AdmitConfig struct {
	// Dir is the parent of the temporary log directory ("" = os.TempDir()).
	Dir string
	// Admissions is how many envelopes each algorithm admits, and how many
	// raw verifications are timed; Clients how many HTTP clients post
	// concurrently, each with its own enrolled key.
	Admissions, Clients int
}

// Admit measures POST /v1/attestations on a real log (badger engine,
// publisher, admission service, HTTP server on a loopback port) with P-256
// and Ed25519 envelopes signed beforehand, and the raw DSSE verification
// rate (coproc.Verify) on all cores in the same run.
func Admit(ctx context.Context, cfg AdmitConfig) (*Report, error) {
	if cfg.Admissions < 1 || cfg.Clients < 1 {
		return nil, errors.New("admit: need Admissions ≥ 1 and Clients ≥ 1")
	}
	dir, err := os.MkdirTemp(cfg.Dir, "vmledger-bench-admit-*")
	if err != nil {
		return nil, fmt.Errorf("admit: creating the log directory (pick another --dir): %w", err)
	}
	defer os.RemoveAll(dir)
	l, err := startLog(ctx, dir, cfg.Clients)
	if err != nil {
		return nil, err
	}
	defer l.close()

	rep := &Report{Mode: "admit"}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients}}
	defer hc.CloseIdleConnections()
	for _, alg := range []struct {
		name string
		p256 bool
	}{{"p256", true}, {"ed25519", false}} {
		devs := make([]*device, cfg.Clients)
		for i := range devs {
			if devs[i], err = newDevice(alg.p256); err != nil {
				return nil, err
			}
			p, err := devs[i].pem()
			if err != nil {
				return nil, err
			}
			if _, _, err := l.enrol.Enrol(ctx, fmt.Sprintf("bench-%s-%d", alg.name, i), p); err != nil {
				return nil, fmt.Errorf("admit: enrolling: %w", err)
			}
		}
		a, err := l.anchor(ctx)
		if err != nil {
			return nil, err
		}
		quota := func(i int) int {
			q := cfg.Admissions / cfg.Clients
			if i < cfg.Admissions%cfg.Clients {
				q++
			}
			return q
		}
		envs, err := signEnvelopes(devs, quota, a, alg.name)
		if err != nil {
			return nil, err
		}

		// Raw verification on all cores, of the envelopes just signed.
		parsed := make([]*coproc.Envelope, min(len(envs[0]), 64))
		for i := range parsed {
			if parsed[i], err = coproc.ParseEnvelope(envs[0][i]); err != nil {
				return nil, err
			}
		}
		var next atomic.Int64
		m := startMeter()
		_, err = collect(runtime.GOMAXPROCS(0), func(int) ([]time.Duration, error) {
			for i := next.Add(1); i <= int64(cfg.Admissions); i = next.Add(1) {
				if err := coproc.Verify(parsed[int(i)%len(parsed)], devs[0].pub); err != nil {
					return nil, err
				}
			}
			return nil, nil
		})
		if err != nil {
			return nil, fmt.Errorf("admit: verify: %w", err)
		}
		raw := m.row("verify-"+alg.name+" (raw, all cores)", cfg.Admissions, nil)

		st0 := l.eng.Stats()
		m = startMeter()
		lat, err := postAll(hc, l.url+"/v1/attestations", envs, http.StatusAccepted)
		if err != nil {
			return nil, fmt.Errorf("admit: %w", err)
		}
		row := m.row("admit-"+alg.name+" (HTTP)", cfg.Admissions, lat)
		row.Extra = batchFigures(st0, l.eng.Stats())
		rep.Rows = append(rep.Rows, row, raw)
		c := Comparison{Name: "admit/verify " + alg.name, Value: row.OpsPerSec / raw.OpsPerSec}
		if !alg.p256 {
			rep.Comparisons = append(rep.Comparisons, c)
			continue
		}
		rep.Comparisons = append(rep.Comparisons, atLeast(c.Name, c.Value, 0.60, "%.2f"))
		// The HTTP floor: the same clients posting the same envelopes to
		// a handler that reads the body and answers 202 without work. An
		// admission costs at least that plus a verification, so on these
		// cores admissions/s cannot exceed 1/(1/floor + 1/raw).
		m = startMeter()
		flat, err := postAll(hc, l.url+"/bench/floor", envs, http.StatusAccepted)
		if err != nil {
			return nil, fmt.Errorf("admit: floor: %w", err)
		}
		floor := m.row("HTTP floor (POST, no work)", cfg.Admissions, flat)
		rep.Rows = append(rep.Rows, floor)
		ceiling := 1 / (1/floor.OpsPerSec + 1/raw.OpsPerSec)
		rep.Comparisons = append(rep.Comparisons,
			Comparison{Name: "ceiling p256 admissions/s (HTTP floor + verify)", Value: ceiling},
			Comparison{Name: "ceiling/verify p256", Value: ceiling / raw.OpsPerSec},
			Comparison{Name: "admit/ceiling p256", Value: row.OpsPerSec / ceiling})
	}
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("%d admissions per algorithm from %d concurrent HTTP/1.1 clients on loopback, one enrolled key each, envelopes signed beforehand; each POST returns 202 once the entry is fsynced and covered by a signed checkpoint (no witnesses)", cfg.Admissions, cfg.Clients),
		fmt.Sprintf("raw: coproc.Verify of the same envelopes on %d goroutines (GOMAXPROCS)", runtime.GOMAXPROCS(0)),
		"the HTTP clients run in this process and share its cores")
	return rep, nil
}

// batchFigures is the engine's mean batch size and commit time between two
// snapshots of its counters.
func batchFigures(before, after engine.Stats) map[string]float64 {
	b := float64(after.Batches - before.Batches)
	if b == 0 {
		return nil
	}
	return map[string]float64{
		"entries/batch":   float64(after.Entries-before.Entries) / b,
		"commit ms/batch": 1000 * (after.CommitSeconds - before.CommitSeconds) / b,
	}
}

// postAll sends every client's envelopes (client i sends envs[i], one after
// the other) and returns the latencies; every answer must have status want.
func postAll(hc *http.Client, url string, envs [][][]byte, want int) ([]time.Duration, error) {
	return collect(len(envs), func(i int) ([]time.Duration, error) {
		var mine []time.Duration
		for _, body := range envs[i] {
			t0 := time.Now()
			resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				return mine, err
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				return mine, fmt.Errorf("POST %s: %s: %s", url, resp.Status, msg)
			}
			mine = append(mine, time.Since(t0))
		}
		return mine, nil
	})
}

// benchLog is a log for the admit mode: badger engine, publisher without
// witnesses, admission service and HTTP server on a loopback port.
type benchLog struct {
	url   string
	eng   *badgerlog.Engine
	pub   *publish.Publisher
	svc   *admission.Service
	hs    *http.Server
	enrol *admission.EnrolClient
	stop  func()
}

func startLog(ctx context.Context, dir string, clients int) (_ *benchLog, err error) {
	skey, _, err := note.GenerateKey(rand.Reader, "bench.vmledger.invalid/log")
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	l := &benchLog{stop: func() {}}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.eng, err = badgerlog.Open(ctx, badgerlog.Config{Dir: filepath.Join(dir, "log"), Signer: signer}); err != nil {
		return nil, err
	}
	if l.pub, err = publish.New(publish.Config{Engine: l.eng}); err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { l.pub.Run(pctx); close(done) }()
	l.stop = func() { cancel(); <-done }
	srv, err := server.New(server.Config{Engine: l.eng, Published: l.pub.Latest})
	if err != nil {
		return nil, err
	}
	token := []byte(rand.Text())
	l.svc, err = admission.New(ctx, admission.Config{Engine: l.eng, Publisher: l.pub, Dir: filepath.Join(dir, "index"),
		AdminToken: token, Registry: srv.Registry(), MaxInFlight: 4 * clients})
	if err != nil {
		return nil, err
	}
	l.svc.Register(srv)
	srv.Handle("POST /bench/floor", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"index":0}`+"\n")
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.hs = &http.Server{Handler: srv.Handler()}
	go l.hs.Serve(ln)
	l.url = "http://" + ln.Addr().String()
	l.enrol = &admission.EnrolClient{Base: l.url, Token: token}
	return l, nil
}

// anchor returns the latest published checkpoint as a freshness anchor.
func (l *benchLog) anchor(ctx context.Context) (coproc.Anchor, error) {
	signed, err := l.eng.Checkpoint(ctx)
	if err != nil {
		return coproc.Anchor{}, err
	}
	c, err := parseSigned(signed)
	if err != nil {
		return coproc.Anchor{}, err
	}
	if signed, err = l.pub.Wait(ctx, c.Size); err != nil {
		return coproc.Anchor{}, err
	}
	if c, err = parseSigned(signed); err != nil {
		return coproc.Anchor{}, err
	}
	return coproc.Anchor{Origin: c.Origin, Size: c.Size, Root: c.Root}, nil
}

func (l *benchLog) close() {
	if l.hs != nil {
		l.hs.Close()
	}
	if l.svc != nil {
		l.svc.Close()
	}
	l.stop()
	if l.eng != nil {
		l.eng.Close()
	}
}

func parseSigned(signed []byte) (tlog.Checkpoint, error) {
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return tlog.Checkpoint{}, errors.New("checkpoint is not a signed note")
	}
	return tlog.ParseCheckpoint(signed[:i+1])
}
