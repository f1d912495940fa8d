package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/tpm"
	"github.com/vmledger/vmledger/coproc/tpm/swtpmtest"
	"github.com/vmledger/vmledger/coproc/tpmsim"
)

// noClose lends a transport to tpm.Open without giving it away.
type noClose struct{ transport.TPM }

func (noClose) Close() error { return nil }

func openSim(t testing.TB) *tpmsim.Simulator {
	t.Helper()
	sim, err := tpmsim.Open()
	if err != nil {
		t.Fatalf("tpmsim.Open: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func dialSwtpm(t testing.TB, s *swtpmtest.Swtpm) *tpm.TCP {
	t.Helper()
	tr, err := tpm.DialSwtpm(t.Context(), s.Addr)
	if err != nil {
		t.Fatalf("DialSwtpm: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func claim(i int) coproc.Claim {
	return coproc.Claim{
		VMID:       "web-01",
		Root:       sha256.Sum256(fmt.Appendf(nil, "config %d", i)),
		Parameters: []string{"cpu.count", "kernel.cmdline", "memory.bytes"},
		Freshness:  coproc.Anchor{Origin: "example.com/ledger", Size: uint64(8 + i), Root: sha256.Sum256([]byte("checkpoint"))},
	}
}

var allObjects = []string{"srk", "key", "attestation key", "root index", "counter index"}

func provision(t testing.TB, tr transport.TPM) {
	t.Helper()
	created, err := tpm.Provision(t.Context(), tr, tpm.Config{})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if fmt.Sprint(created) != fmt.Sprint(allObjects) {
		t.Fatalf("first Provision created %q, want %q", created, allObjects)
	}
	created, err = tpm.Provision(t.Context(), tr, tpm.Config{})
	if err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	if len(created) != 0 {
		t.Fatalf("second Provision created %q, want nothing (idempotent)", created)
	}
}

func open(t testing.TB, tr transport.TPM) *tpm.CoProcessor {
	t.Helper()
	c, err := tpm.Open(t.Context(), noClose{tr}, tpm.Config{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return c
}

// independentVerify checks the entry with code that is not ours: the DSSE
// verifier of go-securesystemslib (which sigstore's pkg/signature/dsse wraps)
// with sigstore's verifier adapter, and sigstore's dsse.WrapVerifier.
// sigstore and securesystemslib compute default key ids as SHA-256 of the
// SSH wire form of the key, not of the DER SPKI as DSSE keyid here: the
// adapter is told our key id, and WrapVerifier (which cannot be told) gets
// the envelope with the keyid removed, which DSSE allows.
func independentVerify(t *testing.T, entry []byte, pub crypto.PublicKey) {
	t.Helper()
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	id, err := coproc.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ssldsse.NewEnvelopeVerifier(&dsse.VerifierAdapter{SignatureVerifier: v, Pub: pub, PubKeyID: id})
	if err != nil {
		t.Fatal(err)
	}
	var env ssldsse.Envelope
	if err := json.Unmarshal(entry, &env); err != nil {
		t.Fatal(err)
	}
	accepted, err := ev.Verify(t.Context(), &env)
	if err != nil || len(accepted) != 1 || accepted[0].KeyID != id {
		t.Fatalf("securesystemslib DSSE verifier: accepted %v, %v; want key %s", accepted, err, id)
	}

	env.Signatures[0].KeyID = ""
	anon, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	var payload []byte
	dv := dsse.WrapVerifier(v, dsse.WithExpectedPayloadType(coproc.PayloadType), dsse.WithDecodedPayload(&payload))
	if err := dv.VerifySignature(bytes.NewReader(anon), nil); err != nil {
		t.Fatalf("sigstore dsse.WrapVerifier rejects our envelope: %v", err)
	}
	if len(payload) == 0 {
		t.Fatalf("sigstore dsse verifier decoded an empty payload")
	}
}

// checkAttestations attests three times and checks each against the TPM's
// own state and two verifiers.
func checkAttestations(t *testing.T, c *tpm.CoProcessor) {
	ctx := t.Context()
	if _, set, err := c.Counter(ctx); err != nil || set {
		t.Fatalf("Counter before the first attestation = set %v, %v; want unset", set, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pemPub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(info.PublicKeyPEM))
	if err != nil {
		t.Fatalf("exported PEM: %v", err)
	}
	var prev uint64
	for i := 1; i <= 3; i++ {
		cl := claim(i)
		env, err := c.Attest(ctx, cl)
		if err != nil {
			t.Fatalf("Attest %d: %v", i, err)
		}
		root, set, err := c.Root(ctx)
		if err != nil || !set || root != cl.Root {
			t.Fatalf("after Attest %d: NV root = %x (set %v, %v), want %x", i, root, set, err, cl.Root)
		}
		n, set, err := c.Counter(ctx)
		if err != nil || !set {
			t.Fatalf("after Attest %d: Counter: set %v, %v", i, set, err)
		}
		if i > 1 && n != prev+1 {
			t.Fatalf("after Attest %d: counter = %d, want %d (previous + 1)", i, n, prev+1)
		}
		prev = n
		st, err := coproc.VerifyStatement(env, c.PublicKey())
		if err != nil {
			t.Fatalf("VerifyStatement with PublicKey(): %v", err)
		}
		if err := coproc.Verify(env, pemPub); err != nil {
			t.Fatalf("Verify with the exported PEM key: %v", err)
		}
		p := st.Predicate.Coprocessor
		if p.Counter != n || p.KeyID != c.KeyID() || p.RootNVIndex != uint32(tpm.DefaultRootIndex) || p.CounterNVIndex != uint32(tpm.DefaultCounterIndex) {
			t.Fatalf("statement coprocessor = %+v, want counter %d, key %s, default indexes", p, n, c.KeyID())
		}
		if st.ConfigRoot() != cl.Root || st.VMID() != cl.VMID || st.Anchor() != cl.Freshness {
			t.Fatalf("statement does not carry the claim: %+v", st)
		}
		entry, err := env.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		independentVerify(t, entry, pemPub)
		if i == 1 {
			t.Logf("entry: %s", entry)
		}
		if back, err := coproc.ParseEnvelope(entry); err != nil {
			t.Fatalf("ParseEnvelope(Canonical()) = %v", err)
		} else if err := coproc.Verify(back, c.PublicKey()); err != nil {
			t.Fatalf("Verify(ParseEnvelope(Canonical())) = %v", err)
		}
	}
	info, err = c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.CounterSet || info.Counter != prev || info.KeyID != c.KeyID() || info.Root == "" || info.KeyName == "" {
		t.Fatalf("Info = %+v, want counter %d and key %s", info, prev, c.KeyID())
	}
}

// checkNoLeaks fails if the TPM holds transient objects or sessions: every
// one that Provision and Attest create must have been flushed.
func checkNoLeaks(t *testing.T, tr transport.TPM) {
	t.Helper()
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(ht) << 24, PropertyCount: 64}.Execute(tr)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			t.Fatal(err)
		}
		var left []tpm2.TPMHandle
		for _, h := range hs.Handle {
			if uint32(h)>>24 == uint32(ht) {
				left = append(left, h)
			}
		}
		if len(left) > 0 {
			t.Fatalf("handles left in the TPM: %#x", left)
		}
	}
}

func TestAttestSimulator(t *testing.T) {
	sim := openSim(t)
	provision(t, sim)
	checkAttestations(t, open(t, sim))
	checkNoLeaks(t, sim)
}

func TestAttestSwtpm(t *testing.T) {
	s := swtpmtest.Start(t)
	tr := dialSwtpm(t, s)
	provision(t, tr)
	checkAttestations(t, open(t, tr))
	checkNoLeaks(t, tr)
}

// TestRestartSwtpm: the counter and the key survive swtpm restarts, both
// graceful (SIGTERM) and kill -9, and the counter never goes backwards.
func TestRestartSwtpm(t *testing.T) {
	s := swtpmtest.Start(t)
	tr0 := dialSwtpm(t, s)
	provision(t, tr0)
	tr0.Close() // swtpm serves one connection at a time

	ctx := t.Context()
	var keyID string
	var last uint64
	for i, stop := range []struct {
		name string
		do   func()
	}{
		{"kill -9", s.Kill},
		{"SIGTERM", s.Stop},
		{"kill -9 again", s.Kill},
	} {
		tr := dialSwtpm(t, s)
		c := open(t, tr)
		if keyID == "" {
			keyID = c.KeyID()
		} else if c.KeyID() != keyID {
			t.Fatalf("after %s: key id %s, want %s (the same key)", stop.name, c.KeyID(), keyID)
		}
		n, set, err := c.Counter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && (!set || n != last) {
			t.Fatalf("counter after restart = %d (set %v), want %d: it must survive and never go backwards", n, set, last)
		}
		env, err := c.Attest(ctx, claim(i))
		if err != nil {
			t.Fatalf("Attest: %v", err)
		}
		st, err := coproc.VerifyStatement(env, c.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && st.Predicate.Coprocessor.Counter != last+1 {
			t.Fatalf("counter in statement = %d, want %d", st.Predicate.Coprocessor.Counter, last+1)
		}
		last = st.Predicate.Coprocessor.Counter
		tr.Close()
		stop.do()
		s.Restart()
	}
	c := open(t, dialSwtpm(t, s))
	if n, _, err := c.Counter(ctx); err != nil || n != last || c.KeyID() != keyID {
		t.Fatalf("after the last restart: counter %d key %s (%v), want %d and %s", n, c.KeyID(), err, last, keyID)
	}
}

// crashAfter forwards commands and kills swtpm with SIGKILL right after the
// TPM answered the command with code cc; the caller sees a transport error.
type crashAfter struct {
	transport.TPM
	cc   tpm2.TPMCC
	kill func()
	done bool
}

func (c *crashAfter) Send(cmd []byte) ([]byte, error) {
	rsp, err := c.TPM.Send(cmd)
	if err == nil && !c.done && len(cmd) >= 10 && tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10])) == c.cc {
		c.done = true
		c.kill()
		return nil, errors.New("swtpm killed")
	}
	return rsp, err
}

// TestCrashMidAttestSwtpm: swtpm is killed with SIGKILL right after it
// incremented the counter and before the signature. The increment is durable,
// the value is burnt, and the next attestation carries a larger one.
func TestCrashMidAttestSwtpm(t *testing.T) {
	s := swtpmtest.Start(t)
	ctx := t.Context()
	tr := dialSwtpm(t, s)
	provision(t, tr)
	c := open(t, tr)
	env, err := c.Attest(ctx, claim(1))
	if err != nil {
		t.Fatal(err)
	}
	st, err := env.Statement()
	if err != nil {
		t.Fatal(err)
	}
	n := st.Predicate.Coprocessor.Counter

	crash := &crashAfter{TPM: tr, cc: tpm2.TPMCCNVIncrement, kill: s.Kill}
	cc := open(t, crash)
	if _, err := cc.Attest(ctx, claim(2)); err == nil {
		t.Fatal("Attest succeeded although swtpm died after the increment")
	}
	if !crash.done {
		t.Fatal("test setup: the crash did not happen")
	}
	tr.Close()
	s.Restart()

	c2 := open(t, dialSwtpm(t, s))
	got, set, err := c2.Counter(ctx)
	if err != nil || !set || got != n+1 {
		t.Fatalf("counter after the crash = %d (set %v, %v), want %d: the increment must be durable before signing", got, set, err, n+1)
	}
	if root, _, err := c2.Root(ctx); err != nil || root != claim(2).Root {
		t.Fatalf("root after the crash = %x (%v), want the crashed attempt's %x", root, err, claim(2).Root)
	}
	env, err = c2.Attest(ctx, claim(3))
	if err != nil {
		t.Fatal(err)
	}
	st, err = coproc.VerifyStatement(env, c.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if st.Predicate.Coprocessor.Counter != n+2 {
		t.Fatalf("counter after the crash = %d, want %d (value %d burnt, never reused)", st.Predicate.Coprocessor.Counter, n+2, n+1)
	}
}

// TestResetSimulator: a simulated reboot keeps the key and the counter.
func TestResetSimulator(t *testing.T) {
	sim := openSim(t)
	provision(t, sim)
	c := open(t, sim)
	env, err := c.Attest(t.Context(), claim(1))
	if err != nil {
		t.Fatal(err)
	}
	st, err := env.Statement()
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Reset(); err != nil {
		t.Fatal(err)
	}
	c2 := open(t, sim)
	n, set, err := c2.Counter(t.Context())
	if err != nil || !set || n != st.Predicate.Coprocessor.Counter || c2.KeyID() != c.KeyID() {
		t.Fatalf("after reset: counter %d (set %v, %v) key %s; want %d and %s", n, set, err, c2.KeyID(), st.Predicate.Coprocessor.Counter, c.KeyID())
	}
}

// TestErrors: TPM response codes stay matchable; a failed attestation before
// the increment leaves the counter alone; nothing is created implicitly.
func TestErrors(t *testing.T) {
	sim := openSim(t)
	ctx := t.Context()

	if _, err := tpm.Open(ctx, noClose{sim}, tpm.Config{}); !errors.Is(err, coproc.ErrNotInitialized) {
		t.Fatalf("Open before Provision = %v, want ErrNotInitialized", err)
	}

	// Something else at the root index: Provision refuses to touch it.
	other := tpm2.TPMSNVPublic{
		NVIndex: tpm.DefaultRootIndex, NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, NT: tpm2.TPMNTOrdinary},
		DataSize:   16,
	}
	def := tpm2.NVDefineSpace{AuthHandle: tpm2.TPMRHOwner, PublicInfo: tpm2.New2B(other)}
	if _, err := def.Execute(sim); err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.Provision(ctx, sim, tpm.Config{}); !errors.Is(err, coproc.ErrMismatch) {
		t.Fatalf("Provision over a foreign NV index = %v, want ErrMismatch", err)
	}
	if _, err := (tpm2.NVUndefineSpace{AuthHandle: tpm2.TPMRHOwner, NVIndex: tpm2.NamedHandle{Handle: other.NVIndex, Name: mustNVName(t, &other)}}).Execute(sim); err != nil {
		t.Fatal(err)
	}
	// The first Provision got as far as the key; this one finishes the job.
	created, err := tpm.Provision(ctx, sim, tpm.Config{})
	if err != nil || fmt.Sprint(created) != fmt.Sprint(allObjects[3:]) {
		t.Fatalf("Provision after the foreign index was removed = %q, %v; want %q", created, err, allObjects[3:])
	}

	c := open(t, sim)
	if _, err := c.Attest(ctx, claim(1)); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := hex.DecodeString(info.SRKName)
	if _, err := tpm.Open(ctx, noClose{sim}, tpm.Config{SRKName: pin}); err != nil {
		t.Fatalf("Open with the right SRK pin = %v", err)
	}
	pin[len(pin)-1] ^= 1
	if _, err := tpm.Open(ctx, noClose{sim}, tpm.Config{SRKName: pin}); !errors.Is(err, coproc.ErrMismatch) {
		t.Fatalf("Open with a wrong SRK pin = %v, want ErrMismatch", err)
	}
	before, _, err := c.Counter(ctx)
	if err != nil {
		t.Fatal(err)
	}

	bad, err := tpm.Open(ctx, noClose{sim}, tpm.Config{OwnerAuth: []byte("wrong")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Attest(ctx, claim(2)); !errors.Is(err, tpm2.TPMRCAuthFail) && !errors.Is(err, tpm2.TPMRCBadAuth) {
		t.Fatalf("Attest with a wrong owner auth = %v, want TPM_RC_AUTH_FAIL or TPM_RC_BAD_AUTH", err)
	}
	if _, err := c.Attest(ctx, coproc.Claim{VMID: "x"}); !errors.Is(err, coproc.ErrInvalidClaim) {
		t.Fatalf("Attest with an invalid claim = %v, want ErrInvalidClaim", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Attest(cancelled, claim(3)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Attest with a cancelled context = %v, want context.Canceled", err)
	}
	after, _, err := c.Counter(ctx)
	if err != nil || after != before {
		t.Fatalf("counter after failed attestations = %d (%v), want %d (failures before the increment burn nothing)", after, err, before)
	}
}

// TestCounterRedefined: deleting the counter index and defining it again
// (which an owner can do) does not roll the counter back.
func TestCounterRedefined(t *testing.T) {
	sim := openSim(t)
	provision(t, sim)
	ctx := t.Context()
	c := open(t, sim)
	for i := range 3 {
		if _, err := c.Attest(ctx, claim(i)); err != nil {
			t.Fatal(err)
		}
	}
	before, _, err := c.Counter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := tpm2.NVReadPublic{NVIndex: tpm.DefaultCounterIndex}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	undef := tpm2.NVUndefineSpace{AuthHandle: tpm2.TPMRHOwner, NVIndex: tpm2.NamedHandle{Handle: tpm.DefaultCounterIndex, Name: rsp.NVName}}
	if _, err := undef.Execute(sim); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Attest(ctx, claim(9)); !errors.Is(err, coproc.ErrNotInitialized) {
		t.Fatalf("Attest without the counter index = %v, want ErrNotInitialized", err)
	}
	if created, err := tpm.Provision(ctx, sim, tpm.Config{}); err != nil || fmt.Sprint(created) != "[counter index]" {
		t.Fatalf("Provision = %q, %v; want the counter index recreated", created, err)
	}
	env, err := c.Attest(ctx, claim(10))
	if err != nil {
		t.Fatal(err)
	}
	st, err := env.Statement()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Predicate.Coprocessor.Counter; got <= before {
		t.Fatalf("counter after redefining the index = %d, want > %d", got, before)
	}
}

// sniffer records every command and response, as someone on the bus would.
type sniffer struct {
	transport.TPM
	traffic [][]byte
}

func (s *sniffer) Send(cmd []byte) ([]byte, error) {
	// Copy first: the simulator decrypts parameters in place in the buffer.
	s.traffic = append(s.traffic, bytes.Clone(cmd))
	rsp, err := s.TPM.Send(cmd)
	s.traffic = append(s.traffic, bytes.Clone(rsp))
	return rsp, err
}

// TestParameterEncryption: the root and the signed digest never cross the
// bus in clear, neither in NV_Write and Sign nor when the root is read back.
func TestParameterEncryption(t *testing.T) {
	sim := openSim(t)
	provision(t, sim)
	bus := &sniffer{TPM: sim}
	c := open(t, bus)
	cl := claim(42)
	env, err := c.Attest(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if root, _, err := c.Root(t.Context()); err != nil || root != cl.Root {
		t.Fatalf("Root = %x, %v", root, err)
	}
	digest := sha256.Sum256(coproc.PAE(env.PayloadType, env.Payload))
	if len(bus.traffic) == 0 {
		t.Fatal("test setup: nothing recorded")
	}
	for i, msg := range bus.traffic {
		if bytes.Contains(msg, cl.Root[:16]) {
			t.Fatalf("message %d carries the root in clear: %x", i, msg)
		}
		if bytes.Contains(msg, digest[:16]) {
			t.Fatalf("message %d carries the signed digest in clear: %x", i, msg)
		}
	}
}

func mustNVName(t *testing.T, p *tpm2.TPMSNVPublic) tpm2.TPM2BName {
	n, err := tpm2.NVName(p)
	if err != nil {
		t.Fatal(err)
	}
	return *n
}

func benchmarkAttest(b *testing.B, tr transport.TPM) {
	provision(b, tr)
	c := open(b, tr)
	ctx := b.Context()
	cl := claim(0)
	for b.Loop() {
		if _, err := c.Attest(ctx, cl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAttestSim measures one attestation (NV write, increment, read,
// sign, four salted sessions) on the in-process simulator.
func BenchmarkAttestSim(b *testing.B) {
	benchmarkAttest(b, openSim(b))
}

// BenchmarkAttestSwtpm measures one attestation on swtpm over TCP.
func BenchmarkAttestSwtpm(b *testing.B) {
	s := swtpmtest.Start(b)
	benchmarkAttest(b, dialSwtpm(b, s))
}
