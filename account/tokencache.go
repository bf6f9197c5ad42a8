package account

import (
	"container/list"
	"sync"
	"sync/atomic"

	"myelin/storage"
)

// defaultTokenCacheSize bounds the access-token cache: 10,000 entries of a
// few hundred bytes each is a few MB, and covers every active device of a
// large practice group, so a steady load never misses.
const defaultTokenCacheSize = 10_000

// tokenCache keeps what storage.Accounts.AccessToken returned for a token
// hash (never the token itself), so an authenticated request does not pay
// the four-table join on every call. It is bounded (least recently used
// entries go first) and safe for concurrent use; a nil *tokenCache is a
// disabled cache.
//
// Invalidation is by user, driven by storage.Accounts.OnAuthChange, which
// reports every write that can change a lookup's answer after it ended and
// before it is acknowledged. Why by user: every row a lookup reads (the
// token, its refresh token, the device, the users row) belongs to the
// token's owner, so a change to one user cannot make another user's entry
// wrong, and a logout somewhere does not flush the whole server.
//
// The race it must survive: a lookup reads the database, a logout commits
// and invalidates, then the lookup stores what it read — a dead token
// served from cache. The epoch prevents it: a lookup takes the epoch before
// reading the database and may store its result only if no invalidation
// happened since (put checks under the same lock that invalidateUser bumps
// it under). A lookup that stored before the invalidation is removed by it.
// An unrelated invalidation only costs that one lookup its insert.
//
// Single process only: invalidations are seen only for writes made through
// this process's storage.Accounts. Several processes sharing a database
// would need a shared invalidation channel (e.g. PostgreSQL LISTEN/NOTIFY)
// before enabling this cache.
type tokenCache struct {
	max   int
	epoch atomic.Uint64

	mu      sync.Mutex
	entries map[string]*list.Element       // token hash → element holding *cachedToken
	lru     *list.List                     // front = most recently used
	byUser  map[string]map[string]struct{} // localpart → token hashes cached for it

	hits, misses atomic.Uint64
}

type cachedToken struct {
	hash string
	info storage.TokenInfo
}

// newTokenCache returns a cache of at most max entries, or nil (disabled)
// when max <= 0.
func newTokenCache(max int) *tokenCache {
	if max <= 0 {
		return nil
	}
	return &tokenCache{
		max:     max,
		entries: map[string]*list.Element{},
		lru:     list.New(),
		byUser:  map[string]map[string]struct{}{},
	}
}

// get returns the cached lookup for hash. It counts a hit or a miss.
func (c *tokenCache) get(hash string) (storage.TokenInfo, bool) {
	if c == nil {
		return storage.TokenInfo{}, false
	}
	c.mu.Lock()
	el, ok := c.entries[hash]
	var ti storage.TokenInfo
	if ok {
		c.lru.MoveToFront(el)
		ti = el.Value.(*cachedToken).info
	}
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return ti, ok
}

// snapshot returns the epoch a lookup must pass to put; take it before
// reading the database.
func (c *tokenCache) snapshot() uint64 {
	if c == nil {
		return 0
	}
	return c.epoch.Load()
}

// put stores ti for hash, unless an invalidation happened after snapshot
// returned epoch (then ti may already be stale and is dropped).
func (c *tokenCache) put(epoch uint64, hash string, ti storage.TokenInfo) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch.Load() != epoch {
		return
	}
	if el, ok := c.entries[hash]; ok {
		// A concurrent miss on the same token stored it first; both read
		// after the same epoch, so either value is current.
		el.Value.(*cachedToken).info = ti
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.max {
		c.removeLocked(c.lru.Back())
	}
	c.entries[hash] = c.lru.PushFront(&cachedToken{hash: hash, info: ti})
	hashes := c.byUser[ti.Localpart]
	if hashes == nil {
		hashes = map[string]struct{}{}
		c.byUser[ti.Localpart] = hashes
	}
	hashes[hash] = struct{}{}
}

func (c *tokenCache) removeLocked(el *list.Element) {
	ct := el.Value.(*cachedToken)
	c.lru.Remove(el)
	delete(c.entries, ct.hash)
	if hashes := c.byUser[ct.info.Localpart]; hashes != nil {
		delete(hashes, ct.hash)
		if len(hashes) == 0 {
			delete(c.byUser, ct.info.Localpart)
		}
	}
}

// invalidateUser drops every cached token of localpart and fails the put of
// every lookup in flight. The bump and the removal happen under the lock
// put checks under, so no lookup that read before the change can store
// its result afterwards.
func (c *tokenCache) invalidateUser(localpart string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch.Add(1)
	for hash := range c.byUser[localpart] {
		if el, ok := c.entries[hash]; ok {
			c.removeLocked(el)
		}
	}
	delete(c.byUser, localpart)
}

// touched records a last-seen write for the cached token, so the next
// request compares against what the database now holds instead of writing
// again. A missing entry (evicted or invalidated) is left missing: this
// never inserts, so it cannot resurrect an invalidated token.
func (c *tokenCache) touched(hash, ip string, ts int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if el, ok := c.entries[hash]; ok {
		ct := el.Value.(*cachedToken)
		ct.info.LastSeenIP, ct.info.LastSeenTS = ip, ts
	}
	c.mu.Unlock()
}

// len returns the number of cached tokens.
func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
