package bundle

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/internal/strictjson"
	"github.com/vmledger/vmledger/log/tlog"
)

func sample() *Bundle {
	return &Bundle{
		Entry: []byte(`{"payloadType":"x","payload":"eA==","signatures":[]}`),
		Proof: tlog.Proof{
			Index:      3,
			Hashes:     []tlog.Hash{{1}, {2}},
			Checkpoint: []byte("example.com/log\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— example.com/log AAAA\n"),
		},
	}
}

func TestRoundTrip(t *testing.T) {
	b := sample()
	enc, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(enc)
	if err != nil {
		t.Fatalf("Parse(Marshal(b)) = %v", err)
	}
	if !bytes.Equal(got.Entry, b.Entry) || got.Proof.Index != 3 || len(got.Proof.Hashes) != 2 || !bytes.Equal(got.Proof.Checkpoint, b.Proof.Checkpoint) {
		t.Fatalf("Parse(Marshal(b)) = %+v, want %+v", got, b)
	}
	again, _ := got.Marshal()
	if !bytes.Equal(again, enc) {
		t.Fatalf("re-encoding differs:\n%s\nvs\n%s", again, enc)
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := sample().Marshal()
	s := string(good)
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"array", "[]"},
		{"unknown member", strings.Replace(s, `"mediaType"`, `"extra": "x", "mediaType"`, 1)},
		{"repeated member", strings.Replace(s, `"mediaType"`, `"entry": "eA==", "mediaType"`, 1)},
		{"missing proof", `{"mediaType":"` + MediaType + `","entry":"eA=="}`},
		{"wrong media type", strings.Replace(s, MediaType, "application/json", 1)},
		{"bad base64", strings.Replace(s, `"entry": "`, `"entry": "!`, 1)},
		{"non-canonical base64", `{"mediaType":"` + MediaType + `","entry":"eB==","proof":"x"}`},
		{"empty entry", `{"mediaType":"` + MediaType + `","entry":"","proof":"x"}`},
		{"number member", `{"mediaType":"` + MediaType + `","entry":1,"proof":"x"}`},
		{"bad proof", strings.Replace(s, "tlog-proof@v1", "tlog-proof@v2", 1)},
		{"trailing data", s + "{}"},
		{"too large", `{"mediaType":"` + strings.Repeat("x", MaxSize) + `"}`},
		// Case variants: encoding/json matches keys without regard to case
		// and keeps the last; jq or a person reads the first.
		{"case-variant entry", strings.Replace(s, `"mediaType"`, `"Entry": "eA==", "mediaType"`, 1)},
		{"case-variant entry after", strings.Replace(s, "\n}", ",\n  \"ENTRY\": \"eA==\"\n}", 1)},
		{"case-variant proof", strings.Replace(s, `"mediaType"`, `"Proof": "x", "mediaType"`, 1)},
		{"case-variant media type alone", strings.Replace(s, `"mediaType"`, `"mediatype"`, 1)},
		{"escaped repeated member", strings.Replace(s, `"mediaType"`, `"\u0065ntry": "eA==", "mediaType"`, 1)},
		{"invalid UTF-8 in a member name", strings.Replace(s, `"mediaType"`, "\"x\xff\": \"y\", \"mediaType\"", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.in)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %v, want ErrMalformed", err)
			}
		})
	}
}

// FuzzParse: a parsed bundle round-trips, and Parse is differential-tested
// against a reader that matches member names exactly and keeps the first of
// repeated members (strictjson.ReadFirst, as jq's users or a person may
// read it): whatever Parse accepts has each member exactly once, and the
// entry and proof that reader sees are the ones Parse returns.
func FuzzParse(f *testing.F) {
	good, _ := sample().Marshal()
	f.Add(good)
	f.Add([]byte(`{"mediaType":"","entry":"","proof":""}`))
	s := string(good)
	f.Add([]byte(strings.Replace(s, `"mediaType"`, `"Entry": "eA==", "mediaType"`, 1)))
	f.Add([]byte(strings.Replace(s, `"mediaType"`, `"entry": "eA==", "mediaType"`, 1)))
	f.Add([]byte(strings.Replace(s, `"mediaType"`, `"\u0065ntry": "eA==", "mediaType"`, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
		}
		v, repeated, err := strictjson.ReadFirst(data)
		if err != nil || repeated {
			t.Fatalf("Parse accepted what a first-wins reader reads with error %v, repeated keys %v: %q", err, repeated, data)
		}
		m, _ := v.(map[string]any)
		if len(m) != 3 {
			t.Fatalf("Parse accepted members %v, want exactly mediaType, entry, proof: %q", m, data)
		}
		entry, _ := m["entry"].(string)
		proof, _ := m["proof"].(string)
		if m["mediaType"] != MediaType || base64.StdEncoding.EncodeToString(b.Entry) != entry {
			t.Fatalf("a first-wins reader sees mediaType %v and entry %q, Parse the entry %q: %q", m["mediaType"], entry, b.Entry, data)
		}
		if p, err := tlog.ParseProof([]byte(proof)); err != nil || !bytes.Equal(p.Marshal(), b.Proof.Marshal()) {
			t.Fatalf("a first-wins reader sees another proof (%v): %q", err, data)
		}
		enc, err := b.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed bundle: %v", err)
		}
		b2, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(x))) = %v", err)
		}
		if !bytes.Equal(b2.Entry, b.Entry) || !bytes.Equal(b2.Proof.Marshal(), b.Proof.Marshal()) {
			t.Fatal("round trip changed the bundle")
		}
	})
}
