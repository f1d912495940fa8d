package witness

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/witness/policy"
)

// forkedLogs starts two Tessera POSIX logs signed with the same key, each
// served over HTTP on loopback by http.FileServer: a log that shows
// different trees to different parties. Both start with the entries in
// common, then take their own.
func forkedLogs(t *testing.T, common []string, a, b []string) (urlA, urlB *url.URL, logA *tesseraLog) {
	t.Helper()
	serve := func(entries []string) (*url.URL, *tesseraLog) {
		dir := t.TempDir()
		tl := newTesseraLog(t, dir, "")
		tl.add(t, entries...)
		srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
		t.Cleanup(srv.Close)
		u, _ := url.Parse(srv.URL + "/")
		return u, tl
	}
	urlA, logA = serve(append(append([]string{}, common...), a...))
	urlB, _ = serve(append(append([]string{}, common...), b...))
	return urlA, urlB, logA
}

func entries(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d", prefix, i)
	}
	return out
}

// gossipPair starts witness A watching the log at urlA and witness B
// watching urlB, each the other's peer.
func gossipPair(t *testing.T, urlA, urlB *url.URL) (a, b *testWitness, ga, gb *Gossiper) {
	t.Helper()
	l := newTestLog(t, 0)
	a = newTestWitness(t, witnessOpts{seed: 0x11, name: "a.example/w", logs: []*policy.Log{l.policyLog(t, urlA.String())}})
	b = newTestWitness(t, witnessOpts{seed: 0x12, name: "b.example/w", logs: []*policy.Log{l.policyLog(t, urlB.String())}})
	ga = NewGossiper(a.w, []*url.URL{b.url}, nil)
	gb = NewGossiper(b.w, []*url.URL{a.url}, nil)
	return a, b, ga, gb
}

func servedEvidence(t *testing.T, tw *testWitness) []*Evidence {
	t.Helper()
	r := get(t, tw.url.JoinPath("v1", "evidence").String())
	var ev []*Evidence
	if err := json.Unmarshal([]byte(r.body), &ev); err != nil {
		t.Fatalf("GET /v1/evidence = %q: %v", r.body, err)
	}
	return ev
}

// TestGossipDetectsFork: a log forked into two trees of the same size (and,
// second case, of different sizes sharing a prefix) is caught by two
// gossiping witnesses, and the evidence they serve verifies offline with
// nothing but the log's verifier key.
func TestGossipDetectsFork(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Tessera logs with a 1 s checkpoint interval")
	}
	tests := []struct {
		name     string
		common   int
		a, b     int
		wantKind string
		// whether witness B (which watches the smaller branch) can also
		// prove the fork: it cannot derive roots of a tree its log does
		// not serve.
		bDetects bool
	}{
		{name: "same size", common: 2, a: 6, b: 6, wantKind: KindSameSize, bDetects: true},
		{name: "different sizes", common: 3, a: 5, b: 2, wantKind: KindInconsistent, bDetects: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			urlA, urlB, logA := forkedLogs(t, entries("common", tt.common), entries("a", tt.a), entries("b", tt.b))
			a, b, ga, gb := gossipPair(t, urlA, urlB)

			// Round 1: each witness learns its log's view from the log.
			for _, g := range []*Gossiper{ga, gb} {
				if err := g.RunOnce(ctx); err != nil {
					t.Logf("first round: %v", err) // the peer has nothing yet
				}
			}
			for _, tw := range []*testWitness{a, b} {
				if st, _ := tw.store.Latest(t.Context(), testOrigin); st == nil {
					t.Fatalf("witness did not feed itself the log's checkpoint")
				}
			}
			if ev := servedEvidence(t, a); len(ev) != 0 {
				t.Fatalf("evidence before the witnesses compared notes: %+v", ev)
			}
			// Round 2: they see each other's cosigned checkpoints.
			if err := ga.RunOnce(ctx); err != nil {
				t.Fatalf("gossip A: %v", err)
			}
			if err := gb.RunOnce(ctx); err != nil {
				t.Fatalf("gossip B: %v", err)
			}

			check := func(who string, tw *testWitness, want bool) {
				ev := servedEvidence(t, tw)
				if !want {
					if len(ev) != 0 {
						t.Errorf("witness %s: unexpected evidence %+v", who, ev)
					}
					return
				}
				if len(ev) != 1 {
					t.Fatalf("witness %s recorded %d fork evidence bundles, want 1", who, len(ev))
				}
				for _, e := range ev {
					if e.Kind != tt.wantKind {
						t.Errorf("witness %s: evidence kind %q, want %q", who, e.Kind, tt.wantKind)
					}
					if err := VerifyEvidence(e, logA.verifier); err != nil {
						t.Errorf("witness %s: VerifyEvidence = %v", who, err)
					}
				}
				m := get(t, tw.url.JoinPath("metrics").String())
				if !strings.Contains(m.body, fmt.Sprintf("witness_fork_evidence_total %d", len(ev))) {
					t.Errorf("witness %s: metrics do not count %d evidence bundles", who, len(ev))
				}
				// Logged at error level, once per evidence bundle.
				var logged int
				for _, line := range strings.Split(tw.logs.String(), "\n") {
					var rec struct{ Level, Msg, Kind string }
					if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Msg, "LOG FORK DETECTED") {
						logged++
						if rec.Level != "ERROR" || rec.Kind != tt.wantKind {
							t.Errorf("witness %s: fork logged at %s with kind %q, want ERROR and %q", who, rec.Level, rec.Kind, tt.wantKind)
						}
					}
				}
				if logged != len(ev) {
					t.Errorf("witness %s: %d fork log lines for %d evidence bundles:\n%s", who, logged, len(ev), tw.logs)
				}
			}
			check("A", a, true)
			check("B", b, tt.bDetects)

			// Another round records nothing new.
			n := len(servedEvidence(t, a))
			ga.RunOnce(ctx)
			if got := len(servedEvidence(t, a)); got != n {
				t.Errorf("evidence count after another round = %d, want %d", got, n)
			}
		})
	}
}

// TestGossipFeedsNewerCheckpoints: a witness that is behind catches up from
// the log through gossip alone, with proofs built from the log's tiles, and
// records no evidence for an honest log.
func TestGossipFeedsNewerCheckpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Tessera log with a 1 s checkpoint interval")
	}
	dir := t.TempDir()
	tl := newTesseraLog(t, dir, "")
	tl.add(t, entries("x", 3)...)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL + "/")
	a, b, ga, gb := gossipPair(t, u, u)
	for _, g := range []*Gossiper{ga, gb} {
		g.RunOnce(t.Context())
	}
	raw := tl.add(t, entries("y", 300)...) // crosses a full tile
	if err := ga.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := gb.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tw := range []*testWitness{a, b} {
		st, err := tw.store.Latest(t.Context(), testOrigin)
		if err != nil || st == nil || !strings.HasPrefix(string(st.Note), string(raw[:strings.Index(string(raw), "\n\n")])) {
			t.Errorf("witness state %+v, want the log's checkpoint %q", st, raw)
		}
		if ev := servedEvidence(t, tw); len(ev) != 0 {
			t.Errorf("evidence for an honest log: %+v", ev)
		}
	}
}
