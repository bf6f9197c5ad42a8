package e2e

import (
	"context"
	"maps"
	"regexp"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// world is what the tests believe the server holds: every account, every
// access token handed out and whether it must still work, and each device's
// display name. check compares the server against it, so running check
// before and after a restart proves the restart changed nothing.
type world struct {
	accounts map[string]*account // by localpart
	tokens   []*token
	secrets  secrets
}

type account struct {
	localpart    string
	password     string
	oldPasswords []string
	deactivated  bool
	displayName  string // "" means not checked
}

// token is one access token and the device it belongs to. A device exists
// exactly as long as one of its tokens is valid: every way to lose a token
// in this suite (logout, logout/all, device delete, password change,
// deactivation) also deletes the device.
type token struct {
	label      string
	s          session
	deviceName string
	valid      bool
}

// refreshToken is a refresh token with the verdict the server must give.
type refreshToken struct {
	label string
	value string
	valid bool
}

// tokenShape is a short lowercase prefix, "_", then at least 22 symbols of a
// 64-letter alphabet (22 × 6 = 132 bits).
var tokenShape = regexp.MustCompile(`^[a-z]{2,8}_[A-Za-z0-9_-]{22,}$`)

func newWorld() *world {
	return &world{accounts: map[string]*account{}, secrets: secrets{}}
}

func (w *world) addAccount(localpart, password string) *account {
	a := &account{localpart: localpart, password: password}
	w.accounts[localpart] = a
	w.secrets.add("password of "+localpart, password)
	return a
}

func (w *world) addToken(label string, s session, deviceName string) *token {
	tk := &token{label: label, s: s, deviceName: deviceName, valid: true}
	w.tokens = append(w.tokens, tk)
	w.secrets.add("token "+label, s.Token)
	return tk
}

// invalidateUser marks every token of u invalid (logout/all, deactivation).
func (w *world) invalidateUser(u id.UserID) {
	for _, tk := range w.tokens {
		if tk.s.UserID == u {
			tk.valid = false
		}
	}
}

// devices is the expected device list of u: device ID → display name.
func (w *world) devices(u id.UserID) map[id.DeviceID]string {
	out := map[id.DeviceID]string{}
	for _, tk := range w.tokens {
		if tk.s.UserID == u && tk.valid {
			out[tk.s.DeviceID] = tk.deviceName
		}
	}
	return out
}

// check compares the server with the world. It leaves the server as it
// found it: the logins it makes to inspect devices are logged out again.
func (w *world) check(t *testing.T, srv *testserver.Server) {
	t.Helper()
	ctx := context.Background()

	// Tokens are unique and look like what the issue asks for: a
	// recognisable prefix and at least 128 random bits.
	seen := map[string]string{}
	for _, tk := range w.tokens {
		if !tokenShape.MatchString(tk.s.Token) {
			t.Fatalf("access token %s does not look like prefix_ + >=22 URL-safe symbols", tk.label)
		}
		if other, dup := seen[tk.s.Token]; dup {
			t.Fatalf("tokens %s and %s are the same", other, tk.label)
		}
		seen[tk.s.Token] = tk.label
	}

	// Every token is valid or invalid exactly as recorded, and a valid one
	// still names its user and device.
	for _, tk := range w.tokens {
		r := srv.Do(t, "GET", clientPrefix+"/account/whoami", tk.s.Token, nil)
		if !tk.valid {
			wantResp(t, "whoami with revoked token "+tk.label, r, 401, "M_UNKNOWN_TOKEN")
			continue
		}
		wantResp(t, "whoami with token "+tk.label, r, 200)
		if r.String("user_id") != string(tk.s.UserID) || r.String("device_id") != string(tk.s.DeviceID) {
			t.Fatalf("whoami %s: got user %q device %q, want %q %q", tk.label,
				r.String("user_id"), r.String("device_id"), tk.s.UserID, tk.s.DeviceID)
		}
	}

	for _, lp := range slices.Sorted(maps.Keys(w.accounts)) {
		a := w.accounts[lp]
		u := userID(lp)
		// The name stays taken, deactivated or not.
		r := srv.Do(t, "GET", clientPrefix+"/register/available?username="+lp, "", nil)
		wantResp(t, "register/available for existing "+lp, r, 400, "M_USER_IN_USE")

		anon := srv.Client(t, "", "")
		if a.deactivated {
			_, err := tryLogin(anon, lp, a.password, "after deactivation")
			wantMatrixErr(t, "login to deactivated "+lp, err, 403, "M_USER_DEACTIVATED", "M_FORBIDDEN")
			continue
		}
		for _, old := range a.oldPasswords {
			_, err := tryLogin(anon, lp, old, "old password")
			wantMatrixErr(t, "login "+lp+" with a replaced password", err, 403, "M_FORBIDDEN")
		}
		probe := login(t, srv, lp, a.password, "world check")
		c := probe.client(t, srv)
		got, err := c.GetDevicesInfo(ctx)
		if err != nil {
			t.Fatalf("list devices of %s: %v", lp, err)
		}
		want := w.devices(u)
		want[probe.DeviceID] = "world check"
		gotMap := map[id.DeviceID]string{}
		for _, d := range got.Devices {
			gotMap[d.DeviceID] = d.DisplayName
		}
		if !maps.Equal(gotMap, want) {
			t.Fatalf("devices of %s:\n got %v\nwant %v", lp, gotMap, want)
		}
		if a.displayName != "" {
			dn, err := c.GetDisplayName(ctx, u)
			if err != nil {
				t.Fatalf("displayname of %s: %v", lp, err)
			}
			if dn.DisplayName != a.displayName {
				t.Fatalf("displayname of %s = %q, want %q", lp, dn.DisplayName, a.displayName)
			}
		}
		if _, err := c.Logout(ctx); err != nil {
			t.Fatalf("logout of the check session of %s: %v", lp, err)
		}
	}
}

// checkRefresh checks refresh tokens that must be refused. (Using a valid
// one rotates it, so valid ones are exercised once, by the caller.)
func checkRefreshRevoked(t *testing.T, srv *testserver.Server, rts []*refreshToken) {
	t.Helper()
	for _, rt := range rts {
		if rt.valid {
			continue
		}
		r := srv.DoJSON(t, "POST", clientPrefix+"/refresh", "", map[string]any{"refresh_token": rt.value})
		wantResp(t, "refresh with revoked "+rt.label, r, 401, "M_UNKNOWN_TOKEN")
	}
}

// mustRefresh uses a refresh token and returns the new pair.
func mustRefresh(t *testing.T, srv *testserver.Server, label, rt string) (access, refresh string) {
	t.Helper()
	r := srv.DoJSON(t, "POST", clientPrefix+"/refresh", "", map[string]any{"refresh_token": rt})
	wantResp(t, "refresh with "+label, r, 200)
	access, refresh = r.String("access_token"), r.String("refresh_token")
	// The spec lets a server keep the old refresh token; Myelin rotates it
	// on every use so a stolen one is single-use, and this suite holds it to
	// that.
	if access == "" || refresh == "" || refresh == rt {
		t.Fatalf("refresh with %s: want a new access_token and refresh_token, got %s", label, r.Body)
	}
	return access, refresh
}
