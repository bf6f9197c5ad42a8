package account

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"myelin/config"
	"myelin/internal/apierr"
)

// maxLimiterKeys caps how many keys (IPs, accounts) a limiterSet tracks.
const maxLimiterKeys = 100_000

// sweepEvery is how often idle limiters are dropped.
const sweepEvery = time.Minute

// limiterSet is one token bucket per key (an IP or an account).
//
// Memory stays bounded: a bucket that has been idle long enough to refill
// completely is indistinguishable from a new one, so it is dropped on the
// next sweep without changing behaviour. Sweeps run inline (no goroutine to
// leak) at most once a minute, or whenever the set reaches maxLimiterKeys;
// if it is still full after sweeping (a flood of distinct keys all still
// refilling), arbitrary entries are evicted down to 90% of the cap — that can
// only make the limit more lenient for those keys, never lock anyone out.
type limiterSet struct {
	enabled bool
	limit   rate.Limit
	burst   int
	refill  time.Duration // time for an empty bucket to refill completely
	now     func() time.Time

	mu        sync.Mutex
	m         map[string]*keyLimiter
	lastSweep time.Time
}

type keyLimiter struct {
	lim      *rate.Limiter
	lastUsed time.Time
}

func newLimiterSet(enabled bool, r config.Rate, now func() time.Time) *limiterSet {
	ls := &limiterSet{enabled: enabled && r.PerSecond > 0 && r.Burst > 0, now: now, m: map[string]*keyLimiter{}}
	if ls.enabled {
		ls.limit, ls.burst = rate.Limit(r.PerSecond), r.Burst
		ls.refill = time.Duration(float64(r.Burst) / r.PerSecond * float64(time.Second))
	}
	return ls
}

func (ls *limiterSet) get(key string, t time.Time) *rate.Limiter {
	if t.Sub(ls.lastSweep) >= sweepEvery || len(ls.m) >= maxLimiterKeys {
		ls.sweep(t)
	}
	kl, ok := ls.m[key]
	if !ok {
		kl = &keyLimiter{lim: rate.NewLimiter(ls.limit, ls.burst)}
		ls.m[key] = kl
	}
	kl.lastUsed = t
	return kl.lim
}

func (ls *limiterSet) sweep(t time.Time) {
	ls.lastSweep = t
	for k, kl := range ls.m {
		if t.Sub(kl.lastUsed) >= ls.refill {
			delete(ls.m, k)
		}
	}
	// Still full: evict down to 90% so the next forced sweep is 10% of the
	// cap away (sweeping on every request at the cap would be quadratic).
	if len(ls.m) >= maxLimiterKeys {
		for k := range ls.m {
			if len(ls.m) < maxLimiterKeys*9/10 {
				break
			}
			delete(ls.m, k)
		}
	}
}

// take consumes one event for key, or returns M_LIMIT_EXCEEDED with the wait.
func (ls *limiterSet) take(key string) error {
	if !ls.enabled {
		return nil
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	t := ls.now()
	r := ls.get(key, t).ReserveN(t, 1)
	if d := r.DelayFrom(t); d > 0 {
		r.CancelAt(t)
		return apierr.LimitExceeded(d)
	}
	return nil
}

// check reports M_LIMIT_EXCEEDED if key has no event left, without
// consuming one (failed-login limits are checked before and charged after).
func (ls *limiterSet) check(key string) error {
	if !ls.enabled {
		return nil
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	t := ls.now()
	if _, ok := ls.m[key]; !ok {
		return nil
	}
	r := ls.get(key, t).ReserveN(t, 1)
	d := r.DelayFrom(t)
	r.CancelAt(t)
	if d > 0 {
		return apierr.LimitExceeded(d)
	}
	return nil
}

// charge consumes one event for key even if that overdraws it.
func (ls *limiterSet) charge(key string) {
	if !ls.enabled {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	t := ls.now()
	// An already-empty bucket stays empty; the next check reports the wait.
	ls.get(key, t).AllowN(t, 1)
}

// size is the number of tracked keys (tests check the bound).
func (ls *limiterSet) size() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.m)
}
