package clientapi

import (
	"fmt"
	"slices"
	"testing"

	"myelin/account"
	"myelin/notifications"
)

// eachPushEngine serves rooms and the push endpoints, wired as cmd/myelin
// wires them.
func eachPushEngine(t *testing.T, fn func(t *testing.T, s *roomServer)) {
	t.Helper()
	eachRoomEngine(t, nil, func(t *testing.T, rs *roomServer) {
		n, err := notifications.New(notifications.Options{DB: rs.db, Rooms: rs.rooms, ServerName: rs.cfg.ServerName})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		// As cmd/myelin wires it: pushers go with the devices that made them.
		accounts, err := account.New(rs.cfg, rs.db, account.WithClock(rs.clock.now), account.WithDevicesRemoved(n.DevicesRemoved))
		if err != nil {
			t.Fatal(err)
		}
		rs.svc = accounts
		h, err := New(Options{Config: rs.cfg, Accounts: accounts, Rooms: rs.rooms, Push: n})
		if err != nil {
			t.Fatal(err)
		}
		rs.h = h
		fn(t, rs)
	})
}

func ruleIDs(r resp, kind string) []string {
	var ids []string
	global, _ := r.body["global"].(map[string]any)
	list, _ := global[kind].([]any)
	for _, x := range list {
		ids = append(ids, x.(map[string]any)["rule_id"].(string))
	}
	return ids
}

func TestPushRulesEndpoints(t *testing.T) {
	eachPushEngine(t, func(t *testing.T, s *roomServer) {
		tok, _ := s.user("alice")
		const base = v3 + "/pushrules/global/"
		all := s.do("GET", v3+"/pushrules/", tok, nil)
		s.expect(all, 200, "")
		if ids := ruleIDs(all, "override"); len(ids) != 10 || ids[0] != ".m.rule.master" || ids[4] != ".m.rule.is_user_mention" {
			t.Fatalf("default overrides %v", ids)
		}
		if ids := ruleIDs(all, "underride"); fmt.Sprint(ids) != "[.m.rule.call .m.rule.encrypted_room_one_to_one .m.rule.room_one_to_one .m.rule.message .m.rule.encrypted]" {
			t.Fatalf("default underrides %v", ids)
		}
		if c, ok := all.body["global"].(map[string]any)["content"].([]any); !ok || len(c) != 0 {
			t.Fatalf("content rules: %v", all.body["global"])
		}

		// Create content rules, ordered with before/after.
		for _, tc := range []struct{ id, query string }{{"a", ""}, {"b", ""}, {"c", "?after=b"}, {"d", "?before=b"}} {
			s.expect(s.do("PUT", base+"content/"+tc.id+tc.query, tok, map[string]any{"pattern": tc.id + "*", "actions": []any{"notify"}}), 200, "")
		}
		if ids := ruleIDs(s.do("GET", v3+"/pushrules/", tok, nil), "content"); fmt.Sprint(ids) != "[d b c a]" {
			t.Fatalf("content order %v", ids)
		}
		got := s.do("GET", base+"content/c", tok, nil)
		s.expect(got, 200, "")
		if got.str("pattern") != "c*" || got.body["enabled"] != true || got.body["default"] != false {
			t.Fatalf("rule c: %s", got.raw)
		}
		// A room rule's ID is a room ID (escaped in the path).
		s.expect(s.do("PUT", base+"room/"+esc("!r:clinic.test"), tok, map[string]any{"actions": []any{}}), 200, "")
		s.expect(s.do("GET", base+"room/"+esc("!r:clinic.test"), tok, nil), 200, "")

		// Defaults: enable/disable and actions, never PUT or DELETE.
		s.expect(s.do("PUT", base+"override/.m.rule.master/enabled", tok, map[string]any{"enabled": true}), 200, "")
		if r := s.do("GET", base+"override/.m.rule.master/enabled", tok, nil); r.body["enabled"] != true {
			t.Fatalf("master enabled: %s", r.raw)
		}
		s.expect(s.do("PUT", base+"underride/.m.rule.message/actions", tok, map[string]any{"actions": []any{"notify", map[string]any{"set_tweak": "sound", "value": "bell"}}}), 200, "")
		if r := s.do("GET", base+"underride/.m.rule.message/actions", tok, nil); r.raw != `{"actions":["notify",{"set_tweak":"sound","value":"bell"}]}` {
			t.Fatalf("actions: %s", r.raw)
		}

		// Bad input: the spec's codes, nothing changed.
		for _, tc := range []struct {
			name, method, path string
			body               any
			status             int
			code               string
		}{
			{"default id", "PUT", base + "override/.m.rule.mine", map[string]any{"actions": []any{}}, 400, "M_INVALID_PARAM"},
			{"unknown kind", "PUT", base + "nonsense/x", map[string]any{"actions": []any{}}, 400, "M_INVALID_PARAM"},
			{"missing actions", "PUT", base + "override/x", map[string]any{"conditions": []any{}}, 400, "M_MISSING_PARAM"},
			{"bad action", "PUT", base + "override/x", map[string]any{"actions": []any{7}}, 400, "M_INVALID_PARAM"},
			{"content without pattern", "PUT", base + "content/x", map[string]any{"actions": []any{}}, 400, "M_INVALID_PARAM"},
			{"relative to a default", "PUT", base + "override/x?before=.m.rule.master", map[string]any{"actions": []any{}}, 400, "M_INVALID_PARAM"},
			{"relative to a missing rule", "PUT", base + "content/x?after=zzz", map[string]any{"pattern": "x", "actions": []any{}}, 404, "M_NOT_FOUND"},
			{"not json", "PUT", base + "override/x", "{", 400, "M_NOT_JSON"},
			{"delete default", "DELETE", base + "override/.m.rule.master", nil, 400, "M_INVALID_PARAM"},
			{"get missing", "GET", base + "override/nope", nil, 404, "M_NOT_FOUND"},
			{"enable missing", "PUT", base + "override/nope/enabled", map[string]any{"enabled": true}, 404, "M_NOT_FOUND"},
			{"enabled missing", "PUT", base + "override/.m.rule.master/enabled", map[string]any{}, 400, "M_MISSING_PARAM"},
			{"enabled not bool", "PUT", base + "override/.m.rule.master/enabled", map[string]any{"enabled": "yes"}, 400, "M_BAD_JSON"},
			{"no token", "GET", v3 + "/pushrules/", nil, 401, "M_MISSING_TOKEN"},
		} {
			tok := tok
			if tc.code == "M_MISSING_TOKEN" {
				tok = ""
			}
			r := s.do(tc.method, tc.path, tok, tc.body)
			if r.status != tc.status || r.str("errcode") != tc.code {
				t.Errorf("%s: got %d %s, want %d %s", tc.name, r.status, r.str("errcode"), tc.status, tc.code)
			}
		}
		if ids := ruleIDs(s.do("GET", v3+"/pushrules/", tok, nil), "override"); len(ids) != 10 {
			t.Fatalf("bad requests changed the overrides: %v", ids)
		}

		s.expect(s.do("DELETE", base+"content/b", tok, nil), 200, "")
		s.expect(s.do("DELETE", base+"content/b", tok, nil), 404, "M_NOT_FOUND")
		if ids := ruleIDs(s.do("GET", v3+"/pushrules/", tok, nil), "content"); fmt.Sprint(ids) != "[d c a]" {
			t.Fatalf("after delete %v", ids)
		}
		// Another user's rules are their own.
		bobTok, _ := s.user("bob")
		if ids := ruleIDs(s.do("GET", v3+"/pushrules/", bobTok, nil), "content"); len(ids) != 0 {
			t.Fatalf("bob sees %v", ids)
		}
	})
}

func TestNotificationsAndPushersEndpoints(t *testing.T) {
	eachPushEngine(t, func(t *testing.T, s *roomServer) {
		aliceTok, _ := s.user("alice")
		bobTok, bob := s.user("bob")
		room := s.createRoom(aliceTok, map[string]any{"preset": "public_chat"})
		s.expect(s.do("POST", v3+"/join/"+esc(room), bobTok, map[string]any{}), 200, "")
		var ids []string
		for i := range 3 {
			content := map[string]any{"msgtype": "m.text", "body": fmt.Sprint(i)}
			if i == 1 {
				content["m.mentions"] = map[string]any{"user_ids": []any{bob}}
			}
			r := s.do("PUT", roomPath(room, fmt.Sprintf("/send/m.room.message/t%d", i)), aliceTok, content)
			s.expect(r, 200, "")
			ids = append(ids, r.str("event_id"))
		}
		r := s.do("GET", v3+"/notifications?limit=2", bobTok, nil)
		s.expect(r, 200, "")
		list := r.body["notifications"].([]any)
		if len(list) != 2 || r.str("next_token") == "" {
			t.Fatalf("first page: %s", r.raw)
		}
		first := list[0].(map[string]any)
		if first["event"].(map[string]any)["event_id"] != ids[2] || first["room_id"] != room || first["read"] != false {
			t.Fatalf("newest notification: %v", first)
		}
		r = s.do("GET", v3+"/notifications?from="+r.str("next_token"), bobTok, nil)
		if list := r.body["notifications"].([]any); len(list) != 1 || list[0].(map[string]any)["event"].(map[string]any)["event_id"] != ids[0] {
			t.Fatalf("second page: %s", r.raw)
		}
		r = s.do("GET", v3+"/notifications?only=highlight", bobTok, nil)
		if list := r.body["notifications"].([]any); len(list) != 1 || list[0].(map[string]any)["event"].(map[string]any)["event_id"] != ids[1] {
			t.Fatalf("highlights: %s", r.raw)
		}
		s.expect(s.do("GET", v3+"/notifications?limit=0", bobTok, nil), 400, "M_INVALID_PARAM")
		s.expect(s.do("GET", v3+"/notifications?from=abc", bobTok, nil), 400, "M_INVALID_PARAM")

		// Pushers.
		pusher := map[string]any{"kind": "http", "app_id": "vet.myelin.ios", "pushkey": "tok1", "app_display_name": "Myelin",
			"device_display_name": "iPhone", "lang": "en", "data": map[string]any{"url": "https://push.example/_matrix/push/v1/notify", "format": "event_id_only"}}
		s.expect(s.do("POST", v3+"/pushers/set", bobTok, pusher), 200, "")
		r = s.do("GET", v3+"/pushers", bobTok, nil)
		if ps := r.body["pushers"].([]any); len(ps) != 1 || ps[0].(map[string]any)["pushkey"] != "tok1" || ps[0].(map[string]any)["data"].(map[string]any)["format"] != "event_id_only" {
			t.Fatalf("pushers: %s", r.raw)
		}
		for _, tc := range []struct {
			name   string
			change map[string]any
			code   string
		}{
			{"missing app_id", map[string]any{"app_id": nil}, "M_MISSING_PARAM"},
			{"missing url", map[string]any{"data": map[string]any{}}, "M_MISSING_PARAM"},
			{"wrong path", map[string]any{"data": map[string]any{"url": "https://push.example/notify"}}, "M_INVALID_PARAM"},
			{"email kind", map[string]any{"kind": "email"}, "M_INVALID_PARAM"},
			{"long app_id", map[string]any{"app_id": fmt.Sprintf("%065d", 0)}, "M_INVALID_PARAM"},
			{"missing lang", map[string]any{"lang": nil}, "M_MISSING_PARAM"},
		} {
			body := map[string]any{}
			for k, v := range pusher {
				body[k] = v
			}
			for k, v := range tc.change {
				if v == nil {
					delete(body, k)
				} else {
					body[k] = v
				}
			}
			body["pushkey"] = "other"
			if r := s.do("POST", v3+"/pushers/set", bobTok, body); r.status != 400 || r.str("errcode") != tc.code {
				t.Errorf("%s: got %d %s, want 400 %s", tc.name, r.status, r.str("errcode"), tc.code)
			}
		}
		s.expect(s.do("POST", v3+"/pushers/set", bobTok, map[string]any{"kind": nil, "app_id": "vet.myelin.ios", "pushkey": "tok1"}), 200, "")
		if r := s.do("GET", v3+"/pushers", bobTok, nil); len(r.body["pushers"].([]any)) != 0 {
			t.Fatalf("pusher not deleted: %s", r.raw)
		}
	})
}

// TestPushersGoWithTheirDevice: a pusher belongs to the device whose token
// created it, and is removed when that device is logged out, deleted, or
// logged out by a password change (logout_devices) made on another device.
func TestPushersGoWithTheirDevice(t *testing.T) {
	eachPushEngine(t, func(t *testing.T, s *roomServer) {
		const pw = "password bob"
		first, _ := s.user("bob")
		devToken := func() string {
			r := s.login("bob", pw, nil)
			s.expect(r, 200, "")
			return r.str("access_token")
		}
		setPusher := func(tok, key string) {
			s.expect(s.do("POST", v3+"/pushers/set", tok, map[string]any{"kind": "http", "app_id": "vet.myelin", "pushkey": key,
				"app_display_name": "Myelin", "device_display_name": key, "lang": "en",
				"data": map[string]any{"url": "https://push.example/_matrix/push/v1/notify"}}), 200, "")
		}
		keys := func(tok string) []string {
			r := s.do("GET", v3+"/pushers", tok, nil)
			s.expect(r, 200, "")
			var out []string
			for _, p := range r.body["pushers"].([]any) {
				out = append(out, p.(map[string]any)["pushkey"].(string))
			}
			slices.Sort(out)
			return out
		}
		second, third := devToken(), devToken()
		setPusher(first, "first")
		setPusher(second, "second")
		setPusher(third, "third")

		// Logout: only the logged-out device's pusher goes.
		s.expect(s.do("POST", v3+"/logout", first, map[string]any{}), 200, "")
		if got := keys(second); !slices.Equal(got, []string{"second", "third"}) {
			t.Fatalf("after logout: %v", got)
		}

		// Device deletion (UIA) from another device.
		r := s.do("GET", v3+"/account/whoami", third, nil)
		s.expect(r, 200, "")
		thirdPath := v3 + "/devices/" + esc(r.str("device_id"))
		r = s.do("DELETE", thirdPath, second, map[string]any{})
		s.expect(r, 401, "")
		s.expect(s.do("DELETE", thirdPath, second, map[string]any{"auth": passwordAuth("bob", pw, r.str("session"))}), 200, "")
		if got := keys(second); !slices.Equal(got, []string{"second"}) {
			t.Fatalf("after the device deletion: %v", got)
		}

		fourth := devToken()
		setPusher(fourth, "fourth")

		// Password change with logout_devices (the default) from the
		// second device: every other device's pusher goes, its own stays.
		r = s.do("POST", v3+"/account/password", second, map[string]any{"new_password": "new password"})
		s.expect(r, 401, "")
		r = s.do("POST", v3+"/account/password", second, map[string]any{"new_password": "new password",
			"auth": passwordAuth("bob", pw, r.str("session"))})
		s.expect(r, 200, "")
		if got := keys(second); !slices.Equal(got, []string{"second"}) {
			t.Fatalf("after the password change: %v", got)
		}
	})
}
