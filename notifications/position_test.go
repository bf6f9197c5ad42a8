package notifications

import (
	"context"
	"testing"
	"time"
)

// TestPositionDemand: a waiter behind the position makes it
// non-gatherable and leaves a demand token (what ends a gather); a waiter
// already satisfied, or gone, does neither.
func TestPositionDemand(t *testing.T) {
	for _, tc := range []struct {
		name       string
		waitFor    int64 // 0: no waiter
		gatherable bool
	}{
		{"nobody waits", 0, true},
		{"a waiter at the position", 5, true},
		{"a waiter behind it", 6, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPosition(5)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan bool, 1)
			if tc.waitFor != 0 {
				go func() { done <- p.wait(ctx, tc.waitFor) }()
				if tc.waitFor > 5 {
					// The waiter has registered once its token is there.
					select {
					case <-p.demand:
						p.demand <- struct{}{}
					case <-time.After(10 * time.Second):
						t.Fatal("no demand token from a waiter behind the position")
					}
				} else if !<-done {
					t.Fatal("a waiter at the position did not return at once")
				}
			}
			if got := p.gatherable(); got != tc.gatherable {
				t.Fatalf("gatherable = %v, want %v", got, tc.gatherable)
			}
			if tc.waitFor > 5 {
				p.advance(tc.waitFor)
				if !<-done {
					t.Fatal("the waiter did not see the advance")
				}
				if !p.gatherable() {
					t.Fatal("still not gatherable after the waiter left")
				}
			}
			cancel()
		})
	}
}
