package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// syncBodies lists the bodies of a timeline's m.room.message events.
func syncBodies(evs []*event.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == event.EventMessage {
			if b, ok := e.Content.Raw["body"].(string); ok {
				out = append(out, b)
			}
		}
	}
	return out
}

// stateMembers lists the state keys of the member events among evs, sorted.
func stateMembers(evs []*event.Event) []string {
	out := []string{}
	for _, e := range evs {
		if e.Type == event.StateMember && e.StateKey != nil {
			out = append(out, *e.StateKey)
		}
	}
	slices.Sort(out)
	return out
}

func syncWith(t *testing.T, c *mautrix.Client, req mautrix.ReqSync) *mautrix.RespSync {
	t.Helper()
	resp, err := c.FullSyncRequest(context.Background(), req)
	if err != nil {
		t.Fatalf("sync %+v: %v", req, err)
	}
	return resp
}

func sendText(t *testing.T, u roomUser, room id.RoomID, body string) id.EventID {
	t.Helper()
	resp, err := u.c.SendText(context.Background(), room, body)
	if err != nil {
		t.Fatalf("send %q: %v", body, err)
	}
	return resp.EventID
}

// TestSyncLongPollWakes: a long-polling /sync returns as soon as a message
// is sent, well before its timeout (the server waits on its notifier, not
// on a polling interval).
func TestSyncLongPollWakes(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Front desk"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.c.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		since := syncWith(t, bob.c, mautrix.ReqSync{}).NextBatch
		var lat []time.Duration
		for i := 0; i < 5; i++ {
			type result struct {
				resp *mautrix.RespSync
				at   time.Time
				err  error
			}
			done := make(chan result, 1)
			go func(since string) {
				r, err := bob.c.FullSyncRequest(ctx, mautrix.ReqSync{Since: since, Timeout: 30000, SetPresence: event.PresenceOffline})
				done <- result{r, time.Now(), err}
			}(since)
			// The long-poll is parked: give it time to reach the server.
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			sendText(t, alice, room.RoomID, "ping")
			select {
			case r := <-done:
				if r.err != nil {
					t.Fatal(r.err)
				}
				if got := syncBodies(r.resp.Rooms.Join[room.RoomID].Timeline.Events); !slices.Equal(got, []string{"ping"}) {
					t.Fatalf("woken sync timeline = %v", got)
				}
				lat = append(lat, r.at.Sub(start))
				since = r.resp.NextBatch
			case <-time.After(10 * time.Second):
				t.Fatal("the long-poll did not wake within 10s of the send (timeout was 30s)")
			}
		}
		slices.Sort(lat)
		t.Logf("send→sync delivery over HTTP (%s): median %v, max %v", engine, lat[len(lat)/2], lat[len(lat)-1])

		// Without news a long-poll waits for its timeout and returns empty.
		start := time.Now()
		r := syncWith(t, bob.c, mautrix.ReqSync{Since: since, Timeout: 700, SetPresence: event.PresenceOffline})
		if waited := time.Since(start); waited < 600*time.Millisecond {
			t.Fatalf("an empty long-poll returned after %v, before its 700ms timeout", waited)
		}
		if len(r.Rooms.Join) != 0 || r.NextBatch == "" {
			t.Fatalf("empty long-poll: %d rooms, next_batch %q", len(r.Rooms.Join), r.NextBatch)
		}
	})
}

// TestSyncRestartDurability: a client syncs, messages arrive, the server
// stops and starts again; an incremental sync from the token taken before
// the stop returns exactly what was missed, and nothing is delivered twice.
func TestSyncRestartDurability(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Overnight"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.c.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		sendText(t, alice, room.RoomID, "seen before")
		token := syncWith(t, bob.c, mautrix.ReqSync{}).NextBatch

		var missed []string
		for _, b := range []string{"missed 1", "missed 2", "missed 3"} {
			sendText(t, alice, room.RoomID, b)
			missed = append(missed, b)
		}
		if err := bob.c.SetAccountData(ctx, "chat.myelin.missed", map[string]any{"n": 3}); err != nil {
			t.Fatal(err)
		}
		srv.Stop()
		srv.Restart()

		r := syncWith(t, bob.c, mautrix.ReqSync{Since: token, SetPresence: event.PresenceOffline})
		j := r.Rooms.Join[room.RoomID]
		if j == nil {
			t.Fatalf("after the restart the room is missing: %+v", r.Rooms)
		}
		if got := syncBodies(j.Timeline.Events); !slices.Equal(got, missed) || j.Timeline.Limited {
			t.Fatalf("after the restart: %v (limited %v), want exactly %v", got, j.Timeline.Limited, missed)
		}
		var ad []string
		for _, e := range r.AccountData.Events {
			ad = append(ad, e.Type.Type)
		}
		if !slices.Equal(ad, []string{"chat.myelin.missed"}) {
			t.Fatalf("account data after the restart: %v", ad)
		}
		// Nothing twice: the next sync from the new token is empty, and a
		// new message comes alone.
		again := syncWith(t, bob.c, mautrix.ReqSync{Since: r.NextBatch, SetPresence: event.PresenceOffline})
		if len(again.Rooms.Join) != 0 || len(again.AccountData.Events) != 0 {
			t.Fatalf("delivered twice: %+v", again.Rooms.Join)
		}
		sendText(t, alice, room.RoomID, "after restart")
		last := syncWith(t, bob.c, mautrix.ReqSync{Since: again.NextBatch, SetPresence: event.PresenceOffline})
		if got := syncBodies(last.Rooms.Join[room.RoomID].Timeline.Events); !slices.Equal(got, []string{"after restart"}) {
			t.Fatalf("after restart: %v", got)
		}
	})
}

// TestSyncLazyLoadingMembers: with lazy_load_members the state of each
// synced room holds the member events of the timeline's senders (and the
// syncing user's own, which the spec requires when the room is new to the
// client) and no others.
func TestSyncLazyLoadingMembers(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		users := map[string]roomUser{}
		for _, name := range []string{"vet", "nurse", "tech", "reception", "owner"} {
			users[name] = newRoomUser(t, srv, name)
		}
		viewer := users["owner"]
		room, err := users["vet"].c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Ward 3"})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"nurse", "tech", "reception", "owner"} {
			if _, err := users[name].c.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatal(err)
			}
		}
		filter := func(limit int, redundant bool) string {
			f := mautrix.Filter{Room: &mautrix.RoomFilter{
				Timeline: &mautrix.FilterPart{Limit: limit},
				State:    &mautrix.FilterPart{LazyLoadMembers: true, IncludeRedundantMembers: redundant},
			}}
			resp, err := viewer.c.CreateFilter(ctx, &f)
			if err != nil {
				t.Fatal(err)
			}
			return resp.FilterID
		}
		uid := func(names ...string) []string {
			var out []string
			for _, n := range names {
				out = append(out, string(users[n].UserID))
			}
			slices.Sort(out)
			return out
		}
		since := ""
		for _, c := range []struct {
			name    string
			senders []string // each sends one message, in order
			limit   int
			initial bool
			redund  bool
			want    []string
		}{
			{"initial, two senders", []string{"nurse", "tech"}, 2, true, false, uid("nurse", "tech", "owner")},
			{"initial, one sender", []string{"vet"}, 1, true, false, uid("vet", "owner")},
			{"incremental, a sender already sent", []string{"vet"}, 5, false, false, []string{}},
			{"incremental, a new sender", []string{"reception"}, 5, false, false, uid("reception")},
			{"incremental, redundant members on request", []string{"vet", "reception"}, 5, false, true, uid("vet", "reception")},
			{"initial, the viewer is a sender", []string{"owner", "nurse"}, 2, true, false, uid("nurse", "owner")},
		} {
			t.Run(c.name, func(t *testing.T) {
				for _, s := range c.senders {
					sendText(t, users[s], room.RoomID, c.name+" from "+s)
				}
				req := mautrix.ReqSync{FilterID: filter(c.limit, c.redund), SetPresence: event.PresenceOffline}
				if !c.initial {
					req.Since = since
				}
				r := syncWith(t, viewer.c, req)
				since = r.NextBatch
				j := r.Rooms.Join[room.RoomID]
				if j == nil {
					t.Fatal("room missing")
				}
				if got := stateMembers(j.State.Events); !slices.Equal(got, c.want) {
					t.Fatalf("state members = %v, want %v", got, c.want)
				}
			})
		}
	})
}

// TestSyncHistoryVisibilityJoined: in a room whose history is visible to
// joined members only, a user who joins later sees none of the earlier
// messages through /sync, /messages or /context.
func TestSyncHistoryVisibilityJoined(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Records",
			InitialState: []*event.Event{{Type: event.StateHistoryVisibility,
				Content: event.Content{Raw: map[string]any{"history_visibility": "joined"}}}}})
		if err != nil {
			t.Fatal(err)
		}
		secret := sendText(t, alice, room.RoomID, "secret: Bella's diagnosis")
		sendText(t, alice, room.RoomID, "secret: invoice 881")
		if _, err := bob.c.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		after := sendText(t, alice, room.RoomID, "welcome bob")
		leaks := func(evs []*event.Event) bool {
			return slices.ContainsFunc(syncBodies(evs), func(b string) bool { return strings.HasPrefix(b, "secret") })
		}

		f, err := bob.c.CreateFilter(ctx, &mautrix.Filter{Room: &mautrix.RoomFilter{Timeline: &mautrix.FilterPart{Limit: 100}}})
		if err != nil {
			t.Fatal(err)
		}
		r := syncWith(t, bob.c, mautrix.ReqSync{FilterID: f.FilterID})
		j := r.Rooms.Join[room.RoomID]
		if j == nil || leaks(j.Timeline.Events) || !slices.Contains(syncBodies(j.Timeline.Events), "welcome bob") {
			t.Fatalf("/sync timeline: %v", syncBodies(j.Timeline.Events))
		}
		// /messages from the end, and from the sync's prev_batch.
		for _, from := range []string{"", j.Timeline.PrevBatch} {
			msgs, err := bob.c.Messages(ctx, room.RoomID, from, "", mautrix.DirectionBackward, nil, 100)
			if err != nil {
				t.Fatal(err)
			}
			if leaks(msgs.Chunk) {
				t.Fatalf("/messages from %q: %v", from, syncBodies(msgs.Chunk))
			}
		}
		if _, err := bob.c.Context(ctx, room.RoomID, secret, nil, 10); err == nil {
			t.Fatal("/context of a message from before the join answered")
		} else {
			wantMatrixErr(t, "/context of a pre-join message", err, 404, "M_NOT_FOUND")
		}
		c, err := bob.c.Context(ctx, room.RoomID, after, nil, 20)
		if err != nil {
			t.Fatal(err)
		}
		if leaks(c.EventsBefore) {
			t.Fatalf("/context events_before: %v", syncBodies(c.EventsBefore))
		}
		// Alice, joined throughout, sees both.
		ar, err := alice.c.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 100)
		if err != nil || !leaks(ar.Chunk) {
			t.Fatalf("alice's /messages: %v, %v", syncBodies(ar.Chunk), err)
		}
	})
}

// TestSyncClientData: account data, tags, m.direct, ignored users,
// receipts, read markers, typing and presence through a real client.
func TestSyncClientData(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		mallory := newRoomUser(t, srv, "mallory")
		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Lobby"})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []roomUser{bob, mallory} {
			if _, err := u.c.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatal(err)
			}
		}
		first := syncWith(t, bob.c, mautrix.ReqSync{}).NextBatch

		if err := bob.c.SetAccountData(ctx, "m.direct", map[id.UserID][]id.RoomID{alice.UserID: {room.RoomID}}); err != nil {
			t.Fatal(err)
		}
		if err := bob.c.AddTag(ctx, room.RoomID, event.RoomTagFavourite, 0.5); err != nil {
			t.Fatal(err)
		}
		if err := bob.c.SetAccountData(ctx, "m.ignored_user_list", map[string]any{"ignored_users": map[string]any{string(mallory.UserID): map[string]any{}}}); err != nil {
			t.Fatal(err)
		}
		msg := sendText(t, alice, room.RoomID, "lunch at noon")
		sendText(t, mallory, room.RoomID, "spam")
		if err := alice.c.SendReceipt(ctx, room.RoomID, msg, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		if err := bob.c.SetReadMarkers(ctx, room.RoomID, &mautrix.ReqSetReadMarkers{FullyRead: msg, ReadPrivate: msg}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.c.UserTyping(ctx, room.RoomID, true, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := alice.c.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "in surgery"}); err != nil {
			t.Fatal(err)
		}

		r := syncWith(t, bob.c, mautrix.ReqSync{Since: first, SetPresence: event.PresenceOffline})
		j := r.Rooms.Join[room.RoomID]
		if j == nil {
			t.Fatal("room missing")
		}
		if got := syncBodies(j.Timeline.Events); !slices.Equal(got, []string{"lunch at noon"}) {
			t.Fatalf("timeline (mallory ignored) = %v", got)
		}
		types := func(evs []*event.Event) []string {
			var out []string
			for _, e := range evs {
				out = append(out, e.Type.Type)
			}
			slices.Sort(out)
			return out
		}
		if got := types(r.AccountData.Events); !slices.Equal(got, []string{"m.direct", "m.ignored_user_list"}) {
			t.Fatalf("global account data = %v", got)
		}
		if got := types(j.AccountData.Events); !slices.Equal(got, []string{"m.fully_read", "m.tag"}) {
			t.Fatalf("room account data = %v", got)
		}
		if got := types(j.Ephemeral.Events); !slices.Equal(got, []string{"m.receipt", "m.typing"}) {
			t.Fatalf("ephemeral = %v", got)
		}
		for _, e := range j.Ephemeral.Events {
			raw, _ := json.Marshal(e.Content.Raw)
			switch e.Type.Type {
			case "m.receipt":
				if !strings.Contains(string(raw), string(alice.UserID)) || !strings.Contains(string(raw), "m.read.private") {
					t.Fatalf("receipts: %s", raw)
				}
			case "m.typing":
				if !strings.Contains(string(raw), string(alice.UserID)) {
					t.Fatalf("typing: %s", raw)
				}
			}
		}
		var sawAlice bool
		for _, e := range r.Presence.Events {
			if e.Sender == alice.UserID {
				sawAlice = e.Content.Raw["presence"] == "unavailable" && e.Content.Raw["status_msg"] == "in surgery"
			}
		}
		if !sawAlice {
			t.Fatalf("alice's presence missing: %+v", r.Presence.Events)
		}
		p, err := bob.c.GetPresence(ctx, alice.UserID)
		if err != nil || p.Presence != event.PresenceUnavailable || p.StatusMsg != "in surgery" {
			t.Fatalf("GET presence: %+v, %v", p, err)
		}
		tags, err := bob.c.GetTags(ctx, room.RoomID)
		if err != nil || len(tags.Tags) != 1 {
			t.Fatalf("tags: %+v, %v", tags, err)
		}
		// Typing stops; the next sync says so.
		if _, err := alice.c.UserTyping(ctx, room.RoomID, false, 0); err != nil {
			t.Fatal(err)
		}
		r2 := syncWith(t, bob.c, mautrix.ReqSync{Since: r.NextBatch, SetPresence: event.PresenceOffline})
		stopped := false
		for _, e := range r2.Rooms.Join[room.RoomID].Ephemeral.Events {
			if e.Type.Type == "m.typing" {
				ids, _ := e.Content.Raw["user_ids"].([]any)
				stopped = len(ids) == 0
			}
		}
		if !stopped {
			t.Fatal("typing stop not synced")
		}
	})
}
