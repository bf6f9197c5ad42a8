package clientapi

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"myelin/config"
	"myelin/internal/apierr"
)

// maxLimitedUsers caps how many users one userLimiter tracks.
const maxLimitedUsers = 100_000

// userLimiter is a token bucket per user for one kind of room action
// (sending events, joining, inviting).
//
// Memory stays bounded without a goroutine: a bucket idle long enough to
// refill completely behaves exactly like a new one, so sweeps (at most once a
// minute, or when the map is full) drop those. If the map is still full, the
// sweep evicts arbitrary entries down to 90%: that can only make the limit
// more lenient for the evicted users, never lock anyone out.
type userLimiter struct {
	enabled bool
	limit   rate.Limit
	burst   int
	refill  time.Duration
	now     func() time.Time

	mu        sync.Mutex
	buckets   map[string]*userBucket
	lastSweep time.Time
}

type userBucket struct {
	lim      *rate.Limiter
	lastUsed time.Time
}

func newUserLimiter(enabled bool, r config.Rate, now func() time.Time) *userLimiter {
	l := &userLimiter{enabled: enabled && r.PerSecond > 0 && r.Burst > 0, now: now, buckets: map[string]*userBucket{}}
	if l.enabled {
		l.limit, l.burst = rate.Limit(r.PerSecond), r.Burst
		l.refill = time.Duration(float64(r.Burst) / r.PerSecond * float64(time.Second))
	}
	return l
}

// take consumes n events for userID, or consumes nothing and returns 429
// M_LIMIT_EXCEEDED with the wait. n larger than the burst can never pass;
// it is refused with the time a full bucket takes, so a client backing off
// does not spin.
func (l *userLimiter) take(userID string, n int) error {
	return l.use(userID, n, true)
}

// check is take without consuming: a request that needs several limits
// (createRoom: a join and its invites) checks them all before it takes any.
func (l *userLimiter) check(userID string, n int) error {
	return l.use(userID, n, false)
}

func (l *userLimiter) use(userID string, n int, consume bool) error {
	if !l.enabled || n <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.now()
	if n > l.burst {
		return apierr.LimitExceeded(l.refill)
	}
	if t.Sub(l.lastSweep) >= time.Minute || len(l.buckets) >= maxLimitedUsers {
		l.sweep(t)
	}
	b, ok := l.buckets[userID]
	if !ok {
		b = &userBucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[userID] = b
	}
	b.lastUsed = t
	// A reservation cancelled at the instant it was made gives its tokens
	// back exactly.
	res := b.lim.ReserveN(t, n)
	d := res.DelayFrom(t)
	if d > 0 || !consume {
		res.CancelAt(t)
	}
	if d > 0 {
		return apierr.LimitExceeded(d)
	}
	return nil
}

func (l *userLimiter) sweep(t time.Time) {
	l.lastSweep = t
	for k, b := range l.buckets {
		if t.Sub(b.lastUsed) >= l.refill {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxLimitedUsers {
		for k := range l.buckets {
			if len(l.buckets) < maxLimitedUsers*9/10 {
				break
			}
			delete(l.buckets, k)
		}
	}
}
