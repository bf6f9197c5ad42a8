// Package genmap owns the bounded in-memory map the process's read caches
// share (syncapi's events and room lists, notifications' unread counts):
// eviction by generation instead of per-entry bookkeeping.
package genmap

// Map is a bounded map that evicts by generation: when the current map
// holds size entries it becomes the old one and the previous old one is
// dropped; a hit in the old one moves the entry forward. At most twice
// size entries. Not safe for concurrent use: its owner's mutex guards it.
type Map[K comparable, V any] struct {
	size     int
	cur, old map[K]V
}

// New returns an empty Map of generations of size entries.
func New[K comparable, V any](size int) Map[K, V] {
	return Map[K, V]{size: size, cur: make(map[K]V), old: make(map[K]V)}
}

// Get returns k's value, moving it to the current generation.
func (g *Map[K, V]) Get(k K) (V, bool) {
	v, ok := g.cur[k]
	if !ok {
		if v, ok = g.old[k]; ok {
			g.Put(k, v)
		}
	}
	return v, ok
}

// Has reports whether k has a value, without moving it.
func (g *Map[K, V]) Has(k K) bool {
	if _, ok := g.cur[k]; ok {
		return true
	}
	_, ok := g.old[k]
	return ok
}

// Put stores k's value in the current generation.
func (g *Map[K, V]) Put(k K, v V) {
	if len(g.cur) >= g.size {
		g.old, g.cur = g.cur, make(map[K]V, g.size)
	}
	g.cur[k] = v
}
