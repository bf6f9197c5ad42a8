package syncapi

import (
	"encoding/json"
	"slices"
	"testing"
)

func decodeChunk(t testing.TB, chunk []json.RawMessage) []testEvent {
	t.Helper()
	out := make([]testEvent, len(chunk))
	for i, c := range chunk {
		if err := json.Unmarshal(c, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestMessages(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob, carol := user("alice"), user("bob"), user("carol")
		room := e.room(alice, "History", bob)
		var ids []string
		for i := 0; i < 7; i++ {
			ids = append(ids, e.send(room, []string{alice, bob}[i%2], "m"+string(rune('0'+i))))
		}
		page := func(req MessagesRequest) (*MessagesResponse, []string) {
			t.Helper()
			req.UserID, req.RoomID = bob, room
			r, err := e.sync.Messages(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return r, bodies(decodeChunk(t, r.Chunk))
		}
		// Backwards from the end without from (v1.3+), 3 at a time.
		r, got := page(MessagesRequest{Dir: "b", Limit: 3})
		if !slices.Equal(got, []string{"m6", "m5", "m4"}) || r.Start == "" || r.End == "" {
			t.Fatalf("first page %v start %q end %q", got, r.Start, r.End)
		}
		r2, got := page(MessagesRequest{From: r.End, Dir: "b", Limit: 3})
		if !slices.Equal(got, []string{"m3", "m2", "m1"}) || r2.Start != r.End {
			t.Fatalf("second page %v start %q", got, r2.Start)
		}
		// Walk to the beginning: end disappears.
		from := r2.End
		for i := 0; i < 20 && from != ""; i++ {
			rr, _ := page(MessagesRequest{From: from, Dir: "b", Limit: 3})
			from = rr.End
		}
		if from != "" {
			t.Fatal("backwards pagination never ended")
		}
		// Forwards from the beginning without from, then on from end.
		f, got := page(MessagesRequest{Dir: "f", Limit: 100, Filter: `{"types":["m.room.message"]}`})
		if len(got) != 7 || got[0] != "m0" || f.End != "" {
			t.Fatalf("forward %v end %q", got, f.End)
		}
		// Forwards from a point, bounded by to.
		_, got = page(MessagesRequest{Dir: "f", From: pageToken(0), To: r.End, Limit: 100, Filter: `{"types":["m.room.message"]}`})
		if !slices.Equal(got, []string{"m0", "m1", "m2", "m3"}) {
			t.Fatalf("forward to r.End = %v", got)
		}
		// Filter by sender, lazy members: only the senders' member events.
		lr, got := page(MessagesRequest{Dir: "b", Limit: 100, Filter: `{"senders":["` + alice + `"],"lazy_load_members":true}`})
		if !slices.Equal(got, []string{"m6", "m4", "m2", "m0"}) {
			t.Fatalf("senders filter = %v", got)
		}
		if mk := memberKeys(decodeChunk(t, lr.State)); !slices.Equal(mk, []string{alice}) {
			t.Fatalf("lazy state members = %v", mk)
		}
		// A filter that drops events makes the scan read past its first
		// read (the page plus one row): bob's messages, two at a time.
		br, got := page(MessagesRequest{Dir: "b", Limit: 2, Filter: `{"senders":["` + bob + `"]}`})
		if !slices.Equal(got, []string{"m5", "m3"}) || br.End == "" {
			t.Fatalf("bob's first page %v end %q", got, br.End)
		}
		if _, got = page(MessagesRequest{Dir: "b", From: br.End, Limit: 2, Filter: `{"senders":["` + bob + `"]}`}); !slices.Equal(got, []string{"m1"}) {
			t.Fatalf("bob's second page %v", got)
		}
		// Events carry room_id in /messages.
		if decodeChunk(t, lr.Chunk)[0].RoomID != room {
			t.Fatal("/messages event without room_id")
		}
		// limit 0: nothing, but a valid response.
		if _, got := page(MessagesRequest{Dir: "b", Limit: 0}); len(got) != 0 {
			t.Fatalf("limit 0 = %v", got)
		}

		// Access: a non-member and an unknown room are refused; a departed
		// member reads up to the departure.
		_, err := e.sync.Messages(ctx, MessagesRequest{UserID: carol, RoomID: room, Dir: "b"})
		wantErr(t, err, "M_FORBIDDEN", 403)
		_, err = e.sync.Messages(ctx, MessagesRequest{UserID: bob, RoomID: "!unknown", Dir: "b"})
		wantErr(t, err, "M_FORBIDDEN", 403)
		_, err = e.sync.Messages(ctx, MessagesRequest{UserID: bob, RoomID: room, From: "bogus", Dir: "b"})
		wantErr(t, err, "M_INVALID_PARAM", 400)
		_, err = e.sync.Messages(ctx, MessagesRequest{UserID: bob, RoomID: room, Dir: "b", Filter: "{x"})
		wantErr(t, err, "M_NOT_JSON", 400)
		if _, err := e.rooms.Leave(ctx, roomserverLeave(room, bob)); err != nil {
			t.Fatal(err)
		}
		e.send(room, alice, "after bob left")
		_, got = page(MessagesRequest{Dir: "b", Limit: 100})
		if slices.Contains(got, "after bob left") || !slices.Contains(got, "m6") {
			t.Fatalf("departed member reads %v", got)
		}
		// World-readable rooms are readable by anyone.
		e.state(room, alice, "m.room.history_visibility", "", map[string]any{"history_visibility": "world_readable"})
		e.send(room, alice, "public now")
		wr, err := e.sync.Messages(ctx, MessagesRequest{UserID: carol, RoomID: room, Dir: "b", Limit: 1})
		if err != nil || len(wr.Chunk) != 1 {
			t.Fatalf("world_readable for a non-member: %v, %v", wr, err)
		}
		_ = ids
	})
}

func TestContextAndTimestamp(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob, carol := user("alice"), user("bob"), user("carol")
		room := e.room(alice, "Context", bob)
		var ids []string
		for i := 0; i < 9; i++ {
			ids = append(ids, e.send(room, alice, "c"+string(rune('0'+i))))
		}
		c, err := e.sync.Context(ctx, ContextRequest{UserID: bob, RoomID: room, EventID: ids[4], Limit: 4, Filter: `{"lazy_load_members":true}`})
		if err != nil {
			t.Fatal(err)
		}
		before, after := bodies(decodeChunk(t, c.EventsBefore)), bodies(decodeChunk(t, c.EventsAfter))
		var ev testEvent
		_ = json.Unmarshal(c.Event, &ev)
		if ev.EventID != ids[4] || !slices.Equal(before, []string{"c3", "c2"}) || !slices.Equal(after, []string{"c5", "c6"}) {
			t.Fatalf("context: event %s before %v after %v", ev.EventID, before, after)
		}
		if c.Start == "" || c.End == "" {
			t.Fatal("context without tokens")
		}
		// The tokens continue where the context ends.
		more, err := e.sync.Messages(ctx, MessagesRequest{UserID: bob, RoomID: room, Dir: "f", From: c.End, Limit: 1})
		if err != nil || bodies(decodeChunk(t, more.Chunk))[0] != "c7" {
			t.Fatalf("after context end: %v, %v", more, err)
		}
		back, err := e.sync.Messages(ctx, MessagesRequest{UserID: bob, RoomID: room, From: c.Start, Dir: "b", Limit: 1})
		if err != nil || bodies(decodeChunk(t, back.Chunk))[0] != "c1" {
			t.Fatalf("before context start: %v, %v", back, err)
		}
		// Lazy-loaded state: only alice, the only sender.
		if mk := memberKeys(decodeChunk(t, c.State)); !slices.Equal(mk, []string{alice}) {
			t.Fatalf("context state members = %v", mk)
		}
		full, err := e.sync.Context(ctx, ContextRequest{UserID: bob, RoomID: room, EventID: ids[8], Limit: -1})
		if err != nil || len(full.State) < 5 || len(full.EventsAfter) != 0 {
			t.Fatalf("context at the end: %d state, %d after, %v", len(full.State), len(full.EventsAfter), err)
		}
		if c0, err := e.sync.Context(ctx, ContextRequest{UserID: bob, RoomID: room, EventID: ids[4], Limit: 0}); err != nil || len(c0.EventsBefore)+len(c0.EventsAfter) != 0 || c0.Event == nil {
			t.Fatalf("limit 0: %+v, %v", c0, err)
		}
		_, err = e.sync.Context(ctx, ContextRequest{UserID: bob, RoomID: room, EventID: "$unknown", Limit: 2})
		wantErr(t, err, "M_NOT_FOUND", 404)
		_, err = e.sync.Context(ctx, ContextRequest{UserID: carol, RoomID: room, EventID: ids[0], Limit: 2})
		wantErr(t, err, "M_FORBIDDEN", 403)

		// timestamp_to_event: nearest visible event in each direction.
		first, err := e.sync.store.EventByID(ctx, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		fwd, err := e.sync.TimestampToEvent(ctx, bob, room, first.OriginTS, true)
		if err != nil || fwd.OriginServerTS < first.OriginTS {
			t.Fatalf("forward: %+v, %v", fwd, err)
		}
		bwd, err := e.sync.TimestampToEvent(ctx, bob, room, first.OriginTS+1_000_000, false)
		if err != nil || bwd.EventID != ids[8] {
			t.Fatalf("backward from the future: %+v, %v (want %s)", bwd, err, ids[8])
		}
		_, err = e.sync.TimestampToEvent(ctx, bob, room, 1, false)
		wantErr(t, err, "M_NOT_FOUND", 404)
		_, err = e.sync.TimestampToEvent(ctx, bob, room, first.OriginTS+1_000_000, true)
		wantErr(t, err, "M_NOT_FOUND", 404)
		_, err = e.sync.TimestampToEvent(ctx, carol, room, 1, true)
		wantErr(t, err, "M_FORBIDDEN", 403)
	})
}
