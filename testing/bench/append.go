package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
	"k8s.io/klog/v2"

	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/tesseralog"
	"github.com/vmledger/vmledger/log/tlog"
)

// AppendConfig configures [Append].
type AppendConfig struct {
	// Dir is the parent of the temporary log directories ("" = os.TempDir()).
	Dir string
	// Entries is how many entries each engine appends; Writers how many
	// goroutines append concurrently; Size the entry size in bytes.
	Entries, Writers, Size int
	// BatchMaxSize is both engines' largest batch; BatchMaxAge Tessera's
	// batch age (badger's sequencer takes whatever waits while the
	// previous batch commits, so it needs none).
	BatchMaxSize int
	BatchMaxAge  time.Duration
	// MySQLDSN, if set, adds a third row: the log/tesseralog engine (the
	// one `log serve --engine tessera` runs) on this MySQL/MariaDB
	// database, which must exist and be empty.
	MySQLDSN string
}

// Append appends cfg.Entries entries of cfg.Size random bytes to a badger
// log and then to a Tessera POSIX log, each in a new directory under
// cfg.Dir, from cfg.Writers concurrent writers, and compares the rates.
func Append(ctx context.Context, cfg AppendConfig) (*Report, error) {
	if cfg.Entries < 1 || cfg.Writers < 1 || cfg.Size < 0 || cfg.Size > tlog.MaxEntrySize {
		return nil, fmt.Errorf("append: need Entries ≥ 1, Writers ≥ 1 and Size 0…%d", tlog.MaxEntrySize)
	}
	if cfg.BatchMaxSize <= 0 {
		cfg.BatchMaxSize = 2048
	}
	if cfg.BatchMaxAge <= 0 {
		cfg.BatchMaxAge = 10 * time.Millisecond
	}
	quietTessera()
	skey, _, err := note.GenerateKey(rand.Reader, "bench.vmledger.invalid/log")
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	rep := &Report{Mode: "append"}

	// badger
	dir, err := os.MkdirTemp(cfg.Dir, "vmledger-bench-badger-*")
	if err != nil {
		return nil, fmt.Errorf("append: creating the log directory (pick another --dir): %w", err)
	}
	defer os.RemoveAll(dir)
	e, err := badgerlog.Open(ctx, badgerlog.Config{Dir: dir, Signer: signer, BatchMaxSize: cfg.BatchMaxSize})
	if err != nil {
		return nil, err
	}
	m := startMeter()
	lat, err := appendLoad(cfg, func(entry []byte) error { _, err := e.Add(ctx, entry); return err })
	row := m.row("badger", cfg.Entries, lat)
	if cerr := e.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("append: badger: %w", err)
	}
	row.Extra = map[string]float64{"disk bytes/entry": float64(DirSize(dir)) / float64(cfg.Entries)}
	rep.Rows = append(rep.Rows, row)
	os.RemoveAll(dir)

	// Tessera POSIX
	tdir, err := os.MkdirTemp(cfg.Dir, "vmledger-bench-tessera-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tdir)
	drv, err := posix.New(ctx, posix.Config{Path: tdir})
	if err != nil {
		return nil, err
	}
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	app, shutdown, _, err := tessera.NewAppender(tctx, drv, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(uint(cfg.BatchMaxSize), cfg.BatchMaxAge).
		WithPushback(uint(max(4096, 2*cfg.Writers))).
		WithCheckpointInterval(time.Second))
	if err != nil {
		return nil, fmt.Errorf("append: tessera: %w", err)
	}
	m = startMeter()
	lat, err = appendLoad(cfg, func(entry []byte) error {
		_, err := app.Add(tctx, tessera.NewEntry(entry))()
		return err
	})
	row = m.row("tessera-posix", cfg.Entries, lat)
	if serr := shutdown(ctx); err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("append: tessera: %w", err)
	}
	row.Extra = map[string]float64{"disk bytes/entry": float64(DirSize(tdir)) / float64(cfg.Entries)}
	rep.Rows = append(rep.Rows, row)

	if cfg.MySQLDSN != "" {
		te, err := tesseralog.Open(ctx, tesseralog.Config{DSN: cfg.MySQLDSN, Signer: signer, BatchMaxSize: uint(cfg.BatchMaxSize), BatchMaxAge: cfg.BatchMaxAge})
		if err != nil {
			return nil, fmt.Errorf("append: tesseralog: %w", err)
		}
		m = startMeter()
		lat, err = appendLoad(cfg, func(entry []byte) error { _, err := te.Add(ctx, entry); return err })
		row = m.row("tessera-mysql (log engine)", cfg.Entries, lat)
		if cerr := te.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("append: tesseralog: %w", err)
		}
		rep.Rows = append(rep.Rows, row)
		rep.Notes = append(rep.Notes, "tessera-mysql: log/tesseralog on MySQL/MariaDB; Add returns once a published checkpoint covers the entry (Tessera publishes at most once a second, in practice every other second), so its rate is about writers ÷ 2 s until the database saturates")
	}

	rep.Comparisons = append(rep.Comparisons, atLeast("badger/tessera entries/s", rep.Rows[0].OpsPerSec/rep.Rows[1].OpsPerSec, 3, "%.0f"))
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("%d entries of %d random bytes, %d writers, batches of at most %d entries (Tessera: or %s old)", cfg.Entries, cfg.Size, cfg.Writers, cfg.BatchMaxSize, cfg.BatchMaxAge),
		"badger: Add returns once its batch is fsynced (one badger commit with SyncWrites) AND a checkpoint covering it is signed",
		"tessera-posix: Add's future returns once its batch is sequenced and integrated (entry bundle and tiles written and fsynced, with their directories); its checkpoint is published later (every 1 s) and not waited for, which favours Tessera")
	return rep, nil
}

// quietTessera keeps Tessera's klog lines out of the report.
func quietTessera() {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
}

// appendLoad calls add for cfg.Entries distinct random entries from
// cfg.Writers goroutines and returns each call's latency.
func appendLoad(cfg AppendConfig, add func([]byte) error) ([]time.Duration, error) {
	var next atomic.Int64
	return collect(cfg.Writers, func(int) ([]time.Duration, error) {
		var mine []time.Duration
		entry := make([]byte, cfg.Size)
		for next.Add(1) <= int64(cfg.Entries) {
			rand.Read(entry) // incompressible and distinct, for an honest disk figure
			t0 := time.Now()
			if err := add(entry); err != nil {
				return mine, err
			}
			mine = append(mine, time.Since(t0))
		}
		return mine, nil
	})
}

// DirSize returns the disk space the regular files under dir take: the
// blocks allocated where the platform says (badger preallocates and leaves
// sparse files), the apparent size otherwise.
func DirSize(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += fi.Size()
		}
		return nil
	})
	return total
}
