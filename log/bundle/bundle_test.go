package bundle

import (
	"bytes"
	"errors"
	"strings"
	"testing"

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
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.in)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	good, _ := sample().Marshal()
	f.Add(good)
	f.Add([]byte(`{"mediaType":"","entry":"","proof":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
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
