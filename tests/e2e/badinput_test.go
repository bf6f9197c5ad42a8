package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/synapseadmin"

	"myelin/internal/testserver"
)

// authKind is which Authorization header a bad-input case sends.
type authKind int

const (
	noAuth      authKind = iota
	validAuth            // mallory's live token
	invalidAuth          // a token the server never issued
	revokedAuth          // the token of a since-deactivated account
)

func (a authKind) String() string {
	return [...]string{"no token", "valid token", "invalid token", "deactivated user's token"}[a]
}

type badCase struct {
	name   string
	method string
	path   string
	auth   authKind
	body   []byte // nil sends no body
	status int
	codes  []string
	header http.Header // extra request headers
}

var (
	notJSON = []byte("this is { not json")
	// tooBig is a well-formed JSON object over the 64 KiB body limit.
	tooBig    = []byte(`{"username":"fresh1","padding":"` + strings.Repeat("x", 70<<10) + `"}`)
	jsonArray = []byte(`[1, 2, 3]`)
)

// TestBadInputs sends every issue-2 endpoint the inputs a broken or hostile
// client sends and checks the exact status and errcode (never a 500), the
// CORS headers on every answer, that OPTIONS runs no endpoint logic, and
// that none of it changed anything. It ends with /metrics, which by then has
// seen every kind of traffic.
func TestBadInputs(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		sec := secrets{}

		malloryPW := newPassword()
		mallory := registerDummy(t, srv, "mallory", malloryPW, "Mallory phone")
		sec.add("mallory password", malloryPW)
		sec.add("mallory token", mallory.Token)
		if err := mallory.client(t, srv).SetDisplayName(ctx, "Mallory"); err != nil {
			t.Fatalf("set displayname: %v", err)
		}
		gonePW := newPassword()
		gone := registerDummy(t, srv, "gone", gonePW, "Gone phone")
		sec.add("gone password", gonePW)
		sec.add("gone token", gone.Token)
		r := uia(t, srv, "POST", clientPrefix+"/account/deactivate", gone.Token, map[string]any{},
			uiaCreds{User: "gone", Password: gonePW})
		wantResp(t, "deactivate gone", r, 200)

		tokens := map[authKind]string{
			validAuth:   mallory.Token,
			invalidAuth: "syt_bm90YXRva2Vu_notissuedbythisserver_0000",
			revokedAuth: gone.Token,
		}
		dev := clientPrefix + "/devices/" + url.PathEscape(string(mallory.DeviceID))
		me := pathUser(mallory.UserID)

		cases := badInputCases(dev, me)
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s %s %s/%s", c.method, c.path, c.auth, c.name), func(t *testing.T) {
				r := srv.DoHeaders(t, c.method, c.path, tokens[c.auth], c.body, c.header)
				if r.Status >= 500 {
					t.Fatalf("server error %d: %s", r.Status, truncate(r.Body))
				}
				wantResp(t, c.name, r, c.status, c.codes...)
				if r.Errcode() != "" && r.String("error") == "" {
					t.Errorf("error response without an error message: %s", r.Body)
				}
				if r.Errcode() == "M_UNKNOWN_TOKEN" && r.JSON["soft_logout"] != false {
					t.Errorf("M_UNKNOWN_TOKEN for a revoked or unknown token must carry soft_logout: false: %s", r.Body)
				}
				if ct := r.Header.Get("Content-Type"); r.Errcode() != "" && !strings.HasPrefix(ct, "application/json") {
					t.Errorf("error Content-Type = %q, want application/json", ct)
				}
				wantCORS(t, r)
			})
		}

		t.Run("taken_username", func(t *testing.T) {
			_, err := srv.Client(t, "", "").RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "mallory", Password: newPassword()})
			wantMatrixErr(t, "register a taken name", err, 400, "M_USER_IN_USE")
			admin := &synapseadmin.Client{Client: srv.Client(t, "", "")}
			_, err = admin.SharedSecretRegister(ctx, srv.SharedSecret(), synapseadmin.ReqSharedSecretRegister{Username: "mallory", Password: newPassword()})
			wantMatrixErr(t, "shared-secret register a taken name", err, 400, "M_USER_IN_USE")
		})

		t.Run("invalid_username", func(t *testing.T) {
			for _, name := range invalidUsernames() {
				_, err := srv.Client(t, "", "").RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: name, Password: newPassword()})
				wantMatrixErr(t, fmt.Sprintf("register %.40q", name), err, 400, "M_INVALID_USERNAME")
				r := srv.Do(t, "GET", clientPrefix+"/register/available?username="+url.QueryEscape(name), "", nil)
				wantResp(t, fmt.Sprintf("register/available %.40q", name), r, 400, "M_INVALID_USERNAME")
			}
			admin := &synapseadmin.Client{Client: srv.Client(t, "", "")}
			_, err := admin.SharedSecretRegister(ctx, srv.SharedSecret(), synapseadmin.ReqSharedSecretRegister{Username: "not valid!", Password: newPassword()})
			wantMatrixErr(t, "shared-secret register an invalid name", err, 400, "M_INVALID_USERNAME")
		})

		t.Run("wrong_password", func(t *testing.T) {
			anon := srv.Client(t, "", "")
			_, err := tryLogin(anon, "mallory", "wrong-"+malloryPW, "x")
			wantMatrixErr(t, "login with a wrong password", err, 403, "M_FORBIDDEN")
			_, err = tryLogin(anon, "nobody-here", malloryPW, "x")
			wantMatrixErr(t, "login as an unknown user", err, 403, "M_FORBIDDEN")
			// UIA with a wrong password: 401 with M_FORBIDDEN and the flows again.
			for _, ep := range []struct{ method, path string }{
				{"POST", clientPrefix + "/account/password"},
				{"POST", clientPrefix + "/account/deactivate"},
				{"DELETE", dev},
			} {
				r := uia(t, srv, ep.method, ep.path, mallory.Token, map[string]any{"new_password": newPassword()},
					uiaCreds{User: "mallory", Password: "wrong-" + malloryPW})
				wantResp(t, ep.method+" "+ep.path+" with a wrong password", r, 401, "M_FORBIDDEN")
				if r.JSON["flows"] == nil || r.String("session") == "" {
					t.Errorf("%s %s: failed UIA stage must repeat flows and session: %s", ep.method, ep.path, r.Body)
				}
			}
			// UIA for one user's password by another user's session.
			r := uia(t, srv, "POST", clientPrefix+"/account/password", mallory.Token, map[string]any{"new_password": newPassword()},
				uiaCreds{User: "gone", Password: gonePW})
			if r.Status == 200 {
				t.Fatalf("password change authorised with another account's credentials")
			}
		})

		t.Run("deactivated_user", func(t *testing.T) {
			_, err := tryLogin(srv.Client(t, "", ""), "gone", gonePW, "x")
			wantMatrixErr(t, "login to a deactivated account", err, 403, "M_USER_DEACTIVATED", "M_FORBIDDEN")
			_, err = srv.Client(t, "", "").RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "gone", Password: newPassword()})
			wantMatrixErr(t, "register a deactivated name", err, 400, "M_USER_IN_USE")
			r := srv.Do(t, "GET", clientPrefix+"/register/available?username=gone", "", nil)
			wantResp(t, "register/available for a deactivated name", r, 400, "M_USER_IN_USE")
		})

		t.Run("options_preflight", func(t *testing.T) {
			pre := http.Header{
				"Origin":                         {"https://app.element.io"},
				"Access-Control-Request-Method":  {"POST"},
				"Access-Control-Request-Headers": {"authorization, content-type"},
			}
			for _, p := range []struct {
				path  string
				token string
				body  []byte
			}{
				{clientPrefix + "/logout", mallory.Token, nil},
				{clientPrefix + "/logout/all", mallory.Token, nil},
				{clientPrefix + "/account/deactivate", mallory.Token, []byte(`{"auth":{"type":"m.login.password","password":"x"}}`)},
				{clientPrefix + "/register", "", []byte(`{"username":"fresh2","password":"longenoughpassword","auth":{"type":"m.login.dummy"}}`)},
				{clientPrefix + "/account/whoami", "", nil},
				{clientPrefix + "/login", "", notJSON},
				{dev, "", tooBig},
				{"/_synapse/admin/v1/register", "", nil},
				{"/_matrix/client/versions", "", nil},
			} {
				r := srv.DoHeaders(t, "OPTIONS", p.path, p.token, p.body, pre)
				wantResp(t, "OPTIONS "+p.path, r, 200)
				wantCORS(t, r)
			}
			// Nothing ran: mallory is still logged in and active, fresh2 is free.
			if _, err := mallory.client(t, srv).Whoami(ctx); err != nil {
				t.Fatalf("OPTIONS ran endpoint logic: mallory's token fails: %v", err)
			}
			if _, err := srv.Client(t, "", "").RegisterAvailable(ctx, "fresh2"); err != nil {
				t.Fatalf("OPTIONS ran endpoint logic: fresh2 is not available: %v", err)
			}
		})

		t.Run("cors_on_success", func(t *testing.T) {
			for _, p := range []string{"/_matrix/client/versions", clientPrefix + "/login", "/.well-known/matrix/client"} {
				r := srv.DoHeaders(t, "GET", p, "", nil, http.Header{"Origin": {"https://app.element.io"}})
				wantResp(t, "GET "+p, r, 200)
				wantCORS(t, r)
			}
		})

		t.Run("nothing_changed", func(t *testing.T) {
			c := mallory.client(t, srv)
			who, err := c.Whoami(ctx)
			if err != nil || who.DeviceID != mallory.DeviceID {
				t.Fatalf("mallory's token: %+v %v", who, err)
			}
			devs, err := c.GetDevicesInfo(ctx)
			if err != nil {
				t.Fatalf("devices: %v", err)
			}
			if len(devs.Devices) != 1 || devs.Devices[0].DeviceID != mallory.DeviceID || devs.Devices[0].DisplayName != "Mallory phone" {
				t.Fatalf("mallory's devices changed: %+v", devs.Devices)
			}
			dn, err := c.GetDisplayName(ctx, mallory.UserID)
			if err != nil || dn.DisplayName != "Mallory" {
				t.Fatalf("mallory's displayname changed: %+v %v", dn, err)
			}
			s := login(t, srv, "mallory", malloryPW, "probe")
			if _, err := s.client(t, srv).Logout(ctx); err != nil {
				t.Fatalf("logout probe: %v", err)
			}
			for _, name := range []string{"fresh1", "fresh2"} {
				if _, err := srv.Client(t, "", "").RegisterAvailable(ctx, name); err != nil {
					t.Fatalf("a refused registration created %s: %v", name, err)
				}
			}
			_, err = tryLogin(srv.Client(t, "", ""), "gone", gonePW, "x")
			wantMatrixErr(t, "gone is still deactivated", err, 403, "M_USER_DEACTIVATED", "M_FORBIDDEN")
		})

		t.Run("metrics", func(t *testing.T) {
			r := srv.Do(t, "GET", "/metrics", "", nil)
			wantResp(t, "GET /metrics", r, 200)
			body := string(r.Body)
			for _, want := range []string{
				"myelin_http_requests_total{",
				"myelin_http_request_duration_seconds_bucket{",
				`code="401"`, `code="404"`, `code="405"`, `code="413"`,
			} {
				if !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
			if !hasRouteSample(body, "whoami") {
				t.Errorf("/metrics has no myelin_http_requests_total sample for the whoami route")
			}
			// Labels are route templates: no user IDs, device IDs or tokens.
			for _, leak := range []string{"mallory", string(mallory.DeviceID), mallory.Token} {
				if strings.Contains(body, leak) {
					t.Errorf("/metrics leaks %q from a raw path", leak)
				}
			}
		})

		t.Run("no_secrets_in_logs", func(t *testing.T) { sec.assertNotLogged(t, srv) })
	})
}

// badInputCases is the table: each issue-2 endpoint with every kind of bad
// input that applies to it. dev is mallory's device path, me her escaped
// user ID.
func badInputCases(dev, me string) []badCase {
	type jsonEndpoint struct {
		method, path string
		auth         authKind
		wrongTypes   map[string]string // name → body with a field of the wrong type
	}
	endpoints := []jsonEndpoint{
		{"POST", clientPrefix + "/register", noAuth, map[string]string{
			"username_number":      `{"username": 5, "password": "longenoughpassword"}`,
			"password_object":      `{"username": "fresh1", "password": {"a": 1}}`,
			"inhibit_login_string": `{"username": "fresh1", "password": "longenoughpassword", "inhibit_login": "yes"}`,
			"auth_string":          `{"username": "fresh1", "password": "longenoughpassword", "auth": "m.login.dummy"}`,
			"device_id_number":     `{"username": "fresh1", "password": "longenoughpassword", "device_id": 7}`,
			"refresh_token_string": `{"username": "fresh1", "password": "longenoughpassword", "refresh_token": "true"}`,
			"display_name_bool":    `{"username": "fresh1", "password": "longenoughpassword", "initial_device_display_name": false}`,
		}},
		{"POST", clientPrefix + "/login", noAuth, map[string]string{
			"type_number":         `{"type": 5, "identifier": {"type": "m.id.user", "user": "mallory"}, "password": "x"}`,
			"identifier_string":   `{"type": "m.login.password", "identifier": "mallory", "password": "x"}`,
			"identifier_user_num": `{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": 5}, "password": "x"}`,
			"password_number":     `{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "mallory"}, "password": 12345678}`,
			"device_id_array":     `{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "mallory"}, "password": "x", "device_id": []}`,
		}},
		{"POST", clientPrefix + "/refresh", noAuth, map[string]string{
			"refresh_token_number": `{"refresh_token": 5}`,
		}},
		{"POST", "/_synapse/admin/v1/register", noAuth, map[string]string{
			"nonce_number": `{"nonce": 5, "username": "fresh1", "password": "x", "mac": "00"}`,
			"admin_string": `{"nonce": "n", "username": "fresh1", "password": "x", "mac": "00", "admin": "yes"}`,
		}},
		{"PUT", dev, validAuth, map[string]string{
			"display_name_number": `{"display_name": 5}`,
		}},
		{"DELETE", dev, validAuth, map[string]string{
			"auth_string": `{"auth": "password"}`,
		}},
		{"POST", clientPrefix + "/account/password", validAuth, map[string]string{
			"new_password_number":   `{"new_password": 5}`,
			"logout_devices_string": `{"new_password": "longenoughpassword", "logout_devices": "yes"}`,
		}},
		{"POST", clientPrefix + "/account/deactivate", validAuth, map[string]string{
			"erase_string": `{"erase": "yes"}`,
			"auth_array":   `{"auth": []}`,
		}},
		{"PUT", "/_matrix/client/v3/profile/" + me + "/displayname", validAuth, map[string]string{
			"displayname_number": `{"displayname": 5}`,
		}},
		{"PUT", "/_matrix/client/v3/profile/" + me + "/avatar_url", validAuth, map[string]string{
			"avatar_url_number": `{"avatar_url": 5}`,
		}},
	}

	var cases []badCase
	for _, ep := range endpoints {
		add := func(name string, body []byte, status int, codes ...string) {
			cases = append(cases, badCase{name, ep.method, ep.path, ep.auth, body, status, codes, nil})
		}
		add("not_json", notJSON, 400, "M_NOT_JSON")
		if ep.method != "DELETE" {
			// A DELETE without a body is how some clients ask for the UIA
			// flows; everywhere else an empty body is not JSON.
			add("empty_body", []byte{}, 400, "M_NOT_JSON")
		}
		add("json_array", jsonArray, 400, "M_BAD_JSON")
		add("too_large", tooBig, 413, "M_TOO_LARGE")
		for _, name := range slices.Sorted(maps.Keys(ep.wrongTypes)) {
			add(name, []byte(ep.wrongTypes[name]), 400, "M_BAD_JSON")
		}
	}

	// Authentication on every endpoint that needs a token. Password change
	// and deactivation may be done without one (UIA identifies the user), so
	// only a bad token is an error there.
	authed := []struct {
		method, path string
		body         string
		optional     bool
	}{
		{"GET", clientPrefix + "/account/whoami", "", false},
		{"GET", clientPrefix + "/capabilities", "", false},
		{"POST", clientPrefix + "/logout", "{}", false},
		{"POST", clientPrefix + "/logout/all", "{}", false},
		{"GET", clientPrefix + "/devices", "", false},
		{"GET", dev, "", false},
		{"PUT", dev, `{"display_name": "hijacked"}`, false},
		{"DELETE", dev, "{}", false},
		{"PUT", clientPrefix + "/profile/" + me + "/displayname", `{"displayname": "hijacked"}`, false},
		{"PUT", clientPrefix + "/profile/" + me + "/avatar_url", `{"avatar_url": "mxc://evil/x"}`, false},
		{"POST", clientPrefix + "/account/password", `{"new_password": "hijackedpassword"}`, true},
		{"POST", clientPrefix + "/account/deactivate", `{}`, true},
	}
	for _, a := range authed {
		var body []byte
		if a.body != "" {
			body = []byte(a.body)
		}
		if !a.optional {
			cases = append(cases, badCase{"missing_token", a.method, a.path, noAuth, body, 401, []string{"M_MISSING_TOKEN"}, nil})
		}
		cases = append(cases,
			badCase{"unknown_token", a.method, a.path, invalidAuth, body, 401, []string{"M_UNKNOWN_TOKEN"}, nil},
			badCase{"deactivated_token", a.method, a.path, revokedAuth, body, 401, []string{"M_UNKNOWN_TOKEN"}, nil},
		)
	}

	// Semantically wrong but well-formed requests.
	cases = append(cases,
		badCase{"unknown_login_type", "POST", clientPrefix + "/login", noAuth,
			[]byte(`{"type": "m.login.carrier_pigeon", "identifier": {"type": "m.id.user", "user": "mallory"}}`), 400, []string{"M_UNKNOWN"}, nil},
		badCase{"unknown_token_in_query", "GET", clientPrefix + "/account/whoami?access_token=notatoken", noAuth, nil, 401, []string{"M_UNKNOWN_TOKEN"}, nil},
		badCase{"non_bearer_authorization", "GET", clientPrefix + "/account/whoami", noAuth, nil, 401, []string{"M_MISSING_TOKEN"},
			http.Header{"Authorization": {"Basic bWFsbG9yeTpwYXNzd29yZA=="}}},
		badCase{"unknown_device", "GET", clientPrefix + "/devices/NOSUCHDEVICE", validAuth, nil, 404, []string{"M_NOT_FOUND"}, nil},
		badCase{"rename_unknown_device", "PUT", clientPrefix + "/devices/NOSUCHDEVICE", validAuth,
			[]byte(`{"display_name": "x"}`), 404, []string{"M_NOT_FOUND"}, nil},
		badCase{"someone_elses_displayname", "PUT", clientPrefix + "/profile/" + pathUser(userID("gone")) + "/displayname", validAuth,
			[]byte(`{"displayname": "x"}`), 403, []string{"M_FORBIDDEN"}, nil},
		badCase{"unknown_user_profile", "GET", clientPrefix + "/profile/" + pathUser(userID("nobody-here")), validAuth, nil, 404, []string{"M_NOT_FOUND"}, nil},
		badCase{"unknown_refresh_token", "POST", clientPrefix + "/refresh", noAuth,
			[]byte(`{"refresh_token": "not-a-refresh-token"}`), 401, []string{"M_UNKNOWN_TOKEN"}, nil},
		badCase{"available_without_username", "GET", clientPrefix + "/register/available", noAuth, nil, 400, []string{"M_MISSING_PARAM"}, nil},
	)

	// Unknown endpoints are 404 M_UNRECOGNIZED before any auth or body check.
	for _, p := range []struct{ method, path string }{
		{"GET", clientPrefix + "/nonexistent"},
		{"POST", clientPrefix + "/nonexistent"},
		{"GET", clientPrefix + "/account/whoami/extra"},
		{"GET", "/_matrix/client/v3/"},
		{"GET", "/_matrix/nonexistent"},
		{"GET", "/_synapse/admin/v1/nonexistent"},
	} {
		cases = append(cases, badCase{"unknown_endpoint", p.method, p.path, noAuth, notJSON, 404, []string{"M_UNRECOGNIZED"}, nil})
	}
	// Known paths with the wrong method are 405 M_UNRECOGNIZED, also before auth.
	for _, p := range []struct{ method, path string }{
		{"POST", "/_matrix/client/versions"},
		{"PUT", clientPrefix + "/register"},
		{"DELETE", clientPrefix + "/login"},
		{"GET", clientPrefix + "/logout"},
		{"GET", clientPrefix + "/logout/all"},
		{"POST", clientPrefix + "/account/whoami"},
		{"POST", clientPrefix + "/devices"},
		{"POST", dev},
		{"GET", clientPrefix + "/account/password"},
		{"GET", clientPrefix + "/account/deactivate"},
		{"GET", clientPrefix + "/refresh"},
		{"PUT", "/_synapse/admin/v1/register"},
	} {
		cases = append(cases, badCase{"wrong_method", p.method, p.path, noAuth, nil, 405, []string{"M_UNRECOGNIZED"}, nil})
	}
	return cases
}

// invalidUsernames are localparts the spec's user ID grammar forbids
// (a-z, 0-9, ".", "_", "=", "-", "/", "+" only; whole ID at most 255 bytes).
func invalidUsernames() []string {
	return []string{
		"has space",
		"colon:inside",
		"@mallory:" + testserver.ServerName,
		"émile",
		"quote\"d",
		"tab\tname",
		strings.Repeat("a", 256),
	}
}

// wantCORS checks the spec's recommended CORS headers.
func wantCORS(t *testing.T, r *testserver.Response) {
	t.Helper()
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin = %q, want *", got)
	}
	methods := r.Header.Get("Access-Control-Allow-Methods")
	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"} {
		if !slices.Contains(splitList(methods), m) {
			t.Errorf("Access-Control-Allow-Methods %q lacks %s", methods, m)
		}
	}
	headers := strings.ToLower(r.Header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"x-requested-with", "content-type", "authorization"} {
		if !slices.Contains(splitList(headers), h) {
			t.Errorf("Access-Control-Allow-Headers %q lacks %s", headers, h)
		}
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		out = append(out, strings.TrimSpace(p))
	}
	return out
}

// hasRouteSample reports whether some myelin_http_requests_total sample has
// a route label containing part.
func hasRouteSample(metrics, part string) bool {
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "myelin_http_requests_total{") {
			if i := strings.Index(line, `route="`); i >= 0 {
				route, _, _ := strings.Cut(line[i+len(`route="`):], `"`)
				if strings.Contains(route, part) {
					return true
				}
			}
		}
	}
	return false
}
