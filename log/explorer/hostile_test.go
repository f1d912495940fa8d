package explorer_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/log/explorer"
)

// TestHostileLog: explore --log can point at any server. A log that answers
// garbage, oversized or script-laden bodies gets a 502 page that says what
// was wrong, escaped, and never a crash.
func TestHostileLog(t *testing.T) {
	const script = `<script>alert(1)</script>`
	mux := http.NewServeMux()
	mux.HandleFunc("GET /checkpoint", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("not a checkpoint " + script))
	})
	mux.HandleFunc("GET /v1/coprocessors", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"coprocessors": [`))
	})
	mux.HandleFunc("GET /v1/vms/{id}/attestations", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat(" ", 5<<20))) // above the explorer's 4 MiB bound
	})
	mux.HandleFunc("GET /v1/attestations", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error": "` + script + `"}`))
	})
	mux.HandleFunc("GET /v1/bundles/{index}", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"mediaType": "` + script + `", "entry": "", "proof": ""}`))
	})
	log := httptest.NewServer(mux)
	defer log.Close()
	ex, err := explorer.New(explorer.Config{LogURL: log.URL})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ex.Handler())
	defer srv.Close()
	root := strings.Repeat("a", 64)
	for _, tc := range []struct{ path, want string }{
		{"/", "no signature block"},
		{"/keys", "unexpected end of JSON"},
		{"/vms/x", "above"},
		{"/roots/" + root, "alert(1)"},
		{"/attestations/0", "mediaType"},
		{"/attestations/0/bundle.json", ""}, // verbatim, as JSON: not a page
	} {
		code, body := get(t, srv.URL+tc.path)
		if tc.want == "" {
			if code != 200 {
				t.Errorf("GET %s = %d", tc.path, code)
			}
			continue
		}
		if code != http.StatusBadGateway || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d, want 502 saying %q:\n%s", tc.path, code, tc.want, body)
		}
		if strings.Contains(body, script) {
			t.Errorf("GET %s: the log's script reached the page unescaped", tc.path)
		}
	}
}
