package admission

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmledger/vmledger/coproc"
)

// benchClients is the number of concurrent HTTP clients of BenchmarkAdmit,
// each with its own co-processor key (so its counters increase in order).
const benchClients = 64

// BenchmarkAdmit measures admissions through HTTP on a real server and a
// real badger log (fsync per batch), with envelopes signed outside the
// timed loop. It reports entries/s and the p50/p99 latency of a POST.
//
//	go test -run '^$' -bench 'Admit|Verify' -benchtime 4000x ./log/admission
func BenchmarkAdmit(b *testing.B) {
	for _, alg := range []struct {
		name string
		p256 bool
	}{{"P256", true}, {"Ed25519", false}} {
		b.Run(alg.name, func(b *testing.B) { benchAdmit(b, alg.p256) })
	}
}

func benchAdmit(b *testing.B, p256 bool) {
	d := newDeployment(b, func(c *Config) { c.MaxInFlight = 4 * benchClients })
	a := d.anchor()
	per := b.N/benchClients + 1
	envs := make([][][]byte, benchClients)
	for w := range benchClients {
		dv := newDevice(b, p256)
		d.enrol(dv, fmt.Sprintf("bench-%d", w))
		for i := range per {
			envs[w] = append(envs[w], dv.attest(b, fmt.Sprintf("vm-%d-%d", w, i), rootOf(fmt.Sprint(w, i)), uint64(i+1), a))
		}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients}}
	url := d.hs.URL + "/v1/attestations"
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			quota := b.N / benchClients
			if w < b.N%benchClients {
				quota++
			}
			for i := range quota {
				start := time.Now()
				resp, err := hc.Post(url, "application/json", bytes.NewReader(envs[w][i]))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					failed.Add(1)
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d admissions failed", n, b.N)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkVerify measures the machine's raw DSSE verification rate on all
// cores (coproc.Verify, as admission calls it), to compare with
// BenchmarkAdmit in the same run.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []struct {
		name string
		p256 bool
	}{{"P256", true}, {"Ed25519", false}} {
		b.Run(alg.name, func(b *testing.B) {
			dv := newDevice(b, alg.p256)
			body := dv.attest(b, "vm-1", rootOf("x"), 1, coproc.Anchor{Origin: testOrigin, Size: 1})
			env, err := coproc.ParseEnvelope(body)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := coproc.Verify(env, dv.pub); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
		})
	}
}

// BenchmarkRebuild measures rebuilding a deleted index from a log of 4096
// P-256 attestations of one key (New, which now verifies each envelope's
// signature): it reports entries/s.
//
//	go test -run '^$' -bench Rebuild -benchtime 5x ./log/admission
func BenchmarkRebuild(b *testing.B) {
	const entries = 4096
	d := newDeployment(b, nil)
	dv := newDevice(b, true)
	d.enrol(dv, "dv")
	a := d.anchor()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < entries; i += 16 {
				if _, err := d.eng.Add(b.Context(), dv.attest(b, fmt.Sprint("vm-", i), rootOf(fmt.Sprint(i)), uint64(i+1), a)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		d.stop()
		if err := os.RemoveAll(d.indexDir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		d.start()
	}
	b.StopTimer()
	if k := d.svc.Keys(); len(k) != 1 || k[0].Counter != entries {
		b.Fatalf("rebuilt keys %+v, want counter %d", k, entries)
	}
	b.ReportMetric(float64(b.N*entries)/b.Elapsed().Seconds(), "entries/s")
}
