package syncapi

import (
	"container/list"
	"sync"
)

// lazyCache remembers, per device, the member events lazy-loading syncs
// have sent, so that with include_redundant_members false they are not
// sent again ("redundant membership events"). An entry only counts once
// the client has acknowledged the response that carried it — by syncing
// from a token at or after that response's event position — so a client
// retrying a lost response gets the members again. It is bounded (least
// recently used devices are dropped) and lost on restart; both only cost
// redundant members, never missing ones.
type lazyCache struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *lazyDevice, most recent first
	devices map[string]*lazyDevice
}

type lazyDevice struct {
	key   string
	elem  *list.Element
	rooms map[string]map[string]sentMember // room → member → what was sent
}

type sentMember struct {
	nid int64 // the member event's stream position
	at  int64 // the event position of the response that sent it
}

func newLazyCache(maxDevices int) *lazyCache {
	return &lazyCache{max: maxDevices, order: list.New(), devices: map[string]*lazyDevice{}}
}

func deviceKey(userID, deviceID string) string { return userID + "\x00" + deviceID }

// device returns the device's entry, creating it (and evicting the least
// recently used) as needed; c.mu is held.
func (c *lazyCache) device(key string) *lazyDevice {
	d := c.devices[key]
	if d != nil {
		c.order.MoveToFront(d.elem)
		return d
	}
	d = &lazyDevice{key: key, rooms: map[string]map[string]sentMember{}}
	d.elem = c.order.PushFront(d)
	c.devices[key] = d
	for c.order.Len() > c.max {
		old := c.order.Remove(c.order.Back()).(*lazyDevice)
		delete(c.devices, old.key)
	}
	return d
}

// reset forgets what a device was sent (its client starts over with an
// initial sync).
func (c *lazyCache) reset(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.devices[key]; d != nil {
		c.order.Remove(d.elem)
		delete(c.devices, key)
	}
}

// redundant reports whether the device already has this member event,
// acknowledged by a sync from since.
func (c *lazyCache) redundant(key, roomID, userID string, nid, since int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.devices[key]
	if d == nil {
		return false
	}
	m, ok := d.rooms[roomID][userID]
	return ok && m.nid == nid && m.at <= since
}

// record notes member events sent in a response whose next_batch has event
// position at. An event already recorded keeps its earlier position.
func (c *lazyCache) record(key, roomID string, members map[string]int64, at int64) {
	if len(members) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.device(key)
	room := d.rooms[roomID]
	if room == nil {
		room = map[string]sentMember{}
		d.rooms[roomID] = room
	}
	for user, nid := range members {
		if cur, ok := room[user]; ok && cur.nid == nid {
			continue
		}
		room[user] = sentMember{nid: nid, at: at}
	}
}
