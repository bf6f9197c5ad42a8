package syncapi

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// receiptsIn decodes the m.receipt events of a room's ephemeral section
// into "type user → event" (thread appended when set).
func receiptsIn(t testing.TB, r roomResp) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, ev := range r.Ephemeral.Events {
		if ev.Type != "m.receipt" {
			continue
		}
		var c map[string]map[string]map[string]struct {
			TS       int64  `json:"ts"`
			ThreadID string `json:"thread_id"`
		}
		if err := json.Unmarshal(ev.Content, &c); err != nil {
			t.Fatal(err)
		}
		for eventID, byType := range c {
			for typ, users := range byType {
				for u, r := range users {
					if r.TS == 0 {
						t.Fatalf("receipt without ts: %s", ev.Content)
					}
					k := typ + " " + u
					if r.ThreadID != "" {
						k += " " + r.ThreadID
					}
					out[k] = eventID
				}
			}
		}
	}
	return out
}

func typingIn(t testing.TB, r roomResp) ([]string, bool) {
	t.Helper()
	for _, ev := range r.Ephemeral.Events {
		if ev.Type == "m.typing" {
			var c struct {
				UserIDs []string `json:"user_ids"`
			}
			if err := json.Unmarshal(ev.Content, &c); err != nil {
				t.Fatal(err)
			}
			return c.UserIDs, true
		}
	}
	return nil, false
}

func TestReceiptsAndReadMarkers(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob, carol := user("alice"), user("bob"), user("carol")
		room := e.room(alice, "Lab", bob)
		m1 := e.send(room, alice, "one")
		m2 := e.send(room, alice, "two")
		root := e.send(room, alice, "thread root")
		reply, err := e.rooms.Send(ctx, roomserverSend(room, bob, map[string]any{"msgtype": "m.text", "body": "in thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}}))
		if err != nil {
			t.Fatal(err)
		}
		aliceSince := e.do(Request{UserID: alice}).NextBatch
		bobSince := e.do(Request{UserID: bob}).NextBatch

		if err := e.sync.PostReceipt(ctx, bob, room, "m.read", m2, nil); err != nil {
			t.Fatal(err)
		}
		if err := e.sync.PostReceipt(ctx, bob, room, "m.read.private", root, nil); err != nil {
			t.Fatal(err)
		}
		main := "main"
		if err := e.sync.PostReceipt(ctx, bob, room, "m.read", root, &main); err != nil {
			t.Fatal(err)
		}
		if err := e.sync.PostReceipt(ctx, bob, room, "m.read", reply, &root); err != nil {
			t.Fatal(err)
		}
		// Backwards: ignored, nothing changes.
		if err := e.sync.PostReceipt(ctx, bob, room, "m.read", m1, nil); err != nil {
			t.Fatal(err)
		}

		forAlice := receiptsIn(t, e.do(Request{UserID: alice, Since: aliceSince}).Rooms.Join[room])
		wantAlice := map[string]string{"m.read " + bob: m2, "m.read " + bob + " main": root, "m.read " + bob + " " + root: reply}
		if !mapsEqual(forAlice, wantAlice) {
			t.Fatalf("alice sees receipts %v, want %v (no private receipt)", forAlice, wantAlice)
		}
		forBob := receiptsIn(t, e.do(Request{UserID: bob, Since: bobSince}).Rooms.Join[room])
		if forBob["m.read.private "+bob] != root || forBob["m.read "+bob] != m2 {
			t.Fatalf("bob sees receipts %v", forBob)
		}
		// An initial sync carries every receipt.
		if all := receiptsIn(t, e.do(Request{UserID: alice}).Rooms.Join[room]); !mapsEqual(all, wantAlice) {
			t.Fatalf("initial receipts %v", all)
		}

		// Read markers: m.fully_read lands in room account data, m.read
		// moves the receipt, in one request.
		if err := e.sync.ReadMarkers(ctx, bob, room, root, reply, ""); err != nil {
			t.Fatal(err)
		}
		fr, err := e.sync.AccountData(ctx, bob, room, "m.fully_read")
		if err != nil || string(fr) != `{"event_id":"`+root+`"}` {
			t.Fatalf("m.fully_read = %s, %v", fr, err)
		}
		inc := e.do(Request{UserID: bob, Since: bobSince})
		j := inc.Rooms.Join[room]
		if !slices.ContainsFunc(j.AccountData.Events, func(c testEvent) bool { return c.Type == "m.fully_read" }) {
			t.Fatalf("m.fully_read not synced: %+v", j.AccountData)
		}
		if got := receiptsIn(t, j)["m.read "+bob]; got != reply {
			t.Fatalf("m.read after read_markers = %s, want %s", got, reply)
		}
		// The receipt endpoint also takes m.fully_read.
		if err := e.sync.PostReceipt(ctx, bob, room, "m.fully_read", m2, nil); err != nil {
			t.Fatal(err)
		}

		bad := []struct {
			name, user, room, typ, event string
			thread                       *string
			code                         string
			status                       int
		}{
			{"unknown type", bob, room, "m.seen", m1, nil, "M_INVALID_PARAM", 400},
			{"empty thread", bob, room, "m.read", m1, sp(""), "M_INVALID_PARAM", 400},
			{"thread on fully_read", bob, room, "m.fully_read", m1, &main, "M_INVALID_PARAM", 400},
			{"bad thread id", bob, room, "m.read", m1, sp("thread"), "M_INVALID_PARAM", 400},
			{"event not in thread", bob, room, "m.read", m1, &root, "M_INVALID_PARAM", 400},
			{"threaded event under main", bob, room, "m.read", reply, &main, "M_INVALID_PARAM", 400},
			{"unknown event", bob, room, "m.read", "$nope", nil, "M_NOT_FOUND", 404},
			{"not an event ID", bob, room, "m.read", "nope", nil, "M_INVALID_PARAM", 400},
			{"not joined", carol, room, "m.read", m1, nil, "M_FORBIDDEN", 403},
			{"unknown room", bob, "!nowhere", "m.read", m1, nil, "M_FORBIDDEN", 403},
		}
		for _, c := range bad {
			err := e.sync.PostReceipt(ctx, c.user, c.room, c.typ, c.event, c.thread)
			if err == nil {
				t.Fatalf("%s: accepted", c.name)
			}
			wantErr(t, err, c.code, c.status)
		}
		wantErr(t, e.sync.ReadMarkers(ctx, bob, room, "$nope", "", ""), "M_NOT_FOUND", 404)
		wantErr(t, e.sync.ReadMarkers(ctx, carol, room, m1, "", ""), "M_FORBIDDEN", 403)
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestTyping(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob, carol := user("alice"), user("bob"), user("carol")
		room := e.room(alice, "Pharmacy", bob)
		since := e.do(Request{UserID: bob}).NextBatch

		// A long-poll wakes when alice starts typing.
		done := make(chan syncResp, 1)
		go func() { done <- e.do(Request{UserID: bob, Since: since, Timeout: 20 * time.Second}) }()
		waitWaiting(t, e, 1)
		if err := e.sync.SetTyping(ctx, alice, room, true, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		r := waitSync(t, done)
		users, ok := typingIn(t, r.Rooms.Join[room])
		if !ok || !slices.Equal(users, []string{alice}) {
			t.Fatalf("typing = %v, %v", users, ok)
		}
		// Renewing does not wake anyone; the timeout ends it and wakes bob.
		if err := e.sync.SetTyping(ctx, alice, room, true, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		go func() { done <- e.do(Request{UserID: bob, Since: r.NextBatch, Timeout: 20 * time.Second}) }()
		start := time.Now()
		r = waitSync(t, done)
		if users, ok := typingIn(t, r.Rooms.Join[room]); !ok || len(users) != 0 {
			t.Fatalf("after the timeout typing = %v, %v", users, ok)
		}
		if waited := time.Since(start); waited < 150*time.Millisecond {
			t.Fatalf("typing ended after %v, before its timeout", waited)
		}
		// Explicit stop.
		if err := e.sync.SetTyping(ctx, bob, room, true, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := e.sync.SetTyping(ctx, bob, room, false, 0); err != nil {
			t.Fatal(err)
		}
		r2 := e.do(Request{UserID: alice})
		if users, ok := typingIn(t, r2.Rooms.Join[room]); ok {
			t.Fatalf("initial sync shows an empty typing list: %v", users)
		}
		wantErr(t, e.sync.SetTyping(ctx, carol, room, true, time.Second), "M_FORBIDDEN", 403)
		// No timeout: the default applies.
		if err := e.sync.SetTyping(ctx, alice, room, true, 0); err != nil {
			t.Fatal(err)
		}
		if users, _ := typingIn(t, e.do(Request{UserID: bob}).Rooms.Join[room]); !slices.Equal(users, []string{alice}) {
			t.Fatalf("typing without a timeout: %v", users)
		}
		wantErr(t, e.sync.SetTyping(ctx, alice, "nope", true, time.Second), "M_INVALID_PARAM", 400)
	})
}

// waitWaiting waits until n users have a long-poll parked in the hub.
func waitWaiting(t testing.TB, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.sync.hub.waiting() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d long-polls waiting, want %d", e.sync.hub.waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitSync(t testing.TB, done <-chan syncResp) syncResp {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("long-poll did not return")
		return syncResp{}
	}
}

func TestPresence(t *testing.T) {
	eachEngine(t, func(o *Options) {
		o.PresenceOfflineAfter = 150 * time.Millisecond
		o.PresenceIdleAfter = 300 * time.Millisecond
	}, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob, carol := user("alice"), user("bob"), user("carol")
		e.room(alice, "Reception", bob)

		presenceOf := func(r syncResp, u string) (PresenceContent, bool) {
			for _, ev := range r.Presence.Events {
				if ev.Sender == u && ev.Type == "m.presence" {
					var c PresenceContent
					if err := json.Unmarshal(ev.Content, &c); err != nil {
						t.Fatal(err)
					}
					return c, true
				}
			}
			return PresenceContent{}, false
		}
		// Syncing makes alice online; bob sees it.
		e.do(Request{UserID: alice})
		r := e.do(Request{UserID: bob, SetPresence: "offline"})
		if c, ok := presenceOf(r, alice); !ok || c.Presence != "online" || c.CurrentlyActive == nil || !*c.CurrentlyActive {
			t.Fatalf("alice's presence = %+v, %v", c, ok)
		}
		if _, ok := presenceOf(r, bob); ok {
			t.Fatal("set_presence=offline marked bob online")
		}
		// A status message, seen by bob through a long-poll wake.
		done := make(chan syncResp, 1)
		go func() {
			done <- e.do(Request{UserID: bob, Since: r.NextBatch, SetPresence: "offline", Timeout: 20 * time.Second})
		}()
		waitWaiting(t, e, 1)
		if err := e.sync.SetPresence(ctx, alice, "unavailable", sp("in surgery")); err != nil {
			t.Fatal(err)
		}
		r = waitSync(t, done)
		if c, ok := presenceOf(r, alice); !ok || c.Presence != "unavailable" || c.StatusMsg == nil || *c.StatusMsg != "in surgery" {
			t.Fatalf("after PUT: %+v, %v", c, ok)
		}
		// Without syncs alice goes offline after the grace period; bob's
		// long-poll wakes for it.
		go func() {
			done <- e.do(Request{UserID: bob, Since: r.NextBatch, SetPresence: "offline", Timeout: 20 * time.Second})
		}()
		r = waitSync(t, done)
		if c, ok := presenceOf(r, alice); !ok || c.Presence != "offline" || c.StatusMsg == nil {
			t.Fatalf("after the offline timeout: %+v, %v", c, ok)
		}

		// GET: self and room-mates only.
		if c, err := e.sync.GetPresence(ctx, bob, alice); err != nil || c.Presence != "offline" {
			t.Fatalf("GET alice as bob = %+v, %v", c, err)
		}
		if c, err := e.sync.GetPresence(ctx, carol, carol); err != nil || c.Presence != "offline" {
			t.Fatalf("GET own never-set presence = %+v, %v", c, err)
		}
		_, err := e.sync.GetPresence(ctx, carol, alice)
		wantErr(t, err, "M_FORBIDDEN", 403)
		wantErr(t, e.sync.SetPresence(ctx, alice, "busy", nil), "M_INVALID_PARAM", 400)
		long := string(make([]byte, maxStatusMsg+1))
		wantErr(t, e.sync.SetPresence(ctx, alice, "online", &long), "M_INVALID_PARAM", 400)

		// Online goes idle (unavailable) without activity while a sync
		// keeps bob connected, and activity (typing) brings him back.
		room := e.room(bob, "Kennels")
		stop := make(chan struct{})
		looped := make(chan struct{})
		go func() { // a client's sync loop
			defer close(looped)
			since := ""
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := e.sync.Sync(ctx, Request{UserID: bob, DeviceID: "LOOP", Since: since, Timeout: 100 * time.Millisecond})
				if err != nil {
					t.Error(err)
					return
				}
				since = resp.NextBatch
			}
		}()
		waitPresence := func(want string) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for {
				c, err := e.sync.GetPresence(ctx, bob, bob)
				if err != nil {
					t.Fatal(err)
				}
				if c.Presence == want {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("bob's presence stays %+v, want %s", c, want)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		waitPresence("online")
		waitPresence("unavailable")
		if err := e.sync.SetTyping(ctx, bob, room, true, time.Second); err != nil {
			t.Fatal(err)
		}
		waitPresence("online")
		// Sending a message is activity too.
		waitPresence("unavailable")
		e.send(room, bob, "back at the desk")
		waitPresence("online")
		close(stop)
		<-looped
	})
}

// TestPresenceOfNewRoomMates: an incremental sync carries the presence of
// users who newly share a room with the syncing user, however old it is.
func TestPresenceOfNewRoomMates(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice, bob, carol := user("alice"), user("bob"), user("carol")
		for _, u := range []string{alice, bob, carol} {
			if err := e.sync.SetPresence(ctx, u, "online", sp(u+" here")); err != nil {
				t.Fatal(err)
			}
		}
		has := func(r syncResp, u string) bool {
			return slices.ContainsFunc(r.Presence.Events, func(c testEvent) bool { return c.Sender == u })
		}
		room := e.room(alice, "Kennel")
		bobSince := e.do(Request{UserID: bob, SetPresence: "offline"}).NextBatch
		aliceSince := e.do(Request{UserID: alice, SetPresence: "offline"}).NextBatch
		e.join(room, bob)
		// Bob joined: he gets alice's presence; alice gets bob's.
		if r := e.do(Request{UserID: bob, Since: bobSince, SetPresence: "offline"}); !has(r, alice) || has(r, carol) {
			t.Fatalf("bob's presence after joining: %+v", r.Presence.Events)
		} else if again := e.do(Request{UserID: bob, Since: r.NextBatch, SetPresence: "offline"}); len(again.Presence.Events) != 0 {
			t.Fatalf("presence repeated: %+v", again.Presence.Events)
		}
		if r := e.do(Request{UserID: alice, Since: aliceSince, SetPresence: "offline"}); !has(r, bob) || has(r, carol) {
			t.Fatalf("alice's presence after bob joined: %+v", r.Presence.Events)
		}
	})
}
