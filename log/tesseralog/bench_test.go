package tesseralog

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmledger/vmledger/testing/mysqltest"
)

// BenchmarkTesseraAppend measures appends of 1 KiB entries from many
// concurrent writers: every Add returns once a published checkpoint covers
// it, as in badgerlog's BenchmarkAppend. Each Add waits for the next
// publication (about 2 s: see the package documentation), so the rate is
// about writers / 2 s until sequencing saturates; run with a fixed count,
// e.g.
//
//	go test -run '^$' -bench TesseraAppend -benchtime 20000x ./log/tesseralog
func BenchmarkTesseraAppend(b *testing.B) {
	for _, writers := range []int{1024, 16384} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, _ := newKey(b)
			e := open(b, Config{DSN: mysqltest.NewDatabase(b), Signer: s, PushbackMaxOutstanding: 2 * writers})
			defer e.Close()
			var mu sync.Mutex
			var lat []time.Duration
			b.SetBytes(1024)
			b.ResetTimer()
			start := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					var mine []time.Duration
					entry := make([]byte, 1024)
					for next.Add(1) <= int64(b.N) {
						rand.Read(entry) // distinct, incompressible entries
						t0 := time.Now()
						if _, err := e.Add(context.Background(), entry); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
