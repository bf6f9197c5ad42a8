package genmap

import "testing"

// TestMap: a full generation rotates; an old entry survives one rotation
// (and is moved forward by a hit), and is gone after two.
func TestMap(t *testing.T) {
	for _, c := range []struct {
		name    string
		steps   func(m *Map[int, string])
		key     int
		present bool
	}{
		{"current generation", func(m *Map[int, string]) { m.Put(1, "a") }, 1, true},
		{"one rotation keeps it", func(m *Map[int, string]) { m.Put(1, "a"); m.Put(2, "b"); m.Put(3, "c") }, 1, true},
		{"two rotations drop it", func(m *Map[int, string]) {
			m.Put(1, "a")
			for k := 2; k <= 5; k++ {
				m.Put(k, "x")
			}
		}, 1, false},
		{"a hit in the old generation moves it forward", func(m *Map[int, string]) {
			m.Put(1, "a")
			m.Put(2, "b")
			m.Put(3, "c") // 1, 2 old
			m.Get(1)      // 1 current again, beside 3
			m.Put(4, "d") // rotates: 1, 3 old
			m.Put(5, "e")
		}, 1, true},
		{"never stored", func(m *Map[int, string]) { m.Put(1, "a") }, 9, false},
		{"Has does not move an old entry forward", func(m *Map[int, string]) {
			m.Put(1, "a")
			m.Put(2, "b")
			m.Put(3, "c") // 1, 2 old
			if !m.Has(1) || m.Has(9) {
				panic("Has answered wrong")
			}
			m.Put(4, "d") // rotates: 3, 4 old; 1 dropped
			m.Put(5, "e")
		}, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := New[int, string](2)
			c.steps(&m)
			if _, ok := m.Get(c.key); ok != c.present {
				t.Errorf("Get(%d) present = %v, want %v", c.key, ok, c.present)
			}
		})
	}
}
