package rekorcompat

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/sigstore/rekor/pkg/util"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/tlog"
)

// The worked example of docs/formats.md: Ed25519 seed 0x02 × 32, name
// example.com/ledger, and its signature on the size-8 checkpoint.
const (
	exampleName  = "example.com/ledger"
	exampleVKey  = "example.com/ledger+edb3e1ea+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU"
	exampleText  = "example.com/ledger\n8\nvBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=\n"
	exampleC2SPs = "7bPh6nL75+eDWpg1ghEblRgVYRCAJl0vfAhSBsO82p2JITzWz8cjlS0K9BCRfQR1fhuQs9nrOph85AgZekJyKoHcCw4="
)

var exampleSeed = bytes.Repeat([]byte{2}, ed25519.SeedSize)

func exampleSKey(t *testing.T) string {
	t.Helper()
	// x/mod private key text: PRIVATE+KEY+name+id+base64(0x01 ‖ seed).
	id := strings.Split(exampleVKey, "+")[1]
	return "PRIVATE+KEY+" + exampleName + "+" + id + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, exampleSeed...))
}

func TestParseNoteKey(t *testing.T) {
	name, key, err := ParseNoteKey(exampleSKey(t) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if name != exampleName {
		t.Errorf("name = %q, want %q", name, exampleName)
	}
	if !bytes.Equal(key.Seed(), exampleSeed) {
		t.Errorf("seed = %x, want %x", key.Seed(), exampleSeed)
	}
	// The key verifies under the published verifier key.
	v, err := note.NewVerifier(exampleVKey)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Verify([]byte(exampleText), ed25519.Sign(key, []byte(exampleText))) {
		t.Error("a signature by the parsed key does not verify with the example vkey")
	}

	good := exampleSKey(t)
	otherSeed := base64.StdEncoding.EncodeToString(append([]byte{1}, bytes.Repeat([]byte{3}, 32)...))
	for _, tc := range []struct{ name, skey string }{
		{"empty", ""},
		{"verifier key", exampleVKey},
		{"wrong key ID", strings.Replace(good, "+edb3e1ea+", "+edb3e1eb+", 1)},
		{"key of another ID", strings.Replace(good, good[strings.LastIndex(good, "+")+1:], otherSeed, 1)},
		{"not type 0x01", strings.Replace(good, good[strings.LastIndex(good, "+")+1:], base64.StdEncoding.EncodeToString(append([]byte{4}, exampleSeed...)), 1)},
		{"short seed", strings.Replace(good, good[strings.LastIndex(good, "+")+1:], base64.StdEncoding.EncodeToString(append([]byte{1}, exampleSeed[:31]...)), 1)},
		{"bad base64", good[:len(good)-2] + "!!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseNoteKey(tc.skey); err == nil {
				t.Errorf("ParseNoteKey(%q) = nil error, want an error", tc.skey)
			}
		})
	}
}

func TestLogIDAndHint(t *testing.T) {
	key := ed25519.NewKeyFromSeed(exampleSeed)
	pub := key.Public().(ed25519.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	id, err := LogID(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(sum[:]); id != want {
		t.Errorf("LogID = %s, want %s", id, want)
	}
	hint, err := KeyHint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := binary.BigEndian.Uint32(sum[:4]); hint != want {
		t.Errorf("KeyHint = %08x, want %08x", hint, want)
	}
	// It is not the C2SP key ID of the same key.
	if c2sp := strings.Split(exampleVKey, "+")[1]; c2sp == hex.EncodeToString(sum[:4]) {
		t.Errorf("Rekor hint equals the C2SP key ID %s", c2sp)
	}
	tid, err := DefaultTreeID(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(binary.BigEndian.Uint64(sum[:8]) &^ (1 << 63)); tid != want || tid <= 0 {
		t.Errorf("DefaultTreeID = %d, want %d (> 0)", tid, want)
	}
}

// TestSignRekorSameKey checks the signed tree head served to Rekor
// clients on the worked example: the same text, one signature line whose
// 64 signature bytes are those of the log's C2SP signature, with Rekor's
// key hint in front; Rekor's parser and verifier accept it, and reject any
// change to the text or signature.
func TestSignRekorSameKey(t *testing.T) {
	_, key, err := ParseNoteKey(exampleSKey(t))
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Engine: nilEngine{}, Published: nil, Signer: key, Origin: exampleName})
	if err == nil {
		t.Fatal("New without Published succeeded")
	}
	h, err = New(Config{Engine: nilEngine{}, Published: func(context.Context) ([]byte, error) { return nil, nil }, Signer: key, Origin: exampleName})
	if err != nil {
		t.Fatal(err)
	}
	sth, err := h.signRekor(exampleText)
	if err != nil {
		t.Fatal(err)
	}
	c2sp, _ := base64.StdEncoding.DecodeString(exampleC2SPs)
	wantLine := "— " + exampleName + " " + base64.StdEncoding.EncodeToString(append(h.hint[:], c2sp[4:]...)) + "\n"
	if want := exampleText + "\n" + wantLine; sth != want {
		t.Fatalf("signRekor =\n%s\nwant\n%s", sth, want)
	}

	verifier, err := signature.LoadED25519Verifier(key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	var sc util.SignedCheckpoint
	if err := sc.UnmarshalText([]byte(sth)); err != nil {
		t.Fatalf("rekor util.SignedCheckpoint.UnmarshalText: %v", err)
	}
	if !sc.Verify(verifier) {
		t.Fatal("rekor SignedCheckpoint.Verify = false, want true")
	}
	if sc.Origin != exampleName || sc.Size != 8 || len(sc.OtherContent) != 0 || len(sc.Signatures) != 1 {
		t.Errorf("rekor parsed origin %q size %d other %q, %d signatures", sc.Origin, sc.Size, sc.OtherContent, len(sc.Signatures))
	}
	root, _ := tlog.ParseHash("vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk=")
	if !bytes.Equal(sc.Hash, root[:]) {
		t.Errorf("rekor parsed root %x, want %x", sc.Hash, root)
	}

	// The C2SP-signed note itself is what Rekor refuses: wrong hint.
	var c2spNote util.SignedCheckpoint
	if err := c2spNote.UnmarshalText([]byte(exampleText + "\n— " + exampleName + " " + exampleC2SPs + "\n")); err != nil {
		t.Fatal(err)
	}
	if c2spNote.Verify(verifier) {
		t.Error("rekor verified the C2SP signature line; the compat note would be unnecessary")
	}

	// Mangling: every single-byte change of the text or of the signature
	// bytes must fail Rekor's verification (the name is not checked by Rekor).
	sigStart := strings.LastIndex(sth, " ") + 1
	for i := 0; i < len(sth)-1; i++ {
		if i >= len(exampleText) && i < sigStart {
			continue // blank line, em dash, name
		}
		b := []byte(sth)
		b[i] ^= 0x01
		var m util.SignedCheckpoint
		if err := m.UnmarshalText(b); err != nil {
			continue // refused by the parser
		}
		if m.Note == sc.Note && m.Signatures[0] == sc.Signatures[0] {
			// Rekor decodes base64 leniently: a change in the unused low
			// bits of the last character decodes to the same signature.
			continue
		}
		if m.Verify(verifier) {
			t.Errorf("byte %d changed (%q): rekor still verifies", i, b)
		}
	}
}

// nilEngine is an engine that is never called: New only stores it.
type nilEngine struct{ engine.Engine }
