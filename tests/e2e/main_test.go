package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// perEngine runs f once per database engine, as parallel subtests named
// after it: each has its own server and database, so they share nothing.
func perEngine(t *testing.T, f func(t *testing.T, engine string)) {
	t.Helper()
	for _, engine := range testserver.Engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			f(t, engine)
		})
	}
}

// step runs one stage of a stateful scenario and stops the scenario when it
// fails: later stages build on its state and would only add noise.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

const clientPrefix = "/_matrix/client/v3"

func userID(localpart string) id.UserID {
	return id.NewUserID(localpart, testserver.ServerName)
}

// pathUser escapes a user ID for a path segment the way clients do.
func pathUser(u id.UserID) string { return url.PathEscape(string(u)) }

var passwordSeq atomic.Int64

// newPassword returns a distinct password so the log privacy check can tell
// exactly which secret leaked.
func newPassword() string {
	return fmt.Sprintf("pw-%d-correct-horse-battery", passwordSeq.Add(1))
}

// session is one logged-in device.
type session struct {
	UserID   id.UserID
	DeviceID id.DeviceID
	Token    string
}

func (s session) client(t testing.TB, srv *testserver.Server) *mautrix.Client {
	c := srv.Client(t, s.UserID, s.Token)
	c.DeviceID = s.DeviceID
	return c
}

// registerDummy registers localpart with m.login.dummy through mautrix,
// exactly as Element's "create account" does on an open server.
func registerDummy(t testing.TB, srv *testserver.Server, localpart, password, deviceName string) session {
	t.Helper()
	resp, err := srv.Client(t, "", "").RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{
		Username:                 localpart,
		Password:                 password,
		InitialDeviceDisplayName: deviceName,
	})
	if err != nil {
		t.Fatalf("register %s with m.login.dummy: %v", localpart, err)
	}
	if resp.UserID != userID(localpart) {
		t.Fatalf("register %s: user_id %q, want %q", localpart, resp.UserID, userID(localpart))
	}
	if resp.AccessToken == "" || resp.DeviceID == "" {
		t.Fatalf("register %s: missing access_token or device_id: %+v", localpart, resp)
	}
	return session{UserID: resp.UserID, DeviceID: resp.DeviceID, Token: resp.AccessToken}
}

// login logs in with m.login.password and an m.id.user identifier.
func login(t testing.TB, srv *testserver.Server, user, password, deviceName string) session {
	t.Helper()
	resp, err := tryLogin(srv.Client(t, "", ""), user, password, deviceName)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	if resp.AccessToken == "" || resp.DeviceID == "" || resp.UserID == "" {
		t.Fatalf("login %s: incomplete response %+v", user, resp)
	}
	return session{UserID: resp.UserID, DeviceID: resp.DeviceID, Token: resp.AccessToken}
}

func tryLogin(c *mautrix.Client, user, password, deviceName string) (*mautrix.RespLogin, error) {
	return c.Login(context.Background(), &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: user},
		Password:                 password,
		InitialDeviceDisplayName: deviceName,
	})
}

// wantMatrixErr checks that err is an HTTP error with this status and one of
// the errcodes.
func wantMatrixErr(t testing.TB, what string, err error, status int, codes ...string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.Response == nil {
		t.Fatalf("%s: want HTTP %d %v, got %v", what, status, codes, err)
	}
	got := ""
	if he.RespError != nil {
		got = he.RespError.ErrCode
	}
	if he.Response.StatusCode != status || !slices.Contains(codes, got) {
		t.Fatalf("%s: want HTTP %d %v, got HTTP %d %q (%s)", what, status, codes, he.Response.StatusCode, got, he.ResponseBody)
	}
}

// wantResp checks a raw response's status and errcode ("" for none).
func wantResp(t testing.TB, what string, r *testserver.Response, status int, codes ...string) {
	t.Helper()
	if len(codes) == 0 {
		codes = []string{""}
	}
	if r.Status != status || !slices.Contains(codes, r.Errcode()) {
		t.Fatalf("%s: want HTTP %d %v, got HTTP %d %q: %s", what, status, codes, r.Status, r.Errcode(), truncate(r.Body))
	}
}

func truncate(b []byte) string {
	if len(b) > 512 {
		return string(b[:512]) + "…"
	}
	return string(b)
}

// uiaCreds are what the UIA driver may use to complete stages.
type uiaCreds struct {
	User              string // for m.login.password
	Password          string
	RegistrationToken string // for m.login.registration_token
}

// uia performs a request behind user-interactive auth the way a client
// does: send it without auth, read the flows, then complete stages (in the
// first flow made only of stages it can do) until the server answers with
// something other than a 401 carrying flows. It returns that final answer.
func uia(t testing.TB, srv *testserver.Server, method, path, token string, body map[string]any, creds uiaCreds) *testserver.Response {
	t.Helper()
	can := map[string]bool{"m.login.dummy": true}
	if creds.Password != "" {
		can["m.login.password"] = true
	}
	if creds.RegistrationToken != "" {
		can["m.login.registration_token"] = true
	}
	req := func(auth map[string]any) *testserver.Response {
		b := map[string]any{}
		for k, v := range body {
			b[k] = v
		}
		if auth != nil {
			b["auth"] = auth
		}
		return srv.DoJSON(t, method, path, token, b)
	}
	r := req(nil)
	for range 5 {
		if r.Status != 401 || r.JSON["flows"] == nil {
			return r
		}
		if r.Errcode() != "" {
			return r // a failed stage: the caller decides what that means
		}
		var ui struct {
			Flows []struct {
				Stages []string `json:"stages"`
			} `json:"flows"`
			Completed []string `json:"completed"`
			Session   string   `json:"session"`
		}
		if err := json.Unmarshal(r.Body, &ui); err != nil {
			t.Fatalf("%s %s: bad UIA response: %v: %s", method, path, err, r.Body)
		}
		if ui.Session == "" {
			t.Fatalf("%s %s: UIA response without session: %s", method, path, r.Body)
		}
		next := ""
		for _, f := range ui.Flows {
			if !slices.ContainsFunc(f.Stages, func(s string) bool { return !can[s] }) &&
				len(f.Stages) > 0 && slices.Equal(f.Stages[:min(len(ui.Completed), len(f.Stages))], ui.Completed) &&
				len(ui.Completed) < len(f.Stages) {
				next = f.Stages[len(ui.Completed)]
				break
			}
		}
		if next == "" {
			t.Fatalf("%s %s: no UIA flow this client can complete: %s", method, path, r.Body)
		}
		auth := map[string]any{"type": next, "session": ui.Session}
		switch next {
		case "m.login.password":
			auth["identifier"] = map[string]any{"type": "m.id.user", "user": creds.User}
			auth["password"] = creds.Password
		case "m.login.registration_token":
			auth["token"] = creds.RegistrationToken
		}
		r = req(auth)
	}
	t.Fatalf("%s %s: UIA did not finish in 5 rounds: %s", method, path, r.Body)
	return nil
}

// uiaFlows sends body without auth and returns the advertised flows,
// failing unless the server answers 401 with flows and a session.
func uiaFlows(t testing.TB, srv *testserver.Server, method, path, token string, body map[string]any) [][]string {
	t.Helper()
	r := srv.DoJSON(t, method, path, token, body)
	var ui struct {
		Flows []struct {
			Stages []string `json:"stages"`
		} `json:"flows"`
		Session string `json:"session"`
	}
	if r.Status != 401 || json.Unmarshal(r.Body, &ui) != nil || len(ui.Flows) == 0 || ui.Session == "" {
		t.Fatalf("%s %s without auth: want 401 with flows and session, got %d: %s", method, path, r.Status, truncate(r.Body))
	}
	var out [][]string
	for _, f := range ui.Flows {
		out = append(out, f.Stages)
	}
	return out
}

// hasFlow reports whether flows offer exactly the given stages as one flow.
func hasFlow(flows [][]string, stages ...string) bool {
	return slices.ContainsFunc(flows, func(f []string) bool { return slices.Equal(f, stages) })
}

// secrets collects every password and token a test hands the server, by a
// label that names it without revealing it.
type secrets map[string]string

func (s secrets) add(label, value string) {
	if value != "" {
		s[label] = value
	}
}

// assertNotLogged fails if any secret appears in the server's output: logs
// must never carry passwords or tokens.
func (s secrets) assertNotLogged(t *testing.T, srv *testserver.Server) {
	t.Helper()
	logs := srv.Logs()
	for label, v := range s {
		if strings.Contains(logs, v) {
			t.Errorf("server log contains the secret %s", label)
		}
	}
}
