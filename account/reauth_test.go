package account

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestReauthenticate(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *Service, _ *clock) {
		ctx := context.Background()
		if _, err := s.CreateUser(ctx, "alice", "long enough pw", false); err != nil {
			t.Fatal(err)
		}
		ls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: "alice", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Authenticate(ctx, ls.AccessToken, "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Reauthenticate(ctx, c, "device_signing", nil)
		var uia *AuthRequired
		if !errors.As(err, &uia) || uia.Err != nil || len(uia.Flows) != 1 || !slices.Equal(uia.Flows[0], []string{StagePassword}) {
			t.Fatalf("first round: %v", err)
		}
		wrong := &AuthData{Type: StagePassword, Session: uia.Session, Password: "nope"}
		if _, err := s.Reauthenticate(ctx, c, "device_signing", wrong); !errors.As(err, &uia) || uia.Err == nil || uia.Err.Code != "M_FORBIDDEN" {
			t.Fatalf("wrong password: %v", err)
		}
		right := &AuthData{Type: StagePassword, Session: uia.Session, Password: "long enough pw"}
		session, err := s.Reauthenticate(ctx, c, "device_signing", right)
		if err != nil || session != uia.Session {
			t.Fatalf("right password: %q %v", session, err)
		}
		// The session is left for the operation to consume, and it is bound
		// to that operation.
		if _, err := s.store.UIASession(ctx, session); err != nil {
			t.Fatalf("session consumed early: %v", err)
		}
		if err := s.DeleteDevices(ctx, c, []string{"X"}, &AuthData{Type: StagePassword, Session: session, Password: "long enough pw"}); code(err) != "M_UNKNOWN" {
			t.Fatalf("session reused for another operation: %v", err)
		}
	})
}

func TestDevicesRemovedHook(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *Service, _ *clock) {
		ctx := context.Background()
		var removed []string
		WithDevicesRemoved(func(l string) { removed = append(removed, l) })(s)
		if _, err := s.CreateUser(ctx, "bob", "long enough pw", false); err != nil {
			t.Fatal(err)
		}
		login := func() *Caller {
			ls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: "bob", Password: "long enough pw"})
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.Authenticate(ctx, ls.AccessToken, "")
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		pw := func(c *Caller) *AuthData {
			err := s.DeleteDevices(ctx, c, nil, nil)
			var uia *AuthRequired
			if !errors.As(err, &uia) {
				t.Fatalf("no UIA challenge: %v", err)
			}
			return &AuthData{Type: StagePassword, Session: uia.Session, Password: "long enough pw"}
		}
		for _, tc := range []struct {
			name   string
			act    func(c *Caller) error
			notify bool
		}{
			{"logout", func(c *Caller) error { return s.Logout(ctx, c) }, true},
			{"logout all", func(c *Caller) error { return s.LogoutAll(ctx, c) }, true},
			{"delete devices", func(c *Caller) error { return s.DeleteDevices(ctx, c, []string{c.DeviceID}, pw(c)) }, true},
			{"password change keeping devices", func(c *Caller) error {
				return s.ChangePassword(ctx, c, "long enough pw", false, &AuthData{Type: StagePassword, User: "bob", Password: "long enough pw"})
			}, false},
			{"password change logging out", func(c *Caller) error {
				return s.ChangePassword(ctx, c, "long enough pw", true, &AuthData{Type: StagePassword, User: "bob", Password: "long enough pw"})
			}, true},
		} {
			removed = nil
			if err := tc.act(login()); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got := slices.Equal(removed, []string{"bob"}); got != tc.notify {
				t.Fatalf("%s: hook calls %v", tc.name, removed)
			}
		}
		removed = nil
		if err := s.Deactivate(ctx, login(), &AuthData{Type: StagePassword, User: "bob", Password: "long enough pw"}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(removed, []string{"bob"}) {
			t.Fatalf("deactivate: hook calls %v", removed)
		}
	})
}
