package witness

import (
	"testing"

	"github.com/vmledger/vmledger/witness/policy"
)

// BenchmarkAddCheckpoint measures add-checkpoint requests that each advance
// the stored size by one: parse, verify the log signature and the proof,
// cosign, and commit the new state to badger with fsync (SyncWrites) before
// replying. "http" goes through a real server on 127.0.0.1; "direct" calls
// Witness.AddCheckpoint. Reports req/s.
//
//	go test ./witness -run '^$' -bench BenchmarkAddCheckpoint -benchtime 2000x
func BenchmarkAddCheckpoint(b *testing.B) {
	for _, mode := range []string{"http", "direct"} {
		b.Run(mode, func(b *testing.B) {
			l := newTestLog(b, b.N+1)
			tw := newTestWitness(b, witnessOpts{logs: []*policy.Log{l.policyLog(b, "")}})
			bodies := make([][]byte, b.N)
			for i := range bodies {
				bodies[i] = l.body(uint64(i), uint64(i+1))
			}
			b.ResetTimer()
			for i := range b.N {
				if mode == "http" {
					if r := post(b, tw.url, bodies[i]); r.code != 200 {
						b.Fatalf("request %d: %d %q", i, r.code, r.body)
					}
				} else if _, err := tw.w.AddCheckpoint(b.Context(), bodies[i]); err != nil {
					b.Fatalf("request %d: %v", i, err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
