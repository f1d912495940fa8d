package e2e

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/go-openapi/strfmt"
	"github.com/sigstore/rekor/pkg/generated/client"
	rentries "github.com/sigstore/rekor/pkg/generated/client/entries"
	rtlog "github.com/sigstore/rekor/pkg/generated/client/tlog"
	"github.com/sigstore/rekor/pkg/util"
	rverify "github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/vmledger/vmledger/log/bundle"
)

// testRekorReads reads every attested VM's entry from the running
// `vmledger log serve` through its Rekor v1-compatible API with Rekor's own
// generated client, and checks it with Rekor's own verifier
// (pkg/verify): inclusion under the served tree head, and the tree head's
// signature by the log's key. The entry Rekor returns must be the envelope
// the customer's bundle carries, at the same index.
func testRekorReads(t *testing.T, d *deployment, bundles map[string]string) {
	ctx := t.Context()
	logKey := logPublicKey(t, d.logVKey)
	verifier, err := signature.LoadED25519Verifier(logKey)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(d.logURL)
	if err != nil {
		t.Fatal(err)
	}
	rekor := client.NewHTTPClientWithConfig(strfmt.Default,
		client.DefaultTransportConfig().WithHost(u.Host).WithSchemes([]string{u.Scheme}))

	info, err := rekor.Tlog.GetLogInfo(rtlog.NewGetLogInfoParamsWithContext(ctx))
	if err != nil {
		t.Fatalf("rekor client GetLogInfo: %v", err)
	}
	sth := &util.SignedCheckpoint{}
	if err := sth.UnmarshalText([]byte(*info.Payload.SignedTreeHead)); err != nil || !sth.Verify(verifier) {
		t.Fatalf("rekor: the signed tree head does not verify with the log's key (%v)\n%s", err, *info.Payload.SignedTreeHead)
	}

	for vm, path := range bundles {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := bundle.Parse(raw)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp, err := rekor.Entries.GetLogEntryByIndex(rentries.NewGetLogEntryByIndexParamsWithContext(ctx).WithLogIndex(int64(b.Proof.Index)))
		if err != nil {
			t.Fatalf("rekor client GetLogEntryByIndex(%d) (%s): %v", b.Proof.Index, vm, err)
		}
		if len(resp.Payload) != 1 {
			t.Fatalf("%s: %d entries for one index", vm, len(resp.Payload))
		}
		for _, e := range resp.Payload {
			if e.Body != base64.StdEncoding.EncodeToString(b.Entry) || *e.LogIndex != int64(b.Proof.Index) {
				t.Errorf("%s: Rekor's entry at %d is not the envelope of the customer's bundle", vm, b.Proof.Index)
			}
			if err := rverify.VerifyInclusion(ctx, &e); err != nil {
				t.Errorf("%s: rekor rverify.VerifyInclusion: %v", vm, err)
			}
			if err := rverify.VerifyCheckpointSignature(&e, verifier); err != nil {
				t.Errorf("%s: rekor rverify.VerifyCheckpointSignature: %v", vm, err)
			}
			// The same checks refuse a changed entry.
			e.Body = base64.StdEncoding.EncodeToString(append(b.Entry, ' '))
			if err := rverify.VerifyInclusion(ctx, &e); err == nil {
				t.Errorf("%s: rekor rverify.VerifyInclusion accepted a changed entry", vm)
			}
		}
	}
}

// logPublicKey extracts the Ed25519 public key from a C2SP note verifier
// key (name+keyhash+base64(0x01 || key)).
func logPublicKey(t *testing.T, vkey string) ed25519.PublicKey {
	t.Helper()
	// The name cannot contain '+'; the base64 key can.
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		t.Fatalf("log verifier key %q: want name+keyhash+key", vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x01 {
		t.Fatalf("log verifier key %q is not an Ed25519 note key (%v)", vkey, err)
	}
	return ed25519.PublicKey(raw[1:])
}
