package account

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"myelin/config"
	"myelin/internal/apierr"
	"myelin/internal/pgtest"
	"myelin/storage/storagetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func testConfig() *config.Config {
	cfg := config.Default()
	cfg.ServerName = "example.org"
	cfg.Registration.Enabled = true
	cfg.Auth.PasswordHashCost = 4
	cfg.RateLimits.Enabled = false
	return &cfg
}

// eachEngine runs fn with a service on a fresh SQLite and PostgreSQL database.
func eachEngine(t *testing.T, mutate func(*config.Config), fn func(t *testing.T, s *Service, c *clock)) {
	for _, engine := range storagetest.Engines {
		t.Run(engine, func(t *testing.T) {
			db := storagetest.OpenMigrated(t, engine, 2)
			cfg := testConfig()
			if mutate != nil {
				mutate(cfg)
			}
			c := &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
			s, err := New(cfg, db, WithClock(c.now))
			if err != nil {
				t.Fatal(err)
			}
			fn(t, s, c)
		})
	}
}

func code(err error) string {
	if e, ok := apierr.As(err); ok {
		return e.Code
	}
	var uia *AuthRequired
	if errors.As(err, &uia) {
		return "UIA"
	}
	if err == nil {
		return ""
	}
	return "internal: " + err.Error()
}

func TestNormalizeUsername(t *testing.T) {
	s := &Service{cfg: testConfig()}
	long := strings.Repeat("a", 255-len("@:example.org"))
	for _, tc := range []struct {
		in, want, code string
	}{
		{"alice", "alice", ""},
		{"Alice", "alice", ""},
		{"a.b_c=d-e/f+g", "a.b_c=d-e/f+g", ""},
		{"0123", "0123", ""},
		{long, long, ""},
		{long + "a", "", "M_INVALID_USERNAME"},
		{"", "", "M_INVALID_USERNAME"},
		{"al ice", "", "M_INVALID_USERNAME"},
		{"alice:example.org", "", "M_INVALID_USERNAME"},
		{"@alice", "", "M_INVALID_USERNAME"},
		{"café", "", "M_INVALID_USERNAME"},
		{"ÅLICE", "", "M_INVALID_USERNAME"},
		{"a\x00b", "", "M_INVALID_USERNAME"},
		{"a*b", "", "M_INVALID_USERNAME"},
		{"a#b", "", "M_INVALID_USERNAME"},
	} {
		got, err := s.normalizeUsername(tc.in)
		if got != tc.want || code(err) != tc.code {
			t.Errorf("normalizeUsername(%q) = %q, %s; want %q, %s", tc.in, got, code(err), tc.want, tc.code)
		}
	}
}

func TestLoginLocalpart(t *testing.T) {
	s := &Service{cfg: testConfig()}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"alice", "alice", true},
		{"ALICE", "alice", true},
		{"@alice:example.org", "alice", true},
		{"@alice:other.org", "", false},
		{"@alice", "", false},
		{"no one", "", false},
		{"", "", false},
	} {
		got, ok := s.loginLocalpart(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("loginLocalpart(%q) = %q, %v", tc.in, got, ok)
		}
	}
}

func TestTokensAndIDs(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok, hash := newToken(accessPrefix)
		if !strings.HasPrefix(tok, "myt_") || len(tok) != 4+43 || len(hash) != 64 || hash != hashToken(tok) {
			t.Fatalf("token %q hash %q", tok, hash)
		}
		if strings.Contains(hash, tok[4:]) || seen[tok] {
			t.Fatalf("token leaked into hash or repeated: %q", tok)
		}
		seen[tok] = true
		if id := newDeviceID(); len(id) != 10 || strings.ToUpper(id) != id {
			t.Fatalf("device id %q", id)
		}
		if lp := generatedLocalpart(); len(lp) != 13 || lp[0] != 'u' {
			t.Fatalf("generated localpart %q", lp)
		}
	}
}

func TestValidators(t *testing.T) {
	for in, want := range map[string]bool{"fBVFdqVE": true, "a-b.c_d~e": true, "": false, "a b": false, "ä": false, strings.Repeat("x", 64): true, strings.Repeat("x", 65): false} {
		if got := validRegistrationToken(in); got != want {
			t.Errorf("validRegistrationToken(%q) = %v", in, got)
		}
	}
	for in, want := range map[string]bool{"ABCDEF": true, "phone 1": true, "émoji🐈": true, "": false, "a\nb": false, strings.Repeat("x", 256): false} {
		if got := validDeviceID(in); got != want {
			t.Errorf("validDeviceID(%q) = %v", in, got)
		}
	}
	for in, want := range map[string]bool{"mxc://a/b": true, "mxc://a.org/AbC-1": true, "mxc://a/": false, "mxc:///b": false, "https://a/b": false, "mxc://a/b/c": false} {
		if got := validMXC(in); got != want {
			t.Errorf("validMXC(%q) = %v", in, got)
		}
	}
	for key, want := range map[string]string{"displayname": "", "avatar_url": "", "m.tz": "", "org.example.x": "", "a.b_c.d": "",
		"custom": "M_INVALID_PARAM", "Org.example": "M_INVALID_PARAM", "m.": "M_INVALID_PARAM", "org." + strings.Repeat("x", 252): "M_KEY_TOO_LARGE"} {
		if got := code(ValidProfileKey(key)); got != want {
			t.Errorf("ValidProfileKey(%q) = %s, want %s", key, got, want)
		}
	}
}

func TestFlows(t *testing.T) {
	flows := [][]string{{"a", "b"}, {"a", "c"}, {"d"}}
	for _, tc := range []struct {
		completed []string
		stage     string
		allowed   bool
	}{
		{nil, "a", true}, {nil, "d", true}, {nil, "b", false},
		{[]string{"a"}, "b", true}, {[]string{"a"}, "c", true}, {[]string{"a"}, "d", false},
		{[]string{"a", "b"}, "c", false},
	} {
		if got := nextStageAllowed(flows, tc.completed, tc.stage); got != tc.allowed {
			t.Errorf("nextStageAllowed(%v, %q) = %v", tc.completed, tc.stage, got)
		}
	}
	if !flowDone([]string{"a", "b"}, []string{"a", "b"}) || flowDone([]string{"a", "b"}, []string{"a"}) || flowDone([]string{"d"}, []string{"a"}) {
		t.Fatal("flowDone")
	}
	b, _ := json.Marshal((&AuthRequired{Flows: [][]string{{"m.login.dummy"}}, Session: "s"}).Body())
	if string(b) != `{"flows":[{"stages":["m.login.dummy"]}],"params":{},"session":"s"}` {
		t.Fatalf("body = %s", b)
	}
	b, _ = json.Marshal((&AuthRequired{Flows: [][]string{{"x"}}, Session: "s", Completed: []string{"y"}, Err: apierr.Forbidden("no")}).Body())
	if string(b) != `{"completed":["y"],"errcode":"M_FORBIDDEN","error":"no","flows":[{"stages":["x"]}],"params":{},"session":"s"}` {
		t.Fatalf("body = %s", b)
	}
}

func TestPasswordHashing(t *testing.T) {
	s := &Service{cfg: testConfig()}
	long := strings.Repeat("p", 100)
	h, err := s.hashPassword(long)
	if err != nil {
		t.Fatal(err)
	}
	s.dummyHash = []byte(h)
	if !strings.HasPrefix(h, "$2a$04$") || !s.passwordMatches(h, long) {
		t.Fatalf("hash %q", h)
	}
	// Bytes beyond bcrypt's 72-byte window still count.
	if s.passwordMatches(h, strings.Repeat("p", 99)+"q") || s.passwordMatches("", long) {
		t.Fatal("wrong password matched")
	}
	for pw, want := range map[string]string{"": "M_MISSING_PARAM", "short": "M_WEAK_PASSWORD", "long enough": "", "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8": "M_BAD_JSON", strings.Repeat("x", 2000): "M_INVALID_PARAM"} {
		if got := code(s.checkNewPassword(pw)); got != want {
			t.Errorf("checkNewPassword(%.10q) = %s, want %s", pw, got, want)
		}
	}
}

func TestServiceRegisterLoginAuthenticate(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *Service, c *clock) {
		ctx := context.Background()
		_, err := s.Register(ctx, RegisterRequest{Username: "alice", Password: "long enough pw"})
		var uia *AuthRequired
		if !errors.As(err, &uia) || uia.Session == "" || len(uia.Flows) != 2 {
			t.Fatalf("first round: %v", err)
		}
		sess, err := s.Register(ctx, RegisterRequest{Username: "alice", Password: "long enough pw", Auth: &AuthData{Type: StageDummy, Session: uia.Session}})
		if err != nil || sess.UserID != "@alice:example.org" || sess.AccessToken == "" {
			t.Fatalf("register: %+v, %v", sess, err)
		}
		caller, err := s.Authenticate(ctx, sess.AccessToken, "10.0.0.1")
		if err != nil || caller.UserID != "@alice:example.org" || caller.DeviceID != sess.DeviceID || caller.Admin {
			t.Fatalf("authenticate: %+v, %v", caller, err)
		}
		if _, err := s.Authenticate(ctx, "", ""); code(err) != "M_MISSING_TOKEN" {
			t.Fatalf("empty token: %v", err)
		}
		if _, err := s.Authenticate(ctx, "myt_x", ""); code(err) != "M_UNKNOWN_TOKEN" {
			t.Fatalf("unknown token: %v", err)
		}
		// Last seen is written when the IP changes, and not more often than
		// every five minutes otherwise.
		d, _ := s.Device(ctx, caller, caller.DeviceID)
		if *d.LastSeenIP != "10.0.0.1" {
			t.Fatalf("last seen ip = %v", *d.LastSeenIP)
		}
		c.t = c.t.Add(time.Minute)
		_, _ = s.Authenticate(ctx, sess.AccessToken, "10.0.0.1")
		if d2, _ := s.Device(ctx, caller, caller.DeviceID); *d2.LastSeenTS != *d.LastSeenTS {
			t.Fatal("last seen rewritten within the interval")
		}
		c.t = c.t.Add(5 * time.Minute)
		_, _ = s.Authenticate(ctx, sess.AccessToken, "10.0.0.1")
		if d2, _ := s.Device(ctx, caller, caller.DeviceID); *d2.LastSeenTS == *d.LastSeenTS {
			t.Fatal("last seen not refreshed after the interval")
		}
		// Admin via CreateUser.
		if _, err := s.CreateUser(ctx, "root", "long enough pw", true); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateUser(ctx, "root", "long enough pw", true); code(err) != "M_USER_IN_USE" {
			t.Fatalf("duplicate CreateUser: %v", err)
		}
		if _, err := s.CreateUser(ctx, "@x:other.org", "long enough pw", true); code(err) != "M_INVALID_USERNAME" {
			t.Fatalf("foreign CreateUser: %v", err)
		}
		ls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: "root", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		if rc, err := s.Authenticate(ctx, ls.AccessToken, ""); err != nil || !rc.Admin {
			t.Fatalf("admin caller: %+v, %v", rc, err)
		}
		// Registration tokens from the CLI path.
		if _, err := s.CreateRegistrationToken(ctx, "bad token", nil, time.Time{}); code(err) != "M_INVALID_PARAM" {
			t.Fatalf("bad token: %v", err)
		}
		neg := -1
		if _, err := s.CreateRegistrationToken(ctx, "", &neg, time.Time{}); code(err) != "M_INVALID_PARAM" {
			t.Fatalf("negative uses: %v", err)
		}
		if _, err := s.CreateRegistrationToken(ctx, "dup", nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateRegistrationToken(ctx, "dup", nil, time.Time{}); code(err) != "M_INVALID_PARAM" {
			t.Fatalf("duplicate token: %v", err)
		}
		// Abandoned UIA sessions expire.
		_, err = s.Register(ctx, RegisterRequest{Username: "bob"})
		if !errors.As(err, &uia) {
			t.Fatal(err)
		}
		c.t = c.t.Add(uiaLifetime + time.Second)
		_, err = s.Register(ctx, RegisterRequest{Username: "bob", Password: "long enough pw", Auth: &AuthData{Type: StageDummy, Session: uia.Session}})
		if code(err) != "M_UNKNOWN" {
			t.Fatalf("expired session: %v", err)
		}
	})
}

func TestRegistrationTokenPendingReleased(t *testing.T) {
	eachEngine(t, func(c *config.Config) { c.Registration.RequireToken = true }, func(t *testing.T, s *Service, c *clock) {
		ctx := context.Background()
		one := 1
		tok, err := s.CreateRegistrationToken(ctx, "once", &one, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		// A session holds the single use; another cannot take it...
		_, err = s.Register(ctx, RegisterRequest{Username: "a", Password: "long enough pw", Auth: &AuthData{Type: StageRegistrationToken, Token: tok}})
		if err != nil {
			t.Fatalf("first use: %v", err)
		}
		// (that completed the registration, so the token is spent)
		if ok, _ := s.RegistrationTokenValid(ctx, tok, ""); ok {
			t.Fatal("spent token valid")
		}
		two := 1
		if _, err := s.CreateRegistrationToken(ctx, "held", &two, time.Time{}); err != nil {
			t.Fatal(err)
		}
		// Username taken after the token stage: the stage holds the use...
		_, err = s.Register(ctx, RegisterRequest{Username: "b", Auth: &AuthData{Type: StageRegistrationToken, Token: "held"}})
		if code(err) != "M_MISSING_PARAM" {
			t.Fatalf("held stage without password: %v", err)
		}
		if ok, _ := s.RegistrationTokenValid(ctx, "held", ""); ok {
			t.Fatal("held token offered to others")
		}
		// ...until the session expires and is purged by the next session.
		c.t = c.t.Add(uiaLifetime + time.Minute)
		_, err = s.Register(ctx, RegisterRequest{Username: "c"})
		var uia *AuthRequired
		if !errors.As(err, &uia) {
			t.Fatal(err)
		}
		if ok, _ := s.RegistrationTokenValid(ctx, "held", ""); !ok {
			t.Fatal("abandoned session did not release the token")
		}
	})
}
