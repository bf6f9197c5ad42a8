package roomserver

import (
	"context"
	"sync"
)

// Notifier broadcasts the stream position of the newest committed event.
// Every event at or below Position is committed and readable, so a reader
// that waits for a position and then reads (since, position] from the
// database misses nothing. Waiting costs no polling: each advance closes a
// channel that all current waiters hold.
type Notifier struct {
	mu  sync.Mutex
	pos int64
	ch  chan struct{}
}

func newNotifier(pos int64) *Notifier {
	return &Notifier{pos: pos, ch: make(chan struct{})}
}

// Position is the newest committed stream position.
func (n *Notifier) Position() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pos
}

// Changed returns the current position and a channel closed at the next
// advance, for callers that select on several sources.
func (n *Notifier) Changed() (int64, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pos, n.ch
}

// Wait blocks until the position is beyond after (returning it) or ctx ends.
func (n *Notifier) Wait(ctx context.Context, after int64) (int64, error) {
	for {
		pos, ch := n.Changed()
		if pos > after {
			return pos, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return pos, ctx.Err()
		}
	}
}

func (n *Notifier) advance(pos int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pos <= n.pos {
		return
	}
	n.pos = pos
	close(n.ch)
	n.ch = make(chan struct{})
}
