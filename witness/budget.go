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
// it (see the package documentation). Reads of the monitoring endpoint have
// buckets of their own with the same parameters, one per origin and client
// address, so that one reader cannot starve the others (gossip peers).
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

// limiter holds one token bucket per key: an origin (the configured logs
// only), or an origin and a client address. Buckets that have refilled to
// the burst are forgotten once there are maxBuckets; if all are still in
// use, new clients share one bucket per origin, so the map stays bounded.
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

// maxBuckets is how many buckets a limiter keeps before it forgets full ones.
const maxBuckets = 4096

// allow takes a token from the bucket of origin (and client, if not ""),
// or returns a *RateLimitError.
func (l *limiter) allow(origin, client string) error {
	if l.budget.Rate <= 0 {
		return nil
	}
	key := origin
	if client != "" {
		key += "\x00" + client
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil && len(l.buckets) >= maxBuckets {
		l.forgetFull(now)
		if len(l.buckets) >= maxBuckets {
			// Too many clients at once: the new ones share a bucket.
			key = origin + "\x00*"
			b = l.buckets[key]
		}
	}
	if b == nil {
		b = &bucket{tokens: float64(l.budget.Burst), last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return nil
	}
	wait := time.Duration((1 - b.tokens) / l.budget.Rate * float64(time.Second))
	return &RateLimitError{Origin: origin, RetryAfter: wait}
}

func (l *limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(float64(l.budget.Burst), b.tokens+el*l.budget.Rate)
	}
}

// forgetFull drops the buckets that have refilled to the burst: a new
// bucket starts full, so forgetting them changes no decision.
func (l *limiter) forgetFull(now time.Time) {
	for k, b := range l.buckets {
		l.refill(b, now)
		b.last = now
		if b.tokens >= float64(l.budget.Burst) {
			delete(l.buckets, k)
		}
	}
}
