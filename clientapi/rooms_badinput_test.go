package clientapi

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// roomSnapshot renders the room tables a refused request must not touch:
// rooms and their directory visibility, every event, the current state,
// memberships (with forgotten flags), transaction IDs and aliases.
func (s *roomServer) roomSnapshot() string {
	s.t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT room_id, room_version, visibility FROM rooms ORDER BY room_id`,
		`SELECT event_nid, event_id, type, COALESCE(state_key, '<nil>'), COALESCE(redacted_by_nid, 0) FROM events ORDER BY event_nid`,
		`SELECT room_nid, type, state_key, event_nid FROM current_state ORDER BY room_nid, type, state_key`,
		`SELECT room_nid, user_id, membership, event_nid, forgotten FROM room_members ORDER BY room_nid, user_id`,
		`SELECT user_id, device_id, scope, txn_id, event_nid FROM event_txns ORDER BY user_id, device_id, scope, txn_id`,
		`SELECT alias, room_nid FROM room_aliases ORDER BY alias`,
	} {
		rows, err := s.db.R.QueryContext(context.Background(), q)
		if err != nil {
			s.t.Fatalf("snapshot: %v", err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				s.t.Fatalf("snapshot: %v", err)
			}
			fmt.Fprintln(&b, vals...)
		}
		rows.Close()
		b.WriteString("--\n")
	}
	return b.String()
}

// TestRoomBadInputs sends refused requests to each room endpoint through
// the real router and checks the exact status and errcode and that the
// room tables are byte-for-byte unchanged: a refused request is one
// transaction that never happened. (tests/e2e has the full table against
// the real process.)
func TestRoomBadInputs(t *testing.T) {
	eachRoomEngine(t, nil, func(t *testing.T, s *roomServer) {
		alice, aliceID := s.user("alice")
		bob, bobID := s.user("bob")
		mallory, _ := s.user("mallory")
		room := s.createRoom(alice, map[string]any{"preset": "private_chat", "room_alias_name": "desk", "invite": []string{bobID}})
		s.expect(s.do("POST", roomPath(room, "/join"), bob, nil), 200, "")
		msg := s.do("PUT", roomPath(room, "/send/m.room.message/m1"), alice, map[string]any{"body": "x"}).str("event_id")
		before := s.roomSnapshot()
		huge := `{"body":"` + strings.Repeat("y", 65536) + `"}`
		for _, c := range []struct {
			method, path, token string
			body                any
			status              int
			code                string
		}{
			{"POST", v3 + "/createRoom", alice, `{"name":`, 400, "M_NOT_JSON"},
			{"POST", v3 + "/createRoom", alice, `[]`, 400, "M_BAD_JSON"},
			{"POST", v3 + "/createRoom", alice, map[string]any{"room_version": "5"}, 400, "M_UNSUPPORTED_ROOM_VERSION"},
			{"POST", v3 + "/createRoom", alice, map[string]any{"room_alias_name": "desk"}, 400, "M_ROOM_IN_USE"},
			{"POST", v3 + "/createRoom", alice, map[string]any{"invite": []string{"@nobody:test.local"}}, 404, "M_NOT_FOUND"},
			{"POST", v3 + "/createRoom", alice, map[string]any{"name": "n", "initial_state": []any{
				map[string]any{"type": "x.y", "content": map[string]any{"f": 0.5}}}}, 400, "M_BAD_JSON"},
			{"POST", v3 + "/createRoom", alice, map[string]any{"room_version": "11",
				"power_level_content_override": map[string]any{"users": map[string]any{}}}, 400, "M_INVALID_ROOM_STATE"},
			{"PUT", roomPath(room, "/send/m.room.message/m2"), alice, `{"n":1.5}`, 400, "M_BAD_JSON"},
			{"PUT", roomPath(room, "/send/m.room.message/m3"), alice, `{"n":9007199254740992}`, 400, "M_BAD_JSON"},
			{"PUT", roomPath(room, "/send/m.room.message/m4"), alice, huge, 413, "M_TOO_LARGE"},
			{"PUT", roomPath(room, "/send/m.room.message/"+strings.Repeat("t", 256)), alice, `{}`, 400, "M_INVALID_PARAM"},
			{"PUT", roomPath(room, "/send/m.room.message/m5"), mallory, `{}`, 403, "M_FORBIDDEN"},
			{"PUT", roomPath("!nope:test.local", "/send/m.room.message/m6"), alice, `{}`, 404, "M_NOT_FOUND"},
			{"PUT", roomPath("nope", "/send/m.room.message/m7"), alice, `{}`, 400, "M_INVALID_PARAM"},
			{"PUT", roomPath(room, "/state/m.room.name"), bob, map[string]any{"name": "b"}, 403, "M_FORBIDDEN"},
			{"PUT", roomPath(room, "/state/x.y/"+strings.Repeat("k", 256)), alice, `{}`, 413, "M_TOO_LARGE"},
			{"PUT", roomPath(room, "/state/m.room.canonical_alias"), alice, map[string]any{"alias": "#other:test.local"}, 400, "M_BAD_ALIAS"},
			{"PUT", roomPath(room, "/state/m.room.canonical_alias"), alice, map[string]any{"alias": "desk"}, 400, "M_INVALID_PARAM"},
			{"GET", roomPath(room, "/state"), mallory, nil, 403, "M_FORBIDDEN"},
			{"GET", roomPath(room, "/state/m.room.topic/"), alice, nil, 404, "M_NOT_FOUND"},
			{"PUT", roomPath(room, "/redact/"+esc(msg)+"/r1"), bob, `{}`, 403, "M_FORBIDDEN"},
			{"PUT", roomPath(room, "/redact/$nope/r2"), alice, `{}`, 404, "M_NOT_FOUND"},
			{"PUT", roomPath(room, "/redact/nope/r3"), alice, `{}`, 400, "M_INVALID_PARAM"},
			{"GET", roomPath(room, "/event/"+esc(msg)), mallory, nil, 404, "M_NOT_FOUND"},
			{"POST", roomPath(room, "/join"), mallory, nil, 403, "M_FORBIDDEN"},
			{"POST", roomPath(room, "/join"), mallory, `{"reason":1}`, 400, "M_BAD_JSON"},
			{"POST", v3 + "/join/" + esc("#nothing:test.local"), mallory, nil, 404, "M_NOT_FOUND"},
			{"POST", v3 + "/knock/" + esc(room), mallory, nil, 403, "M_FORBIDDEN"},
			{"POST", roomPath(room, "/leave"), mallory, nil, 403, "M_FORBIDDEN"},
			{"POST", roomPath(room, "/forget"), alice, nil, 400, "M_UNKNOWN"},
			{"POST", roomPath(room, "/invite"), alice, map[string]any{}, 400, "M_MISSING_PARAM"},
			{"POST", roomPath(room, "/invite"), alice, map[string]any{"user_id": bobID}, 403, "M_FORBIDDEN"},
			{"POST", roomPath(room, "/invite"), mallory, map[string]any{"user_id": bobID}, 403, "M_FORBIDDEN"},
			{"POST", roomPath(room, "/kick"), bob, map[string]any{"user_id": aliceID}, 403, "M_FORBIDDEN"},
			{"POST", roomPath(room, "/ban"), bob, map[string]any{"user_id": aliceID}, 403, "M_FORBIDDEN"},
			{"POST", roomPath(room, "/unban"), alice, map[string]any{"user_id": bobID}, 403, "M_FORBIDDEN"},
			{"POST", roomPath("!nope:test.local", "/kick"), alice, map[string]any{"user_id": bobID}, 403, "M_FORBIDDEN"},
			{"GET", roomPath(room, "/members?membership=member"), alice, nil, 400, "M_INVALID_PARAM"},
			{"GET", roomPath(room, "/joined_members"), mallory, nil, 403, "M_FORBIDDEN"},
			{"POST", roomPath(room, "/upgrade"), alice, map[string]any{}, 400, "M_MISSING_PARAM"},
			{"POST", roomPath(room, "/upgrade"), bob, map[string]any{"new_version": "12"}, 403, "M_FORBIDDEN"},
			{"PUT", v3 + "/directory/room/" + esc("#desk:test.local"), alice, map[string]any{"room_id": room}, 409, "M_UNKNOWN"},
			{"PUT", v3 + "/directory/room/" + esc("#x:elsewhere.test"), alice, map[string]any{"room_id": room}, 400, "M_INVALID_PARAM"},
			{"DELETE", v3 + "/directory/room/" + esc("#desk:test.local"), mallory, nil, 403, "M_FORBIDDEN"},
			{"PUT", v3 + "/directory/list/room/" + esc(room), bob, map[string]any{"visibility": "public"}, 403, "M_FORBIDDEN"},
			{"PUT", v3 + "/directory/list/room/" + esc(room), alice, map[string]any{"visibility": "open"}, 400, "M_INVALID_PARAM"},
			{"GET", v3 + "/publicRooms?since=p1", "", nil, 400, "M_INVALID_PARAM"},
			{"POST", v3 + "/publicRooms", alice, map[string]any{"limit": -1}, 400, "M_INVALID_PARAM"},
		} {
			r := s.do(c.method, c.path, c.token, c.body)
			if r.status != c.status || r.str("errcode") != c.code {
				t.Errorf("%s %.80s: got %d %s, want %d %s (%s)", c.method, c.path, r.status, r.str("errcode"), c.status, c.code, r.raw)
			}
		}
		if after := s.roomSnapshot(); after != before {
			t.Fatalf("refused requests changed the room tables:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}
