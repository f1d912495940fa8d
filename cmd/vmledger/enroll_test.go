package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// TestEnrollRefusesPlainHTTP: log enroll and log revoke send the admin
// token, so they refuse a plain http:// URL to any host but loopback unless
// --insecure-http is given. Every connection the process makes is routed
// to a local server that counts the requests carrying the token, so the
// "remote" host 192.0.2.1 (TEST-NET-1) is never contacted.
func TestEnrollRefusesPlainHTTP(t *testing.T) {
	var withToken atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			withToken.Add(1)
		}
		http.Error(w, `{"reason":"unauthorized","detail":"test server"}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	tr := http.DefaultTransport.(*http.Transport)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dial(ctx, network, srv.Listener.Addr().String())
	}
	tr.CloseIdleConnections()
	t.Cleanup(func() { tr.DialContext = dial; tr.CloseIdleConnections() })

	dir := t.TempDir()
	tok := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tok, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pem := filepath.Join(dir, "host.pem")
	if err := os.WriteFile(pem, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	cmds := map[string][]string{
		"enroll": {"log", "enroll", "--admin-token-file", tok, "--key", pem},
		"revoke": {"log", "revoke", "--admin-token-file", tok, "--key", pem},
	}
	for name, base := range cmds {
		for _, tc := range []struct {
			url      string
			insecure bool
			refused  bool // a usage error before any request
		}{
			{"http://192.0.2.1:8080", false, true},
			{"http://log.example:8080", false, true},
			{"http://[2001:db8::1]:8080", false, true},
			{"ftp://127.0.0.1:8080", false, true},
			{"http://192.0.2.1:8080", true, false},
			{"http://127.0.0.1:8080", false, false},
			{"http://127.3.2.1:8080", false, false},
			{"http://[::1]:8080", false, false},
			{"http://localhost:8080", false, false},
		} {
			t.Run(name+" "+tc.url, func(t *testing.T) {
				args := append(append([]string{}, base...), "--log", tc.url)
				if tc.insecure {
					args = append(args, "--insecure-http")
				}
				before := withToken.Load()
				_, err := runLogCmd(t.Context(), args...)
				var ue usageError
				sent := withToken.Load() - before
				switch {
				case tc.refused && (!errors.As(err, &ue) || sent != 0):
					t.Errorf("%q = %v with %d requests carrying the token; want a usage error and none", args, err, sent)
				case tc.refused && !strings.Contains(err.Error(), "--insecure-http") && strings.HasPrefix(tc.url, "http:"):
					t.Errorf("%q = %v; want the error to name --insecure-http", args, err)
				case !tc.refused && sent != 1:
					t.Errorf("%q = %v with %d requests carrying the token; want it sent once", args, err, sent)
				}
			})
		}
	}
}
