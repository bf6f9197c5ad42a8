package roomserver

import "sync"

// recentRooms remembers which room each of the newest committed stream
// positions went to, and who sent it, so the question every woken
// long-poll asks first — which rooms changed in (since, now]? — is
// answered from memory for a short, recent window instead of by a query.
// The Notifier is global: each message wakes every parked /sync of the
// server, and most of them find nothing of theirs. The senders serve
// presence, which counts every send as activity and asked the database
// after every commit.
//
// Slots are written after the commit and before the Notifier announces
// it, so every committed position at or below an announced one is in its
// slot unless a newer position has taken the slot since. A position that
// was handed out and abandoned (a failed write) is never written: its
// slot holds an older position, which reads as "no event there". Only
// windows after start-up are answered (older positions were never seen).
type recentRooms struct {
	mu    sync.RWMutex
	floor int64 // the log's end at start-up
	slots []recentSlot
}

type recentSlot struct {
	pos, room int64
	sender    string
}

// recentWindowMax bounds the window answered from memory: a sync far
// behind reads the database, one indexed query, as before.
const (
	recentSlots     = 1 << 14
	recentWindowMax = 1024
)

func newRecentRooms(floor int64) *recentRooms {
	return &recentRooms{floor: floor, slots: make([]recentSlot, recentSlots)}
}

// note records a committed batch's events.
func (r *recentRooms) note(batch []*pendingWrite) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pw := range batch {
		if pw.err != nil {
			continue
		}
		for i := range pw.rw.Events {
			ev := &pw.rw.Events[i]
			r.slots[ev.NID%recentSlots] = recentSlot{pos: ev.NID, room: pw.rw.RoomNID, sender: ev.Sender}
		}
	}
}

// each calls fn for every committed event in (after, upTo] in position
// order; it returns false (having called fn for some, maybe) when the
// window is not all in memory.
func (r *recentRooms) each(after, upTo int64, fn func(s *recentSlot)) bool {
	if after < r.floor || upTo-after > recentWindowMax {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for pos := after + 1; pos <= upTo; pos++ {
		s := &r.slots[pos%recentSlots]
		switch {
		case s.pos == pos:
			fn(s)
		case s.pos > pos:
			return false // overwritten: the window is too old
		}
	}
	return true
}

// changed returns, for each room with an event in (after, upTo], the
// newest such position; ok is false when the window is not all in memory.
func (r *recentRooms) changed(after, upTo int64) (map[int64]int64, bool) {
	out := map[int64]int64{}
	ok := r.each(after, upTo, func(s *recentSlot) {
		out[s.room] = s.pos // ascending, so the last write is the newest
	})
	if !ok {
		return nil, false
	}
	return out, true
}

// senders returns the distinct senders of the events in (after, upTo];
// ok is false when the window is not all in memory.
func (r *recentRooms) senders(after, upTo int64) ([]string, bool) {
	var out []string
	seen := map[string]bool{}
	ok := r.each(after, upTo, func(s *recentSlot) {
		if !seen[s.sender] {
			seen[s.sender] = true
			out = append(out, s.sender)
		}
	})
	if !ok {
		return nil, false
	}
	return out, true
}

// RoomsChanged returns, for each room with an event in (after, upTo], the
// newest such position, from memory; ok is false when the window is not
// all in memory (before start-up, too long or too old), and the caller
// reads the event log instead. upTo must not be past a position the
// Notifier announced.
func (s *Service) RoomsChanged(after, upTo int64) (map[int64]int64, bool) {
	return s.recent.changed(after, upTo)
}

// SendersBetween returns the distinct senders of the events in (after,
// upTo], from memory, like RoomsChanged; ok is false when the window is
// not all in memory and the caller reads the event log instead.
func (s *Service) SendersBetween(after, upTo int64) ([]string, bool) {
	return s.recent.senders(after, upTo)
}
