package witness

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Budget is a per-origin token bucket: each origin may make Burst requests
// at once and Rate requests per second on average. Rate 0 means unlimited.
// Of add-checkpoint requests only those that advance the stored state spend
// it (see the package documentation); the monitoring endpoint has a bucket
// of its own with the same parameters.
type Budget struct {
	Rate  float64
	Burst int
}

// RateLimitError is the 429 decision; RetryAfter is when a token will be
// available again.
type RateLimitError struct {
	Origin     string
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v for origin %q; retry after %v", ErrRateLimited, e.Origin, e.RetryAfter)
}

func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// limiter holds one token bucket per origin. Origins are the configured
// logs only, so the map is bounded.
type limiter struct {
	budget Budget
	now    func() time.Time

	mu      sync.Mutex // guards buckets
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(b Budget, now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	if b.Burst < 1 {
		b.Burst = 1
	}
	return &limiter{budget: b, now: now, buckets: map[string]*bucket{}}
}

// allow takes a token for origin, or returns a *RateLimitError.
func (l *limiter) allow(origin string) error {
	if l.budget.Rate <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[origin]
	if b == nil {
		b = &bucket{tokens: float64(l.budget.Burst), last: now}
		l.buckets[origin] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(float64(l.budget.Burst), b.tokens+el*l.budget.Rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return nil
	}
	wait := time.Duration((1 - b.tokens) / l.budget.Rate * float64(time.Second))
	return &RateLimitError{Origin: origin, RetryAfter: wait}
}
