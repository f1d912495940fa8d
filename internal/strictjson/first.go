package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ReadFirst reads data as a reader that matches keys exactly and keeps the
// first of repeated keys does (as a person scanning the text, or some
// streaming parsers): objects become map[string]any, lists []any, numbers
// json.Number, null nil. repeated reports whether any object repeated a key
// (after unescaping). It is the other side of the differential tests: what
// Decode accepts must read the same here.
func ReadFirst(data []byte) (v any, repeated bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var read func(depth int) (any, error)
	read = func(depth int) (any, error) {
		if depth > MaxDepth {
			return nil, errors.New("nested too deeply")
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case json.Delim('{'):
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				val, err := read(depth + 1)
				if err != nil {
					return nil, err
				}
				if _, dup := m[k]; dup {
					repeated = true
					continue
				}
				m[k] = val
			}
			_, err := dec.Token()
			return m, err
		case json.Delim('['):
			l := []any{}
			for dec.More() {
				val, err := read(depth + 1)
				if err != nil {
					return nil, err
				}
				l = append(l, val)
			}
			_, err := dec.Token()
			return l, err
		}
		return tok, nil
	}
	v, err = read(0)
	if err != nil {
		return nil, false, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, errors.New("data after the JSON value")
	}
	return v, repeated, nil
}
