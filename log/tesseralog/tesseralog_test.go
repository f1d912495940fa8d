package tesseralog

import (
	"crypto/rand"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/engine/enginetest"
	"github.com/vmledger/vmledger/log/tlog"
	"github.com/vmledger/vmledger/testing/mysqltest"
)

const origin = "test.example/log"

func newKey(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := tlog.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := tlog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func open(t testing.TB, c Config) *Engine {
	t.Helper()
	e, err := Open(t.Context(), c)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return e
}

func TestConformance(t *testing.T) {
	s, v := newKey(t)
	enginetest.Run(t, enginetest.Config{
		Verifier: v,
		NewLog: func(t *testing.T) func(t *testing.T) engine.Engine {
			dsn := mysqltest.NewDatabase(t)
			return func(t *testing.T) engine.Engine {
				return open(t, Config{DSN: dsn, Signer: s, BatchMaxAge: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond})
			}
		},
	})
}
