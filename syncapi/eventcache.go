package syncapi

import (
	"sync"

	"myelin/internal/genmap"
	"myelin/roomserver"
	"myelin/storage"
)

// eventCacheGeneration is how many events one generation of the cache
// holds; the cache keeps two (at most twice this many events, a few MB).
const eventCacheGeneration = 2048

// eventCache keeps recently read events, parsed, by stream position. The
// newest events of a room are what every sync reads: every listener woken
// by a message reads that message, and an initial sync reads each room's
// latest page. Reading a row costs far more than its index entry on
// SQLite (twelve columns and the whole PDU through the driver, then the
// PDU parsed), so the timelines read only (position, room, redaction) and
// take the events from here when the copy is current.
//
// A copy is current when its RedactedByNID matches the row's: a redaction
// is the only change an event row ever sees (storage.EventRef), so the
// check holds across processes sharing one database, with no
// invalidation. Eviction is by generation: when the current map is full it
// becomes the old one and the previous old one is dropped; a hit in the
// old one moves the event forward.
type eventCache struct {
	mu     sync.Mutex
	events genmap.Map[int64, cachedEvent]
}

type cachedEvent struct {
	row storage.StoredEvent
	ev  *roomserver.Event
}

func newEventCache() *eventCache {
	return &eventCache{events: genmap.New[int64, cachedEvent](eventCacheGeneration)}
}

// get returns the cached copy of ref's event if it is current.
func (c *eventCache) get(ref storage.EventRef) (cachedEvent, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.events.Get(ref.NID)
	if !ok || e.row.RedactedByNID != ref.RedactedByNID {
		return cachedEvent{}, false
	}
	return e, true
}

// put remembers events just read from the database. The events are
// shared by every reader afterwards and never modified.
func (c *eventCache) put(rows []storage.StoredEvent, evs []*roomserver.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range rows {
		c.events.Put(r.NID, cachedEvent{row: r, ev: evs[i]})
	}
}
