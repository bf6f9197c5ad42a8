package ratelimit

import (
	"fmt"
	"testing"
	"time"

	"myelin/internal/apierr"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestTakeSequences(t *testing.T) {
	for _, tc := range []struct {
		name      string
		enabled   bool
		perSecond float64
		burst     int
		takes     []int // n per take, in order
		refused   []bool
	}{
		{"disabled", false, 1, 1, []int{1, 1, 1}, []bool{false, false, false}},
		{"zero rate is off", true, 0, 0, []int{5, 5}, []bool{false, false}},
		{"burst then refused", true, 1, 2, []int{1, 1, 1}, []bool{false, false, true}},
		{"n at once", true, 1, 3, []int{2, 2, 1}, []bool{false, true, false}},
		{"more than the burst never passes", true, 1, 3, []int{4, 3}, []bool{true, false}},
		{"n of zero is free", true, 1, 1, []int{1, 0, 0}, []bool{false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: time.Unix(1000, 0)}
			k := New(tc.enabled, tc.perSecond, tc.burst, c.now)
			for i, n := range tc.takes {
				err := k.Take("key", n)
				if (err != nil) != tc.refused[i] {
					t.Fatalf("take %d (n=%d) = %v, want refused=%v", i, n, err, tc.refused[i])
				}
				if err != nil {
					e, _ := apierr.As(err)
					if e.Code != "M_LIMIT_EXCEEDED" || e.Status != 429 || e.RetryAfter <= 0 {
						t.Fatalf("refusal %+v", e)
					}
				}
			}
		})
	}
}

func TestKeysRefillAndSweep(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	k := New(true, 1, 1, c.now)
	if k.Take("a", 1) != nil || k.Take("b", 1) != nil || k.Take("a", 1) == nil {
		t.Fatal("buckets are not per key")
	}
	if e, _ := apierr.As(k.Take("a", 1)); e == nil || e.RetryAfter > time.Second {
		t.Fatalf("retry after %v, want at most 1s", e)
	}
	c.t = c.t.Add(1100 * time.Millisecond)
	if err := k.Take("a", 1); err != nil {
		t.Fatalf("no refill after a second: %v", err)
	}
	c.t = c.t.Add(2 * time.Minute)
	_ = k.Take("c", 1) // triggers the sweep
	if n := k.Len(); n != 1 {
		t.Fatalf("%d buckets after the sweep, want 1 (only c)", n)
	}
}

func TestCheckAndCharge(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	k := New(true, 0.001, 2, c.now)
	for range 5 {
		if err := k.Check("acct", 1); err != nil {
			t.Fatal("check consumed")
		}
	}
	k.Charge("acct")
	k.Charge("acct")
	k.Charge("acct") // overdraws; must not panic or refill
	if k.Check("acct", 1) == nil {
		t.Fatal("charged bucket not limited")
	}
	off := New(false, 1, 1, c.now)
	for range 10 {
		off.Charge("x")
		if off.Take("x", 1) != nil || off.Check("x", 1) != nil {
			t.Fatal("disabled limiter limited")
		}
	}
	if off.Len() != 0 {
		t.Fatal("disabled limiter keeps state")
	}
}

func TestMemoryIsBounded(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	k := New(true, 0.001, 1, c.now)
	for i := range MaxKeys + 500 {
		_ = k.Take(fmt.Sprintf("k%d", i), 1)
	}
	if n := k.Len(); n > MaxKeys {
		t.Fatalf("%d keys exceed the cap %d", n, MaxKeys)
	}
}
