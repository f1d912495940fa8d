package witness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/vmledger/vmledger/witness/policy"
)

// tesseraLog is a Tessera v1.0.4 log on the POSIX driver in a temp dir.
type tesseraLog struct {
	dir      string
	appender *tessera.Appender
	reader   tessera.LogReader
	vkey     string
	verifier note.Verifier
}

// newTesseraLog starts a Tessera log signed by the test log key (seed 0x02,
// origin example.com/ledger). witnessPolicy, if not empty, is a Tessera
// witness policy that must be satisfied before each checkpoint is published.
func newTesseraLog(t *testing.T, dir string, witnessPolicy string) *tesseraLog {
	t.Helper()
	ctx := t.Context()
	skey, vkey := seededKey(t, 0x02, testOrigin)
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(256, 50*time.Millisecond).
		WithCheckpointInterval(time.Second).
		WithGarbageCollectionInterval(0)
	if witnessPolicy != "" {
		group, err := tessera.NewWitnessGroupFromPolicy([]byte(witnessPolicy))
		if err != nil {
			t.Fatalf("tessera.NewWitnessGroupFromPolicy: %v", err)
		}
		opts = opts.WithWitnesses(group, &tessera.WitnessOptions{Timeout: 10 * time.Second})
	}
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown(sctx)
	})
	return &tesseraLog{dir: dir, appender: appender, reader: reader, vkey: vkey, verifier: verifier}
}

// add appends entries and waits until a checkpoint of at least the new size
// is published; it returns that checkpoint.
func (l *tesseraLog) add(t *testing.T, entries ...string) []byte {
	t.Helper()
	ctx := t.Context()
	var last uint64
	futures := make([]tessera.IndexFuture, len(entries))
	for i, e := range entries {
		futures[i] = l.appender.Add(ctx, tessera.NewEntry([]byte(e)))
	}
	for i, f := range futures {
		idx, err := f()
		if err != nil {
			t.Fatalf("Add(%q): %v", entries[i], err)
		}
		last = max(last, idx.Index)
	}
	for {
		raw, err := l.reader.ReadCheckpoint(ctx)
		if err == nil {
			cp, _, _, err := log.ParseCheckpoint(raw, testOrigin, l.verifier)
			if err != nil {
				t.Fatalf("published checkpoint does not verify: %v", err)
			}
			if cp.Size > last {
				return raw
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no checkpoint covering index %d was published", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestTesseraInterop: a Tessera v1.0.4 log configured (through Tessera's own
// policy parser) with our witness publishes checkpoints carrying our valid
// cosignature.
func TestTesseraInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Tessera log with a 1 s checkpoint interval")
	}
	l := newTestLog(t, 0) // for the policy log line only
	tw := newTestWitness(t, witnessOpts{logs: []*policy.Log{l.policyLog(t, "")}})
	pol := fmt.Sprintf("witness w1 %s %s\nquorum w1\n", tw.w.VKey(), tw.url)
	tl := newTesseraLog(t, t.TempDir(), pol)

	cosigVerifier, err := fnote.NewVerifierForCosignatureV1(tw.w.VKey())
	if err != nil {
		t.Fatal(err)
	}
	ours, err := policy.Parse([]byte("log " + tl.vkey + "\n" + pol))
	if err != nil {
		t.Fatal(err)
	}
	for round, batch := range [][]string{{"a", "b", "c"}, {"d", "e"}, {"f"}} {
		for i := range batch {
			batch[i] = fmt.Sprintf("entry %d %s", round, batch[i])
		}
		raw := tl.add(t, batch...)
		cp, _, n, err := log.ParseCheckpoint(raw, testOrigin, tl.verifier, cosigVerifier)
		if err != nil {
			t.Fatalf("round %d: ParseCheckpoint(%q) = %v", round, raw, err)
		}
		cosigned := false
		for _, s := range n.Sigs {
			cosigned = cosigned || s.Hash == cosigVerifier.KeyHash()
		}
		if !cosigned {
			t.Fatalf("round %d: published checkpoint %q lacks our cosignature", round, raw)
		}
		if v, err := ours.Verify(raw); err != nil || !v.QuorumMet {
			t.Errorf("round %d: our policy evaluator on Tessera's checkpoint = %v", round, err)
		}
		st, err := tw.store.Latest(t.Context(), testOrigin)
		if err != nil || st == nil || st.Size < cp.Size {
			t.Errorf("round %d: witness state %+v, want at least size %d", round, st, cp.Size)
		}
	}
}
