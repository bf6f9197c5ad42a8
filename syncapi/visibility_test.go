package syncapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestHistoryVisibilityJoined: in a room with history_visibility "joined",
// a user who joins later sees nothing from before their join through
// /sync, /messages, /context or /timestamp_to_event; in a "shared" room
// they see it all.
func TestHistoryVisibilityJoined(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob := user("alice"), user("bob")
		for _, hv := range []string{"joined", "shared"} {
			t.Run(hv, func(t *testing.T) {
				room := e.room(alice, "Records")
				e.state(room, alice, "m.room.history_visibility", "", map[string]any{"history_visibility": hv})
				secret := e.send(room, alice, "secret-1")
				e.send(room, alice, "secret-2")
				e.join(room, bob)
				e.send(room, alice, "after")
				wantSecret := hv == "shared"

				seesSecret := func(evs []testEvent) bool {
					return slices.ContainsFunc(evs, func(c testEvent) bool { return strings.HasPrefix(c.body(), "secret") })
				}
				r := e.do(Request{UserID: bob, Filter: `{"room":{"timeline":{"limit":50}}}`})
				j := r.Rooms.Join[room]
				if got := seesSecret(j.Timeline.Events); got != wantSecret {
					t.Fatalf("/sync shows pre-join history: %v (timeline %v)", got, bodies(j.Timeline.Events))
				}
				if !slices.Contains(bodies(j.Timeline.Events), "after") {
					t.Fatalf("/sync lacks the message after the join: %v", bodies(j.Timeline.Events))
				}

				msgs, err := e.sync.Messages(ctxT(t), MessagesRequest{UserID: bob, RoomID: room, Dir: "b", Limit: 50})
				if err != nil {
					t.Fatal(err)
				}
				chunk := decodeChunk(t, msgs.Chunk)
				if got := seesSecret(chunk); got != wantSecret {
					t.Fatalf("/messages shows pre-join history: %v (%v)", got, bodies(chunk))
				}
				if !slices.Contains(bodies(chunk), "after") {
					t.Fatalf("/messages lacks the message after the join: %v", bodies(chunk))
				}
				// Paginating on from prev_batch does not reveal them either.
				more, err := e.sync.Messages(ctxT(t), MessagesRequest{UserID: bob, RoomID: room, From: j.Timeline.PrevBatch, Dir: "b", Limit: 50})
				if err != nil {
					t.Fatal(err)
				}
				if got := seesSecret(decodeChunk(t, more.Chunk)); got && !wantSecret {
					t.Fatalf("/messages from prev_batch shows pre-join history")
				}

				_, err = e.sync.Context(ctxT(t), ContextRequest{UserID: bob, RoomID: room, EventID: secret, Limit: 10})
				if wantSecret {
					if err != nil {
						t.Fatalf("/context of a shared event: %v", err)
					}
				} else {
					wantErr(t, err, "M_NOT_FOUND", 404)
				}
				afterID := j.Timeline.Events[len(j.Timeline.Events)-1].EventID
				c, err := e.sync.Context(ctxT(t), ContextRequest{UserID: bob, RoomID: room, EventID: afterID, Limit: 20})
				if err != nil {
					t.Fatal(err)
				}
				if got := seesSecret(decodeChunk(t, c.EventsBefore)); got != wantSecret {
					t.Fatalf("/context events_before shows pre-join history: %v", got)
				}

				ts, err := e.sync.TimestampToEvent(ctxT(t), bob, room, 0, true)
				if err != nil {
					t.Fatal(err)
				}
				if got := ts.EventID == secret; got && !wantSecret {
					t.Fatalf("/timestamp_to_event found a pre-join event")
				}
			})
		}
	})
}

// TestUnsignedMembership: every event a client reads carries the reader's
// membership at that event (unsigned.membership): "leave" before their
// join, "join" from the join on — in /sync, /messages and /context.
func TestUnsignedMembership(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Membership")
		e.send(room, alice, "prejoin")
		e.join(room, bob)
		post := e.send(room, alice, "postjoin")

		membership := func(ev testEvent) string {
			var u struct {
				Membership string `json:"membership"`
			}
			_ = json.Unmarshal(ev.Unsigned, &u)
			return u.Membership
		}
		check := func(what string, evs []testEvent) {
			t.Helper()
			joined := false
			for _, ev := range evs {
				if ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == bob {
					joined = true
				}
				want := "leave"
				if joined {
					want = "join"
				}
				if got := membership(ev); got != want {
					t.Fatalf("%s: %s %s has membership %q, want %q", what, ev.Type, ev.EventID, got, want)
				}
			}
			if !joined {
				t.Fatalf("%s: bob's join not seen", what)
			}
		}
		check("/sync", e.do(Request{UserID: bob, Filter: `{"room":{"timeline":{"limit":50}}}`}).Rooms.Join[room].Timeline.Events)
		msgs, err := e.sync.Messages(ctxT(t), MessagesRequest{UserID: bob, RoomID: room, Dir: "f", Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		check("/messages", decodeChunk(t, msgs.Chunk))
		c, err := e.sync.Context(ctxT(t), ContextRequest{UserID: bob, RoomID: room, EventID: post, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		before := decodeChunk(t, c.EventsBefore)
		slices.Reverse(before)
		var ev testEvent
		_ = json.Unmarshal(c.Event, &ev)
		check("/context", append(before, ev))
	})
}
