package clientapi

import (
	"testing"
)

// TestProfileChangeUpdatesMemberEvents: a displayname or avatar_url change
// (set or delete) re-sends the user's m.room.member join event in every room
// they are joined to, and leaves rooms they have left alone.
func TestProfileChangeUpdatesMemberEvents(t *testing.T) {
	eachRoomEngine(t, nil, func(t *testing.T, s *roomServer) {
		alice, aliceID := s.user("alice")
		bob, _ := s.user("bob")
		roomA := s.createRoom(alice, map[string]any{"preset": "public_chat"})
		roomB := s.createRoom(bob, map[string]any{"preset": "public_chat"})
		s.expect(s.do("POST", roomPath(roomB, "/join"), alice, nil), 200, "")
		left := s.createRoom(bob, map[string]any{"preset": "public_chat"})
		s.expect(s.do("POST", roomPath(left, "/join"), alice, nil), 200, "")
		s.expect(s.do("POST", roomPath(left, "/leave"), alice, nil), 200, "")

		me := v3 + "/profile/" + esc(aliceID)
		s.expect(s.do("PUT", me+"/displayname", alice, map[string]any{"displayname": "Lemur Lover"}), 200, "")
		s.expect(s.do("PUT", me+"/avatar_url", alice, map[string]any{"avatar_url": "mxc://test.local/lemur"}), 200, "")

		tests := []struct {
			name, room, token string
		}{
			{"own room", roomA, alice},
			{"joined room seen by its creator", roomB, bob},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				m := s.do("GET", roomPath(tc.room, "/state/m.room.member/"+esc(aliceID)), tc.token, nil)
				s.expect(m, 200, "")
				if m.str("membership") != "join" || m.str("displayname") != "Lemur Lover" || m.str("avatar_url") != "mxc://test.local/lemur" {
					t.Fatalf("member event = %s", m.raw)
				}
			})
		}
		m := s.do("GET", roomPath(left, "/state/m.room.member/"+esc(aliceID)), bob, nil)
		s.expect(m, 200, "")
		if m.str("membership") != "leave" || m.str("displayname") == "Lemur Lover" {
			t.Fatalf("left room's member event changed: %s", m.raw)
		}

		// Deleting a field removes it from the member events too.
		s.expect(s.do("DELETE", me+"/avatar_url", alice, nil), 200, "")
		m = s.do("GET", roomPath(roomB, "/state/m.room.member/"+esc(aliceID)), bob, nil)
		s.expect(m, 200, "")
		if _, has := m.body["avatar_url"]; has || m.str("displayname") != "Lemur Lover" {
			t.Fatalf("after deleting avatar_url: %s", m.raw)
		}
	})
}
