package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
