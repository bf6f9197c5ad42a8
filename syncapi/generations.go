package syncapi

// generations is a bounded map that evicts by generation: when the
// current map holds size entries it becomes the old one and the previous
// old one is dropped; a hit in the old one moves the entry forward. No
// per-entry bookkeeping, and at most twice size entries. Its owner's
// mutex guards it.
type generations[K comparable, V any] struct {
	size     int
	cur, old map[K]V
}

func newGenerations[K comparable, V any](size int) generations[K, V] {
	return generations[K, V]{size: size, cur: make(map[K]V), old: make(map[K]V)}
}

func (g *generations[K, V]) get(k K) (V, bool) {
	v, ok := g.cur[k]
	if !ok {
		if v, ok = g.old[k]; ok {
			g.put(k, v)
		}
	}
	return v, ok
}

func (g *generations[K, V]) put(k K, v V) {
	if len(g.cur) >= g.size {
		g.old, g.cur = g.cur, make(map[K]V, g.size)
	}
	g.cur[k] = v
}
