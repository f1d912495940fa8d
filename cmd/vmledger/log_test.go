package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/engine/enginetest"
	"github.com/vmledger/vmledger/log/tlog"
)

// runLogCmd runs the command tree in-process with ctx and returns stdout
// and the error.
func runLogCmd(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestKeygen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.key")
	out, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/ledger", "--out", path)
	if err != nil {
		t.Fatalf("keygen = %v", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(out))
	if err != nil || v.Name() != "example.com/ledger" {
		t.Fatalf("keygen printed %q: %v", out, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if _, vkey, err := tlog.NewSigner(string(b)); err != nil || vkey != strings.TrimSpace(out) {
		t.Errorf("key file gives vkey %q, %v, want the printed %q", vkey, err, out)
	}
	if _, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/ledger", "--out", path); err == nil {
		t.Error("keygen over an existing file = nil error")
	}
	if b2, _ := os.ReadFile(path); !bytes.Equal(b, b2) {
		t.Error("keygen changed an existing key file")
	}
	for _, args := range [][]string{
		{"keygen", "--out", filepath.Join(t.TempDir(), "k")},
		{"keygen", "--name", "bad name", "--out", filepath.Join(t.TempDir(), "k")},
		{"keygen", "--name", "a+b", "--out", filepath.Join(t.TempDir(), "k")},
	} {
		var ue usageError
		if _, err := runLogCmd(t.Context(), args...); !errors.As(err, &ue) {
			t.Errorf("%q = %v, want a usage error", args, err)
		}
	}
}

func TestLogServeRefusesOpenKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "log.key")
	if _, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/ledger", "--out", key); err != nil {
		t.Fatal(err)
	}
	os.Chmod(key, 0o640)
	_, err := runLogCmd(t.Context(), "log", "serve", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--key", key)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("log serve with a 0640 key = %v, want a refusal naming chmod 600", err)
	}
}

// TestLogServeShutdown serves a log, appends over HTTP, stops the server
// as SIGTERM would (cancelling the command's context) while appends are in
// flight, and checks that every acknowledged entry is in the reopened log.
func TestLogServeShutdown(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "log.key")
	vkey, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/ledger", "--out", key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		_, err := runLogCmd(ctx, "log", "serve", "--data", data, "--listen", addr, "--key", key, "--allow-raw-entries", "--log-level", "error")
		served <- err
	}()

	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	ready := make(chan struct{})
	var once sync.Once
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				entry := fmt.Sprintf("w%d-%d", w, i)
				resp, err := http.Post("http://"+addr+"/v1/entries", "application/octet-stream", strings.NewReader(entry))
				if err != nil {
					if i > 0 || ctx.Err() != nil {
						return // the server went away
					}
					i--
					continue // not listening yet
				}
				var got struct{ Index uint64 }
				err = json.NewDecoder(resp.Body).Decode(&got)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || err != nil {
					return
				}
				mu.Lock()
				acked[got.Index] = entry
				if len(acked) >= 200 {
					once.Do(func() { close(ready) })
				}
				mu.Unlock()
			}
		})
	}
	<-ready
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("log serve returned %v after shutdown", err)
	}
	wg.Wait()

	b, _ := os.ReadFile(key)
	s, _, err := tlog.NewSigner(string(b))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(strings.TrimSpace(vkey))
	e, err := badgerlog.Open(t.Context(), badgerlog.Config{Dir: filepath.Join(data, "engine"), Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	enginetest.Check(t, e, v, nil)
	for idx, entry := range acked {
		bundle, err := e.ReadEntryBundle(t.Context(), idx/256, 0)
		if err != nil {
			cp, _ := e.Checkpoint(t.Context())
			c, _ := tlog.ParseCheckpoint(cp[:bytes.Index(cp, []byte("\n\n"))+1])
			if bundle, err = e.ReadEntryBundle(t.Context(), idx/256, uint8(c.Size%256)); err != nil {
				t.Fatalf("acknowledged entry %d is missing after shutdown: %v", idx, err)
			}
		}
		entries, _ := tlog.ParseBundle(bundle)
		if got := string(entries[idx%256]); got != entry {
			t.Errorf("entry %d = %q, want the acknowledged %q", idx, got, entry)
		}
	}
}

func TestBenchAppend(t *testing.T) {
	out, err := runLogCmd(t.Context(), "bench", "append", "--entries", "300", "--writers", "8", "--dir", t.TempDir())
	if err != nil {
		t.Fatalf("bench append = %v", err)
	}
	for _, want := range []string{"OPS/S", "P99 ms", "CPU%", "PEAK RSS", " badger  300 ", " tessera-posix  300 ", "badger/tessera entries/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench append printed %q, want it to contain %q (the table of both engines and their ratio)", out, want)
		}
	}
	for _, args := range [][]string{{"--entries", "0"}, {"--writers", "0"}, {"--size", "65536"}} {
		var ue usageError
		if _, err := runLogCmd(t.Context(), append([]string{"bench", "append"}, args...)...); !errors.As(err, &ue) {
			t.Errorf("bench append %q = %v, want a usage error", args, err)
		}
	}
}

// TestLogRevokeUsage: revoke names its key by exactly one of --key PEM or
// --keyid ID, and a --key that is not a PEM public key is the user's to fix.
func TestLogRevokeUsage(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tok, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"log", "revoke", "--log", "http://127.0.0.1:1", "--admin-token-file", tok}
	for _, extra := range [][]string{
		nil,
		{"--key", notPEM, "--keyid", strings.Repeat("ab", 32)},
		{"--key", notPEM},
	} {
		args := append(append([]string{}, base...), extra...)
		var ue usageError
		if _, err := runLogCmd(t.Context(), args...); !errors.As(err, &ue) {
			t.Errorf("%q = %v, want a usage error", args, err)
		}
	}
}
