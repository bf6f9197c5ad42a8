package syncapi

import (
	"slices"
	"testing"
	"time"
)

func TestInitialAndIncrementalSync(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Front desk", bob)
		e.send(room, alice, "one")
		e.send(room, bob, "two")

		first := e.do(Request{UserID: bob})
		j, ok := first.Rooms.Join[room]
		if !ok {
			t.Fatalf("initial sync lacks the room: %+v", first.Rooms)
		}
		if got := bodies(j.Timeline.Events); !slices.Equal(got, []string{"one", "two"}) {
			t.Fatalf("timeline bodies = %v", got)
		}
		if j.Summary == nil || j.Summary.Joined == nil || *j.Summary.Joined != 2 {
			t.Fatalf("summary = %+v", j.Summary)
		}
		for _, ev := range j.Timeline.Events {
			if ev.RoomID != "" {
				t.Fatalf("sync event carries room_id: %+v", ev)
			}
		}
		if first.OTKCount["signed_curve25519"] != 0 || first.FallbackTypes == nil || first.ToDevice.Events == nil {
			t.Fatalf("E2EE sections: %+v %+v %+v", first.OTKCount, first.FallbackTypes, first.ToDevice)
		}
		t.Logf("initial: %d timeline, %d state, limited=%v prev=%s next=%s", len(j.Timeline.Events), len(j.State.Events), j.Timeline.Limited, j.Timeline.PrevBatch, first.NextBatch)

		// Nothing new: an incremental sync with timeout 0 is empty.
		quiet := e.do(Request{UserID: bob, Since: first.NextBatch})
		if len(quiet.Rooms.Join) != 0 {
			t.Fatalf("quiet sync has rooms: %+v", quiet.Rooms.Join)
		}
		e.send(room, alice, "three")
		inc := e.do(Request{UserID: bob, Since: quiet.NextBatch})
		if got := bodies(inc.Rooms.Join[room].Timeline.Events); !slices.Equal(got, []string{"three"}) {
			t.Fatalf("incremental bodies = %v", got)
		}

		// Long-poll: wakes on a new event.
		done := make(chan syncResp)
		go func() { done <- e.do(Request{UserID: bob, Since: inc.NextBatch, Timeout: 20 * time.Second}) }()
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		e.send(room, alice, "four")
		select {
		case r := <-done:
			if got := bodies(r.Rooms.Join[room].Timeline.Events); !slices.Equal(got, []string{"four"}) {
				t.Fatalf("long-poll bodies = %v", got)
			}
			t.Logf("long-poll woke %v after send started", time.Since(start))
		case <-time.After(10 * time.Second):
			t.Fatal("long-poll did not wake")
		}
	})
}
