package coproc_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/coproc"
)

// TestParseEnvelopeRejects: each malformed entry is refused with the right
// sentinel.
func TestParseEnvelopeRejects(t *testing.T) {
	good := string(canonical(t, seal(t, goldenKey, goldenClaim, 1)))
	var w struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			KeyID string `json:"keyid"`
			Sig   string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal([]byte(good), &w); err != nil {
		t.Fatal(err)
	}
	keyid, sig, payload := w.Signatures[0].KeyID, w.Signatures[0].Sig, w.Payload
	env := func(pt, p, sigs string) string {
		return `{"payloadType":` + pt + `,"payload":` + p + `,"signatures":` + sigs + `}`
	}
	sigs := `[{"keyid":"` + keyid + `","sig":"` + sig + `"}]`
	q := func(s string) string { return `"` + s + `"` }
	pt := q(coproc.PayloadType)

	if env(pt, q(payload), sigs) != good {
		t.Fatalf("test setup: reassembled envelope differs from the canonical one")
	}
	for _, tc := range []struct {
		name  string
		input string
		want  error
	}{
		{"empty", ``, coproc.ErrMalformed},
		{"not json", `hello`, coproc.ErrMalformed},
		{"array", `[]`, coproc.ErrWrongType},
		{"invalid utf-8", strings.Replace(good, "application", "applic\xffation", 1), coproc.ErrMalformed},
		{"trailing data", good + `{}`, coproc.ErrMalformed},
		{"trailing newline", good + "\n", coproc.ErrNotCanonical},
		{"leading space", " " + good, coproc.ErrNotCanonical},
		{"space after colon", strings.Replace(good, `"payloadType":`, `"payloadType": `, 1), coproc.ErrNotCanonical},
		{"fields reordered", `{"payload":` + q(payload) + `,"payloadType":` + pt + `,"signatures":` + sigs + `}`, coproc.ErrNotCanonical},
		{"escaped character", env(`"application\/vnd.in-toto+json"`, q(payload), sigs), coproc.ErrNotCanonical},
		{"key in other case", strings.Replace(good, `"payloadType"`, `"PayloadType"`, 1), coproc.ErrNotCanonical},
		{"duplicate key", `{"payloadType":` + pt + `,"payloadType":` + pt + `,"payload":` + q(payload) + `,"signatures":` + sigs + `}`, coproc.ErrDuplicateKey},
		{"duplicate key in signature", env(pt, q(payload), `[{"keyid":"`+keyid+`","keyid":"`+keyid+`","sig":"`+sig+`"}]`), coproc.ErrDuplicateKey},
		{"unknown field", `{"payloadType":` + pt + `,"payload":` + q(payload) + `,"signatures":` + sigs + `,"extra":1}`, coproc.ErrUnknownField},
		{"unknown field in signature", env(pt, q(payload), `[{"keyid":"`+keyid+`","sig":"`+sig+`","cert":""}]`), coproc.ErrUnknownField},
		{"payload is a number", env(pt, `1`, sigs), coproc.ErrWrongType},
		{"signatures is an object", env(pt, q(payload), `{}`), coproc.ErrWrongType},
		{"sig is a number", env(pt, q(payload), `[{"keyid":"`+keyid+`","sig":5}]`), coproc.ErrWrongType},
		{"payload null", env(pt, `null`, sigs), coproc.ErrInvalidField},
		{"payload not base64", env(pt, q("!!!!"), sigs), coproc.ErrBadBase64},
		{"payload url-safe base64", env(pt, q(base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xbf})), sigs), coproc.ErrBadBase64},
		{"payload without padding", env(pt, q(strings.TrimRight(payload, "=")), sigs), coproc.ErrBadBase64},
		{"payload with a line break", env(pt, q(payload[:8]+`\n`+payload[8:]), sigs), coproc.ErrBadBase64},
		{"sig with non-zero padding bits", env(pt, q(payload), `[{"keyid":"`+keyid+`","sig":"QR=="}]`), coproc.ErrBadBase64},
		{"wrong payload type", env(q("application/json"), q(payload), sigs), coproc.ErrInvalidField},
		{"no signatures", env(pt, q(payload), `[]`), coproc.ErrInvalidField},
		{"two signatures", env(pt, q(payload), `[{"keyid":"`+keyid+`","sig":"`+sig+`"},{"keyid":"`+keyid+`","sig":"`+sig+`"}]`), coproc.ErrInvalidField},
		{"uppercase keyid", env(pt, q(payload), `[{"keyid":"`+strings.ToUpper(keyid)+`","sig":"`+sig+`"}]`), coproc.ErrInvalidField},
		{"empty keyid", env(pt, q(payload), `[{"keyid":"","sig":"`+sig+`"}]`), coproc.ErrInvalidField},
		{"empty sig", env(pt, q(payload), `[{"keyid":"`+keyid+`","sig":""}]`), coproc.ErrInvalidField},
		{"oversize", env(pt, q(base64.StdEncoding.EncodeToString(make([]byte, 50000))), sigs), coproc.ErrTooLarge},
		{"deeply nested", strings.Repeat("[", 100) + strings.Repeat("]", 100), coproc.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := coproc.ParseEnvelope([]byte(tc.input))
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseEnvelope(%.80q…) = %v, want %v", tc.input, err, tc.want)
			}
			var fe *coproc.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
		})
	}
	if _, err := coproc.ParseEnvelope([]byte(good)); err != nil {
		t.Fatalf("ParseEnvelope(good) = %v", err)
	}
}

// TestStatementRejects: each statement rule, violated once, is refused by
// Statement() with the right sentinel.
func TestStatementRejects(t *testing.T) {
	base := seal(t, goldenKey, goldenClaim, 1)
	good := string(base.Payload)
	for _, tc := range []struct {
		name string
		edit func(s string) string
		want error
	}{
		{"wrong _type", func(s string) string { return strings.Replace(s, "Statement/v1", "Statement/v0.1", 1) }, coproc.ErrInvalidField},
		{"wrong predicateType", func(s string) string { return strings.Replace(s, "vm-config/v2", "vm-config/v3", 1) }, coproc.ErrInvalidField},
		{"v1 with attestedBy", func(s string) string { return strings.Replace(s, "vm-config/v2", "vm-config/v1", 1) }, coproc.ErrInvalidField},
		{"unknown attestedBy", func(s string) string {
			return strings.Replace(s, `"attestedBy":"software"`, `"attestedBy":"hardware"`, 1)
		}, coproc.ErrInvalidField},
		{"software with evidence", func(s string) string {
			return strings.Replace(s, `"attestedBy":"software"`, `"attestedBy":"software","evidence":"AA=="`, 1)
		}, coproc.ErrInvalidField},
		{"tpm without evidence", func(s string) string {
			return strings.Replace(s, `"attestedBy":"software"`, `"attestedBy":"tpm2-nv-certify"`, 1)
		}, coproc.ErrBadBase64},
		{"wrong schema", func(s string) string { return strings.Replace(s, "vmledger/config/v1", "vmledger/config/v3", 1) }, coproc.ErrInvalidField},
		{"no vm: prefix", func(s string) string { return strings.Replace(s, `"vm:web-01"`, `"web-01"`, 1) }, coproc.ErrInvalidField},
		{"empty vm id", func(s string) string { return strings.Replace(s, `"vm:web-01"`, `"vm:"`, 1) }, coproc.ErrInvalidField},
		{"space in vm id", func(s string) string { return strings.Replace(s, `"vm:web-01"`, `"vm:web 01"`, 1) }, coproc.ErrInvalidField},
		{"uppercase digest", func(s string) string { return strings.Replace(s, "1e28f6db", "1E28F6DB", 1) }, coproc.ErrInvalidField},
		{"short digest", func(s string) string { return strings.Replace(s, "1e28f6db", "", 1) }, coproc.ErrInvalidField},
		{"two subjects", func(s string) string {
			i := strings.Index(s, `"subject":[`) + len(`"subject":[`)
			j := strings.Index(s, `}}]`) + 2
			return s[:j] + "," + s[i:j] + s[j:]
		}, coproc.ErrInvalidField},
		{"unsorted parameters", func(s string) string {
			return strings.Replace(s, `"cpu.count","kernel.cmdline"`, `"kernel.cmdline","cpu.count"`, 1)
		}, coproc.ErrInvalidField},
		{"repeated parameter", func(s string) string {
			return strings.Replace(s, `"cpu.count","kernel.cmdline"`, `"cpu.count","cpu.count"`, 1)
		}, coproc.ErrInvalidField},
		{"leaf count mismatch", func(s string) string { return strings.Replace(s, `"leafCount":3`, `"leafCount":4`, 1) }, coproc.ErrInvalidField},
		{"counter above 2^53-1", func(s string) string { return strings.Replace(s, `"counter":1`, `"counter":9007199254740992`, 1) }, coproc.ErrInvalidField},
		{"counter negative", func(s string) string { return strings.Replace(s, `"counter":1`, `"counter":-1`, 1) }, coproc.ErrWrongType},
		{"counter fractional", func(s string) string { return strings.Replace(s, `"counter":1`, `"counter":1.0`, 1) }, coproc.ErrWrongType},
		{"counter as string", func(s string) string { return strings.Replace(s, `"counter":1`, `"counter":"1"`, 1) }, coproc.ErrWrongType},
		{"counter exponent", func(s string) string { return strings.Replace(s, `"counter":1`, `"counter":1e0`, 1) }, coproc.ErrWrongType},
		{"time with offset", func(s string) string { return strings.Replace(s, `12:00:00Z`, `12:00:00+00:00`, 1) }, coproc.ErrInvalidField},
		{"time with fraction", func(s string) string { return strings.Replace(s, `12:00:00Z`, `12:00:00.5Z`, 1) }, coproc.ErrInvalidField},
		{"freshness root short", func(s string) string { return strings.Replace(s, `vBEUy8+Q`, ``, 1) }, coproc.ErrBadBase64},
		{"freshness origin empty", func(s string) string { return strings.Replace(s, `"example.com/ledger"`, `""`, 1) }, coproc.ErrInvalidField},
		{"unknown predicate field", func(s string) string { return strings.Replace(s, `"leafCount":3`, `"leafCount":3,"values":[]`, 1) }, coproc.ErrUnknownField},
		{"duplicate predicate key", func(s string) string { return strings.Replace(s, `"leafCount":3`, `"leafCount":3,"leafCount":3`, 1) }, coproc.ErrDuplicateKey},
		{"pretty printed", func(s string) string { return strings.Replace(s, `{"_type"`, `{ "_type"`, 1) }, coproc.ErrNotCanonical},
		{"keyid differs from signature", func(s string) string { return strings.Replace(s, base.Signatures[0].KeyID, strings.Repeat("a", 64), 1) }, coproc.ErrInvalidField},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.edit(good)
			if p == good {
				t.Fatalf("test setup: edit changed nothing")
			}
			e := &coproc.Envelope{PayloadType: base.PayloadType, Payload: []byte(p), Signatures: base.Signatures}
			if _, err := e.Statement(); !errors.Is(err, tc.want) {
				t.Fatalf("Statement() = %v, want %v\npayload %s", err, tc.want, p)
			}
		})
	}
	if _, err := base.Statement(); err != nil {
		t.Fatalf("Statement(good) = %v", err)
	}
}

func TestValidateClaim(t *testing.T) {
	mod := func(f func(c *coproc.Claim)) coproc.Claim {
		c := goldenClaim
		c.Parameters = append([]string{}, c.Parameters...)
		f(&c)
		return c
	}
	many := func(n, size int) []string {
		var p []string
		for i := range n {
			p = append(p, strings.Repeat("p", size-6)+string(rune('a'+i/26/26%26))+string(rune('a'+i/26%26))+string(rune('a'+i%26))+"xyz")
		}
		return p
	}
	for _, tc := range []struct {
		name string
		c    coproc.Claim
		want error // nil: valid
	}{
		{"golden", goldenClaim, nil},
		{"empty vm id", mod(func(c *coproc.Claim) { c.VMID = "" }), coproc.ErrInvalidClaim},
		{"vm id with newline", mod(func(c *coproc.Claim) { c.VMID = "a\nb" }), coproc.ErrInvalidClaim},
		{"vm id too long", mod(func(c *coproc.Claim) { c.VMID = strings.Repeat("v", 256) }), coproc.ErrInvalidClaim},
		{"unicode vm id", mod(func(c *coproc.Claim) { c.VMID = "größe-01" }), nil},
		{"no parameters", mod(func(c *coproc.Claim) { c.Parameters = nil }), coproc.ErrInvalidClaim},
		{"unsorted", mod(func(c *coproc.Claim) { c.Parameters[0], c.Parameters[1] = c.Parameters[1], c.Parameters[0] }), coproc.ErrInvalidClaim},
		{"repeated", mod(func(c *coproc.Claim) { c.Parameters[1] = c.Parameters[0] }), coproc.ErrInvalidClaim},
		{"non-ASCII parameter", mod(func(c *coproc.Claim) { c.Parameters[0] = "cpu.cöunt" }), coproc.ErrInvalidClaim},
		{"empty origin", mod(func(c *coproc.Claim) { c.Freshness.Origin = "" }), coproc.ErrInvalidClaim},
		{"size above 2^53-1", mod(func(c *coproc.Claim) { c.Freshness.Size = 1 << 53 }), coproc.ErrInvalidClaim},
		{"too many parameters", mod(func(c *coproc.Claim) { c.Parameters = many(coproc.MaxParameters+1, 10) }), coproc.ErrInvalidClaim},
		{"envelope too large", mod(func(c *coproc.Claim) { c.Parameters = many(300, 200) }), coproc.ErrTooLarge},
		{"largest that fits", mod(func(c *coproc.Claim) { c.Parameters = many(100, 200) }), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := coproc.ValidateClaim(tc.c)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("ValidateClaim = %v, want %v", err, tc.want)
			}
			if tc.want == nil {
				// A valid claim always seals into a valid entry.
				e, err := seal(t, goldenKey, tc.c, coproc.MaxSafeInteger).Canonical()
				if err != nil || len(e) > coproc.MaxEnvelopeSize {
					t.Fatalf("sealing a valid claim: %d bytes, %v", len(e), err)
				}
			}
		})
	}
}

func TestPAE(t *testing.T) {
	// The example of the DSSE specification (protocol.md).
	got := coproc.PAE("http://example.com/HelloWorld", []byte("hello world"))
	want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
	if string(got) != want {
		t.Fatalf("PAE = %q, want %q", got, want)
	}
	if got := coproc.PAE("", nil); !bytes.Equal(got, []byte("DSSEv1 0  0 ")) {
		t.Fatalf("PAE(empty) = %q", got)
	}
}
