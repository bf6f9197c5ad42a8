package clientapi

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// snapshot renders every account table except uia_sessions (a 401 challenge
// legitimately opens a session) as text, so a test can assert that a
// refused request changed nothing.
func (s *server) snapshot() string {
	s.t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT localpart, password_hash, is_admin, deactivated FROM users ORDER BY localpart`,
		`SELECT localpart, device_id, COALESCE(display_name, '<nil>'), COALESCE(last_seen_ip, ''), COALESCE(last_seen_ts, 0) FROM devices ORDER BY localpart, device_id`,
		`SELECT token_hash, localpart, device_id, COALESCE(refresh_hash, ''), COALESCE(expires_ts, 0) FROM access_tokens ORDER BY token_hash`,
		`SELECT token_hash, localpart, device_id, COALESCE(parent_hash, '') FROM refresh_tokens ORDER BY token_hash`,
		`SELECT localpart, field, value FROM profile_fields ORDER BY localpart, field`,
		`SELECT token, pending, completed FROM registration_tokens ORDER BY token`,
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

// TestBadInputs sends a table of malformed, unauthorised and semantically
// wrong requests to every endpoint and checks the exact status and errcode,
// that nothing is a 500, and that no account state changed.
func TestBadInputs(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *server) {
		ctx := context.Background()
		alice := s.register("alice", "correct horse")
		tok := alice.str("access_token")
		s.register("bob", "battery staple")
		gone := s.register("gone", "bygone password")
		s.expect(s.do("POST", v3+"/account/deactivate", gone.str("access_token"),
			map[string]any{"auth": passwordAuth("gone", "bygone password", "")}), 200, "")
		if _, err := s.svc.CreateRegistrationToken(ctx, "invite", nil, s.clock.now().Add(24*60*60*1e9)); err != nil {
			t.Fatal(err)
		}
		dead := gone.str("access_token")
		me := v3 + "/profile/@alice:test.local"
		huge := `{"x":"` + strings.Repeat("a", 70000) + `"}`

		type tc struct {
			name         string
			method, path string
			token        string
			body         any // string verbatim, nil for none
			status       int
			errcode      string
		}
		var cases []tc

		// Shape errors on every JSON endpoint.
		jsonEndpoints := []struct {
			method, path, token string
			wrongTypes          []string
		}{
			{"POST", v3 + "/register", "", []string{`{"username": 5}`, `{"password": true}`, `{"auth": "x"}`, `{"inhibit_login": "yes"}`, `{"refresh_token": 1}`, `{"initial_device_display_name": []}`}},
			{"POST", v3 + "/login", "", []string{`{"type": 1}`, `{"identifier": "alice"}`, `{"type": "m.login.password", "password": 5}`, `{"device_id": {}}`, `{"refresh_token": "true"}`}},
			{"POST", v3 + "/refresh", "", []string{`{"refresh_token": 5}`}},
			{"POST", v3 + "/account/password", tok, []string{`{"new_password": 5}`, `{"new_password": "long enough pw", "logout_devices": "yes"}`, `{"auth": []}`}},
			{"POST", v3 + "/account/deactivate", tok, []string{`{"auth": []}`, `{"erase": "yes"}`}},
			{"PUT", v3 + "/devices/X", tok, []string{`{"display_name": 5}`}},
			{"DELETE", v3 + "/devices/X", tok, []string{`{"auth": 1}`}},
			{"POST", v3 + "/delete_devices", tok, []string{`{"devices": "X"}`, `{"devices": [1]}`}},
			{"PUT", me + "/displayname", tok, []string{`{"displayname": 5}`, `{"displayname": null}`}},
			{"PUT", me + "/avatar_url", tok, []string{`{"avatar_url": 5}`}},
			{"POST", "/_synapse/admin/v1/register", "", []string{`{"nonce": 5}`, `{"admin": "yes"}`}},
		}
		for _, ep := range jsonEndpoints {
			add := func(name string, body any, status int, code string) {
				cases = append(cases, tc{name, ep.method, ep.path, ep.token, body, status, code})
			}
			add("not_json", `{"username": "x",`, 400, "M_NOT_JSON")
			add("garbage", "\x00\xff not json", 400, "M_NOT_JSON")
			if ep.method != "DELETE" {
				add("empty_body", "", 400, "M_NOT_JSON")
			}
			add("json_array", `[1, 2]`, 400, "M_BAD_JSON")
			add("json_string", `"hello"`, 400, "M_BAD_JSON")
			add("too_large", huge, 413, "M_TOO_LARGE")
			for i, w := range ep.wrongTypes {
				add(fmt.Sprintf("wrong_type_%d", i), w, 400, "M_BAD_JSON")
			}
		}

		// Token errors on every authenticated endpoint.
		authed := []struct{ method, path, body string }{
			{"GET", v3 + "/capabilities", ""},
			{"POST", v3 + "/logout", ""},
			{"POST", v3 + "/logout/all", ""},
			{"GET", v3 + "/account/whoami", ""},
			{"GET", v3 + "/devices", ""},
			{"GET", v3 + "/devices/X", ""},
			{"PUT", v3 + "/devices/X", `{"display_name": "x"}`},
			{"DELETE", v3 + "/devices/X", `{}`},
			{"POST", v3 + "/delete_devices", `{"devices": []}`},
			{"PUT", me + "/displayname", `{"displayname": "x"}`},
			{"DELETE", me + "/displayname", ""},
			{"GET", "/_synapse/admin/v1/users/@alice:test.local/admin", ""},
		}
		for _, ep := range authed {
			var body any
			if ep.body != "" {
				body = ep.body
			}
			cases = append(cases,
				tc{"missing_token", ep.method, ep.path, "", body, 401, "M_MISSING_TOKEN"},
				tc{"unknown_token", ep.method, ep.path, "myt_doesnotexist", body, 401, "M_UNKNOWN_TOKEN"},
				tc{"deactivated_token", ep.method, ep.path, dead, body, 401, "M_UNKNOWN_TOKEN"},
			)
		}
		// Endpoints where a token is optional still reject a bad one.
		for _, p := range []string{v3 + "/account/password", v3 + "/account/deactivate"} {
			cases = append(cases,
				tc{"unknown_token", "POST", p, "myt_doesnotexist", `{"new_password": "long enough pw"}`, 401, "M_UNKNOWN_TOKEN"},
				tc{"deactivated_token", "POST", p, dead, `{"new_password": "long enough pw"}`, 401, "M_UNKNOWN_TOKEN"})
		}

		// Semantic errors.
		reg := func(body string) string { return body }
		cases = append(cases,
			tc{"register_taken", "POST", v3 + "/register", "", reg(`{"username": "bob", "password": "long enough pw", "auth": {"type": "m.login.dummy"}}`), 400, "M_USER_IN_USE"},
			tc{"register_taken_case", "POST", v3 + "/register", "", reg(`{"username": "BOB", "password": "long enough pw"}`), 400, "M_USER_IN_USE"},
			tc{"register_deactivated", "POST", v3 + "/register", "", reg(`{"username": "gone", "password": "long enough pw"}`), 400, "M_USER_IN_USE"},
			tc{"register_weak_password", "POST", v3 + "/register", "", reg(`{"username": "newbie", "password": "short"}`), 400, "M_WEAK_PASSWORD"},
			tc{"register_bad_device", "POST", v3 + "/register", "", reg(`{"username": "newbie", "device_id": "a\u0007b"}`), 400, "M_INVALID_PARAM"},
			tc{"register_guest", "POST", v3 + "/register?kind=guest", "", `{}`, 403, "M_GUEST_ACCESS_FORBIDDEN"},
			tc{"register_bad_kind", "POST", v3 + "/register?kind=robot", "", `{}`, 400, "M_INVALID_PARAM"},
			tc{"register_unknown_stage", "POST", v3 + "/register", "", `{"username": "newbie", "password": "long enough pw", "auth": {"type": "m.login.recaptcha"}}`, 401, "M_FORBIDDEN"},
			tc{"register_bad_session", "POST", v3 + "/register", "", `{"username": "newbie", "password": "long enough pw", "auth": {"type": "m.login.dummy", "session": "forged"}}`, 400, "M_UNKNOWN"},
			tc{"register_bad_token", "POST", v3 + "/register", "", `{"username": "newbie", "password": "long enough pw", "auth": {"type": "m.login.registration_token", "token": "nope"}}`, 401, "M_FORBIDDEN"},
			tc{"register_malformed_token", "POST", v3 + "/register", "", `{"username": "newbie", "password": "long enough pw", "auth": {"type": "m.login.registration_token", "token": "no pe!"}}`, 401, "M_FORBIDDEN"},
			tc{"available_missing", "GET", v3 + "/register/available", "", nil, 400, "M_MISSING_PARAM"},
			tc{"available_taken", "GET", v3 + "/register/available?username=alice", "", nil, 400, "M_USER_IN_USE"},
			tc{"validity_missing", "GET", "/_matrix/client/v1/register/m.login.registration_token/validity", "", nil, 400, "M_MISSING_PARAM"},
			tc{"login_wrong_password", "POST", v3 + "/login", "", `{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "nope"}`, 403, "M_FORBIDDEN"},
			tc{"login_unknown_user", "POST", v3 + "/login", "", `{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "nobody"}, "password": "nope"}`, 403, "M_FORBIDDEN"},
			tc{"login_invalid_user", "POST", v3 + "/login", "", `{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "no body"}, "password": "nope"}`, 403, "M_FORBIDDEN"},
			tc{"login_deactivated", "POST", v3 + "/login", "", `{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "gone"}, "password": "bygone password"}`, 403, "M_USER_DEACTIVATED"},
			tc{"login_bad_type", "POST", v3 + "/login", "", `{"type": "m.login.carrier_pigeon"}`, 400, "M_UNKNOWN"},
			tc{"login_no_type", "POST", v3 + "/login", "", `{}`, 400, "M_UNKNOWN"},
			tc{"login_no_user", "POST", v3 + "/login", "", `{"type": "m.login.password", "password": "x"}`, 400, "M_MISSING_PARAM"},
			tc{"login_3pid", "POST", v3 + "/login", "", `{"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"}, "password": "x"}`, 403, "M_FORBIDDEN"},
			tc{"login_legacy_3pid", "POST", v3 + "/login", "", `{"type": "m.login.password", "medium": "email", "address": "a@b.c", "password": "x"}`, 403, "M_FORBIDDEN"},
			tc{"login_unknown_identifier", "POST", v3 + "/login", "", `{"type": "m.login.password", "identifier": {"type": "m.id.telepathy"}, "password": "x"}`, 400, "M_UNKNOWN"},
			tc{"login_bad_device", "POST", v3 + "/login", "", `{"type": "m.login.password", "user": "alice", "password": "correct horse", "device_id": "` + strings.Repeat("D", 300) + `"}`, 400, "M_INVALID_PARAM"},
			tc{"refresh_missing", "POST", v3 + "/refresh", "", `{}`, 400, "M_MISSING_PARAM"},
			tc{"refresh_unknown", "POST", v3 + "/refresh", "", `{"refresh_token": "myr_nope"}`, 401, "M_UNKNOWN_TOKEN"},
			tc{"refresh_with_access_token", "POST", v3 + "/refresh", "", `{"refresh_token": "` + tok + `"}`, 401, "M_UNKNOWN_TOKEN"},
			tc{"password_missing", "POST", v3 + "/account/password", tok, `{}`, 400, "M_MISSING_PARAM"},
			tc{"password_weak", "POST", v3 + "/account/password", tok, `{"new_password": "x"}`, 400, "M_WEAK_PASSWORD"},
			tc{"password_wrong_uia", "POST", v3 + "/account/password", tok, `{"new_password": "long enough pw", "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "nope"}}`, 401, "M_FORBIDDEN"},
			tc{"password_other_user_uia", "POST", v3 + "/account/password", tok, `{"new_password": "long enough pw", "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": "battery staple"}}`, 403, "M_FORBIDDEN"},
			tc{"password_no_auth", "POST", v3 + "/account/password", tok, `{"new_password": "long enough pw"}`, 401, ""},
			tc{"password_deactivated_uia", "POST", v3 + "/account/password", "", `{"new_password": "long enough pw", "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "gone"}, "password": "bygone password"}}`, 401, "M_FORBIDDEN"},
			tc{"deactivate_wrong_uia", "POST", v3 + "/account/deactivate", tok, `{"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "nope"}}`, 401, "M_FORBIDDEN"},
			tc{"deactivate_dummy", "POST", v3 + "/account/deactivate", tok, `{"auth": {"type": "m.login.dummy"}}`, 401, "M_FORBIDDEN"},
			tc{"delete_device_wrong_uia", "DELETE", v3 + "/devices/" + alice.str("device_id"), tok, `{"auth": {"type": "m.login.password", "user": "alice", "password": "nope"}}`, 401, "M_FORBIDDEN"},
			tc{"delete_devices_missing", "POST", v3 + "/delete_devices", tok, `{}`, 400, "M_MISSING_PARAM"},
			tc{"device_unknown", "GET", v3 + "/devices/NOSUCH", tok, nil, 404, "M_NOT_FOUND"},
			tc{"device_rename_unknown", "PUT", v3 + "/devices/NOSUCH", tok, `{"display_name": "x"}`, 404, "M_NOT_FOUND"},
			tc{"profile_other_user", "PUT", v3 + "/profile/@bob:test.local/displayname", tok, `{"displayname": "x"}`, 403, "M_FORBIDDEN"},
			tc{"profile_missing_key", "PUT", me + "/displayname", tok, `{"avatar_url": "mxc://a/b"}`, 400, "M_MISSING_PARAM"},
			tc{"profile_bad_key", "PUT", me + "/Not-A-Key", tok, `{"Not-A-Key": 1}`, 400, "M_INVALID_PARAM"},
			tc{"profile_bad_avatar", "PUT", me + "/avatar_url", tok, `{"avatar_url": "https://example.com/a.png"}`, 400, "M_INVALID_PARAM"},
			tc{"profile_long_name", "PUT", me + "/displayname", tok, `{"displayname": "` + strings.Repeat("n", 300) + `"}`, 400, "M_INVALID_PARAM"},
			tc{"profile_unknown_user", "GET", v3 + "/profile/@nobody:test.local", "", nil, 404, "M_NOT_FOUND"},
			tc{"profile_deactivated_user", "GET", v3 + "/profile/@gone:test.local/displayname", "", nil, 404, "M_NOT_FOUND"},
			tc{"profile_not_a_user_id", "GET", v3 + "/profile/alice", "", nil, 404, "M_NOT_FOUND"},
			tc{"shared_secret_missing", "POST", "/_synapse/admin/v1/register", "", `{}`, 400, "M_MISSING_PARAM"},
			tc{"shared_secret_bad_nonce", "POST", "/_synapse/admin/v1/register", "", `{"nonce": "x", "username": "root", "password": "long enough pw", "mac": "00"}`, 400, "M_UNKNOWN"},
			tc{"admin_status_not_admin", "GET", "/_synapse/admin/v1/users/@alice:test.local/admin", tok, nil, 403, "M_FORBIDDEN"},
			tc{"unknown_endpoint", "GET", v3 + "/rooms/!x:y/messages", tok, nil, 404, "M_UNRECOGNIZED"},
			tc{"unknown_prefix", "POST", "/_matrix/client/r9/login", "", `{}`, 404, "M_UNRECOGNIZED"},
			tc{"unknown_root", "GET", "/", "", nil, 404, "M_UNRECOGNIZED"},
			tc{"wrong_method_login", "PUT", v3 + "/login", "", `{}`, 405, "M_UNRECOGNIZED"},
			tc{"wrong_method_whoami", "POST", v3 + "/account/whoami", tok, `{}`, 405, "M_UNRECOGNIZED"},
			tc{"wrong_method_register", "GET", v3 + "/register", "", nil, 405, "M_UNRECOGNIZED"},
			tc{"wrong_method_versions", "POST", "/_matrix/client/versions", "", nil, 405, "M_UNRECOGNIZED"},
		)

		before := s.snapshot()
		for _, c := range cases {
			t.Run(c.name+"_"+c.method+"_"+strings.ReplaceAll(strings.TrimPrefix(c.path, "/"), "/", "_"), func(t *testing.T) {
				s.t = t
				r := s.do(c.method, c.path, c.token, c.body)
				if r.status >= 500 {
					t.Fatalf("server error: %s", r.raw)
				}
				s.expect(r, c.status, c.errcode)
				if c.status == 401 && c.errcode != "M_MISSING_TOKEN" && c.errcode != "M_UNKNOWN_TOKEN" && r.body["flows"] == nil {
					t.Fatalf("UIA 401 without flows: %s", r.raw)
				}
				if c.errcode == "M_UNKNOWN_TOKEN" && r.body["soft_logout"] != false {
					t.Fatalf("soft_logout must be false: %s", r.raw)
				}
				if after := s.snapshot(); after != before {
					t.Fatalf("state changed:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			})
		}
		// The request that declares a huge Content-Length is refused before
		// reading.
		req := httptest.NewRequest("POST", v3+"/login", strings.NewReader("{}"))
		req.ContentLength = 1 << 30
		rec := httptest.NewRecorder()
		s.h.ServeHTTP(rec, req)
		if rec.Code != 413 || !strings.Contains(rec.Body.String(), "M_TOO_LARGE") {
			t.Fatalf("huge Content-Length: %d %s", rec.Code, rec.Body.String())
		}
		// Header and query tokens that disagree.
		req = httptest.NewRequest("GET", v3+"/account/whoami?access_token=other", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec = httptest.NewRecorder()
		s.h.ServeHTTP(rec, req)
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), "M_MISSING_TOKEN") {
			t.Fatalf("conflicting tokens: %d %s", rec.Code, rec.Body.String())
		}
		// A non-Bearer Authorization header is no token.
		req = httptest.NewRequest("GET", v3+"/account/whoami", nil)
		req.Header.Set("Authorization", "Basic YTpi")
		rec = httptest.NewRecorder()
		s.h.ServeHTTP(rec, req)
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), "M_MISSING_TOKEN") {
			t.Fatalf("basic auth: %d %s", rec.Code, rec.Body.String())
		}
	})
}
