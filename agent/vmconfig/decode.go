package vmconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The JSON and YAML decoders report a wrong type or an unknown key in Go's
// terms ("cannot unmarshal !!str `x` into uint64", "field memroy not found in
// type vmconfig.File", "nics.vlan" without the index), or not at all (a
// repeated JSON key keeps the last value). checkJSON and checkYAML walk the
// input first, against the Go type it will be decoded into, and refuse what
// the decoder would refuse — and a little more: a repeated key, a key in
// another case, a size without a unit — as a FieldError that names the
// field in the file's own terms ("nics[1].vlan"). The decoders run after
// them and remain the authority; their errors are only a backstop.

var sizeType = reflect.TypeFor[Size]()

// maxDepth bounds the nesting the walkers follow; the file format nests
// four deep.
const maxDepth = 64

// fieldPath returns the path of key in the object at path.
func fieldPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexPath returns the path of element i of the list at path.
func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// structFields maps the file's key names of struct type t (its json tags,
// which equal its yaml tags) to the field types.
func structFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "" && name != "-" {
			m[name] = f.Type
		}
	}
	return m
}

func unknownField(path string, fields map[string]reflect.Type) error {
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	slices.Sort(known)
	return fieldErr(path, ErrUnsupported, "unknown field (the known fields are %s; names are case-sensitive)", strings.Join(known, ", "))
}

// want describes what a value of type t is written as.
func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		return "an object"
	case reflect.Slice:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Uint64:
		return "a non-negative whole number"
	}
	return t.Kind().String()
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// noUnit is the message for a size written as a bare number.
func noUnit(n string) string {
	return fmt.Sprintf("size %s has no unit: write e.g. \"%sGiB\", \"%sMiB\" or \"%sb\"", n, n, n, n)
}

// checkJSON walks the JSON text data against the type root (a pointer to
// the struct it will be decoded into): a repeated key, a key the type does
// not have (names match exactly, where encoding/json would also accept
// another case), a value of the wrong JSON type, a negative or fractional
// count, a size that is not a string. A JSON syntax error is reported as
// the decoder reports it. null is accepted wherever encoding/json accepts
// it (it leaves the field unset).
func checkJSON(data []byte, root reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var walk func(path string, t reflect.Type, depth int) error
	walk = func(path string, t reflect.Type, depth int) error {
		if depth > maxDepth {
			return errors.New("JSON: nested too deeply")
		}
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("JSON: %w", err)
		}
		if tok == nil {
			return nil
		}
		t = deref(t)
		bad := func() error {
			got := describeJSON(tok)
			if path == "" {
				return fmt.Errorf("JSON: the configuration is %s, want an object", got)
			}
			return fieldErr(path, ErrInvalid, "want %s, got %s", want(t), got)
		}
		switch {
		case t == sizeType:
			switch v := tok.(type) {
			case string:
				return nil
			case json.Number:
				return fieldErr(path, ErrInvalid, "%s", noUnit(v.String()))
			}
			return fieldErr(path, ErrInvalid, "want a size with a unit such as \"8GiB\", got %s", describeJSON(tok))
		case t.Kind() == reflect.Struct:
			if tok != json.Delim('{') {
				return bad()
			}
			fields := structFields(t)
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return fmt.Errorf("JSON: %w", err)
				}
				k, _ := kt.(string)
				p := fieldPath(path, k)
				if seen[k] {
					return fieldErr(p, ErrAmbiguous, "key appears twice")
				}
				seen[k] = true
				ft, ok := fields[k]
				if !ok {
					return unknownField(p, fields)
				}
				if err := walk(p, ft, depth+1); err != nil {
					return err
				}
			}
		case t.Kind() == reflect.Slice:
			if tok != json.Delim('[') {
				return bad()
			}
			for i := 0; dec.More(); i++ {
				if err := walk(indexPath(path, i), t.Elem(), depth+1); err != nil {
					return err
				}
			}
		case t.Kind() == reflect.String:
			if _, ok := tok.(string); !ok {
				return bad()
			}
			return nil
		case t.Kind() == reflect.Bool:
			if _, ok := tok.(bool); !ok {
				return bad()
			}
			return nil
		case t.Kind() == reflect.Uint64:
			n, ok := tok.(json.Number)
			if !ok {
				return bad()
			}
			if _, err := strconv.ParseUint(n.String(), 10, 64); err != nil {
				return bad()
			}
			return nil
		default:
			panic("vmconfig: checkJSON: no rule for " + t.String())
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return fmt.Errorf("JSON: %w", err)
		}
		return nil
	}
	return walk("", root, 0)
}

func describeJSON(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return "a list"
	case string:
		return "the string " + strconv.Quote(abbrev(v))
	case json.Number:
		return "the number " + abbrev(v.String())
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(tok)
}

func decodeJSON(data []byte, v any) error {
	if err := checkJSON(data, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
			return wrapField(te.Field, ErrInvalid, fmt.Errorf("want %s, got JSON %s", want(deref(te.Type)), te.Value))
		}
		return fmt.Errorf("JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("JSON: trailing data after the configuration object")
	}
	return nil
}

func decodeYAML(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return errors.New("YAML: empty document")
		}
		return fmt.Errorf("YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return fmt.Errorf("YAML: %w", err)
		}
		return fmt.Errorf("%w: YAML: a second document starts at line %d; a configuration is one document", ErrAmbiguous, extra.Line)
	}
	if len(doc.Content) != 1 {
		return errors.New("YAML: empty document")
	}
	if err := checkYAML(doc.Content[0], reflect.TypeOf(v), "", 0); err != nil {
		return err
	}
	// The walk found nothing; decode for real, still strictly.
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("YAML: %w", err)
	}
	return nil
}

// checkYAML walks the YAML node n against the type t it will be decoded
// into, as checkJSON does for JSON: a repeated key, a key t does not have, a
// node of the wrong kind, a scalar that does not decode into its field, a
// size that is not a string. Anchors, aliases and merge keys are refused: a
// configuration that is measured and attested should say each value once,
// where it applies.
func checkYAML(n *yaml.Node, t reflect.Type, path string, depth int) error {
	if depth > maxDepth {
		return errors.New("YAML: nested too deeply")
	}
	at := func() string {
		if path == "" {
			return "the document"
		}
		return path
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return fieldErr(at(), ErrUnsupported, "line %d: YAML anchors and aliases are not supported in a configuration: write the value out", n.Line)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // what the decoder does: the field stays unset
	}
	t = deref(t)
	bad := func() error {
		if path == "" {
			return fmt.Errorf("YAML: line %d: the configuration is %s, want a mapping", n.Line, describeYAML(n))
		}
		return fieldErr(path, ErrInvalid, "line %d: want %s, got %s", n.Line, want(t), describeYAML(n))
	}
	switch {
	case t == sizeType:
		switch {
		case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
			return nil
		case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int":
			return fieldErr(path, ErrInvalid, "line %d: %s", n.Line, noUnit(abbrev(n.Value)))
		}
		return fieldErr(path, ErrInvalid, "line %d: want a size with a unit such as 8GiB, got %s", n.Line, describeYAML(n))
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return bad()
		}
		fields := structFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := fieldPath(path, k.Value)
			if k.ShortTag() == "!!merge" {
				return fieldErr(p, ErrUnsupported, "line %d: YAML merge keys are not supported in a configuration: write the fields out", k.Line)
			}
			if line, dup := seen[k.Value]; dup {
				return fieldErr(p, ErrAmbiguous, "line %d: key appears twice (first at line %d)", k.Line, line)
			}
			seen[k.Value] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				return unknownField(p, fields)
			}
			if err := checkYAML(val, ft, p, depth+1); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return bad()
		}
		for i, e := range n.Content {
			if err := checkYAML(e, t.Elem(), indexPath(path, i), depth+1); err != nil {
				return err
			}
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return bad()
		}
		// A scalar decodes here exactly as it will in the whole document.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return bad()
		}
	}
	return nil
}

func describeYAML(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "the string " + strconv.Quote(abbrev(n.Value))
		case "!!int", "!!float":
			return "the number " + abbrev(n.Value)
		case "!!bool":
			return abbrev(n.Value)
		}
		return "the " + n.ShortTag() + " value " + strconv.Quote(abbrev(n.Value))
	}
	return "a YAML node of kind " + strconv.Itoa(int(n.Kind))
}
