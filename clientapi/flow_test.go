package clientapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"myelin/config"
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
		// The deprecated query parameter works too.
		s.expect(s.do("GET", v3+"/account/whoami?access_token="+tok, "", nil), 200, "")
		// Registration set the displayname and the device name.
		p := s.do("GET", v3+"/profile/@alice:test.local", "", nil)
		s.expect(p, 200, "")
		if p.str("displayname") != "alice" {
			t.Fatalf("profile = %s", p.raw)
		}
		d := s.do("GET", v3+"/devices/"+r.str("device_id"), tok, nil)
		s.expect(d, 200, "")
		if d.str("display_name") != "Phone" || d.str("last_seen_ip") != "192.0.2.1" {
			t.Fatalf("device = %s", d.raw)
		}

		l := s.login("alice", "correct horse", map[string]any{"device_id": "LAPTOP"})
		s.expect(l, 200, "")
		if l.str("device_id") != "LAPTOP" || l.str("user_id") != "@alice:test.local" || l.str("access_token") == tok {
			t.Fatalf("login = %s", l.raw)
		}
		if wk, _ := l.body["well_known"].(map[string]any); wk["m.homeserver"] == nil {
			t.Fatalf("login well_known = %s", l.raw)
		}
		who = s.do("GET", v3+"/account/whoami", l.str("access_token"), nil)
		s.expect(who, 200, "")
		if who.str("device_id") != "LAPTOP" {
			t.Fatalf("whoami after login = %s", who.raw)
		}
		// Logging in again with the same device_id revokes its old token.
		l2 := s.login("ALICE", "correct horse", map[string]any{"device_id": "LAPTOP"})
		s.expect(l2, 200, "")
		s.expect(s.do("GET", v3+"/account/whoami", l.str("access_token"), nil), 401, "M_UNKNOWN_TOKEN")
		// Legacy top-level "user" with a full user ID.
		s.expect(s.do("POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "@alice:test.local", "password": "correct horse"}), 200, "")
		s.expect(s.login("alice", "wrong horse", nil), 403, "M_FORBIDDEN")
		s.expect(s.login("@alice:elsewhere.example", "correct horse", nil), 403, "M_FORBIDDEN")
	})
}

func TestRegistrationVariants(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *server) {
		// inhibit_login: no token, no device.
		r := s.do("POST", v3+"/register", "", map[string]any{"username": "bot", "password": "long enough pw", "inhibit_login": true,
			"auth": map[string]any{"type": "m.login.dummy"}})
		s.expect(r, 200, "")
		if r.str("user_id") != "@bot:test.local" || r.body["access_token"] != nil || r.body["device_id"] != nil {
			t.Fatalf("inhibit_login = %s", r.raw)
		}
		s.expect(s.login("bot", "long enough pw", nil), 200, "")
		// No username: a generated, valid localpart; client-chosen device_id;
		// refresh_token requested.
		r = s.do("POST", v3+"/register", "", map[string]any{"password": "long enough pw", "device_id": "MYDEV", "refresh_token": true,
			"auth": map[string]any{"type": "m.login.dummy"}})
		s.expect(r, 200, "")
		if !strings.HasPrefix(r.str("user_id"), "@u") || r.str("device_id") != "MYDEV" || !strings.HasPrefix(r.str("refresh_token"), "myr_") {
			t.Fatalf("generated = %s", r.raw)
		}
		// Availability.
		s.expect(s.do("GET", v3+"/register/available?username=bot", "", nil), 400, "M_USER_IN_USE")
		a := s.do("GET", v3+"/register/available?username=free", "", nil)
		s.expect(a, 200, "")
		if a.body["available"] != true {
			t.Fatalf("available = %s", a.raw)
		}
		// Guests are not supported.
		s.expect(s.do("POST", v3+"/register?kind=guest", "", map[string]any{}), 403, "M_GUEST_ACCESS_FORBIDDEN")
		// Stages out of order / not offered.
		r = s.do("POST", v3+"/register", "", map[string]any{"username": "carol", "password": "long enough pw",
			"auth": map[string]any{"type": "m.login.password"}})
		s.expect(r, 401, "M_FORBIDDEN")
		if r.str("session") == "" || r.body["flows"] == nil {
			t.Fatalf("failed stage must repeat the flows: %s", r.raw)
		}
		// Unknown session.
		s.expect(s.do("POST", v3+"/register", "", map[string]any{"username": "carol", "password": "long enough pw",
			"auth": map[string]any{"type": "m.login.dummy", "session": "nope"}}), 400, "M_UNKNOWN")
		// Completed flow but no password: refused, nothing created.
		s.expect(s.do("POST", v3+"/register", "", map[string]any{"username": "carol",
			"auth": map[string]any{"type": "m.login.dummy"}}), 400, "M_MISSING_PARAM")
		s.expect(s.do("GET", v3+"/register/available?username=carol", "", nil), 200, "")
	})
}

func TestRegistrationDisabledAndTokenRequired(t *testing.T) {
	eachEngine(t, func(c *config.Config) { c.Registration.Enabled = false }, func(t *testing.T, s *server) {
		s.expect(s.do("POST", v3+"/register", "", map[string]any{"username": "x", "password": "long enough pw"}), 403, "M_FORBIDDEN")
		s.expect(s.do("GET", v3+"/register/available?username=x", "", nil), 403, "M_FORBIDDEN")
		s.expect(s.do("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=abc", "", nil), 403, "M_FORBIDDEN")
	})
	eachEngine(t, func(c *config.Config) { c.Registration.RequireToken = true }, func(t *testing.T, s *server) {
		ctx := context.Background()
		one := 1
		tok, err := s.svc.CreateRegistrationToken(ctx, "", &one, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		valid := func(tk string) bool {
			r := s.do("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token="+tk, "", nil)
			s.expect(r, 200, "")
			return r.body["valid"] == true
		}
		if !valid(tok) || valid("unknown") || valid("bad%20token%21") {
			t.Fatal("validity answers wrong")
		}
		r := s.do("POST", v3+"/register", "", map[string]any{"username": "tina", "password": "long enough pw"})
		s.expect(r, 401, "")
		if flows := r.body["flows"].([]any); len(flows) != 1 {
			t.Fatalf("flows = %v", flows)
		}
		// Dummy is not offered.
		s.expect(s.do("POST", v3+"/register", "", map[string]any{"username": "tina", "password": "long enough pw",
			"auth": map[string]any{"type": "m.login.dummy", "session": r.str("session")}}), 401, "M_FORBIDDEN")
		s.expect(s.do("POST", v3+"/register", "", map[string]any{"username": "tina", "password": "long enough pw",
			"auth": map[string]any{"type": "m.login.registration_token", "token": "wrong", "session": r.str("session")}}), 401, "M_FORBIDDEN")
		ok := s.do("POST", v3+"/register", "", map[string]any{"username": "tina", "password": "long enough pw",
			"auth": map[string]any{"type": "m.login.registration_token", "token": tok, "session": r.str("session")}})
		s.expect(ok, 200, "")
		if valid(tok) {
			t.Fatal("single-use token still valid after use")
		}
		s.expect(s.do("POST", v3+"/register", "", map[string]any{"username": "tom", "password": "long enough pw",
			"auth": map[string]any{"type": "m.login.registration_token", "token": tok}}), 401, "M_FORBIDDEN")
		s.expect(s.do("GET", v3+"/register/available?username=tom", "", nil), 200, "")
		// Expired tokens are invalid.
		exp, err := s.svc.CreateRegistrationToken(ctx, "soon", nil, s.clock.now().Add(time.Minute))
		if err != nil || exp != "soon" {
			t.Fatal(exp, err)
		}
		if !valid("soon") {
			t.Fatal("fresh token invalid")
		}
		s.clock.advance(2 * time.Minute)
		if valid("soon") {
			t.Fatal("expired token valid")
		}
	})
}

func sharedSecretMAC(secret, nonce, user, password string, admin bool) string {
	m := hmac.New(sha1.New, []byte(secret))
	role := "notadmin"
	if admin {
		role = "admin"
	}
	m.Write([]byte(nonce + "\x00" + user + "\x00" + password + "\x00" + role))
	return hex.EncodeToString(m.Sum(nil))
}

func TestSharedSecretRegistration(t *testing.T) {
	eachEngine(t, func(c *config.Config) { c.Registration.Enabled = false }, func(t *testing.T, s *server) {
		nonce := func() string {
			r := s.do("GET", "/_synapse/admin/v1/register", "", nil)
			s.expect(r, 200, "")
			return r.str("nonce")
		}
		n := nonce()
		r := s.do("POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": n, "username": "root", "password": "long enough pw",
			"admin": true, "mac": sharedSecretMAC("s3cret", n, "root", "long enough pw", true)})
		s.expect(r, 200, "")
		if r.str("user_id") != "@root:test.local" || r.str("access_token") == "" {
			t.Fatalf("shared secret = %s", r.raw)
		}
		// Nonces are single use.
		s.expect(s.do("POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": n, "username": "root2", "password": "long enough pw",
			"mac": sharedSecretMAC("s3cret", n, "root2", "long enough pw", false)}), 400, "M_UNKNOWN")
		// Wrong MAC (admin flag flipped) burns the nonce.
		n = nonce()
		s.expect(s.do("POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": n, "username": "eve", "password": "long enough pw",
			"admin": true, "mac": sharedSecretMAC("s3cret", n, "eve", "long enough pw", false)}), 403, "M_FORBIDDEN")
		s.expect(s.do("POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": n, "username": "eve", "password": "long enough pw",
			"admin": true, "mac": sharedSecretMAC("s3cret", n, "eve", "long enough pw", true)}), 400, "M_UNKNOWN")
		// Nonces expire.
		n = nonce()
		s.clock.advance(2 * time.Minute)
		s.expect(s.do("POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": n, "username": "late", "password": "long enough pw",
			"mac": sharedSecretMAC("s3cret", n, "late", "long enough pw", false)}), 400, "M_UNKNOWN")
		// Taken and invalid names.
		n = nonce()
		s.expect(s.do("POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": n, "username": "root", "password": "long enough pw",
			"mac": sharedSecretMAC("s3cret", n, "root", "long enough pw", false)}), 400, "M_USER_IN_USE")
		n = nonce()
		s.expect(s.do("POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": n, "username": "bad name", "password": "long enough pw",
			"mac": sharedSecretMAC("s3cret", n, "bad name", "long enough pw", false)}), 400, "M_INVALID_USERNAME")
		u, err := s.svc.CreateUser(context.Background(), "@cli:test.local", "long enough pw", true)
		if err != nil || u != "@cli:test.local" {
			t.Fatal(u, err)
		}
		cli := s.login("cli", "long enough pw", nil)
		s.expect(cli, 200, "")
		// The admin bit is visible through Synapse's admin status API, to
		// admins only.
		root := r.str("access_token")
		for user, want := range map[string]bool{"@root:test.local": true, "@cli:test.local": true} {
			st := s.do("GET", "/_synapse/admin/v1/users/"+user+"/admin", root, nil)
			s.expect(st, 200, "")
			if st.body["admin"] != want {
				t.Fatalf("admin status of %s = %s", user, st.raw)
			}
		}
		plain, err := s.svc.CreateUser(context.Background(), "plain", "long enough pw", false)
		if err != nil {
			t.Fatal(err)
		}
		if st := s.do("GET", "/_synapse/admin/v1/users/"+plain+"/admin", root, nil); st.body["admin"] != false {
			t.Fatalf("admin status of %s = %s", plain, st.raw)
		}
		pl := s.login("plain", "long enough pw", nil)
		s.expect(s.do("GET", "/_synapse/admin/v1/users/@root:test.local/admin", pl.str("access_token"), nil), 403, "M_FORBIDDEN")
		s.expect(s.do("GET", "/_synapse/admin/v1/users/@nobody:test.local/admin", root, nil), 404, "M_NOT_FOUND")
		s.expect(s.do("GET", "/_synapse/admin/v1/users/@root:test.local/admin", "", nil), 401, "M_MISSING_TOKEN")
	})
	eachEngine(t, func(c *config.Config) { c.Registration.SharedSecret = "" }, func(t *testing.T, s *server) {
		s.expect(s.do("GET", "/_synapse/admin/v1/register", "", nil), 400, "M_UNKNOWN")
		s.expect(s.do("POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": "x"}), 400, "M_UNKNOWN")
	})
}

func TestDevicesAndUIA(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *server) {
		phone := s.register("alice", "correct horse")
		tok := phone.str("access_token")
		laptop := s.login("alice", "correct horse", map[string]any{"device_id": "LAPTOP"})
		tablet := s.login("alice", "correct horse", map[string]any{"device_id": "TABLET", "initial_device_display_name": "Tab"})
		bob := s.register("bob", "battery staple")

		list := s.do("GET", v3+"/devices", tok, nil)
		s.expect(list, 200, "")
		if ds := list.body["devices"].([]any); len(ds) != 3 {
			t.Fatalf("devices = %s", list.raw)
		}
		s.expect(s.do("PUT", v3+"/devices/LAPTOP", tok, map[string]any{"display_name": "Work laptop"}), 200, "")
		if d := s.do("GET", v3+"/devices/LAPTOP", tok, nil); d.str("display_name") != "Work laptop" {
			t.Fatalf("renamed = %s", d.raw)
		}
		s.expect(s.do("PUT", v3+"/devices/NOPE", tok, map[string]any{"display_name": "x"}), 404, "M_NOT_FOUND")
		// Bob cannot see Alice's device.
		s.expect(s.do("GET", v3+"/devices/LAPTOP", bob.str("access_token"), nil), 404, "M_NOT_FOUND")

		// DELETE with no body: the UIA challenge.
		r := s.do("DELETE", v3+"/devices/LAPTOP", tok, nil)
		s.expect(r, 401, "")
		sess := r.str("session")
		// Wrong password: 401 M_FORBIDDEN, device still there.
		r = s.do("DELETE", v3+"/devices/LAPTOP", tok, map[string]any{"auth": passwordAuth("alice", "wrong", sess)})
		s.expect(r, 401, "M_FORBIDDEN")
		s.expect(s.do("GET", v3+"/account/whoami", laptop.str("access_token"), nil), 200, "")
		// Bob's password does not delete Alice's device: authenticating as
		// another user is refused outright (403), and the device stays.
		s.expect(s.do("DELETE", v3+"/devices/LAPTOP", tok, map[string]any{"auth": passwordAuth("bob", "battery staple", sess)}), 403, "M_FORBIDDEN")
		s.expect(s.do("GET", v3+"/account/whoami", laptop.str("access_token"), nil), 200, "")
		// Someone else's session is refused.
		rb := s.do("DELETE", v3+"/devices/X", bob.str("access_token"), nil)
		rb = s.do("DELETE", v3+"/devices/X", bob.str("access_token"), map[string]any{"auth": passwordAuth("bob", "battery staple", rb.str("session"))})
		s.expect(rb, 200, "")
		s.expect(s.do("DELETE", v3+"/devices/LAPTOP", tok, map[string]any{"auth": passwordAuth("alice", "correct horse", sess)}), 200, "")
		s.expect(s.do("GET", v3+"/account/whoami", laptop.str("access_token"), nil), 401, "M_UNKNOWN_TOKEN")
		s.expect(s.do("GET", v3+"/devices/LAPTOP", tok, nil), 404, "M_NOT_FOUND")
		// The session is consumed.
		s.expect(s.do("DELETE", v3+"/devices/TABLET", tok, map[string]any{"auth": map[string]any{"session": sess}}), 400, "M_UNKNOWN")

		// Bulk delete.
		r = s.do("POST", v3+"/delete_devices", tok, map[string]any{"devices": []string{"TABLET", "GONE"}})
		s.expect(r, 401, "")
		s.expect(s.do("POST", v3+"/delete_devices", tok, map[string]any{"devices": []string{"TABLET", "GONE"},
			"auth": passwordAuth("@alice:test.local", "correct horse", r.str("session"))}), 200, "")
		s.expect(s.do("GET", v3+"/account/whoami", tablet.str("access_token"), nil), 401, "M_UNKNOWN_TOKEN")
		s.expect(s.do("GET", v3+"/account/whoami", tok, nil), 200, "")
	})
}

func TestPasswordChange(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *server) {
		phone := s.register("alice", "correct horse")
		tok := phone.str("access_token")
		laptop := s.login("alice", "correct horse", nil)
		s.expect(s.do("POST", v3+"/account/password", tok, map[string]any{"new_password": "short"}), 400, "M_WEAK_PASSWORD")
		r := s.do("POST", v3+"/account/password", tok, map[string]any{"new_password": "new password 1"})
		s.expect(r, 401, "")
		r = s.do("POST", v3+"/account/password", tok, map[string]any{"new_password": "new password 1",
			"auth": passwordAuth("alice", "wrong", r.str("session"))})
		s.expect(r, 401, "M_FORBIDDEN")
		s.expect(s.login("alice", "correct horse", nil), 200, "") // unchanged
		s.expect(s.do("POST", v3+"/account/password", tok, map[string]any{"new_password": "new password 1",
			"auth": passwordAuth("alice", "correct horse", r.str("session"))}), 200, "")
		// Default logout_devices=true: other devices gone, this one kept.
		s.expect(s.do("GET", v3+"/account/whoami", laptop.str("access_token"), nil), 401, "M_UNKNOWN_TOKEN")
		s.expect(s.do("GET", v3+"/account/whoami", tok, nil), 200, "")
		s.expect(s.login("alice", "correct horse", nil), 403, "M_FORBIDDEN")
		other := s.login("alice", "new password 1", nil)
		s.expect(other, 200, "")
		// logout_devices=false keeps the others.
		r = s.do("POST", v3+"/account/password", tok, map[string]any{"new_password": "new password 2", "logout_devices": false,
			"auth": passwordAuth("alice", "new password 1", "")})
		s.expect(r, 200, "")
		s.expect(s.do("GET", v3+"/account/whoami", other.str("access_token"), nil), 200, "")
		// Without an access token, the password stage names the account.
		r = s.do("POST", v3+"/account/password", "", map[string]any{"new_password": "new password 3",
			"auth": passwordAuth("alice", "new password 2", "")})
		s.expect(r, 200, "")
		s.expect(s.do("GET", v3+"/account/whoami", tok, nil), 401, "M_UNKNOWN_TOKEN")
		s.expect(s.login("alice", "new password 3", nil), 200, "")
	})
}

func TestDeactivate(t *testing.T) {
	eachEngine(t, func(c *config.Config) { c.Auth.AccessTokenLifetime = time.Hour }, func(t *testing.T, s *server) {
		reg := s.do("POST", v3+"/register", "", map[string]any{"username": "alice", "password": "correct horse", "refresh_token": true,
			"auth": map[string]any{"type": "m.login.dummy"}})
		s.expect(reg, 200, "")
		tok := reg.str("access_token")
		s.expect(s.do("PUT", v3+"/profile/@alice:test.local/displayname", tok, map[string]any{"displayname": "Alice"}), 200, "")
		r := s.do("POST", v3+"/account/deactivate", tok, map[string]any{})
		s.expect(r, 401, "")
		r = s.do("POST", v3+"/account/deactivate", tok, map[string]any{"auth": passwordAuth("alice", "nope", r.str("session"))})
		s.expect(r, 401, "M_FORBIDDEN")
		s.expect(s.do("GET", v3+"/account/whoami", tok, nil), 200, "")
		r = s.do("POST", v3+"/account/deactivate", tok, map[string]any{"auth": passwordAuth("alice", "correct horse", r.str("session"))})
		s.expect(r, 200, "")
		if r.str("id_server_unbind_result") != "success" {
			t.Fatalf("deactivate = %s", r.raw)
		}
		// Every path back in is closed.
		s.expect(s.do("GET", v3+"/account/whoami", tok, nil), 401, "M_UNKNOWN_TOKEN")
		s.expect(s.do("POST", v3+"/refresh", "", map[string]any{"refresh_token": reg.str("refresh_token")}), 401, "M_UNKNOWN_TOKEN")
		s.expect(s.login("alice", "correct horse", nil), 403, "M_USER_DEACTIVATED")
		s.expect(s.do("POST", v3+"/register", "", map[string]any{"username": "alice", "password": "correct horse"}), 400, "M_USER_IN_USE")
		s.expect(s.do("GET", v3+"/register/available?username=alice", "", nil), 400, "M_USER_IN_USE")
		nr := s.do("GET", "/_synapse/admin/v1/register", "", nil)
		s.expect(s.do("POST", "/_synapse/admin/v1/register", "", map[string]any{"nonce": nr.str("nonce"), "username": "alice",
			"password": "correct horse", "mac": sharedSecretMAC("s3cret", nr.str("nonce"), "alice", "correct horse", false)}), 400, "M_USER_IN_USE")
		if _, err := s.svc.CreateUser(context.Background(), "alice", "correct horse", false); err == nil {
			t.Fatal("CreateUser re-created a deactivated account")
		}
		s.expect(s.do("GET", v3+"/profile/@alice:test.local", "", nil), 404, "M_NOT_FOUND")
		// Unauthenticated deactivation by password.
		s.register("bob", "battery staple")
		s.expect(s.do("POST", v3+"/account/deactivate", "", map[string]any{"auth": passwordAuth("bob", "battery staple", "")}), 200, "")
		s.expect(s.login("bob", "battery staple", nil), 403, "M_USER_DEACTIVATED")
	})
}

func TestRefreshAndSoftLogout(t *testing.T) {
	eachEngine(t, func(c *config.Config) { c.Auth.AccessTokenLifetime = time.Minute }, func(t *testing.T, s *server) {
		s.register("alice", "correct horse")
		l := s.login("alice", "correct horse", map[string]any{"refresh_token": true})
		s.expect(l, 200, "")
		if l.body["expires_in_ms"] != float64(60000) || l.str("refresh_token") == "" {
			t.Fatalf("login = %s", l.raw)
		}
		// Without refresh_token the access token does not expire.
		plain := s.login("alice", "correct horse", nil)
		if plain.body["expires_in_ms"] != nil || plain.body["refresh_token"] != nil {
			t.Fatalf("plain login = %s", plain.raw)
		}
		s.clock.advance(2 * time.Minute)
		r := s.do("GET", v3+"/account/whoami", l.str("access_token"), nil)
		s.expect(r, 401, "M_UNKNOWN_TOKEN")
		if r.body["soft_logout"] != true {
			t.Fatalf("expired refreshable token: %s", r.raw)
		}
		s.expect(s.do("GET", v3+"/account/whoami", plain.str("access_token"), nil), 200, "")
		ref := s.do("POST", v3+"/refresh", "", map[string]any{"refresh_token": l.str("refresh_token")})
		s.expect(ref, 200, "")
		if ref.str("access_token") == "" || ref.str("refresh_token") == "" || ref.body["expires_in_ms"] != float64(60000) {
			t.Fatalf("refresh = %s", ref.raw)
		}
		// Old refresh token remains valid until the new pair is used.
		who := s.do("GET", v3+"/account/whoami", ref.str("access_token"), nil)
		s.expect(who, 200, "")
		if who.str("device_id") != l.str("device_id") {
			t.Fatalf("refreshed token bound to another device: %s", who.raw)
		}
		r = s.do("POST", v3+"/refresh", "", map[string]any{"refresh_token": l.str("refresh_token")})
		s.expect(r, 401, "M_UNKNOWN_TOKEN")
		if r.body["soft_logout"] != false {
			t.Fatalf("revoked refresh: %s", r.raw)
		}
		// An expired token can still log its own device out.
		exp := s.login("alice", "correct horse", map[string]any{"refresh_token": true})
		s.clock.advance(2 * time.Minute)
		s.expect(s.do("GET", v3+"/account/whoami", exp.str("access_token"), nil), 401, "M_UNKNOWN_TOKEN")
		s.expect(s.do("POST", v3+"/logout", exp.str("access_token"), nil), 200, "")
		s.expect(s.do("POST", v3+"/refresh", "", map[string]any{"refresh_token": exp.str("refresh_token")}), 401, "M_UNKNOWN_TOKEN")
		// Logout revokes the refresh token too.
		s.expect(s.do("POST", v3+"/logout", ref.str("access_token"), nil), 200, "")
		s.expect(s.do("POST", v3+"/refresh", "", map[string]any{"refresh_token": ref.str("refresh_token")}), 401, "M_UNKNOWN_TOKEN")
		// An expired token whose device is gone is a hard logout.
		r = s.do("GET", v3+"/account/whoami", ref.str("access_token"), nil)
		if r.status != 401 || r.body["soft_logout"] != false {
			t.Fatalf("logged-out token: %s", r.raw)
		}
	})
}

func TestLogoutAll(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *server) {
		a := s.register("alice", "correct horse")
		b := s.login("alice", "correct horse", nil)
		other := s.register("bob", "battery staple")
		s.expect(s.do("POST", v3+"/logout/all", a.str("access_token"), nil), 200, "")
		for _, tok := range []string{a.str("access_token"), b.str("access_token")} {
			r := s.do("GET", v3+"/account/whoami", tok, nil)
			s.expect(r, 401, "M_UNKNOWN_TOKEN")
			if r.body["soft_logout"] != false {
				t.Fatalf("soft_logout after logout/all: %s", r.raw)
			}
		}
		s.expect(s.do("GET", v3+"/account/whoami", other.str("access_token"), nil), 200, "")
		s.expect(s.login("alice", "correct horse", nil), 200, "")
	})
}

func TestProfile(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *server) {
		tok := s.register("alice", "correct horse").str("access_token")
		bob := s.register("bob", "battery staple").str("access_token")
		me := v3 + "/profile/@alice:test.local"
		s.expect(s.do("PUT", me+"/displayname", tok, map[string]any{"displayname": "Alice 🐈"}), 200, "")
		s.expect(s.do("PUT", me+"/avatar_url", tok, map[string]any{"avatar_url": "mxc://test.local/abc"}), 200, "")
		s.expect(s.do("PUT", me+"/m.tz", tok, map[string]any{"m.tz": "Europe/Berlin"}), 200, "")
		s.expect(s.do("PUT", me+"/chat.myelin.role", tok, `{"chat.myelin.role": {"title": "Vet", "n": 12345678901234567890}}`), 200, "")
		p := s.do("GET", me, "", nil)
		s.expect(p, 200, "")
		if p.str("displayname") != "Alice 🐈" || p.str("avatar_url") != "mxc://test.local/abc" || p.str("m.tz") != "Europe/Berlin" || p.body["chat.myelin.role"] == nil {
			t.Fatalf("profile = %s", p.raw)
		}
		if !strings.Contains(p.raw, "12345678901234567890") {
			t.Fatalf("custom field lost precision: %s", p.raw)
		}
		f := s.do("GET", me+"/displayname", "", nil)
		s.expect(f, 200, "")
		if f.str("displayname") != "Alice 🐈" || len(f.body) != 1 {
			t.Fatalf("field = %s", f.raw)
		}
		// Percent-encoded user IDs route the same.
		s.expect(s.do("GET", v3+"/profile/%40alice%3Atest.local/displayname", "", nil), 200, "")
		// Clearing with "" and DELETE.
		s.expect(s.do("PUT", me+"/avatar_url", tok, map[string]any{"avatar_url": ""}), 200, "")
		s.expect(s.do("GET", me+"/avatar_url", "", nil), 404, "M_NOT_FOUND")
		s.expect(s.do("DELETE", me+"/m.tz", tok, nil), 200, "")
		s.expect(s.do("GET", me+"/m.tz", "", nil), 404, "M_NOT_FOUND")
		// Only your own.
		s.expect(s.do("PUT", me+"/displayname", bob, map[string]any{"displayname": "Mallory"}), 403, "M_FORBIDDEN")
		s.expect(s.do("DELETE", me+"/displayname", bob, nil), 403, "M_FORBIDDEN")
		s.expect(s.do("PUT", v3+"/profile/@ghost:test.local/displayname", tok, map[string]any{"displayname": "x"}), 403, "M_FORBIDDEN")
		// Unknown users.
		s.expect(s.do("GET", v3+"/profile/@ghost:test.local", "", nil), 404, "M_NOT_FOUND")
		s.expect(s.do("GET", v3+"/profile/@ghost:test.local/displayname", "", nil), 404, "M_NOT_FOUND")
		s.expect(s.do("GET", v3+"/profile/@alice:remote.example", "", nil), 404, "M_NOT_FOUND")
		// Size limits.
		big := strings.Repeat("x", 40000)
		s.expect(s.do("PUT", me+"/org.example.a", tok, map[string]any{"org.example.a": big}), 200, "")
		s.expect(s.do("PUT", me+"/org.example.b", tok, map[string]any{"org.example.b": big}), 400, "M_PROFILE_TOO_LARGE")
		s.expect(s.do("GET", me+"/org.example.b", "", nil), 404, "M_NOT_FOUND")
		s.expect(s.do("PUT", me+"/org."+strings.Repeat("k", 260), tok, map[string]any{"org." + strings.Repeat("k", 260): 1}), 400, "M_KEY_TOO_LARGE")
	})
}

func TestDiscovery(t *testing.T) {
	eachEngine(t, func(c *config.Config) { c.PublicBaseURL = "https://matrix.test.local" }, func(t *testing.T, s *server) {
		v := s.do("GET", "/_matrix/client/versions", "", nil)
		s.expect(v, 200, "")
		vs := v.body["versions"].([]any)
		if vs[0] != "v1.1" || vs[len(vs)-1] != "v1.19" {
			t.Fatalf("versions = %s", v.raw)
		}
		for _, x := range vs {
			if strings.HasPrefix(x.(string), "r0") {
				t.Fatalf("advertises r0: %s", v.raw)
			}
		}
		wk := s.do("GET", "/.well-known/matrix/client", "", nil)
		s.expect(wk, 200, "")
		if wk.body["m.homeserver"].(map[string]any)["base_url"] != "https://matrix.test.local" {
			t.Fatalf("well-known client = %s", wk.raw)
		}
		if wk.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatal("well-known without CORS")
		}
		ws := s.do("GET", "/.well-known/matrix/server", "", nil)
		s.expect(ws, 200, "")
		if ws.str("m.server") != "test.local:8448" {
			t.Fatalf("well-known server = %s", ws.raw)
		}
		tok := s.register("alice", "correct horse").str("access_token")
		c := s.do("GET", v3+"/capabilities", tok, nil)
		s.expect(c, 200, "")
		caps := c.body["capabilities"].(map[string]any)
		rv := caps["m.room_versions"].(map[string]any)
		if rv["default"] != "12" || len(rv["available"].(map[string]any)) != 12 || rv["available"].(map[string]any)["1"] != "stable" {
			t.Fatalf("room versions = %v", rv)
		}
		for k, want := range map[string]bool{"m.change_password": true, "m.set_displayname": true, "m.set_avatar_url": true,
			"m.3pid_changes": false, "m.get_login_token": false} {
			if caps[k].(map[string]any)["enabled"] != want {
				t.Fatalf("%s = %v", k, caps[k])
			}
		}
		lf := s.do("GET", v3+"/login", "", nil)
		s.expect(lf, 200, "")
		if lf.raw != `{"flows":[{"type":"m.login.password"}]}` {
			t.Fatalf("login flows = %s", lf.raw)
		}
		// CORS pre-flight never reaches endpoint logic.
		pre := s.do("OPTIONS", v3+"/account/whoami", "", nil)
		if pre.status != 200 || pre.header.Get("Access-Control-Allow-Methods") == "" {
			t.Fatalf("preflight = %d", pre.status)
		}
	})
	eachEngine(t, func(c *config.Config) { c.Listeners.Federation = ""; c.ServerName = "test.local:8009" }, func(t *testing.T, s *server) {
		s.expect(s.do("GET", "/.well-known/matrix/server", "", nil), 404, "M_NOT_FOUND")
		wk := s.do("GET", "/.well-known/matrix/client", "", nil)
		if wk.body["m.homeserver"].(map[string]any)["base_url"] != "https://test.local:8009" {
			t.Fatalf("well-known client = %s", wk.raw)
		}
	})
}

func TestRateLimits(t *testing.T) {
	limited := func(c *config.Config) {
		c.RateLimits = config.Default().RateLimits // the room limits keep their defaults
		c.RateLimits.RegistrationPerIP = config.Rate{PerSecond: 0.01, Burst: 3}
		c.RateLimits.LoginPerIP = config.Rate{PerSecond: 0.01, Burst: 4}
		c.RateLimits.FailedLoginPerAcc = config.Rate{PerSecond: 0.01, Burst: 2}
	}
	eachEngine(t, limited, func(t *testing.T, s *server) {
		s.register("alice", "correct horse") // 2 registration requests
		s.expect(s.do("POST", v3+"/register", "", map[string]any{}), 401, "")
		r := s.do("POST", v3+"/register", "", map[string]any{})
		s.expect(r, 429, "M_LIMIT_EXCEEDED")
		if r.header.Get("Retry-After") == "" || r.body["retry_after_ms"] == nil {
			t.Fatalf("429 without retry hints: %v %s", r.header, r.raw)
		}
		// Failed logins per account: two wrong passwords, then even the right
		// one is refused until the bucket refills.
		s.expect(s.login("alice", "wrong", nil), 403, "M_FORBIDDEN")
		s.expect(s.login("alice", "wrong", nil), 403, "M_FORBIDDEN")
		s.expect(s.login("alice", "correct horse", nil), 429, "M_LIMIT_EXCEEDED")
		// Login per IP: burst 4, the fifth login from this IP is refused.
		s.expect(s.login("bob", "x", nil), 403, "M_FORBIDDEN")
		s.expect(s.login("bob", "x", nil), 429, "M_LIMIT_EXCEEDED")
		s.clock.advance(10 * time.Minute)
		s.expect(s.login("alice", "correct horse", nil), 200, "")
	})
}

func TestMetricsAndNotFound(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *server) {
		s.expect(s.do("GET", "/_matrix/client/versions", "", nil), 200, "")
		s.expect(s.do("GET", "/_matrix/client/v3/nope", "", nil), 404, "M_UNRECOGNIZED")
		s.expect(s.do("GET", "/_matrix/client/r9/login", "", nil), 404, "M_UNRECOGNIZED")
		s.expect(s.do("GET", "/nowhere", "", nil), 404, "M_UNRECOGNIZED")
		for _, p := range []string{v3 + "/login", v3 + "/logout", v3 + "/devices", "/_matrix/client/versions",
			v3 + "/profile/@a:test.local", "/_synapse/admin/v1/register", "/.well-known/matrix/client"} {
			s.expect(s.do("PATCH", p, "", nil), 405, "M_UNRECOGNIZED")
		}
		mfs, err := s.metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		routes := map[string]bool{}
		for _, mf := range mfs {
			if mf.GetName() != "myelin_http_requests_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "route" {
						routes[l.GetValue()] = true
					}
				}
			}
		}
		for _, want := range []string{"/_matrix/client/versions", "unmatched", "method_not_allowed"} {
			if !routes[want] {
				t.Fatalf("metrics routes %v lack %q", routes, want)
			}
		}
	})
}

// The handler must not be usable without its dependencies.
func TestNewRequiresDependencies(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without Config and Accounts succeeded")
	}
}

// The legacy r0 prefix answers exactly as v3 (an alias, not a second copy of
// the routes); v1-only endpoints are not reachable through it.
func TestLegacyR0Prefix(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *server) {
		r := s.do("POST", "/_matrix/client/r0/register", "", map[string]any{
			"username": "bob", "password": "correct horse", "auth": map[string]any{"type": "m.login.dummy"},
		})
		s.expect(r, 200, "")
		tok := r.str("access_token")
		for _, tc := range []struct {
			method, path string
			status       int
			errcode      string
		}{
			{"GET", "/_matrix/client/r0/account/whoami", 200, ""},
			{"GET", "/_matrix/client/r0/profile/%40bob%3Atest.local/displayname", 200, ""},
			{"GET", "/_matrix/client/r0/no/such/endpoint", 404, "M_UNRECOGNIZED"},
			{"POST", "/_matrix/client/r0/account/whoami", 405, "M_UNRECOGNIZED"},
			{"GET", "/_matrix/client/r0/register/m.login.registration_token/validity", 404, "M_UNRECOGNIZED"},
		} {
			got := s.do(tc.method, tc.path, tok, nil)
			s.expect(got, tc.status, tc.errcode)
			if tc.status == 200 && tc.path == "/_matrix/client/r0/account/whoami" && got.str("user_id") != "@bob:test.local" {
				t.Fatalf("%s %s = %s", tc.method, tc.path, got.raw)
			}
		}
	})
}
