package coproc_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmledger/vmledger/coproc"
)

// FuzzParseEnvelope: the parser never panics; whatever it accepts is the
// canonical encoding of what it returns (parse → encode is the identity),
// and the same holds one level down for the statement.
// Seeds: testdata/fuzz/FuzzParseEnvelope and the golden entry.
func FuzzParseEnvelope(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "golden-ed25519.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := coproc.ParseEnvelope(b)
		if err != nil {
			if e != nil {
				t.Fatalf("ParseEnvelope returned an envelope and an error")
			}
			return
		}
		c, err := e.Canonical()
		if err != nil {
			t.Fatalf("Canonical() of a parsed envelope: %v", err)
		}
		if !bytes.Equal(c, b) {
			t.Fatalf("parse → canonical changed the bytes:\n in %q\nout %q", b, c)
		}
		st, err := e.Statement()
		if err != nil {
			return
		}
		p, err := st.Canonical()
		if err != nil {
			t.Fatalf("Canonical() of a parsed statement: %v", err)
		}
		if !bytes.Equal(p, e.Payload) {
			t.Fatalf("statement parse → canonical changed the bytes:\n in %q\nout %q", e.Payload, p)
		}
		// Verification with an unrelated key must fail, not panic.
		if coproc.Verify(e, goldenKey.Public()) == nil && e.Signatures[0].KeyID != mustKeyID(t, goldenKey.Public()) {
			t.Fatalf("Verify accepted a keyid that is not the key's")
		}
	})
}
