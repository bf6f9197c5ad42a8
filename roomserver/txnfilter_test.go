package roomserver

import (
	"fmt"
	"testing"
)

// TestTxnFilter: every added key is found (a miss would let a retry send
// twice), and keys never added are mostly reported new, including keys
// that differ from an added one only in where a field ends or in the room.
func TestTxnFilter(t *testing.T) {
	key := func(i int) txnKey {
		return txnKey{user: fmt.Sprintf("@u%d:hs", i%50), device: "DEV", scope: "send m.room.message", txn: fmt.Sprintf("m%d", i)}
	}
	for _, c := range []struct {
		name     string
		rows     int // rows at start-up (sizes the filter)
		added    int
		maxFalse float64 // tolerated share of never-added keys reported "maybe"
	}{
		{"empty table, minimum size", 0, 20000, 0.001},
		{"filled to its size", 25000, 100000, 0.02},
		{"past its size it degrades, never misses", 1000, 200000, 0.5},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newTxnFilter(c.rows)
			for i := range c.added {
				f.add(key(i), 7)
			}
			for i := range c.added {
				if !f.mayContain(key(i), 7) {
					t.Fatalf("added key %d reported new", i)
				}
			}
			fp := 0
			const probes = 20000
			for i := range probes {
				if f.mayContain(key(c.added+i), 7) {
					fp++
				}
			}
			if share := float64(fp) / probes; share > c.maxFalse {
				t.Errorf("%.4f of new keys reported maybe, want at most %.4f", share, c.maxFalse)
			}
		})
	}
	f := newTxnFilter(0)
	f.add(txnKey{user: "@ab:hs", device: "c", scope: "s", txn: "t"}, 1)
	for _, k := range []struct {
		k    txnKey
		room int64
	}{
		{txnKey{user: "@ab:hs", device: "c", scope: "s", txn: "t"}, 2}, // another room
		{txnKey{user: "@ab:hs", device: "", scope: "cs", txn: "t"}, 1}, // a field boundary moved
		{txnKey{user: "@ab:hs", device: "c", scope: "s", txn: "t2"}, 1},
	} {
		if f.mayContain(k.k, k.room) {
			t.Errorf("%+v in room %d reported maybe after only a different key was added", k.k, k.room)
		}
	}
}
