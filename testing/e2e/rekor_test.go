package e2e

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-openapi/runtime"
	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	"github.com/sigstore/rekor/pkg/generated/client"
	rentries "github.com/sigstore/rekor/pkg/generated/client/entries"
	rpubkey "github.com/sigstore/rekor/pkg/generated/client/pubkey"
	rtlog "github.com/sigstore/rekor/pkg/generated/client/tlog"
	"github.com/sigstore/rekor/pkg/util"
	rverify "github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/vmledger/vmledger/log/bundle"
)

// testRekorReads reads every attested VM's entry from the running
// `vmledger log serve` through its Rekor v1-compatible API with Rekor's own
// generated client, and checks it with Rekor's own verifier
// (pkg/verify.VerifyLogEntry: inclusion under the served tree head, the
// tree head's signature, and the signed entry timestamp) with the log's
// key as the log publishes it at /api/v1/log/publicKey, as a Sigstore
// client takes it. The entry Rekor returns must be the envelope the
// customer's bundle carries, at the same index, and read twice it must be
// the same, integrated time and SET included.
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
	// As sigstore/rekor/pkg/client.GetRekorClient sets up its transport:
	// the public key comes as application/x-pem-file.
	rt := httptransport.New(u.Host, client.DefaultBasePath, []string{u.Scheme})
	rt.Consumers["application/x-pem-file"] = runtime.TextConsumer()
	rekor := client.New(rt, strfmt.Default)

	// Cosign loads the Rekor key this way (crypto.SHA256 is ignored for
	// Ed25519). If the key is not served, go on with the trust file's key.
	var servedVerifier signature.Verifier = verifier
	if pk, err := rekor.Pubkey.GetPublicKey(rpubkey.NewGetPublicKeyParamsWithContext(ctx)); err != nil {
		t.Errorf("rekor client GetPublicKey: %v", err)
	} else if served, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(pk.Payload)); err != nil {
		t.Errorf("rekor: /api/v1/log/publicKey is not a PEM public key: %v\n%s", err, pk.Payload)
	} else if edk, ok := served.(ed25519.PublicKey); !ok || !edk.Equal(logKey) {
		t.Errorf("rekor: /api/v1/log/publicKey serves %T %v, not the log key %x", served, served, logKey)
	} else if servedVerifier, err = signature.LoadVerifier(served, crypto.SHA256); err != nil {
		t.Fatal(err)
	}

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
			// Sigstore's main entry check: inclusion, checkpoint and SET.
			if err := rverify.VerifyLogEntry(ctx, &e, servedVerifier); err != nil {
				t.Errorf("%s: rekor rverify.VerifyLogEntry: %v", vm, err)
			}
			// The log integrated the entry after the deployment made the
			// log's key and before the agent wrote the bundle
			// (integratedTime is in whole seconds, rounded down).
			if it := *e.IntegratedTime; it < mtime(t, d.path("log.key")).Unix() || it > mtime(t, path).Unix() {
				t.Errorf("%s: integratedTime %d is not between the log key's creation (%d) and the bundle's (%d)",
					vm, it, mtime(t, d.path("log.key")).Unix(), mtime(t, path).Unix())
			}
			// Read again: the same time and the same SET.
			again, err := rekor.Entries.GetLogEntryByIndex(rentries.NewGetLogEntryByIndexParamsWithContext(ctx).WithLogIndex(int64(b.Proof.Index)))
			if err != nil {
				t.Fatalf("rekor client GetLogEntryByIndex(%d) again: %v", b.Proof.Index, err)
			}
			for _, a := range again.Payload {
				if *a.IntegratedTime != *e.IntegratedTime || !bytes.Equal(a.Verification.SignedEntryTimestamp, e.Verification.SignedEntryTimestamp) {
					t.Errorf("%s: read twice, integratedTime %d then %d, SET %x then %x", vm,
						*e.IntegratedTime, *a.IntegratedTime, e.Verification.SignedEntryTimestamp, a.Verification.SignedEntryTimestamp)
				}
			}
			// The SET binds the time and the index.
			it := *e.IntegratedTime
			*e.IntegratedTime = it + 1
			if err := rverify.VerifySignedEntryTimestamp(ctx, &e, servedVerifier); err == nil {
				t.Errorf("%s: rekor VerifySignedEntryTimestamp accepted another integratedTime", vm)
			}
			*e.IntegratedTime = it
			*e.LogIndex++
			if err := rverify.VerifySignedEntryTimestamp(ctx, &e, servedVerifier); err == nil {
				t.Errorf("%s: rekor VerifySignedEntryTimestamp accepted another logIndex", vm)
			}
			*e.LogIndex--
			// The same checks refuse a changed entry.
			e.Body = base64.StdEncoding.EncodeToString(append(b.Entry, ' '))
			if err := rverify.VerifyInclusion(ctx, &e); err == nil {
				t.Errorf("%s: rekor rverify.VerifyInclusion accepted a changed entry", vm)
			}
		}
	}
}

func mtime(t *testing.T, path string) time.Time {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
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
