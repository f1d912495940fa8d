// Package bench measures vmledger on the machine it runs on: each mode runs
// the system under load, and compares the figure with a reference measured
// in the same run (Tessera's POSIX log, the raw signature-verification
// rate, raw SHA-256), so that the result is a ratio that does not depend on
// how fast the machine is.
//
// # Reading a report
//
// A [Report] has one [Row] per measured thing: operations, operations per
// second, the p50 and p99 latency of one operation, the process's CPU use
// during the row (user + system CPU time / wall time, so 200% is both cores
// of a 2-core machine busy) and its peak resident set size during the row
// (Linux VmHWM, reset before each row through /proc/self/clear_refs; where
// that is not possible, the process's lifetime maxrss from getrusage), and
// the peak of its anonymous part (RssAnon, sampled every 20 ms): VmHWM
// also counts file pages the process maps, such as badger's tables.
// [Comparison]s name the two figures they divide, the ratio and the target
// from issue 10.
//
// The modes run everything in this process, on loopback, so the CPU figures
// include the clients: a benchmark is honest about that rather than about an
// ideal deployment.
package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Report is the result of one mode.
type Report struct {
	Mode        string       `json:"mode"`
	Rows        []Row        `json:"rows"`
	Comparisons []Comparison `json:"comparisons"`
	// Notes explain what was measured (durability, configuration).
	Notes []string `json:"notes,omitempty"`
}

// Row is one measured thing.
type Row struct {
	Name      string  `json:"name"`
	Ops       int     `json:"ops"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// P50Ms and P99Ms are the latency of one operation in milliseconds;
	// zero where operations are not timed one by one.
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	CPUPercent float64 `json:"cpu_percent"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// PeakAnonMiB is the largest anonymous RSS (heap, stacks: RssAnon)
	// sampled every 20 ms: PeakRSSMiB also counts file pages the process
	// maps (badger's tables), which the kernel can drop.
	PeakAnonMiB float64 `json:"peak_anon_rss_mib"`
	// Extra holds mode-specific figures (bytes per entry, MB/s).
	Extra map[string]float64 `json:"extra,omitempty"`
}

// Comparison is a ratio with its target.
type Comparison struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
}

// atLeast and atMost build comparisons.
func atLeast(name string, v, target float64, format string) Comparison {
	return Comparison{Name: name, Value: v, Target: "≥ " + fmt.Sprintf(format, target), Met: v >= target}
}

func atMost(name string, v, target float64, format string) Comparison {
	return Comparison{Name: name, Value: v, Target: "≤ " + fmt.Sprintf(format, target), Met: v <= target}
}

// Write prints reports as tables, or as JSON (one array) if asJSON.
func Write(w io.Writer, asJSON bool, reports ...*Report) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODE\tROW\tOPS\tOPS/S\tP50 ms\tP99 ms\tCPU%\tPEAK RSS MiB\tPEAK ANON MiB\t")
	for _, r := range reports {
		for _, row := range r.Rows {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t\n", r.Mode, row.Name, row.Ops,
				num(row.OpsPerSec), ms(row.P50Ms), ms(row.P99Ms), row.CPUPercent, row.PeakRSSMiB, row.PeakAnonMiB)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMODE\tFIGURE\tVALUE\tTARGET\tMET")
	for _, r := range reports {
		for _, row := range r.Rows {
			for _, k := range slices.Sorted(mapKeys(row.Extra)) {
				fmt.Fprintf(tw, "%s\t%s %s\t%s\t\t\n", r.Mode, row.Name, k, num(row.Extra[k]))
			}
		}
		for _, c := range r.Comparisons {
			target, met := c.Target, "yes"
			switch {
			case target == "":
				target, met = "-", "-"
			case !c.Met:
				met = "NO"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Mode, c.Name, num(c.Value), target, met)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range reports {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "%s: %s\n", r.Mode, n)
		}
	}
	return nil
}

func mapKeys(m map[string]float64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func ms(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// meter measures one row: wall time, CPU time and peak RSS.
type meter struct {
	start time.Time
	cpu   time.Duration
	stop  chan struct{}
	anon  chan float64 // the sampler's peak, once stopped
}

// startMeter resets the peak RSS and starts the clocks.
func startMeter() *meter {
	// "5" resets VmHWM to the current RSS (Linux ≥ 4.0); on failure the
	// row reports the lifetime maxrss.
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	m := &meter{start: time.Now(), cpu: cpuTime(), stop: make(chan struct{}), anon: make(chan float64, 1)}
	go func() {
		peak := statusMiB("RssAnon:")
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				peak = max(peak, statusMiB("RssAnon:"))
			case <-m.stop:
				m.anon <- max(peak, statusMiB("RssAnon:"))
				return
			}
		}
	}()
	return m
}

// row ends the measurement of n operations with latencies lat (any order;
// nil if not timed one by one).
func (m *meter) row(name string, n int, lat []time.Duration) Row {
	wall := time.Since(m.start)
	cpu := cpuTime() - m.cpu
	close(m.stop)
	anon := <-m.anon
	r := Row{Name: name, Ops: n, Seconds: wall.Seconds(), OpsPerSec: float64(n) / wall.Seconds(),
		CPUPercent: 100 * cpu.Seconds() / wall.Seconds(), PeakRSSMiB: peakRSSMiB(), PeakAnonMiB: anon}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.P50Ms = msOf(lat[len(lat)/2])
		r.P99Ms = msOf(lat[min(len(lat)-1, len(lat)*99/100)])
	}
	return r
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// statusMiB returns a "kB" field of /proc/self/status in MiB, 0 if absent.
func statusMiB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

// peakRSSMiB is VmHWM from /proc/self/status, or getrusage's maxrss.
func peakRSSMiB() float64 {
	if v := statusMiB("VmHWM:"); v > 0 {
		return v
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024 // kilobytes on Linux
}

// collect runs f in n goroutines; each returns its latencies or an error.
func collect(n int, f func(i int) ([]time.Duration, error)) ([]time.Duration, error) {
	type res struct {
		lat []time.Duration
		err error
	}
	ch := make(chan res, n)
	for i := range n {
		go func() {
			lat, err := f(i)
			ch <- res{lat, err}
		}()
	}
	var all []time.Duration
	var first error
	for range n {
		r := <-ch
		all = append(all, r.lat...)
		if r.err != nil && first == nil {
			first = r.err
		}
	}
	return all, first
}
