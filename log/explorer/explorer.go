package explorer

//go:generate go run gen.go

import (
	"context"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/log/tlog"
)

//go:embed assets templates
var files embed.FS

// RecentEntries is how many entries the home page lists.
const RecentEntries = 20

// Config configures an explorer.
type Config struct {
	// LogURL is the log's base URL, e.g. https://log.example (required).
	LogURL string
	// Client reads the log; nil means a client with a 30s timeout. A log
	// serving the explorer itself passes one whose transport is its own
	// handler (see HandlerTransport).
	Client *http.Client
	// Logger receives request failures; nil discards them.
	Logger *slog.Logger
}

// Explorer serves the pages. Its Handler answers only the paths it owns
// (see Routes).
type Explorer struct {
	log  logClient
	tmpl *template.Template
	mux  *http.ServeMux
	logr *slog.Logger
	wasm bool // the WebAssembly verifier is embedded

	growthCache growthCache
}

// Routes are the explorer's net/http patterns, for a server that mounts them
// next to the log's own API.
var Routes = []string{
	"GET /{$}",
	"GET /search",
	"GET /vms/{id}",
	"GET /roots/{root}",
	"GET /keys",
	"GET /keys/{keyid}",
	"GET /attestations/{index}",
	"GET /attestations/{index}/bundle.json",
	"GET /verify",
	"GET /assets/{name}",
}

// New returns an explorer of the log at c.LogURL.
func New(c Config) (*Explorer, error) {
	u, err := url.Parse(c.LogURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("explorer: log URL %q: want http(s)://host[:port][/prefix]", c.LogURL)
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	t, err := template.New("").Funcs(funcs).ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("explorer: templates: %w", err)
	}
	e := &Explorer{
		log:  logClient{base: strings.TrimSuffix(c.LogURL, "/"), hc: c.Client},
		tmpl: t,
		mux:  http.NewServeMux(),
		logr: c.Logger,
	}
	_, err = fs.Stat(files, "assets/verify.wasm")
	e.wasm = err == nil
	handlers := map[string]http.HandlerFunc{
		"GET /{$}":                              e.home,
		"GET /search":                           e.searchPage,
		"GET /vms/{id}":                         e.vmPage,
		"GET /roots/{root}":                     e.rootPage,
		"GET /keys":                             e.keysPage,
		"GET /keys/{keyid}":                     e.keyPage,
		"GET /attestations/{index}":             e.attestationPage,
		"GET /attestations/{index}/bundle.json": e.bundleJSON,
		"GET /verify":                           e.verifyPage,
		"GET /assets/{name}":                    e.asset,
	}
	for _, p := range Routes {
		e.mux.Handle(p, handlers[p])
	}
	return e, nil
}

// Handler serves the explorer's routes.
func (e *Explorer) Handler() http.Handler { return e.mux }

// WASM reports whether the in-browser verifier is built into this binary
// (go generate ./log/explorer).
func (e *Explorer) WASM() bool { return e.wasm }

var funcs = template.FuncMap{
	"short": func(s string) string {
		if len(s) > 16 {
			return s[:16] + "…"
		}
		return s
	},
	"b64":  func(b []byte) string { return base64.StdEncoding.EncodeToString(b) },
	"hash": func(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) },
	"ago": func(t time.Time) string {
		d := time.Since(t).Round(time.Second)
		if d < 0 {
			return "in the future"
		}
		return d.String() + " ago"
	},
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"hexnv":   func(v uint32) string { return fmt.Sprintf("0x%08x", v) },
	"when":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"compact": compact,
	"plural": func(n uint64, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
}

// page is what every template gets.
type page struct {
	Title string
	WASM  bool
	Data  any
}

func (e *Explorer) render(w http.ResponseWriter, code int, name, title string, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// Scripts and styles only from the explorer itself; WebAssembly
	// compilation for the verifier; nothing is sent anywhere else.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(code)
	if err := e.tmpl.ExecuteTemplate(w, name, page{Title: title, WASM: e.wasm, Data: data}); err != nil {
		e.logr.Error("rendering", "template", name, "err", err)
	}
}

// fail renders err as an error page: 404 for what the log does not have,
// 400 for a query it refuses, 502 when the log cannot be read.
func (e *Explorer) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusBadGateway
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, errBadQuery):
		code = http.StatusBadRequest
	case r.Context().Err() != nil:
		return
	default:
		e.logr.Warn("reading the log", "path", r.URL.Path, "err", err)
	}
	e.render(w, code, "error.html", http.StatusText(code), err.Error())
}

func badQuery(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadQuery, fmt.Sprintf(format, args...))
}

// Entry is one log entry as the home page lists it.
type Entry struct {
	Index uint64
	// Kind is "attestation", "enrol", "revoke" or "other".
	Kind       string
	VMID       string
	ConfigRoot string
	KeyID      string
	Counter    uint64
	Name       string
	Time       string
}

// describe decodes an entry without verifying it.
func describe(index uint64, b []byte) Entry {
	en := Entry{Index: index, Kind: "other"}
	if env, err := coproc.ParseEnvelope(b); err == nil {
		if st, err := env.Statement(); err == nil {
			root := st.ConfigRoot()
			en.Kind, en.VMID, en.ConfigRoot = "attestation", st.VMID(), hex.EncodeToString(root[:])
			en.KeyID, en.Counter, en.Time = st.Predicate.Coprocessor.KeyID, st.Predicate.Coprocessor.Counter, st.Predicate.Time
		}
		return en
	}
	var rec struct {
		Type   string `json:"_type"`
		Action string `json:"action"`
		KeyID  string `json:"keyid"`
		Name   string `json:"name"`
		Time   string `json:"time"`
	}
	if json.Unmarshal(b, &rec) == nil && rec.Type == "https://vmledger.dev/log/enrolment/v1" && (rec.Action == "enrol" || rec.Action == "revoke") {
		en.Kind, en.KeyID, en.Name, en.Time = rec.Action, rec.KeyID, rec.Name, rec.Time
	}
	return en
}

type homeData struct {
	Checkpoint *SignedCheckpoint
	Recent     []Entry
	Keys       int
	Revoked    int
	Growth     *Growth
	Chart      ChartGeometry
}

func (e *Explorer) home(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	cp, err := e.log.checkpoint(ctx)
	if errors.Is(err, ErrNotFound) {
		e.render(w, http.StatusOK, "home.html", "Log explorer", homeData{})
		return
	}
	if err != nil {
		e.fail(w, r, err)
		return
	}
	d := homeData{Checkpoint: cp, Growth: e.growth(ctx, cp), Chart: chartGeometry}
	from := uint64(0)
	if cp.Size > RecentEntries {
		from = cp.Size - RecentEntries
	}
	raw, err := e.log.entries(ctx, from, cp.Size, cp.Size)
	if err != nil {
		e.fail(w, r, err)
		return
	}
	for i, b := range raw {
		d.Recent = append(d.Recent, describe(from+uint64(i), b))
	}
	slices.Reverse(d.Recent)
	keys, err := e.log.keys(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		e.fail(w, r, err)
		return
	}
	for _, k := range keys {
		d.Keys++
		if k.Revoked {
			d.Revoked++
		}
	}
	e.render(w, http.StatusOK, "home.html", "Log explorer", d)
}

// listData is a list of attestations (VM, root or key page).
type listData struct {
	Kind, Value string
	Key         *Key
	List        []Attestation
	Next        string // URL of the next page, if any
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// after parses ?after=.
func after(r *http.Request) (*uint64, error) {
	v := r.URL.Query().Get("after")
	if v == "" {
		return nil, nil
	}
	n, err := tlog.ParseDecimal(v)
	if err != nil {
		return nil, badQuery("after must be an entry index")
	}
	return &n, nil
}

func (e *Explorer) list(ctx context.Context, r *http.Request, kind, value string) (*listData, error) {
	a, err := after(r)
	if err != nil {
		return nil, err
	}
	p, err := e.log.search(ctx, kind, value, a)
	if err != nil {
		return nil, err
	}
	d := &listData{Kind: kind, Value: value, List: p.Attestations}
	if p.NextAfter != nil {
		d.Next = fmt.Sprintf("%s?after=%d", r.URL.Path, *p.NextAfter)
	}
	return d, nil
}

func (e *Explorer) vmPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d, err := e.list(r.Context(), r, "vm", id)
	if err != nil {
		e.fail(w, r, err)
		return
	}
	e.render(w, http.StatusOK, "list.html", "VM "+id, d)
}

func (e *Explorer) rootPage(w http.ResponseWriter, r *http.Request) {
	root := r.PathValue("root")
	if !isHex64(root) {
		e.fail(w, r, badQuery("a config root is 64 lowercase hex digits"))
		return
	}
	d, err := e.list(r.Context(), r, "root", root)
	if err != nil {
		e.fail(w, r, err)
		return
	}
	e.render(w, http.StatusOK, "list.html", "Config root "+root[:16]+"…", d)
}

func (e *Explorer) keyPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("keyid")
	if !isHex64(id) {
		e.fail(w, r, badQuery("a co-processor key id is 64 lowercase hex digits"))
		return
	}
	d, err := e.list(r.Context(), r, "key", id)
	if err != nil {
		e.fail(w, r, err)
		return
	}
	keys, err := e.log.keys(r.Context())
	if err != nil && !errors.Is(err, ErrNotFound) {
		e.fail(w, r, err)
		return
	}
	for i := range keys {
		if keys[i].KeyID == id {
			d.Key = &keys[i]
		}
	}
	e.render(w, http.StatusOK, "list.html", "Co-processor key "+id[:16]+"…", d)
}

func (e *Explorer) keysPage(w http.ResponseWriter, r *http.Request) {
	keys, err := e.log.keys(r.Context())
	if err != nil {
		e.fail(w, r, err)
		return
	}
	e.render(w, http.StatusOK, "keys.html", "Co-processor keys", keys)
}

// searchPage dispatches the search form: ?q= with ?kind=auto|vm|root|key|index.
func (e *Explorer) searchPage(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	kind := r.URL.Query().Get("kind")
	if q == "" {
		e.fail(w, r, badQuery("type a VM id, a config root, a co-processor key id or an entry index"))
		return
	}
	switch kind {
	case "", "auto":
		if isHex64(strings.ToLower(q)) {
			q = strings.ToLower(q)
			// A config root and a key id look alike: show both.
			root, err := e.log.search(r.Context(), "root", q, nil)
			if err != nil {
				e.fail(w, r, err)
				return
			}
			key, err := e.log.search(r.Context(), "key", q, nil)
			if err != nil {
				e.fail(w, r, err)
				return
			}
			switch {
			case len(root.Attestations) > 0 && len(key.Attestations) == 0:
				http.Redirect(w, r, "/roots/"+q, http.StatusSeeOther)
			case len(key.Attestations) > 0 && len(root.Attestations) == 0:
				http.Redirect(w, r, "/keys/"+q, http.StatusSeeOther)
			default:
				// Both or neither: the key page also shows a key that
				// never attested.
				http.Redirect(w, r, "/keys/"+q, http.StatusSeeOther)
			}
			return
		}
		http.Redirect(w, r, "/vms/"+url.PathEscape(q), http.StatusSeeOther)
	case "vm":
		http.Redirect(w, r, "/vms/"+url.PathEscape(q), http.StatusSeeOther)
	case "root":
		http.Redirect(w, r, "/roots/"+url.PathEscape(strings.ToLower(q)), http.StatusSeeOther)
	case "key":
		http.Redirect(w, r, "/keys/"+url.PathEscape(strings.ToLower(q)), http.StatusSeeOther)
	case "index":
		if _, err := tlog.ParseDecimal(q); err != nil {
			e.fail(w, r, badQuery("an entry index is a decimal number"))
			return
		}
		http.Redirect(w, r, "/attestations/"+q, http.StatusSeeOther)
	default:
		e.fail(w, r, badQuery("kind must be auto, vm, root, key or index"))
	}
}

// attestationData is one attestation page.
type attestationData struct {
	Index       uint64
	BundleSize  int
	Entry       Entry
	Statement   *coproc.Statement
	PayloadType string
	SigKeyID    string
	Key         *Key
	Proof       tlog.Proof
	Checkpoint  *SignedCheckpoint
	Record      string // an enrolment record's JSON, for a non-attestation entry
}

func (e *Explorer) bundle(ctx context.Context, r *http.Request) (uint64, []byte, error) {
	index, err := tlog.ParseDecimal(r.PathValue("index"))
	if err != nil {
		return 0, nil, badQuery("an entry index is a decimal number")
	}
	raw, err := e.log.get(ctx, fmt.Sprintf("/v1/bundles/%d", index))
	return index, raw, err
}

func (e *Explorer) attestationPage(w http.ResponseWriter, r *http.Request) {
	index, raw, err := e.bundle(r.Context(), r)
	if err != nil {
		e.fail(w, r, err)
		return
	}
	b, err := bundle.Parse(raw)
	if err != nil {
		e.fail(w, r, fmt.Errorf("%w: the log's bundle for entry %d: %w", ErrLog, index, err))
		return
	}
	d := attestationData{Index: index, BundleSize: len(raw), Proof: b.Proof, Entry: describe(index, b.Entry)}
	if d.Checkpoint, err = parseSignedNote(b.Proof.Checkpoint); err != nil {
		e.fail(w, r, err)
		return
	}
	if env, err := coproc.ParseEnvelope(b.Entry); err == nil {
		d.PayloadType = env.PayloadType
		if len(env.Signatures) > 0 {
			d.SigKeyID = env.Signatures[0].KeyID
		}
		d.Statement, _ = env.Statement()
	} else {
		d.Record = string(b.Entry)
	}
	if keys, err := e.log.keys(r.Context()); err == nil {
		for i := range keys {
			if keys[i].KeyID == d.SigKeyID || keys[i].KeyID == d.Entry.KeyID {
				d.Key = &keys[i]
			}
		}
	}
	title := fmt.Sprintf("Entry %d", index)
	if d.Statement != nil {
		title = fmt.Sprintf("Attestation %d: VM %s", index, d.Statement.VMID())
	}
	e.render(w, http.StatusOK, "attestation.html", title, d)
}

// bundleJSON serves the log's bundle verbatim, for the in-browser verifier
// and for download.
func (e *Explorer) bundleJSON(w http.ResponseWriter, r *http.Request) {
	index, raw, err := e.bundle(r.Context(), r)
	if err != nil {
		e.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="bundle-%d.json"`, index))
	w.Write(raw)
}

func (e *Explorer) verifyPage(w http.ResponseWriter, r *http.Request) {
	e.render(w, http.StatusOK, "verify.html", "Verify a bundle", nil)
}

var contentTypes = map[string]string{
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".wasm": "application/wasm",
	".svg":  "image/svg+xml",
}

func (e *Explorer) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ext := name[strings.LastIndexByte(name, '.')+1:]
	ct, ok := contentTypes["."+ext]
	b, err := files.ReadFile("assets/" + name)
	if !ok || strings.Contains(name, "/") || err != nil {
		http.Error(w, "no such asset", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	w.Write(b)
}
