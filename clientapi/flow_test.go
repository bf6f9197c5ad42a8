package clientapi

import (
	"testing"
)

func TestRegisterLoginWhoami(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *server) {
		r := s.do("POST", v3+"/register", "", map[string]any{"username": "Alice", "password": "correct horse"})
		s.expect(r, 401, "")
		if r.body["errcode"] != nil || r.str("session") == "" {
			t.Fatalf("first UIA round: %s", r.raw)
		}
		flows, _ := r.body["flows"].([]any)
		if len(flows) != 2 {
			t.Fatalf("flows = %v", r.body["flows"])
		}
		r = s.do("POST", v3+"/register", "", map[string]any{
			"username": "Alice", "password": "correct horse", "initial_device_display_name": "Phone",
			"auth": map[string]any{"type": "m.login.dummy", "session": r.str("session")},
		})
		s.expect(r, 200, "")
		if r.str("user_id") != "@alice:test.local" || r.str("device_id") == "" || r.str("home_server") != "test.local" {
			t.Fatalf("register = %s", r.raw)
		}
		tok := r.str("access_token")
		if len(tok) < 40 || tok[:4] != "myt_" {
			t.Fatalf("access token shape: %q", tok)
		}
		who := s.do("GET", v3+"/account/whoami", tok, nil)
		s.expect(who, 200, "")
		if who.str("user_id") != "@alice:test.local" || who.str("device_id") != r.str("device_id") || who.body["is_guest"] != false {
			t.Fatalf("whoami = %s", who.raw)
		}

		l := s.login("alice", "correct horse", map[string]any{"device_id": "LAPTOP"})
		s.expect(l, 200, "")
		if l.str("device_id") != "LAPTOP" || l.str("user_id") != "@alice:test.local" || l.str("access_token") == tok {
			t.Fatalf("login = %s", l.raw)
		}
		who = s.do("GET", v3+"/account/whoami", l.str("access_token"), nil)
		s.expect(who, 200, "")
		if who.str("device_id") != "LAPTOP" {
			t.Fatalf("whoami after login = %s", who.raw)
		}
		// Legacy top-level "user" with a full user ID.
		s.expect(s.do("POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "@alice:test.local", "password": "correct horse"}), 200, "")
		s.expect(s.login("alice", "wrong horse", nil), 403, "M_FORBIDDEN")
	})
}
