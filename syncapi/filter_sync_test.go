package syncapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSyncFilters(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob := user("alice"), user("bob")
		one := e.room(alice, "One", bob)
		two := e.room(alice, "Two", bob)
		e.send(one, alice, "from alice")
		e.send(one, bob, "from bob")
		if _, err := e.rooms.Send(ctx, roomserverSend(one, alice, map[string]any{"msgtype": "m.image", "body": "xray.png", "url": "mxc://clinic.test/xray"})); err != nil {
			t.Fatal(err)
		}
		e.send(two, alice, "in two")

		cases := []struct {
			name   string
			filter string
			room   string
			want   []string // bodies
			absent []string // rooms that must not appear
		}{
			{"types", `{"room":{"timeline":{"types":["m.room.message"],"limit":50}}}`, one, []string{"from alice", "from bob", "xray.png"}, nil},
			{"senders", `{"room":{"timeline":{"senders":["` + bob + `"],"limit":50}}}`, one, []string{"from bob"}, nil},
			{"not_senders", `{"room":{"timeline":{"not_senders":["` + alice + `"],"limit":50}}}`, one, []string{"from bob"}, nil},
			{"contains_url", `{"room":{"timeline":{"contains_url":true,"limit":50}}}`, one, []string{"xray.png"}, nil},
			{"limit", `{"room":{"timeline":{"limit":1}}}`, one, []string{"xray.png"}, nil},
			{"rooms", `{"room":{"rooms":["` + two + `"]}}`, two, []string{"in two"}, []string{one}},
			{"not_rooms", `{"room":{"not_rooms":["` + two + `"],"timeline":{"limit":50}}}`, one, []string{"from alice", "from bob", "xray.png"}, []string{two}},
		}
		for _, c := range cases {
			r := e.do(Request{UserID: bob, Filter: c.filter})
			j, ok := r.Rooms.Join[c.room]
			if !ok {
				t.Fatalf("%s: room missing", c.name)
			}
			if got := bodies(j.Timeline.Events); !slices.Equal(got, c.want) {
				t.Errorf("%s: bodies = %v, want %v", c.name, got, c.want)
			}
			for _, a := range c.absent {
				if _, ok := r.Rooms.Join[a]; ok {
					t.Errorf("%s: room %s present", c.name, a)
				}
			}
		}
		// Types also apply to non-message events: only member events.
		r := e.do(Request{UserID: bob, Filter: `{"room":{"timeline":{"types":["m.room.mem*"],"limit":50}}}`})
		for _, ev := range r.Rooms.Join[one].Timeline.Events {
			if ev.Type != "m.room.member" {
				t.Fatalf("types wildcard let %s through", ev.Type)
			}
		}

		// A stored filter, by ID; the same filter again gets the same ID.
		id, err := e.sync.PutFilter(ctx, bob, []byte(`{"room":{"timeline":{"limit":1}},"event_fields":["type","content.body"]}`))
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := e.sync.PutFilter(ctx, bob, []byte(` {"room":{"timeline":{"limit":1}},"event_fields":["type","content.body"]}`)); again != id {
			t.Fatalf("same filter stored twice: %s, %s", id, again)
		}
		got, err := e.sync.GetFilter(ctx, bob, id)
		if err != nil || !strings.Contains(string(got), `"event_fields"`) {
			t.Fatalf("GetFilter = %s, %v", got, err)
		}
		if _, err := e.sync.GetFilter(ctx, alice, id); err == nil {
			t.Fatal("alice read bob's filter")
		}
		resp, err := e.sync.Sync(ctx, Request{UserID: bob, DeviceID: "D", Filter: id})
		if err != nil {
			t.Fatal(err)
		}
		ev := resp.Rooms.Join[one].Timeline.Events
		if len(ev) != 1 || string(ev[0]) != `{"content":{"body":"xray.png"},"type":"m.room.message"}` {
			t.Fatalf("event_fields: %s", ev)
		}
		// The federation format is the stored PDU.
		resp, err = e.sync.Sync(ctx, Request{UserID: bob, DeviceID: "D", Filter: `{"event_format":"federation","room":{"timeline":{"limit":1}}}`})
		if err != nil {
			t.Fatal(err)
		}
		var pdu map[string]json.RawMessage
		if err := json.Unmarshal(resp.Rooms.Join[one].Timeline.Events[0], &pdu); err != nil || pdu["hashes"] == nil || pdu["signatures"] == nil {
			t.Fatalf("federation format: %s", resp.Rooms.Join[one].Timeline.Events[0])
		}

		bad := []struct {
			name string
			req  Request
			code string
		}{
			{"bad since", Request{UserID: bob, Since: "garbage"}, "M_INVALID_PARAM"},
			{"bad set_presence", Request{UserID: bob, SetPresence: "busy"}, "M_INVALID_PARAM"},
			{"unknown filter", Request{UserID: bob, Filter: "999"}, "M_INVALID_PARAM"},
			{"other user's filter", Request{UserID: alice, Filter: id}, "M_INVALID_PARAM"},
			{"inline not JSON", Request{UserID: bob, Filter: "{nope"}, "M_NOT_JSON"},
			{"inline invalid", Request{UserID: bob, Filter: `{"room":{"timeline":{"limit":-1}}}`}, "M_BAD_JSON"},
			{"negative timeout", Request{UserID: bob, Timeout: -time.Second}, "M_INVALID_PARAM"},
		}
		for _, c := range bad {
			_, err := e.sync.Sync(ctx, c.req)
			if err == nil {
				t.Fatalf("%s: accepted", c.name)
			}
			wantErr(t, err, c.code, 400)
		}
	})
}

func TestFullStateAndStateAfter(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Imaging", bob)
		first := e.do(Request{UserID: bob})
		e.send(room, alice, "m1")
		name := e.state(room, alice, "m.room.name", "", map[string]any{"name": "Imaging 2"})
		e.send(room, alice, "m2")

		// full_state: the whole state before the timeline, timeline since.
		full := e.do(Request{UserID: bob, Since: first.NextBatch, FullState: true})
		j := full.Rooms.Join[room]
		if got := bodies(j.Timeline.Events); !slices.Equal(got, []string{"m1", "m2"}) {
			t.Fatalf("full_state timeline = %v", got)
		}
		st := types(j.State.Events)
		for _, want := range []string{"m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.member"} {
			if !slices.Contains(st, want) {
				t.Fatalf("full_state lacks %s: %v", want, st)
			}
		}
		for _, ev := range j.State.Events {
			if ev.EventID == name {
				t.Fatal("state before the timeline contains a timeline event")
			}
		}
		// A quiet room is present with full_state too.
		other := e.room(alice, "Quiet", bob)
		mid := e.do(Request{UserID: bob})
		if _, ok := e.do(Request{UserID: bob, Since: mid.NextBatch, FullState: true}).Rooms.Join[other]; !ok {
			t.Fatal("full_state omits a room without news")
		}

		// use_state_after: state up to the end of the timeline, no state.
		after := e.do(Request{UserID: bob, Since: first.NextBatch, UseStateAfter: true})
		ja := after.Rooms.Join[room]
		if ja.State != nil || ja.StateAfter == nil {
			t.Fatalf("use_state_after: state %v, state_after %v", ja.State, ja.StateAfter)
		}
		if len(ja.StateAfter.Events) != 1 || ja.StateAfter.Events[0].EventID != name {
			t.Fatalf("state_after = %+v, want the name change", ja.StateAfter.Events)
		}
		// A timeline filter that hides the name change still reports it in
		// state_after (that is what state_after is for).
		hidden := e.do(Request{UserID: bob, Since: first.NextBatch, UseStateAfter: true, Filter: `{"room":{"timeline":{"types":["m.room.message"]}}}`})
		if sa := hidden.Rooms.Join[room].StateAfter; sa == nil || len(sa.Events) != 1 || sa.Events[0].EventID != name {
			t.Fatalf("state_after with a filtered timeline = %+v", sa)
		}
		// Initial sync with use_state_after: the full state at the end.
		init := e.do(Request{UserID: bob, UseStateAfter: true})
		found := false
		for _, ev := range init.Rooms.Join[room].StateAfter.Events {
			found = found || ev.EventID == name
		}
		if !found {
			t.Fatal("initial state_after lacks the current name")
		}
	})
}

func TestRestartDurability(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob := user("alice"), user("bob")
		room := e.room(alice, "Overnight", bob)
		e.send(room, alice, "seen")
		if err := e.sync.PostReceipt(ctx, alice, room, "m.read", e.send(room, alice, "seen too"), nil); err != nil {
			t.Fatal(err)
		}
		before := e.do(Request{UserID: bob})
		e.send(room, alice, "missed-1")
		if err := e.sync.PutAccountData(ctx, bob, "", "chat.myelin.missed", raw(map[string]any{"n": 1})); err != nil {
			t.Fatal(err)
		}
		e.restart(t)
		e.send(room, alice, "missed-2")
		if err := e.sync.SetTyping(ctx, alice, room, true, time.Minute); err != nil {
			t.Fatal(err)
		}
		after := e.do(Request{UserID: bob, Since: before.NextBatch})
		j := after.Rooms.Join[room]
		if got := bodies(j.Timeline.Events); !slices.Equal(got, []string{"missed-1", "missed-2"}) || j.Timeline.Limited {
			t.Fatalf("after restart timeline = %v (limited %v)", got, j.Timeline.Limited)
		}
		if got := accountTypes(after.AccountData); len(got) != 1 || got["chat.myelin.missed"] == "" {
			t.Fatalf("after restart account data = %v", got)
		}
		if rs := receiptsIn(t, j); len(rs) != 0 {
			t.Fatalf("receipt delivered twice: %v", rs)
		}
		if users, ok := typingIn(t, j); !ok || !slices.Equal(users, []string{alice}) {
			t.Fatalf("typing after restart = %v %v", users, ok)
		}
		// And nothing twice.
		again := e.do(Request{UserID: bob, Since: after.NextBatch})
		if _, ok := again.Rooms.Join[room]; ok || len(again.AccountData.Events) != 0 {
			t.Fatalf("second sync repeats: %+v", again.Rooms.Join[room])
		}
	})
}
