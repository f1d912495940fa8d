package coproc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Format errors. Parse functions return a *FormatError that wraps one of
// these, so callers decide with errors.Is and report the field.
var (
	ErrTooLarge     = errors.New("too large")
	ErrMalformed    = errors.New("malformed JSON")
	ErrDuplicateKey = errors.New("duplicate key")
	ErrUnknownField = errors.New("unknown field")
	ErrWrongType    = errors.New("wrong type")
	ErrBadBase64    = errors.New("bad base64")
	ErrNotCanonical = errors.New("not canonical")
	ErrInvalidField = errors.New("invalid field")
)

// FormatError reports why an envelope or statement was rejected.
type FormatError struct {
	Object string // "envelope" or "statement"
	Field  string // JSON path of the offending field, "" for the whole object
	Err    error  // one of the sentinels above
	Detail string
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("coproc: ")
	b.WriteString(e.Object)
	if e.Field != "" {
		b.WriteString(" ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

func (e *FormatError) Unwrap() error { return e.Err }

// maxDepth bounds JSON nesting; our objects nest 4 deep.
const maxDepth = 16

// decodeStrict decodes b into v: valid UTF-8, one JSON value, no duplicate
// keys at any level, no unknown fields, matching types.
func decodeStrict(object string, b []byte, v any) error {
	ferr := func(field string, sentinel error, format string, args ...any) error {
		return &FormatError{Object: object, Field: field, Err: sentinel, Detail: fmt.Sprintf(format, args...)}
	}
	if !utf8.Valid(b) {
		return ferr("", ErrMalformed, "invalid UTF-8")
	}
	if err := checkKeys(b); err != nil {
		var de *duplicateKeyError
		if errors.As(err, &de) {
			return ferr(de.path, ErrDuplicateKey, "%q", de.key)
		}
		return ferr("", ErrMalformed, "%v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return ferr(te.Field, ErrWrongType, "JSON %s where %s belongs", te.Value, te.Type)
		case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return ferr("", ErrMalformed, "%v", err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return ferr(strings.TrimPrefix(err.Error(), "json: unknown field "), ErrUnknownField, "")
		default:
			return ferr("", ErrMalformed, "%v", err)
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return ferr("", ErrMalformed, "data after the JSON value")
	}
	return nil
}

type duplicateKeyError struct{ path, key string }

func (e *duplicateKeyError) Error() string { return "duplicate key " + e.key + " in " + e.path }

// checkKeys scans b and reports a repeated key in any object
// (encoding/json would silently keep the last one) and nesting deeper than
// maxDepth. It reads only the structure (strings, brackets, braces): the
// strict decoding that follows it reports every syntax error, and for
// malformed input checkKeys may report one too or not. Keys are compared
// after unescaping, so "a" and "\u0061" are the same key.
func checkKeys(b []byte) error {
	type frame struct {
		object    bool
		expectKey bool
		path      string
		keys      []string // the keys seen, while few
		seen      map[string]bool
	}
	var stack []frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].expectKey = true
		}
	}
	lastKey := ""
	for i := 0; i < len(b); {
		switch c := b[i]; c {
		case ' ', '\t', '\n', '\r', ',', ':':
			i++
		case '"':
			j, escaped := i+1, false
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					escaped = true
					j++
				}
				j++
			}
			if j >= len(b) {
				return errors.New("unterminated string")
			}
			raw := b[i : j+1]
			i = j + 1
			n := len(stack)
			if n == 0 || !stack[n-1].object || !stack[n-1].expectKey {
				valueDone()
				continue
			}
			top := &stack[n-1]
			var k string
			// A key with escapes, or with bytes that are not UTF-8 (which
			// encoding/json turns into U+FFFD, so that two different byte
			// strings name one field), is compared as encoding/json decodes it.
			if escaped || !utf8.Valid(raw) {
				if err := json.Unmarshal(raw, &k); err != nil {
					return err
				}
			} else {
				k = string(raw[1 : len(raw)-1])
			}
			if top.seen != nil {
				if top.seen[k] {
					return &duplicateKeyError{path: top.path, key: k}
				}
				top.seen[k] = true
			} else {
				if slices.Contains(top.keys, k) {
					return &duplicateKeyError{path: top.path, key: k}
				}
				top.keys = append(top.keys, k)
				if len(top.keys) > 16 { // many keys: a map keeps this linear
					top.seen = make(map[string]bool, 2*len(top.keys))
					for _, k := range top.keys {
						top.seen[k] = true
					}
				}
			}
			top.expectKey = false
			lastKey = k
		case '{', '[':
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
			stack = append(stack, frame{object: c == '{', expectKey: true, path: path})
			i++
		case '}', ']':
			if len(stack) == 0 {
				return fmt.Errorf("unexpected %q", c)
			}
			stack = stack[:len(stack)-1]
			valueDone()
			i++
		default: // a number or literal: up to the next delimiter
			for i < len(b) && !strings.ContainsRune(" \t\n\r,:]}\"{[", rune(b[i])) {
				i++
			}
			valueDone()
		}
	}
	return nil
}

// marshalCanonical encodes v as compact JSON in struct field order without
// HTML escaping and without a trailing newline.
func marshalCanonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeBase64 decodes standard padded base64 and accepts only the canonical
// form: no line breaks, no non-zero padding bits.
func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, err
	}
	if base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("not canonical base64")
	}
	return b, nil
}
