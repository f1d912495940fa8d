// Package server is the HTTP personality of the vmledger log: the C2SP
// tlog-tiles read API, online proofs, checkpoint history, health and
// metrics, over an [engine.Engine].
//
// # Endpoints
//
//	GET  /checkpoint                      the published checkpoint (text/plain)
//	GET  /tile/<L>/<N>[.p/<W>]            hash tiles (c2sp.org/tlog-tiles)
//	GET  /tile/entries/<N>[.p/<W>]        entry bundles, gzip if accepted
//	GET  /v1/proof/inclusion?index=&size= {"hashes": ["<base64>", …]}
//	GET  /v1/proof/consistency?old=&new=  {"hashes": ["<base64>", …]}
//	GET  /v1/checkpoints/<size>           the checkpoint signed at that size
//	GET  /healthz                         200 "ok" while the engine answers and
//	                                      accepts writes and Config.Health
//	                                      passes; 503 with the reason otherwise
//	GET  /metrics                         Prometheus metrics
//	POST /v1/entries                      raw entry → {"index": N}; only with
//	                                      Config.AllowRawEntries (400 if
//	                                      Config.RefuseRawEntry refuses it)
//
// Tiles, bundles and historical checkpoints never change once they exist,
// so they are served with Cache-Control: public, max-age=31536000,
// immutable; the checkpoint with a short max-age. Whatever does not exist
// yet is a 404. Bad input is a 4xx with a plain-text reason, never a 5xx.
//
// # Extending
//
// Later personalities (admission, search, offline bundles) register more
// handlers on the same mux with [Server.Handle], which gives them the same
// metrics and logging, and map their errors with [Server.Error]. The
// checkpoint served at /checkpoint comes from Config.Published, so a
// witnessing layer can publish only cosigned checkpoints.
package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/tlog"
)

// CheckpointSource returns the signed checkpoint to publish at /checkpoint.
type CheckpointSource func(ctx context.Context) ([]byte, error)

// Config configures a Server.
type Config struct {
	// Engine is the log. Required.
	Engine engine.Engine
	// Logger receives request and error logs; nil discards them.
	Logger *slog.Logger
	// Published is the checkpoint served at /checkpoint; nil serves the
	// engine's latest. A witnessing layer plugs in here to publish only
	// checkpoints with enough cosignatures.
	Published CheckpointSource
	// Health, if set, is checked by /healthz after the engine: an error is
	// answered 503 with its text (the publisher's: checkpoints no longer
	// get the witness policy's cosignatures).
	Health func(ctx context.Context) error
	// AllowRawEntries enables POST /v1/entries, which appends any bytes.
	// For conformance tests and benchmarks only: real writes go through
	// admission.
	AllowRawEntries bool
	// RefuseRawEntry, if set, is asked about each raw entry before it is
	// appended; an error refuses it with 400 and the error's text (`log
	// serve` refuses what admission would read as its own entries).
	RefuseRawEntry func(entry []byte) error
	// Registry receives the server's metrics and is served at /metrics;
	// nil creates a new one. Never the global registry.
	Registry *prometheus.Registry
	// ProofCacheTiles is how many full tiles' interior nodes the proof
	// endpoints keep (16 KiB each); 0 means 1024 (16 MiB), which holds
	// every tile above level 0 of a log of up to 2^26 entries.
	ProofCacheTiles int
}

// Server serves a log over HTTP. Create it with [New].
type Server struct {
	cfg      Config
	tiles    *tlog.TileCache
	log      *slog.Logger
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	added    prometheus.Counter
}

// ErrBadRequest is wrapped by errors about malformed or out-of-range input;
// [Server.Error] answers it with 400.
var ErrBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheCheckpoint = "public, max-age=1"
	// retryAfter is sent with 503 when the engine pushes back.
	retryAfter = "1"
)

// New returns a server for c.
func New(c Config) (*Server, error) {
	if c.Engine == nil {
		return nil, errors.New("server: no engine")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Published == nil {
		c.Published = c.Engine.Checkpoint
	}
	if c.ProofCacheTiles <= 0 {
		c.ProofCacheTiles = 1024
	}
	s := &Server{
		cfg:   c,
		tiles: tlog.NewTileCache(c.ProofCacheTiles),
		log:   c.Logger,
		mux:   http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmledger_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vmledger_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"route"}),
		added: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmledger_log_entries_added_total",
			Help: "Entries appended through this server.",
		}),
	}
	treeSize := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vmledger_log_tree_size",
		Help: "Size of the engine's latest signed checkpoint.",
	}, func() float64 {
		size, err := s.latestSize(context.Background())
		if err != nil {
			return -1
		}
		return float64(size)
	})
	metrics := []prometheus.Collector{s.requests, s.duration, s.added, treeSize}
	if sr, ok := c.Engine.(engine.StatsReporter); ok {
		metrics = append(metrics,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "vmledger_log_batches_total",
				Help: "Batches the engine committed since it was opened (one signed checkpoint each); entries per batch is vmledger_log_batch_entries_total / this.",
			}, func() float64 { return float64(sr.Stats().Batches) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "vmledger_log_batch_entries_total",
				Help: "Entries in the batches the engine committed since it was opened.",
			}, func() float64 { return float64(sr.Stats().Entries) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "vmledger_log_commit_seconds_total",
				Help: "Time the engine spent committing batches (entries, tiles, checkpoint, fsync) since it was opened.",
			}, func() float64 { return sr.Stats().CommitSeconds }))
	}
	for _, m := range metrics {
		if err := c.Registry.Register(m); err != nil {
			return nil, fmt.Errorf("server: registering metrics: %w", err)
		}
	}
	s.Handle("GET /checkpoint", http.HandlerFunc(s.getCheckpoint))
	s.Handle("GET /tile/{path...}", http.HandlerFunc(s.getTile))
	s.Handle("GET /v1/proof/inclusion", http.HandlerFunc(s.getInclusion))
	s.Handle("GET /v1/proof/consistency", http.HandlerFunc(s.getConsistency))
	s.Handle("GET /v1/checkpoints/{size}", http.HandlerFunc(s.getCheckpointAt))
	s.Handle("GET /healthz", http.HandlerFunc(s.getHealth))
	s.Handle("GET /metrics", promhttp.HandlerFor(c.Registry, promhttp.HandlerOpts{Registry: c.Registry}))
	if c.AllowRawEntries {
		s.Handle("POST /v1/entries", http.HandlerFunc(s.postEntry))
	}
	return s, nil
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Registry returns the registry the server's metrics are in.
func (s *Server) Registry() *prometheus.Registry { return s.cfg.Registry }

// Handle registers h for a net/http pattern, with the server's metrics and
// logging (the pattern is the route label).
func (s *Server) Handle(pattern string, h http.Handler) {
	route := pattern
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		s.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		s.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "duration", time.Since(start))
	}))
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Error answers err with its status code: the one place where errors
// become HTTP statuses. Client errors carry their reason as plain text;
// server errors are logged and answered without detail.
func (s *Server) Error(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, tlog.ErrMalformed):
		status = http.StatusBadRequest
	case errors.Is(err, engine.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, engine.ErrEntryTooLarge), errors.Is(err, tlog.ErrEntryTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, engine.ErrPushback), errors.Is(err, engine.ErrClosed), errors.Is(err, engine.ErrFailed):
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", retryAfter)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	}
	msg := err.Error()
	if status >= 500 && r.Context().Err() != nil {
		// The client went away (an agent that gave up waiting): not a
		// server failure.
		s.log.Debug("request abandoned by the client", "method", r.Method, "path", r.URL.Path, "err", err)
	} else if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		if status == http.StatusInternalServerError {
			msg = "internal error"
		}
	}
	h := w.Header()
	h.Del("Content-Encoding")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

func (s *Server) getCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := s.cfg.Published(r.Context())
	if err != nil {
		s.Error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", cacheCheckpoint)
	w.Write(cp)
}

func (s *Server) getCheckpointAt(w http.ResponseWriter, r *http.Request) {
	size, err := tlog.ParseDecimal(r.PathValue("size"))
	if err != nil {
		s.Error(w, r, badRequest("checkpoint size: %v", err))
		return
	}
	cp, err := s.cfg.Engine.CheckpointAt(r.Context(), size)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", cacheImmutable)
	w.Write(cp)
}

func (s *Server) getTile(w http.ResponseWriter, r *http.Request) {
	t, err := tlog.ParseTilePath("tile/" + r.PathValue("path"))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	var b []byte
	if t.Entries {
		b, err = s.cfg.Engine.ReadEntryBundle(r.Context(), t.Index, t.Width)
	} else {
		b, err = s.cfg.Engine.ReadTile(r.Context(), t.Level, t.Index, t.Width)
	}
	if err != nil {
		s.Error(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", cacheImmutable)
	if t.Entries {
		h.Set("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
			zw.Write(b)
			zw.Close()
			h.Set("Content-Encoding", "gzip")
			b = buf.Bytes()
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}

// acceptsGzip reports whether an Accept-Encoding header value allows gzip.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q, ok := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !ok {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}

// latestSize returns the size of the engine's latest checkpoint: the
// bound for proofs.
func (s *Server) latestSize(ctx context.Context) (uint64, error) {
	signed, err := s.cfg.Engine.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return 0, fmt.Errorf("engine checkpoint is not a signed note")
	}
	c, err := tlog.ParseCheckpoint(signed[:i+1])
	if err != nil {
		return 0, fmt.Errorf("engine checkpoint: %w", err)
	}
	return c.Size, nil
}

// queryUint parses a required canonical decimal query parameter.
func queryUint(r *http.Request, name string) (uint64, error) {
	vs, ok := r.URL.Query()[name]
	if !ok || len(vs) != 1 {
		return 0, badRequest("want exactly one %s parameter", name)
	}
	v, err := tlog.ParseDecimal(vs[0])
	if err != nil {
		return 0, badRequest("%s: %v", name, err)
	}
	return v, nil
}

type proofResponse struct {
	Hashes [][]byte `json:"hashes"`
}

// processInclusion returns the inclusion proof of index in the tree of
// the given size.
func (s *Server) processInclusion(ctx context.Context, index, size uint64) ([][]byte, error) {
	latest, err := s.latestSize(ctx)
	if err != nil {
		return nil, err
	}
	if size > latest {
		return nil, badRequest("size %d is beyond the tree size %d", size, latest)
	}
	if index >= size {
		return nil, badRequest("index %d is not below size %d", index, size)
	}
	return tlog.InclusionProof(ctx, s.hashReader(size), index, size)
}

// processConsistency returns the consistency proof from old to new.
func (s *Server) processConsistency(ctx context.Context, old, new uint64) ([][]byte, error) {
	latest, err := s.latestSize(ctx)
	if err != nil {
		return nil, err
	}
	if new > latest {
		return nil, badRequest("new %d is beyond the tree size %d", new, latest)
	}
	if old > new {
		return nil, badRequest("old %d is greater than new %d", old, new)
	}
	return tlog.ConsistencyProof(ctx, s.hashReader(new), old, new)
}

// hashReader reads the tree of the given size from the engine's tiles,
// through the server's cache of full tiles.
func (s *Server) hashReader(size uint64) tlog.HashReader {
	return tlog.NewTileHashReader(size, s.cfg.Engine).WithCache(s.tiles)
}

func (s *Server) getInclusion(w http.ResponseWriter, r *http.Request) {
	index, err := queryUint(r, "index")
	if err == nil {
		var size uint64
		if size, err = queryUint(r, "size"); err == nil {
			var hashes [][]byte
			if hashes, err = s.processInclusion(r.Context(), index, size); err == nil {
				s.writeJSON(w, proofResponse{Hashes: hashes})
				return
			}
		}
	}
	s.Error(w, r, err)
}

func (s *Server) getConsistency(w http.ResponseWriter, r *http.Request) {
	old, err := queryUint(r, "old")
	if err == nil {
		var new uint64
		if new, err = queryUint(r, "new"); err == nil {
			var hashes [][]byte
			if hashes, err = s.processConsistency(r.Context(), old, new); err == nil {
				s.writeJSON(w, proofResponse{Hashes: hashes})
				return
			}
		}
	}
	s.Error(w, r, err)
}

func (s *Server) writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own response types always marshal
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", cacheCheckpoint)
	w.Write(append(b, '\n'))
}

func (s *Server) getHealth(w http.ResponseWriter, r *http.Request) {
	if h, ok := s.cfg.Engine.(engine.Health); ok {
		if err := h.Health(); err != nil {
			s.Error(w, r, err)
			return
		}
	}
	if _, err := s.latestSize(r.Context()); err != nil {
		s.Error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.cfg.Health != nil {
		if err := s.cfg.Health(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
	}
	io.WriteString(w, "ok\n")
}

func (s *Server) postEntry(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, tlog.MaxEntrySize))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		s.Error(w, r, fmt.Errorf("entry above %d bytes: %w", tlog.MaxEntrySize, engine.ErrEntryTooLarge))
		return
	}
	if err != nil {
		s.Error(w, r, badRequest("reading the entry: %v", err))
		return
	}
	if s.cfg.RefuseRawEntry != nil {
		if err := s.cfg.RefuseRawEntry(body); err != nil {
			s.Error(w, r, badRequest("%v", err))
			return
		}
	}
	index, err := s.cfg.Engine.Add(r.Context(), body)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	s.added.Inc()
	s.writeJSON(w, struct {
		Index uint64 `json:"index"`
	}{index})
}
