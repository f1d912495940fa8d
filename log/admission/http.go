package admission

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/evidence"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/tlog"
)

// Limits of the read endpoints.
const (
	// DefaultLimit is the page size of the search endpoints.
	DefaultLimit = 100
	// MaxLimit is the largest ?limit= they accept.
	MaxLimit = 1000
	// maxAdminBody bounds an enrolment request.
	maxAdminBody = 64 << 10
)

// Register adds the service's routes to srv, which gives them its metrics
// and request logs.
func (s *Service) Register(srv *server.Server) {
	srv.Handle("POST /v1/attestations", http.HandlerFunc(s.postAttestation))
	srv.Handle("GET /v1/attestations", http.HandlerFunc(s.getAttestations))
	srv.Handle("GET /v1/vms/{id}/attestations", http.HandlerFunc(s.getVMAttestations))
	srv.Handle("GET /v1/vms/{id}/bundle", http.HandlerFunc(s.getVMBundle))
	srv.Handle("GET /v1/bundles/{index}", http.HandlerFunc(s.getBundle))
	srv.Handle("GET /v1/coprocessors", http.HandlerFunc(s.getCoprocessors))
	srv.Handle("POST /v1/coprocessors", http.HandlerFunc(s.postCoprocessor))
	srv.Handle("DELETE /v1/coprocessors/{keyid}", http.HandlerFunc(s.deleteCoprocessor))
}

// errorBody is the JSON body of every refusal.
type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// writeError answers err with its status and reason (see status).
func (s *Service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, reason := status(err)
	msg := err.Error()
	if code >= 500 && r.Context().Err() != nil {
		// The client went away (an agent that gave up waiting): not a
		// server failure.
		s.log.Debug("request abandoned by the client", "method", r.Method, "path", r.URL.Path, "err", err)
	} else if code >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
		if code == http.StatusInternalServerError {
			msg = "internal error"
		}
	}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, code, errorBody{Error: msg, Reason: reason})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // our own response types always encode
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// AdmitResponse is the answer to POST /v1/attestations.
type AdmitResponse struct {
	Index uint64 `json:"index"`
	// Bundle is the offline bundle (log/bundle JSON), with ?wait=1 only.
	Bundle json.RawMessage `json:"bundle,omitempty"`
}

func (s *Service) postAttestation(w http.ResponseWriter, r *http.Request) {
	wait := false
	switch v, ok := r.URL.Query()["wait"]; {
	case !ok:
	case len(v) == 1 && v[0] == "1":
		wait = true
	case len(v) == 1 && v[0] == "0":
	default:
		s.writeError(w, r, fmt.Errorf("%w: wait must be 0 or 1", ErrBadRequest))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, coproc.MaxEnvelopeSize+1))
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%w: reading the body: %v", ErrMalformed, err))
		return
	}
	if len(body) > coproc.MaxEnvelopeSize {
		s.writeError(w, r, fmt.Errorf("%w: the envelope is above %d bytes", ErrTooLarge, coproc.MaxEnvelopeSize))
		return
	}
	index, dup, err := s.Admit(r.Context(), body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusAccepted
	if dup {
		code = http.StatusOK
	}
	resp := AdmitResponse{Index: index}
	if wait {
		signed, err := s.cfg.Publisher.Wait(r.Context(), index+1)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if resp.Bundle, err = s.bundleAt(r.Context(), index, body, signed); err != nil {
			s.writeError(w, r, err)
			return
		}
		if !dup {
			code = http.StatusCreated
		}
	}
	writeJSON(w, code, resp)
}

// SearchResponse is the answer of the search endpoints.
type SearchResponse struct {
	Attestations []Attestation `json:"attestations"`
	// NextAfter, when present, is the ?after= value of the next page.
	NextAfter *uint64 `json:"next_after,omitempty"`
}

// page parses ?after= and ?limit=.
func page(r *http.Request) (after *uint64, limit int, err error) {
	q := r.URL.Query()
	limit = DefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := tlog.ParseDecimal(v)
		if err != nil || n == 0 || n > MaxLimit {
			return nil, 0, fmt.Errorf("%w: limit must be 1..%d", ErrBadRequest, MaxLimit)
		}
		limit = int(n)
	}
	if v := q.Get("after"); v != "" {
		n, err := tlog.ParseDecimal(v)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: after: %v", ErrBadRequest, err)
		}
		after = &n
	}
	return after, limit, nil
}

func (s *Service) search(w http.ResponseWriter, r *http.Request, prefix []byte) {
	after, limit, err := page(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list, err := s.store.list(prefix, after, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := SearchResponse{Attestations: list}
	if len(list) == limit {
		resp.NextAfter = &list[len(list)-1].Index
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Service) getAttestations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	root, key := q.Get("root"), q.Get("key")
	switch {
	case (root == "") == (key == ""):
		s.writeError(w, r, fmt.Errorf("%w: give exactly one of root=<hex config root> and key=<keyid>", ErrBadRequest))
	case root != "":
		raw, err := hex.DecodeString(root)
		if err != nil || len(raw) != 32 || hex.EncodeToString(raw) != root {
			s.writeError(w, r, fmt.Errorf("%w: root must be 64 lowercase hex digits", ErrBadRequest))
			return
		}
		s.search(w, r, rootPrefix([32]byte(raw)))
	default:
		if !isKeyID(key) {
			s.writeError(w, r, fmt.Errorf("%w: key must be a keyid (64 lowercase hex digits)", ErrBadRequest))
			return
		}
		s.search(w, r, copPrefix(key))
	}
}

// vmID returns the {id} path value, checked.
func vmID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if id == "" || checkName(id) != nil {
		return "", fmt.Errorf("%w: VM id %q", ErrBadRequest, id)
	}
	return id, nil
}

func (s *Service) getVMAttestations(w http.ResponseWriter, r *http.Request) {
	id, err := vmID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.search(w, r, vmPrefix(id))
}

func (s *Service) getVMBundle(w http.ResponseWriter, r *http.Request) {
	id, err := vmID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	size, signed, err := s.publishedSize(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a, found, err := s.store.latest(vmPrefix(id), size)
	if err == nil && !found {
		err = fmt.Errorf("no published attestation for VM %q: %w", id, engine.ErrNotFound)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeBundle(w, r, a.Index, signed)
}

func (s *Service) getBundle(w http.ResponseWriter, r *http.Request) {
	index, err := tlog.ParseDecimal(r.PathValue("index"))
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%w: index: %v", ErrBadRequest, err))
		return
	}
	_, signed, err := s.publishedSize(r.Context())
	if err == nil && signed == nil {
		err = fmt.Errorf("no checkpoint published yet: %w", engine.ErrNotFound)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeBundle(w, r, index, signed)
}

func (s *Service) writeBundle(w http.ResponseWriter, r *http.Request, index uint64, signed []byte) {
	b, err := s.bundleAt(r.Context(), index, nil, signed)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}

// CoprocessorsResponse is the answer to GET /v1/coprocessors.
type CoprocessorsResponse struct {
	Coprocessors []Key `json:"coprocessors"`
}

func (s *Service) getCoprocessors(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, CoprocessorsResponse{Coprocessors: s.Keys()})
}

// EnrolRequest is the body of POST /v1/coprocessors.
type EnrolRequest struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"` // PEM "PUBLIC KEY" block
}

func (s *Service) postCoprocessor(w http.ResponseWriter, r *http.Request) {
	if err := s.checkToken(r.Header.Get("Authorization")); err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%w: reading the body: %v", ErrMalformed, err))
		return
	}
	if len(body) > maxAdminBody {
		s.writeError(w, r, fmt.Errorf("%w: enrolment request above %d bytes", ErrTooLarge, maxAdminBody))
		return
	}
	var req EnrolRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		s.writeError(w, r, fmt.Errorf("%w: want {\"name\": \"…\", \"public_key\": \"<PEM>\"}", ErrMalformed))
		return
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(req.PublicKey))
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%w: public_key: %v", ErrBadKey, err))
		return
	}
	ident, err := evidence.FindPEM([]byte(req.PublicKey))
	if err != nil {
		s.writeError(w, r, fmt.Errorf("%w: public_key: %v", ErrBadKey, err))
		return
	}
	k, created, err := s.EnrolTPM(r.Context(), pub, req.Name, ident)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, k)
}

func (s *Service) deleteCoprocessor(w http.ResponseWriter, r *http.Request) {
	if err := s.checkToken(r.Header.Get("Authorization")); err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("keyid")
	if !isKeyID(id) {
		s.writeError(w, r, fmt.Errorf("%w: keyid must be 64 lowercase hex digits", ErrBadRequest))
		return
	}
	k, _, err := s.Revoke(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}
