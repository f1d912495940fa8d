package explorer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// The growth chart (package doc, "The tree growing over time"). The times
// are the log's and its witnesses' claims, shown as they are, not verified.

// MaxGrowthSamples bounds the entries read for the growth chart.
const MaxGrowthSamples = 32

// growthTimeout bounds the reads of the growth chart: the home page is shown
// without the chart rather than late.
const growthTimeout = 5 * time.Second

// growthIndexes returns the entries sampled in a tree of size n (n > 0):
// 0, step, 2·step, … below n-1, then n-1, with step the smallest power of
// two that keeps them at most MaxGrowthSamples.
func growthIndexes(n uint64) []uint64 {
	if n == 0 {
		return nil
	}
	last := n - 1
	step := uint64(1)
	// ceil(last/step) multiples below last, plus last itself.
	for (last+step-1)/step+1 > MaxGrowthSamples {
		step <<= 1
	}
	var out []uint64
	for i := uint64(0); i < last; i += step {
		out = append(out, i)
	}
	return append(out, last)
}

// GrowthPoint is one sample: the tree had at least Size entries at Time.
type GrowthPoint struct {
	Size uint64
	Time time.Time
	// Entry is the sampled entry (Size-1), or -1 for a cosignature.
	Entry int64
	// Witness names the cosigner of a cosignature point.
	Witness string
	X, Y    float64 // position in the chart
}

// Growth is the home page's chart.
type Growth struct {
	Points []GrowthPoint
	// Unavailable says why there is no chart (the log lacks the endpoint or
	// answered something unusable); empty when there is one.
	Unavailable string
	Line        string // the SVG polyline's points
	MaxSize     uint64
	First, Last GrowthPoint
	// Span: the points are not all in one second.
	Span bool
	// FirstLabel and LastLabel label the time axis at both ends, short
	// enough to fit side by side on a phone.
	FirstLabel, LastLabel string
}

// Chart geometry, in SVG user units (the SVG scales to the page's width).
const (
	chartW, chartH                 = 480.0, 220.0
	chartL, chartR, chartT, chartB = 64.0, 16.0, 14.0, 40.0
	chartPlotW, chartPlotH         = chartW - chartL - chartR, chartH - chartT - chartB
	chartAxisY                     = chartH - chartB
)

// ChartGeometry is what the template needs to draw the axes.
type ChartGeometry struct{ W, H, L, R, T, B, AxisY, Right, Mid float64 }

var chartGeometry = ChartGeometry{W: chartW, H: chartH, L: chartL, R: chartR, T: chartT, B: chartB, AxisY: chartAxisY, Right: chartW - chartR, Mid: chartL + chartPlotW/2}

// compact writes a tree size in at most 5 characters, for the chart's axis.
func compact(n uint64) string {
	switch {
	case n < 100000:
		return strconv.FormatUint(n, 10)
	case n < 1e6:
		return strconv.FormatUint(n/1000, 10) + "k"
	case n < 100e6:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	case n < 100e9:
		return strconv.FormatFloat(float64(n)/1e9, 'f', 1, 64) + "G"
	}
	return strconv.FormatFloat(float64(n), 'g', 1, 64)
}

// errGrowth: the log's growth answers are unusable.
var errGrowth = errors.New("unusable integration time")

// growthCache keeps the integration time of sampled entries (they never
// change) and the last chart, by tree size and root.
type growthCache struct {
	mu    sync.Mutex
	times map[uint64]int64 // entry index → integratedTime (0: not recorded)
	key   string           // size and root of last
	last  *Growth
}

// integratedTime reads entry i's integratedTime from the Rekor-compatible
// API; 0 means the log recorded none.
func (c *logClient) integratedTime(ctx context.Context, i uint64) (int64, error) {
	path := "/api/v1/log/entries?logIndex=" + strconv.FormatUint(i, 10)
	b, err := c.get(ctx, path)
	if err != nil {
		return 0, err
	}
	var m map[string]struct {
		IntegratedTime *int64  `json:"integratedTime"`
		LogIndex       *uint64 `json:"logIndex"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("%w: GET %s: %w", errGrowth, path, err)
	}
	if len(m) != 1 {
		return 0, fmt.Errorf("%w: GET %s: %d entries, want 1", errGrowth, path, len(m))
	}
	for _, e := range m {
		switch {
		case e.LogIndex == nil || *e.LogIndex != i:
			return 0, fmt.Errorf("%w: GET %s: the answer is not entry %d", errGrowth, path, i)
		case e.IntegratedTime == nil || *e.IntegratedTime < 0 || *e.IntegratedTime >= 1<<53:
			return 0, fmt.Errorf("%w: GET %s: no usable integratedTime", errGrowth, path)
		}
		return *e.IntegratedTime, nil
	}
	panic("unreachable")
}

// growth returns the chart for checkpoint cp; it never fails: a log that
// cannot give it gets a Growth that says why.
func (e *Explorer) growth(ctx context.Context, cp *SignedCheckpoint) *Growth {
	if cp.Size == 0 {
		return nil
	}
	key := fmt.Sprintf("%d %x", cp.Size, cp.Root[:])
	gc := &e.growthCache
	gc.mu.Lock()
	if gc.key == key {
		g := gc.last
		gc.mu.Unlock()
		return g
	}
	idx := growthIndexes(cp.Size)
	times := make([]int64, len(idx))
	var missing []int
	for k, i := range idx {
		t, ok := gc.times[i]
		if ok {
			times[k] = t
		} else {
			missing = append(missing, k)
		}
	}
	gc.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, growthTimeout)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, k := range missing {
		g.Go(func() error {
			t, err := e.log.integratedTime(gctx, idx[k])
			times[k] = t
			return err
		})
	}
	if err := g.Wait(); err != nil {
		e.logr.Info("no growth chart", "err", err)
		return &Growth{Unavailable: unavailable(err)}
	}
	out, err := growthPoints(cp, idx, times)
	if err != nil {
		return &Growth{Unavailable: err.Error()}
	}

	gc.mu.Lock()
	defer gc.mu.Unlock()
	// Keep only the current sample: the cache stays bounded.
	keep := make(map[uint64]int64, len(idx))
	for k, i := range idx {
		keep[i] = times[k]
	}
	gc.times, gc.key, gc.last = keep, key, out
	return out
}

func unavailable(err error) string {
	switch {
	case errors.Is(err, ErrNotFound):
		return "the log does not serve integration times (GET /api/v1/log/entries): " + err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "the log did not answer in time"
	}
	return err.Error()
}

// growthPoints checks the sampled times and places them in the chart.
func growthPoints(cp *SignedCheckpoint, idx []uint64, times []int64) (*Growth, error) {
	g := &Growth{MaxSize: cp.Size}
	var prev int64
	for k, i := range idx {
		t := times[k]
		if t == 0 {
			continue // the log recorded no time for this entry
		}
		if t < prev {
			return nil, fmt.Errorf("%w: the log's integration times go backwards at entry %d", errGrowth, i)
		}
		prev = t
		g.Points = append(g.Points, GrowthPoint{Size: i + 1, Time: time.Unix(t, 0).UTC(), Entry: int64(i)})
	}
	if len(g.Points) == 0 {
		return nil, fmt.Errorf("%w: the log recorded no integration time for the sampled entries", errGrowth)
	}
	// The latest cosignature: the tree had cp.Size entries by then. A
	// witness clock behind the log's adds nothing: skip it.
	var cos GrowthPoint
	for _, s := range cp.Signatures {
		if !s.Cosigned.IsZero() && s.Cosigned.After(cos.Time) {
			cos = GrowthPoint{Size: cp.Size, Time: s.Cosigned, Entry: -1, Witness: s.Name}
		}
	}
	if last := g.Points[len(g.Points)-1]; !cos.Time.IsZero() && cos.Time.After(last.Time) {
		g.Points = append(g.Points, cos)
	}
	g.First, g.Last = g.Points[0], g.Points[len(g.Points)-1]
	place(g)
	return g, nil
}

// place computes the points' chart positions and the line: a step from
// each point to the next (the tree had at least a point's size from its
// time on; the line never claims more).
func place(g *Growth) {
	t0, t1 := g.First.Time.Unix(), g.Last.Time.Unix()
	g.Span = t1 > t0
	if g.First.Time.Format(time.DateOnly) == g.Last.Time.Format(time.DateOnly) {
		g.FirstLabel, g.LastLabel = g.First.Time.Format(time.DateTime), g.Last.Time.Format("15:04:05 UTC")
	} else {
		g.FirstLabel, g.LastLabel = g.First.Time.Format("2006-01-02 15:04 UTC"), g.Last.Time.Format("2006-01-02 15:04 UTC")
	}
	line := make([]byte, 0, 16*len(g.Points))
	for k := range g.Points {
		p := &g.Points[k]
		p.X = chartL + chartPlotW/2 // all at one second: the middle
		if t1 > t0 {
			p.X = chartL + chartPlotW*float64(p.Time.Unix()-t0)/float64(t1-t0)
		}
		p.Y = chartAxisY - chartPlotH*float64(p.Size)/float64(max(g.MaxSize, 1))
		if k > 0 {
			line = fmt.Appendf(line, " %.1f,%.1f ", p.X, g.Points[k-1].Y)
		}
		line = fmt.Appendf(line, "%.1f,%.1f", p.X, p.Y)
	}
	g.Line = string(line)
}
