package media

import (
	"container/list"
	"sync"
	"time"
)

// previewCache is a bounded LRU of previews (and of recent failures, so a
// dead URL asked for again is not fetched again at once). It is bounded
// both in entries and in approximate bytes, since one preview can carry
// up to maxPreviewKeys values of maxValueBytes each.
type previewCache struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int
	bytes      int
	order      *list.List // front: most recently used
	entries    map[string]*list.Element
}

type cachedPreview struct {
	key     string
	res     map[string]any
	err     error
	expires time.Time
	size    int
}

func newPreviewCache(maxEntries, maxBytes int) *previewCache {
	return &previewCache{maxEntries: maxEntries, maxBytes: maxBytes, order: list.New(),
		entries: make(map[string]*list.Element)}
}

// get returns a fresh entry for key.
func (c *previewCache) get(key string, now time.Time) (map[string]any, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, nil, false
	}
	e := el.Value.(*cachedPreview)
	if !now.Before(e.expires) {
		c.remove(el)
		return nil, nil, false
	}
	c.order.MoveToFront(el)
	return e.res, e.err, true
}

// put stores an entry, evicting the least recently used ones over the
// bounds. An entry larger than the whole byte budget is not kept.
func (c *previewCache) put(key string, res map[string]any, err error, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.remove(el)
	}
	e := &cachedPreview{key: key, res: res, err: err, expires: expires, size: previewSize(key, res)}
	if e.size > c.maxBytes {
		return
	}
	c.entries[key] = c.order.PushFront(e)
	c.bytes += e.size
	for len(c.entries) > c.maxEntries || c.bytes > c.maxBytes {
		c.remove(c.order.Back())
	}
}

// remove drops an entry; the caller holds mu.
func (c *previewCache) remove(el *list.Element) {
	e := c.order.Remove(el).(*cachedPreview)
	delete(c.entries, e.key)
	c.bytes -= e.size
}

// previewSize approximates an entry's memory: its strings plus a fixed
// overhead per key.
func previewSize(key string, res map[string]any) int {
	n := len(key) + 128
	for k, v := range res {
		n += len(k) + 32
		if s, ok := v.(string); ok {
			n += len(s)
		}
	}
	return n
}
