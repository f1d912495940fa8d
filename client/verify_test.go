package client

import (
	"bytes"
	"context"
	"crypto"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"github.com/vmledger/vmledger/agent/measure"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/soft"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/log/tlog"
	"golang.org/x/mod/sumdb/note"
)

const origin = "test.vmledger.dev/log"

// fixture is a small deployment made of real parts: a software co-processor,
// an RFC 6962 tree, a log key and three witness keys.
type fixture struct {
	t         testing.TB
	cp        *soft.CoProcessor
	cpDir     string
	tree      *testonly.Tree
	entries   [][]byte
	logSigner note.Signer
	logVKey   string
	witnesses []*fnote.Signer
	wVKeys    []string
	cfg       *measure.Config
	secret    measure.Secret
	trustText string
	now       time.Time

	// afterVerify, if set by a crafted case, checks more after Verify.
	afterVerify func(t *testing.T, err error)
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{t: t, tree: testonly.New(rfc6962.DefaultHasher), now: time.Now()}
	dir := filepath.Join(t.TempDir(), "coproc")
	if _, err := soft.Init(ctx, dir, soft.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	cp, err := soft.Open(ctx, dir, soft.Options{Now: func() time.Time { return f.now.Add(-time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	f.cp, f.cpDir = cp, dir
	skey, vkey, err := note.GenerateKey(crand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	f.logSigner, _ = note.NewSigner(skey)
	f.logVKey = vkey
	for i := range 3 {
		skey, vkey, err := note.GenerateKey(crand.Reader, fmt.Sprintf("w%d.test", i+1))
		if err != nil {
			t.Fatal(err)
		}
		ws, err := fnote.NewSignerForCosignatureV1(skey)
		if err != nil {
			t.Fatal(err)
		}
		f.witnesses = append(f.witnesses, ws)
		f.wVKeys = append(f.wVKeys, vkey)
	}
	line, err := TrustLine("host-a", cp.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	f.trustText = fmt.Sprintf("log %s\nwitness w1 %s\nwitness w2 %s\nwitness w3 %s\ngroup two 2 w1 w2 w3\nquorum two\n%s\nmax-age 1h\n",
		f.logVKey, f.wVKeys[0], f.wVKeys[1], f.wVKeys[2], line)
	cmdline := "console=ttyS0 ro"
	f.cfg = &measure.Config{
		MemoryBytes: 4 << 30, CPUCount: 4, CPUAffinity: "0-3",
		NICs:          []measure.NIC{{MAC: measure.MAC{0x52, 0x54, 0, 0x12, 0x34, 0x56}, VLAN: 100}},
		Disks:         []measure.Disk{{Target: "vda", SHA256: &measure.Digest{1, 2, 3}}},
		Kernel:        &measure.Digest{9},
		KernelCmdline: &cmdline,
		Packages: []measure.Package{
			{Name: "openssh-server", Version: "1:9.2p1-2", ManifestSHA256: measure.Digest{7}},
			{Name: "openssl", Version: "3.0.15-1", ManifestSHA256: measure.Digest{8}},
		},
	}
	copy(f.secret[:], bytes.Repeat([]byte{0x5a}, 32))
	// Some unrelated entries before ours.
	for i := range 5 {
		f.append(fmt.Appendf(nil, "other entry %d", i))
	}
	return f
}

func (f *fixture) trust() *Trust {
	f.t.Helper()
	tr, err := ParseTrust([]byte(f.trustText), f.t.TempDir())
	if err != nil {
		f.t.Fatalf("ParseTrust: %v", err)
	}
	return tr
}

func (f *fixture) append(e []byte) uint64 {
	f.entries = append(f.entries, e)
	f.tree.AppendData(e)
	return f.tree.Size() - 1
}

// attest measures cfg, has the co-processor attest it and appends the entry.
func (f *fixture) attest(vmID string, cfg *measure.Config) uint64 {
	f.t.Helper()
	m, err := measure.Measure(cfg, f.secret)
	if err != nil {
		f.t.Fatal(err)
	}
	env, err := f.cp.Attest(f.t.Context(), coproc.Claim{
		VMID: vmID, Root: m.Root, Parameters: m.Names(),
		Freshness: coproc.Anchor{Origin: origin, Size: f.tree.Size(), Root: [32]byte(f.tree.Hash())},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	entry, err := env.Canonical()
	if err != nil {
		f.t.Fatal(err)
	}
	return f.append(entry)
}

// checkpoint signs the current tree with the log key and cosigns it with the
// witnesses numbered in cosigners.
func (f *fixture) checkpoint(size uint64, cosigners ...int) []byte {
	f.t.Helper()
	c := tlog.Checkpoint{Origin: origin, Size: size, Root: [32]byte(f.tree.HashAt(size))}
	signers := []note.Signer{f.logSigner}
	for _, i := range cosigners {
		signers = append(signers, f.witnesses[i])
	}
	signed, err := note.Sign(&note.Note{Text: string(c.Marshal())}, signers...)
	if err != nil {
		f.t.Fatal(err)
	}
	return signed
}

// sealRaw signs payload as a DSSE envelope with the co-processor's own key,
// without the co-processor's checks on the statement, and appends it: a
// validly signed entry whose content is whatever the test wants.
func (f *fixture) sealRaw(payload []byte) uint64 {
	f.t.Helper()
	pem, err := os.ReadFile(filepath.Join(f.cpDir, "key.pem"))
	if err != nil {
		f.t.Fatal(err)
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(pem, cryptoutils.SkipPassword)
	if err != nil {
		f.t.Fatal(err)
	}
	sig, err := coproc.SignPAE(priv.(crypto.Signer), coproc.PAE(coproc.PayloadType, payload))
	if err != nil {
		f.t.Fatal(err)
	}
	env := &coproc.Envelope{PayloadType: coproc.PayloadType, Payload: payload, Signatures: []coproc.Signature{{KeyID: f.cp.KeyID(), Sig: sig}}}
	if err := coproc.Verify(env, f.cp.PublicKey()); err != nil {
		f.t.Fatalf("the crafted envelope's signature does not verify: %v", err)
	}
	entry, err := env.Canonical()
	if err != nil {
		f.t.Fatal(err)
	}
	return f.append(entry)
}

// payload returns the DSSE payload (the statement) of entry idx.
func (f *fixture) payload(idx uint64) []byte {
	f.t.Helper()
	env, err := coproc.ParseEnvelope(f.entries[idx])
	if err != nil {
		f.t.Fatal(err)
	}
	return env.Payload
}

// wantInError returns an afterVerify that requires substr in the error.
func wantInError(substr string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		if err == nil || !strings.Contains(err.Error(), substr) {
			t.Errorf("Verify = %v, want an error with %q", err, substr)
		}
	}
}

func mustReplace(t testing.TB, b []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%q not in %s", old, b)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

// forgedCosignature returns a cosignature line of witness i over the tree of
// the given size whose signature bytes are altered: the right name and key
// hash, in canonical base64, but a signature that does not verify.
func (f *fixture) forgedCosignature(i int, size uint64) []byte {
	f.t.Helper()
	c := tlog.Checkpoint{Origin: origin, Size: size, Root: [32]byte(f.tree.HashAt(size))}
	signed, err := note.Sign(&note.Note{Text: string(c.Marshal())}, f.witnesses[i])
	if err != nil {
		f.t.Fatal(err)
	}
	_, sigs, _ := cutNote(signed)
	name, b64, _ := strings.Cut(strings.TrimPrefix(strings.TrimSuffix(string(sigs), "\n"), "— "), " ")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		f.t.Fatal(err)
	}
	raw[len(raw)-1] ^= 0x01
	return []byte("— " + name + " " + base64.StdEncoding.EncodeToString(raw) + "\n")
}

func (f *fixture) bundle(index, size uint64, cosigners ...int) *bundle.Bundle {
	f.t.Helper()
	p, err := f.tree.InclusionProof(index, size)
	if err != nil {
		f.t.Fatal(err)
	}
	hashes := make([]tlog.Hash, len(p))
	for i := range p {
		hashes[i] = tlog.Hash(p[i])
	}
	return &bundle.Bundle{Entry: f.entries[index], Proof: tlog.Proof{Index: index, Hashes: hashes, Checkpoint: f.checkpoint(size, cosigners...)}}
}

func (f *fixture) expected() *Expected {
	s := f.secret
	return &Expected{VMID: "vm-1", Config: f.cfg, Secret: &s}
}

type treeProver struct{ tree *testonly.Tree }

func (p treeProver) ConsistencyProof(_ context.Context, _ string, old, new uint64) ([][]byte, error) {
	return p.tree.ConsistencyProof(old, new)
}

func TestVerifyValid(t *testing.T) {
	f := newFixture(t)
	idx := f.attest("vm-1", f.cfg)
	b := f.bundle(idx, f.tree.Size(), 0, 2)
	r, err := Verify(t.Context(), b, f.trust(), f.expected(), Options{Now: f.now})
	if err != nil {
		t.Fatalf("Verify = %v\n%s", err, dump(r))
	}
	if !r.OK || len(r.Results) != 9 {
		t.Fatalf("report not OK or %d checks:\n%s", len(r.Results), dump(r))
	}
	if r.VMID != "vm-1" || r.Index != idx || strings.Join(r.Cosigners, ",") != "w1,w3" || r.Counter != 1 {
		t.Errorf("report = %+v", r)
	}
}

// TestUndecodableReport: the report for a bundle that does not decode
// names the same checks as Verify's, in the same order, with the envelope
// failed (matching ErrEnvelope) and every later check not run.
func TestUndecodableReport(t *testing.T) {
	f := newFixture(t)
	idx := f.attest("vm-1", f.cfg)
	r, err := Verify(t.Context(), f.bundle(idx, f.tree.Size(), 0, 2), f.trust(), f.expected(), Options{Now: f.now})
	if err != nil {
		t.Fatal(err)
	}
	u := UndecodableReport(errors.New("truncated"))
	if len(u.Results) != len(r.Results) {
		t.Fatalf("undecodable report has %d checks, Verify's %d", len(u.Results), len(r.Results))
	}
	for i, res := range u.Results {
		if res.Check != r.Results[i].Check {
			t.Errorf("check %d: undecodable report %q, Verify %q", i, res.Check, r.Results[i].Check)
		}
		if want := map[bool]Status{true: Fail, false: NotRun}[i == 0]; res.Status != want {
			t.Errorf("check %q: status %q, want %q", res.Check, res.Status, want)
		}
	}
	if u.OK || !errors.Is(u.Results[0].err, ErrEnvelope) {
		t.Errorf("undecodable report OK %v, envelope error %v; want not OK and ErrEnvelope", u.OK, u.Results[0].err)
	}
}

// TestVerifyEachCheckFails crafts one bundle per check that breaks exactly
// that link, and requires Verify to name it.
func TestVerifyEachCheckFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check string
		want  error
		craft func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options)
	}{
		{"envelope not canonical", CheckEnvelope, ErrEnvelope, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			idx := f.append([]byte(`{"payloadType": "x"}`))
			return f.bundle(idx, f.tree.Size(), 0, 1), f.trust(), f.expected(), Options{Now: f.now}
		}},
		{"untrusted co-processor", CheckSignature, ErrCoprocessorSignature, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			other := newFixture(f.t) // another co-processor key, same log
			other.logSigner, other.logVKey, other.witnesses = f.logSigner, f.logVKey, f.witnesses
			idx := other.attest("vm-1", f.cfg)
			return other.bundle(idx, other.tree.Size(), 0, 1), f.trust(), f.expected(), Options{Now: f.now}
		}},
		{"statement for another VM", CheckStatement, ErrStatement, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			idx := f.attest("vm-2", f.cfg)
			return f.bundle(idx, f.tree.Size(), 0, 1), f.trust(), f.expected(), Options{Now: f.now}
		}},
		{"validly signed statement with another predicate type", CheckStatement, ErrStatement, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			payload := f.payload(f.attest("vm-1", f.cfg))
			payload = mustReplace(f.t, payload, `"predicateType":"`+coproc.PredicateType+`"`, `"predicateType":"https://slsa.dev/provenance/v1"`)
			idx := f.sealRaw(payload)
			return f.bundle(idx, f.tree.Size(), 0, 1), f.trust(), f.expected(), Options{Now: f.now}
		}},
		{"validly signed statement without a subject digest", CheckStatement, ErrStatement, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			payload := f.payload(f.attest("vm-1", f.cfg))
			st, err := coproc.ParseStatement(payload)
			if err != nil {
				f.t.Fatal(err)
			}
			payload = mustReplace(f.t, payload, `"digest":{"sha256":"`+st.Subject[0].Digest.SHA256+`"}`, `"digest":{}`)
			idx := f.sealRaw(payload)
			return f.bundle(idx, f.tree.Size(), 0, 1), f.trust(), f.expected(), Options{Now: f.now}
		}},
		{"wrong inclusion index", CheckInclusion, ErrInclusion, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			idx := f.attest("vm-1", f.cfg)
			f.append([]byte("later"))
			b := f.bundle(idx, f.tree.Size(), 0, 1)
			b.Proof.Index++
			return b, f.trust(), f.expected(), Options{Now: f.now}
		}},
		{"checkpoint signed by another log key", CheckLogSignature, ErrLogSignature, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			idx := f.attest("vm-1", f.cfg)
			skey, _, _ := note.GenerateKey(crand.Reader, origin)
			f.logSigner, _ = note.NewSigner(skey)
			return f.bundle(idx, f.tree.Size(), 0, 1), f.trust(), f.expected(), Options{Now: f.now}
		}},
		{"one cosignature of a 2-of-3 quorum", CheckWitnesses, ErrWitnessPolicy, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			idx := f.attest("vm-1", f.cfg)
			return f.bundle(idx, f.tree.Size(), 1), f.trust(), f.expected(), Options{Now: f.now}
		}},
		{"a forged cosignature of a known witness next to a quorum of valid ones", CheckWitnesses, ErrWitnessPolicy, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			idx := f.attest("vm-1", f.cfg)
			b := f.bundle(idx, f.tree.Size(), 0, 1)
			b.Proof.Checkpoint = append(b.Proof.Checkpoint, f.forgedCosignature(2, f.tree.Size())...)
			f.afterVerify = wantInError("the cosignature by witness key w3.test+")
			return b, f.trust(), f.expected(), Options{Now: f.now}
		}},
		{"a valid cosignature followed by a forged one of the same witness", CheckWitnesses, ErrWitnessPolicy, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			// x/mod's note.Open checks only the first line of each key; the
			// policy must check the second (witness/policy, bd5d299).
			idx := f.attest("vm-1", f.cfg)
			b := f.bundle(idx, f.tree.Size(), 0, 1)
			b.Proof.Checkpoint = append(b.Proof.Checkpoint, f.forgedCosignature(0, f.tree.Size())...)
			f.afterVerify = wantInError("the cosignature by witness key w1.test+")
			return b, f.trust(), f.expected(), Options{Now: f.now}
		}},
		{"cosignatures older than max-age", CheckWitnesses, ErrWitnessPolicy, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			idx := f.attest("vm-1", f.cfg)
			return f.bundle(idx, f.tree.Size(), 0, 1), f.trust(), f.expected(), Options{Now: time.Now().Add(2 * time.Hour)}
		}},
		{"fork against the trusted checkpoint", CheckConsistency, ErrConsistency, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			idx := f.attest("vm-1", f.cfg)
			path := filepath.Join(f.t.TempDir(), "state.json")
			st, err := OpenState(path)
			if err != nil {
				f.t.Fatal(err)
			}
			// The client trusted a checkpoint of a different tree of the same size.
			forked := testonly.New(rfc6962.DefaultHasher)
			for i := range f.entries {
				forked.AppendData(append([]byte("fork "), f.entries[i]...))
			}
			c := tlog.Checkpoint{Origin: origin, Size: forked.Size(), Root: [32]byte(forked.Hash())}
			signed, _ := note.Sign(&note.Note{Text: string(c.Marshal())}, f.logSigner, f.witnesses[0], f.witnesses[1])
			st.data.Checkpoints[origin] = string(signed)
			b := f.bundle(idx, f.tree.Size(), 0, 1)
			// Both signed checkpoints are kept as evidence, in memory and in
			// the state file, and the trusted one stays trusted.
			f.afterVerify = func(t *testing.T, err error) {
				var inc *InconsistentError
				if !errors.As(err, &inc) {
					t.Fatalf("Verify = %v, want an InconsistentError", err)
				}
				if !strings.Contains(err.Error(), "both signed checkpoints are kept as evidence") {
					t.Errorf("the error does not say the evidence is kept: %v", err)
				}
				reopened, err := OpenState(path)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range []*State{st, reopened} {
					ev := s.Evidence()
					if len(ev) != 1 || ev[0].Origin != origin || ev[0].Trusted != string(signed) || ev[0].Presented != string(b.Proof.Checkpoint) ||
						!strings.Contains(ev[0].Reason, "two different roots") {
						t.Fatalf("evidence = %+v, want the trusted and the presented signed checkpoints", ev)
					}
					if string(s.Checkpoint(origin)) != string(signed) {
						t.Fatalf("the state moved to the presented checkpoint")
					}
				}
				if inc.Evidence != reopened.Evidence()[0] {
					t.Errorf("the error's evidence %+v differs from the state's", inc.Evidence)
				}
			}
			return b, f.trust(), f.expected(), Options{Now: f.now, State: st}
		}},
		{"changed parameter", CheckConfiguration, ErrConfiguration, func(f *fixture) (*bundle.Bundle, *Trust, *Expected, Options) {
			changed := *f.cfg
			changed.MemoryBytes = 8 << 30
			idx := f.attest("vm-1", &changed)
			return f.bundle(idx, f.tree.Size(), 0, 1), f.trust(), f.expected(), Options{Now: f.now}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			b, tr, exp, opts := tc.craft(f)
			r, err := Verify(t.Context(), b, tr, exp, opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v\n%s", err, tc.want, dump(r))
			}
			if r.OK {
				t.Fatalf("report OK despite %v", err)
			}
			// The crafted bundle breaks exactly the named link: every check
			// before it passes.
			found := false
			for _, c := range r.Results {
				if c.Check == tc.check {
					if c.Status != Fail {
						t.Fatalf("check %q = %s, want fail\n%s", tc.check, c.Status, dump(r))
					}
					found = true
					break
				}
				if c.Status != Pass && c.Status != NotRequested {
					t.Fatalf("check %q = %s before the broken check %q\n%s", c.Check, c.Status, tc.check, dump(r))
				}
			}
			if !found {
				t.Fatalf("no check %q in the report\n%s", tc.check, dump(r))
			}
			if f.afterVerify != nil {
				f.afterVerify(t, err)
			}
		})
	}
}

var (
	mangleAll   = flag.Bool("mangle-all", false, "TestVerifyMangled: try all 255 non-zero deltas at every byte position instead of 4 (minutes, not seconds)")
	mangleParts = flag.String("mangle-parts", "entry,proof", "TestVerifyMangled: the parts whose bytes are changed one at a time: entry, proof, or entry,proof")
	mangleSeed  = flag.Uint64("mangle-seed", 1, "TestVerifyMangled: seed of the random delta tried at each position")
)

// TestVerifyMangled requires every single-byte change and every truncation of
// a valid bundle to be rejected:
//
//   - every byte of the entry (the DSSE envelope) and of the proof text
//     (tlog-proof: index, hashes, signed checkpoint) changed by XOR with 0x01,
//     0x80, 0xff and one random non-zero delta per position (all 255 deltas
//     with -mangle-all);
//   - every truncation Entry[:k] and proof[:k] with the other part intact;
//   - every truncation of the encoded bundle, down to the last byte.
//
// A changed part is carried in a Bundle value whose other part is intact,
// which is what Verify takes. A changed proof text must first get through
// tlog.ParseProof, the strict parser bundle.Parse uses: text it rejects
// cannot be in any bundle, so it counts as rejected. Going through the
// Bundle value rather than the JSON encoding loses nothing: bundle.Parse
// produces exactly this value or an error, and JSON cannot carry invalid
// UTF-8 at all (encoding/json would replace it by U+FFFD, testing another
// byte string than the one named).
func TestVerifyMangled(t *testing.T) {
	f := newFixture(t)
	idx := f.attest("vm-1", f.cfg)
	good := f.bundle(idx, f.tree.Size(), 0, 1)
	tr, exp := f.trust(), f.expected()
	proofText := good.Proof.Marshal()

	var byParser, byVerify, failures int
	// rejected reports whether a bundle with this entry and proof text is
	// rejected, and counts where.
	rejected := func(entry, proof []byte) bool {
		p, err := tlog.ParseProof(proof)
		if err != nil {
			byParser++
			return true
		}
		r, err := Verify(t.Context(), &bundle.Bundle{Entry: entry, Proof: p}, tr, exp, Options{Now: f.now})
		if err == nil || r.OK {
			return false
		}
		byVerify++
		return true
	}
	fail := func(format string, args ...any) {
		t.Helper()
		if failures++; failures <= 10 {
			t.Errorf(format, args...)
		}
	}
	defer func() {
		if failures > 10 {
			t.Errorf("… and %d more accepted changes", failures-10)
		}
	}()
	if rejected(good.Entry, proofText) {
		t.Fatalf("the unchanged bundle does not verify")
	}

	// The deltas tried at each position: 0x01 (lowest bit), 0x80 (highest
	// bit, which also makes ASCII invalid UTF-8), 0xff (every bit), and a
	// random one distinct from those.
	rng := rand.New(rand.NewPCG(*mangleSeed, 0))
	deltas := func() []byte {
		if *mangleAll {
			all := make([]byte, 255)
			for i := range all {
				all[i] = byte(i + 1)
			}
			return all
		}
		d := []byte{0x01, 0x80, 0xff, 0}
		for d[3] == 0 || d[3] == 0x01 || d[3] == 0x80 || d[3] == 0xff {
			d[3] = byte(rng.UintN(256))
		}
		return d
	}
	parts := map[string]bool{}
	for _, p := range strings.Split(*mangleParts, ",") {
		if p != "entry" && p != "proof" {
			t.Fatalf("-mangle-parts %q: want entry, proof or entry,proof", *mangleParts)
		}
		parts[p] = true
	}
	start := time.Now()
	changes := 0
	if parts["entry"] {
		for i := range good.Entry {
			for _, d := range deltas() {
				m := bytes.Clone(good.Entry)
				m[i] ^= d
				changes++
				if !rejected(m, proofText) {
					fail("entry with byte %d changed (%#02x→%#02x) verified", i, good.Entry[i], m[i])
				}
			}
		}
	}
	if parts["proof"] {
		for i := range proofText {
			for _, d := range deltas() {
				m := bytes.Clone(proofText)
				m[i] ^= d
				changes++
				if !rejected(good.Entry, m) {
					fail("proof text with byte %d changed (%q→%q) verified", i, proofText[i], m[i])
				}
			}
		}
	}
	t.Logf("%d single-byte changes (%d entry and %d proof bytes, parts %s, seed %d, all deltas %v) in %v: %d rejected by tlog.ParseProof, %d by Verify",
		changes, len(good.Entry), len(proofText), *mangleParts, *mangleSeed, *mangleAll, time.Since(start).Round(time.Millisecond), byParser, byVerify)
	if *mangleAll {
		return // the truncations below do not depend on the deltas
	}

	byParser, byVerify = 0, 0
	for k := range len(good.Entry) {
		if !rejected(good.Entry[:k], proofText) {
			fail("entry truncated to %d of %d bytes verified", k, len(good.Entry))
		}
	}
	for k := range len(proofText) {
		if !rejected(good.Entry, proofText[:k]) {
			fail("proof text truncated to %d of %d bytes verified", k, len(proofText))
		}
	}
	t.Logf("%d truncations of the entry and %d of the proof text: %d rejected by tlog.ParseProof, %d by Verify",
		len(good.Entry), len(proofText), byParser, byVerify)

	// Truncations of the encoded bundle. Marshal ends the JSON object with a
	// newline, which is not part of the bundle: dropping only it decodes to
	// the identical bundle, which must (and does) still verify. Every other
	// truncation cuts into the JSON and must be rejected.
	enc, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if enc[len(enc)-1] != '\n' {
		t.Fatalf("the encoded bundle does not end with a newline: %q", enc[len(enc)-8:])
	}
	parseErrs, verifyErrs := 0, 0
	for n := range len(enc) {
		b, err := bundle.Parse(enc[:n])
		if err != nil {
			parseErrs++
			continue
		}
		if n == len(enc)-1 {
			if !bytes.Equal(b.Entry, good.Entry) || !bytes.Equal(b.Proof.Marshal(), proofText) {
				t.Fatalf("the bundle without its final newline decodes to another bundle")
			}
			if _, err := Verify(t.Context(), b, tr, exp, Options{Now: f.now}); err != nil {
				t.Fatalf("the bundle without its final newline: %v", err)
			}
			continue
		}
		if _, err := Verify(t.Context(), b, tr, exp, Options{Now: f.now}); err == nil {
			fail("bundle truncated to %d of %d bytes verified", n, len(enc))
		} else {
			verifyErrs++
		}
	}
	if parseErrs+verifyErrs != len(enc)-1 {
		t.Errorf("%d + %d truncations rejected, want %d", parseErrs, verifyErrs, len(enc)-1)
	}
	t.Logf("%d truncations of the %d-byte encoded bundle rejected (%d by bundle.Parse, %d by Verify); the one without the final newline decodes to the same bundle and verifies",
		len(enc)-1, len(enc), parseErrs, verifyErrs)
}

func TestConsistencyState(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(t.TempDir(), "state.json")
	idx := f.attest("vm-1", f.cfg)
	size1 := f.tree.Size()
	b1 := f.bundle(idx, size1, 0, 1)
	tr, exp := f.trust(), f.expected()
	run := func(b *bundle.Bundle, prover ConsistencyProver) (*Report, error) {
		st, err := OpenState(path)
		if err != nil {
			t.Fatal(err)
		}
		return Verify(t.Context(), b, tr, exp, Options{Now: f.now, State: st, Prover: prover})
	}
	if _, err := run(b1, nil); err != nil {
		t.Fatalf("first use: %v", err)
	}
	for range 10 {
		f.append([]byte("more"))
	}
	b2 := f.bundle(idx, f.tree.Size(), 1, 2)
	if _, err := run(b2, nil); !errors.Is(err, ErrOfflineConsistency) {
		t.Fatalf("larger checkpoint offline = %v, want ErrOfflineConsistency", err)
	}
	if _, err := run(b2, treeProver{f.tree}); err != nil {
		t.Fatalf("larger checkpoint with proof: %v", err)
	}
	st, _ := OpenState(path)
	if c, _ := parseSignedBody(st.Checkpoint(origin)); c.Size != f.tree.Size() {
		t.Fatalf("trusted size = %d, want %d", c.Size, f.tree.Size())
	}
	// An older checkpoint still verifies, and does not move the state back.
	if _, err := run(b1, treeProver{f.tree}); err != nil {
		t.Fatalf("older checkpoint: %v", err)
	}
	st, _ = OpenState(path)
	if c, _ := parseSignedBody(st.Checkpoint(origin)); c.Size != f.tree.Size() {
		t.Fatalf("trusted size after older = %d, want %d", c.Size, f.tree.Size())
	}
	// A prover that lies (a proof for another tree) is caught and the pair
	// kept as evidence.
	forked := testonly.New(rfc6962.DefaultHasher)
	forked.AppendData(f.entries...)
	forked.AppendData([]byte("x"), []byte("y"))
	f.tree = forked
	f.entries = append(f.entries, []byte("x"), []byte("y"))
	b3 := f.bundle(idx, forked.Size(), 0, 2)
	// Make the prover return a proof from a tree that disagrees with the trusted one.
	liar := testonly.New(rfc6962.DefaultHasher)
	for range forked.Size() {
		liar.AppendData([]byte("lie"))
	}
	var inc *InconsistentError
	if _, err := run(b3, treeProver{liar}); !errors.As(err, &inc) {
		t.Fatalf("lying prover = %v, want InconsistentError", err)
	}
	st, _ = OpenState(path)
	if ev := st.Evidence(); len(ev) != 1 || ev[0].Origin != origin || ev[0].Trusted != string(b2.Proof.Checkpoint) || ev[0].Presented != string(b3.Proof.Checkpoint) {
		t.Fatalf("evidence = %+v, want one record: the trusted and the presented signed checkpoints", ev)
	}
	if string(st.Checkpoint(origin)) != string(b2.Proof.Checkpoint) {
		t.Fatalf("the state moved past the inconsistent checkpoint")
	}

	// A checkpoint of the trusted size with another root (a fork that also
	// contains our entry) is refused without any proof, and both signed
	// checkpoints are kept.
	trusted2, err := parseSignedBody(b2.Proof.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	alt := testonly.New(rfc6962.DefaultHasher)
	f.entries = f.entries[:idx+1]
	alt.AppendData(f.entries...)
	for alt.Size() < trusted2.Size {
		f.entries = append(f.entries, []byte("another more"))
		alt.AppendData([]byte("another more"))
	}
	f.tree = alt
	b4 := f.bundle(idx, trusted2.Size, 1, 2)
	r, err := run(b4, nil)
	if !errors.As(err, &inc) || !errors.Is(err, ErrConsistency) {
		t.Fatalf("same-size fork = %v, want an InconsistentError\n%s", err, dump(r))
	}
	st, _ = OpenState(path)
	ev := st.Evidence()
	if len(ev) != 2 || ev[1].Trusted != string(b2.Proof.Checkpoint) || ev[1].Presented != string(b4.Proof.Checkpoint) || !strings.Contains(ev[1].Reason, "two different roots") {
		t.Fatalf("evidence = %+v, want a second record with both signed checkpoints of size %d", ev, trusted2.Size)
	}
	if inc.Evidence != ev[1] {
		t.Fatalf("the error's evidence %+v is not the recorded one", inc.Evidence)
	}
}

func TestParseTrustRejects(t *testing.T) {
	f := newFixture(t)
	line, _ := TrustLine("host-a", f.cp.PublicKey())
	for _, tc := range []struct{ name, text string }{
		{"no log", "coprocessor a " + strings.Fields(line)[2] + "\n"},
		{"no coprocessor", "log " + f.logVKey + "\n"},
		{"bad coprocessor key", "log " + f.logVKey + "\ncoprocessor a AAAA\n"},
		{"duplicate coprocessor", "log " + f.logVKey + "\n" + line + "\n" + strings.Replace(line, "host-a", "host-b", 1) + "\n"},
		{"bad max-age", "log " + f.logVKey + "\n" + line + "\nmax-age forever\n"},
		{"zero quorum", "log " + f.logVKey + "\n" + line + "\nwitness w1 " + f.wVKeys[0] + "\ngroup g 0 w1\nquorum g\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseTrust([]byte(tc.text), t.TempDir()); !errors.Is(err, ErrTrustFile) {
				t.Fatalf("ParseTrust = %v, want ErrTrustFile", err)
			}
		})
	}
}

func dump(r *Report) string {
	if r == nil {
		return "(no report)"
	}
	var b strings.Builder
	for _, c := range r.Results {
		fmt.Fprintf(&b, "  %-22s %-7s %s\n", c.Check, c.Status, c.Detail)
	}
	return b.String()
}

// TestVerifyBindsVM: a bundle attested for another VM with the same
// configuration and VM secret has the expected root; an expected
// configuration must come with the VM id, or nothing ties the attestation to
// the VM the customer ordered.
func TestVerifyBindsVM(t *testing.T) {
	f := newFixture(t)
	idx := f.attest("vm-2", f.cfg)
	b, tr := f.bundle(idx, f.tree.Size(), 0, 1), f.trust()
	noVM := f.expected()
	noVM.VMID = ""
	r, err := Verify(t.Context(), b, tr, noVM, Options{Now: f.now})
	if !errors.Is(err, ErrConfiguration) || !errors.Is(err, ErrVMNotExpected) || r.OK {
		t.Fatalf("expected configuration without a VM id, bundle of vm-2: Verify = %v, want ErrConfiguration and ErrVMNotExpected\n%s", err, dump(r))
	}
	if _, err := Verify(t.Context(), b, tr, f.expected(), Options{Now: f.now}); !errors.Is(err, ErrStatement) {
		t.Fatalf("expected vm-1, bundle of vm-2: Verify = %v, want ErrStatement", err)
	}
	withVM := f.expected()
	withVM.VMID = "vm-2"
	r, err = Verify(t.Context(), b, tr, withVM, Options{Now: f.now})
	if err != nil {
		t.Fatalf("expected vm-2, bundle of vm-2: %v\n%s", err, dump(r))
	}
	if st := r.Results[2]; st.Check != CheckStatement || !strings.Contains(st.Detail, "the expected VM") {
		t.Errorf("statement check %+v does not say the VM is the expected one", st)
	}
}
