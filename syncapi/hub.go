package syncapi

import "sync"

// hub wakes the long-polls of particular users. Streams that are not the
// event log (account data, receipts, typing, presence and providers'
// streams) call wake with the users a change concerns; the event log wakes
// everyone through the roomserver's Notifier instead. No timer or polling:
// a waiter holds a channel that the next wake for its user closes.
type hub struct {
	mu     sync.Mutex
	users  map[string]*signal
	closed bool // after close every channel is closed at once
}

type signal struct {
	ch      chan struct{}
	waiters int
}

func newHub() *hub { return &hub{users: map[string]*signal{}} }

// watch returns a channel closed at the next wake of userID and a release
// function the caller must call when it stops waiting. Take the channel
// before reading stream positions: a change committed after the read then
// closes it, so no wake is lost between the read and the wait.
func (h *hub) watch(userID string) (<-chan struct{}, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		ch := make(chan struct{})
		close(ch)
		return ch, func() {}
	}
	s := h.users[userID]
	if s == nil {
		s = &signal{ch: make(chan struct{})}
		h.users[userID] = s
	}
	s.waiters++
	return s.ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		s.waiters--
		if s.waiters == 0 && h.users[userID] == s {
			delete(h.users, userID)
		}
	}
}

// wake closes the channels of the given users' current waiters.
func (h *hub) wake(userIDs ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range userIDs {
		if s := h.users[u]; s != nil {
			close(s.ch)
			delete(h.users, u)
		}
	}
}

// close wakes every waiter, now and from now on.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for u, s := range h.users {
		close(s.ch)
		delete(h.users, u)
	}
}

// waiting reports how many users have a waiter (for tests).
func (h *hub) waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.users)
}
