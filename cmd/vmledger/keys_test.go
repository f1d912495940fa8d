package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/log/tlog"
)

// TestPublicKeyWherePrivateKeyExpected: giving log serve or witness serve
// the verifier key that keygen printed (or a PEM public key) as --key is
// refused with a message that says it is a public key and what to give
// instead, not "malformed private key".
func TestPublicKeyWherePrivateKeyExpected(t *testing.T) {
	dir := t.TempDir()
	vkey, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/ledger", "--out", filepath.Join(dir, "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := map[string]string{
		"verifier key": write("log.vkey", vkey),
		"PEM public key": write("host.pem", "-----BEGIN PUBLIC KEY-----\n"+
			"MCowBQYDK2VwAyEAgTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=\n-----END PUBLIC KEY-----\n"),
	}
	logs := write("logs.txt", "log "+strings.TrimSpace(vkey)+"\n")
	for what, file := range files {
		for cmd, args := range map[string][]string{
			"log serve":     {"log", "serve", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--key", file},
			"witness serve": {"witness", "serve", "--data", filepath.Join(dir, "w"), "--listen", "127.0.0.1:0", "--key", file, "--logs", logs},
		} {
			t.Run(cmd+" "+what, func(t *testing.T) {
				_, err := runLogCmd(t.Context(), args...)
				if err == nil {
					t.Fatalf("%s --key <%s> = nil error", cmd, what)
				}
				msg := err.Error()
				if !strings.Contains(msg, "public key") || !strings.Contains(msg, "PRIVATE+KEY+") || !strings.Contains(msg, file) {
					t.Errorf("%s --key <%s> = %q; want it to name the file, say it is a public key and that the private key is the PRIVATE+KEY+… file", cmd, what, msg)
				}
			})
		}
	}
}

// TestKeygenVKey: --vkey writes the verifier key keygen prints; if either
// file exists keygen writes neither, and changes neither.
func TestKeygenVKey(t *testing.T) {
	dir := t.TempDir()
	key, vkey := filepath.Join(dir, "log.key"), filepath.Join(dir, "log.vkey")
	out, err := runLogCmd(t.Context(), "keygen", "--name", "example.com/ledger", "--out", key, "--vkey", vkey)
	if err != nil {
		t.Fatalf("keygen --vkey = %v", err)
	}
	keyText, _ := os.ReadFile(key)
	vkeyText, err := os.ReadFile(vkey)
	if err != nil || string(vkeyText) != out {
		t.Fatalf("--vkey file holds %q (%v), keygen printed %q", vkeyText, err, out)
	}
	if _, printed, err := tlog.NewSigner(string(keyText)); err != nil || printed+"\n" != out {
		t.Fatalf("the key file's verifier key is %q (%v), keygen printed %q", printed, err, out)
	}
	for name, args := range map[string][]string{
		"existing --out":  {"--out", key, "--vkey", filepath.Join(dir, "new.vkey")},
		"existing --vkey": {"--out", filepath.Join(dir, "new.key"), "--vkey", vkey},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runLogCmd(t.Context(), append([]string{"keygen", "--name", "example.com/other"}, args...)...)
			if err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("keygen %q = %v, want a refusal", args, err)
			}
			for _, p := range []string{filepath.Join(dir, "new.key"), filepath.Join(dir, "new.vkey")} {
				if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the refused keygen created %s (%v)", p, err)
				}
			}
			if b, _ := os.ReadFile(key); !bytes.Equal(b, keyText) {
				t.Errorf("the refused keygen changed %s", key)
			}
			if b, _ := os.ReadFile(vkey); !bytes.Equal(b, vkeyText) {
				t.Errorf("the refused keygen changed %s", vkey)
			}
		})
	}
	var ue usageError
	if _, err := runLogCmd(t.Context(), "keygen", "--name", "a.example", "--out", filepath.Join(dir, "same"), "--vkey", filepath.Join(dir, ".", "same")); !errors.As(err, &ue) {
		t.Errorf("keygen with --vkey = --out: %v, want a usage error", err)
	}
}
