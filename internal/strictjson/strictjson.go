// Package strictjson decodes JSON into a Go struct so that every reader of
// the same bytes sees the same values.
//
// encoding/json matches an object's keys to struct fields without regard to
// case (and with Unicode folding: "ſ" matches "s"), keeps the last of
// repeated keys, and turns invalid UTF-8 into U+FFFD. So
// {"entry": A, "Entry": B} decodes to B, while jq, a JavaScript reader or a
// person may read A, and a rules file with "memory_bytes" and "Memory_Bytes"
// silently loses one rule. Decode first walks the input against the type it
// will be decoded into and refuses, with an *Error naming the field:
//
//   - invalid UTF-8 anywhere;
//   - a key repeated in one object (compared after unescaping, so "a" and
//     "\u0061" are the same key);
//   - a key that is not exactly the json name of a field (another case is
//     an unknown field here, where encoding/json would accept it);
//   - a JSON value of the wrong kind for the field (null is accepted inside
//     the value, where it leaves a field unset, but not as the whole value),
//     nesting deeper than MaxDepth, and anything after the value.
//
// encoding/json then decodes, with unknown fields disallowed, and stays the
// authority on everything the walk does not look at.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxDepth bounds nesting.
const MaxDepth = 32

// Sentinels wrapped by *Error.
var (
	ErrMalformed    = errors.New("malformed JSON")
	ErrDuplicateKey = errors.New("duplicate key")
	ErrUnknownField = errors.New("unknown field")
	ErrWrongType    = errors.New("wrong type")
)

// Error is a Decode failure: the field's path in the input ("" for the
// whole value), the sentinel and a detail.
type Error struct {
	Path   string
	Err    error
	Detail string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Decode decodes data into v (a pointer) strictly; see the package
// documentation.
func Decode(data []byte, v any) error {
	if !utf8.Valid(data) {
		return &Error{Err: ErrMalformed, Detail: "invalid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walk(dec, "", reflect.TypeOf(v), 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return &Error{Err: ErrMalformed, Detail: "data after the JSON value"}
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return &Error{Err: ErrMalformed, Detail: err.Error()}
	}
	return nil
}

// Fields maps the json names of struct type t's fields to their types. The
// fields of an embedded struct without a json name are promoted, as
// encoding/json does; a name given twice at one depth is dropped, as
// encoding/json ignores it, and a shallower field hides a deeper one.
func Fields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	hidden := map[string]bool{}
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			embedded = append(embedded, ft)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := m[name]; dup || hidden[name] {
			delete(m, name)
			hidden[name] = true
			continue
		}
		m[name] = f.Type
	}
	deeper := map[string]reflect.Type{}
	deeperDup := map[string]bool{}
	for _, et := range embedded {
		for n, ft := range Fields(et) {
			if _, dup := deeper[n]; dup {
				deeperDup[n] = true
			}
			deeper[n] = ft
		}
	}
	for n, ft := range deeper {
		if _, ok := m[n]; ok || hidden[n] || deeperDup[n] {
			continue
		}
		m[n] = ft
	}
	return m
}

var rawType = reflect.TypeFor[json.RawMessage]()

// walk reads one value from dec and checks it against t.
func walk(dec *json.Decoder, path string, t reflect.Type, depth int) error {
	if depth > MaxDepth {
		return &Error{Path: path, Err: ErrMalformed, Detail: fmt.Sprintf("nested deeper than %d", MaxDepth)}
	}
	tok, err := dec.Token()
	if err != nil {
		return &Error{Path: path, Err: ErrMalformed, Detail: err.Error()}
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if tok == nil {
		if depth == 0 {
			return &Error{Err: ErrWrongType, Detail: "null, want a value"}
		}
		return nil // null leaves the field unset, as in encoding/json
	}
	wrong := func(want string) error {
		return &Error{Path: path, Err: ErrWrongType, Detail: fmt.Sprintf("want %s, got %s", want, describe(tok))}
	}
	delim, isDelim := tok.(json.Delim)
	// Values whose content the type does not constrain: only their keys
	// are checked.
	if t == nil || t == rawType || t.Kind() == reflect.Interface || customDecoding(t) {
		if isDelim {
			return walkAny(dec, path, delim, depth)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if delim != '{' {
			return wrong("an object")
		}
		fields := Fields(t)
		var seen []string
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return &Error{Path: path, Err: ErrMalformed, Detail: err.Error()}
			}
			k := kt.(string)
			p := join(path, k)
			if slices.Contains(seen, k) {
				return &Error{Path: p, Err: ErrDuplicateKey, Detail: "the key appears twice"}
			}
			seen = append(seen, k)
			ft, ok := fields[k]
			if !ok {
				known := make([]string, 0, len(fields))
				for n := range fields {
					known = append(known, n)
				}
				slices.Sort(known)
				return &Error{Path: p, Err: ErrUnknownField, Detail: "the known fields are " + strings.Join(known, ", ") + " (names are case-sensitive)"}
			}
			if err := walk(dec, p, ft, depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		if delim != '{' {
			return wrong("an object")
		}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return &Error{Path: path, Err: ErrMalformed, Detail: err.Error()}
			}
			k := kt.(string)
			if seen[k] {
				return &Error{Path: join(path, k), Err: ErrDuplicateKey, Detail: "the key appears twice"}
			}
			seen[k] = true
			if err := walk(dec, join(path, k), t.Elem(), depth+1); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			if _, ok := tok.(string); !ok {
				return wrong("a base64 string")
			}
			return nil
		}
		if delim != '[' {
			return wrong("a list")
		}
		for i := 0; dec.More(); i++ {
			if err := walk(dec, path+"["+strconv.Itoa(i)+"]", t.Elem(), depth+1); err != nil {
				return err
			}
		}
	case reflect.String:
		if _, ok := tok.(string); !ok {
			return wrong("a string")
		}
		return nil
	case reflect.Bool:
		if _, ok := tok.(bool); !ok {
			return wrong("true or false")
		}
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := tok.(json.Number)
		if !ok {
			return wrong("a non-negative whole number")
		}
		if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			return wrong("a non-negative whole number that fits in " + strconv.Itoa(t.Bits()) + " bits")
		}
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := tok.(json.Number)
		if !ok {
			return wrong("a whole number")
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			return wrong("a whole number that fits in " + strconv.Itoa(t.Bits()) + " bits")
		}
		return nil
	default:
		// Other kinds (floats, types with their own UnmarshalJSON) are
		// left to encoding/json; only the keys inside are checked.
		if isDelim {
			return walkAny(dec, path, delim, depth)
		}
		return nil
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return &Error{Path: path, Err: ErrMalformed, Detail: err.Error()}
	}
	return nil
}

// walkAny reads the rest of an object or list opened by delim whose content
// no type constrains, refusing repeated keys at any level.
func walkAny(dec *json.Decoder, path string, delim json.Delim, depth int) error {
	seen := map[string]bool{}
	for i := 0; dec.More(); i++ {
		p := path + "[" + strconv.Itoa(i) + "]"
		if delim == '{' {
			kt, err := dec.Token()
			if err != nil {
				return &Error{Path: path, Err: ErrMalformed, Detail: err.Error()}
			}
			k := kt.(string)
			p = join(path, k)
			if seen[k] {
				return &Error{Path: p, Err: ErrDuplicateKey, Detail: "the key appears twice"}
			}
			seen[k] = true
		}
		if err := walk(dec, p, nil, depth+1); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return &Error{Path: path, Err: ErrMalformed, Detail: err.Error()}
	}
	return nil
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// customDecoding reports whether t decodes itself, so that its JSON form is
// not the one its kind suggests.
func customDecoding(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return t.Implements(jsonUnmarshaler) || p.Implements(jsonUnmarshaler) || t.Implements(textUnmarshaler) || p.Implements(textUnmarshaler)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' || v == '}' {
			return "an object"
		}
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "the number " + v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(tok)
}
