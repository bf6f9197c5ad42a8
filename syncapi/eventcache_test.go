package syncapi

import (
	"testing"

	"myelin/roomserver"
	"myelin/storage"
)

// A sync after a redaction must not serve the cached, unredacted copy that
// an earlier sync read.
func TestEventCacheSeesRedaction(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Cache", bob)
		id := e.send(room, alice, "secret")
		before := e.do(Request{UserID: bob})
		if got := findEvent(before.Rooms.Join[room].Timeline.Events, id); got == nil || got.body() != "secret" {
			t.Fatalf("before the redaction: %+v", got)
		}
		// Twice: the second sync is served from the cache.
		if got := findEvent(e.do(Request{UserID: bob}).Rooms.Join[room].Timeline.Events, id); got == nil || got.body() != "secret" {
			t.Fatalf("cached copy: %+v", got)
		}
		if _, err := e.rooms.Redact(ctxT(t), roomserver.RedactRequest{RoomID: room, Sender: alice, EventID: id}); err != nil {
			t.Fatal(err)
		}
		for _, req := range []Request{{UserID: bob}, {UserID: bob, Since: before.NextBatch}} {
			r := e.do(req)
			got := findEvent(r.Rooms.Join[room].Timeline.Events, id)
			if req.Since != "" && got == nil {
				continue // an incremental sync need not repeat the event
			}
			if got == nil || string(got.Content) != "{}" {
				t.Fatalf("after the redaction (since %q): %+v", req.Since, got)
			}
		}
	})
}

func findEvent(evs []testEvent, id string) *testEvent {
	for i := range evs {
		if evs[i].EventID == id {
			return &evs[i]
		}
	}
	return nil
}

func TestEventCacheGenerations(t *testing.T) {
	c := newEventCache()
	put := func(nid, redactedBy int64) {
		c.put([]storage.StoredEvent{{NID: nid, RedactedByNID: redactedBy}}, []*roomserver.Event{{Position: nid}})
	}
	for nid := int64(1); nid <= eventCacheGeneration; nid++ {
		put(nid, 0)
	}
	put(eventCacheGeneration+1, 0) // rotates: 1..N become the old generation
	for _, tc := range []struct {
		name string
		ref  storage.EventRef
		want bool
	}{
		{"current generation", storage.EventRef{NID: eventCacheGeneration + 1}, true},
		{"old generation", storage.EventRef{NID: 1}, true},
		{"redacted since cached", storage.EventRef{NID: 2, RedactedByNID: 99}, false},
		{"never read", storage.EventRef{NID: 3 * eventCacheGeneration}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := c.get(tc.ref); ok != tc.want {
				t.Fatalf("get(%+v) = %v, want %v", tc.ref, ok, tc.want)
			}
		})
	}
	// Another rotation drops what was neither read nor written since.
	for nid := int64(10 * eventCacheGeneration); nid < 11*eventCacheGeneration; nid++ {
		put(nid, 0)
	}
	put(20*eventCacheGeneration, 0)
	if _, ok := c.get(storage.EventRef{NID: 5}); ok {
		t.Fatal("event 5 survived two rotations")
	}
}
