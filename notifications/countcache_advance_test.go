package notifications

import (
	"fmt"
	"testing"

	"myelin/storage"
)

// TestCountCacheAdvance: the consumer moves a cached count past its batch
// only when the entry was exact up to the batch's start, and adds only the
// rows that count under the entry's read bound (a receipt can reach an
// event before the consumer has evaluated it).
func TestCountCacheAdvance(t *testing.T) {
	const user, room = "@u:hs", "!r:hs"
	bound := storage.ReadBound{Lo: 12, Threads: map[string]int64{"$root": 14}}
	batch := storage.NotificationBatch{
		Explicit: []storage.Notification{
			{UserID: user, RoomID: room, EventNID: 11, ThreadID: "main", Highlight: true}, // read (≤ Lo)
			{UserID: user, RoomID: room, EventNID: 13, ThreadID: "main", Highlight: true}, // counts
			{UserID: user, RoomID: room, EventNID: 14, ThreadID: "$root"},                 // read in its thread
			{UserID: "@other:hs", RoomID: room, EventNID: 13, ThreadID: "main"},           // someone else
			{UserID: user, RoomID: "!elsewhere:hs", EventNID: 13, ThreadID: "main"},       // another room
		},
		Shared: []storage.SharedNotification{
			{RoomID: room, EventNID: 15, ThreadID: "$root", Notified: []string{user}},       // counts
			{RoomID: room, EventNID: 16, ThreadID: "main", Notified: []string{"@other:hs"}}, // not the user's
		},
	}
	base := []storage.UnreadCount{{RoomID: room, ThreadID: "main", Notifications: 2}}
	for _, c := range []struct {
		name   string
		upTo   int64 // the entry's position
		marked int64 // the room's mark before the batch (0: none since the floor)
		want   string
	}{
		{"exact up to the batch's start", 10, 0, "upTo 20: main 3/1, $root 1/0"},
		{"older, no notification of the room since", 7, 0, "upTo 20: main 3/1, $root 1/0"},
		{"older, the room had a notification since", 7, 9, "upTo 7: main 2/0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cache, marks := newCountCache(), newRoomMarks(5)
			if c.marked > 0 {
				marks.note(storage.NotificationBatch{Shared: []storage.SharedNotification{{RoomID: room, EventNID: c.marked}}})
			}
			cache.put(user, room, countEntry{upTo: c.upTo, bound: bound, rows: base})
			cache.advance(10, 20, marks, batch)
			e, ok := cache.get(user, room)
			if !ok {
				t.Fatal("entry gone")
			}
			got := fmt.Sprintf("upTo %d:", e.upTo)
			for i, r := range e.rows {
				if i > 0 {
					got += ","
				}
				got += fmt.Sprintf(" %s %d/%d", r.ThreadID, r.Notifications, r.Highlight)
			}
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
			if _, ok := cache.get("@other:hs", room); ok {
				t.Error("an entry was made for a user who had none")
			}
		})
	}
}
