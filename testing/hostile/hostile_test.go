// Package hostile throws malformed, oversized, tricky and slow requests at
// the real `vmledger log serve` and `vmledger witness serve` binaries and
// checks that every answer is a 4xx (never a 5xx, never a hang) and that
// neither the log nor the witness changed.
package hostile

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/soft"
	"github.com/vmledger/vmledger/testing/crash"
)

var vmledgerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmledger-hostile-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	vmledgerBin, err = crash.Build(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requestTimeout bounds every hostile request: no answer within it is a
// hang, and a failure. The servers' own timeouts (ReadHeaderTimeout 10 s,
// ReadTimeout 30 s) are below it.
const requestTimeout = 45 * time.Second

// A hostile request, written to the socket as is.
type hostileReq struct {
	name       string
	raw        []byte
	allow3xx   bool // a path the mux cleans may be redirected (not followed)
	allowReset bool // an oversized body may be cut off with a TCP reset
	// allowStatus is a non-4xx status net/http itself answers for a
	// protocol violation (505 for an unknown HTTP version, 501 for an
	// unknown transfer coding): not a fault of the server's code.
	allowStatus int
}

// req builds an HTTP/1.1 request. A nil header map gets Content-Length for
// the body; headers are written in sorted order after Host.
func req(name, method, target string, headers map[string]string, body []byte) hostileReq {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method, target)
	if _, ok := headers["Content-Length"]; !ok && headers["Transfer-Encoding"] == "" && (body != nil || method == "POST" || method == "PUT") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	var keys []string
	for k := range headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\r\n", k, headers[k])
	}
	b.WriteString("\r\n")
	b.Write(body)
	return hostileReq{name: name, raw: b.Bytes()}
}

// outcome is what came back for one request.
type outcome struct {
	status int
	reset  bool
	err    error
}

// send writes r on a new connection to addr (concurrently with reading,
// so that a server that answers before reading a large body is heard) and
// reads the response.
func send(addr string, r hostileReq) outcome {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return outcome{err: err}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(requestTimeout))
	go func() {
		conn.Write(r.raw)
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return outcome{err: fmt.Errorf("no answer within %v: %w", requestTimeout, err)}
		}
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return outcome{reset: true, err: err}
		}
		return outcome{err: err}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<20))
	resp.Body.Close()
	return outcome{status: resp.StatusCode}
}

// tally counts outcomes and failures of a batch of hostile requests.
type tally struct {
	mu       sync.Mutex
	tried    int
	byStatus map[string]int
	failures []string
}

func (ta *tally) run(addr string, rs []hostileReq) {
	var wg sync.WaitGroup
	ch := make(chan hostileReq)
	for range 8 {
		wg.Go(func() {
			for r := range ch {
				o := send(addr, r)
				ta.record(r, o)
			}
		})
	}
	for _, r := range rs {
		ch <- r
	}
	close(ch)
	wg.Wait()
}

func (ta *tally) record(r hostileReq, o outcome) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.tried++
	var bad string
	switch {
	case o.reset && r.allowReset:
		ta.byStatus["reset"]++
	case o.err != nil:
		ta.byStatus["error"]++
		bad = fmt.Sprintf("transport error: %v", o.err)
	default:
		ta.byStatus[fmt.Sprint(o.status)]++
		switch {
		case o.status >= 400 && o.status < 500:
		case o.status >= 300 && o.status < 400 && r.allow3xx:
		case o.status == r.allowStatus:
		default:
			bad = fmt.Sprintf("status %d", o.status)
		}
	}
	if bad != "" && len(ta.failures) < 40 {
		line, _, _ := bytes.Cut(r.raw, []byte("\r\n"))
		ta.failures = append(ta.failures, fmt.Sprintf("%s (%.120q): %s, want a 4xx", r.name, line, bad))
	}
}

func (ta *tally) report(t *testing.T, what string) {
	t.Helper()
	for _, f := range ta.failures {
		t.Error(f)
	}
	t.Logf("%s: %d hostile requests tried; answers %v", what, ta.tried, ta.byStatus)
}

// setup runs a log with one enrolled soft co-processor and one admitted
// attestation, and a witness of that log that cosigned its checkpoint.
type setup struct {
	log     *crash.LogServer
	witness *crash.WitnessServer
	env     []byte // a canonical envelope the log admitted
	fresh   []byte // a canonical envelope signed but never submitted
	hc      *http.Client
	dir     string
}

func start(t *testing.T) *setup {
	t.Helper()
	ctx := t.Context()
	s := &setup{hc: &http.Client{Timeout: time.Minute}, dir: t.TempDir()}
	var err error
	if s.log, err = crash.NewLogServer(ctx, vmledgerBin, s.dir, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.log.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.log.Proc.Kill() })
	cpDir := filepath.Join(s.dir, "coproc")
	if _, err := soft.Init(ctx, cpDir, soft.Ed25519); err != nil {
		t.Fatal(err)
	}
	cp, err := soft.Open(ctx, cpDir, soft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.log.Enrol(ctx, s.hc, "host", cp.PublicKey()); err != nil {
		t.Fatal(err)
	}
	s.env = s.envelope(t, cp)
	resp, err := s.hc.Post(s.log.URL()+"/v1/attestations", "application/json", bytes.NewReader(s.env))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("admitting a valid envelope = %d, want 202", resp.StatusCode)
	}
	s.fresh = s.envelope(t, cp)
	signed, err := s.log.WaitCheckpoint(ctx, s.hc, 2)
	if err != nil {
		t.Fatal(err)
	}

	if s.witness, err = crash.NewWitnessServer(ctx, vmledgerBin, filepath.Join(s.dir, "w"), "vmledger.test/w", []string{s.log.VKey}); err != nil {
		t.Fatal(err)
	}
	if err := s.witness.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.witness.Proc.Kill() })
	body := append([]byte("old 0\n\n"), signed...)
	resp, err = s.hc.Post(s.witness.Proc.URL+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("witness add-checkpoint of the log's checkpoint = %d, want 200", resp.StatusCode)
	}
	return s
}

func (s *setup) envelope(t *testing.T, cp *soft.CoProcessor) []byte {
	t.Helper()
	b, err := crash.Get(t.Context(), s.hc, s.log.URL()+"/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	c, err := crash.OpenCheckpoint(b, s.log.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	var root [32]byte
	rand.Read(root[:])
	env, err := cp.Attest(t.Context(), coproc.Claim{VMID: "web01", Root: root, Parameters: []string{"cpu", "memory"},
		Freshness: coproc.Anchor{Origin: c.Origin, Size: uint64(c.Size), Root: c.Root}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := env.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// state is what must not change: the log's checkpoint and its search
// answer for the VM, the witness's checkpoint and evidence.
func (s *setup) state(t *testing.T) []string {
	t.Helper()
	ctx := t.Context()
	var out []string
	for _, u := range []string{
		s.log.URL() + "/checkpoint",
		s.log.URL() + "/v1/vms/web01/attestations",
		s.log.URL() + "/v1/coprocessors",
		s.witness.Proc.URL + "/" + hex.EncodeToString(sum(s.log.Origin)) + "/checkpoint",
		s.witness.Proc.URL + "/v1/evidence",
	} {
		b, err := crash.Get(ctx, s.hc, u)
		if err != nil {
			t.Fatalf("reading state: %v", err)
		}
		out = append(out, string(b))
	}
	return out
}

func sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func (s *setup) checkUnchanged(t *testing.T, before []string) {
	t.Helper()
	after := s.state(t)
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("state %d changed after the hostile requests:\n%s\nbecame\n%s", i, before[i], after[i])
		}
	}
	if err := s.log.CheckNoSecrets(); err != nil {
		t.Error(err)
	}
	for _, p := range []*crash.Process{s.log.Proc, s.witness.Proc} {
		if exited, err := p.Exited(); exited {
			t.Errorf("a server exited during the hostile requests: %v", err)
		}
	}
}

// The numbers a query or path parameter must not accept.
var badNumbers = []string{
	"18446744073709551616", "18446744073709551615", "9223372036854775808", "99999999999999999999999999",
	"-1", "-0", "+1", "0x10", "0X1", "1e3", "1.0", "01", "007", "", "%20", "1%00", "%E2%80%8B1", "１",
	"NaN", "Infinity", "1,2", "1_000",
}

func logRequests(s *setup) []hostileReq {
	var rs []hostileReq
	add := func(r hostileReq) { rs = append(rs, r) }
	json := map[string]string{"Content-Type": "application/json"}

	// Admission bodies.
	bodies := map[string][]byte{
		"empty": {}, "open brace": []byte("{"), "null": []byte("null"), "array": []byte("[]"),
		"string": []byte(`"x"`), "number": []byte("1e999"), "object": []byte("{}"),
		"nested":            bytes.Repeat([]byte("["), 60000),
		"nested objects":    []byte(strings.Repeat(`{"a":`, 20000)),
		"nul":               {0},
		"utf16":             []byte("\xff\xfe{\x00}\x00"),
		"bad utf8":          []byte("{\"payload\":\"\xff\xfe\"}"),
		"wrong payloadType": []byte(`{"payload":"e30=","payloadType":"text/plain","signatures":[{"keyid":"","sig":"AA=="}]}`),
		"many signatures": []byte(`{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[` +
			strings.TrimSuffix(strings.Repeat(`{"keyid":"a","sig":"AA=="},`, 2000), ",") + `]}`),
		"just over 64KiB":  bytes.Repeat([]byte("a"), 65537),
		"pretty printed":   prettyish(s.fresh),
		"trailing newline": append(append([]byte(nil), s.fresh...), '\n'),
		"two envelopes":    append(append([]byte(nil), s.fresh...), s.fresh...),
	}
	for name, b := range bodies {
		add(req("admission: "+name, "POST", "/v1/attestations", json, b))
	}
	big := req("admission: 16 MiB body", "POST", "/v1/attestations", json, bytes.Repeat([]byte("a"), 16<<20))
	big.allowReset = true
	add(big)
	lie := req("admission: Content-Length above the limit", "POST", "/v1/attestations", map[string]string{"Content-Length": "1000000000", "Content-Type": "application/json"}, []byte("{"))
	lie.allowReset = true
	add(lie)
	add(req("admission: chunked junk", "POST", "/v1/attestations", map[string]string{"Transfer-Encoding": "chunked"}, []byte("zz\r\nabc\r\n0\r\n\r\n")))
	add(req("admission: chunked and length", "POST", "/v1/attestations", map[string]string{"Transfer-Encoding": "chunked", "Content-Length": "3"}, []byte("3\r\nabc\r\n0\r\n\r\n")))
	add(req("admission: gzip encoded junk", "POST", "/v1/attestations", map[string]string{"Content-Encoding": "gzip"}, []byte("\x1f\x8b\x08\x00junk")))
	for _, ct := range []string{"text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "application/json; charset=utf-16", "\x7f"} {
		add(req("admission: content type "+ct, "POST", "/v1/attestations", map[string]string{"Content-Type": ct}, []byte("payload=x&sig=y")))
	}
	// Every truncation and every single-byte change of an envelope that
	// would be admitted as it is.
	for i := 0; i < len(s.fresh); i++ {
		add(req(fmt.Sprintf("admission: truncated to %d bytes", i), "POST", "/v1/attestations", json, s.fresh[:i]))
	}
	for i := 0; i < len(s.fresh); i++ {
		m := append([]byte(nil), s.fresh...)
		m[i] ^= 0x01
		add(req(fmt.Sprintf("admission: byte %d flipped", i), "POST", "/v1/attestations", json, m))
	}
	// A replay of the admitted envelope's bytes with one byte changed.
	m := append([]byte(nil), s.env...)
	m[len(m)/2] ^= 0x20
	add(req("admission: admitted envelope mangled", "POST", "/v1/attestations", json, m))

	// Enrolment without the credential, or with a wrong one.
	enrol := []byte(`{"name":"evil","public_key":"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"}`)
	for name, auth := range map[string]string{
		"none": "", "empty bearer": "Bearer ", "wrong token": "Bearer AAAA", "token prefix": "Bearer " + string(s.log.Token[:len(s.log.Token)-1]),
		"token plus": "Bearer " + string(s.log.Token) + "x", "basic": "Basic " + string(s.log.Token), "lowercase scheme": "bearer x",
		"two tokens": "Bearer x, Bearer y", "huge": "Bearer " + strings.Repeat("A", 40000),
	} {
		h := map[string]string{"Content-Type": "application/json"}
		if auth != "" {
			h["Authorization"] = auth
		}
		add(req("enrol, auth "+name, "POST", "/v1/coprocessors", h, enrol))
		add(req("revoke, auth "+name, "DELETE", "/v1/coprocessors/"+strings.Repeat("ab", 32), h, nil))
	}
	authz := map[string]string{"Authorization": "Bearer " + string(s.log.Token), "Content-Type": "application/json"}
	for name, b := range map[string][]byte{
		"empty": {}, "junk": []byte("{"), "no key": []byte(`{"name":"x"}`), "bad pem": []byte(`{"name":"x","public_key":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}`),
		"rsa-ish": []byte(`{"name":"x","public_key":"not a key"}`), "bad name": []byte(`{"name":"` + strings.Repeat("\u0000", 10) + `","public_key":"x"}`),
		"unknown field": []byte(`{"name":"x","public_key":"x","admin":true}`),
	} {
		add(req("enrol with the token, body "+name, "POST", "/v1/coprocessors", authz, b))
	}
	add(req("revoke with the token, bad keyid", "DELETE", "/v1/coprocessors/zz", authz, nil))
	add(req("revoke with the token, unknown keyid", "DELETE", "/v1/coprocessors/"+strings.Repeat("0", 64), authz, nil))

	// Wrong methods.
	for _, p := range []string{"/checkpoint", "/tile/0/000.p/1", "/tile/entries/000.p/1", "/healthz", "/metrics", "/v1/bundles/0",
		"/v1/proof/inclusion?index=0&size=1", "/v1/checkpoints/1", "/api/v1/log", "/v1/vms/web01/bundle", "/v1/coprocessors/x"} {
		for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "FOO"} {
			add(req(m+" "+p, m, p, nil, nil))
		}
	}
	for _, m := range []string{"GET", "PUT", "PATCH", "DELETE"} {
		add(req(m+" /v1/attestations with a body", m, "/v1/attestations?x=1", nil, s.fresh))
	}

	// Path tricks.
	paths := []string{
		"/tile/../checkpoint", "/tile/%2e%2e/checkpoint", "/tile/%2E%2E/%2E%2E/etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
		"//checkpoint", "///tile//0//000", "/tile/0/x001/../000", "/tile/0/000/", "/tile/0/000.p/0", "/tile/0/000.p/256",
		"/tile/0/000.p/-1", "/tile/0/000.p/01", "/tile/0/000.p/1.p/1", "/tile/99/000", "/tile/-1/000", "/tile/0/x-01/000",
		"/tile/0/1000", "/tile/0/00", "/tile/0/x000/000", "/tile/0/999", "/tile/entries/x999/x999/x999/x999/x999/x999/999",
		"/tile/entries/x001/x002/x003/x004/x005/x006/x007/008", "/tile/0/%00", "/tile/0/000%00", "/tile/0/000%2F..",
		"/tile/entries/000.p/300", "/tile/entries/../../checkpoint", "/tile/", "/tile", "/tile/entries",
		"/v1/bundles/", "/v1/bundles/x", "/v1/vms//bundle", "/v1/vms/%2e%2e/bundle", "/v1/vms/..%2Fcoprocessors/bundle",
		"/v1/vms/" + strings.Repeat("a", 5000) + "/attestations", "/v1/vms/%ff%fe/bundle", "/v1/vms/nonexistent/bundle",
		"/v1/checkpoints/", "/v1/checkpoints/1/2", "/v1/coprocessors/../../checkpoint",
		"/" + strings.Repeat("a/", 4000), "/tile/" + strings.Repeat("x001/", 2000) + "001",
		"/" + strings.Repeat("%2e%2e/", 3000), "/checkpoint;jsessionid=1", "/checkpoint%3f", "/CHECKPOINT",
		"/nonexistent", "/.git/config", "/debug/pprof/", "/api/v1/log/entries/retrieve", "/api/v1/log/publicKey?treeID=x", "/api/v1/log/publicKey?treeID=1",
	}
	for _, p := range paths {
		r := req("path "+p, "GET", p, nil, nil)
		r.allow3xx = true
		add(r)
	}
	// net/http's mux redirects a target it cleans, to the host the target
	// named itself: nothing another client would follow.
	abs := req("absolute-form target of another host", "GET", "http://example.com/checkpoint/../x", nil, nil)
	abs.allow3xx = true
	add(abs)
	add(req("asterisk target", "GET", "*", nil, nil))
	add(req("path of 70 KiB (above MaxHeaderBytes)", "GET", "/"+strings.Repeat("a", 70<<10), nil, nil))

	// Huge, negative, hex and padded numbers.
	for _, n := range badNumbers {
		for _, q := range []string{
			"/v1/proof/inclusion?index=" + n + "&size=2", "/v1/proof/inclusion?index=0&size=" + n,
			"/v1/proof/consistency?old=" + n + "&new=2", "/v1/proof/consistency?old=1&new=" + n,
			"/v1/checkpoints/" + n, "/v1/bundles/" + n,
			"/api/v1/log/proof?firstSize=" + n + "&lastSize=2", "/api/v1/log/proof?firstSize=1&lastSize=" + n,
			"/api/v1/log/entries?logIndex=" + n,
		} {
			add(req("number "+q, "GET", q, nil, nil))
		}
		// In a path, an empty number makes "//", which the mux redirects.
		for _, q := range []string{"/tile/0/" + n, "/tile/entries/" + n, "/tile/" + n + "/000"} {
			r := req("number "+q, "GET", q, nil, nil)
			r.allow3xx = n == ""
			add(r)
		}
		// An empty after= or limit= means none (net/url cannot tell them
		// apart); after= is a uint64, so 2^64-1 and 2^63 are valid.
		if n != "" {
			add(req("number limit="+n, "GET", "/v1/attestations?key="+strings.Repeat("0", 64)+"&limit="+n, nil, nil))
			add(req("number limit="+n, "GET", "/v1/vms/web01/attestations?limit="+n, nil, nil))
		}
		if n != "" && n != "18446744073709551615" && n != "9223372036854775808" {
			add(req("number after="+n, "GET", "/v1/attestations?key="+strings.Repeat("0", 64)+"&after="+n, nil, nil))
			add(req("number after="+n, "GET", "/v1/vms/web01/attestations?after="+n, nil, nil))
		}
	}
	for _, q := range []string{
		"/v1/proof/inclusion?index=1&index=0&size=2", "/v1/proof/inclusion?index=5&size=2", "/v1/proof/inclusion?index=0&size=99999",
		"/v1/proof/consistency?old=2&new=1", "/v1/proof/consistency?old=0&new=99999", "/v1/proof/inclusion", "/v1/proof/consistency",
		"/v1/attestations", "/v1/attestations?root=zz", "/v1/attestations?root=" + strings.Repeat("0", 63),
		"/v1/attestations?key=" + strings.Repeat("A", 64), "/v1/attestations?root=" + strings.Repeat("0", 64) + "&key=" + strings.Repeat("0", 64),
		"/v1/attestations?limit=1001&key=" + strings.Repeat("0", 64), "/api/v1/log/proof", "/api/v1/log/entries",
		"/api/v1/log/proof?firstSize=2&lastSize=1", "/api/v1/log/entries?logIndex=99999",
		"/v1/proof/inclusion?" + strings.Repeat("a=1&", 10000) + "index=0&size=2",
	} {
		add(req("query "+q, "GET", q, nil, nil))
	}

	// Broken requests.
	for name, raw := range map[string]string{
		"garbage line":       "HELLO\r\n\r\n",
		"no Host":            "GET /checkpoint HTTP/1.1\r\nConnection: close\r\n\r\n",
		"two Hosts":          "GET /checkpoint HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
		"bad version":        "GET /checkpoint HTTP/9.9\r\nHost: a\r\n\r\n",
		"HTTP/2 preface":     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"space in header":    "GET /checkpoint HTTP/1.1\r\nHost: a\r\nBad Header: x\r\nConnection: close\r\n\r\n",
		"huge header":        "GET /checkpoint HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n",
		"many headers":       "GET /checkpoint HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: b\r\n", 10000) + "\r\n",
		"bare LF with junk":  "GET /checkpoint HTTP/1.1\nHost: a\nContent-Length: -1\n\n",
		"negative length":    "POST /v1/attestations HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
		"two lengths":        "POST /v1/attestations HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"control in target":  "GET /check\x01point HTTP/1.1\r\nHost: a\r\n\r\n",
		"CONNECT":            "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
		"smuggling TE.CL":    "POST /v1/attestations HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
		"expect 100 unknown": "POST /v1/attestations HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n{",
	} {
		r := hostileReq{name: "raw " + name, raw: []byte(raw)}
		switch name {
		case "bad version":
			r.allowStatus = http.StatusHTTPVersionNotSupported
		case "smuggling TE.CL":
			r.allowStatus = http.StatusNotImplemented
		}
		add(r)
	}
	return rs
}

// prettyish re-indents an envelope: same JSON value, not canonical.
func prettyish(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte(`,"`), []byte(`, "`))
}

func witnessRequests(s *setup, signed []byte) []hostileReq {
	var rs []hostileReq
	add := func(r hostileReq) { rs = append(rs, r) }
	h := map[string]string{"Content-Type": "text/plain"}
	valid := append([]byte("old 0\n\n"), signed...) // 409: the witness is past 0
	bodies := map[string][]byte{
		"empty": {}, "old only": []byte("old 0\n"), "old 05": append([]byte("old 05\n\n"), signed...),
		"old -1": append([]byte("old -1\n\n"), signed...), "old 2^64": append([]byte("old 18446744073709551616\n\n"), signed...),
		"old hex": append([]byte("old 0x1\n\n"), signed...), "old above size": append([]byte("old 99999\n\n"), signed...),
		"CR":             bytes.ReplaceAll(valid, []byte("\n"), []byte("\r\n")),
		"64 proof lines": append([]byte("old 1\n"+strings.Repeat("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", 64)+"\n"), signed...),
		"bad proof line": append([]byte("old 1\nnot base64\n\n"), signed...),
		"no signature":   append([]byte("old 1\n\n"), bytes.SplitAfterN(signed, []byte("\n\n"), 2)[0]...),
		"unknown origin": []byte("old 0\n\nexample.com/other\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/other AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"),
		"trailing bytes": append(append([]byte(nil), valid...), "junk"...),
		"1 MiB":          bytes.Repeat([]byte("a"), 1<<20),
		"nul":            {0},
	}
	for name, b := range bodies {
		add(req("add-checkpoint: "+name, "POST", "/add-checkpoint", h, b))
	}
	// Every truncation and single-byte change of a signed checkpoint
	// presented with a wrong old size.
	body := append([]byte("old 1\n\n"), signed...)
	for i := 0; i < len(body); i++ {
		add(req(fmt.Sprintf("add-checkpoint: truncated to %d", i), "POST", "/add-checkpoint", h, body[:i]))
		m := append([]byte(nil), body...)
		m[i] ^= 0x01
		add(req(fmt.Sprintf("add-checkpoint: byte %d flipped", i), "POST", "/add-checkpoint", h, m))
	}
	for _, m := range []string{"GET", "PUT", "DELETE", "OPTIONS"} {
		add(req(m+" /add-checkpoint", m, "/add-checkpoint", nil, nil))
		if m != "GET" {
			add(req(m+" /v1/evidence", m, "/v1/evidence", nil, []byte("x")))
		}
	}
	for _, p := range []string{"/zz/checkpoint", "/" + strings.Repeat("0", 64) + "/checkpoint", "/../checkpoint", "/%2e%2e/checkpoint",
		"//checkpoint", "/" + strings.Repeat("a", 5000) + "/checkpoint", "/add-checkpoint/..", "/nonexistent", "/v1/evidence/../../x"} {
		r := req("witness path "+p, "GET", p, nil, nil)
		r.allow3xx = true
		add(r)
	}
	big := req("add-checkpoint: 16 MiB", "POST", "/add-checkpoint", h, bytes.Repeat([]byte("a"), 16<<20))
	big.allowReset = true
	add(big)
	return rs
}

// TestHostileLog sends every hostile request to the log and to the
// witness, and checks that each answer is a 4xx and that the log's
// checkpoint, search index and enrolments and the witness's checkpoint and
// evidence are unchanged.
func TestHostileLog(t *testing.T) {
	s := start(t)
	before := s.state(t)
	start := time.Now()
	var lt tally
	lt.byStatus = map[string]int{}
	lt.run(s.log.Proc.Addr, logRequests(s))
	lt.report(t, "log")

	signed, err := crash.Get(t.Context(), s.hc, s.log.URL()+"/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	var wt tally
	wt.byStatus = map[string]int{}
	wt.run(s.witness.Proc.Addr, witnessRequests(s, signed))
	wt.report(t, "witness")
	s.checkUnchanged(t, before)
	t.Logf("%d requests in %v", lt.tried+wt.tried, time.Since(start).Round(time.Millisecond))
}
