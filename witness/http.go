package witness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns the witness's HTTP API (see the package documentation).
func (w *Witness) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", w.serveAddCheckpoint)
	mux.HandleFunc("GET /{id}/checkpoint", w.serveCheckpoint)
	mux.HandleFunc("GET /v1/evidence", w.serveEvidence)
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Header().Set("Cache-Control", "no-store")
		if err := w.store.Health(); err != nil {
			rw.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(rw, err.Error()+"\n")
			return
		}
		io.WriteString(rw, "ok\n")
	})
	return mux
}

func (w *Witness) serveAddCheckpoint(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxBodySize))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		w.reply(rw, http.StatusRequestEntityTooLarge, "body too large\n")
		return
	case err != nil:
		w.reply(rw, http.StatusBadRequest, "reading body failed\n")
		return
	}
	// The body is read: the decision is local and quick, so it is not
	// abandoned when the request's context ends. A client that half-closes
	// its connection after sending (shutdown(SHUT_WR)) cancels that
	// context in net/http while it still waits for the answer, and must
	// get the real one, not a 500.
	line, err := w.AddCheckpoint(context.WithoutCancel(r.Context()), body)

	// The one place where decisions become status codes.
	var parseErr *ParseError
	var conflict *ConflictError
	var limited *RateLimitError
	switch {
	case err == nil:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.requests.WithLabelValues("200").Inc()
		rw.WriteHeader(http.StatusOK)
		rw.Write(line)
	case errors.As(err, &parseErr), errors.Is(err, ErrOldTooLarge):
		w.reply(rw, http.StatusBadRequest, err.Error()+"\n")
	case errors.Is(err, ErrUnknownOrigin):
		w.reply(rw, http.StatusNotFound, err.Error()+"\n")
	case errors.As(err, &limited):
		secs := int(math.Ceil(limited.RetryAfter.Seconds()))
		rw.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		w.reply(rw, http.StatusTooManyRequests, err.Error()+"\n")
	case errors.Is(err, ErrNoTrustedSignature):
		w.reply(rw, http.StatusForbidden, err.Error()+"\n")
	case errors.As(err, &conflict):
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		w.requests.WithLabelValues("409").Inc()
		rw.WriteHeader(http.StatusConflict)
		io.WriteString(rw, strconv.FormatUint(conflict.Size, 10)+"\n")
	case errors.Is(err, ErrUnprocessable):
		w.reply(rw, http.StatusUnprocessableEntity, err.Error()+"\n")
	case errors.Is(err, ErrStorageFailed):
		w.logger.ErrorContext(r.Context(), "refusing add-checkpoint: storage failed; restart the witness once its data directory is back", "err", err)
		w.reply(rw, http.StatusServiceUnavailable, err.Error()+"\n")
	case errors.Is(err, ErrStorageFull):
		w.logger.ErrorContext(r.Context(), "refusing add-checkpoint: disk nearly full", "err", err)
		rw.Header().Set("Retry-After", "5")
		w.reply(rw, http.StatusServiceUnavailable, err.Error()+"\n")
	default:
		w.logger.ErrorContext(r.Context(), "add-checkpoint failed", "err", err)
		w.reply(rw, http.StatusInternalServerError, "internal error\n")
	}
}

func (w *Witness) reply(rw http.ResponseWriter, code int, msg string) {
	w.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.WriteHeader(code)
	io.WriteString(rw, msg)
}

// serveCheckpoint is the monitoring endpoint: GET /<hex SHA-256(origin)>/checkpoint.
func (w *Witness) serveCheckpoint(rw http.ResponseWriter, r *http.Request) {
	origin, ok := w.byID[r.PathValue("id")]
	if !ok {
		http.Error(rw, "unknown origin", http.StatusNotFound)
		return
	}
	var limited *RateLimitError
	if err := w.readLimiter.allow(origin, clientKey(r)); errors.As(err, &limited) {
		rw.Header().Set("Retry-After", strconv.Itoa(max(int(math.Ceil(limited.RetryAfter.Seconds())), 1)))
		http.Error(rw, err.Error(), http.StatusTooManyRequests)
		return
	}
	n, err := w.Latest(r.Context(), origin)
	if errors.Is(err, ErrStorageFailed) {
		http.Error(rw, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		w.logger.ErrorContext(r.Context(), "reading state", "origin", origin, "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	if n == nil {
		http.Error(rw, "no checkpoint cosigned for this origin yet", http.StatusNotFound)
		return
	}
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-cache")
	rw.Write(n)
}

func (w *Witness) serveEvidence(rw http.ResponseWriter, r *http.Request) {
	ev, err := w.Evidence(r.Context())
	if errors.Is(err, ErrStorageFailed) {
		http.Error(rw, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		w.logger.ErrorContext(r.Context(), "reading evidence", "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	if ev == nil {
		ev = []*Evidence{}
	}
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(ev)
}

// OriginID is the monitoring path component of an origin: lowercase hex
// SHA-256 of the origin.
func OriginID(origin string) string {
	sum := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(sum[:])
}

// clientKey names the client of r for the monitoring endpoint's budget: its
// IP address, or the /64 prefix of an IPv6 address (one host's share).
func clientKey(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}
