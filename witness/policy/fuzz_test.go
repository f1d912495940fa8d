package policy_test

import (
	"encoding/base64"
	"testing"

	"github.com/vmledger/vmledger/witness/policy"
)

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
func encodeB64(b []byte) string          { return base64.StdEncoding.EncodeToString(b) }

// FuzzParse: the parser never panics, and whatever it accepts obeys the
// strict rules (thresholds within 1..members, members distinct, one quorum).
// Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, text []byte) {
		p, err := policy.Parse(text)
		if err != nil {
			return
		}
		var check func(c policy.Component)
		check = func(c policy.Component) {
			g, ok := c.(*policy.Group)
			if !ok {
				return
			}
			if g.Threshold < 1 || g.Threshold > len(g.Members) {
				t.Fatalf("accepted group %q with threshold %d of %d", g.Name, g.Threshold, len(g.Members))
			}
			seen := map[policy.Component]bool{}
			for _, m := range g.Members {
				if seen[m] {
					t.Fatalf("accepted group %q with a repeated member", g.Name)
				}
				seen[m] = true
				check(m)
			}
		}
		check(p.Quorum)
		keys := map[string]bool{}
		for _, w := range p.Witnesses {
			id := w.Verifier.Name() + "+" + string(rune(w.Verifier.KeyHash()))
			if keys[id] {
				t.Fatalf("accepted the same witness key twice")
			}
			keys[id] = true
		}
		// Parsing is deterministic.
		q, err := policy.Parse(text)
		if err != nil || len(q.Witnesses) != len(p.Witnesses) || len(q.Logs) != len(p.Logs) {
			t.Fatalf("second Parse differs: %v", err)
		}
	})
}
