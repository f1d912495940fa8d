package explorer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/log/explorer"
	"github.com/vmledger/vmledger/log/explorer/inbrowser"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		return resp.StatusCode, loc
	}
	return resp.StatusCode, string(b)
}

// TestPages reads every page of the explorer of a real deployment and
// checks that it shows what the log holds, and that bad input gets a 4xx
// page that says what is wrong.
func TestPages(t *testing.T) {
	f := startFixture(t)
	// Without go generate, the pages say the verifier is not built in.
	form := "verify-form"
	if _, err := os.Stat("assets/verify.wasm"); err != nil {
		form = "not built into this binary"
	}
	tests := []struct {
		name, path string
		code       int
		want       []string
	}{
		{"home", "/", 200, []string{"Latest checkpoint", "vmledger.test/log", "cosigned <time", ">web01<", ">db01<", "revoked", "enrolled", "2 enrolled, 1 of them revoked", `id="growth-chart"`, "<circle", "integration of <a href=\"/attestations/5\">entry 5</a>"}},
		{"vm", "/vms/web01", 200, []string{fmt.Sprintf(`href="/attestations/%d"`, f.web01), f.root[:16]}},
		{"root", "/roots/" + f.root, 200, []string{">web01<", fmt.Sprintf(">%d<", f.web01)}},
		{"key", "/keys/" + f.keyID, 200, []string{"active", ">web01<", ">db01<"}},
		{"revoked key", "/keys/" + f.revokedID, 200, []string{"spare-host", "revoked", "No attestation found"}},
		{"keys", "/keys", 200, []string{"spare-host", f.keyID[:16], "revoked", "active"}},
		{"attestation", fmt.Sprintf("/attestations/%d", f.web01), 200, []string{
			"web01", f.root, "Freshness anchor", "Counter NV index", "Inclusion proof", "cosigned <time", form, "vmledger.test/log"}},
		{"verify", "/verify", 200, []string{form}},
		{"unknown vm", "/vms/nosuchvm", 200, []string{"No attestation found"}},
		{"bad root", "/roots/xyz", 400, []string{"64 lowercase hex"}},
		{"bad key", "/keys/XYZ", 400, []string{"64 lowercase hex"}},
		{"bad vm id", "/vms/" + strings.Repeat("x", 300), 400, []string{"VM id"}},
		{"bad index", "/attestations/-1", 400, []string{"decimal"}},
		{"entry beyond the tree", "/attestations/99999", 404, nil},
		{"bad after", "/vms/web01?after=x", 400, []string{"after"}},
		{"empty search", "/search?q=", 400, []string{"VM id"}},
		{"bad kind", "/search?q=a&kind=nope", 400, []string{"kind"}},
		{"search vm", "/search?q=web01", 303, []string{"/vms/web01"}},
		{"search root", "/search?q=" + f.root, 303, []string{"/roots/" + f.root}},
		{"search key", "/search?q=" + f.keyID, 303, []string{"/keys/" + f.keyID}},
		{"search index", "/search?q=3&kind=index", 303, []string{"/attestations/3"}},
		{"bad index search", "/search?q=x&kind=index", 400, []string{"decimal"}},
		{"unknown asset", "/assets/nope.js", 404, nil},
		{"style", "/assets/style.css", 200, []string{"--link"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, f.url+tc.path)
			if code != tc.code {
				t.Fatalf("GET %s = %d, want %d:\n%s", tc.path, code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s: no %q in:\n%s", tc.path, w, body)
				}
			}
		})
	}

	// The quorum is two of three witnesses: at least two cosignatures.
	if _, body := get(t, f.url+"/"); strings.Count(body, ".vmledger.test</td>") < 2 {
		t.Errorf("home page lists fewer than two cosigners:\n%s", body)
	}

	// The bundle is the log's, byte for byte.
	code, body := get(t, fmt.Sprintf("%s/attestations/%d/bundle.json", f.url, f.web01))
	if code != 200 {
		t.Fatalf("bundle.json: %d", code)
	}
	_, logBody := get(t, fmt.Sprintf("%s/v1/bundles/%d", f.c.LogURL, f.web01))
	if body != logBody {
		t.Errorf("bundle.json differs from the log's /v1/bundles")
	}
}

// TestLogDown: a log that does not answer gives a 502 page, not a crash.
func TestLogDown(t *testing.T) {
	ex, err := explorer.New(explorer.Config{LogURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/", "/keys", "/vms/a", "/attestations/0"} {
		rec := newRecorder()
		ex.Handler().ServeHTTP(rec, mustReq(t, p))
		if rec.code != http.StatusBadGateway || !strings.Contains(rec.body.String(), "127.0.0.1:1") {
			t.Errorf("GET %s with the log down = %d %s", p, rec.code, rec.body.String())
		}
	}
	for _, u := range []string{"", "ftp://x", "http://", "log.example"} {
		if _, err := explorer.New(explorer.Config{LogURL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

// allChecks are the checks of vmledger verify, each shown by the page.
var allChecks = []string{client.CheckEnvelope, client.CheckSignature, client.CheckStatement, client.CheckEvidence,
	client.CheckInclusion, client.CheckLogSignature, client.CheckWitnesses, client.CheckConsistency,
	client.CheckConfiguration, client.CheckFreshness}

// TestInBrowserVerify runs what the WebAssembly verifier runs, natively:
// the real bundle passes all eight checks, and each attack fails the
// check it breaks.
func TestInBrowserVerify(t *testing.T) {
	f := startFixture(t)
	trust, err := os.ReadFile(f.trustPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(f.configPath)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(f.secretPath)
	if err != nil {
		t.Fatal(err)
	}
	good := inbrowser.Input{Bundle: f.web01Bundle, Trust: trust, Config: cfg, ConfigName: "web01.json", Secret: secret, VMID: "web01"}
	out := inbrowser.Verify(t.Context(), good)
	if out.Error != "" || out.Report == nil || !out.Report.OK || len(out.Report.Results) != len(allChecks) {
		t.Fatalf("good bundle: %+v %+v", out.Error, out.Report)
	}

	for _, tc := range []struct {
		name   string
		mutate func(in *inbrowser.Input)
		check  string // the failed check, or "" for an input error
		errSub string
	}{
		{"tampered inclusion proof", func(in *inbrowser.Input) { in.Bundle = tamperProof(t, in.Bundle) }, client.CheckInclusion, ""},
		{"other VM expected", func(in *inbrowser.Input) { in.VMID = "db01" }, client.CheckStatement, ""},
		{"wrong secret", func(in *inbrowser.Input) { in.Secret = bytes.Repeat([]byte("ab"), 32) }, client.CheckConfiguration, ""},
		{"not a bundle", func(in *inbrowser.Input) { in.Bundle = []byte("{}") }, client.CheckEnvelope, ""},
		{"no trust file", func(in *inbrowser.Input) { in.Trust = nil }, "", "trust file"},
		{"bad trust file", func(in *inbrowser.Input) { in.Trust = []byte("log nonsense\n") }, "", "trust file"},
		{"config without secret", func(in *inbrowser.Input) { in.Secret = nil }, "", "VM secret"},
		{"short secret", func(in *inbrowser.Input) { in.Secret = []byte("abc") }, "", "VM secret"},
		{"secret without config", func(in *inbrowser.Input) { in.Config = nil }, "", "goes with"},
		{"image by path", func(in *inbrowser.Input) {
			in.Config = bytes.Replace(in.Config, []byte(`{"target": "vda", "sha256": "4f0e5dc7a3a35f29bd7b0f5b7b1c1e4c7d1d7e0e8b6b0f6a3c2b1a0f9e8d7c6b"}`), []byte(`{"target": "vda", "path": "disk.img"}`), 1)
		}, "", "sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := good
			tc.mutate(&in)
			out := inbrowser.Verify(t.Context(), in)
			if tc.check == "" {
				if out.Error == "" || !strings.Contains(out.Error, tc.errSub) {
					t.Fatalf("error %q, want one with %q (report %+v)", out.Error, tc.errSub, out.Report)
				}
				return
			}
			if out.Report == nil || out.Report.OK {
				t.Fatalf("not refused: %+v %+v", out.Error, out.Report)
			}
			var failed []string
			for _, r := range out.Report.Results {
				if r.Status == client.Fail {
					failed = append(failed, r.Check)
				}
			}
			if len(failed) == 0 || failed[0] != tc.check {
				t.Fatalf("failed checks %v, want %s first", failed, tc.check)
			}
			// The report's JSON is what the page renders.
			if _, err := json.Marshal(out); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// tamperProof flips a bit of the first inclusion hash of a bundle.
func tamperProof(t *testing.T, raw []byte) []byte {
	t.Helper()
	var w map[string]string
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(w["proof"], "\n")
	// c2sp.org/tlog-proof@v1, index N, then the hashes.
	h := []byte(lines[2])
	if h[0] == 'A' {
		h[0] = 'B'
	} else {
		h[0] = 'A'
	}
	lines[2] = string(h)
	w["proof"] = strings.Join(lines, "\n")
	out, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
