package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// roomUser is a registered account with a mautrix client.
type roomUser struct {
	session
	c *mautrix.Client
}

func newRoomUser(t *testing.T, srv *testserver.Server, localpart string) roomUser {
	t.Helper()
	s := registerDummy(t, srv, localpart, newPassword(), "room tests")
	return roomUser{session: s, c: s.client(t, srv)}
}

func roomPath(roomID id.RoomID, rest string) string {
	return clientPrefix + "/rooms/" + url.PathEscape(string(roomID)) + rest
}

// stateEvent is a client event as GET /state returns it.
type stateEvent struct {
	Type     string         `json:"type"`
	StateKey *string        `json:"state_key"`
	Sender   string         `json:"sender"`
	EventID  string         `json:"event_id"`
	RoomID   string         `json:"room_id"`
	Content  map[string]any `json:"content"`
}

// roomState reads GET /rooms/{roomId}/state as "type|state_key" → event.
func roomState(t *testing.T, srv *testserver.Server, token string, roomID id.RoomID) map[string]stateEvent {
	t.Helper()
	r := srv.Do(t, "GET", roomPath(roomID, "/state"), token, nil)
	wantResp(t, "GET state", r, 200)
	var evs []stateEvent
	if err := json.Unmarshal(r.Body, &evs); err != nil {
		t.Fatalf("GET state: not a list of events: %v: %s", err, truncate(r.Body))
	}
	out := map[string]stateEvent{}
	for _, e := range evs {
		if e.StateKey == nil {
			t.Fatalf("state event without state_key: %+v", e)
		}
		if e.RoomID != string(roomID) {
			t.Fatalf("state event of another room: %+v", e)
		}
		key := e.Type + "|" + *e.StateKey
		if _, dup := out[key]; dup {
			t.Fatalf("state lists %s twice", key)
		}
		out[key] = e
	}
	return out
}

// jsonInt reads a JSON number decoded into any as an int64.
func jsonInt(v any) (int64, bool) {
	f, ok := v.(float64)
	return int64(f), ok
}

// userLevel is a user's power level from power_levels content and the
// create event: v12 creators are above every level.
func userLevel(pl map[string]any, create stateEvent, version string, user id.UserID) int64 {
	if version == "12" {
		if create.Sender == string(user) {
			return 1 << 62
		}
		if extra, ok := create.Content["additional_creators"].([]any); ok && slices.Contains(extra, any(string(user))) {
			return 1 << 62
		}
	}
	if users, ok := pl["users"].(map[string]any); ok {
		if l, ok := jsonInt(users[string(user)]); ok {
			return l
		}
	}
	l, _ := jsonInt(pl["users_default"])
	return l
}

// TestCreateRoomPresets checks that each createRoom preset — named, or
// implied by visibility — yields exactly the state the spec's table gives,
// in room versions 11 and 12: the join rule, history visibility and guest
// access of the table, the creator joined, invitees invited, power levels
// where trusted_private_chat invitees share the creator's level (v12: as
// additional creators) and the others do not, and nothing else.
func TestCreateRoomPresets(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")

		type presetRow struct {
			joinRule, history, guest string
			inviteeAtCreator         bool
		}
		table := map[string]presetRow{ // the spec's createRoom table
			"private_chat":         {"invite", "shared", "can_join", false},
			"trusted_private_chat": {"invite", "shared", "can_join", true},
			"public_chat":          {"public", "shared", "forbidden", false},
		}
		for _, version := range []string{"11", "12"} {
			for _, tc := range []struct {
				name, preset, visibility, want string
				direct                         bool
			}{
				{"private_chat", "private_chat", "", "private_chat", false},
				{"trusted_private_chat", "trusted_private_chat", "", "trusted_private_chat", true},
				{"public_chat", "public_chat", "", "public_chat", false},
				{"visibility public implies public_chat", "", "public", "public_chat", false},
				{"visibility private implies private_chat", "", "private", "private_chat", false},
				{"no preset, no visibility: private_chat", "", "", "private_chat", false},
				{"preset wins over visibility", "private_chat", "public", "private_chat", false},
			} {
				t.Run("v"+version+"/"+tc.name, func(t *testing.T) {
					resp, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{
						Preset: tc.preset, Visibility: tc.visibility, Invite: []id.UserID{bob.UserID},
						RoomVersion: id.RoomVersion(version), IsDirect: tc.direct,
					})
					if err != nil {
						t.Fatalf("createRoom: %v", err)
					}
					row := table[tc.want]
					st := roomState(t, srv, alice.Token, resp.RoomID)
					keys := slices.Sorted(maps.Keys(st))
					want := []string{"m.room.create|", "m.room.guest_access|", "m.room.history_visibility|", "m.room.join_rules|",
						"m.room.member|" + string(alice.UserID), "m.room.member|" + string(bob.UserID), "m.room.power_levels|"}
					if !slices.Equal(keys, want) {
						t.Fatalf("state keys %v, want exactly %v", keys, want)
					}
					for key, want := range map[string][2]string{
						"m.room.join_rules|":                    {"join_rule", row.joinRule},
						"m.room.history_visibility|":            {"history_visibility", row.history},
						"m.room.guest_access|":                  {"guest_access", row.guest},
						"m.room.member|" + string(alice.UserID): {"membership", "join"},
						"m.room.member|" + string(bob.UserID):   {"membership", "invite"},
						"m.room.create|":                        {"room_version", version},
					} {
						if got := st[key].Content[want[0]]; got != want[1] {
							t.Errorf("%s %s = %v, want %q", key, want[0], got, want[1])
						}
					}
					if got := st["m.room.member|"+string(bob.UserID)].Content["is_direct"] == true; got != tc.direct {
						t.Errorf("invite is_direct = %v, want %v", got, tc.direct)
					}
					create, pl := st["m.room.create|"], st["m.room.power_levels|"].Content
					if create.Sender != string(alice.UserID) {
						t.Errorf("create sender %s", create.Sender)
					}
					creatorLevel := userLevel(pl, create, version, alice.UserID)
					bobLevel := userLevel(pl, create, version, bob.UserID)
					stateDefault, _ := jsonInt(pl["state_default"])
					if creatorLevel < 100 || creatorLevel < stateDefault {
						t.Errorf("creator level %d (state_default %d)", creatorLevel, stateDefault)
					}
					if row.inviteeAtCreator != (bobLevel == creatorLevel) {
						t.Errorf("invitee level %d, creator %d; trusted_private_chat gives invitees the creator's level, others not", bobLevel, creatorLevel)
					}
					users, _ := pl["users"].(map[string]any)
					events, _ := pl["events"].(map[string]any)
					tomb, _ := jsonInt(events["m.room.tombstone"])
					if version == "12" {
						// Creators are never listed in users, and tombstone
						// must sit above state_default.
						if _, listed := users[string(alice.UserID)]; listed {
							t.Errorf("v12 power levels list the creator: %v", users)
						}
						if tomb <= stateDefault {
							t.Errorf("v12 m.room.tombstone level %d not above state_default %d", tomb, stateDefault)
						}
						extra, _ := create.Content["additional_creators"].([]any)
						if row.inviteeAtCreator != slices.Contains(extra, any(string(bob.UserID))) {
							t.Errorf("additional_creators = %v", extra)
						}
					} else if l, _ := jsonInt(users[string(alice.UserID)]); l != 100 {
						t.Errorf("v%s creator level in users = %v", version, users)
					}
				})
			}
		}

		// Options other than the preset: name and topic override
		// initial_state, the alias becomes canonical, creation_content
		// keys land in the create event, the override applies last.
		name := "Surgery"
		resp, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Name: name, Topic: "Theatre list", RoomAliasName: "surgery",
			CreationContent: map[string]any{"m.federate": false},
			InitialState: []*event.Event{
				{Type: event.StateRoomName, Content: event.Content{Raw: map[string]any{"name": "overridden"}}},
				{Type: event.NewEventType("chat.myelin.department"), StateKey: ptr("surgery"), Content: event.Content{Raw: map[string]any{"hours": "8-18"}}},
				{Type: event.StateHistoryVisibility, Content: event.Content{Raw: map[string]any{"history_visibility": "joined"}}},
			},
			PowerLevelOverride: &event.PowerLevelsEventContent{EventsDefault: 20, Users: map[id.UserID]int{bob.UserID: 30}},
		})
		if err != nil {
			t.Fatalf("createRoom with options: %v", err)
		}
		st := roomState(t, srv, alice.Token, resp.RoomID)
		for key, want := range map[string][2]any{
			"m.room.name|":                   {"name", name},
			"m.room.topic|":                  {"topic", "Theatre list"},
			"m.room.canonical_alias|":        {"alias", "#surgery:" + testserver.ServerName},
			"m.room.create|":                 {"m.federate", false},
			"chat.myelin.department|surgery": {"hours", "8-18"},
			"m.room.history_visibility|":     {"history_visibility", "joined"},
			"m.room.power_levels|":           {"events_default", 20.0},
			"m.room.join_rules|":             {"join_rule", "invite"},
		} {
			if got := st[key].Content[want[0].(string)]; got != want[1] {
				t.Errorf("%s %s = %v, want %v", key, want[0], got, want[1])
			}
		}
		if users := st["m.room.power_levels|"].Content["users"].(map[string]any); users[string(bob.UserID)] != 30.0 {
			t.Errorf("override users = %v", users)
		}
		res, err := alice.c.ResolveAlias(ctx, id.RoomAlias("#surgery:"+testserver.ServerName))
		if err != nil || res.RoomID != resp.RoomID {
			t.Fatalf("alias resolves to %v, %v", res, err)
		}
		_, err = alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomVersion: "3"})
		wantMatrixErr(t, "createRoom in version 3", err, 400, "M_UNSUPPORTED_ROOM_VERSION")
	})
}

func ptr[T any](v T) *T { return &v }

// setPowerLevels replaces a room's m.room.power_levels content after
// changing it with edit.
func setPowerLevels(t *testing.T, u roomUser, roomID id.RoomID, edit func(pl map[string]any)) {
	t.Helper()
	ctx := context.Background()
	var pl map[string]any
	if err := u.c.StateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatalf("read power levels: %v", err)
	}
	edit(pl)
	if _, err := u.c.SendStateEvent(ctx, roomID, event.StatePowerLevels, "", pl); err != nil {
		t.Fatalf("set power levels %v: %v", pl, err)
	}
}

// TestPowerLevelsDecideWhoSends changes events_default, events,
// state_default, users and users_default and checks who may send after
// each change — a plain user refused once events_default is 50.
func TestPowerLevelsDecideWhoSends(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := room.RoomID
		if _, err := bob.c.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		text := map[string]any{"msgtype": "m.text", "body": "hi"}
		sends := func(u roomUser, typ string) error {
			_, err := u.c.SendMessageEvent(ctx, roomID, event.NewEventType(typ), text)
			return err
		}
		setsTopic := func(u roomUser) error {
			_, err := u.c.SendStateEvent(ctx, roomID, event.StateTopic, "", map[string]any{"topic": "t " + u.c.TxnID()})
			return err
		}
		allowed := func(what string, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: refused: %v", what, err)
			}
		}
		refused := func(what string, err error) {
			t.Helper()
			wantMatrixErr(t, what, err, 403, "M_FORBIDDEN")
		}

		allowed("bob sends at events_default 0", sends(bob, "m.room.message"))
		refused("bob sets the topic at state_default 50", setsTopic(bob))

		setPowerLevels(t, alice, roomID, func(pl map[string]any) { pl["events_default"] = 50 })
		refused("bob sends at events_default 50", sends(bob, "m.room.message"))
		refused("bob sends another type at events_default 50", sends(bob, "m.reaction"))
		allowed("alice (creator) sends at events_default 50", sends(alice, "m.room.message"))

		setPowerLevels(t, alice, roomID, func(pl map[string]any) {
			pl["users"].(map[string]any)[string(bob.UserID)] = 50
		})
		allowed("bob at 50 sends", sends(bob, "m.room.message"))
		allowed("bob at 50 sets the topic at state_default 50", setsTopic(bob))

		setPowerLevels(t, alice, roomID, func(pl map[string]any) {
			pl["events"].(map[string]any)["m.room.message"] = 75
			pl["state_default"] = 60
		})
		refused("bob at 50 sends m.room.message at its level 75", sends(bob, "m.room.message"))
		allowed("bob at 50 sends m.reaction at events_default 50", sends(bob, "m.reaction"))
		refused("bob at 50 sets the topic at state_default 60", setsTopic(bob))

		setPowerLevels(t, alice, roomID, func(pl map[string]any) {
			delete(pl["users"].(map[string]any), string(bob.UserID))
		})
		refused("bob back at users_default 0 sends m.reaction", sends(bob, "m.reaction"))

		setPowerLevels(t, alice, roomID, func(pl map[string]any) { pl["users_default"] = 60 })
		allowed("bob at users_default 60 sets the topic", setsTopic(bob))
		allowed("bob at users_default 60 sends m.reaction", sends(bob, "m.reaction"))
		refused("bob at 60 sends m.room.message at 75", sends(bob, "m.room.message"))
		// Power levels themselves need 100: bob may not raise himself.
		_, err = bob.c.SendStateEvent(ctx, roomID, event.StatePowerLevels, "", map[string]any{"users_default": 100})
		refused("bob edits power levels", err)
	})
}

// TestSendSurvivesKill sends with a transaction ID, kills the server with
// SIGKILL, restarts it and sends the same transaction again: the same
// event_id comes back and the room holds the event once.
func TestSendSurvivesKill(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		content := map[string]any{"msgtype": "m.text", "body": "Rex: vaccination due"}
		send := func(txn string) id.EventID {
			t.Helper()
			resp, err := alice.c.SendMessageEvent(ctx, room.RoomID, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: txn})
			if err != nil {
				t.Fatalf("send %s: %v", txn, err)
			}
			return resp.EventID
		}
		first := send("vacc-1")
		if again := send("vacc-1"); again != first {
			t.Fatalf("retry before the kill: %s, first %s", again, first)
		}
		srv.Kill()
		srv.Restart()
		if again := send("vacc-1"); again != first {
			t.Fatalf("retry after kill -9: %s, first %s", again, first)
		}
		second := send("vacc-2")
		if second == first {
			t.Fatal("a new transaction ID returned the old event")
		}
		ev, err := alice.c.GetEvent(ctx, room.RoomID, first)
		if err != nil || ev.Content.Raw["body"] != content["body"] {
			t.Fatalf("event after restart: %v %v", ev, err)
		}
		if got := countMessages(t, srv, alice.Token, room.RoomID, "Rex: vaccination due"); got != 2 {
			t.Fatalf("the room holds %d copies of the two sends, want 2 (one per transaction ID)", got)
		}
	})
}

// countMessages counts the room's timeline events whose body is body, by
// paging GET /messages backwards from the end.
func countMessages(t *testing.T, srv *testserver.Server, token string, roomID id.RoomID, body string) int {
	t.Helper()
	n, from := 0, ""
	for range 100 {
		q := url.Values{"dir": {"b"}, "limit": {"100"}}
		if from != "" {
			q.Set("from", from)
		}
		r := srv.Do(t, "GET", roomPath(roomID, "/messages?"+q.Encode()), token, nil)
		wantResp(t, "GET messages", r, 200)
		var page struct {
			Chunk []struct {
				Content map[string]any `json:"content"`
			} `json:"chunk"`
			End string `json:"end"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatalf("GET messages: %v", err)
		}
		for _, e := range page.Chunk {
			if e.Content["body"] == body {
				n++
			}
		}
		if page.End == "" || len(page.Chunk) == 0 {
			return n
		}
		from = page.End
	}
	t.Fatal("GET messages did not end after 100 pages")
	return n
}

// referenceHash is the shape of a v4+ event ID body: 43 characters of
// unpadded URL-safe base64 (a SHA-256 reference hash).
var referenceHash = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// TestRoomIDsAndUpgrade: a v12 room's ID is its create event's reference
// hash with the room sigil, and upgrading a room links old and new both
// ways: the old room's m.room.tombstone names the new room, the new room's
// create event names the old room as predecessor; state and aliases move,
// members of the old room can follow.
func TestRoomIDsAndUpgrade(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")

		// v12 (the default): the room ID is derived from the create event.
		v12, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		create, err := alice.c.FullStateEvent(ctx, v12.RoomID, event.StateCreate, "")
		if err != nil {
			t.Fatal(err)
		}
		rid, eid := string(v12.RoomID), string(create.ID)
		if !strings.HasPrefix(rid, "!") || !strings.HasPrefix(eid, "$") || rid[1:] != eid[1:] || !referenceHash.MatchString(rid[1:]) {
			t.Fatalf("v12 room ID %s is not the create event ID %s with the ! sigil", rid, eid)
		}
		if create.Content.Raw["room_version"] != "12" {
			t.Fatalf("default room version = %v", create.Content.Raw["room_version"])
		}
		// Two rooms created alike still differ (the create event carries
		// its timestamp and a fresh signature).
		other, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil || other.RoomID == v12.RoomID {
			t.Fatalf("second room %v %v", other, err)
		}
		// v11 room IDs keep the server name.
		v11, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: "11",
			Name: "Reception", Topic: "Front desk", RoomAliasName: "reception"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(string(v11.RoomID), ":"+testserver.ServerName) {
			t.Fatalf("v11 room ID %s lacks the server name", v11.RoomID)
		}
		if _, err := bob.c.JoinRoomByID(ctx, v11.RoomID); err != nil {
			t.Fatal(err)
		}
		sent, err := alice.c.SendText(ctx, v11.RoomID, "before the upgrade")
		if err != nil {
			t.Fatal(err)
		}

		// bob (level 0) may not upgrade; alice may.
		// mautrix has no upgrade call; this is the request Element sends.
		upgrade := func(u roomUser, roomID id.RoomID, version string) *testserver.Response {
			return srv.DoJSON(t, "POST", roomPath(roomID, "/upgrade"), u.Token, map[string]any{"new_version": version})
		}
		wantResp(t, "bob upgrades", upgrade(bob, v11.RoomID, "12"), 403, "M_FORBIDDEN")
		wantResp(t, "upgrade to 8", upgrade(alice, v11.RoomID, "8"), 400, "M_UNSUPPORTED_ROOM_VERSION")
		up := upgrade(alice, v11.RoomID, "12")
		wantResp(t, "upgrade", up, 200)
		newID := id.RoomID(up.String("replacement_room"))
		if newID == v11.RoomID || newID == "" {
			t.Fatalf("replacement room %q", newID)
		}

		// Old → new: the tombstone.
		var tomb map[string]any
		if err := alice.c.StateEvent(ctx, v11.RoomID, event.StateTombstone, "", &tomb); err != nil {
			t.Fatalf("tombstone: %v", err)
		}
		if tomb["replacement_room"] != string(newID) {
			t.Fatalf("tombstone = %v, want replacement_room %s", tomb, newID)
		}
		// New → old: the predecessor, and the new ID is again the create
		// event's hash (v12).
		newCreate, err := alice.c.FullStateEvent(ctx, newID, event.StateCreate, "")
		if err != nil {
			t.Fatal(err)
		}
		pred, _ := newCreate.Content.Raw["predecessor"].(map[string]any)
		if pred["room_id"] != string(v11.RoomID) || newCreate.Content.Raw["room_version"] != "12" {
			t.Fatalf("new create = %v", newCreate.Content.Raw)
		}
		if pe, ok := pred["event_id"].(string); ok && !strings.HasPrefix(pe, "$") {
			t.Fatalf("predecessor event_id %q", pe)
		}
		if string(newID)[1:] != string(newCreate.ID)[1:] {
			t.Fatalf("upgraded room ID %s is not its create event %s", newID, newCreate.ID)
		}
		if newCreate.Sender != alice.UserID {
			t.Fatalf("new room's creator %s", newCreate.Sender)
		}

		// The state clients care about moved; the alias points to the new
		// room; the old room's members may join the new one (public).
		st := roomState(t, srv, alice.Token, newID)
		if st["m.room.name|"].Content["name"] != "Reception" || st["m.room.topic|"].Content["topic"] != "Front desk" ||
			st["m.room.join_rules|"].Content["join_rule"] != "public" {
			t.Fatalf("state not carried over: %v", st)
		}
		res, err := alice.c.ResolveAlias(ctx, id.RoomAlias("#reception:"+testserver.ServerName))
		if err != nil || res.RoomID != newID {
			t.Fatalf("alias after upgrade = %v %v", res, err)
		}
		if _, err := bob.c.JoinRoomByID(ctx, newID); err != nil {
			t.Fatalf("bob follows the upgrade: %v", err)
		}
		// The old room stays readable (history) but ordinary members can no
		// longer talk there.
		if ev, err := bob.c.GetEvent(ctx, v11.RoomID, sent.EventID); err != nil || ev.Content.Raw["body"] != "before the upgrade" {
			t.Fatalf("old history: %v %v", ev, err)
		}
		_, err = bob.c.SendText(ctx, v11.RoomID, "still here?")
		wantMatrixErr(t, "bob sends in the replaced room", err, 403, "M_FORBIDDEN")
		// Upgrading again from the new room chains on.
		up2 := upgrade(alice, newID, "12")
		wantResp(t, "second upgrade", up2, 200)
		var tomb2 map[string]any
		if err := alice.c.StateEvent(ctx, newID, event.StateTombstone, "", &tomb2); err != nil || tomb2["replacement_room"] != up2.String("replacement_room") {
			t.Fatalf("second tombstone %v %v", tomb2, err)
		}
	})
}

// TestHistoryVisibilityOnReads checks that GET /event, /state and
// /members follow m.room.history_visibility: what a user may read depends
// on the setting in force when an event was sent and on their membership.
func TestHistoryVisibilityOnReads(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		eve := newRoomUser(t, srv, "eve")
		canRead := func(u roomUser, roomID id.RoomID, ev id.EventID) bool {
			t.Helper()
			r := srv.Do(t, "GET", roomPath(roomID, "/event/"+url.PathEscape(string(ev))), u.Token, nil)
			if r.Status == 404 && r.Errcode() == "M_NOT_FOUND" {
				return false
			}
			wantResp(t, "GET event", r, 200)
			return true
		}
		for _, tc := range []struct {
			visibility string
			// bob: invited after the first message, joins after the second.
			beforeInvite, whileInvited, afterJoin bool
			// eve never joins.
			outsider bool
		}{
			{"world_readable", true, true, true, true},
			{"shared", true, true, true, false},
			{"invited", false, true, true, false},
			{"joined", false, false, true, false},
		} {
			t.Run(tc.visibility, func(t *testing.T) {
				room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat",
					InitialState: []*event.Event{{Type: event.StateHistoryVisibility,
						Content: event.Content{Raw: map[string]any{"history_visibility": tc.visibility}}}}})
				if err != nil {
					t.Fatal(err)
				}
				m1, err := alice.c.SendText(ctx, room.RoomID, "before the invite")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := alice.c.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
					t.Fatal(err)
				}
				m2, err := alice.c.SendText(ctx, room.RoomID, "while bob is invited")
				if err != nil {
					t.Fatal(err)
				}
				// Before joining, an invitee reads no state or members,
				// unless anyone may.
				if r := srv.Do(t, "GET", roomPath(room.RoomID, "/members"), bob.Token, nil); tc.outsider {
					wantResp(t, "invitee reads world_readable members", r, 200)
				} else {
					wantResp(t, "invitee reads members", r, 403, "M_FORBIDDEN")
				}
				if _, err := bob.c.JoinRoomByID(ctx, room.RoomID); err != nil {
					t.Fatal(err)
				}
				m3, err := alice.c.SendText(ctx, room.RoomID, "after bob joined")
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range []struct {
					who  roomUser
					ev   id.EventID
					want bool
					what string
				}{
					{bob, m1.EventID, tc.beforeInvite, "bob reads a message from before his invite"},
					{bob, m2.EventID, tc.whileInvited, "bob reads a message from while he was invited"},
					{bob, m3.EventID, tc.afterJoin, "bob reads a message from after he joined"},
					{eve, m1.EventID, tc.outsider, "eve (never in the room) reads a message"},
					{alice, m1.EventID, true, "alice reads her own room"},
				} {
					if got := canRead(c.who, room.RoomID, c.ev); got != c.want {
						t.Errorf("%s: %v, want %v", c.what, got, c.want)
					}
				}
				// Outsiders read state only of world_readable rooms.
				r := srv.Do(t, "GET", roomPath(room.RoomID, "/state/m.room.history_visibility"), eve.Token, nil)
				if tc.outsider {
					wantResp(t, "outsider reads world_readable state", r, 200)
				} else {
					wantResp(t, "outsider reads state", r, 403, "M_FORBIDDEN")
				}
				// After leaving, bob reads the room as it was when he left.
				if _, err := bob.c.LeaveRoom(ctx, room.RoomID); err != nil {
					t.Fatal(err)
				}
				if _, err := alice.c.SendStateEvent(ctx, room.RoomID, event.StateRoomName, "", map[string]any{"name": "after bob left"}); err != nil {
					t.Fatal(err)
				}
				st := roomState(t, srv, bob.Token, room.RoomID)
				if _, ok := st["m.room.name|"]; ok && !tc.outsider {
					t.Errorf("bob sees state set after he left: %v", st["m.room.name|"].Content)
				}
				if st["m.room.member|"+string(bob.UserID)].Content["membership"] != "leave" {
					t.Errorf("bob's state after leaving lacks his leave: %v", st["m.room.member|"+string(bob.UserID)])
				}
			})
		}
	})
}
