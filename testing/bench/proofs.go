package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/server"
)

// ProofsConfig configures [Proofs].
type ProofsConfig struct {
	// Dir is the parent of the temporary log directory.
	Dir string
	// Entries is the log's size, Size each entry's size in bytes.
	Entries, Size int
	// Clients is how many HTTP clients ask for proofs concurrently, for
	// Duration.
	Clients  int
	Duration time.Duration
}

// Proofs builds a badger log of cfg.Entries random entries, then serves
// GET /v1/proof/inclusion for random indexes against the full tree on a
// loopback port to cfg.Clients concurrent clients. It reports the build
// rate, the proof rate and latency, the storage overhead and the peak RSS.
func Proofs(ctx context.Context, cfg ProofsConfig) (*Report, error) {
	if cfg.Entries < 1 || cfg.Clients < 1 || cfg.Duration <= 0 || cfg.Size < 0 {
		return nil, errors.New("proofs: need Entries ≥ 1, Clients ≥ 1, Duration > 0")
	}
	dir, err := os.MkdirTemp(cfg.Dir, "vmledger-bench-proofs-*")
	if err != nil {
		return nil, fmt.Errorf("proofs: creating the log directory (pick another --dir): %w", err)
	}
	defer os.RemoveAll(dir)
	skey, _, err := note.GenerateKey(rand.Reader, "bench.vmledger.invalid/log")
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	bcfg := badgerlog.Config{Dir: filepath.Join(dir, "log"), Signer: signer}
	e, err := badgerlog.Open(ctx, bcfg)
	if err != nil {
		return nil, err
	}
	defer func() { e.Close() }()

	// Build: batches from a few writers, as a busy log receives them.
	const batch = 1024
	var next atomic.Int64
	m := startMeter()
	_, err = collect(4, func(w int) ([]time.Duration, error) {
		rng := mrand.NewChaCha8([32]byte{byte(w)})
		for {
			first := next.Add(batch) - batch
			if first >= int64(cfg.Entries) {
				return nil, nil
			}
			k := min(batch, int64(cfg.Entries)-first)
			buf := make([]byte, int(k)*cfg.Size)
			rng.Read(buf) // incompressible, for an honest disk figure
			entries := make([][]byte, k)
			for i := range entries {
				entries[i] = buf[i*cfg.Size : (i+1)*cfg.Size]
			}
			if _, err := e.AddBatch(ctx, entries); err != nil {
				return nil, err
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("proofs: building the log: %w", err)
	}
	build := m.row("build (AddBatch)", cfg.Entries, nil)
	disk := DirSize(dir)
	raw := float64(cfg.Entries) * float64(cfg.Size+32)
	build.Extra = map[string]float64{"disk bytes": float64(disk), "disk/(entries+32/leaf)": float64(disk) / raw}

	// Serve from a reopened log: a log that has stopped growing, without
	// the build's memtables and in-flight compactions.
	if err := e.Close(); err != nil {
		return nil, err
	}
	if e, err = badgerlog.Open(ctx, bcfg); err != nil {
		return nil, err
	}
	// A log at rest: badger's compactions of the build's tables finished.
	settleStart := time.Now()
	if err := e.Settle(ctx); err != nil {
		return nil, err
	}
	settle := time.Since(settleStart)
	// Storage at rest: what the settled log keeps (the build's figure
	// still counts tables that compaction was about to replace).
	rest := DirSize(dir)
	srv, err := server.New(server.Config{Engine: e})
	if err != nil {
		return nil, err
	}
	// The HTTP floor: the same server stack and clients, with a handler
	// that answers a proof-sized body from memory.
	floorBody := []byte(`{"hashes":["` + strings.Repeat("A", 43) + `="` + strings.Repeat(`,"`+strings.Repeat("A", 43)+`="`, 19) + "]}\n")
	srv.Handle("GET /bench/floor", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(floorBody)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	defer hs.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients}}
	defer hc.CloseIdleConnections()
	n := cfg.Entries
	run := func(name string, url func(rng *mrand.Rand) string) (Row, error) {
		m := startMeter()
		deadline := time.Now().Add(cfg.Duration)
		lat, err := collect(cfg.Clients, func(w int) ([]time.Duration, error) {
			rng := mrand.New(mrand.NewPCG(uint64(w), 1))
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := hc.Get(url(rng))
				if err != nil {
					return mine, err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return mine, fmt.Errorf("GET %s: %s", name, resp.Status)
				}
				mine = append(mine, time.Since(t0))
			}
			return mine, nil
		})
		if err != nil {
			return Row{}, fmt.Errorf("proofs: %w", err)
		}
		return m.row(name, len(lat), lat), nil
	}
	base := "http://" + ln.Addr().String()
	serve, err := run("inclusion proofs (HTTP)", func(rng *mrand.Rand) string {
		return fmt.Sprintf("%s/v1/proof/inclusion?index=%d&size=%d", base, rng.IntN(n), n)
	})
	if err != nil {
		return nil, err
	}
	floor, err := run("HTTP floor (fixed body)", func(*mrand.Rand) string { return base + "/bench/floor" })
	if err != nil {
		return nil, err
	}
	rep := &Report{Mode: "proofs", Rows: []Row{build, serve, floor}}
	rep.Comparisons = append(rep.Comparisons,
		atLeast("proofs/s", serve.OpsPerSec, 15000, "%.0f"),
		Comparison{Name: "proofs/s / HTTP floor/s", Value: serve.OpsPerSec / floor.OpsPerSec},
		Comparison{Name: "seconds settling compactions before serving", Value: settle.Seconds()},
		atMost("proof p99 ms", serve.P99Ms, 5, "%.0f"),
		atMost("storage at rest / (entry bytes + 32/leaf)", float64(rest)/raw, 1.3, "%.2f"),
		atMost("peak RSS MiB (build, serve)", max(build.PeakRSSMiB, serve.PeakRSSMiB), 512, "%.0f"),
		atMost("peak anonymous RSS MiB (build, serve)", max(build.PeakAnonMiB, serve.PeakAnonMiB), 512, "%.0f"))
	rep.Notes = append(rep.Notes, fmt.Sprintf("log of %d random %d-byte entries (targets are for 10,000,000 entries); %d concurrent HTTP/1.1 clients on loopback in this process for %s, random index, size = the whole tree; default proof cache (1024 tiles); the log is closed, reopened and its compactions settled between build and serving; the HTTP floor row is the same clients and server answering a fixed %d-byte body from memory", cfg.Entries, cfg.Size, cfg.Clients, cfg.Duration, len(floorBody)))
	return rep, nil
}
