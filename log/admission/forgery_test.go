package admission

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/vmledger/vmledger/client"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/tpm"
	"github.com/vmledger/vmledger/coproc/tpm/swtpmtest"
	"github.com/vmledger/vmledger/coproc/tpmsim"
	"github.com/vmledger/vmledger/log/bundle"
)

// directSign is the forger: a program that can open the TPM and does
// nothing but TPM2_Sign with the persistent statement key and an empty
// password. No NV write, no increment.
func directSign(tr transport.TPM, h tpm2.TPMHandle) func(pae []byte) ([]byte, error) {
	return func(pae []byte) ([]byte, error) {
		rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(tr)
		if err != nil {
			return nil, err
		}
		d := sha256.Sum256(pae)
		rsp, err := tpm2.Sign{
			KeyHandle:  tpm2.AuthHandle{Handle: h, Name: rp.Name, Auth: tpm2.PasswordAuth(nil)},
			Digest:     tpm2.TPM2BDigest{Buffer: d[:]},
			InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(tr)
		if err != nil {
			return nil, err
		}
		sig, err := rsp.Signature.Signature.ECDSA()
		if err != nil {
			return nil, err
		}
		return coproc.ECDSASignature(elliptic.P256(),
			new(big.Int).SetBytes(sig.SignatureR.Buffer), new(big.Int).SetBytes(sig.SignatureS.Buffer)), nil
	}
}

// forge makes a forged envelope: web01, root sha256("evil"), counter
// 1000, signed by the TPM key through directSign. With ev nil the
// statement is software-attested (all the forger can say); otherwise it
// claims TPM evidence ev.
func forge(t *testing.T, tr transport.TPM, pub *ecdsa.PublicKey, a coproc.Anchor, ev string) []byte {
	t.Helper()
	id, err := coproc.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	cp := coproc.CoprocessorState{KeyID: id, Counter: 1000, RootNVIndex: uint32(tpm.DefaultRootIndex), CounterNVIndex: uint32(tpm.DefaultCounterIndex)}
	if ev != "" {
		cp.AttestedBy, cp.Evidence = coproc.AttestedByTPM, ev
	}
	st, err := coproc.NewStatement(coproc.Claim{VMID: "web01", Root: sha256.Sum256([]byte("evil")), Parameters: testParams, Freshness: a},
		cp, time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	env, err := coproc.Seal(st, pub, directSign(tr, tpm.DefaultKeyHandle))
	if err != nil {
		t.Fatalf("the forger's TPM2_Sign: %v", err)
	}
	b, err := env.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestForgeryDirectSign is the attack of issue 18 against swtpm (and the
// simulator) and a real badger log: the agent provisions the TPM (keys without an authorization
// value, as before) and attests once (counter 1); then a process with
// access to the TPM signs statements with TPM2_Sign alone, with no NV
// write and no increment. The log refuses them, naming the evidence, and
// so does the customer's verifier, also when a log that enrolled the key
// without its TPM identity admitted them.
func TestForgeryDirectSign(t *testing.T) {
	for name, backend := range map[string]func(t *testing.T) (dial func() (transport.TPMCloser, error)){
		// swtpm serves one connection at a time: each party dials its own.
		"swtpm": func(t *testing.T) func() (transport.TPMCloser, error) {
			sw := swtpmtest.Start(t)
			return func() (transport.TPMCloser, error) { return tpm.DialSwtpm(t.Context(), sw.Addr) }
		},
		// The in-process simulator: every party talks to the same one.
		"simulator": func(t *testing.T) func() (transport.TPMCloser, error) {
			sim, err := tpmsim.Open()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sim.Close() })
			return func() (transport.TPMCloser, error) { return noCloseTPM{sim}, nil }
		},
	} {
		t.Run(name, func(t *testing.T) { testForgeryDirectSign(t, backend(t)) })
	}
}

// noCloseTPM lends the simulator without giving it away.
type noCloseTPM struct{ transport.TPM }

func (noCloseTPM) Close() error { return nil }

func testForgeryDirectSign(t *testing.T, dial func() (transport.TPMCloser, error)) {
	ctx := t.Context()

	// The agent: provision, attest once.
	agentTr, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.Provision(ctx, agentTr, tpm.Config{}); err != nil {
		t.Fatal(err)
	}
	agent, err := tpm.Open(ctx, agentTr, tpm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pub := agent.PublicKey().(*ecdsa.PublicKey)
	ident := agent.Identity()
	info, err := agent.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plainPEM, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatal(err)
	}

	// d enrols the key with its TPM identity (the PEM coproc info prints);
	// old enrols it as before, without one.
	d := newDeployment(t, nil)
	if k, _, err := d.client().Enrol(ctx, "host-a", []byte(info.PublicKeyPEM)); err != nil || k.TPMIdentity != ident.String() {
		t.Fatalf("enrol with the TPM identity: %+v, %v", k, err)
	}
	old := newDeployment(t, nil)
	if _, _, err := old.client().Enrol(ctx, "host-a", plainPEM); err != nil {
		t.Fatal(err)
	}
	// The same key cannot gain (or lose) an identity by enrolling again.
	var refused *RefusedError
	if _, _, err := old.client().Enrol(ctx, "host-a", []byte(info.PublicKeyPEM)); !errors.As(err, &refused) || refused.Reason != "bad-key" {
		t.Fatalf("re-enrolling with an identity: %v, want 400 bad-key", err)
	}
	if _, _, err := d.client().Enrol(ctx, "host-a", plainPEM); !errors.As(err, &refused) || refused.Reason != "bad-key" {
		t.Fatalf("re-enrolling without the identity: %v, want 400 bad-key", err)
	}

	goodRoot := rootOf("good config")
	good, err := agent.Attest(ctx, coproc.Claim{VMID: "web01", Root: goodRoot, Parameters: testParams, Freshness: d.anchor()})
	if err != nil {
		t.Fatal(err)
	}
	goodEntry, _ := good.Canonical()
	r := d.post(goodEntry, "?wait=1")
	if r.status != http.StatusCreated {
		t.Fatalf("the agent's attestation: %d %s", r.status, r.body)
	}
	var goodResp AdmitResponse
	r.json(t, &goodResp)
	goodSt, _ := good.Statement()
	agent.Close() // swtpm serves one connection at a time

	// The forger.
	forgerTr, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	forgedSoft := forge(t, forgerTr, pub, d.anchor(), "")
	forgedReplay := forge(t, forgerTr, pub, d.anchor(), goodSt.Predicate.Coprocessor.Evidence)
	forgedOld := forge(t, forgerTr, pub, old.anchor(), "")
	forgerTr.Close()

	// The TPM's own state never saw the forgery.
	infoTr, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tpm.Open(ctx, infoTr, tpm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, _, err := c.Counter(ctx); err != nil || n != 1 {
		t.Fatalf("the TPM's counter is %d (%v), want 1", n, err)
	}
	if root, _, err := c.Root(ctx); err != nil || root != goodRoot {
		t.Fatalf("the TPM's root is %x (%v), want the good root", root, err)
	}

	// The log refuses both forgeries and says which part failed.
	for _, tc := range []struct {
		name  string
		entry []byte
		part  string
	}{
		{"software-attested", forgedSoft, "no TPM evidence"},
		{"evidence replayed from counter 1", forgedReplay, "root certification: certified root differs"},
	} {
		r := d.post(tc.entry, "")
		if r.status != http.StatusForbidden || r.reason(t) != "bad-evidence" || !bytes.Contains(r.body, []byte(tc.part)) {
			t.Errorf("forgery (%s): %d %s, want 403 bad-evidence naming %q", tc.name, r.status, r.body, tc.part)
		}
	}

	// The customer: the agent's attestation verifies with TPM evidence.
	line, err := client.TrustLineTPM("host-a", pub, ident)
	if err != nil {
		t.Fatal(err)
	}
	cfg, secret, _ := ordered(t)
	verify := func(l *deployment, raw []byte) (*client.Report, error) {
		b, err := bundle.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		trust, err := client.ParseTrust(fmt.Appendf(nil, "log %s\nquorum none\n%s\n", l.vkey, line), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return client.Verify(ctx, b, trust, &client.Expected{VMID: "web01", Config: cfg, Secret: &secret}, client.Options{})
	}
	rep, _ := verify(d, goodResp.Bundle)
	if rep.Attestation != client.AttestationTPM || rep.TPM == nil || !passed(rep, client.CheckEvidence) {
		t.Errorf("the agent's attestation: attestation %q, tpm %v\n%+v", rep.Attestation, rep.TPM, rep.Results)
	}

	// A log that enrolled the key without its identity admits the forgery;
	// the customer's verifier refuses it at the evidence check.
	r = old.post(forgedOld, "?wait=1")
	if r.status != http.StatusCreated {
		t.Fatalf("the old enrolment: %d %s", r.status, r.body)
	}
	var resp AdmitResponse
	r.json(t, &resp)
	rep, err = verify(old, resp.Bundle)
	if !errors.Is(err, client.ErrEvidence) || rep.OK {
		t.Fatalf("verify of the forgery = %v, want ErrEvidence", err)
	}
	for _, res := range rep.Results {
		want := client.Pass
		switch res.Check {
		case client.CheckEvidence, client.CheckConfiguration:
			want = client.Fail
		case client.CheckConsistency:
			want = client.NotRequested
		}
		if res.Status != want {
			t.Errorf("check %q: %s (%s), want %s", res.Check, res.Status, res.Detail, want)
		}
	}
}

func passed(r *client.Report, check string) bool {
	for _, res := range r.Results {
		if res.Check == check {
			return res.Status == client.Pass
		}
	}
	return false
}
