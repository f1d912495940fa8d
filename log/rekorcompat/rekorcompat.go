// Package rekorcompat serves a read-only subset of the Rekor v1 REST API
// over a vmledger log, so that Sigstore's own code — the generated client in
// github.com/sigstore/rekor/pkg/generated/client and the verifier in
// github.com/sigstore/rekor/pkg/verify — can read our log and verify our
// entries with nothing but the log's public key.
//
// # Endpoints
//
//	GET /api/v1/log                                    models.LogInfo
//	GET /api/v1/log/proof?firstSize=&lastSize=[&treeID=] models.ConsistencyProof
//	GET /api/v1/log/entries?logIndex=                  models.LogEntry
//	GET /api/v1/log/publicKey[?treeID=]                PEM public key
//
// The JSON has the shapes of github.com/sigstore/rekor/pkg/generated/models
// (v1.5.4) field for field; the tests decode every response into those types
// and run their Validate, and the package example shows one answer of each
// endpoint. The first three answer from the latest published checkpoint
// (Config.Published), never from a tree the world has not seen. The public
// key is the log key as Rekor serves its own: a PEM "PUBLIC KEY" block of
// the DER SubjectPublicKeyInfo (Content-Type application/x-pem-file).
//
// Verifying an entry with Sigstore's code and the log's public key, as
// cosign does with Rekor's:
//
//	pub, _ := cryptoutils.UnmarshalPEMToPublicKey(pem)     // GET /api/v1/log/publicKey
//	v, _ := signature.LoadVerifier(pub, crypto.SHA256)
//	err := verify.VerifyLogEntry(ctx, &entry, v)          // inclusion, checkpoint, SET
//	sth, err := verify.VerifyCurrentCheckpoint(ctx, rekorClient, v, trustedSTH)
//
// # Signed entry timestamp and integrated time
//
// integratedTime is the time the log signed its first checkpoint that
// includes the entry (engine.IntegrationTimes), in Unix seconds rounded
// down: the engine stores that time with every checkpoint, in the same
// transaction (badgerlog) or history row (tesseralog), so it is recorded
// once and every read serves the same value. It is at or after the entry
// was sequenced and before the log acknowledged the submission; it is not
// the statement's own time, which is the co-processor's claim. Under
// Tessera it can be up to the checkpoint interval (about 2 s) after the
// entry was sequenced, because Tessera signs checkpoints at most once per
// interval.
//
// The signedEntryTimestamp is what Rekor's api.signEntry makes: the log
// key's Ed25519 signature over the RFC 8785 canonical JSON of
//
//	{"body":…,"integratedTime":…,"logID":…,"logIndex":…}
//
// and pkg/verify.VerifySignedEntryTimestamp checks exactly that. Ed25519 is
// deterministic, so the SET is the same on every read too. An engine
// without recorded times (one that does not implement
// engine.IntegrationTimes, or a badger log whose checkpoint predates
// them) gets integratedTime 0 and no SET for those entries; VerifyLogEntry
// then fails with "signature missing", never with a made-up time.
//
// # One key, two key-ID conventions
//
// Rekor's checkpoint verifier (pkg/util SignedNote.Verify) requires every
// signature line of a note to carry the key hint SHA-256(DER SPKI of the
// verifying key)[:4] and fails the whole note on any other line. Our
// published checkpoint carries the C2SP Ed25519 signature, whose key ID is
// SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4], and witness cosignatures.
// So the "signedTreeHead" and "checkpoint" fields served here are the same
// checkpoint text, byte for byte, followed by exactly one signature line,
// made with the same Ed25519 log key over the same text, under Rekor's key
// hint:
//
//	example.com/ledger
//	8
//	vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=
//
//	— example.com/ledger <base64(hint ‖ 64-byte Ed25519 signature)>
//
// Ed25519 is deterministic, so the 64 signature bytes are exactly those of
// the C2SP signature line; only the 4-byte prefix differs. The handler
// re-signs a checkpoint only after it has verified the log's C2SP signature
// on it with the same key: it never signs a size or root the log did not
// sign. Rekor parses our C2SP text unchanged (origin, size, base64 root, no
// extension lines; util.Checkpoint treats further lines as optional
// "other content", which we do not emit). Rekor's own origin line reads
// "<hostname> - <tree ID>"; ours is the log's origin, since the text must be
// the one the log signed, and the signature line is named after the origin
// where Rekor puts its hostname. Rekor's verifier looks at neither.
//
// # What differs from Rekor
//
//   - body is base64 of the exact log entry: our canonical DSSE envelope
//     (an in-toto Statement inside), not a Rekor "kind" document such as
//     dsse/v0.0.1 or intoto/v0.0.2. pkg/verify.VerifyInclusion hashes body
//     as given, so inclusion verifies. Clients that decode body as a Rekor
//     kind (models.UnmarshalProposedEntry, pkg/types.UnmarshalEntry, as
//     tools do that compare an entry with an artifact) fail: it has no
//     "kind". Read body as a DSSE envelope instead.
//   - integratedTime is when the log signed its first checkpoint holding
//     the entry, not when Trillian integrated the leaf (see above); Rekor
//     has no notion of a witnessed publication, and neither the time nor
//     the SET says whether witnesses cosigned. A SET is a promise of
//     inclusion; here it is issued only for entries already in a published
//     checkpoint, and the inclusion proof is always served with it.
//   - The SET and the checkpoints are signed with the same Ed25519 log key,
//     as in Rekor; there is no separate timestamping key.
//   - The consistency proof's rootHash is the root at lastSize; Rekor (from
//     Trillian) returns the root of its latest tree. pkg/verify ignores it.
//   - The map key of a log entry is Rekor's entry ID, the 16-hex-digit tree
//     ID followed by the hex leaf hash. The tree ID is Config.TreeID, by
//     default derived from the log key (DefaultTreeID); there is one shard,
//     so inactiveShards is always empty.
//   - A log of size 0 answers /api/v1/log with treeSize 0, which
//     models.LogInfo.Validate refuses (minimum 1); Rekor never has an empty
//     tree. The generated client does not validate responses.
//   - Parameters are parsed strictly: canonical decimals only (Rekor's
//     strconv.ParseInt also takes "007" and "+7") and each at most once
//     (Rekor takes the last).
//
// # Status codes (as Rekor's go-openapi server answers)
//
//	422 a parameter that is missing, repeated, not a canonical decimal,
//	    negative or below its minimum (logIndex ≥ 0, sizes ≥ 1), or a
//	    treeID that is not all digits
//	400 firstSize > lastSize, lastSize beyond the published tree, another
//	    treeID
//	404 a logIndex the published tree does not contain yet
//	503 nothing published yet (a new log waiting for its witnesses), the
//	    engine is closed, or the request was cancelled (Retry-After: 1)
//	500 anything else, logged; e.g. a published checkpoint that the
//	    configured key did not sign
//
// Error bodies are models.Error JSON ({"code": …, "message": …}), so the
// generated client can read them; this is why the handlers do not use
// server.Error, which answers in plain text.
package rekorcompat

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/tlog"
)

// Config configures a Handler.
type Config struct {
	// Engine is the log. Required.
	Engine engine.Engine
	// Published returns the latest published signed checkpoint (with any
	// cosignatures), as served at /checkpoint. Required: pass the
	// publisher's Latest, or Engine.Checkpoint for a log without witnesses.
	Published func(ctx context.Context) ([]byte, error)
	// Signer is the log's Ed25519 private key, the one that signs its C2SP
	// checkpoints (see ParseNoteKey); its Public must be an
	// ed25519.PublicKey. Required.
	Signer crypto.Signer
	// Origin is the log's origin, the name of its note key. Required.
	Origin string
	// TreeID is the Rekor tree ID served as treeID and in entry IDs; 0
	// means DefaultTreeID of the key. It must not be negative.
	TreeID int64
	// Logger receives server-side errors; nil discards them.
	Logger *slog.Logger
}

// Handler serves the Rekor-compatible endpoints. Create it with [New] and
// register it on a server with [Handler.Register]. It is safe for
// concurrent use.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	verifier note.Verifier // the log's C2SP verifier, same key as cfg.Signer
	logID    string        // hex SHA-256(DER SPKI)
	pubPEM   string        // PEM of the DER SPKI
	hint     [4]byte       // Rekor key hint, SHA-256(DER SPKI)[:4]
	treeID   string        // decimal
	treeIDHx string        // 16 hex digits, the entry ID prefix

	mu   sync.Mutex
	last *head // the head built from the last published checkpoint seen
}

// head is a published checkpoint, verified, with its Rekor signed note.
type head struct {
	published []byte // as Published returned it
	cp        tlog.Checkpoint
	sth       string // the checkpoint text with one Rekor-style signature
}

// New returns a handler for c.
func New(c Config) (*Handler, error) {
	switch {
	case c.Engine == nil:
		return nil, errors.New("rekorcompat: no engine")
	case c.Published == nil:
		return nil, errors.New("rekorcompat: no source of published checkpoints")
	case c.Signer == nil:
		return nil, errors.New("rekorcompat: no signer")
	case c.TreeID < 0:
		return nil, fmt.Errorf("rekorcompat: negative tree ID %d", c.TreeID)
	}
	if err := tlog.CheckKeyName(c.Origin); err != nil {
		return nil, fmt.Errorf("rekorcompat: origin: %w", err)
	}
	pub, ok := c.Signer.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("rekorcompat: the log key is %T, want an Ed25519 key", c.Signer.Public())
	}
	vkey, err := note.NewEd25519VerifierKey(c.Origin, pub)
	if err != nil {
		return nil, fmt.Errorf("rekorcompat: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("rekorcompat: %w", err)
	}
	logID, err := LogID(pub)
	if err != nil {
		return nil, fmt.Errorf("rekorcompat: %w", err)
	}
	hint, err := KeyHint(pub)
	if err != nil {
		return nil, fmt.Errorf("rekorcompat: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("rekorcompat: %w", err)
	}
	if c.TreeID == 0 {
		if c.TreeID, err = DefaultTreeID(pub); err != nil {
			return nil, fmt.Errorf("rekorcompat: %w", err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		cfg:      c,
		log:      c.Logger,
		verifier: v,
		logID:    logID,
		pubPEM:   string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		treeID:   strconv.FormatInt(c.TreeID, 10),
		treeIDHx: fmt.Sprintf("%016x", c.TreeID),
	}
	binary.BigEndian.PutUint32(h.hint[:], hint)
	return h, nil
}

// Register adds the endpoints to srv, with its metrics and request logs.
func (h *Handler) Register(srv *server.Server) {
	srv.Handle("GET /api/v1/log", http.HandlerFunc(h.getLogInfo))
	srv.Handle("GET /api/v1/log/proof", http.HandlerFunc(h.getLogProof))
	srv.Handle("GET /api/v1/log/entries", http.HandlerFunc(h.getLogEntry))
	srv.Handle("GET /api/v1/log/publicKey", http.HandlerFunc(h.getPublicKey))
}

// PublicKeyPEM returns the log key as /api/v1/log/publicKey serves it: a
// PEM "PUBLIC KEY" block of its DER SubjectPublicKeyInfo.
func (h *Handler) PublicKeyPEM() string { return h.pubPEM }

// LogID returns the log ID served in entries: hex SHA-256 of the log key's
// DER SubjectPublicKeyInfo.
func (h *Handler) LogID() string { return h.logID }

// TreeID returns the tree ID served, in decimal.
func (h *Handler) TreeID() string { return h.treeID }

// Errors that decide a status code; see writeError.
var (
	// errInvalidParam: a parameter fails the API schema (Rekor's
	// go-openapi server answers those with 422).
	errInvalidParam = errors.New("invalid parameter")
	// errBadRequest: well-formed parameters that ask the impossible.
	errBadRequest = errors.New("bad request")
	// errNotFound: the entry is not in the published tree.
	errNotFound = errors.New("not found")
	// errUnavailable: nothing is published yet (a log that just started
	// and waits for its witnesses); retry later.
	errUnavailable = errors.New("unavailable")
)

// current returns the head for the latest published checkpoint. It
// verifies the log's C2SP signature with the configured key before it
// signs the text under Rekor's convention, and keeps the last result.
func (h *Handler) current(ctx context.Context) (*head, error) {
	published, err := h.cfg.Published(ctx)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, fmt.Errorf("%w: no checkpoint published yet: %w", errUnavailable, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the published checkpoint: %w", err)
	}
	h.mu.Lock()
	last := h.last
	h.mu.Unlock()
	if last != nil && bytes.Equal(last.published, published) {
		return last, nil
	}
	cp, n, err := tlog.OpenCheckpoint(published, h.verifier)
	if err != nil {
		return nil, fmt.Errorf("published checkpoint is not signed by the configured log key: %w", err)
	}
	sth, err := h.signRekor(n.Text)
	if err != nil {
		return nil, err
	}
	hd := &head{published: bytes.Clone(published), cp: cp, sth: sth}
	h.mu.Lock()
	if h.last == nil || h.last.cp.Size <= cp.Size {
		h.last = hd
	}
	h.mu.Unlock()
	return hd, nil
}

// signRekor returns text as a signed note with one signature line in
// Rekor's convention: the key name, then base64 of the 4-byte SPKI key
// hint followed by the Ed25519 signature of text.
func (h *Handler) signRekor(text string) (string, error) {
	sig, err := h.cfg.Signer.Sign(rand.Reader, []byte(text), crypto.Hash(0))
	if err != nil {
		return "", fmt.Errorf("signing the checkpoint for Rekor clients: %w", err)
	}
	b := append(h.hint[:len(h.hint):len(h.hint)], sig...)
	return text + "\n\u2014 " + h.cfg.Origin + " " + base64.StdEncoding.EncodeToString(b) + "\n", nil
}

// LogInfo is models.LogInfo.
type LogInfo struct {
	InactiveShards []struct{} `json:"inactiveShards"`
	RootHash       string     `json:"rootHash"`
	SignedTreeHead string     `json:"signedTreeHead"`
	TreeID         string     `json:"treeID"`
	TreeSize       uint64     `json:"treeSize"`
}

// ConsistencyProof is models.ConsistencyProof.
type ConsistencyProof struct {
	Hashes   []string `json:"hashes"`
	RootHash string   `json:"rootHash"`
}

// LogEntry is models.LogEntry: one entry by its entry ID.
type LogEntry map[string]LogEntryAnon

// LogEntryAnon is models.LogEntryAnon without the attestation, which this
// log does not provide.
type LogEntryAnon struct {
	Body           string       `json:"body"`
	IntegratedTime int64        `json:"integratedTime"`
	LogID          string       `json:"logID"`
	LogIndex       uint64       `json:"logIndex"`
	Verification   Verification `json:"verification"`
}

// Verification is models.LogEntryAnonVerification.
type Verification struct {
	InclusionProof InclusionProof `json:"inclusionProof"`
	// SignedEntryTimestamp is the SET, absent when the integration time is
	// unknown.
	SignedEntryTimestamp []byte `json:"signedEntryTimestamp,omitempty"`
}

// InclusionProof is models.InclusionProof.
type InclusionProof struct {
	Checkpoint string   `json:"checkpoint"`
	Hashes     []string `json:"hashes"`
	LogIndex   uint64   `json:"logIndex"`
	RootHash   string   `json:"rootHash"`
	TreeSize   uint64   `json:"treeSize"`
}

func hexHashes(hs [][]byte) []string {
	out := make([]string, len(hs)) // never nil: "hashes" is required
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}

// processLogInfo answers GET /api/v1/log.
func (h *Handler) processLogInfo(ctx context.Context) (*LogInfo, error) {
	hd, err := h.current(ctx)
	if err != nil {
		return nil, err
	}
	return &LogInfo{
		InactiveShards: []struct{}{},
		RootHash:       hex.EncodeToString(hd.cp.Root[:]),
		SignedTreeHead: hd.sth,
		TreeID:         h.treeID,
		TreeSize:       hd.cp.Size,
	}, nil
}

// processLogProof answers GET /api/v1/log/proof: the consistency proof
// from first to last, both at most the published size.
func (h *Handler) processLogProof(ctx context.Context, first, last uint64) (*ConsistencyProof, error) {
	if first > last {
		return nil, fmt.Errorf("%w: firstSize(%d) must not be greater than lastSize(%d)", errBadRequest, first, last)
	}
	hd, err := h.current(ctx)
	if err != nil {
		return nil, err
	}
	if last > hd.cp.Size {
		return nil, fmt.Errorf("%w: the tree size requested(%d) was greater than what is currently observable(%d)", errBadRequest, last, hd.cp.Size)
	}
	r := tlog.NewTileHashReader(last, h.cfg.Engine)
	hashes, err := tlog.ConsistencyProof(ctx, r, first, last)
	if err != nil {
		return nil, err
	}
	root := hd.cp.Root
	if last != hd.cp.Size {
		if root, err = tlog.TreeHash(ctx, r, last); err != nil {
			return nil, err
		}
	}
	return &ConsistencyProof{Hashes: hexHashes(hashes), RootHash: hex.EncodeToString(root[:])}, nil
}

// processLogEntry answers GET /api/v1/log/entries?logIndex=: the entry
// with its inclusion proof in the published tree.
func (h *Handler) processLogEntry(ctx context.Context, index uint64) (LogEntry, error) {
	hd, err := h.current(ctx)
	if err != nil {
		return nil, err
	}
	size := hd.cp.Size
	if index >= size {
		return nil, fmt.Errorf("%w: logIndex %d is not in the log (tree size %d)", errNotFound, index, size)
	}
	t, _ := tlog.TileForSize(0, index/tlog.TileWidth, size)
	b, err := h.cfg.Engine.ReadEntryBundle(ctx, t.Index, t.Width)
	if err != nil {
		return nil, fmt.Errorf("reading entry bundle %s: %w", t.Path(), err)
	}
	entries, err := tlog.ParseBundle(b)
	if err != nil {
		return nil, fmt.Errorf("entry bundle %s: %w", t.Path(), err)
	}
	if len(entries) != t.Count() {
		return nil, fmt.Errorf("entry bundle %s holds %d entries, want %d", t.Path(), len(entries), t.Count())
	}
	entry := entries[index%tlog.TileWidth]
	hashes, err := tlog.InclusionProof(ctx, tlog.NewTileHashReader(size, h.cfg.Engine), index, size)
	if err != nil {
		return nil, err
	}
	leaf := tlog.LeafHash(entry)
	// Serve nothing that would not verify: a mismatch here is a storage
	// fault, and the client would reject the answer anyway.
	if err := tlog.VerifyInclusion(index, size, leaf, hashes, hd.cp.Root); err != nil {
		return nil, fmt.Errorf("entry %d does not verify against the published checkpoint of size %d: %w", index, size, err)
	}
	e := LogEntryAnon{
		Body:     base64.StdEncoding.EncodeToString(entry),
		LogID:    h.logID,
		LogIndex: index,
		Verification: Verification{InclusionProof: InclusionProof{
			Checkpoint: hd.sth,
			Hashes:     hexHashes(hashes),
			LogIndex:   index,
			RootHash:   hex.EncodeToString(hd.cp.Root[:]),
			TreeSize:   size,
		}},
	}
	// The SET: only with a time the engine recorded (see the package doc);
	// without one, integratedTime stays 0 and there is no SET.
	if it, ok := h.cfg.Engine.(engine.IntegrationTimes); ok {
		at, err := it.IntegratedAt(ctx, index)
		switch {
		case errors.Is(err, engine.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("integration time of entry %d: %w", index, err)
		default:
			e.IntegratedTime = at.Unix()
			if e.Verification.SignedEntryTimestamp, err = h.signEntry(&e); err != nil {
				return nil, err
			}
		}
	}
	return LogEntry{h.treeIDHx + hex.EncodeToString(leaf[:]): e}, nil
}

// setPayload is the payload of a signed entry timestamp: Rekor's
// canonical (RFC 8785) JSON of body, integratedTime, logID and logIndex.
// The fields are in canonical order and hold only base64, hex and
// integers below 2^53, so encoding/json writes the canonical form.
type setPayload struct {
	Body           string `json:"body"`
	IntegratedTime int64  `json:"integratedTime"`
	LogID          string `json:"logID"`
	LogIndex       uint64 `json:"logIndex"`
}

// signEntry returns the signed entry timestamp of e: the log key's Ed25519
// signature of the SET payload, as Rekor's api.signEntry makes it.
func (h *Handler) signEntry(e *LogEntryAnon) ([]byte, error) {
	if e.LogIndex >= 1<<53 || e.IntegratedTime < 0 || e.IntegratedTime >= 1<<53 {
		return nil, fmt.Errorf("entry %d: no canonical JSON for integratedTime %d", e.LogIndex, e.IntegratedTime)
	}
	payload, err := json.Marshal(setPayload{Body: e.Body, IntegratedTime: e.IntegratedTime, LogID: e.LogID, LogIndex: e.LogIndex})
	if err != nil {
		return nil, err
	}
	sig, err := h.cfg.Signer.Sign(rand.Reader, payload, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("signing the entry timestamp of entry %d: %w", e.LogIndex, err)
	}
	return sig, nil
}

// queryParam parses the query parameter name as a canonical decimal in
// [min, MaxInt64] (the API's int64). A missing parameter is def if
// required is false.
func queryParam(r *http.Request, name string, required bool, def, min uint64) (uint64, error) {
	vs, ok := r.URL.Query()[name]
	switch {
	case !ok && !required:
		return def, nil
	case !ok:
		return 0, fmt.Errorf("%w: %s in query is required", errInvalidParam, name)
	case len(vs) != 1:
		return 0, fmt.Errorf("%w: %s in query is given %d times", errInvalidParam, name, len(vs))
	}
	if strings.HasPrefix(vs[0], "-") {
		return 0, fmt.Errorf("%w: %s in query should be greater than or equal to %d", errInvalidParam, name, min)
	}
	v, err := tlog.ParseDecimal(vs[0])
	if err != nil || v > math.MaxInt64 {
		return 0, fmt.Errorf("%w: %s in query must be a canonical decimal int64, not %q", errInvalidParam, name, vs[0])
	}
	if v < min {
		return 0, fmt.Errorf("%w: %s in query should be greater than or equal to %d", errInvalidParam, name, min)
	}
	return v, nil
}

// checkTreeID checks the optional treeID parameter of the proof and public
// key endpoints:
// digits only (else 422), and this log's tree (else 400, as Rekor answers
// for a tree it does not serve).
func (h *Handler) checkTreeID(r *http.Request) error {
	vs, ok := r.URL.Query()["treeID"]
	if !ok {
		return nil
	}
	if len(vs) != 1 || vs[0] == "" || strings.Trim(vs[0], "0123456789") != "" {
		return fmt.Errorf("%w: treeID in query should match '^[0-9]+$'", errInvalidParam)
	}
	id, err := strconv.ParseInt(vs[0], 10, 64)
	if err != nil || id != h.cfg.TreeID {
		return fmt.Errorf("%w: invalid tree ID specified: %s (this log serves tree %d)", errBadRequest, vs[0], h.cfg.TreeID)
	}
	return nil
}

func (h *Handler) getLogInfo(w http.ResponseWriter, r *http.Request) {
	info, err := h.processLogInfo(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeJSON(w, info)
}

func (h *Handler) getLogProof(w http.ResponseWriter, r *http.Request) {
	first, err := queryParam(r, "firstSize", false, 1, 1)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	last, err := queryParam(r, "lastSize", true, 0, 1)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.checkTreeID(r); err != nil {
		h.writeError(w, r, err)
		return
	}
	p, err := h.processLogProof(r.Context(), first, last)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeJSON(w, p)
}

func (h *Handler) getLogEntry(w http.ResponseWriter, r *http.Request) {
	index, err := queryParam(r, "logIndex", true, 0, 0)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	e, err := h.processLogEntry(r.Context(), index)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeJSON(w, e)
}

func (h *Handler) getPublicKey(w http.ResponseWriter, r *http.Request) {
	if err := h.checkTreeID(r); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	io.WriteString(w, h.pubPEM)
}

func (h *Handler) writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own response types always marshal
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=1")
	w.Write(append(b, '\n'))
}

// writeError answers err with its status code and a models.Error body: the
// one place where errors become HTTP statuses.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, errInvalidParam):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, errNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errUnavailable), errors.Is(err, engine.ErrClosed), errors.Is(err, engine.ErrPushback),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	msg := err.Error()
	switch {
	case status == http.StatusInternalServerError:
		h.log.Error("rekor-compatible request failed", "method", r.Method, "path", r.URL.Path,
			"query", r.URL.RawQuery, "status", status, "err", err)
		msg = http.StatusText(status) // no internals to the client
	case status >= 500:
		h.log.Warn("rekor-compatible request refused", "method", r.Method, "path", r.URL.Path,
			"query", r.URL.RawQuery, "status", status, "err", err)
	}
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{status, msg})
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
