package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// roomBadCase is one bad request to a room endpoint and the exact answer.
type roomBadCase struct {
	name   string
	method string
	path   string
	token  string // "" sends none
	body   []byte // nil sends none
	status int
	code   string
}

// TestRoomBadInputs sends every room, alias, directory and space endpoint
// what broken and hostile clients send — no token, wrong tokens, bodies
// that are not JSON, not objects, of the wrong types, too big; floats and
// out-of-range integers in event content; oversized events, types and
// state keys; malformed room, event, user and transaction IDs and
// aliases; unknown rooms; callers outside the room; semantic refusals —
// and checks the exact status and errcode (never a 5xx), then that
// nothing anyone can see changed.
func TestRoomBadInputs(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		alice := newRoomUser(t, srv, "alice")
		bob := newRoomUser(t, srv, "bob")
		mallory := newRoomUser(t, srv, "mallory")

		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Records",
			RoomAliasName: "records", Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.c.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		pub, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public", Name: "Lobby"})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := alice.c.SendText(ctx, room.RoomID, "weight 4.2 kg")
		if err != nil {
			t.Fatal(err)
		}
		before := observe(t, srv, []roomUser{alice, bob, mallory}, []id.RoomID{room.RoomID, pub.RoomID})

		cases := roomBadCases(alice, bob, mallory, room.RoomID, pub.RoomID, msg.EventID)
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s %s/%s", c.method, c.path, c.name), func(t *testing.T) {
				r := srv.Do(t, c.method, c.path, c.token, c.body)
				if r.Status >= 500 {
					t.Fatalf("server error %d: %s", r.Status, truncate(r.Body))
				}
				wantResp(t, c.name, r, c.status, c.code)
				if r.String("error") == "" {
					t.Errorf("error response without a message: %s", r.Body)
				}
				wantCORS(t, r)
			})
		}

		// Nothing any of it did is visible: the same rooms, state, members,
		// aliases and directory, and the message is intact.
		after := observe(t, srv, []roomUser{alice, bob, mallory}, []id.RoomID{room.RoomID, pub.RoomID})
		if after != before {
			t.Fatalf("bad requests changed what clients see:\nbefore: %s\nafter:  %s", before, after)
		}
		ev, err := bob.c.GetEvent(ctx, room.RoomID, msg.EventID)
		if err != nil || ev.Content.Raw["body"] != "weight 4.2 kg" {
			t.Fatalf("message after the bad requests: %v %v", ev, err)
		}
		t.Logf("%d bad requests, each with its exact status and errcode", len(cases))
	})
}

// observe renders what the users can see of the rooms: their joined rooms,
// each room's full state (event IDs and content), local aliases, the
// published directory. Equal renderings mean nothing visible changed.
func observe(t *testing.T, srv *testserver.Server, users []roomUser, rooms []id.RoomID) string {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		r := srv.Do(t, "GET", clientPrefix+"/joined_rooms", u.Token, nil)
		wantResp(t, "joined_rooms", r, 200)
		var jr struct {
			Rooms []string `json:"joined_rooms"`
		}
		_ = json.Unmarshal(r.Body, &jr)
		slices.Sort(jr.Rooms)
		fmt.Fprintf(&b, "%s:%v;", u.UserID, jr.Rooms)
	}
	for _, roomID := range rooms {
		st := roomState(t, srv, users[0].Token, roomID)
		for _, k := range slices.Sorted(mapKeys(st)) {
			c, _ := json.Marshal(st[k].Content)
			fmt.Fprintf(&b, "%s=%s %s;", k, st[k].EventID, c)
		}
		r := srv.Do(t, "GET", roomPath(roomID, "/aliases"), users[0].Token, nil)
		wantResp(t, "aliases", r, 200)
		b.Write(r.Body)
	}
	r := srv.Do(t, "GET", clientPrefix+"/publicRooms", "", nil)
	wantResp(t, "publicRooms", r, 200)
	b.Write(r.Body)
	return b.String()
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func roomBadCases(alice, bob, mallory roomUser, room, pub id.RoomID, msg id.EventID) []roomBadCase {
	const bogusToken = "myt_bm90aXNzdWVkYnl0aGlzc2VydmVyXzAwMDAwMA"
	host := testserver.ServerName
	rp := func(roomID id.RoomID, rest string) string { return roomPath(roomID, rest) }
	esc := url.PathEscape
	js := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		return b
	}
	unknown := id.RoomID("!unknown:" + host)
	ghost := "@ghost:" + host
	huge := []byte(`{"padding":"` + strings.Repeat("x", 70<<10) + `"}`)
	// Content just over the 65,536-byte event limit but under the body
	// limit: the event is what is too large.
	bigEvent := []byte(`{"body":"` + strings.Repeat("y", 65536) + `"}`)
	long := strings.Repeat("z", 256)
	send := rp(room, "/send/m.room.message/")
	msgPath := esc(string(msg))

	var cs []roomBadCase
	add := func(name, method, path, token string, body []byte, status int, code string) {
		cs = append(cs, roomBadCase{name, method, path, token, body, status, code})
	}

	// Every authenticated endpoint: no token, a token never issued.
	authed := []struct{ method, path string }{
		{"POST", clientPrefix + "/createRoom"},
		{"POST", rp(room, "/upgrade")},
		{"POST", clientPrefix + "/join/" + esc(string(room))},
		{"POST", rp(room, "/join")},
		{"POST", clientPrefix + "/knock/" + esc(string(room))},
		{"POST", rp(room, "/leave")},
		{"POST", rp(room, "/forget")},
		{"POST", rp(room, "/invite")},
		{"POST", rp(room, "/kick")},
		{"POST", rp(room, "/ban")},
		{"POST", rp(room, "/unban")},
		{"GET", clientPrefix + "/joined_rooms"},
		{"GET", rp(room, "/joined_members")},
		{"GET", rp(room, "/members")},
		{"PUT", send + "t1"},
		{"GET", rp(room, "/state")},
		{"GET", rp(room, "/state/m.room.name")},
		{"PUT", rp(room, "/state/m.room.name/")},
		{"PUT", rp(room, "/redact/"+msgPath+"/t1")},
		{"GET", rp(room, "/event/"+msgPath)},
		{"GET", "/_matrix/client/v1/rooms/" + esc(string(room)) + "/hierarchy"},
		{"PUT", clientPrefix + "/directory/room/" + esc("#new:"+host)},
		{"DELETE", clientPrefix + "/directory/room/" + esc("#records:"+host)},
		{"GET", rp(room, "/aliases")},
		{"PUT", clientPrefix + "/directory/list/room/" + esc(string(room))},
		{"POST", clientPrefix + "/publicRooms"},
	}
	for _, e := range authed {
		add("no token", e.method, e.path, "", []byte(`{}`), 401, "M_MISSING_TOKEN")
		add("token never issued", e.method, e.path, bogusToken, []byte(`{}`), 401, "M_UNKNOWN_TOKEN")
	}

	// Every JSON body: not JSON, not an object, over the body limit.
	bodies := []struct{ method, path string }{
		{"POST", clientPrefix + "/createRoom"},
		{"POST", rp(room, "/upgrade")},
		{"POST", clientPrefix + "/join/" + esc(string(pub))},
		{"POST", rp(pub, "/join")},
		{"POST", clientPrefix + "/knock/" + esc(string(room))},
		{"POST", rp(room, "/leave")},
		{"POST", rp(room, "/invite")},
		{"POST", rp(room, "/kick")},
		{"POST", rp(room, "/ban")},
		{"POST", rp(room, "/unban")},
		{"PUT", send + "t2"},
		{"PUT", rp(room, "/state/m.room.topic")},
		{"PUT", rp(room, "/state/chat.myelin.x/key")},
		{"PUT", rp(room, "/redact/"+msgPath+"/t3")},
		{"PUT", clientPrefix + "/directory/room/" + esc("#new:"+host)},
		{"PUT", clientPrefix + "/directory/list/room/" + esc(string(room))},
		{"POST", clientPrefix + "/publicRooms"},
	}
	for _, e := range bodies {
		add("not JSON", e.method, e.path, alice.Token, []byte("this is { not json"), 400, "M_NOT_JSON")
		add("JSON array", e.method, e.path, alice.Token, []byte(`[1,2]`), 400, "M_BAD_JSON")
		add("JSON string", e.method, e.path, alice.Token, []byte(`"x"`), 400, "M_BAD_JSON")
		add("over the body limit", e.method, e.path, alice.Token, huge, 413, "M_TOO_LARGE")
	}

	// Event content: canonical JSON only, and the size limits.
	for _, p := range []string{send + "c", rp(room, "/state/chat.myelin.x/k")} {
		for i, bad := range []string{`{"weight":4.2}`, `{"n":9007199254740992}`, `{"n":-9007199254740992}`, `{"n":1e3}`,
			`{"deep":{"list":[1,2.5]}}`, `{"n":1.0}`} {
			add("not canonical JSON "+bad, "PUT", fmt.Sprintf("%s%d", p, i), alice.Token, []byte(bad), 400, "M_BAD_JSON")
		}
		add("NaN", "PUT", p+"nan", alice.Token, []byte(`{"n":NaN}`), 400, "M_NOT_JSON")
		add("event over 65536 bytes", "PUT", p+"big", alice.Token, bigEvent, 413, "M_TOO_LARGE")
	}
	add("event type over 255 bytes", "PUT", rp(room, "/send/"+long+"/t4"), alice.Token, []byte(`{}`), 413, "M_TOO_LARGE")
	add("state type over 255 bytes", "PUT", rp(room, "/state/"+long+"/"), alice.Token, []byte(`{}`), 413, "M_TOO_LARGE")
	add("state_key over 255 bytes", "PUT", rp(room, "/state/chat.myelin.x/"+long), alice.Token, []byte(`{}`), 413, "M_TOO_LARGE")
	add("transaction ID over 255 bytes", "PUT", send+long, alice.Token, []byte(`{}`), 400, "M_INVALID_PARAM")
	add("redaction through send without redacts", "PUT", rp(room, "/send/m.room.redaction/t5"), alice.Token, []byte(`{}`), 400, "M_BAD_JSON")

	// Malformed IDs in paths and bodies.
	for _, bad := range []string{"notaroom", "!", "!:" + host, "!local:", "#records:" + host, "@alice:" + host} {
		add("malformed room ID "+bad, "PUT", rp(id.RoomID(bad), "/send/m.room.message/t6"), alice.Token, []byte(`{}`), 400, "M_INVALID_PARAM")
		add("malformed room ID "+bad, "GET", rp(id.RoomID(bad), "/state"), alice.Token, nil, 400, "M_INVALID_PARAM")
	}
	for _, bad := range []string{"notaroom", "!", "@alice:" + host} {
		add("neither room ID nor alias "+bad, "POST", clientPrefix+"/join/"+esc(bad), alice.Token, []byte(`{}`), 400, "M_INVALID_PARAM")
		add("neither room ID nor alias "+bad, "POST", clientPrefix+"/knock/"+esc(bad), alice.Token, []byte(`{}`), 400, "M_INVALID_PARAM")
	}
	add("malformed alias", "POST", clientPrefix+"/join/"+esc("#nodomain"), alice.Token, []byte(`{}`), 400, "M_INVALID_PARAM")
	add("malformed event ID", "GET", rp(room, "/event/notanevent"), alice.Token, nil, 400, "M_INVALID_PARAM")
	add("malformed event ID", "PUT", rp(room, "/redact/notanevent/t7"), alice.Token, []byte(`{}`), 400, "M_INVALID_PARAM")
	for _, op := range []string{"invite", "kick", "ban", "unban"} {
		add("no user_id", "POST", rp(room, "/"+op), alice.Token, []byte(`{"reason":"x"}`), 400, "M_MISSING_PARAM")
		add("user_id not a string", "POST", rp(room, "/"+op), alice.Token, []byte(`{"user_id":5}`), 400, "M_BAD_JSON")
		add("user_id not a user ID", "POST", rp(room, "/"+op), alice.Token, js(map[string]any{"user_id": "bob"}), 400, "M_INVALID_PARAM")
		add("reason not a string", "POST", rp(room, "/"+op), alice.Token, js(map[string]any{"user_id": string(bob.UserID), "reason": 5}), 400, "M_BAD_JSON")
		add("unknown room", "POST", rp(unknown, "/"+op), alice.Token, js(map[string]any{"user_id": string(bob.UserID)}), 403, "M_FORBIDDEN")
		add("caller not in the room", "POST", rp(room, "/"+op), mallory.Token, js(map[string]any{"user_id": string(bob.UserID)}), 403, "M_FORBIDDEN")
	}
	add("reason not a string", "POST", rp(pub, "/join"), mallory.Token, []byte(`{"reason":5}`), 400, "M_BAD_JSON")
	add("reason not a string", "POST", rp(room, "/leave"), bob.Token, []byte(`{"reason":[]}`), 400, "M_BAD_JSON")
	add("reason not a string", "PUT", rp(room, "/redact/"+msgPath+"/t8"), alice.Token, []byte(`{"reason":5}`), 400, "M_BAD_JSON")

	// Unknown rooms: 404 where the spec's endpoint knows "not found", 403
	// where it only knows "not a member".
	add("unknown room", "PUT", rp(unknown, "/send/m.room.message/t9"), alice.Token, []byte(`{}`), 404, "M_NOT_FOUND")
	add("unknown room", "PUT", rp(unknown, "/state/m.room.topic"), alice.Token, []byte(`{"topic":"x"}`), 404, "M_NOT_FOUND")
	add("unknown room", "PUT", rp(unknown, "/redact/"+msgPath+"/t10"), alice.Token, []byte(`{}`), 404, "M_NOT_FOUND")
	add("unknown room", "GET", rp(unknown, "/event/"+msgPath), alice.Token, nil, 404, "M_NOT_FOUND")
	add("unknown room", "POST", rp(unknown, "/join"), alice.Token, []byte(`{}`), 404, "M_NOT_FOUND")
	add("unknown room", "POST", clientPrefix+"/join/"+esc(string(unknown)), alice.Token, []byte(`{}`), 404, "M_NOT_FOUND")
	add("unknown alias", "POST", clientPrefix+"/join/"+esc("#nothing:"+host), alice.Token, []byte(`{}`), 404, "M_NOT_FOUND")
	add("unknown room", "POST", clientPrefix+"/knock/"+esc(string(unknown)), alice.Token, []byte(`{}`), 404, "M_NOT_FOUND")
	add("unknown room", "POST", rp(unknown, "/forget"), alice.Token, nil, 404, "M_NOT_FOUND")
	add("unknown room", "POST", rp(unknown, "/leave"), alice.Token, []byte(`{}`), 403, "M_FORBIDDEN")
	add("unknown room", "GET", rp(unknown, "/state"), alice.Token, nil, 403, "M_FORBIDDEN")
	add("unknown room", "GET", rp(unknown, "/state/m.room.name"), alice.Token, nil, 403, "M_FORBIDDEN")
	add("unknown room", "GET", rp(unknown, "/members"), alice.Token, nil, 403, "M_FORBIDDEN")
	add("unknown room", "GET", rp(unknown, "/joined_members"), alice.Token, nil, 403, "M_FORBIDDEN")
	add("unknown room", "GET", rp(unknown, "/aliases"), alice.Token, nil, 403, "M_FORBIDDEN")
	add("unknown room", "POST", rp(unknown, "/upgrade"), alice.Token, []byte(`{"new_version":"12"}`), 403, "M_FORBIDDEN")
	add("unknown room", "GET", "/_matrix/client/v1/rooms/"+esc(string(unknown))+"/hierarchy", alice.Token, nil, 403, "M_FORBIDDEN")
	add("unknown room", "GET", clientPrefix+"/directory/list/room/"+esc(string(unknown)), "", nil, 404, "M_NOT_FOUND")
	add("unknown room", "PUT", clientPrefix+"/directory/list/room/"+esc(string(unknown)), alice.Token, []byte(`{"visibility":"public"}`), 404, "M_NOT_FOUND")
	add("unknown room", "PUT", clientPrefix+"/directory/room/"+esc("#new:"+host), alice.Token, js(map[string]any{"room_id": string(unknown)}), 404, "M_NOT_FOUND")

	// Outside the room (mallory was never in it).
	add("not a member", "PUT", send+"m1", mallory.Token, []byte(`{"body":"hi"}`), 403, "M_FORBIDDEN")
	add("not a member", "PUT", rp(room, "/state/m.room.topic"), mallory.Token, []byte(`{"topic":"x"}`), 403, "M_FORBIDDEN")
	add("not a member", "GET", rp(room, "/state"), mallory.Token, nil, 403, "M_FORBIDDEN")
	add("not a member", "GET", rp(room, "/state/m.room.name/"), mallory.Token, nil, 403, "M_FORBIDDEN")
	add("not a member", "GET", rp(room, "/members"), mallory.Token, nil, 403, "M_FORBIDDEN")
	add("not a member", "GET", rp(room, "/joined_members"), mallory.Token, nil, 403, "M_FORBIDDEN")
	add("not a member", "GET", rp(room, "/aliases"), mallory.Token, nil, 403, "M_FORBIDDEN")
	add("not a member", "GET", rp(room, "/event/"+msgPath), mallory.Token, nil, 404, "M_NOT_FOUND")
	add("not a member", "PUT", rp(room, "/redact/"+msgPath+"/m2"), mallory.Token, []byte(`{}`), 403, "M_FORBIDDEN")
	add("not a member", "POST", rp(room, "/upgrade"), mallory.Token, []byte(`{"new_version":"12"}`), 403, "M_FORBIDDEN")
	add("not a member", "POST", rp(room, "/leave"), mallory.Token, []byte(`{}`), 403, "M_FORBIDDEN")
	add("not invited", "POST", rp(room, "/join"), mallory.Token, []byte(`{}`), 403, "M_FORBIDDEN")
	add("invite-only, not knockable", "POST", clientPrefix+"/knock/"+esc(string(room)), mallory.Token, []byte(`{}`), 403, "M_FORBIDDEN")
	add("never in the room", "POST", rp(room, "/forget"), mallory.Token, nil, 404, "M_NOT_FOUND")
	add("not allowed to publish", "PUT", clientPrefix+"/directory/list/room/"+esc(string(room)), mallory.Token, []byte(`{"visibility":"public"}`), 403, "M_FORBIDDEN")
	add("not allowed to delete the alias", "DELETE", clientPrefix+"/directory/room/"+esc("#records:"+host), mallory.Token, nil, 403, "M_FORBIDDEN")
	add("not allowed (level 0)", "PUT", rp(room, "/state/m.room.name"), bob.Token, []byte(`{"name":"mine"}`), 403, "M_FORBIDDEN")
	add("not allowed to redact others (level 0)", "PUT", rp(room, "/redact/"+msgPath+"/b1"), bob.Token, []byte(`{}`), 403, "M_FORBIDDEN")
	add("not allowed to upgrade (level 0)", "POST", rp(room, "/upgrade"), bob.Token, []byte(`{"new_version":"12"}`), 403, "M_FORBIDDEN")

	// State reads and filters.
	add("unset state", "GET", rp(room, "/state/m.room.topic"), alice.Token, nil, 404, "M_NOT_FOUND")
	add("unset state key", "GET", rp(room, "/state/m.room.member/"+esc(ghost)), alice.Token, nil, 404, "M_NOT_FOUND")
	add("unknown format", "GET", rp(room, "/state/m.room.name?format=xml"), alice.Token, nil, 400, "M_INVALID_PARAM")
	add("unknown membership filter", "GET", rp(room, "/members?membership=joined"), alice.Token, nil, 400, "M_INVALID_PARAM")
	add("unknown not_membership filter", "GET", rp(room, "/members?not_membership=x"), alice.Token, nil, 400, "M_INVALID_PARAM")
	add("malformed at token", "GET", rp(room, "/members?at=yesterday"), alice.Token, nil, 400, "M_INVALID_PARAM")
	add("unknown event", "GET", rp(room, "/event/"+esc("$nosuchevent")), alice.Token, nil, 404, "M_NOT_FOUND")
	add("event of another room", "GET", rp(pub, "/event/"+msgPath), alice.Token, nil, 404, "M_NOT_FOUND")
	add("unknown event", "PUT", rp(room, "/redact/"+esc("$nosuchevent")+"/t11"), alice.Token, []byte(`{}`), 404, "M_NOT_FOUND")

	// m.room.canonical_alias is validated.
	add("malformed canonical alias", "PUT", rp(room, "/state/m.room.canonical_alias"), alice.Token, js(map[string]any{"alias": "records"}), 400, "M_INVALID_PARAM")
	add("canonical alias of no room", "PUT", rp(room, "/state/m.room.canonical_alias"), alice.Token, js(map[string]any{"alias": "#nothing:" + host}), 400, "M_BAD_ALIAS")
	add("alt_aliases not strings", "PUT", rp(room, "/state/m.room.canonical_alias"), alice.Token, js(map[string]any{"alt_aliases": []any{1}}), 400, "M_INVALID_PARAM")

	// createRoom.
	cr := clientPrefix + "/createRoom"
	for _, c := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"unsupported room version", map[string]any{"room_version": "3"}, 400, "M_UNSUPPORTED_ROOM_VERSION"},
		{"unknown room version", map[string]any{"room_version": "banana"}, 400, "M_UNSUPPORTED_ROOM_VERSION"},
		{"room_version not a string", map[string]any{"room_version": 12}, 400, "M_BAD_JSON"},
		{"unknown preset", map[string]any{"preset": "party"}, 400, "M_INVALID_PARAM"},
		{"unknown visibility", map[string]any{"visibility": "hidden"}, 400, "M_INVALID_PARAM"},
		{"name not a string", map[string]any{"name": 5}, 400, "M_BAD_JSON"},
		{"topic not a string", map[string]any{"topic": false}, 400, "M_BAD_JSON"},
		{"invite not a list", map[string]any{"invite": "@bob:" + host}, 400, "M_BAD_JSON"},
		{"invite not a user ID", map[string]any{"invite": []string{"bob"}}, 400, "M_INVALID_PARAM"},
		{"invite an unknown user", map[string]any{"invite": []string{ghost}}, 404, "M_NOT_FOUND"},
		{"invite a remote user without federation", map[string]any{"invite": []string{"@vet:other.example"}}, 403, "M_FORBIDDEN"},
		{"invite_3pid", map[string]any{"invite_3pid": []any{map[string]any{"id_server": "is.example", "medium": "email", "address": "a@b.example"}}}, 400, "M_INVALID_PARAM"},
		{"is_direct not a boolean", map[string]any{"is_direct": "yes"}, 400, "M_BAD_JSON"},
		{"alias taken", map[string]any{"room_alias_name": "records"}, 400, "M_ROOM_IN_USE"},
		{"alias name malformed", map[string]any{"room_alias_name": "front desk"}, 400, "M_INVALID_PARAM"},
		{"creation_content not an object", map[string]any{"creation_content": []any{}}, 400, "M_BAD_JSON"},
		{"creation_content with a float", map[string]any{"creation_content": map[string]any{"x": 1.5}}, 400, "M_BAD_JSON"},
		{"initial_state not a list", map[string]any{"initial_state": map[string]any{}}, 400, "M_BAD_JSON"},
		{"initial_state without type", map[string]any{"initial_state": []any{map[string]any{"content": map[string]any{}}}}, 400, "M_BAD_JSON"},
		{"initial_state without content", map[string]any{"initial_state": []any{map[string]any{"type": "m.room.topic"}}}, 400, "M_BAD_JSON"},
		{"initial_state content a string", map[string]any{"initial_state": []any{map[string]any{"type": "m.room.topic", "content": "x"}}}, 400, "M_BAD_JSON"},
		{"initial_state with a float", map[string]any{"initial_state": []any{map[string]any{"type": "chat.myelin.x", "content": map[string]any{"w": 4.2}}}}, 400, "M_BAD_JSON"},
		{"power_level_content_override not an object", map[string]any{"power_level_content_override": 5}, 400, "M_BAD_JSON"},
		{"power_level_content_override with a huge int", map[string]any{"power_level_content_override": map[string]any{"ban": 1 << 60}}, 400, "M_BAD_JSON"},
		{"override that locks the creator out", map[string]any{"room_version": "11", "power_level_content_override": map[string]any{"users": map[string]any{}}}, 400, "M_INVALID_ROOM_STATE"},
	} {
		add(c.name, "POST", cr, alice.Token, js(c.body), c.status, c.code)
	}

	// upgrade, forget.
	add("no new_version", "POST", rp(room, "/upgrade"), alice.Token, []byte(`{}`), 400, "M_MISSING_PARAM")
	add("new_version not a string", "POST", rp(room, "/upgrade"), alice.Token, []byte(`{"new_version":12}`), 400, "M_BAD_JSON")
	add("unsupported new_version", "POST", rp(room, "/upgrade"), alice.Token, []byte(`{"new_version":"6"}`), 400, "M_UNSUPPORTED_ROOM_VERSION")
	add("additional_creators not user IDs", "POST", rp(room, "/upgrade"), alice.Token, []byte(`{"new_version":"12","additional_creators":["x"]}`), 400, "M_INVALID_PARAM")
	add("forget while joined", "POST", rp(room, "/forget"), alice.Token, nil, 400, "M_UNKNOWN")

	// Invites and other membership refusals.
	add("invite an unknown user", "POST", rp(room, "/invite"), alice.Token, js(map[string]any{"user_id": ghost}), 404, "M_NOT_FOUND")
	add("invite a remote user without federation", "POST", rp(room, "/invite"), alice.Token, js(map[string]any{"user_id": "@vet:other.example"}), 403, "M_FORBIDDEN")
	add("invite a member", "POST", rp(room, "/invite"), alice.Token, js(map[string]any{"user_id": string(bob.UserID)}), 403, "M_FORBIDDEN")
	add("unban someone not banned", "POST", rp(room, "/unban"), alice.Token, js(map[string]any{"user_id": string(bob.UserID)}), 403, "M_FORBIDDEN")
	add("kick someone not in the room", "POST", rp(room, "/kick"), alice.Token, js(map[string]any{"user_id": string(mallory.UserID)}), 403, "M_FORBIDDEN")
	add("kick the creator", "POST", rp(room, "/kick"), bob.Token, js(map[string]any{"user_id": string(alice.UserID)}), 403, "M_FORBIDDEN")

	// Aliases.
	dir := clientPrefix + "/directory/room/"
	add("alias without #", "PUT", dir+esc("records:"+host), alice.Token, js(map[string]any{"room_id": string(room)}), 400, "M_INVALID_PARAM")
	add("alias without domain", "PUT", dir+esc("#records"), alice.Token, js(map[string]any{"room_id": string(room)}), 400, "M_INVALID_PARAM")
	add("alias of another server", "PUT", dir+esc("#records:other.example"), alice.Token, js(map[string]any{"room_id": string(room)}), 400, "M_INVALID_PARAM")
	add("alias over 255 bytes", "PUT", dir+esc("#"+long+":"+host), alice.Token, js(map[string]any{"room_id": string(room)}), 400, "M_INVALID_PARAM")
	add("no room_id", "PUT", dir+esc("#new:"+host), alice.Token, []byte(`{}`), 400, "M_MISSING_PARAM")
	add("room_id not a string", "PUT", dir+esc("#new:"+host), alice.Token, []byte(`{"room_id":1}`), 400, "M_BAD_JSON")
	add("room_id malformed", "PUT", dir+esc("#new:"+host), alice.Token, js(map[string]any{"room_id": "records"}), 400, "M_INVALID_PARAM")
	add("alias exists", "PUT", dir+esc("#records:"+host), alice.Token, js(map[string]any{"room_id": string(pub)}), 409, "M_UNKNOWN")
	add("alias malformed", "GET", dir+esc("records"), "", nil, 400, "M_INVALID_PARAM")
	add("alias unknown", "GET", dir+esc("#nothing:"+host), "", nil, 404, "M_NOT_FOUND")
	add("alias unknown", "DELETE", dir+esc("#nothing:"+host), alice.Token, nil, 404, "M_NOT_FOUND")

	// The published directory.
	vis := clientPrefix + "/directory/list/room/"
	add("malformed room ID", "GET", vis+"records", "", nil, 400, "M_INVALID_PARAM")
	add("unknown visibility", "PUT", vis+esc(string(room)), alice.Token, []byte(`{"visibility":"hidden"}`), 400, "M_INVALID_PARAM")
	add("visibility not a string", "PUT", vis+esc(string(room)), alice.Token, []byte(`{"visibility":true}`), 400, "M_BAD_JSON")
	pr := clientPrefix + "/publicRooms"
	add("negative limit", "GET", pr+"?limit=-1", "", nil, 400, "M_INVALID_PARAM")
	add("limit not a number", "GET", pr+"?limit=ten", "", nil, 400, "M_INVALID_PARAM")
	add("unknown since token", "GET", pr+"?since=yesterday", "", nil, 400, "M_INVALID_PARAM")
	add("another server's directory", "GET", pr+"?server=other.example", "", nil, 400, "M_INVALID_PARAM")
	add("limit not a number", "POST", pr, alice.Token, []byte(`{"limit":"ten"}`), 400, "M_BAD_JSON")
	add("limit a float", "POST", pr, alice.Token, []byte(`{"limit":1.5}`), 400, "M_BAD_JSON")
	add("filter not an object", "POST", pr, alice.Token, []byte(`{"filter":[]}`), 400, "M_BAD_JSON")
	add("search term not a string", "POST", pr, alice.Token, []byte(`{"filter":{"generic_search_term":5}}`), 400, "M_BAD_JSON")
	add("unknown since token", "POST", pr, alice.Token, []byte(`{"since":"x"}`), 400, "M_INVALID_PARAM")

	// Spaces.
	hier := "/_matrix/client/v1/rooms/" + esc(string(room)) + "/hierarchy"
	add("limit zero", "GET", hier+"?limit=0", alice.Token, nil, 400, "M_INVALID_PARAM")
	add("max_depth negative", "GET", hier+"?max_depth=-1", alice.Token, nil, 400, "M_INVALID_PARAM")
	add("suggested_only not a boolean", "GET", hier+"?suggested_only=perhaps", alice.Token, nil, 400, "M_INVALID_PARAM")
	add("unknown from token", "GET", hier+"?from=next", alice.Token, nil, 400, "M_INVALID_PARAM")
	add("not a member of a private room", "GET", hier, mallory.Token, nil, 403, "M_FORBIDDEN")

	// Methods and paths that do not exist.
	add("wrong method", "GET", clientPrefix+"/createRoom", alice.Token, nil, 405, "M_UNRECOGNIZED")
	add("wrong method", "POST", send+"t12", alice.Token, []byte(`{}`), 405, "M_UNRECOGNIZED")
	add("wrong method", "POST", rp(room, "/state/m.room.name"), alice.Token, []byte(`{}`), 405, "M_UNRECOGNIZED")
	add("wrong method", "DELETE", rp(room, "/state/m.room.name/"), alice.Token, nil, 405, "M_UNRECOGNIZED")
	add("wrong method", "GET", rp(room, "/invite"), alice.Token, nil, 405, "M_UNRECOGNIZED")
	add("wrong method", "PUT", rp(room, "/event/"+msgPath), alice.Token, []byte(`{}`), 405, "M_UNRECOGNIZED")
	add("wrong method", "DELETE", clientPrefix+"/publicRooms", alice.Token, nil, 405, "M_UNRECOGNIZED")
	add("unknown path", "GET", rp(room, "/frobnicate"), alice.Token, nil, 404, "M_UNRECOGNIZED")
	add("send without a transaction ID", "PUT", rp(room, "/send/m.room.message"), alice.Token, []byte(`{}`), 404, "M_UNRECOGNIZED")
	add("unknown version prefix is not served", "POST", "/_matrix/client/r9/createRoom", alice.Token, []byte(`{}`), 404, "M_UNRECOGNIZED")
	return cs
}
