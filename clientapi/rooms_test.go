package clientapi

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"myelin/config"
)

// TestRoomFlow drives every room endpoint through the real router once,
// on both engines, checking what each answers and what it changed.
func TestRoomFlow(t *testing.T) {
	eachRoomEngine(t, nil, func(t *testing.T, s *roomServer) {
		alice, aliceID := s.user("alice")
		bob, bobID := s.user("bob")
		carol, carolID := s.user("carol")
		s.expect(s.do("PUT", v3+"/profile/"+esc(aliceID)+"/displayname", alice, map[string]any{"displayname": "Dr Alice"}), 200, "")

		// createRoom: a public room with a name, topic and alias.
		room := s.createRoom(alice, map[string]any{"preset": "public_chat", "name": "Front desk", "topic": "Walk-ins",
			"room_alias_name": "frontdesk", "visibility": "public"})
		if !strings.HasPrefix(room, "!") || strings.Contains(room, ":") {
			t.Fatalf("v12 room ID expected, got %s", room)
		}
		name := s.do("GET", roomPath(room, "/state/m.room.name/"), alice, nil)
		s.expect(name, 200, "")
		if name.str("name") != "Front desk" {
			t.Fatalf("name = %s", name.raw)
		}
		noSlash := s.do("GET", roomPath(room, "/state/m.room.name"), alice, nil)
		s.expect(noSlash, 200, "")
		if noSlash.raw != name.raw {
			t.Fatalf("with and without trailing slash differ: %s vs %s", name.raw, noSlash.raw)
		}
		full := s.do("GET", roomPath(room, "/state/m.room.topic/?format=event"), alice, nil)
		s.expect(full, 200, "")
		if full.str("type") != "m.room.topic" || full.str("sender") != aliceID || full.str("room_id") != room ||
			full.body["state_key"] != "" || !strings.HasPrefix(full.str("event_id"), "$") {
			t.Fatalf("format=event = %s", full.raw)
		}
		member := s.do("GET", roomPath(room, "/state/m.room.member/"+esc(aliceID)), alice, nil)
		s.expect(member, 200, "")
		if member.str("membership") != "join" || member.str("displayname") != "Dr Alice" {
			t.Fatalf("creator member event = %s", member.raw)
		}
		s.expect(s.do("GET", roomPath(room, "/state/m.room.member/"+esc(bobID)), alice, nil), 404, "M_NOT_FOUND")

		// Aliases resolve without a token; join by alias.
		res := s.do("GET", v3+"/directory/room/"+esc("#frontdesk:test.local"), "", nil)
		s.expect(res, 200, "")
		if res.str("room_id") != room || fmt.Sprint(res.body["servers"]) != "[test.local]" {
			t.Fatalf("resolve = %s", res.raw)
		}
		joined := s.do("POST", v3+"/join/"+esc("#frontdesk:test.local"), bob, nil)
		s.expect(joined, 200, "")
		if joined.str("room_id") != room {
			t.Fatalf("join by alias = %s", joined.raw)
		}
		jr := s.do("GET", v3+"/joined_rooms", bob, nil)
		s.expect(jr, 200, "")
		if fmt.Sprint(jr.body["joined_rooms"]) != "["+room+"]" {
			t.Fatalf("joined_rooms = %s", jr.raw)
		}
		jm := s.do("GET", roomPath(room, "/joined_members"), bob, nil)
		s.expect(jm, 200, "")
		joinedMap := jm.body["joined"].(map[string]any)
		if len(joinedMap) != 2 || joinedMap[aliceID].(map[string]any)["display_name"] != "Dr Alice" {
			t.Fatalf("joined_members = %s", jm.raw)
		}

		// send is idempotent per transaction ID; the event reads back.
		path := roomPath(room, "/send/m.room.message/txn1")
		first := s.do("PUT", path, bob, map[string]any{"msgtype": "m.text", "body": "hello"})
		s.expect(first, 200, "")
		again := s.do("PUT", path, bob, map[string]any{"msgtype": "m.text", "body": "hello"})
		s.expect(again, 200, "")
		if first.str("event_id") == "" || again.str("event_id") != first.str("event_id") {
			t.Fatalf("retry gave %s, first %s", again.raw, first.raw)
		}
		msgID := first.str("event_id")
		ev := s.do("GET", roomPath(room, "/event/"+esc(msgID)), alice, nil)
		s.expect(ev, 200, "")
		if ev.str("sender") != bobID || ev.body["content"].(map[string]any)["body"] != "hello" {
			t.Fatalf("event = %s", ev.raw)
		}
		// Only the sending device sees transaction_id.
		own := s.do("GET", roomPath(room, "/event/"+esc(msgID)), bob, nil)
		if own.body["unsigned"].(map[string]any)["transaction_id"] != "txn1" {
			t.Fatalf("sender's view lacks transaction_id: %s", own.raw)
		}
		if _, ok := ev.body["unsigned"].(map[string]any)["transaction_id"]; ok {
			t.Fatalf("other user sees transaction_id: %s", ev.raw)
		}

		// redact (txnId too): the content is gone, redacted_because is set.
		red := s.do("PUT", roomPath(room, "/redact/"+esc(msgID)+"/r1"), alice, map[string]any{"reason": "typo"})
		s.expect(red, 200, "")
		red2 := s.do("PUT", roomPath(room, "/redact/"+esc(msgID)+"/r1"), alice, map[string]any{"reason": "typo"})
		if red2.str("event_id") != red.str("event_id") {
			t.Fatalf("redact retry gave %s, first %s", red2.raw, red.raw)
		}
		ev = s.do("GET", roomPath(room, "/event/"+esc(msgID)), bob, nil)
		if len(ev.body["content"].(map[string]any)) != 0 || ev.body["unsigned"].(map[string]any)["redacted_because"] == nil {
			t.Fatalf("redacted event = %s", ev.raw)
		}

		// m.room.redaction through /send works in every room version (v1.18).
		second := s.do("PUT", roomPath(room, "/send/m.room.message/txn2"), bob, map[string]any{"msgtype": "m.text", "body": "oops"}).str("event_id")
		viaSend := s.do("PUT", roomPath(room, "/send/m.room.redaction/r2"), bob, map[string]any{"redacts": second, "reason": "mine"})
		s.expect(viaSend, 200, "")
		ev = s.do("GET", roomPath(room, "/event/"+esc(second)), alice, nil)
		if len(ev.body["content"].(map[string]any)) != 0 {
			t.Fatalf("redaction through /send did not redact: %s", ev.raw)
		}
		rev := s.do("GET", roomPath(room, "/event/"+esc(viaSend.str("event_id"))), alice, nil)
		if rev.str("type") != "m.room.redaction" || rev.str("redacts") != second || rev.body["content"].(map[string]any)["redacts"] != second {
			t.Fatalf("redaction event = %s", rev.raw)
		}

		// State PUT with and without the trailing slash; same content again
		// does not add an event.
		put := s.do("PUT", roomPath(room, "/state/m.room.name/"), alice, map[string]any{"name": "Reception"})
		s.expect(put, 200, "")
		put2 := s.do("PUT", roomPath(room, "/state/m.room.name"), alice, map[string]any{"name": "Reception"})
		if put2.str("event_id") != put.str("event_id") {
			t.Fatalf("unchanged state PUT added an event: %s vs %s", put2.raw, put.raw)
		}
		custom := s.do("PUT", roomPath(room, "/state/chat.myelin.desk/"+esc("a/b c")), alice, map[string]any{"open": true})
		s.expect(custom, 200, "")
		got := s.do("GET", roomPath(room, "/state/chat.myelin.desk/"+esc("a/b c")), bob, nil)
		if got.body["open"] != true {
			t.Fatalf("state with an escaped key = %s", got.raw)
		}
		// bob (level 0) may not change the name (state_default 50).
		s.expect(s.do("PUT", roomPath(room, "/state/m.room.name"), bob, map[string]any{"name": "mine"}), 403, "M_FORBIDDEN")

		state := s.stateList(room, bob)
		types := map[string]int{}
		for _, e := range state {
			types[e["type"].(string)]++
		}
		for typ, n := range map[string]int{"m.room.create": 1, "m.room.member": 2, "m.room.power_levels": 1, "m.room.join_rules": 1,
			"m.room.history_visibility": 1, "m.room.guest_access": 1, "m.room.name": 1, "m.room.topic": 1,
			"m.room.canonical_alias": 1, "chat.myelin.desk": 1} {
			if types[typ] != n {
				t.Errorf("state has %d %s, want %d (%v)", types[typ], typ, n, types)
			}
		}

		// invite / join / kick / ban / unban in a private room.
		priv := s.createRoom(alice, map[string]any{"preset": "private_chat"})
		s.expect(s.do("POST", roomPath(priv, "/join"), carol, map[string]any{}), 403, "M_FORBIDDEN")
		s.expect(s.do("POST", roomPath(priv, "/invite"), alice, map[string]any{"user_id": carolID, "reason": "welcome"}), 200, "")
		inv := s.do("GET", roomPath(priv, "/state/m.room.member/"+esc(carolID)), alice, nil)
		if inv.str("membership") != "invite" || inv.str("reason") != "welcome" {
			t.Fatalf("invite event = %s", inv.raw)
		}
		s.expect(s.do("POST", roomPath(priv, "/join"), carol, nil), 200, "")
		s.expect(s.do("POST", roomPath(priv, "/kick"), carol, map[string]any{"user_id": aliceID}), 403, "M_FORBIDDEN")
		s.expect(s.do("POST", roomPath(priv, "/kick"), alice, map[string]any{"user_id": carolID}), 200, "")
		s.expect(s.do("POST", roomPath(priv, "/ban"), alice, map[string]any{"user_id": carolID, "reason": "spam"}), 200, "")
		s.expect(s.do("POST", roomPath(priv, "/invite"), alice, map[string]any{"user_id": carolID}), 403, "M_FORBIDDEN")

		// /members with filters (the spec's "or" when both are given).
		membersOf := func(q string) []string {
			r := s.do("GET", roomPath(priv, "/members"+q), alice, nil)
			s.expect(r, 200, "")
			var out []string
			for _, e := range r.body["chunk"].([]any) {
				ev := e.(map[string]any)
				out = append(out, ev["state_key"].(string)+"="+ev["content"].(map[string]any)["membership"].(string))
			}
			sort.Strings(out)
			return out
		}
		if got := membersOf(""); !slices.Equal(got, []string{aliceID + "=join", carolID + "=ban"}) {
			t.Fatalf("members = %v", got)
		}
		if got := membersOf("?membership=ban"); !slices.Equal(got, []string{carolID + "=ban"}) {
			t.Fatalf("members ban = %v", got)
		}
		if got := membersOf("?not_membership=ban"); !slices.Equal(got, []string{aliceID + "=join"}) {
			t.Fatalf("members not ban = %v", got)
		}
		if got := membersOf("?membership=ban&not_membership=join"); !slices.Equal(got, []string{carolID + "=ban"}) {
			t.Fatalf("members ban or not join = %v", got)
		}
		if got := membersOf("?membership=join&not_membership=leave"); !slices.Equal(got, []string{aliceID + "=join", carolID + "=ban"}) {
			t.Fatalf("members join or not leave = %v", got)
		}
		if got := membersOf("?at=0"); len(got) != 0 {
			t.Fatalf("members at 0 = %v", got)
		}
		banned := s.rooms.Notifier().Position() // what a sync token taken now would carry
		s.expect(s.do("POST", roomPath(priv, "/unban"), alice, map[string]any{"user_id": carolID}), 200, "")
		if got := membersOf("?membership=leave"); !slices.Equal(got, []string{carolID + "=leave"}) {
			t.Fatalf("after unban = %v", got)
		}
		for _, at := range []string{fmt.Sprintf("s%d_a1_r2", banned), fmt.Sprintf("t%d", banned), fmt.Sprint(banned)} {
			if got := membersOf("?at=" + at); !slices.Equal(got, []string{aliceID + "=join", carolID + "=ban"}) {
				t.Fatalf("members at %s (before the unban) = %v", at, got)
			}
		}
		// carol has left: she reads the state as of her leaving, forgets.
		s.expect(s.do("GET", roomPath(priv, "/state/m.room.join_rules"), carol, nil), 200, "")
		s.expect(s.do("GET", roomPath(priv, "/joined_members"), carol, nil), 403, "M_FORBIDDEN")
		s.expect(s.do("POST", roomPath(priv, "/forget"), carol, nil), 200, "")
		s.expect(s.do("POST", roomPath(priv, "/forget"), alice, nil), 400, "M_UNKNOWN")

		// knock on a knock room; the knock is visible; leave withdraws it.
		knockRoom := s.createRoom(alice, map[string]any{"initial_state": []any{
			map[string]any{"type": "m.room.join_rules", "content": map[string]any{"join_rule": "knock"}}}})
		kn := s.do("POST", v3+"/knock/"+esc(knockRoom), carol, map[string]any{"reason": "let me in"})
		s.expect(kn, 200, "")
		if kn.str("room_id") != knockRoom {
			t.Fatalf("knock = %s", kn.raw)
		}
		s.expect(s.do("POST", v3+"/knock/"+esc(priv), carol, nil), 403, "M_FORBIDDEN")
		s.expect(s.do("POST", roomPath(knockRoom, "/leave"), carol, map[string]any{"reason": "never mind"}), 200, "")

		// Leaving: bob leaves the public room; his joined_rooms is empty.
		s.expect(s.do("POST", roomPath(room, "/leave"), bob, nil), 200, "")
		jr = s.do("GET", v3+"/joined_rooms", bob, nil)
		if fmt.Sprint(jr.body["joined_rooms"]) != "[]" {
			t.Fatalf("joined_rooms after leave = %s", jr.raw)
		}

		// Aliases: add, list, delete.
		s.expect(s.do("PUT", v3+"/directory/room/"+esc("#desk2:test.local"), alice, map[string]any{"room_id": room}), 200, "")
		s.expect(s.do("PUT", v3+"/directory/room/"+esc("#desk2:test.local"), alice, map[string]any{"room_id": room}), 409, "M_UNKNOWN")
		al := s.do("GET", roomPath(room, "/aliases"), alice, nil)
		s.expect(al, 200, "")
		if got := fmt.Sprint(al.body["aliases"]); got != "[#desk2:test.local #frontdesk:test.local]" && got != "[#frontdesk:test.local #desk2:test.local]" {
			t.Fatalf("aliases = %s", al.raw)
		}
		s.expect(s.do("DELETE", v3+"/directory/room/"+esc("#desk2:test.local"), bob, nil), 403, "M_FORBIDDEN")
		s.expect(s.do("DELETE", v3+"/directory/room/"+esc("#desk2:test.local"), alice, nil), 200, "")
		s.expect(s.do("GET", v3+"/directory/room/"+esc("#desk2:test.local"), "", nil), 404, "M_NOT_FOUND")

		// The published directory: createRoom's visibility published the
		// room; unpublish, republish (visibility defaults to public).
		vis := s.do("GET", v3+"/directory/list/room/"+esc(room), "", nil)
		if vis.str("visibility") != "public" {
			t.Fatalf("visibility = %s", vis.raw)
		}
		pub := s.do("GET", v3+"/publicRooms", "", nil)
		s.expect(pub, 200, "")
		chunk := pub.body["chunk"].([]any)
		if len(chunk) != 1 || chunk[0].(map[string]any)["name"] != "Reception" || chunk[0].(map[string]any)["num_joined_members"] != 1.0 {
			t.Fatalf("publicRooms = %s", pub.raw)
		}
		s.expect(s.do("PUT", v3+"/directory/list/room/"+esc(room), bob, map[string]any{"visibility": "private"}), 403, "M_FORBIDDEN")
		s.expect(s.do("PUT", v3+"/directory/list/room/"+esc(room), alice, map[string]any{"visibility": "private"}), 200, "")
		pub = s.do("GET", v3+"/publicRooms", "", nil)
		if len(pub.body["chunk"].([]any)) != 0 {
			t.Fatalf("unpublished room listed: %s", pub.raw)
		}
		s.expect(s.do("PUT", v3+"/directory/list/room/"+esc(room), alice, map[string]any{}), 200, "")
		s.expect(s.do("PUT", v3+"/directory/list/room/"+esc(priv), alice, map[string]any{"visibility": "public"}), 200, "")
		pf := s.do("POST", v3+"/publicRooms", bob, map[string]any{"filter": map[string]any{"generic_search_term": "recep"}})
		s.expect(pf, 200, "")
		if c := pf.body["chunk"].([]any); len(c) != 1 || c[0].(map[string]any)["room_id"] != room {
			t.Fatalf("filtered publicRooms = %s", pf.raw)
		}
		p1 := s.do("GET", v3+"/publicRooms?limit=1", "", nil)
		if len(p1.body["chunk"].([]any)) != 1 || p1.str("next_batch") == "" || p1.body["total_room_count_estimate"] != 2.0 {
			t.Fatalf("page 1 = %s", p1.raw)
		}
		p2 := s.do("POST", v3+"/publicRooms", bob, map[string]any{"limit": 1, "since": p1.str("next_batch")})
		if c := p2.body["chunk"].([]any); len(c) != 1 || c[0].(map[string]any)["room_id"] == p1.body["chunk"].([]any)[0].(map[string]any)["room_id"] ||
			p2.str("next_batch") != "" || p2.str("prev_batch") == "" {
			t.Fatalf("page 2 = %s", p2.raw)
		}
		spaces := s.do("POST", v3+"/publicRooms", bob, map[string]any{"filter": map[string]any{"room_types": []any{"m.space"}}})
		if len(spaces.body["chunk"].([]any)) != 0 {
			t.Fatalf("room_types m.space = %s", spaces.raw)
		}
		untyped := s.do("POST", v3+"/publicRooms", bob, map[string]any{"filter": map[string]any{"room_types": []any{nil}}})
		if len(untyped.body["chunk"].([]any)) != 2 {
			t.Fatalf("room_types [null] = %s", untyped.raw)
		}

		// upgrade: the new room links back; the old one has a tombstone.
		up := s.do("POST", roomPath(room, "/upgrade"), alice, map[string]any{"new_version": "11"})
		s.expect(up, 200, "")
		newRoom := up.str("replacement_room")
		tomb := s.do("GET", roomPath(room, "/state/m.room.tombstone"), alice, nil)
		if tomb.str("replacement_room") != newRoom {
			t.Fatalf("tombstone = %s", tomb.raw)
		}
		create := s.do("GET", roomPath(newRoom, "/state/m.room.create"), alice, nil)
		if pred, _ := create.body["predecessor"].(map[string]any); pred["room_id"] != room || create.str("room_version") != "11" {
			t.Fatalf("new room's create = %s", create.raw)
		}
		if r := s.do("GET", v3+"/directory/room/"+esc("#frontdesk:test.local"), "", nil); r.str("room_id") != newRoom {
			t.Fatalf("alias did not move: %s", r.raw)
		}
		s.expect(s.do("POST", roomPath(priv, "/upgrade"), carol, map[string]any{"new_version": "12"}), 403, "M_FORBIDDEN")
		s.expect(s.do("POST", roomPath(priv, "/upgrade"), alice, map[string]any{"new_version": "3"}), 400, "M_UNSUPPORTED_ROOM_VERSION")
	})
}

// TestRoomHierarchy walks a space with a sub-space, a private room the
// caller cannot see, a link with an invalid via, and an order.
func TestRoomHierarchy(t *testing.T) {
	eachRoomEngine(t, nil, func(t *testing.T, s *roomServer) {
		alice, _ := s.user("alice")
		bob, _ := s.user("bob")
		space := s.createRoom(alice, map[string]any{"preset": "public_chat", "name": "Clinic",
			"creation_content": map[string]any{"type": "m.space"}})
		sub := s.createRoom(alice, map[string]any{"preset": "public_chat", "name": "Surgery",
			"creation_content": map[string]any{"type": "m.space"}})
		a := s.createRoom(alice, map[string]any{"preset": "public_chat", "name": "A"})
		b := s.createRoom(alice, map[string]any{"preset": "public_chat", "name": "B"})
		hidden := s.createRoom(alice, map[string]any{"preset": "private_chat", "name": "Hidden"})
		restricted := s.createRoom(alice, map[string]any{"preset": "private_chat", "name": "Staff",
			"initial_state": []any{map[string]any{"type": "m.room.join_rules", "content": map[string]any{
				"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}}}}})
		link := func(parent, child string, content map[string]any) {
			s.expect(s.do("PUT", roomPath(parent, "/state/m.space.child/"+esc(child)), alice, content), 200, "")
			// Children without an order sort by their link's
			// origin_server_ts, then by room ID: links a millisecond
			// apart keep the order this test makes them in.
			time.Sleep(2 * time.Millisecond)
		}
		via := []any{"test.local"}
		link(space, b, map[string]any{"via": via})
		link(space, sub, map[string]any{"via": via, "order": "a", "suggested": true})
		link(space, hidden, map[string]any{"via": via})
		link(space, restricted, map[string]any{"via": via})
		link(space, "!gone:elsewhere.test", map[string]any{"via": []any{"elsewhere.test"}})
		link(space, a, map[string]any{"via": []any{}}) // no via: not a child
		link(sub, a, map[string]any{"via": via})
		link(sub, space, map[string]any{"via": via}) // a loop

		names := func(token, query string) ([]string, string) {
			r := s.do("GET", "/_matrix/client/v1/rooms/"+esc(space)+"/hierarchy"+query, token, nil)
			s.expect(r, 200, "")
			var out []string
			for _, e := range r.body["rooms"].([]any) {
				out = append(out, e.(map[string]any)["name"].(string))
			}
			return out, r.str("next_batch")
		}
		// bob is in no room: public rooms and the restricted room's
		// allow-list (space membership he lacks) decide.
		if got, _ := names(bob, ""); !slices.Equal(got, []string{"Clinic", "Surgery", "A", "B"}) {
			t.Fatalf("bob's hierarchy = %v", got)
		}
		s.expect(s.do("POST", roomPath(space, "/join"), bob, nil), 200, "")
		if got, _ := names(bob, ""); !slices.Equal(got, []string{"Clinic", "Surgery", "A", "B", "Staff"}) {
			t.Fatalf("bob's hierarchy after joining the space = %v", got)
		}
		if got, _ := names(alice, ""); !slices.Equal(got, []string{"Clinic", "Surgery", "A", "B", "Hidden", "Staff"}) {
			t.Fatalf("alice's hierarchy = %v", got)
		}
		if got, _ := names(alice, "?max_depth=0"); !slices.Equal(got, []string{"Clinic"}) {
			t.Fatalf("max_depth=0 = %v", got)
		}
		// Only Surgery is a suggested link; its child A is not.
		if got, _ := names(alice, "?suggested_only=true"); !slices.Equal(got, []string{"Clinic", "Surgery"}) {
			t.Fatalf("suggested_only = %v", got)
		}
		// Pages of two, then the rest.
		var all []string
		page, next := names(alice, "?limit=2")
		all = append(all, page...)
		for next != "" {
			page, next = names(alice, "?limit=2&from="+esc(next))
			all = append(all, page...)
		}
		if !slices.Equal(all, []string{"Clinic", "Surgery", "A", "B", "Hidden", "Staff"}) {
			t.Fatalf("paged = %v", all)
		}
		_, next = names(alice, "?limit=2")
		hp := "/_matrix/client/v1/rooms/" + esc(space) + "/hierarchy"
		s.expect(s.do("GET", hp+"?limit=2&max_depth=3&from="+esc(next), alice, nil), 400, "M_INVALID_PARAM")
		s.expect(s.do("GET", hp+"?from=bogus", alice, nil), 400, "M_INVALID_PARAM")
		s.expect(s.do("GET", hp+"?limit=0", alice, nil), 400, "M_INVALID_PARAM")
		s.expect(s.do("GET", hp+"?max_depth=-1", alice, nil), 400, "M_INVALID_PARAM")
		s.expect(s.do("GET", hp+"?suggested_only=maybe", alice, nil), 400, "M_INVALID_PARAM")
		s.expect(s.do("GET", "/_matrix/client/v1/rooms/"+esc(hidden)+"/hierarchy", bob, nil), 403, "M_FORBIDDEN")
		s.expect(s.do("GET", "/_matrix/client/v1/rooms/"+esc("!nope:test.local")+"/hierarchy", bob, nil), 403, "M_FORBIDDEN")

		// children_state: stripped events with origin_server_ts, in order.
		r := s.do("GET", hp+"?max_depth=1", alice, nil)
		root := r.body["rooms"].([]any)[0].(map[string]any)
		var keys []string
		for _, c := range root["children_state"].([]any) {
			ev := c.(map[string]any)
			if ev["type"] != "m.space.child" || ev["origin_server_ts"] == nil || ev["sender"] == nil {
				t.Fatalf("child = %v", ev)
			}
			keys = append(keys, ev["state_key"].(string))
		}
		if len(keys) != 5 || keys[0] != sub {
			t.Fatalf("children_state keys = %v (sub %s)", keys, sub)
		}
		if root["room_type"] != "m.space" || root["join_rule"] != "public" || root["room_version"] != "12" {
			t.Fatalf("root = %v", root)
		}
	})
}

// TestRoomRateLimits: sends, joins and invites are limited per user with
// 429 M_LIMIT_EXCEEDED + Retry-After, and a refused request stores nothing.
func TestRoomRateLimits(t *testing.T) {
	limits := func(c *config.Config) {
		c.RateLimits = config.Default().RateLimits
		c.RateLimits.Enabled = true
		c.RateLimits.MessagePerUser = config.Rate{PerSecond: 0.001, Burst: 3}
		c.RateLimits.JoinPerUser = config.Rate{PerSecond: 0.001, Burst: 3}
		c.RateLimits.InvitePerUser = config.Rate{PerSecond: 0.001, Burst: 2}
		c.RateLimits.RegistrationPerIP = config.Rate{PerSecond: 100, Burst: 100}
	}
	eachRoomEngine(t, limits, func(t *testing.T, s *roomServer) {
		alice, _ := s.user("alice")
		bob, _ := s.user("bob")
		_, carolID := s.user("carol")
		_, daveID := s.user("dave")
		s.user("eve")
		room := s.createRoom(alice, map[string]any{"preset": "public_chat", // join 1
			"power_level_content_override": map[string]any{"invite": 0}})
		for i := range 3 {
			s.expect(s.do("PUT", roomPath(room, fmt.Sprintf("/send/m.room.message/t%d", i)), alice, map[string]any{"body": "x"}), 200, "")
		}
		over := s.do("PUT", roomPath(room, "/send/m.room.message/t3"), alice, map[string]any{"body": "x"})
		s.expect(over, 429, "M_LIMIT_EXCEEDED")
		if over.header.Get("Retry-After") == "" || over.body["retry_after_ms"] == nil {
			t.Fatalf("429 without Retry-After: %v %s", over.header, over.raw)
		}
		s.expect(s.do("PUT", roomPath(room, "/state/m.room.topic"), alice, map[string]any{"topic": "x"}), 429, "M_LIMIT_EXCEEDED")
		s.expect(s.do("PUT", roomPath(room, "/redact/$x/r"), alice, map[string]any{}), 429, "M_LIMIT_EXCEEDED")
		// Limits are per user: bob still sends after joining.
		s.expect(s.do("POST", roomPath(room, "/join"), bob, nil), 200, "")
		s.expect(s.do("PUT", roomPath(room, "/send/m.room.message/b0"), bob, map[string]any{"body": "x"}), 200, "")
		// Nothing was stored for the refused send: its txnId is unused, so
		// it is refused again rather than answered from a stored event.
		s.expect(s.do("PUT", roomPath(room, "/send/m.room.message/t3"), alice, map[string]any{"body": "x"}), 429, "M_LIMIT_EXCEEDED")

		// Invites: createRoom with three invitees needs three tokens of a
		// burst of two, and is refused as a whole.
		s.expect(s.do("POST", v3+"/createRoom", bob, map[string]any{"invite": []string{carolID, daveID, "@alice:test.local"}}), 429, "M_LIMIT_EXCEEDED")
		jr := s.do("GET", v3+"/joined_rooms", bob, nil)
		if len(jr.body["joined_rooms"].([]any)) != 1 {
			t.Fatalf("refused createRoom created a room: %s", jr.raw)
		}
		s.expect(s.do("POST", roomPath(room, "/invite"), bob, map[string]any{"user_id": carolID}), 200, "")
		s.expect(s.do("POST", roomPath(room, "/invite"), bob, map[string]any{"user_id": daveID}), 200, "")
		s.expect(s.do("POST", roomPath(room, "/invite"), bob, map[string]any{"user_id": "@eve:test.local"}), 429, "M_LIMIT_EXCEEDED")

		// Joins: alice used one (createRoom); two more, then refused.
		r2 := s.createRoom(alice, map[string]any{})
		s.expect(s.do("POST", roomPath(r2, "/join"), alice, nil), 200, "")
		s.expect(s.do("POST", roomPath(room, "/join"), alice, nil), 429, "M_LIMIT_EXCEEDED")
		s.expect(s.do("POST", v3+"/knock/"+esc(room), alice, nil), 429, "M_LIMIT_EXCEEDED")
	})
}
