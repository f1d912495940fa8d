package strictjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type inner struct {
	Min uint64 `json:"min"`
	Max uint64 `json:"max,omitempty"`
}

type outer struct {
	Name  string          `json:"name"`
	Range *inner          `json:"range,omitempty"`
	List  []string        `json:"list,omitempty"`
	Flag  bool            `json:"flag,omitempty"`
	Raw   json.RawMessage `json:"raw,omitempty"`
	Small uint8           `json:"small,omitempty"`
	Kind  string          `json:"kind,omitempty"`
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error // nil: accepted
	}{
		{"valid", `{"name":"a","range":{"min":1,"max":2},"list":["x"],"flag":true,"raw":{"any":[1,{"b":2}]},"small":255}`, nil},
		{"null leaves unset", `{"name":null,"range":null,"list":null}`, nil},
		{"repeated key", `{"name":"a","name":"b"}`, ErrDuplicateKey},
		{"repeated key, escaped", `{"name":"a","\u006eame":"b"}`, ErrDuplicateKey},
		{"repeated nested key", `{"range":{"min":1,"min":2}}`, ErrDuplicateKey},
		{"repeated key in raw", `{"raw":{"a":1,"a":2}}`, ErrDuplicateKey},
		{"case variant", `{"name":"a","Name":"b"}`, ErrUnknownField},
		{"case variant alone", `{"NAME":"a"}`, ErrUnknownField},
		{"nested case variant", `{"range":{"MIN":1}}`, ErrUnknownField},
		{"Kelvin sign folds to k", `{"\u212aind":"x"}`, ErrUnknownField},
		{"long s folds to s", `{"li\u017ft":["x"]}`, ErrUnknownField},
		{"unknown", `{"other":1}`, ErrUnknownField},
		{"wrong type", `{"name":1}`, ErrWrongType},
		{"null as the whole value", `null`, ErrWrongType},
		{"negative", `{"range":{"min":-1}}`, ErrWrongType},
		{"fraction", `{"range":{"min":1.5}}`, ErrWrongType},
		{"too big for uint8", `{"small":256}`, ErrWrongType},
		{"list for object", `{"range":[]}`, ErrWrongType},
		{"invalid UTF-8", "{\"name\":\"\xff\"}", ErrMalformed},
		{"trailing value", `{"name":"a"} {}`, ErrMalformed},
		{"truncated", `{"name":"a"`, ErrMalformed},
		{"too deep", `{"raw":` + strings.Repeat("[", MaxDepth+2) + strings.Repeat("]", MaxDepth+2) + `}`, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v outer
			err := Decode([]byte(tc.in), &v)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Decode(%s) = %v, want accepted", tc.in, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode(%s) = %v, want %v", tc.in, err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode error %T is not an *Error", err)
			}
			// encoding/json alone accepts every one of these that is
			// well-formed JSON of the right types: that is the point.
			if tc.want == ErrDuplicateKey || tc.want == ErrUnknownField && !strings.Contains(tc.in, "other") {
				var plain outer
				if err := json.Unmarshal([]byte(tc.in), &plain); err != nil {
					t.Errorf("encoding/json refuses %s too (%v): the case tests nothing beyond it", tc.in, err)
				}
			}
		})
	}
}

func TestReadFirst(t *testing.T) {
	v, repeated, err := ReadFirst([]byte(`{"a":1,"b":{"c":[true,null]},"a":2}`))
	if err != nil || !repeated {
		t.Fatalf("ReadFirst = %v, repeated %v", err, repeated)
	}
	m := v.(map[string]any)
	if m["a"] != json.Number("1") {
		t.Fatalf("a = %v, want the first value 1", m["a"])
	}
	if _, _, err := ReadFirst([]byte(`{} x`)); err == nil {
		t.Fatal("ReadFirst accepted trailing data")
	}
}

type Base struct {
	ID string `json:"id"`
}

type withEmbedded struct {
	Base
	Name string `json:"name"`
}

// TestDecodeEmbedded: the fields of an embedded struct are promoted, as in
// encoding/json, and still matched exactly.
func TestDecodeEmbedded(t *testing.T) {
	var v withEmbedded
	if err := Decode([]byte(`{"id":"x","name":"y"}`), &v); err != nil || v.ID != "x" || v.Name != "y" {
		t.Fatalf("Decode = %v, %+v", err, v)
	}
	for _, in := range []string{`{"ID":"x"}`, `{"Base":{"id":"x"}}`, `{"id":"x","id":"y"}`} {
		if err := Decode([]byte(in), &v); err == nil {
			t.Errorf("Decode(%s) accepted it", in)
		}
	}
}

// FuzzDecode: whatever Decode accepts, a reader that matches keys exactly
// and keeps the first of repeated keys reads with no repeated key and only
// keys that are exactly the type's (at the two typed levels), and
// encoding/json decodes the same bytes to the same value.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"name":"a","range":{"min":1,"max":2},"list":["x"],"flag":true,"raw":{"any":[1,{"b":2}]},"small":255,"kind":"k"}`))
	f.Add([]byte(`{"name":"a","Name":"b"}`))
	f.Add([]byte(`{"range":{"min":1,"MIN":2}}`))
	f.Add([]byte(`{"\u212aind":"x"}`))
	f.Add([]byte(`{"raw":{"a":1,"a":2}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var v outer
		if err := Decode(data, &v); err != nil {
			return
		}
		var plain outer
		if err := json.Unmarshal(data, &plain); err != nil {
			t.Fatalf("Decode accepted what encoding/json refuses (%v): %q", err, data)
		}
		a, _ := json.Marshal(v)
		b, _ := json.Marshal(plain)
		if string(a) != string(b) {
			t.Fatalf("Decode and encoding/json disagree: %s vs %s for %q", a, b, data)
		}
		g, repeated, err := ReadFirst(data)
		if err != nil || repeated {
			t.Fatalf("Decode accepted %q, which a first-wins reader reads with error %v, repeated %v", data, err, repeated)
		}
		top, _ := g.(map[string]any)
		fields := Fields(reflect.TypeFor[outer]())
		for k := range top {
			if _, ok := fields[k]; !ok {
				t.Fatalf("Decode accepted key %q: %q", k, data)
			}
		}
		if r, ok := top["range"].(map[string]any); ok {
			for k := range r {
				if k != "min" && k != "max" {
					t.Fatalf("Decode accepted range key %q: %q", k, data)
				}
			}
		}
	})
}
