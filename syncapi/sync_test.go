package syncapi

import (
	"slices"
	"strings"
	"testing"
	"time"

	"myelin/roomserver"
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

func TestLimitedTimelineStateDeltaAndGap(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Surgery", bob)
		first := e.do(Request{UserID: bob})

		// A gap: 3 messages, a topic change, 8 more messages.
		for i := 0; i < 3; i++ {
			e.send(room, alice, "early"+string(rune('a'+i)))
		}
		topicID := e.state(room, alice, "m.room.topic", "", map[string]any{"topic": "Rounds at 9"})
		var late []string
		for i := 0; i < 8; i++ {
			late = append(late, "late"+string(rune('a'+i)))
			e.send(room, alice, late[i])
		}
		f := `{"room":{"timeline":{"limit":5}}}`
		inc := e.do(Request{UserID: bob, Since: first.NextBatch, Filter: f})
		j := inc.Rooms.Join[room]
		if got := bodies(j.Timeline.Events); !slices.Equal(got, late[3:]) {
			t.Fatalf("limited timeline = %v, want %v", got, late[3:])
		}
		if !j.Timeline.Limited || j.Timeline.PrevBatch == "" {
			t.Fatalf("limited=%v prev_batch=%q", j.Timeline.Limited, j.Timeline.PrevBatch)
		}
		// The state delta carries the topic change from the gap, nothing
		// else (nothing else changed).
		if j.State == nil || len(j.State.Events) != 1 || j.State.Events[0].EventID != topicID {
			t.Fatalf("state delta = %+v, want only the topic %s", j.State, topicID)
		}

		// /messages from the since token to prev_batch closes the gap
		// exactly: the 3 early messages, the topic and the first 3 late ones.
		msgs, err := e.sync.Messages(ctxT(t), MessagesRequest{UserID: bob, RoomID: room, Dir: "f", From: first.NextBatch, To: j.Timeline.PrevBatch, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		got := decodeChunk(t, msgs.Chunk)
		want := []string{"earlya", "earlyb", "earlyc", "latea", "lateb", "latec"}
		if !slices.Equal(bodies(got), want) || len(got) != 7 || got[3].EventID != topicID {
			t.Fatalf("gap = %v (%d events), want %v and the topic", bodies(got), len(got), want)
		}
		if msgs.End != "" {
			t.Fatalf("gap fully read but end = %q", msgs.End)
		}
		// And backwards from prev_batch the same events come newest first.
		back, err := e.sync.Messages(ctxT(t), MessagesRequest{UserID: bob, RoomID: room, From: j.Timeline.PrevBatch, To: first.NextBatch, Dir: "b", Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		bb := bodies(decodeChunk(t, back.Chunk))
		slices.Reverse(bb)
		if !slices.Equal(bb, want) {
			t.Fatalf("backwards gap = %v", bb)
		}
	})
}

func TestInviteKnockLeaveSections(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob, carol := user("alice"), user("bob"), user("carol")
		invited := e.createRoom(roomserver.CreateRoomRequest{Creator: alice, Name: sp("Case 1042"), Preset: roomserver.PresetPrivateChat})
		knocked := e.room(alice, "Knock here")
		e.state(knocked, alice, "m.room.join_rules", "", map[string]any{"join_rule": "knock"})
		left := e.room(alice, "Leaving", bob)
		e.send(left, alice, "before leave")

		first := e.do(Request{UserID: bob})
		if _, ok := first.Rooms.Join[left]; !ok {
			t.Fatal("joined room missing")
		}
		if _, err := e.rooms.Invite(ctx, roomserver.MembershipRequest{RoomID: invited, Sender: alice, Target: bob}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rooms.Knock(ctx, roomserver.MembershipRequest{RoomID: knocked, Sender: bob}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rooms.Leave(ctx, roomserver.MembershipRequest{RoomID: left, Sender: bob}); err != nil {
			t.Fatal(err)
		}
		e.send(left, alice, "after leave")

		inc := e.do(Request{UserID: bob, Since: first.NextBatch})
		inv, ok := inc.Rooms.Invite[invited]
		if !ok {
			t.Fatalf("invite missing: %+v", inc.Rooms)
		}
		got := map[string]bool{}
		for _, ev := range inv.InviteState.Events {
			got[ev.Type] = true
			if ev.EventID != "" || ev.Sender == "" || ev.StateKey == nil {
				t.Fatalf("not a stripped event: %+v", ev)
			}
		}
		last := inv.InviteState.Events[len(inv.InviteState.Events)-1]
		if !got["m.room.create"] || !got["m.room.name"] || !got["m.room.join_rules"] || last.Type != "m.room.member" || *last.StateKey != bob {
			t.Fatalf("invite_state types %v, last %+v", got, last)
		}
		kn, ok := inc.Rooms.Knock[knocked]
		if !ok || len(kn.KnockState.Events) == 0 {
			t.Fatalf("knock missing: %+v", inc.Rooms.Knock)
		}
		if l := kn.KnockState.Events[len(kn.KnockState.Events)-1]; l.Type != "m.room.member" || *l.StateKey != bob {
			t.Fatalf("knock_state ends with %+v", l)
		}
		lr, ok := inc.Rooms.Leave[left]
		if !ok {
			t.Fatalf("left room missing: %+v", inc.Rooms.Leave)
		}
		tl := lr.Timeline.Events
		if len(tl) == 0 || tl[len(tl)-1].Type != "m.room.member" || *tl[len(tl)-1].StateKey != bob {
			t.Fatalf("left room timeline should end with the leave: %v", types(tl))
		}
		if slices.Contains(bodies(tl), "after leave") {
			t.Fatal("left room shows an event after the leave")
		}
		if _, ok := inc.Rooms.Join[left]; ok {
			t.Fatal("left room still under join")
		}

		// Initial syncs: leave rooms only with include_leave, never forgotten ones.
		if r := e.do(Request{UserID: bob}); len(r.Rooms.Leave) != 0 || len(r.Rooms.Invite) != 1 || len(r.Rooms.Knock) != 1 {
			t.Fatalf("initial sync sections: leave %d invite %d knock %d", len(r.Rooms.Leave), len(r.Rooms.Invite), len(r.Rooms.Knock))
		}
		withLeave := e.do(Request{UserID: bob, Filter: `{"room":{"include_leave":true}}`})
		if lr, ok := withLeave.Rooms.Leave[left]; !ok || !slices.Contains(bodies(lr.Timeline.Events), "before leave") {
			t.Fatalf("include_leave: %+v", withLeave.Rooms.Leave)
		}
		if err := e.rooms.Forget(ctx, left, bob); err != nil {
			t.Fatal(err)
		}
		if r := e.do(Request{UserID: bob, Filter: `{"room":{"include_leave":true}}`}); len(r.Rooms.Leave) != 0 {
			t.Fatalf("forgotten room still listed: %+v", r.Rooms.Leave)
		}

		// An invite from an ignored user is not sent.
		if err := e.sync.PutAccountData(ctx, carol, "", "m.ignored_user_list", raw(map[string]any{"ignored_users": map[string]any{alice: map[string]any{}}})); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rooms.Invite(ctx, roomserver.MembershipRequest{RoomID: invited, Sender: alice, Target: carol}); err != nil {
			t.Fatal(err)
		}
		if r := e.do(Request{UserID: carol}); len(r.Rooms.Invite) != 0 {
			t.Fatalf("invite from an ignored user delivered: %+v", r.Rooms.Invite)
		}
	})
}

// TestNewlyJoinedRoom: a room joined since the last sync comes with its
// full state, a timeline ending with the user's join and a summary.
func TestNewlyJoinedRoom(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Dermatology")
		for i := 0; i < 12; i++ {
			e.send(room, alice, "history")
		}
		first := e.do(Request{UserID: bob})
		if len(first.Rooms.Join) != 0 {
			t.Fatal("bob is in no room yet")
		}
		e.join(room, bob)
		r := e.do(Request{UserID: bob, Since: first.NextBatch})
		j, ok := r.Rooms.Join[room]
		if !ok {
			t.Fatalf("newly joined room missing: %+v", r.Rooms)
		}
		tl := j.Timeline.Events
		if last := tl[len(tl)-1]; last.Type != "m.room.member" || *last.StateKey != bob {
			t.Fatalf("timeline should end with bob's join: %v", types(tl))
		}
		if !j.Timeline.Limited || len(tl) != defaultTimelineLimit {
			t.Fatalf("timeline: %d events, limited %v", len(tl), j.Timeline.Limited)
		}
		st := types(j.State.Events)
		for _, want := range []string{"m.room.create", "m.room.power_levels", "m.room.name", "m.room.member"} {
			if !slices.Contains(st, want) {
				t.Fatalf("full state lacks %s: %v", want, st)
			}
		}
		if j.Summary == nil || *j.Summary.Joined != 2 {
			t.Fatalf("summary = %+v", j.Summary)
		}
	})
}

// TestCloseAnswersLongPolls: Close (run when shutdown begins) answers a
// parked long-poll at once instead of after its timeout.
func TestCloseAnswersLongPolls(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		alice := user("alice")
		e.room(alice, "Closing")
		since := e.do(Request{UserID: alice}).NextBatch
		done := make(chan syncResp, 1)
		go func() {
			done <- e.do(Request{UserID: alice, Since: since, Timeout: time.Minute, SetPresence: "offline"})
		}()
		waitWaiting(t, e, 1)
		start := time.Now()
		if err := e.sync.Close(); err != nil {
			t.Fatal(err)
		}
		r := waitSync(t, done)
		if waited := time.Since(start); waited > 5*time.Second || r.NextBatch == "" {
			t.Fatalf("long-poll answered after %v: %+v", waited, r.NextBatch)
		}
	})
}

// TestLeftRoomEdges: a timeline limit of 0 gives a left room's state up to
// the departure (leave event included, nothing after it); a room forgotten
// after leaving still shows the leave in the next incremental sync, and its
// history is then closed to /messages.
func TestLeftRoomEdges(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Archive", bob)
		e.state(room, alice, "chat.myelin.note", "", map[string]any{"v": "before"})
		since := e.do(Request{UserID: bob}).NextBatch
		if _, err := e.rooms.Leave(ctx, roomserverLeave(room, bob)); err != nil {
			t.Fatal(err)
		}
		e.state(room, alice, "chat.myelin.note", "", map[string]any{"v": "after"})

		r := e.do(Request{UserID: bob, Filter: `{"room":{"timeline":{"limit":0},"include_leave":true}}`})
		l, ok := r.Rooms.Leave[room]
		if !ok || len(l.Timeline.Events) != 0 || !l.Timeline.Limited {
			t.Fatalf("left room with limit 0: %+v", l)
		}
		var leave, note bool
		for _, ev := range l.State.Events {
			switch {
			case ev.Type == "m.room.member" && *ev.StateKey == bob:
				leave = strings.Contains(string(ev.Content), `"leave"`)
			case ev.Type == "chat.myelin.note":
				note = strings.Contains(string(ev.Content), `"before"`)
			}
		}
		if !leave || !note {
			t.Fatalf("state up to the leave: leave %v, note before %v (%v)", leave, note, types(l.State.Events))
		}

		if err := e.rooms.Forget(ctx, room, bob); err != nil {
			t.Fatal(err)
		}
		inc := e.do(Request{UserID: bob, Since: since})
		if _, ok := inc.Rooms.Leave[room]; !ok {
			t.Fatal("a forgotten room's leave is missing from the incremental sync")
		}
		_, err := e.sync.Messages(ctx, MessagesRequest{UserID: bob, RoomID: room})
		wantErr(t, err, "M_FORBIDDEN", 403)
		_, err = e.sync.Messages(ctx, MessagesRequest{UserID: alice, RoomID: room})
		wantErr(t, err, "M_MISSING_PARAM", 400)
	})
}
