package notifications_test

import "testing"

// An event related to a threaded reply (here a reference) counts in that
// reply's thread, as the threaded-receipt check sees it; one related to
// the root counts in the main timeline.
func TestRelatedEventsCountInTheirThread(t *testing.T) {
	eachEngine(t, func(t *testing.T, e *env) {
		e.t = t
		room := e.room(bob, carol)
		root := e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"root"}`)
		reply := e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"r","m.relates_to":{"rel_type":"m.thread","event_id":"`+root+`"}}`)
		e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"see r","m.relates_to":{"rel_type":"m.reference","event_id":"`+reply+`"}}`)
		if got, want := e.counts(bob, room), "1/0 "+root+":2/0"; got != want {
			t.Fatalf("after a reference to the reply: %s, want %s", got, want)
		}
		e.send(room, alice, "m.room.message", `{"msgtype":"m.text","body":"see root","m.relates_to":{"rel_type":"m.reference","event_id":"`+root+`"}}`)
		if got, want := e.counts(bob, room), "2/0 "+root+":2/0"; got != want {
			t.Fatalf("after a reference to the root: %s, want %s", got, want)
		}
	})
}
