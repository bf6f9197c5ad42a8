package notifications

import (
	"sync"

	"myelin/internal/genmap"
	"myelin/storage"
)

// countCacheGeneration is how many (user, room) entries one generation of
// the count cache holds; it keeps two (a few MB at most).
const countCacheGeneration = 4096

// countCache keeps, per (user, room), the unread counts exact up to a
// committed consumer position and the read bound they were counted with,
// so the next count reads only the notification rows since. Without it a
// /sync recounted every unread notification of every room in its answer:
// a member who never sends a receipt in a busy room made each of their
// wake-ups cost more than the one before (docs/performance.md).
//
// An entry stays exact because notification rows are only ever added, in
// position order, committed with the consumer's position; a join or leave
// after the entry's position only changes which later rows count. A
// changed receipt changes the bound and the entry is not used. One
// process only: the consumer that adds the rows is in this process.
type countCache struct {
	mu      sync.Mutex
	entries genmap.Map[countKey, countEntry]
}

type countKey struct{ user, room string }

type countEntry struct {
	upTo  int64
	bound storage.ReadBound
	rows  []storage.UnreadCount // the room's counts per thread; never modified once stored
}

func newCountCache() *countCache {
	return &countCache{entries: genmap.New[countKey, countEntry](countCacheGeneration)}
}

func (c *countCache) get(user, room string) (countEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries.Get(countKey{user, room})
}

func (c *countCache) put(user, room string, e countEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries.Put(countKey{user, room}, e)
}

// addCounts returns base plus delta, summed per thread (new slice).
func addCounts(base, delta []storage.UnreadCount) []storage.UnreadCount {
	out := append([]storage.UnreadCount(nil), base...)
	for _, d := range delta {
		found := false
		for i := range out {
			if out[i].ThreadID == d.ThreadID {
				out[i].Notifications += d.Notifications
				out[i].Highlight += d.Highlight
				found = true
				break
			}
		}
		if !found {
			out = append(out, d)
		}
	}
	return out
}

// roomMarks keeps, per room, the newest event position with notification
// rows committed by this process's consumer (explicit or shared). A count
// cache entry exact up to upTo is then exact up to any later committed
// position while its room's mark is at or before upTo: no row of the room
// was added in between. Without it, every new notification anywhere made
// every cached room of every user stale, and each /sync a message woke
// re-counted all the reader's rooms (one VALUES row per room).
//
// Rooms without a mark had no rows added since floor, the consumer's
// position at start-up; count entries are only made at or after it.
type roomMarks struct {
	mu    sync.RWMutex
	floor int64
	last  map[string]int64
}

func newRoomMarks(floor int64) *roomMarks {
	return &roomMarks{floor: floor, last: map[string]int64{}}
}

// lastIn is the newest position with a committed notification in room.
func (m *roomMarks) lastIn(room string) int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if p, ok := m.last[room]; ok {
		return p
	}
	return m.floor
}

// note records a committed batch; before the consumer's position moves
// past it, so a reader that sees the position sees the marks.
func (m *roomMarks) note(b storage.NotificationBatch) {
	if len(b.Explicit) == 0 && len(b.Shared) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range b.Explicit {
		m.last[n.RoomID] = max(m.last[n.RoomID], n.EventNID)
	}
	for _, n := range b.Shared {
		m.last[n.RoomID] = max(m.last[n.RoomID], n.EventNID)
	}
}

// countDelta is one notification row a batch added for a (user, room).
type countDelta struct {
	nid       int64
	thread    string
	highlight bool
}

// advance moves the cached counts of a committed batch's recipients past
// it (events (after, next]): an entry exact up to after gains the rows
// that count under its read bound and becomes exact up to next, so the
// /sync the batch's notifications wake reads no notification rows at all.
// Entries that are not exact up to after are left to be recounted. It runs
// before marks.note(b) (an entry older than after is exact up to it when
// its room has no mark since) and before the consumer's position moves.
func (c *countCache) advance(after, next int64, marks *roomMarks, b storage.NotificationBatch) {
	if len(b.Explicit) == 0 && len(b.Shared) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Deltas only for cached (user, room) pairs: most notified members have
	// no entry (nobody asked for their counts lately), and gathering every
	// member's delta first was a map entry per member per message.
	deltas := map[countKey][]countDelta{}
	for _, n := range b.Explicit {
		if k := (countKey{n.UserID, n.RoomID}); c.entries.Has(k) {
			deltas[k] = append(deltas[k], countDelta{n.EventNID, n.ThreadID, n.Highlight})
		}
	}
	for _, sh := range b.Shared {
		for _, u := range sh.Notified {
			if k := (countKey{u, sh.RoomID}); c.entries.Has(k) {
				deltas[k] = append(deltas[k], countDelta{sh.EventNID, sh.ThreadID, false})
			}
		}
	}
	for k, ds := range deltas {
		e, ok := c.entries.Get(k)
		if !ok {
			continue
		}
		if e.upTo != after && (e.upTo > after || marks.lastIn(k.room) > e.upTo) {
			continue
		}
		var add []storage.UnreadCount
		for _, d := range ds {
			if d.nid <= e.bound.Lo {
				continue
			}
			if tb, ok := e.bound.Threads[d.thread]; ok && d.nid <= tb {
				continue
			}
			var h int64
			if d.highlight {
				h = 1
			}
			add = addCounts(add, []storage.UnreadCount{{RoomID: k.room, ThreadID: d.thread, Notifications: 1, Highlight: h}})
		}
		c.entries.Put(k, countEntry{upTo: next, bound: e.bound, rows: addCounts(e.rows, add)})
	}
}
