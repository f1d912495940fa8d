package witness

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmledger/vmledger/witness/policy"
)

// FuzzParseAddCheckpoint: the body parser never panics, and whatever it
// accepts re-encodes to identical bytes. Seeds are in
// testdata/fuzz/FuzzParseAddCheckpoint.
func FuzzParseAddCheckpoint(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseAddCheckpoint(body)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseAddCheckpoint error %T is not a *ParseError", err)
			}
			return
		}
		if got := req.Marshal(); !bytes.Equal(got, body) {
			t.Fatalf("ParseAddCheckpoint(%q).Marshal() = %q", body, got)
		}
		if len(req.Proof) > MaxProofLines || bytes.IndexByte(body, '\r') >= 0 {
			t.Fatalf("accepted %q", body)
		}
	})
}

// TestMangledRequests: every truncation and every single-byte change of the
// spec's 5→8 request is refused (never cosigned), and never a 500.
func TestMangledRequests(t *testing.T) {
	l := newTestLog(t, 8)
	tw := newTestWitness(t, witnessOpts{logs: []*policy.Log{l.policyLog(t, "")}})
	mustCosign(t, tw.url, l.body(0, 5))
	body := []byte(specBody5to8)
	check := func(what string, b []byte) {
		t.Helper()
		_, err := tw.w.AddCheckpoint(t.Context(), b)
		if err == nil {
			t.Fatalf("%s: AddCheckpoint(%q) cosigned", what, b)
		}
		var pe *ParseError
		var ce *ConflictError
		var rl *RateLimitError
		switch {
		case errors.As(err, &pe), errors.As(err, &ce), errors.As(err, &rl),
			errors.Is(err, ErrUnknownOrigin), errors.Is(err, ErrNoTrustedSignature),
			errors.Is(err, ErrOldTooLarge), errors.Is(err, ErrUnprocessable):
		default:
			t.Fatalf("%s: AddCheckpoint(%q) = %v, an internal error", what, b, err)
		}
	}
	for i := range body {
		check("truncation", body[:i])
	}
	for i := range body {
		for _, x := range []byte{0x01, 0x20, 0x80} {
			b := bytes.Clone(body)
			b[i] ^= x
			check("byte change", b)
		}
	}
	// The unmangled request still works: nothing above changed the state.
	if _, err := tw.w.AddCheckpoint(t.Context(), body); err != nil {
		t.Fatalf("AddCheckpoint(spec body) after mangling = %v", err)
	}
}
