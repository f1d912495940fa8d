package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// getWhenUp GETs url, retrying while nothing listens yet.
func getWhenUp(t *testing.T, ctx context.Context, url string) (int, string) {
	t.Helper()
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, string(b)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GET %s: %v", url, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestLogServeExplorer: log serve answers / with the explorer (it was a
// 404), next to the API, and explore --log serves the same pages for that
// log from its public API.
func TestLogServeExplorer(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "log.key")
	if _, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/ledger", "--out", key); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logAddr, exAddr := freeAddr(t), freeAddr(t)
	served := make(chan error, 2)
	go func() {
		_, err := runLogCmd(ctx, "log", "serve", "--data", filepath.Join(dir, "data"), "--listen", logAddr, "--key", key, "--allow-raw-entries", "--log-level", "error")
		served <- err
	}()
	go func() {
		_, err := runLogCmd(ctx, "explore", "--log", "http://"+logAddr, "--listen", exAddr, "--log-level", "error")
		served <- err
	}()
	wait, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	getWhenUp(t, wait, "http://"+logAddr+"/healthz")
	resp, err := http.Post("http://"+logAddr+"/v1/entries", "application/octet-stream", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for {
		_, body := getWhenUp(t, wait, "http://"+logAddr+"/checkpoint")
		if strings.Contains(body, "\n1\n") {
			break
		}
		select {
		case <-wait.Done():
			t.Fatalf("the checkpoint never reached size 1: %s", body)
		case <-time.After(20 * time.Millisecond):
		}
	}

	for _, base := range []string{"http://" + logAddr, "http://" + exAddr} {
		for _, tc := range []struct {
			path string
			code int
			want string
		}{
			{"/", 200, `id="tree-size">1<`},
			{"/", 200, "example.com/ledger"},
			{"/attestations/0", 200, "not an attestation"},
			{"/keys", 200, "No co-processor key"},
			{"/roots/zz", 400, "64 lowercase hex"},
			{"/checkpoint", 0, "example.com/ledger"}, // the API is still there (log only)
		} {
			if tc.code == 0 && base != "http://"+logAddr {
				continue
			}
			code, body := getWhenUp(t, wait, base+tc.path)
			if (tc.code != 0 && code != tc.code) || !strings.Contains(body, tc.want) {
				t.Errorf("GET %s%s = %d, want %d with %q:\n%s", base, tc.path, code, tc.code, tc.want, body)
			}
		}
	}
	cancel()
	for range 2 {
		if err := <-served; err != nil {
			t.Errorf("server returned %v", err)
		}
	}
}

func TestExploreUsage(t *testing.T) {
	for _, args := range [][]string{
		{"explore"},
		{"explore", "--log", "http://127.0.0.1:1"},
		{"explore", "--log", "ftp://x", "--listen", "127.0.0.1:0"},
	} {
		if _, err := runLogCmd(t.Context(), args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
