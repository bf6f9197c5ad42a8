package roomserver

import (
	"fmt"
	"testing"

	"myelin/storage"
)

// TestRecentRooms: windows after start-up and within the ring are answered
// from memory (an abandoned position is no event); others are refused.
func TestRecentRooms(t *testing.T) {
	r := newRecentRooms(100)
	write := func(room int64, nids ...int64) *pendingWrite {
		rw := &storage.RoomWrite{RoomNID: room}
		for _, n := range nids {
			// Senders by position: 101 and 105 @a, 102 @c, 103 @b.
			sender := map[int64]string{101: "@a", 102: "@c", 103: "@b", 105: "@a"}[n]
			rw.Events = append(rw.Events, storage.NewEvent{NID: n, Sender: sender})
		}
		return &pendingWrite{rw: rw}
	}
	failed := write(9, 104)
	failed.err = fmt.Errorf("alias taken")
	// 101–103 in room 1 and 2, 104 abandoned, 105 in room 1.
	r.note([]*pendingWrite{write(1, 101, 102), write(2, 103), failed, write(1, 105)})
	for _, c := range []struct {
		name        string
		after, upTo int64
		want        string // "" when refused
		wantSenders string // in first-sent order
	}{
		{"one new event", 104, 105, "map[1:105]", "[@a]"},
		{"several rooms, newest per room", 100, 105, "map[1:105 2:103]", "[@a @c @b]"},
		{"only the abandoned position", 103, 104, "map[]", "[]"},
		{"empty window", 105, 105, "map[]", "[]"},
		{"before start-up", 99, 105, "", ""},
		{"longer than the in-memory window", 100, 100 + recentWindowMax + 1, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := r.changed(c.after, c.upTo)
			checkAnswer(t, "rooms", got, ok, c.want)
			senders, ok := r.senders(c.after, c.upTo)
			checkAnswer(t, "senders", senders, ok, c.wantSenders)
		})
	}
	// A position's slot taken by a newer one: the window is too old.
	r.note([]*pendingWrite{write(3, 101+recentSlots)})
	if got, ok := r.changed(100, 102); ok {
		t.Errorf("overwritten window answered %v", got)
	}
	if got, ok := r.senders(100, 102); ok {
		t.Errorf("overwritten window's senders answered %v", got)
	}
}

// checkAnswer compares an in-memory answer with want ("" for refused).
func checkAnswer(t *testing.T, what string, got any, ok bool, want string) {
	t.Helper()
	switch {
	case want == "" && ok:
		t.Errorf("%s answered %v, want refused", what, got)
	case want != "" && !ok:
		t.Errorf("%s refused, want %s", what, want)
	case ok && fmt.Sprint(got) != want:
		t.Errorf("%s %v, want %s", what, got, want)
	}
}
