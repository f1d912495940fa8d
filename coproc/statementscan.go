package coproc

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// parseCanonicalStatement reads a statement laid out exactly as
// marshalCanonical writes one, without a JSON decoder: the path every valid
// statement takes, in admission and in every verification. Each key and
// separator must be the canonical one, in the struct's field order; each
// string must be one that the encoder writes verbatim (valid UTF-8, no
// quote, backslash, control character, U+2028 or U+2029: those it would
// escape or replace); each number plain decimal without a leading zero.
// Then Validate. What it accepts therefore re-encodes to b, and the strict
// path would accept it with the same result; for anything else it returns
// false and the strict path says why. FuzzCanonicalStatement checks that
// the two agree.
func parseCanonicalStatement(b []byte) (*Statement, bool) {
	s := stmtScanner{b: b, ok: true}
	var st Statement
	s.lit(`{"_type":"`)
	st.Type = s.str()
	s.lit(`,"subject":[{"name":"`)
	name := s.str()
	s.lit(`,"digest":{"sha256":"`)
	digest := s.str()
	st.Subject = []Subject{{Name: name, Digest: Digest{SHA256: digest}}}
	s.lit(`}}],"predicateType":"`)
	st.PredicateType = s.str()
	p := &st.Predicate
	s.lit(`,"predicate":{"configSchema":"`)
	p.ConfigSchema = s.str()
	s.lit(`,"leafCount":`)
	p.LeafCount = s.uint(64)
	s.lit(`,"parameters":[`)
	p.Parameters = s.strings()
	s.lit(`,"coprocessor":{"keyid":"`)
	p.Coprocessor.KeyID = s.str()
	s.lit(`,"counter":`)
	p.Coprocessor.Counter = s.uint(64)
	s.lit(`,"rootNVIndex":`)
	p.Coprocessor.RootNVIndex = uint32(s.uint(32))
	s.lit(`,"counterNVIndex":`)
	p.Coprocessor.CounterNVIndex = uint32(s.uint(32))
	if s.opt(`,"attestedBy":"`) {
		p.Coprocessor.AttestedBy = s.str()
		if s.opt(`,"evidence":"`) {
			p.Coprocessor.Evidence = s.str()
		}
	}
	s.lit(`},"time":"`)
	p.Time = s.str()
	s.lit(`,"freshness":{"origin":"`)
	p.Freshness.Origin = s.str()
	s.lit(`,"size":`)
	p.Freshness.Size = s.uint(64)
	s.lit(`,"rootHash":"`)
	p.Freshness.RootHash = s.str()
	s.lit(`}}}`)
	if !s.ok || len(s.b) != 0 || st.Validate() != nil {
		return nil, false
	}
	return &st, true
}

// stmtScanner walks a canonical statement; ok turns false at the first
// byte that is not where the canonical layout puts it, and stays false.
type stmtScanner struct {
	b  []byte
	ok bool
}

// lit consumes the literal l.
func (s *stmtScanner) lit(l string) {
	if !s.ok || len(s.b) < len(l) || string(s.b[:len(l)]) != l {
		s.ok = false
		return
	}
	s.b = s.b[len(l):]
}

// opt consumes the literal l if the input continues with it.
func (s *stmtScanner) opt(l string) bool {
	if !s.ok || !bytes.HasPrefix(s.b, []byte(l)) {
		return false
	}
	s.b = s.b[len(l):]
	return true
}

// str consumes a string's contents and its closing quote (the opening one
// ends the literal before it).
func (s *stmtScanner) str() string {
	if !s.ok {
		return ""
	}
	i := bytes.IndexByte(s.b, '"')
	if i < 0 || !verbatimJSONString(s.b[:i]) {
		s.ok = false
		return ""
	}
	v := string(s.b[:i])
	s.b = s.b[i+1:]
	return v
}

// strings consumes the elements of a string array and its closing
// bracket (the opening one ends the literal before it).
func (s *stmtScanner) strings() []string {
	out := []string{} // as encoding/json decodes [] into a nil slice
	if s.ok && len(s.b) > 0 && s.b[0] == ']' {
		s.b = s.b[1:]
		return out
	}
	for s.ok {
		s.lit(`"`)
		out = append(out, s.str())
		if !s.ok || len(s.b) == 0 {
			s.ok = false
			break
		}
		c := s.b[0]
		s.b = s.b[1:]
		if c == ']' {
			return out
		}
		if c != ',' {
			s.ok = false
		}
	}
	return nil
}

// uint consumes a canonical decimal that fits in bits bits.
func (s *stmtScanner) uint(bits int) uint64 {
	if !s.ok {
		return 0
	}
	n := 0
	for n < len(s.b) && s.b[n] >= '0' && s.b[n] <= '9' {
		n++
	}
	if n == 0 || (n > 1 && s.b[0] == '0') {
		s.ok = false
		return 0
	}
	v, err := strconv.ParseUint(string(s.b[:n]), 10, bits)
	if err != nil {
		s.ok = false
		return 0
	}
	s.b = s.b[n:]
	return v
}

// verbatimJSONString reports whether encoding/json (without HTML
// escaping) writes the string b between its quotes unchanged.
func verbatimJSONString(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += size
	}
	return true
}
