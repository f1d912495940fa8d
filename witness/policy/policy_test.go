package policy_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/witness/policy"
)

type key struct {
	skey, vkey string // x/mod Ed25519 (type 0x01)
	cosigVKey  string // type 0x04
}

func newKey(t testing.TB, seed byte, name string) key {
	t.Helper()
	skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)), name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return key{skey, vkey, c}
}

type fixture struct {
	log        key
	w1, w2, w3 key
	text       string
}

func newFixture(t testing.TB) fixture {
	return fixture{
		log:  newKey(t, 2, "example.com/ledger"),
		w1:   newKey(t, 11, "w1.example/w"),
		w2:   newKey(t, 12, "w2.example/w"),
		w3:   newKey(t, 13, "w3.example/w"),
		text: "example.com/ledger\n8\nvBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=\n",
	}
}

// policy returns a 2-of-3 policy; w1 is given as a plain Ed25519 key to
// exercise normalisation.
func (f fixture) policy() string {
	return fmt.Sprintf(`# a comment
log %s https://log.example/
witness w1 %s https://w1.example/
witness w2 %s
witness w3 %s https://w3.example/ # trailing comment
group two-of-three 2 w1 w2 w3
quorum two-of-three
`, f.log.vkey, f.w1.vkey, f.w2.cosigVKey, f.w3.cosigVKey)
}

// sign signs f.text with the log key and the given witnesses.
func (f fixture) sign(t testing.TB, witnesses ...key) []byte {
	t.Helper()
	ls, err := note.NewSigner(f.log.skey)
	if err != nil {
		t.Fatal(err)
	}
	signers := []note.Signer{ls}
	for _, w := range witnesses {
		s, err := fnote.NewSignerForCosignatureV1(w.skey)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	n, err := note.Sign(&note.Note{Text: f.text}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestParseAccepts(t *testing.T) {
	f := newFixture(t)
	p, err := policy.Parse([]byte(f.policy()))
	if err != nil {
		t.Fatalf("Parse(valid policy) = %v", err)
	}
	if got, want := len(p.Witnesses), 3; got != want {
		t.Fatalf("len(Witnesses) = %d, want %d", got, want)
	}
	if got, want := p.Witnesses[0].VKey, f.w1.cosigVKey; got != want {
		t.Errorf("w1 VKey = %q, want the normalised type 0x04 key %q", got, want)
	}
	if p.Witnesses[1].URL != nil || p.Witnesses[0].URL.String() != "https://w1.example/" {
		t.Errorf("witness URLs = %v, %v", p.Witnesses[0].URL, p.Witnesses[1].URL)
	}
	if l := p.Log("example.com/ledger"); l == nil || l.URL.String() != "https://log.example/" {
		t.Errorf("Log(origin) = %+v", l)
	}
	g, ok := p.Quorum.(*policy.Group)
	if !ok || g.Threshold != 2 || len(g.Members) != 3 {
		t.Errorf("Quorum = %+v, want group 2 of 3", p.Quorum)
	}
	for _, k := range []string{"any", "all", "1", "3"} {
		text := strings.Replace(f.policy(), "two-of-three 2", "two-of-three "+k, 1)
		if _, err := policy.Parse([]byte(text)); err != nil {
			t.Errorf("Parse(threshold %s) = %v", k, err)
		}
	}
	if _, err := policy.Parse([]byte("log " + f.log.vkey + "\nquorum none\n")); err != nil {
		t.Errorf("Parse(quorum none) = %v", err)
	}
	if _, err := policy.Parse([]byte("witness w1 " + f.w1.vkey + "\nquorum w1\n")); err != nil {
		t.Errorf("Parse(quorum of one witness) = %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	f := newFixture(t)
	w := func(name string, k key) string { return "witness " + name + " " + k.cosigVKey + "\n" }
	base := "log " + f.log.vkey + "\n" + w("w1", f.w1) + w("w2", f.w2) + w("w3", f.w3)
	tests := []struct {
		name string
		text string
		want error
	}{
		{"threshold 0", base + "group g 0 w1 w2\nquorum g\n", policy.ErrThreshold},
		{"threshold above members", base + "group g 3 w1 w2\nquorum g\n", policy.ErrThreshold},
		{"threshold leading zero", base + "group g 01 w1 w2\nquorum g\n", policy.ErrThreshold},
		{"threshold negative", base + "group g -1 w1 w2\nquorum g\n", policy.ErrThreshold},
		{"threshold huge", base + "group g 18446744073709551617 w1 w2\nquorum g\n", policy.ErrThreshold},
		{"member listed twice", base + "group g 2 w1 w1\nquorum g\n", policy.ErrDuplicateMember},
		{"member listed twice under all", base + "group g all w1 w2 w1\nquorum g\n", policy.ErrDuplicateMember},
		{"duplicate witness name", base + w("w1", newKey(t, 14, "w4.example/w")) + "quorum w1\n", policy.ErrDuplicateName},
		{"group named like a witness", base + "group w1 any w2\nquorum w1\n", policy.ErrDuplicateName},
		{"duplicate group name", base + "group g any w1\ngroup g any w2\nquorum g\n", policy.ErrDuplicateName},
		{"same witness key twice", base + w("again", f.w1) + "quorum w1\n", policy.ErrDuplicateKey},
		{"same witness key as 0x01 and 0x04", base + "witness again " + f.w1.vkey + "\nquorum w1\n", policy.ErrDuplicateKey},
		{"duplicate log", base + "log " + f.log.vkey + "\nquorum none\n", policy.ErrDuplicateKey},
		{"undefined member", base + "group g any w9\nquorum g\n", policy.ErrUndefinedName},
		{"member defined later", "log " + f.log.vkey + "\ngroup g any w1\n" + w("w1", f.w1) + "quorum g\n", policy.ErrUndefinedName},
		{"quorum undefined", base + "quorum g\n", policy.ErrUndefinedName},
		{"quorum before its group", base + "quorum g\ngroup g any w1\n", policy.ErrUndefinedName},
		{"no quorum", base, policy.ErrQuorum},
		{"two quorums", base + "quorum w1\nquorum w2\n", policy.ErrQuorum},
		{"keyword as name", base + "group all any w1\nquorum all\n", policy.ErrSyntax},
		{"name with plus", "witness a+b " + f.w1.cosigVKey + "\nquorum none\n", policy.ErrSyntax},
		{"unknown keyword", base + "witnesses w4 x\nquorum none\n", policy.ErrSyntax},
		{"group without members", base + "group g any\nquorum g\n", policy.ErrSyntax},
		{"witness without key", "witness w1\nquorum none\n", policy.ErrSyntax},
		{"witness extra field", "witness w1 " + f.w1.cosigVKey + " https://x.example/ extra\nquorum none\n", policy.ErrSyntax},
		{"log extra field", "log " + f.log.vkey + " https://x.example/ extra\nquorum none\n", policy.ErrSyntax},
		{"quorum extra field", base + "quorum w1 w2\n", policy.ErrSyntax},
		{"bad witness key", "witness w1 w1.example/w+00000000+BAAA\nquorum none\n", policy.ErrBadKey},
		{"witness key wrong id", "witness w1 " + withKeyID(f.w1.cosigVKey, "00000000") + "\nquorum none\n", policy.ErrBadKey},
		{"plain witness key wrong id", "witness w1 " + withKeyID(f.w1.vkey, "00000000") + "\nquorum none\n", policy.ErrBadKey},
		{"bad log key", "log nonsense\nquorum none\n", policy.ErrBadKey},
		{"bad url", "log " + f.log.vkey + " ftp://log.example/\nquorum none\n", policy.ErrSyntax},
		{"CR", strings.ReplaceAll(base, "\n", "\r\n") + "quorum none\n", policy.ErrSyntax},
		{"invalid UTF-8", base + "# \xff\nquorum none\n", policy.ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := policy.Parse([]byte(tt.text))
			if !errors.Is(err, tt.want) {
				t.Errorf("Parse(%q) = %v, %v; want error %v", tt.text, p, err, tt.want)
			}
			var pe *policy.ParseError
			if err != nil && !errors.As(err, &pe) {
				t.Errorf("Parse error %T is not a *ParseError", err)
			}
		})
	}
}

func TestParseLogs(t *testing.T) {
	f := newFixture(t)
	logs, err := policy.ParseLogs([]byte("# logs\nlog " + f.log.vkey + " http://127.0.0.1:1/\n"))
	if err != nil || len(logs) != 1 || logs[0].Origin != "example.com/ledger" {
		t.Fatalf("ParseLogs = %v, %v; want one log", logs, err)
	}
	if _, err := policy.ParseLogs([]byte("log " + f.log.vkey + "\nquorum none\n")); !errors.Is(err, policy.ErrSyntax) {
		t.Errorf("ParseLogs(with quorum line) = %v, want ErrSyntax", err)
	}
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	p, err := policy.Parse([]byte(f.policy()))
	if err != nil {
		t.Fatal(err)
	}
	stranger := newKey(t, 20, "stranger.example/w")

	// A note with w1's cosignature twice (two timestamps, two lines).
	twice := f.sign(t, f.w1)
	again := f.sign(t, f.w1)
	twice = append(twice, again[bytes.LastIndex(again, []byte("\n— "))+1:]...)

	// A forged w2 cosignature: w2's name and key ID, w3's signature.
	w3signed := f.sign(t, f.w3)
	forged := f.sign(t, f.w1)
	w3line := w3signed[bytes.LastIndex(w3signed, []byte("\n— "))+1:]
	w2, _ := fnote.NewVerifierForCosignatureV1(f.w2.cosigVKey)
	w3, _ := fnote.NewVerifierForCosignatureV1(f.w3.cosigVKey)
	forgedLine := replaceKeyID(t, w3line, w3.Name(), w3.KeyHash(), w2.Name(), w2.KeyHash())
	forged = append(forged, forgedLine...)

	// w2's valid cosignature followed by the forged w2 line: x/mod's
	// note.Open checks only the first line of a key, Verify checks all.
	validThenForged := append(f.sign(t, f.w1, f.w2), forgedLine...)
	// The log's valid signature followed by a failing one of the log's key.
	logTwice := f.sign(t, f.w1, f.w2)
	logLine := logTwice[bytes.Index(logTwice, []byte("— example.com/ledger ")):]
	logLine = bytes.Clone(logLine[:bytes.IndexByte(logLine, '\n')+1])
	logLine[30] ^= 'A' ^ 'B'
	logTwice = append(logTwice, logLine...)

	badLog := f.sign(t, f.w1, f.w2)
	badLog[bytes.Index(badLog, []byte("— example.com/ledger "))+30] ^= 'A' ^ 'B'

	tests := []struct {
		name      string
		note      []byte
		cosigners []string
		met       bool
		err       error
	}{
		{"two of three", f.sign(t, f.w1, f.w3), []string{"w1", "w3"}, true, nil},
		{"three of three", f.sign(t, f.w1, f.w2, f.w3), []string{"w1", "w2", "w3"}, true, nil},
		{"one of three", f.sign(t, f.w2), []string{"w2"}, false, policy.ErrQuorumNotMet},
		{"log only", f.sign(t), nil, false, policy.ErrQuorumNotMet},
		{"one witness twice counts once", twice, []string{"w1"}, false, policy.ErrQuorumNotMet},
		{"unknown cosignature ignored", f.sign(t, f.w1, stranger), []string{"w1"}, false, policy.ErrQuorumNotMet},
		{"unknown plus two", f.sign(t, stranger, f.w2, f.w3), []string{"w2", "w3"}, true, nil},
		{"bad known cosignature", forged, nil, false, &policy.BadSignatureError{}},
		{"bad log signature", badLog, nil, false, &policy.BadSignatureError{}},
		{"valid then forged cosignature of one witness", validThenForged, nil, false, &policy.BadSignatureError{}},
		{"valid then failing log signature", logTwice, nil, false, &policy.BadSignatureError{}},
		{"no log signature", bytes.Replace(f.sign(t, f.w1, f.w2), []byte("— example.com/ledger"), []byte("— example.com/other"), 1), nil, false, policy.ErrNoLogSignature},
		{"unknown origin", []byte("other.example/log\n1\nAAAA\n\n— other.example/log AAAAAAAA\n"), nil, false, policy.ErrNoLogSignature},
		{"malformed", []byte("example.com/ledger\n8\n"), nil, false, policy.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := p.Verify(tt.note)
			var bse *policy.BadSignatureError
			if _, wantBad := tt.err.(*policy.BadSignatureError); wantBad {
				if !errors.As(err, &bse) {
					t.Fatalf("Verify() = %v, want a *BadSignatureError", err)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.err)
			}
			if tt.err != nil && !errors.Is(tt.err, policy.ErrQuorumNotMet) {
				return
			}
			var got []string
			for _, w := range v.Cosigners {
				got = append(got, w.Name)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.cosigners) || v.QuorumMet != tt.met {
				t.Errorf("Verify() = cosigners %v met %v, want %v %v", got, v.QuorumMet, tt.cosigners, tt.met)
			}
		})
	}
	t.Run("forged is a witness error", func(t *testing.T) {
		_, err := p.Verify(forged)
		var bse *policy.BadSignatureError
		if !errors.As(err, &bse) || !bse.Witness || bse.Name != "w2.example/w" {
			t.Errorf("Verify(forged w2) = %v, want a witness BadSignatureError for w2", err)
		}
		_, err = p.Verify(badLog)
		if !errors.As(err, &bse) || bse.Witness {
			t.Errorf("Verify(bad log signature) = %v, want a log BadSignatureError", err)
		}
	})
}

// TestNestedGroupsCountOnce: a witness in two groups satisfies both, but a
// threshold over one group never counts the same witness twice.
func TestNestedGroups(t *testing.T) {
	f := newFixture(t)
	text := fmt.Sprintf("log %s\nwitness w1 %s\nwitness w2 %s\nwitness w3 %s\ngroup a any w1 w2\ngroup b all w2 w3\ngroup q all a b\nquorum q\n",
		f.log.vkey, f.w1.cosigVKey, f.w2.cosigVKey, f.w3.cosigVKey)
	p, err := policy.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		signers []key
		met     bool
	}{
		{[]key{f.w2, f.w3}, true},
		{[]key{f.w1, f.w3}, false},
		{[]key{f.w1, f.w2}, false},
		{[]key{f.w1, f.w2, f.w3}, true},
	} {
		v, _ := p.Verify(f.sign(t, tt.signers...))
		if v == nil || v.QuorumMet != tt.met {
			t.Errorf("Verify(%d signers) met = %v, want %v", len(tt.signers), v != nil && v.QuorumMet, tt.met)
		}
	}
}

// replaceKeyID rewrites a signature line to claim another key.
func replaceKeyID(t testing.TB, line []byte, oldName string, oldHash uint32, newName string, newHash uint32) []byte {
	t.Helper()
	s := strings.TrimSuffix(string(line), "\n")
	s = strings.TrimPrefix(s, "— "+oldName+" ")
	raw, err := decodeB64(s)
	if err != nil {
		t.Fatal(err)
	}
	raw[0], raw[1], raw[2], raw[3] = byte(newHash>>24), byte(newHash>>16), byte(newHash>>8), byte(newHash)
	return []byte("— " + newName + " " + encodeB64(raw) + "\n")
}

// withKeyID replaces the key ID of a vkey.
func withKeyID(vkey, id string) string {
	parts := strings.SplitN(vkey, "+", 3)
	return parts[0] + "+" + id + "+" + parts[2]
}
