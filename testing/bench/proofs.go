package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/tlog"
)

// ProofsConfig configures [Proofs].
type ProofsConfig struct {
	// Dir is the parent of the temporary log directory.
	Dir string
	// Keep, if set, is a directory that holds the log instead of a
	// temporary one, and is kept: the first run builds the log there,
	// later runs with the same Entries serve from it without building
	// (a 10 M-entry build takes most of an hour).
	Keep string
	// HeapProfile, if set, is a file that receives a heap profile (after
	// a garbage collection) taken while the log is open, after the proof
	// rows: what the serving process holds.
	HeapProfile string
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
	dir, signer, built, err := proofsLogDir(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Keep == "" {
		defer os.RemoveAll(dir)
	}
	bcfg := badgerlog.Config{Dir: filepath.Join(dir, "log"), Signer: signer}
	e, err := badgerlog.Open(ctx, bcfg)
	if err != nil {
		return nil, err
	}
	defer func() { e.Close() }()
	raw := float64(cfg.Entries) * float64(cfg.Size+32)
	var rows []Row
	var build *Row
	if built {
		if err := checkKeptSize(ctx, e, cfg); err != nil {
			return nil, err
		}
	} else {
		r, err := buildProofsLog(ctx, e, cfg)
		if err != nil {
			return nil, err
		}
		disk := DirSize(dir)
		r.Extra = map[string]float64{"disk bytes": float64(disk), "disk/(entries+32/leaf)": float64(disk) / raw}
		rows = append(rows, r)
		build = &rows[0]
		if cfg.Keep != "" {
			if err := os.WriteFile(filepath.Join(dir, keptBuiltFile), []byte(strconv.Itoa(cfg.Entries)+"\n"), 0o644); err != nil {
				return nil, err
			}
		}
	}
	// Serve from a reopened log: a log that has stopped growing, without
	// the build's memtables and in-flight compactions.
	if !built {
		if err := e.Close(); err != nil {
			return nil, err
		}
		if e, err = badgerlog.Open(ctx, bcfg); err != nil {
			return nil, err
		}
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
	if cfg.HeapProfile != "" {
		if err := writeHeapProfile(cfg.HeapProfile); err != nil {
			return nil, err
		}
	}
	rep := &Report{Mode: "proofs", Rows: append(rows, serve, floor)}
	peakRSS, peakAnon := max(serve.PeakRSSMiB, floor.PeakRSSMiB), max(serve.PeakAnonMiB, floor.PeakAnonMiB)
	what := "serve"
	if build != nil {
		peakRSS, peakAnon = max(peakRSS, build.PeakRSSMiB), max(peakAnon, build.PeakAnonMiB)
		what = "build, serve"
	}
	rep.Comparisons = append(rep.Comparisons,
		atLeast("proofs/s", serve.OpsPerSec, 15000, "%.0f"),
		Comparison{Name: "proofs/s / HTTP floor/s", Value: serve.OpsPerSec / floor.OpsPerSec},
		Comparison{Name: "seconds settling compactions before serving", Value: settle.Seconds()},
		atMost("proof p99 ms", serve.P99Ms, 5, "%.0f"),
		atMost("storage at rest / (entry bytes + 32/leaf)", float64(rest)/raw, 1.3, "%.2f"),
		atMost("peak RSS MiB ("+what+")", peakRSS, 512, "%.0f"),
		atMost("peak anonymous RSS MiB ("+what+")", peakAnon, 512, "%.0f"))
	if built {
		rep.Notes = append(rep.Notes, fmt.Sprintf("served from the log kept in %s by an earlier run (--keep): no build row", cfg.Keep))
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("log of %d random %d-byte entries (targets are for 10,000,000 entries); %d concurrent HTTP/1.1 clients on loopback in this process for %s, random index, size = the whole tree; default proof cache (1024 tiles); the log is closed, reopened and its compactions settled between build and serving; the HTTP floor row is the same clients and server answering a fixed %d-byte body from memory", cfg.Entries, cfg.Size, cfg.Clients, cfg.Duration, len(floorBody)))
	return rep, nil
}

// keptBuiltFile, in a --keep directory, records that the build finished
// and the log's size.
const keptBuiltFile = "built"

// proofsLogDir returns the directory for the log and its signer, and
// whether the directory already holds a finished build (cfg.Keep only).
// The kept log's key is stored beside it, so that a later run can open it.
func proofsLogDir(cfg ProofsConfig) (dir string, signer note.Signer, built bool, err error) {
	var skey string
	if cfg.Keep == "" {
		if dir, err = os.MkdirTemp(cfg.Dir, "vmledger-bench-proofs-*"); err != nil {
			return "", nil, false, fmt.Errorf("proofs: creating the log directory (pick another --dir): %w", err)
		}
	} else {
		dir = cfg.Keep
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, false, fmt.Errorf("proofs: --keep: %w", err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "log.key")); err == nil {
			skey = strings.TrimSpace(string(b))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, false, fmt.Errorf("proofs: --keep: %w", err)
		}
		if _, err := os.Stat(filepath.Join(dir, keptBuiltFile)); err == nil {
			built = true
		} else if skey != "" {
			return "", nil, false, fmt.Errorf("proofs: --keep %s holds a log whose build did not finish: remove the directory and run again", dir)
		}
	}
	if skey == "" {
		if skey, _, err = note.GenerateKey(rand.Reader, "bench.vmledger.invalid/log"); err != nil {
			return "", nil, false, err
		}
		if cfg.Keep != "" {
			if err := os.WriteFile(filepath.Join(dir, "log.key"), []byte(skey+"\n"), 0o600); err != nil {
				return "", nil, false, fmt.Errorf("proofs: --keep: %w", err)
			}
		}
	}
	signer, err = note.NewSigner(skey)
	if err != nil {
		return "", nil, false, fmt.Errorf("proofs: the log key in %s: %w", dir, err)
	}
	return dir, signer, built, nil
}

// checkKeptSize refuses a kept log of another size than cfg.Entries: the
// figures would be for a log of a size the report does not say.
func checkKeptSize(ctx context.Context, e *badgerlog.Engine, cfg ProofsConfig) error {
	b, err := e.Checkpoint(ctx)
	if err != nil {
		return err
	}
	text, _, _ := bytes.Cut(b, []byte("\n\n"))
	cp, err := tlog.ParseCheckpoint(append(text, '\n'))
	if err != nil {
		return err
	}
	if cp.Size != uint64(cfg.Entries) {
		return fmt.Errorf("proofs: --keep %s holds a log of %d entries, not %d: pass --entries %d or another directory", cfg.Keep, cp.Size, cfg.Entries, cp.Size)
	}
	return nil
}

// buildProofsLog appends cfg.Entries random entries: batches from a few
// writers, as a busy log receives them.
func buildProofsLog(ctx context.Context, e *badgerlog.Engine, cfg ProofsConfig) (Row, error) {
	const batch = 1024
	var next atomic.Int64
	m := startMeter()
	_, err := collect(4, func(w int) ([]time.Duration, error) {
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
		return Row{}, fmt.Errorf("proofs: building the log: %w", err)
	}
	return m.row("build (AddBatch)", cfg.Entries, nil), nil
}

// writeHeapProfile writes the in-use heap, after a collection, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}
