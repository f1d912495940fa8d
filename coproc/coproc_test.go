package coproc_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/vmledger/vmledger/coproc"
)

var update = flag.Bool("update", false, "rewrite testdata/ golden files")

// The golden vector: an Ed25519 key from the seed 0x03 × 32 (Ed25519 is
// deterministic, so the envelope is too).
var (
	goldenKey   = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	goldenClaim = coproc.Claim{
		VMID:       "web-01",
		Root:       sha256.Sum256([]byte("example config")),
		Parameters: []string{"cpu.count", "kernel.cmdline", "memory.bytes"},
		Freshness: coproc.Anchor{
			Origin: "example.com/ledger",
			Size:   8,
			Root:   mustRoot("vBEUy8+QSrsTcpKhjZqjCS/DQtDNdhjOjXfmr3btlkk="),
		},
	}
	goldenTime = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
)

func mustRoot(b64 string) [32]byte {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 32 {
		panic("bad root")
	}
	return [32]byte(b)
}

func mustKeyID(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	id, err := coproc.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// seal signs claim with priv as a co-processor at counter n would.
func seal(t testing.TB, priv crypto.Signer, c coproc.Claim, n uint64) *coproc.Envelope {
	t.Helper()
	id := mustKeyID(t, priv.Public())
	st, err := coproc.NewStatement(c, coproc.CoprocessorState{KeyID: id, Counter: n, RootNVIndex: 0x01000A00, CounterNVIndex: 0x01000A01}, goldenTime)
	if err != nil {
		t.Fatal(err)
	}
	env, err := coproc.Seal(st, priv.Public(), func(pae []byte) ([]byte, error) { return coproc.SignPAE(priv, pae) })
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func canonical(t testing.TB, e *coproc.Envelope) []byte {
	t.Helper()
	b, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden pins the encoding: the envelope of the golden claim must equal
// testdata/golden-ed25519.json byte for byte (go test -update rewrites it).
func TestGolden(t *testing.T) {
	env := seal(t, goldenKey, goldenClaim, 7)
	got := canonical(t, env)
	path := filepath.Join("testdata", "golden-ed25519.json")
	if *update {
		st, err := env.Statement()
		if err != nil {
			t.Fatal(err)
		}
		pretty, _ := json.MarshalIndent(st, "", "  ")
		os.WriteFile(filepath.Join("testdata", "golden-ed25519.statement.json"), append(pretty, '\n'), 0o644)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("golden envelope drifted:\n got %s\nwant %s", got, want)
	}
	parsed, err := coproc.ParseEnvelope(want)
	if err != nil {
		t.Fatalf("ParseEnvelope(golden) = %v", err)
	}
	st, err := coproc.VerifyStatement(parsed, goldenKey.Public())
	if err != nil {
		t.Fatalf("VerifyStatement(golden) = %v", err)
	}
	if st.VMID() != "web-01" || st.ConfigRoot() != goldenClaim.Root || st.Anchor() != goldenClaim.Freshness ||
		!st.Time().Equal(goldenTime) || st.Predicate.Coprocessor.Counter != 7 || st.Predicate.LeafCount != 3 {
		t.Fatalf("golden statement = %+v", st)
	}
}

// TestIndependentVerifier: code that is not ours accepts our envelopes.
func TestIndependentVerifier(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, priv := range []crypto.Signer{goldenKey, p256} {
		t.Run(fmt.Sprintf("%T", priv), func(t *testing.T) {
			entry := canonical(t, seal(t, priv, goldenClaim, 1))
			pub := priv.Public()
			v, err := signature.LoadVerifier(pub, crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := ssldsse.NewEnvelopeVerifier(&dsse.VerifierAdapter{SignatureVerifier: v, Pub: pub, PubKeyID: mustKeyID(t, pub)})
			if err != nil {
				t.Fatal(err)
			}
			var env ssldsse.Envelope
			if err := json.Unmarshal(entry, &env); err != nil {
				t.Fatal(err)
			}
			if _, err := ev.Verify(t.Context(), &env); err != nil {
				t.Fatalf("securesystemslib DSSE verifier: %v", err)
			}
			// sigstore's wrapper matches key ids by its own convention
			// (SSH wire form); without a keyid it verifies the signature.
			env.Signatures[0].KeyID = ""
			anon, _ := json.Marshal(env)
			if err := dsse.WrapVerifier(v).VerifySignature(bytes.NewReader(anon), nil); err != nil {
				t.Fatalf("sigstore dsse.WrapVerifier: %v", err)
			}
		})
	}
}

// TestTamper: a tampered envelope fails verification, for every
// single-byte change where the time allows:
//
//   - signature: every byte position × all 255 changes, both key types;
//   - payload: every byte position × all 255 changes with Ed25519; with
//     P-256, ^0x01, ^0x80, ^0xff and one more change per position drawn from
//     a generator seeded with tamperSeed. Both keys take the payload through
//     the same Verify and PAE and differ only after it (P-256 signs
//     SHA-256(PAE)); exhausting both would about double the time under
//     -race, which is ~75 CPU-seconds already, nearly all of it Ed25519;
//   - serialized envelope (the log entry): every byte position × ^0x01,
//     ^0x80, ^0xff and ^0x20, through ParseEnvelope and Verify;
//   - truncations of the signature, an extended payload, another payload
//     type, a wrong keyid and a wrong key.
//
// Payload and signature changes are made on the decoded bytes. In -short
// mode the Ed25519 payload is sampled like the P-256 one. The subtests run
// in parallel, as CI runs this under -race on two cores.
func TestTamper(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	otherP256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var total atomic.Int64
	t.Cleanup(func() {
		if !t.Failed() {
			t.Logf("%d single-byte mutations, all refused (seed %d)", total.Load(), tamperSeed)
		}
	})
	for _, tc := range []struct {
		name       string
		priv       crypto.Signer
		wrong      crypto.PublicKey
		allPayload bool // all 255 changes of every payload byte
	}{
		{"ed25519", goldenKey, other, !testing.Short()},
		{"ecdsa-p256", p256, otherP256.Public(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := seal(t, tc.priv, goldenClaim, 1)
			pub := tc.priv.Public()
			if err := coproc.Verify(env, pub); err != nil {
				t.Fatalf("Verify(untouched) = %v", err)
			}
			wire := canonical(t, env)
			clone := func() *coproc.Envelope {
				return &coproc.Envelope{PayloadType: env.PayloadType, Payload: bytes.Clone(env.Payload),
					Signatures: []coproc.Signature{{KeyID: env.Signatures[0].KeyID, Sig: bytes.Clone(env.Signatures[0].Sig)}}}
			}
			// refused returns "" if the mutant m fails Verify, and what
			// went wrong otherwise. With roundTrip, m must also come back
			// unchanged from Canonical and ParseEnvelope, so that the
			// verdict is the one a log entry carrying m would get; that
			// depends on the length of what changed, not on its value, so
			// the exhaustive loops ask it only for the fixed deltas and
			// spend their time in Verify.
			refused := func(m *coproc.Envelope, roundTrip bool) string {
				if roundTrip {
					b, err := m.Canonical()
					if err != nil {
						return fmt.Sprintf("Canonical = %v (a same-length change must still encode)", err)
					}
					p, err := coproc.ParseEnvelope(b)
					if err != nil || !reflect.DeepEqual(p, m) {
						return fmt.Sprintf("does not round-trip through ParseEnvelope (err %v)", err)
					}
				}
				if coproc.Verify(m, pub) == nil {
					return "still verifies"
				}
				return ""
			}
			allDeltas := make([]byte, 255)
			for i := range allDeltas {
				allDeltas[i] = byte(i + 1)
			}
			fixedDeltas := []byte{0x01, 0x80, 0xff}
			isFixed := func(d byte) bool { return bytes.IndexByte(fixedDeltas, d) >= 0 }
			// sampled returns, per byte position, the fixed deltas and one
			// drawn from the seeded generator that is none of them.
			rng := mathrand.New(mathrand.NewPCG(tamperSeed, uint64(len(tc.name))))
			sampled := func(n int) [][]byte {
				out := make([][]byte, n)
				for i := range out {
					d := byte(rng.IntN(255) + 1)
					for isFixed(d) {
						d = byte(rng.IntN(255) + 1)
					}
					out[i] = append(slices.Clone(fixedDeltas), d)
				}
				return out
			}
			every := func(n int, deltas []byte) [][]byte {
				out := make([][]byte, n)
				for i := range out {
					out[i] = deltas
				}
				return out
			}
			// mutate runs, as parallel subtests of at most chunk positions
			// each, f on every (position, delta) of plan.
			mutate := func(region string, plan [][]byte, chunk int, f func(t *testing.T, i int, d byte)) {
				for lo := 0; lo < len(plan); lo += chunk {
					hi := min(lo+chunk, len(plan))
					t.Run(fmt.Sprintf("%s[%d:%d]", region, lo, hi), func(t *testing.T) {
						t.Parallel()
						n := 0
						for i := lo; i < hi; i++ {
							for _, d := range plan[i] {
								f(t, i, d)
								n++
							}
						}
						total.Add(int64(n))
					})
				}
			}

			mutate("signature", every(len(env.Signatures[0].Sig), allDeltas), 32, func(t *testing.T, i int, d byte) {
				m := clone()
				m.Signatures[0].Sig[i] ^= d
				if msg := refused(m, isFixed(d)); msg != "" {
					t.Fatalf("signature byte %d ^ 0x%02x: %s", i, d, msg)
				}
			})
			payloadPlan := sampled(len(env.Payload))
			if tc.allPayload {
				payloadPlan = every(len(env.Payload), allDeltas)
			}
			mutate("payload", payloadPlan, 64, func(t *testing.T, i int, d byte) {
				m := clone()
				m.Payload[i] ^= d
				if msg := refused(m, isFixed(d)); msg != "" {
					t.Fatalf("payload byte %d ^ 0x%02x (seed %d): %s", i, d, tamperSeed, msg)
				}
			})
			// The serialized envelope (the log entry): a change is refused
			// by ParseEnvelope or, if it still parses, by Verify. Some
			// changes leave the content a lenient reader sees untouched
			// (for instance a base64 character whose change lies only in
			// padding bits, or a different case of a key name); such an
			// entry is a second spelling of the same attestation, so it
			// must be refused by the parser itself, not merely fail to
			// verify. ParseEnvelope accepts only the canonical encoding, so
			// a change that parses to the original envelope is a failure.
			// ^0x20 is there for the lenient spellings: it flips the case of
			// a letter.
			envelopeDeltas := append(slices.Clone(fixedDeltas), 0x20)
			var parseRefused, sameRefused, verifyRefused atomic.Int64
			t.Cleanup(func() {
				t.Logf("envelope: %d changes refused by ParseEnvelope (%d of them carry the original content to a lenient reader), %d by Verify",
					parseRefused.Load(), sameRefused.Load(), verifyRefused.Load())
			})
			mutate("envelope", every(len(wire), envelopeDeltas), 512, func(t *testing.T, i int, d byte) {
				b := bytes.Clone(wire)
				b[i] ^= d
				p, err := coproc.ParseEnvelope(b)
				switch {
				case lenientlySame(b, env):
					if err == nil {
						t.Fatalf("envelope byte %d ^ 0x%02x (%q → %q): ParseEnvelope accepts a second spelling of the same envelope", i, d, wire[i], b[i])
					}
					sameRefused.Add(1)
					parseRefused.Add(1)
				case err != nil:
					parseRefused.Add(1)
				case reflect.DeepEqual(p, env):
					t.Fatalf("envelope byte %d ^ 0x%02x (%q → %q) parses to the original envelope: two encodings of one entry", i, d, wire[i], b[i])
				case coproc.Verify(p, pub) == nil:
					t.Fatalf("envelope byte %d ^ 0x%02x (%q → %q) still verifies", i, d, wire[i], b[i])
				default:
					verifyRefused.Add(1)
				}
			})

			// Truncations of the signature and extensions of the payload.
			for n := range len(env.Signatures[0].Sig) {
				m := clone()
				m.Signatures[0].Sig = m.Signatures[0].Sig[:n]
				if coproc.Verify(m, pub) == nil {
					t.Fatalf("signature truncated to %d bytes still verifies", n)
				}
			}
			m := clone()
			m.Payload = append(m.Payload, ' ')
			if msg := refused(m, true); msg != "" {
				t.Fatalf("payload with a trailing space: %s", msg)
			}
			m = clone()
			m.PayloadType = "application/json"
			if coproc.Verify(m, pub) == nil {
				t.Fatalf("other payload type still verifies")
			}

			m = clone()
			m.Signatures[0].KeyID = strings.Repeat("0", 64)
			if err := coproc.Verify(m, pub); !errors.Is(err, coproc.ErrKeyIDMismatch) {
				t.Fatalf("Verify(wrong keyid) = %v, want ErrKeyIDMismatch", err)
			}
			if err := coproc.Verify(env, tc.wrong); !errors.Is(err, coproc.ErrKeyIDMismatch) {
				t.Fatalf("Verify(wrong key) = %v, want ErrKeyIDMismatch", err)
			}
			m = clone()
			m.Signatures[0].KeyID = mustKeyID(t, tc.wrong)
			if err := coproc.Verify(m, tc.wrong); !errors.Is(err, coproc.ErrBadSignature) {
				t.Fatalf("Verify(wrong key, keyid relabelled) = %v, want ErrBadSignature", err)
			}
			// The relabelled envelope also fails the statement's key id check.
			if _, err := m.Statement(); !errors.Is(err, coproc.ErrInvalidField) {
				t.Fatalf("Statement(relabelled keyid) = %v, want ErrInvalidField", err)
			}
		})
	}
}

// lenientlySame reports whether b, read the lenient way (encoding/json,
// which matches key names without regard to case and skips whitespace;
// base64 that ignores padding bits and line breaks), carries exactly the
// envelope e.
func lenientlySame(b []byte, e *coproc.Envelope) bool {
	var w struct {
		PayloadType string
		Payload     string
		Signatures  []struct{ KeyID, Sig string }
	}
	if json.Unmarshal(b, &w) != nil || len(w.Signatures) != 1 {
		return false
	}
	payload, err := base64.StdEncoding.DecodeString(w.Payload)
	if err != nil {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(w.Signatures[0].Sig)
	if err != nil {
		return false
	}
	return w.PayloadType == e.PayloadType && bytes.Equal(payload, e.Payload) &&
		w.Signatures[0].KeyID == e.Signatures[0].KeyID && bytes.Equal(sig, e.Signatures[0].Sig)
}

// tamperSeed seeds TestTamper's sampled payload changes; it is fixed so
// that a failure reproduces (the failure message names it).
const tamperSeed = 20261128

// TestHighS: the other valid ECDSA signature (r, n-s) is refused, so nobody
// can mint a second log entry from a signed statement.
func TestHighS(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	env := seal(t, k, goldenClaim, 1)
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(env.Signatures[0].Sig, &sig); err != nil {
		t.Fatal(err)
	}
	r := sig.R
	high := new(big.Int).Sub(elliptic.P256().Params().N, sig.S)
	env.Signatures[0].Sig, err = asn1.Marshal(struct{ R, S *big.Int }{r, high})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(coproc.PAE(env.PayloadType, env.Payload))
	if !ecdsa.Verify(&k.PublicKey, h[:], r, high) {
		t.Fatalf("test setup: (r, n-s) should be a valid ECDSA signature")
	}
	if err := coproc.Verify(env, k.Public()); !errors.Is(err, coproc.ErrBadSignature) {
		t.Fatalf("Verify(high s) = %v, want ErrBadSignature", err)
	}
}

// TestTruncations: every prefix of an entry is refused by the parser.
func TestTruncations(t *testing.T) {
	entry := canonical(t, seal(t, goldenKey, goldenClaim, 1))
	for n := range len(entry) {
		if _, err := coproc.ParseEnvelope(entry[:n]); err == nil {
			t.Fatalf("ParseEnvelope(entry[:%d]) = nil error", n)
		}
	}
}

func TestKeyID(t *testing.T) {
	// Known answer, computed independently from the golden key's PKCS#8 DER:
	//   openssl pkey -inform DER -in key.der -pubout -outform DER | sha256sum
	const want = "8cef065b7af83669150b7d32704d3d3e75c3e9aee0d4f6740544c68e81b377aa"
	if id := mustKeyID(t, goldenKey.Public()); id != want {
		t.Fatalf("KeyID(golden) = %s, want %s", id, want)
	}
	for _, pub := range []crypto.PublicKey{nil, "key", ed25519.PublicKey{1, 2}, mustECDSA(t, elliptic.P384()).Public()} {
		if _, err := coproc.KeyID(pub); !errors.Is(err, coproc.ErrUnsupportedKey) {
			t.Errorf("KeyID(%T) = %v, want ErrUnsupportedKey", pub, err)
		}
	}
}

func mustECDSA(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestGoldenV1: an envelope made before predicate v2 (no attestedBy, no
// evidence) still parses and verifies; policy decides whether to accept it.
func TestGoldenV1(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "golden-v1-ed25519.json"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := coproc.ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	st, err := coproc.VerifyStatement(env, goldenKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	if st.PredicateType != coproc.PredicateTypeV1 || st.Predicate.Coprocessor.AttestedBy != "" || st.EvidenceBytes() != nil {
		t.Fatalf("v1 golden statement = %+v", st)
	}
}

// TestConfigSchemaV2: a claim under config schema v2 becomes a statement
// that says so and parses back; a claim without a schema is v1, as before
// v2 existed; an unknown schema is refused.
func TestConfigSchemaV2(t *testing.T) {
	c := goldenClaim
	c.ConfigSchema = coproc.ConfigSchemaV2
	st, err := seal(t, goldenKey, c, 3).Statement()
	if err != nil {
		t.Fatal(err)
	}
	if st.Predicate.ConfigSchema != coproc.ConfigSchemaV2 {
		t.Errorf("configSchema %q, want %q", st.Predicate.ConfigSchema, coproc.ConfigSchemaV2)
	}
	v1, err := seal(t, goldenKey, goldenClaim, 3).Statement()
	if err != nil || v1.Predicate.ConfigSchema != coproc.ConfigSchema {
		t.Errorf("claim without schema: %v, configSchema %q, want %q", err, v1.Predicate.ConfigSchema, coproc.ConfigSchema)
	}
	c.ConfigSchema = "vmledger/config/v3"
	if err := coproc.ValidateClaim(c); !errors.Is(err, coproc.ErrInvalidClaim) {
		t.Errorf("ValidateClaim(schema v3) = %v, want ErrInvalidClaim", err)
	}
}
