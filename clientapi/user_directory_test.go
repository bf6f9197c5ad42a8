package clientapi

import (
	"fmt"
	"testing"
)

// TestUserDirectorySearch: the directory finds users sharing a room with
// the searcher or joined to a public room, by user ID or global displayname,
// never by a room-specific name, and honours limit.
func TestUserDirectorySearch(t *testing.T) {
	eachRoomEngine(t, nil, func(t *testing.T, s *roomServer) {
		alice, aliceID := s.user("alice")
		bob, bobID := s.user("bob")
		eve, _ := s.user("eve")
		_, _ = s.user("hermit") // in no room: nobody finds them
		s.expect(s.do("PUT", v3+"/profile/"+esc(aliceID)+"/displayname", alice, map[string]any{"displayname": "Alice Cooper"}), 200, "")
		s.createRoom(alice, map[string]any{"visibility": "public"})
		private := s.createRoom(bob, map[string]any{"preset": "private_chat", "invite": []string{aliceID}})
		s.expect(s.do("POST", roomPath(private, "/join"), alice, nil), 200, "")
		// A room-specific name, only for the private room.
		s.expect(s.do("PUT", roomPath(private, "/state/m.room.member/"+esc(aliceID)), alice,
			map[string]any{"membership": "join", "displayname": "Freddy"}), 200, "")

		search := func(token string, body any) resp {
			return s.do("POST", v3+"/user_directory/search", token, body)
		}
		ids := func(r resp) string {
			var out []string
			for _, u := range r.body["results"].([]any) {
				m := u.(map[string]any)
				out = append(out, fmt.Sprint(m["user_id"], "=", m["display_name"]))
			}
			return fmt.Sprint(out, r.body["limited"])
		}
		tests := []struct {
			name, token string
			body        any
			want        string
		}{
			{"stranger finds by public name", eve, map[string]any{"search_term": "alice cooper"}, "[" + aliceID + "=Alice Cooper] false"},
			{"stranger finds by user ID", eve, map[string]any{"search_term": "@ali"}, "[" + aliceID + "=Alice Cooper] false"},
			{"room-specific name is not searchable", eve, map[string]any{"search_term": "Freddy"}, "[] false"},
			{"private-room users are hidden from strangers", eve, map[string]any{"search_term": "bob"}, "[] false"},
			{"room mate finds by ID, with the global name", bob, map[string]any{"search_term": "alice"}, "[" + aliceID + "=Alice Cooper] false"},
			{"alice finds her room mate", alice, map[string]any{"search_term": "BOB"}, "[" + bobID + "=bob] false"},
			{"users in no room are not found", alice, map[string]any{"search_term": "hermit"}, "[] false"},
			{"limit truncates", bob, map[string]any{"search_term": "", "limit": 0}, "[] true"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := search(tc.token, tc.body)
				s.expect(r, 200, "")
				if got := ids(r); got != tc.want {
					t.Fatalf("results = %s, want %s (%s)", got, tc.want, r.raw)
				}
			})
		}
		bad := []struct {
			name, token string
			body        any
			status      int
			code        string
		}{
			{"missing term", eve, map[string]any{}, 400, "M_MISSING_PARAM"},
			{"negative limit", eve, map[string]any{"search_term": "a", "limit": -1}, 400, "M_INVALID_PARAM"},
			{"not JSON", eve, "{", 400, "M_NOT_JSON"},
			{"no token", "", map[string]any{"search_term": "a"}, 401, "M_MISSING_TOKEN"},
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) {
				s.expect(search(tc.token, tc.body), tc.status, tc.code)
			})
		}
	})
}

// TestUserDirectoryOrderLimitAndLeaving: the spec's order (rank, then
// profile information), the default limit of 10 with limited set, and a
// room mate who leaves the only shared room drops out of the directory.
func TestUserDirectoryOrderLimitAndLeaving(t *testing.T) {
	eachRoomEngine(t, nil, func(t *testing.T, s *roomServer) {
		hostTok, _ := s.user("host")
		lobby := s.createRoom(hostTok, map[string]any{"preset": "public_chat"})
		join := func(local string) (string, string) {
			tok, id := s.user(local)
			s.expect(s.do("POST", roomPath(lobby, "/join"), tok, map[string]any{}), 200, "")
			return tok, id
		}
		vetTok, vetID := join("vet")
		zedTok, zedID := join("zed")
		_, avetID := join("avet")
		s.expect(s.do("PUT", v3+"/profile/"+esc(zedID)+"/displayname", zedTok, map[string]any{"displayname": "Vet Nurse"}), 200, "")
		// Without a displayname a user has no profile information.
		s.expect(s.do("DELETE", v3+"/profile/"+esc(vetID)+"/displayname", vetTok, nil), 200, "")
		for i := range 11 {
			join(fmt.Sprintf("member%02d", i))
		}
		strangerTok, _ := s.user("stranger")

		search := func(token string, body map[string]any) ([]string, bool) {
			t.Helper()
			r := s.do("POST", v3+"/user_directory/search", token, body)
			s.expect(r, 200, "")
			var ids []string
			for _, u := range r.body["results"].([]any) {
				ids = append(ids, u.(map[string]any)["user_id"].(string))
			}
			return ids, r.body["limited"] == true
		}
		// Prefix matches before substring matches; among prefix matches,
		// the user with a displayname first.
		if ids, limited := search(strangerTok, map[string]any{"search_term": "vet"}); fmt.Sprint(ids) != fmt.Sprint([]string{zedID, vetID, avetID}) || limited {
			t.Fatalf("order %v limited %v", ids, limited)
		}
		if ids, limited := search(strangerTok, map[string]any{"search_term": "MEMBER"}); len(ids) != 10 || !limited {
			t.Fatalf("default limit: %d results, limited %v", len(ids), limited)
		}
		if ids, limited := search(strangerTok, map[string]any{"search_term": "member", "limit": 20}); len(ids) != 11 || limited {
			t.Fatalf("limit 20: %d results, limited %v", len(ids), limited)
		}

		aliceTok, aliceID := s.user("alice")
		bobTok, bobID := s.user("bob")
		private := s.createRoom(bobTok, map[string]any{"preset": "private_chat", "invite": []string{aliceID}})
		s.expect(s.do("POST", roomPath(private, "/join"), aliceTok, map[string]any{}), 200, "")
		if ids, _ := search(aliceTok, map[string]any{"search_term": "bob"}); fmt.Sprint(ids) != fmt.Sprint([]string{bobID}) {
			t.Fatalf("room mate not found: %v", ids)
		}
		s.expect(s.do("POST", roomPath(private, "/leave"), bobTok, map[string]any{}), 200, "")
		if ids, _ := search(aliceTok, map[string]any{"search_term": "bob"}); len(ids) != 0 {
			t.Fatalf("former room mate still found: %v", ids)
		}
	})
}
