package rekorcompat_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/util"
	"github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/engine"
	"github.com/vmledger/vmledger/log/rekorcompat"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/tlog"
)

const origin = "rekorcompat.test/log"

type testLog struct {
	e        *badgerlog.Engine
	h        *rekorcompat.Handler
	srv      *server.Server
	url      string
	key      ed25519.PrivateKey // the log key, as ParseNoteKey derived it
	pub      ed25519.PublicKey
	verifier signature.Verifier // the log key as Rekor's code takes it
	rekor    *client.Rekor      // Rekor's generated client
	entries  [][]byte
	added    [][2]int64    // per entry, Unix seconds before and after its AddBatch
	logNote  note.Verifier // the log key as a C2SP note verifier
	witness  note.Signer   // adds a second signature line to published checkpoints
}

// newTestLog starts a badger log behind log/server with the
// Rekor-compatible handlers on a loopback HTTP server.
func newTestLog(t testing.TB, signer func(ed25519.PrivateKey) ed25519.PrivateKey) *testLog {
	t.Helper()
	skey, vkey, err := tlog.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	noteSigner, _, err := tlog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	name, key, err := rekorcompat.ParseNoteKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	wkey, _, err := tlog.GenerateKey(rand.Reader, "witness.test/w1")
	if err != nil {
		t.Fatal(err)
	}
	witness, _, err := tlog.NewSigner(wkey)
	if err != nil {
		t.Fatal(err)
	}
	e, err := badgerlog.Open(t.Context(), badgerlog.Config{Dir: t.TempDir(), Signer: noteSigner, MemoryBudget: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	logNote, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	l := &testLog{e: e, key: key, pub: key.Public().(ed25519.PublicKey), logNote: logNote, witness: witness}
	srv, err := server.New(server.Config{Engine: e, Published: l.published})
	if err != nil {
		t.Fatal(err)
	}
	if signer != nil {
		key = signer(key)
	}
	l.h, err = rekorcompat.New(rekorcompat.Config{Engine: e, Published: l.published, Signer: key, Origin: name})
	if err != nil {
		t.Fatal(err)
	}
	l.h.Register(srv)
	l.srv = srv
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	l.url = hs.URL
	if l.verifier, err = signature.LoadED25519Verifier(l.pub); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(hs.URL)
	l.rekor = client.NewHTTPClientWithConfig(strfmt.Default, client.DefaultTransportConfig().WithHost(u.Host).WithSchemes([]string{"http"}))
	return l
}

// published is the engine's checkpoint with a witness cosignature line
// added, as a published checkpoint has: more than the log's own line.
func (l *testLog) published(ctx context.Context) ([]byte, error) {
	cp, err := l.e.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	n, err := note.Open(cp, note.VerifierList(l.logNote))
	if err != nil {
		return nil, err
	}
	return note.Sign(n, l.witness)
}

// grow appends entries of varied sizes (DSSE-like JSON) until the log has n.
func (l *testLog) grow(t testing.TB, n int) {
	t.Helper()
	var batch [][]byte
	for i := len(l.entries); i < n; i++ {
		payload := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","n":%d,"pad":%q}`, i, strings.Repeat("x", i%97)))
		batch = append(batch, fmt.Appendf(nil, `{"payloadType":"application/vnd.in-toto+json","payload":%q,"signatures":[{"keyid":"k","sig":"c2ln"}]}`, payload))
	}
	if len(batch) == 0 {
		return
	}
	before := time.Now().Unix()
	idx, err := l.e.AddBatch(t.Context(), batch)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().Unix()
	for i, x := range idx {
		if x != uint64(len(l.entries)) {
			t.Fatalf("AddBatch gave index %d to entry %d", x, len(l.entries))
		}
		l.entries = append(l.entries, batch[i])
		l.added = append(l.added, [2]int64{before, after})
	}
}

// root computes the root at size n from the entries the test added,
// independently of the log.
func (l *testLog) root(t testing.TB, n int) []byte {
	t.Helper()
	if n == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for _, e := range l.entries[:n] {
		if err := r.Append(rfc6962.DefaultHasher.HashLeaf(e), nil); err != nil {
			t.Fatal(err)
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func (l *testLog) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(l.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q, want application/json", path, ct)
	}
	return resp.StatusCode, b
}

// getModel GETs path, wants 200, decodes the body into v (a rekor models
// type) strictly and runs its Validate.
func (l *testLog) getModel(t *testing.T, path string, v interface{ Validate(strfmt.Registry) error }) {
	t.Helper()
	code, b := l.get(t, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, code, b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("GET %s: decoding into %T: %v\n%s", path, v, err, b)
	}
	if err := v.Validate(strfmt.Default); err != nil {
		t.Fatalf("GET %s: %T.Validate: %v\n%s", path, v, err, b)
	}
}

// indexes returns the entries of a tree of the given size whose inclusion
// the test checks: all of a small tree, else the edges of the tree and of
// its tiles.
func indexes(size int) []int {
	if size <= 8 {
		out := make([]int, size)
		for i := range out {
			out[i] = i
		}
		return out
	}
	seen := map[int]bool{}
	var out []int
	for _, i := range []int{0, 1, 2, 127, 254, 255, 256, 257, size / 3, size / 2, size - 2, size - 1} {
		if i < size && !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

func decodeHexes(t *testing.T, hs []string) [][]byte {
	t.Helper()
	out := make([][]byte, len(hs))
	for i, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// onlyEntry returns the single entry of a models.LogEntry and its key.
func onlyEntry(t *testing.T, le models.LogEntry) (string, models.LogEntryAnon) {
	t.Helper()
	if len(le) != 1 {
		t.Fatalf("log entry map has %d entries, want 1", len(le))
	}
	for k, e := range le {
		return k, e
	}
	panic("unreachable")
}

// TestRekorVerifies grows a real badger log through sizes around the tile
// boundaries and checks, at each size, with Rekor's own code: the signed
// tree head verifies with the log key (pkg/util), every sampled entry read
// through /api/v1/log/entries passes pkg/verify.VerifyLogEntry (inclusion,
// checkpoint signature and SET), its integratedTime lies within the call
// that added it and reads the same twice, the SET fails for any changed
// field, Rekor's generated client reads the endpoints, and
// pkg/verify.VerifyCurrentCheckpoint proves consistency from the previous
// size through /api/v1/log/proof.
func TestRekorVerifies(t *testing.T) {
	l := newTestLog(t, nil)
	ctx := t.Context()
	otherKey, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherVerifier, err := signature.LoadED25519Verifier(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	logID, err := rekorcompat.LogID(l.pub)
	if err != nil {
		t.Fatal(err)
	}

	prevSize := 0
	var prevSTH *util.SignedCheckpoint
	for _, size := range []int{1, 2, 255, 256, 257, 300, 513} {
		t.Run(fmt.Sprint("size=", size), func(t *testing.T) {
			l.grow(t, size)
			root := l.root(t, size)

			// The published checkpoint has two signature lines (log and
			// witness); the one served to Rekor clients has one.
			pub, err := l.published(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(pub), "\n\u2014 "); n != 2 {
				t.Fatalf("published checkpoint has %d signature lines, want 2:\n%s", n, pub)
			}

			var info models.LogInfo
			l.getModel(t, "/api/v1/log", &info)
			if *info.TreeSize != int64(size) || *info.RootHash != hex.EncodeToString(root) || *info.TreeID != l.h.TreeID() || len(info.InactiveShards) != 0 {
				t.Errorf("log info = size %d root %s tree %s shards %d, want %d %x %s 0",
					*info.TreeSize, *info.RootHash, *info.TreeID, len(info.InactiveShards), size, root, l.h.TreeID())
			}
			sth := &util.SignedCheckpoint{}
			if err := sth.UnmarshalText([]byte(*info.SignedTreeHead)); err != nil {
				t.Fatalf("rekor cannot parse the signed tree head: %v\n%s", err, *info.SignedTreeHead)
			}
			if !sth.Verify(l.verifier) {
				t.Fatalf("rekor SignedCheckpoint.Verify(log key) = false\n%s", *info.SignedTreeHead)
			}
			if sth.Verify(otherVerifier) {
				t.Fatal("rekor SignedCheckpoint.Verify(another key) = true")
			}
			if len(sth.Signatures) != 1 || sth.Size != uint64(size) || !bytes.Equal(sth.Hash, root) || sth.Origin != origin {
				t.Errorf("signed tree head: %d signatures, size %d, root %x, origin %q", len(sth.Signatures), sth.Size, sth.Hash, sth.Origin)
			}
			// Same checkpoint text as the log signed.
			if !strings.HasPrefix(string(pub), sth.Note+"\n") {
				t.Errorf("signed tree head text %q is not the published text", sth.Note)
			}

			for _, i := range indexes(size) {
				var le models.LogEntry
				l.getModel(t, fmt.Sprintf("/api/v1/log/entries?logIndex=%d", i), &le)
				key, e := onlyEntry(t, le)
				if err := e.Validate(strfmt.Default); err != nil {
					t.Fatalf("entry %d: LogEntryAnon.Validate: %v", i, err)
				}
				if err := verify.VerifyInclusion(ctx, &e); err != nil {
					t.Fatalf("entry %d: rekor verify.VerifyInclusion: %v", i, err)
				}
				if err := verify.VerifyCheckpointSignature(&e, l.verifier); err != nil {
					t.Fatalf("entry %d: rekor verify.VerifyCheckpointSignature: %v", i, err)
				}
				leaf := rfc6962.DefaultHasher.HashLeaf(l.entries[i])
				ip := e.Verification.InclusionProof
				switch {
				case key != fmt.Sprintf("%016x", mustTreeID(t, l))+hex.EncodeToString(leaf):
					t.Errorf("entry %d: key %s, want tree ID + leaf hash %x", i, key, leaf)
				case e.Body != base64.StdEncoding.EncodeToString(l.entries[i]):
					t.Errorf("entry %d: body %v is not the entry", i, e.Body)
				case *e.LogIndex != int64(i) || *ip.LogIndex != int64(i):
					t.Errorf("entry %d: logIndex %d, proof logIndex %d", i, *e.LogIndex, *ip.LogIndex)
				case *e.LogID != logID:
					t.Errorf("entry %d: logID %s, want %s", i, *e.LogID, logID)
				case *e.IntegratedTime < l.added[i][0] || *e.IntegratedTime > l.added[i][1] || e.Attestation != nil:
					t.Errorf("entry %d: integratedTime %d, attestation %v; want a time within its AddBatch [%d, %d], none",
						i, *e.IntegratedTime, e.Attestation, l.added[i][0], l.added[i][1])
				case *ip.TreeSize != int64(size) || *ip.RootHash != hex.EncodeToString(root) || *ip.Checkpoint != *info.SignedTreeHead:
					t.Errorf("entry %d: proof against size %d root %s, want %d %x and the log info's tree head", i, *ip.TreeSize, *ip.RootHash, size, root)
				}
				// The checks above can fail: another key, another body.
				if err := verify.VerifyCheckpointSignature(&e, otherVerifier); err == nil {
					t.Fatalf("entry %d: VerifyCheckpointSignature(another key) = nil", i)
				}
				e.Body = base64.StdEncoding.EncodeToString(append(bytes.Clone(l.entries[i]), ' '))
				if err := verify.VerifyInclusion(ctx, &e); err == nil {
					t.Fatalf("entry %d: VerifyInclusion(changed body) = nil", i)
				}
				// Sigstore's full check: inclusion, checkpoint and the SET.
				e.Body = base64.StdEncoding.EncodeToString(l.entries[i])
				if err := verify.VerifyLogEntry(ctx, &e, l.verifier); err != nil {
					t.Fatalf("entry %d: rekor verify.VerifyLogEntry: %v", i, err)
				}
				if err := verify.VerifySignedEntryTimestamp(ctx, &e, otherVerifier); err == nil {
					t.Fatalf("entry %d: VerifySignedEntryTimestamp(another key) = nil", i)
				}
				// The SET covers the time, the index, the log ID and the body.
				for name, change := range map[string]func(e *models.LogEntryAnon) func(){
					"integratedTime": func(e *models.LogEntryAnon) func() { *e.IntegratedTime++; return func() { *e.IntegratedTime-- } },
					"logIndex":       func(e *models.LogEntryAnon) func() { *e.LogIndex++; return func() { *e.LogIndex-- } },
					"logID": func(e *models.LogEntryAnon) func() {
						id := *e.LogID
						*e.LogID = strings.Repeat("0", 64)
						return func() { *e.LogID = id }
					},
					"body": func(e *models.LogEntryAnon) func() {
						b := e.Body
						e.Body = base64.StdEncoding.EncodeToString(append(bytes.Clone(l.entries[i]), ' '))
						return func() { e.Body = b }
					},
				} {
					undo := change(&e)
					if err := verify.VerifySignedEntryTimestamp(ctx, &e, l.verifier); err == nil {
						t.Fatalf("entry %d: VerifySignedEntryTimestamp accepted a changed %s", i, name)
					}
					undo()
				}
				// Read again: the same time and SET.
				var again models.LogEntry
				l.getModel(t, fmt.Sprintf("/api/v1/log/entries?logIndex=%d", i), &again)
				if _, a := onlyEntry(t, again); *a.IntegratedTime != *e.IntegratedTime || !bytes.Equal(a.Verification.SignedEntryTimestamp, e.Verification.SignedEntryTimestamp) {
					t.Fatalf("entry %d read twice: integratedTime %d then %d", i, *e.IntegratedTime, *a.IntegratedTime)
				}
			}

			// Rekor's generated client reads our endpoints.
			last := int64(size - 1)
			resp, err := l.rekor.Entries.GetLogEntryByIndex(rentries.NewGetLogEntryByIndexParamsWithContext(ctx).WithLogIndex(last))
			if err != nil {
				t.Fatalf("rekor client GetLogEntryByIndex(%d): %v", last, err)
			}
			_, e := onlyEntry(t, resp.Payload)
			if err := verify.VerifyInclusion(ctx, &e); err != nil {
				t.Fatalf("rekor client entry %d: VerifyInclusion: %v", last, err)
			}
			if err := verify.VerifyLogEntry(ctx, &e, l.verifier); err != nil {
				t.Fatalf("rekor client entry %d: VerifyLogEntry: %v", last, err)
			}

			// Consistency with the previous size: our proof verified with
			// transparency-dev/merkle, and Rekor's own check through its
			// client (GET /api/v1/log, then /api/v1/log/proof with treeID).
			if prevSize > 0 {
				var cp models.ConsistencyProof
				l.getModel(t, fmt.Sprintf("/api/v1/log/proof?firstSize=%d&lastSize=%d", prevSize, size), &cp)
				if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(prevSize), uint64(size), decodeHexes(t, cp.Hashes), l.root(t, prevSize), root); err != nil {
					t.Fatalf("proof.VerifyConsistency(%d, %d): %v", prevSize, size, err)
				}
				if *cp.RootHash != hex.EncodeToString(root) {
					t.Errorf("consistency proof rootHash %s, want %x", *cp.RootHash, root)
				}
				got, err := verify.VerifyCurrentCheckpoint(ctx, l.rekor, l.verifier, prevSTH)
				if err != nil {
					t.Fatalf("rekor verify.VerifyCurrentCheckpoint from %d: %v", prevSize, err)
				}
				if got.Size != uint64(size) {
					t.Errorf("VerifyCurrentCheckpoint returned size %d, want %d", got.Size, size)
				}
			}
			// A proof to a size below the current one carries that size's
			// root, and first == last is the empty proof.
			for _, pair := range [][2]int{{1, size}, {1, (size + 1) / 2}, {size, size}} {
				var cp models.ConsistencyProof
				l.getModel(t, fmt.Sprintf("/api/v1/log/proof?firstSize=%d&lastSize=%d", pair[0], pair[1]), &cp)
				if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(pair[0]), uint64(pair[1]), decodeHexes(t, cp.Hashes), l.root(t, pair[0]), l.root(t, pair[1])); err != nil {
					t.Fatalf("proof.VerifyConsistency(%d, %d): %v", pair[0], pair[1], err)
				}
				if want := hex.EncodeToString(l.root(t, pair[1])); *cp.RootHash != want {
					t.Errorf("proof %d→%d rootHash %s, want %s", pair[0], pair[1], *cp.RootHash, want)
				}
			}
			if _, err := l.rekor.Tlog.GetLogProof(rtlog.NewGetLogProofParamsWithContext(ctx).WithLastSize(int64(size))); err != nil {
				t.Errorf("rekor client GetLogProof(lastSize %d, firstSize default): %v", size, err)
			}
			prevSize, prevSTH = size, sth
		})
	}
}

func mustTreeID(t *testing.T, l *testLog) int64 {
	t.Helper()
	var id int64
	if _, err := fmt.Sscan(l.h.TreeID(), &id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestBadInput: malformed or impossible requests get a 4xx (never a 5xx)
// with a models.Error body that says why, with the statuses Rekor's server
// gives (422 for schema violations, 400, 404), and change nothing.
func TestBadInput(t *testing.T) {
	l := newTestLog(t, nil)
	l.grow(t, 10)
	tid := l.h.TreeID()
	for _, tc := range []struct {
		path string
		code int
		want string // in the message
	}{
		{"/api/v1/log/entries", 422, "logIndex in query is required"},
		{"/api/v1/log/entries?logIndex=", 422, "canonical decimal"},
		{"/api/v1/log/entries?logIndex=abc", 422, "canonical decimal"},
		{"/api/v1/log/entries?logIndex=-1", 422, "greater than or equal to 0"},
		{"/api/v1/log/entries?logIndex=01", 422, "canonical decimal"},
		{"/api/v1/log/entries?logIndex=1.0", 422, "canonical decimal"},
		{"/api/v1/log/entries?logIndex=1e1", 422, "canonical decimal"},
		{"/api/v1/log/entries?logIndex=+1", 422, "canonical decimal"},
		{"/api/v1/log/entries?logIndex=9223372036854775808", 422, "int64"},
		{"/api/v1/log/entries?logIndex=99999999999999999999999", 422, "int64"},
		{"/api/v1/log/entries?logIndex=1&logIndex=2", 422, "2 times"},
		{"/api/v1/log/entries?logIndex=10", 404, "not in the log (tree size 10)"},
		{"/api/v1/log/entries?logIndex=9223372036854775807", 404, "not in the log"},
		{"/api/v1/log/proof", 422, "lastSize in query is required"},
		{"/api/v1/log/proof?firstSize=1", 422, "lastSize in query is required"},
		{"/api/v1/log/proof?lastSize=0", 422, "lastSize in query should be greater than or equal to 1"},
		{"/api/v1/log/proof?firstSize=0&lastSize=5", 422, "firstSize in query should be greater than or equal to 1"},
		{"/api/v1/log/proof?firstSize=-3&lastSize=5", 422, "greater than or equal to 1"},
		{"/api/v1/log/proof?firstSize=x&lastSize=5", 422, "canonical decimal"},
		{"/api/v1/log/proof?firstSize=1&lastSize=5x", 422, "canonical decimal"},
		{"/api/v1/log/proof?firstSize=6&lastSize=5", 400, "firstSize(6) must not be greater than lastSize(5)"},
		{"/api/v1/log/proof?firstSize=1&lastSize=11", 400, "greater than what is currently observable(10)"},
		{"/api/v1/log/proof?firstSize=11&lastSize=12", 400, "greater than what is currently observable(10)"},
		{"/api/v1/log/proof?firstSize=1&lastSize=5&treeID=abc", 422, "treeID"},
		{"/api/v1/log/proof?firstSize=1&lastSize=5&treeID=-" + tid, 422, "treeID"},
		{"/api/v1/log/proof?firstSize=1&lastSize=5&treeID=1" + tid, 400, "invalid tree ID"},
		{"/api/v1/log/proof?firstSize=1&lastSize=5&treeID=7", 400, "invalid tree ID"},
		{"/api/v1/log/publicKey?treeID=abc", 422, "treeID"},
		{"/api/v1/log/publicKey?treeID=7", 400, "invalid tree ID"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, b := l.get(t, tc.path)
			if code != tc.code {
				t.Errorf("GET %s = %d %s, want %d", tc.path, code, b, tc.code)
			}
			var e models.Error
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("GET %s: error body %q is not a models.Error: %v", tc.path, b, err)
			}
			if e.Code != int64(code) || !strings.Contains(e.Message, tc.want) {
				t.Errorf("GET %s: error %d %q, want code %d and a message with %q", tc.path, e.Code, e.Message, code, tc.want)
			}
		})
	}
	// The matching good requests succeed, so the table is about the input.
	for _, path := range []string{
		"/api/v1/log/entries?logIndex=9",
		"/api/v1/log/proof?firstSize=1&lastSize=10&treeID=" + tid,
		"/api/v1/log/proof?lastSize=5",
	} {
		if code, b := l.get(t, path); code != http.StatusOK {
			t.Errorf("GET %s = %d %s, want 200", path, code, b)
		}
	}
	// Rekor's client gets its typed 404 for an entry the log lacks.
	_, err := l.rekor.Entries.GetLogEntryByIndex(rentries.NewGetLogEntryByIndexParamsWithContext(t.Context()).WithLogIndex(10))
	if _, ok := err.(*rentries.GetLogEntryByIndexNotFound); !ok {
		t.Errorf("rekor client GetLogEntryByIndex(10) error = %T %v, want *GetLogEntryByIndexNotFound", err, err)
	}
	// and its typed 400 for a proof beyond the tree.
	_, err = l.rekor.Tlog.GetLogProof(rtlog.NewGetLogProofParamsWithContext(t.Context()).WithLastSize(11))
	if bad, ok := err.(*rtlog.GetLogProofBadRequest); !ok || bad.Payload == nil || bad.Payload.Code != 400 {
		t.Errorf("rekor client GetLogProof(lastSize 11) error = %T %v, want *GetLogProofBadRequest with a payload", err, err)
	}
}

// TestPublicKey: /api/v1/log/publicKey serves the log key as Rekor does, a
// PEM SubjectPublicKeyInfo, which Rekor's generated client reads (with the
// PEM consumer that sigstore/rekor/pkg/client installs) and Sigstore's
// verifier loader takes; the tree ID parameter is optional.
func TestPublicKey(t *testing.T) {
	l := newTestLog(t, nil)
	l.grow(t, 1)
	u, _ := url.Parse(l.url)
	rt := httptransport.New(u.Host, client.DefaultBasePath, []string{"http"})
	rt.Consumers["application/x-pem-file"] = runtime.TextConsumer()
	rekor := client.New(rt, strfmt.Default)
	for _, treeID := range []*string{nil, new(l.h.TreeID())} {
		resp, err := rekor.Pubkey.GetPublicKey(rpubkey.NewGetPublicKeyParamsWithContext(t.Context()).WithTreeID(treeID))
		if err != nil {
			t.Fatalf("rekor client GetPublicKey(treeID %v): %v", treeID, err)
		}
		if resp.Payload != l.h.PublicKeyPEM() {
			t.Errorf("GetPublicKey payload %q, want %q", resp.Payload, l.h.PublicKeyPEM())
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(resp.Payload))
		if err != nil {
			t.Fatalf("served key: %v\n%s", err, resp.Payload)
		}
		if k, ok := pub.(ed25519.PublicKey); !ok || !k.Equal(l.pub) {
			t.Fatalf("served key is %T %x, want the log key %x", pub, pub, l.pub)
		}
		v, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		var le models.LogEntry
		l.getModel(t, "/api/v1/log/entries?logIndex=0", &le)
		if _, e := onlyEntry(t, le); verify.VerifyLogEntry(t.Context(), &e, v) != nil {
			t.Errorf("VerifyLogEntry with the served key: %v", verify.VerifyLogEntry(t.Context(), &e, v))
		}
	}
	resp, err := http.Get(l.url + "/api/v1/log/publicKey")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-pem-file" {
		t.Errorf("Content-Type %q, want application/x-pem-file", ct)
	}
}

// TestEmptyLog: before the first entry the log info says size 0 (which
// models.LogInfo.Validate refuses, as documented) and there is nothing to
// read or prove.
func TestEmptyLog(t *testing.T) {
	l := newTestLog(t, nil)
	code, b := l.get(t, "/api/v1/log")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/log = %d %s", code, b)
	}
	var info models.LogInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	if *info.TreeSize != 0 || *info.RootHash != hex.EncodeToString(rfc6962.DefaultHasher.EmptyRoot()) {
		t.Errorf("empty log info: size %d root %s", *info.TreeSize, *info.RootHash)
	}
	if err := info.Validate(strfmt.Default); err == nil {
		t.Error("models.LogInfo.Validate accepted tree size 0; update the package doc")
	}
	var sth util.SignedCheckpoint
	if err := sth.UnmarshalText([]byte(*info.SignedTreeHead)); err != nil || !sth.Verify(l.verifier) || sth.Size != 0 {
		t.Errorf("empty log tree head: parse error %v, size %d, verifies %v", err, sth.Size, sth.Verify(l.verifier))
	}
	for path, want := range map[string]int{
		"/api/v1/log/entries?logIndex=0":           404,
		"/api/v1/log/proof?firstSize=1&lastSize=1": 400,
	} {
		if code, b := l.get(t, path); code != want {
			t.Errorf("GET %s = %d %s, want %d", path, code, b, want)
		}
	}
}

// TestWrongKey: a handler configured with a key that did not sign the
// published checkpoint refuses to sign it under Rekor's convention; it
// answers 500 without detail and serves no tree head.
func TestWrongKey(t *testing.T) {
	l := newTestLog(t, func(ed25519.PrivateKey) ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	})
	l.grow(t, 3)
	for _, path := range []string{"/api/v1/log", "/api/v1/log/entries?logIndex=0", "/api/v1/log/proof?firstSize=1&lastSize=3"} {
		code, b := l.get(t, path)
		if code != http.StatusInternalServerError || !bytes.Contains(b, []byte(`"message":"Internal Server Error"`)) {
			t.Errorf("GET %s with the wrong key = %d %s, want 500 Internal Server Error", path, code, b)
		}
	}
}

// TestNew: configurations New must refuse.
func TestNew(t *testing.T) {
	l := newTestLog(t, nil)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	good := rekorcompat.Config{Engine: l.e, Published: l.published, Signer: key, Origin: origin}
	if _, err := rekorcompat.New(good); err != nil {
		t.Fatalf("New(good) = %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*rekorcompat.Config)
	}{
		{"no engine", func(c *rekorcompat.Config) { c.Engine = nil }},
		{"no published", func(c *rekorcompat.Config) { c.Published = nil }},
		{"no signer", func(c *rekorcompat.Config) { c.Signer = nil }},
		{"empty origin", func(c *rekorcompat.Config) { c.Origin = "" }},
		{"origin with space", func(c *rekorcompat.Config) { c.Origin = "a b" }},
		{"negative tree ID", func(c *rekorcompat.Config) { c.TreeID = -1 }},
		{"not ed25519", func(c *rekorcompat.Config) { c.Signer = ecdsaKey(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			if _, err := rekorcompat.New(c); err == nil {
				t.Errorf("New(%s) = nil error", tc.name)
			}
		})
	}
	c := good
	c.TreeID = 42
	h, err := rekorcompat.New(c)
	if err != nil || h.TreeID() != "42" {
		t.Errorf("New(TreeID 42).TreeID() = %v, %v", h, err)
	}
}

func ecdsaKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestServesPublishedOnly: the endpoints answer from the published
// checkpoint, not from the engine's newer, not yet published tree.
func TestServesPublishedOnly(t *testing.T) {
	l := newTestLog(t, nil)
	l.grow(t, 5)
	l.grow(t, 10) // the engine has signed size 10; only 5 is published
	srv, err := server.New(server.Config{Engine: l.e})
	if err != nil {
		t.Fatal(err)
	}
	h, err := rekorcompat.New(rekorcompat.Config{
		Engine:    l.e,
		Published: func(ctx context.Context) ([]byte, error) { return l.e.CheckpointAt(ctx, 5) },
		Signer:    l.key,
		Origin:    origin,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(srv)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	l.url = hs.URL

	var info models.LogInfo
	l.getModel(t, "/api/v1/log", &info)
	if *info.TreeSize != 5 || *info.RootHash != hex.EncodeToString(l.root(t, 5)) {
		t.Errorf("log info size %d root %s, want the published 5", *info.TreeSize, *info.RootHash)
	}
	var le models.LogEntry
	l.getModel(t, "/api/v1/log/entries?logIndex=4", &le)
	_, e := onlyEntry(t, le)
	if err := verify.VerifyInclusion(t.Context(), &e); err != nil || *e.Verification.InclusionProof.TreeSize != 5 {
		t.Errorf("entry 4: VerifyInclusion = %v, tree size %d, want nil, 5", err, *e.Verification.InclusionProof.TreeSize)
	}
	if err := verify.VerifyCheckpointSignature(&e, l.verifier); err != nil {
		t.Errorf("entry 4: VerifyCheckpointSignature = %v", err)
	}
	for path, want := range map[string]int{
		"/api/v1/log/entries?logIndex=5":            404,
		"/api/v1/log/proof?firstSize=5&lastSize=10": 400,
	} {
		if code, b := l.get(t, path); code != want {
			t.Errorf("GET %s = %d %s, want %d (beyond the published tree)", path, code, b, want)
		}
	}
}

// TestConcurrentReads: readers racing with appends always get entries
// that Rekor's verifier accepts (run with -race).
func TestConcurrentReads(t *testing.T) {
	l := newTestLog(t, nil)
	l.grow(t, 1)
	ctx := t.Context()
	done := make(chan struct{})
	errs := make(chan error, 4)
	for r := range 4 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				resp, err := l.rekor.Entries.GetLogEntryByIndex(rentries.NewGetLogEntryByIndexParamsWithContext(ctx).WithLogIndex(int64(r)))
				if err != nil {
					var nf *rentries.GetLogEntryByIndexNotFound
					if errors.As(err, &nf) {
						continue // not appended yet
					}
					errs <- err
					return
				}
				for _, e := range resp.Payload {
					if err := verify.VerifyInclusion(ctx, &e); err != nil {
						errs <- fmt.Errorf("entry %d: %w", r, err)
						return
					}
					if err := verify.VerifyCheckpointSignature(&e, l.verifier); err != nil {
						errs <- fmt.Errorf("entry %d: %w", r, err)
						return
					}
				}
			}
		}()
	}
	for n := 2; n <= 40; n++ {
		l.grow(t, n)
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestBodyIsNotARekorKind pins a documented difference: body is our DSSE
// envelope, so Rekor's decoder of entry kinds (what clients that type-check
// the body use) refuses it for lack of a kind.
func TestBodyIsNotARekorKind(t *testing.T) {
	l := newTestLog(t, nil)
	l.grow(t, 1)
	var le models.LogEntry
	l.getModel(t, "/api/v1/log/entries?logIndex=0", &le)
	_, e := onlyEntry(t, le)
	body, err := base64.StdEncoding.DecodeString(e.Body.(string))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, l.entries[0]) {
		t.Fatalf("body = %q, want the entry %q", body, l.entries[0])
	}
	if pe, err := models.UnmarshalProposedEntry(bytes.NewReader(body), nil); err == nil || !strings.Contains(err.Error(), "kind") {
		t.Errorf("models.UnmarshalProposedEntry(body) = %v, %v; want an error about the missing kind", pe, err)
	}
}

// TestNothingPublishedYet: before the publisher's first checkpoint (it
// answers engine.ErrNotFound) every endpoint says 503 with Retry-After.
func TestNothingPublishedYet(t *testing.T) {
	l := newTestLog(t, nil)
	l.grow(t, 3)
	srv, err := server.New(server.Config{Engine: l.e})
	if err != nil {
		t.Fatal(err)
	}
	h, err := rekorcompat.New(rekorcompat.Config{
		Engine: l.e,
		Published: func(context.Context) ([]byte, error) {
			return nil, fmt.Errorf("publish: no checkpoint published yet: %w", engine.ErrNotFound)
		},
		Signer: l.key,
		Origin: origin,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(srv)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	for _, path := range []string{"/api/v1/log", "/api/v1/log/entries?logIndex=0", "/api/v1/log/proof?firstSize=1&lastSize=3"} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !bytes.Contains(b, []byte("no checkpoint published yet")) {
			t.Errorf("GET %s = %d (Retry-After %q) %s, want 503 with Retry-After and the reason", path, resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	}
}

// engineOnly hides every method of an engine but engine.Engine's, as an
// engine that records no integration times has.
type engineOnly struct{ engine.Engine }

// TestNoIntegrationTime: over an engine that records no integration times
// (or an entry whose checkpoint has none), an entry is served with
// integratedTime 0 and no SET, never an invented time: VerifyLogEntry
// refuses it and the inclusion and checkpoint checks still pass.
func TestNoIntegrationTime(t *testing.T) {
	l := newTestLog(t, nil)
	l.grow(t, 3)
	srv, err := server.New(server.Config{Engine: l.e})
	if err != nil {
		t.Fatal(err)
	}
	h, err := rekorcompat.New(rekorcompat.Config{Engine: engineOnly{l.e}, Published: l.published, Signer: l.key, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(srv)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	resp, err := http.Get(hs.URL + "/api/v1/log/entries?logIndex=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var le models.LogEntry
	if err := json.NewDecoder(resp.Body).Decode(&le); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET entry 1 = %d, %v", resp.StatusCode, err)
	}
	_, e := onlyEntry(t, le)
	if *e.IntegratedTime != 0 || e.Verification.SignedEntryTimestamp != nil {
		t.Errorf("integratedTime %d, SET %x; want 0 and none", *e.IntegratedTime, e.Verification.SignedEntryTimestamp)
	}
	if err := verify.VerifyInclusion(t.Context(), &e); err != nil {
		t.Errorf("VerifyInclusion: %v", err)
	}
	if err := verify.VerifyCheckpointSignature(&e, l.verifier); err != nil {
		t.Errorf("VerifyCheckpointSignature: %v", err)
	}
	if err := verify.VerifyLogEntry(t.Context(), &e, l.verifier); err == nil {
		t.Error("VerifyLogEntry accepted an entry without a SET")
	}
}
