// Package ratelimit owns the keyed token buckets behind every per-action
// rate limit (registration and login per IP, failed logins per account,
// sends, joins and invites per user). Over the limit a caller gets
// M_LIMIT_EXCEEDED with the time until it may retry.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"myelin/internal/apierr"
)

// MaxKeys caps how many keys one Keyed tracks.
const MaxKeys = 100_000

// sweepEvery is how often idle buckets are dropped.
const sweepEvery = time.Minute

// Keyed is one token bucket per key.
//
// Memory stays bounded without a goroutine: a bucket idle long enough to
// refill completely behaves exactly like a new one, so sweeps (inline, at
// most once a minute, or when the map is full) drop those. If the map is
// still full after sweeping, arbitrary entries are evicted down to 90% of the
// cap: that can only make the limit more lenient for them, never lock anyone
// out, and it keeps the next forced sweep 10% of the cap away.
type Keyed struct {
	enabled bool
	limit   rate.Limit
	burst   int
	refill  time.Duration // time for an empty bucket to refill completely
	now     func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim      *rate.Limiter
	lastUsed time.Time
}

// New returns a limiter allowing perSecond sustained and burst at once per
// key. It is off (every call passes) when enabled is false or the rate or
// burst is not positive. now is the clock (time.Now outside tests).
func New(enabled bool, perSecond float64, burst int, now func() time.Time) *Keyed {
	k := &Keyed{enabled: enabled && perSecond > 0 && burst > 0, now: now, buckets: map[string]*bucket{}}
	if k.enabled {
		k.limit, k.burst = rate.Limit(perSecond), burst
		k.refill = time.Duration(float64(burst) / perSecond * float64(time.Second))
	}
	return k
}

// Take consumes n events for key, or consumes nothing and returns 429
// M_LIMIT_EXCEEDED with the wait. n larger than the burst can never pass; it
// is refused with the time a full bucket takes, so a client backing off does
// not spin.
func (k *Keyed) Take(key string, n int) error { return k.use(key, n, true) }

// Check is Take without consuming: failed-login limits are checked before a
// password is verified and charged after, and a request that needs several
// limits checks them all before it takes any.
func (k *Keyed) Check(key string, n int) error { return k.use(key, n, false) }

// Charge consumes one event for key even if that overdraws it; the next
// Check reports the wait.
func (k *Keyed) Charge(key string) {
	if !k.enabled {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.now()
	k.get(key, t).AllowN(t, 1)
}

// Len is the number of tracked keys.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.buckets)
}

func (k *Keyed) use(key string, n int, consume bool) error {
	if !k.enabled || n <= 0 {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if n > k.burst {
		return apierr.LimitExceeded(k.refill)
	}
	t := k.now()
	// A reservation cancelled at the instant it was made gives its tokens
	// back exactly.
	res := k.get(key, t).ReserveN(t, n)
	d := res.DelayFrom(t)
	if d > 0 || !consume {
		res.CancelAt(t)
	}
	if d > 0 {
		return apierr.LimitExceeded(d)
	}
	return nil
}

func (k *Keyed) get(key string, t time.Time) *rate.Limiter {
	if t.Sub(k.lastSweep) >= sweepEvery || len(k.buckets) >= MaxKeys {
		k.sweep(t)
	}
	b, ok := k.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(k.limit, k.burst)}
		k.buckets[key] = b
	}
	b.lastUsed = t
	return b.lim
}

func (k *Keyed) sweep(t time.Time) {
	k.lastSweep = t
	for key, b := range k.buckets {
		if t.Sub(b.lastUsed) >= k.refill {
			delete(k.buckets, key)
		}
	}
	if len(k.buckets) >= MaxKeys {
		for key := range k.buckets {
			if len(k.buckets) < MaxKeys*9/10 {
				break
			}
			delete(k.buckets, key)
		}
	}
}
