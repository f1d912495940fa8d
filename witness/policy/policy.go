// Package policy parses and evaluates C2SP tlog-policy files: which logs a
// party trusts, which witnesses, and how many cosignatures a checkpoint needs
// before it is believed.
//
// # Format
//
// A policy is UTF-8 text, one statement per line (https://c2sp.org/tlog-policy):
//
//	# comments run from '#' to the end of the line
//	log <vkey> [<url>]
//	witness <name> <vkey> [<url>]
//	group <name> <k|any|all> <member>...
//	quorum <name|none>
//
// A log's origin is the key name of its verifier key; a checkpoint must carry
// a valid signature by the log of its origin. A witness key is a C2SP
// signed-note verifier key of type 0x04 (cosignature/v1); a plain Ed25519 key
// (type 0x01) is normalised to the 0x04 key with the same public key, because
// that is the key ID its cosignature lines carry. A group is satisfied when at
// least k of its members are (any = 1, all = every member). The quorum names
// the witness or group that must be satisfied; "none" requires no cosignature.
// A name refers only to a witness or group defined on an earlier line.
//
// Worked example: three witnesses, any two of which must cosign.
//
//	log example.com/ledger+edb3e1ea+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU https://log.example/
//	witness w1 witness.example/w1+0ad7d35e+BIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c https://w1.example/
//	witness w2 ...
//	witness w3 ...
//	group two-of-three 2 w1 w2 w3
//	quorum two-of-three
//
// # Strictness
//
// This parser is stricter than others (the tlog-policy parser of
// transparency-dev/formats v0.1.1 accepts a threshold of 0 and counts a
// repeated member twice). It rejects: unknown keywords; a wrong number of
// fields; names that are keywords, invalid, or defined twice; references to
// names not defined on an earlier line; a group member listed twice; a
// threshold of 0, one above the number of members, or written with leading
// zeros; two witnesses or two logs with the same key; more than one quorum line
// or none at all; control characters (CR included) and invalid UTF-8.
//
// # Evaluation
//
// [Policy.Verify] opens a signed checkpoint note. Signatures by keys the policy
// does not know are ignored. A signature by a known key that fails is an error,
// whether it is the log's or a witness's: a note carrying a forged cosignature
// is not "a note with one cosignature fewer". Each witness counts once within
// a group, however many cosignature lines of its key the note carries (a key
// cannot be listed under two names). A witness that belongs to two groups
// counts towards both: that is what the policy's author wrote.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Policy is a parsed tlog-policy. It is immutable after Parse and safe for
// concurrent use.
type Policy struct {
	// Logs are the trusted logs in file order.
	Logs []*Log
	// Witnesses are the witnesses in file order.
	Witnesses []*Witness
	// Quorum is what must be satisfied; nil means "quorum none".
	Quorum Component

	logByOrigin map[string]*Log
}

// Log is a trusted log.
type Log struct {
	// Origin is the log's origin: the name of its verifier key.
	Origin string
	// VKey is the verifier key as written in the policy.
	VKey string
	// Verifier checks the log's checkpoint signatures.
	Verifier note.Verifier
	// URL is the log's optional base URL (tlog-tiles prefix), or nil.
	URL *url.URL
}

// Witness is a witness named in the policy.
type Witness struct {
	// Name is the policy-local name of the witness.
	Name string
	// VKey is the witness's cosignature/v1 (type 0x04) verifier key, after
	// normalisation of a type 0x01 key.
	VKey string
	// Verifier checks the witness's cosignature/v1 lines.
	Verifier note.Verifier
	// URL is the witness's optional base URL (its add-checkpoint endpoint is
	// URL/add-checkpoint), or nil.
	URL *url.URL
}

// Group is a threshold group.
type Group struct {
	Name      string
	Threshold int
	Members   []Component
}

// Component is a *Witness or a *Group.
type Component interface {
	// satisfied reports whether the component is satisfied when the witnesses
	// in cosigned have valid cosignatures.
	satisfied(cosigned map[*Witness]bool) bool
	componentName() string
}

func (w *Witness) satisfied(cosigned map[*Witness]bool) bool { return cosigned[w] }
func (w *Witness) componentName() string                     { return w.Name }

func (g *Group) satisfied(cosigned map[*Witness]bool) bool {
	n := 0
	for _, m := range g.Members {
		if m.satisfied(cosigned) {
			n++
		}
	}
	return n >= g.Threshold
}
func (g *Group) componentName() string { return g.Name }

// ParseError reports a rejected policy line.
type ParseError struct {
	Line int // 1-based line number; 0 for whole-file errors
	Err  error
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("policy: %v", e.Err)
	}
	return fmt.Sprintf("policy line %d: %v", e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Sentinel errors wrapped in a *ParseError, for callers and tests that need to
// tell the rules apart.
var (
	ErrSyntax          = errors.New("syntax error")
	ErrDuplicateName   = errors.New("name defined twice")
	ErrUndefinedName   = errors.New("name not defined on an earlier line")
	ErrDuplicateMember = errors.New("group member listed twice")
	ErrThreshold       = errors.New("invalid group threshold")
	ErrDuplicateKey    = errors.New("key listed twice")
	ErrBadKey          = errors.New("invalid verifier key")
	ErrQuorum          = errors.New("quorum must be defined exactly once")
)

var keywords = map[string]bool{"log": true, "witness": true, "group": true, "quorum": true, "any": true, "all": true, "none": true}

// Parse parses a complete policy, which must contain exactly one quorum line.
func Parse(text []byte) (*Policy, error) {
	p, quorums, err := parse(text, false)
	if err != nil {
		return nil, err
	}
	if quorums != 1 {
		return nil, &ParseError{Err: ErrQuorum}
	}
	return p, nil
}

// ParseLogs parses a file of log lines only (and comments), such as the list
// of logs a witness witnesses.
func ParseLogs(text []byte) ([]*Log, error) {
	p, _, err := parse(text, true)
	if err != nil {
		return nil, err
	}
	return p.Logs, nil
}

func parse(text []byte, logsOnly bool) (*Policy, int, error) {
	p := &Policy{logByOrigin: map[string]*Log{}}
	components := map[string]Component{}
	witnessKeys := map[string]bool{} // name+hash of every witness key
	quorums := 0
	if !utf8.Valid(text) {
		return nil, 0, &ParseError{Err: fmt.Errorf("%w: invalid UTF-8", ErrSyntax)}
	}
	lines := strings.Split(string(text), "\n")
	for i, line := range lines {
		lineNo := i + 1
		fail := func(err error) (*Policy, int, error) { return nil, 0, &ParseError{Line: lineNo, Err: err} }
		if strings.IndexFunc(line, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) >= 0 {
			return fail(fmt.Errorf("%w: control character", ErrSyntax))
		}
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if logsOnly && f[0] != "log" {
			return fail(fmt.Errorf("%w: only log lines are allowed here, got %q", ErrSyntax, f[0]))
		}
		switch f[0] {
		case "log":
			if len(f) != 2 && len(f) != 3 {
				return fail(fmt.Errorf("%w: want log <vkey> [<url>]", ErrSyntax))
			}
			v, err := fnote.NewVerifier(f[1])
			if err != nil {
				return fail(fmt.Errorf("%w: log key %q: %v", ErrBadKey, f[1], err))
			}
			l := &Log{Origin: v.Name(), VKey: f[1], Verifier: v}
			if len(f) == 3 {
				if l.URL, err = parseURL(f[2]); err != nil {
					return fail(err)
				}
			}
			if _, dup := p.logByOrigin[l.Origin]; dup {
				return fail(fmt.Errorf("%w: log %q", ErrDuplicateKey, l.Origin))
			}
			p.logByOrigin[l.Origin] = l
			p.Logs = append(p.Logs, l)
		case "witness":
			if len(f) != 3 && len(f) != 4 {
				return fail(fmt.Errorf("%w: want witness <name> <vkey> [<url>]", ErrSyntax))
			}
			if err := checkNewName(f[1], components); err != nil {
				return fail(err)
			}
			vkey, v, err := CosignatureVerifier(f[2])
			if err != nil {
				return fail(err)
			}
			id := fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
			if witnessKeys[id] {
				return fail(fmt.Errorf("%w: witness key %s", ErrDuplicateKey, id))
			}
			witnessKeys[id] = true
			w := &Witness{Name: f[1], VKey: vkey, Verifier: v}
			if len(f) == 4 {
				if w.URL, err = parseURL(f[3]); err != nil {
					return fail(err)
				}
			}
			components[w.Name] = w
			p.Witnesses = append(p.Witnesses, w)
		case "group":
			if len(f) < 4 {
				return fail(fmt.Errorf("%w: want group <name> <k|any|all> <member>...", ErrSyntax))
			}
			if err := checkNewName(f[1], components); err != nil {
				return fail(err)
			}
			g := &Group{Name: f[1]}
			seen := map[string]bool{}
			for _, m := range f[3:] {
				c, ok := components[m]
				if !ok {
					return fail(fmt.Errorf("%w: %q", ErrUndefinedName, m))
				}
				if seen[m] {
					return fail(fmt.Errorf("%w: %q", ErrDuplicateMember, m))
				}
				seen[m] = true
				g.Members = append(g.Members, c)
			}
			switch k := f[2]; k {
			case "any":
				g.Threshold = 1
			case "all":
				g.Threshold = len(g.Members)
			default:
				n, err := strconv.ParseUint(k, 10, 16)
				if err != nil || k != strconv.FormatUint(n, 10) {
					return fail(fmt.Errorf("%w: %q is not a decimal number, any or all", ErrThreshold, k))
				}
				if n == 0 || n > uint64(len(g.Members)) {
					return fail(fmt.Errorf("%w: %d of %d members", ErrThreshold, n, len(g.Members)))
				}
				g.Threshold = int(n)
			}
			components[g.Name] = g
		case "quorum":
			if len(f) != 2 {
				return fail(fmt.Errorf("%w: want quorum <name|none>", ErrSyntax))
			}
			if quorums++; quorums > 1 {
				return fail(ErrQuorum)
			}
			if f[1] == "none" {
				continue
			}
			c, ok := components[f[1]]
			if !ok {
				return fail(fmt.Errorf("%w: %q", ErrUndefinedName, f[1]))
			}
			p.Quorum = c
		default:
			return fail(fmt.Errorf("%w: unknown keyword %q", ErrSyntax, f[0]))
		}
	}
	return p, quorums, nil
}

func checkNewName(name string, defined map[string]Component) error {
	if keywords[name] || !validName(name) {
		return fmt.Errorf("%w: invalid name %q", ErrSyntax, name)
	}
	if _, dup := defined[name]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateName, name)
	}
	return nil
}

func validName(name string) bool {
	return name != "" && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: %q is not an http(s) URL", ErrSyntax, s)
	}
	return u, nil
}

// CosignatureVerifier returns the cosignature/v1 (type 0x04) form of a witness
// verifier key and its verifier. A plain Ed25519 key (type 0x01) is normalised
// with the same public key; other key types are rejected.
func CosignatureVerifier(vkey string) (string, note.Verifier, error) {
	if v1, err := fnote.VKeyToCosignatureV1(vkey); err == nil {
		vkey = v1
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return "", nil, fmt.Errorf("%w: witness key %q: %v", ErrBadKey, vkey, err)
	}
	// NewVerifierForCosignatureV1 accepts a type 0x01 key without checking its
	// key ID; by now the key must be a type 0x04 key whose ID matches.
	name, rest, _ := strings.Cut(vkey, "+")
	hash16, _, _ := strings.Cut(rest, "+")
	if h, err := strconv.ParseUint(hash16, 16, 32); err != nil || uint32(h) != v.KeyHash() || name != v.Name() {
		return "", nil, fmt.Errorf("%w: witness key %q: key ID does not match the key", ErrBadKey, vkey)
	}
	return vkey, v, nil
}

// Log returns the log with the given origin, or nil.
func (p *Policy) Log(origin string) *Log { return p.logByOrigin[origin] }

// Verified is the result of [Policy.Verify].
type Verified struct {
	// Log is the log that signed the checkpoint.
	Log *Log
	// Text is the checkpoint note text (signed by the log).
	Text string
	// Cosigners are the witnesses with a valid cosignature, in policy order,
	// each once.
	Cosigners []*Witness
	// QuorumMet reports whether the policy's quorum is satisfied.
	QuorumMet bool
}

// Errors returned by Verify. A known key's failing signature is reported as a
// *BadSignatureError.
var (
	// ErrNoLogSignature means the note is not signed by the log of its origin
	// (or its origin is not a log of this policy).
	ErrNoLogSignature = errors.New("policy: checkpoint not signed by a trusted log")
	// ErrQuorumNotMet means the log signature holds but too few witnesses
	// cosigned. Verify returns it together with the *Verified result.
	ErrQuorumNotMet = errors.New("policy: witness quorum not met")
	// ErrMalformed means the note could not be parsed.
	ErrMalformed = errors.New("policy: malformed signed note")
)

// BadSignatureError reports a signature by a known key that does not verify.
type BadSignatureError struct {
	Name    string // key name
	KeyHash uint32
	Witness bool // a witness's cosignature (false: the log's signature)
}

func (e *BadSignatureError) Error() string {
	who := "log"
	if e.Witness {
		who = "witness"
	}
	return fmt.Sprintf("policy: invalid %s signature by %s+%08x", who, e.Name, e.KeyHash)
}

// Verify checks a signed checkpoint note against the policy. It returns the
// verified result with a nil error when the quorum holds; the result and
// ErrQuorumNotMet when only the quorum fails; and a nil result with
// ErrNoLogSignature, ErrMalformed or a *BadSignatureError otherwise.
func (p *Policy) Verify(signed []byte) (*Verified, error) {
	origin, _, ok := bytes.Cut(signed, []byte("\n"))
	if !ok {
		return nil, ErrMalformed
	}
	l := p.logByOrigin[string(origin)]
	if l == nil {
		return nil, fmt.Errorf("%w: unknown origin %q", ErrNoLogSignature, origin)
	}
	vs := make([]note.Verifier, 0, 1+len(p.Witnesses))
	vs = append(vs, l.Verifier)
	for _, w := range p.Witnesses {
		vs = append(vs, w.Verifier)
	}
	known := note.VerifierList(vs...)
	n, err := note.Open(signed, known)
	if err == nil {
		err = CheckEverySignature(signed, known)
	}
	var invalid *note.InvalidSignatureError
	var unverified *note.UnverifiedNoteError
	switch {
	case errors.As(err, &invalid):
		isLog := invalid.Name == l.Verifier.Name() && invalid.Hash == l.Verifier.KeyHash()
		return nil, &BadSignatureError{Name: invalid.Name, KeyHash: invalid.Hash, Witness: !isLog}
	case errors.As(err, &unverified):
		return nil, ErrNoLogSignature
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	res := &Verified{Log: l, Text: n.Text}
	logSigned := false
	cosigned := map[*Witness]bool{}
	for _, s := range n.Sigs {
		if s.Name == l.Verifier.Name() && s.Hash == l.Verifier.KeyHash() {
			logSigned = true
			continue
		}
		for _, w := range p.Witnesses {
			if s.Name == w.Verifier.Name() && s.Hash == w.Verifier.KeyHash() {
				cosigned[w] = true
			}
		}
	}
	if !logSigned {
		return nil, ErrNoLogSignature
	}
	for _, w := range p.Witnesses {
		if cosigned[w] {
			res.Cosigners = append(res.Cosigners, w)
		}
	}
	res.QuorumMet = p.Quorum == nil || p.Quorum.satisfied(cosigned)
	if !res.QuorumMet {
		return res, fmt.Errorf("%w: %d witnesses cosigned", ErrQuorumNotMet, len(res.Cosigners))
	}
	return res, nil
}
