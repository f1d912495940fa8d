package coproc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
)

// checkKeysTokens is the former checkKeys, kept as the reference: it walks the JSON tokens of b and reports a repeated key in any
// object (encoding/json would silently keep the last one) and nesting deeper
// than maxDepth.
func checkKeysTokens(b []byte) error {
	type frame struct {
		object    bool
		expectKey bool
		path      string
		seen      map[string]bool
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].expectKey = true
		}
	}
	lastKey := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
			top := stack[n-1]
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			k, ok := tok.(string)
			if !ok {
				return fmt.Errorf("object key is not a string")
			}
			if top.seen[k] {
				return &duplicateKeyError{path: top.path, key: k}
			}
			top.seen[k] = true
			top.expectKey = false
			lastKey = k
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxDepth {
				return fmt.Errorf("nested deeper than %d", maxDepth)
			}
			path := "."
			if n := len(stack); n > 0 {
				if stack[n-1].object {
					path = strings.TrimSuffix(stack[n-1].path, ".") + "." + lastKey
				} else {
					path = stack[n-1].path + "[]"
				}
			}
			stack = append(stack, &frame{object: tok == json.Delim('{'), expectKey: true, path: path, seen: map[string]bool{}})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
}

// TestCheckKeysMatchesTokens checks the byte scanner against the token
// walker on valid JSON: the same verdict (duplicate or not, and where).
func TestCheckKeysMatchesTokens(t *testing.T) {
	for _, s := range checkKeysCases {
		t.Run(s, func(t *testing.T) { compareCheckKeys(t, []byte(s)) })
	}
}

var checkKeysCases = []string{
	`{}`, `[]`, `"x"`, `1`, `null`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`,
	`{"a":{"a":1},"b":[{"a":1,"a":2}]}`, `{"a":"}","b":"{\"","a":0}`, `[{"x":[1,2,{"y":true,"y":false}]}]`,
	`{"k\\":1,"k\\":2}`, `{"k\"":1,"k\\":2}`, ` { "a" : [ 1 , 2 ] , "b" : { } } `,
	`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"a":19}`,
	`[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]`, `[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]`,
	// Not UTF-8: encoding/json reads both keys as "a\uFFFD", one field
	// given twice (found by FuzzCheckKeys).
	"{\"a\xff\":1,\"a\xfe\":2}", "{\"\xef\":[{\"a\":0,\"a\":0}]}",
}

func compareCheckKeys(t *testing.T, b []byte) {
	if !json.Valid(b) {
		return // the strict decoding reports it; checkKeys may or may not
	}
	got, want := checkKeys(b), checkKeysTokens(b)
	var gd, wd *duplicateKeyError
	switch {
	case errors.As(want, &wd):
		if !errors.As(got, &gd) || *gd != *wd {
			t.Errorf("checkKeys(%s) = %v, want %v", b, got, want)
		}
	case (got == nil) != (want == nil):
		t.Errorf("checkKeys(%s) = %v, want %v", b, got, want)
	}
}

func FuzzCheckKeys(f *testing.F) {
	for _, s := range checkKeysCases {
		f.Add([]byte(s))
	}
	f.Fuzz(compareCheckKeys)
}

// BenchmarkParse measures the strict decoding of a real envelope and its
// statement (checkKeys is about half of it):
//
//	go test -run '^$' -bench Parse ./coproc
func BenchmarkParse(b *testing.B) {
	body, err := os.ReadFile("testdata/golden-ed25519.json")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		e, err := ParseEnvelope(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Statement(); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzCanonicalEnvelope: the fast path of ParseEnvelope accepts only what
// the strict decoder accepts, with the same result, and the envelope it
// returns re-encodes to the input.
func FuzzCanonicalEnvelope(f *testing.F) {
	golden, err := os.ReadFile("testdata/golden-ed25519.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"` + strings.Repeat("a", 64) + `","sig":"AA=="}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := parseCanonicalEnvelope(b)
		if !ok {
			return
		}
		var w wireEnvelope
		if err := decodeStrict("envelope", b, &w); err != nil {
			t.Fatalf("fast path accepted what the strict decoder rejects: %v\n%q", err, b)
		}
		if w.PayloadType != fast.PayloadType || len(w.Signatures) != 1 || w.Signatures[0].KeyID != fast.Signatures[0].KeyID ||
			w.Payload != base64.StdEncoding.EncodeToString(fast.Payload) || w.Signatures[0].Sig != base64.StdEncoding.EncodeToString(fast.Signatures[0].Sig) {
			t.Fatalf("fast path and strict decoder disagree on %q", b)
		}
		c, err := fast.Canonical()
		if err != nil || !bytes.Equal(c, b) {
			t.Fatalf("fast path's envelope re-encodes differently (%v):\n in %q\nout %q", err, b, c)
		}
	})
}

// TestCanonicalStatementFastPath: valid statements take the fast path (so
// that FuzzCanonicalStatement compares something), and small departures
// from the canonical layout leave it for the strict path.
func TestCanonicalStatementFastPath(t *testing.T) {
	for _, name := range []string{"testdata/golden-ed25519.json"} {
		golden, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		env, err := ParseEnvelope(golden)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := parseCanonicalStatement(env.Payload); !ok {
			t.Errorf("%s: the canonical statement does not take the fast path", name)
		}
		for _, edit := range [][2]string{
			{`"counter":7`, `"counter":07`},
			{`"counter":7`, `"counter":7.0`},
			{`"vm:`, `"vm:\u0077`},
			{`{"_type"`, ` {"_type"`},
			{`"leafCount":3`, `"leafCount":3,"leafCount":3`},
			{`"cpu.count",`, `"cpu.count" ,`},
		} {
			b := bytes.Replace(env.Payload, []byte(edit[0]), []byte(edit[1]), 1)
			if bytes.Equal(b, env.Payload) {
				t.Fatalf("%s: edit %q does not apply", name, edit[0])
			}
			if _, ok := parseCanonicalStatement(b); ok {
				t.Errorf("%s: fast path accepts %q", name, b)
			}
			if _, err := ParseStatement(b); err == nil {
				t.Errorf("%s: ParseStatement accepts %q", name, b)
			}
		}
	}
}

// FuzzCanonicalStatement: ParseStatement's fast path accepts exactly what
// the strict path accepts, with the same statement.
func FuzzCanonicalStatement(f *testing.F) {
	golden, err := os.ReadFile("testdata/golden-ed25519.json")
	if err != nil {
		f.Fatal(err)
	}
	env, err := ParseEnvelope(golden)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env.Payload)
	f.Add(bytes.Replace(env.Payload, []byte(`"`), []byte(`"\u00`), 1))
	f.Add([]byte(`{}`))
	// A TPM-attested statement and a v1 one.
	f.Add(bytes.Replace(env.Payload, []byte(`"attestedBy":"software"`), []byte(`"attestedBy":"tpm2-nv-certify","evidence":"AQ=="`), 1))
	if v1, err := os.ReadFile("testdata/golden-v1-ed25519.json"); err == nil {
		if e, err := ParseEnvelope(v1); err == nil {
			f.Add(e.Payload)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, fastOK := parseCanonicalStatement(b)
		strict, err := parseStatementStrict(b)
		if fastOK != (err == nil) {
			t.Fatalf("fast path ok=%v, strict path error %v, on %q", fastOK, err, b)
		}
		if fastOK && !reflect.DeepEqual(fast, strict) {
			t.Fatalf("fast and strict paths disagree on %q:\n%+v\n%+v", b, fast, strict)
		}
		if fastOK {
			if c, err := marshalCanonical(fast); err != nil || !bytes.Equal(c, b) {
				t.Fatalf("fast path's statement re-encodes differently (%v):\n in %q\nout %q", err, b, c)
			}
		}
	})
}
