package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/synapseadmin"

	"myelin/internal/testserver"
)

const validityPath = "/_matrix/client/v1/register/m.login.registration_token/validity"

// TestRegistrationToken runs a server that requires registration tokens:
// tokens made with the CLI admit exactly as many accounts as they allow,
// nothing else gets in (shared-secret provisioning aside), and token use
// counts survive a restart.
func TestRegistrationToken(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine, Set: map[string]any{
			"registration.require_token": true,
		}})
		ctx := context.Background()
		w := newWorld()
		w.secrets.add("shared secret", srv.SharedSecret())
		var once, unlimited string

		step(t, "flows_require_token", func(t *testing.T) {
			flows := uiaFlows(t, srv, "POST", clientPrefix+"/register", "",
				map[string]any{"username": "tina", "password": newPassword()})
			for _, f := range flows {
				if !slices.Contains(f, "m.login.registration_token") {
					t.Fatalf("flow %v lets a client register without a token (flows %v)", f, flows)
				}
			}
			if _, err := srv.Client(t, "", "").RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "tina", Password: newPassword()}); err == nil {
				t.Fatalf("m.login.dummy alone registered an account on a token-only server")
			}
			// Forcing the dummy stage on the session does not finish it either.
			r := srv.DoJSON(t, "POST", clientPrefix+"/register", "", map[string]any{"username": "tina", "password": newPassword()})
			session := r.String("session")
			r = srv.DoJSON(t, "POST", clientPrefix+"/register", "", map[string]any{
				"username": "tina", "password": newPassword(),
				"auth": map[string]any{"type": "m.login.dummy", "session": session},
			})
			if r.Status == 200 {
				t.Fatalf("dummy auth registered on a token-only server: %s", r.Body)
			}
			if r.Status >= 500 {
				t.Fatalf("server error: %d %s", r.Status, r.Body)
			}
			if _, err := srv.Client(t, "", "").RegisterAvailable(ctx, "tina"); err != nil {
				t.Fatalf("tina must still be free: %v", err)
			}
		})

		step(t, "cli_creates_tokens", func(t *testing.T) {
			once = cliToken(t, srv.Run("registration-token", "create", "--uses", "1"))
			unlimited = cliToken(t, srv.Run("registration-token", "create"))
			w.secrets.add("registration token once", once)
			w.secrets.add("registration token unlimited", unlimited)
			if once == unlimited {
				t.Fatalf("two tokens are equal: %q", once)
			}
			wantValidity(t, srv, once, true)
			wantValidity(t, srv, unlimited, true)
			wantValidity(t, srv, "nosuchtoken", false)
			r := srv.Do(t, "GET", validityPath, "", nil)
			wantResp(t, "validity without a token", r, 400, "M_MISSING_PARAM")
		})

		step(t, "register_with_token", func(t *testing.T) {
			pw := newPassword()
			r := uia(t, srv, "POST", clientPrefix+"/register", "",
				map[string]any{"username": "tina", "password": pw, "initial_device_display_name": "Tina phone"},
				uiaCreds{RegistrationToken: once})
			wantResp(t, "register with a registration token", r, 200)
			s := session{UserID: userID("tina"), DeviceID: idOf(r, "device_id"), Token: r.String("access_token")}
			if r.String("user_id") != string(s.UserID) || s.Token == "" || s.DeviceID == "" {
				t.Fatalf("register with token: %s", r.Body)
			}
			w.addAccount("tina", pw)
			w.addToken("tina/phone", s, "Tina phone")
			wantValidity(t, srv, once, false)

			// The spent single-use token admits nobody else.
			r = uia(t, srv, "POST", clientPrefix+"/register", "",
				map[string]any{"username": "tom", "password": newPassword()}, uiaCreds{RegistrationToken: once})
			wantResp(t, "register with a spent token", r, 401, "M_FORBIDDEN")
			r = uia(t, srv, "POST", clientPrefix+"/register", "",
				map[string]any{"username": "tom", "password": newPassword()}, uiaCreds{RegistrationToken: "nosuchtoken"})
			wantResp(t, "register with an unknown token", r, 401, "M_FORBIDDEN")
			if _, err := srv.Client(t, "", "").RegisterAvailable(ctx, "tom"); err != nil {
				t.Fatalf("a refused registration took the name tom: %v", err)
			}

			for _, name := range []string{"uma", "ugo"} {
				pw := newPassword()
				r := uia(t, srv, "POST", clientPrefix+"/register", "",
					map[string]any{"username": name, "password": pw, "initial_device_display_name": name + " phone"},
					uiaCreds{RegistrationToken: unlimited})
				wantResp(t, "register "+name+" with the unlimited token", r, 200)
				w.addAccount(name, pw)
				w.addToken(name+"/phone", session{userID(name), idOf(r, "device_id"), r.String("access_token")}, name+" phone")
			}
			wantValidity(t, srv, unlimited, true)
		})

		step(t, "shared_secret_bypasses_token", func(t *testing.T) {
			pw := newPassword()
			admin := &synapseadmin.Client{Client: srv.Client(t, "", "")}
			resp, err := admin.SharedSecretRegister(ctx, srv.SharedSecret(), synapseadmin.ReqSharedSecretRegister{
				Username: "boss", Password: pw, Admin: true,
			})
			if err != nil {
				t.Fatalf("shared-secret register on a token-only server: %v", err)
			}
			w.addAccount("boss", pw)
			s := session{UserID: resp.UserID, DeviceID: resp.DeviceID, Token: resp.AccessToken}
			w.addToken("boss/admin", s, deviceNameOf(t, srv, s))
		})

		step(t, "survives_restart", func(t *testing.T) {
			w.check(t, srv)
			srv.Stop()
			srv.Restart()
			w.check(t, srv)
			wantValidity(t, srv, once, false)
			wantValidity(t, srv, unlimited, true)
			w.secrets.assertNotLogged(t, srv)
		})
	})
}

// cliToken extracts the token from `myelin registration-token create`
// output: a JSON object with "token", or the last word printed.
func cliToken(t *testing.T, out string) string {
	t.Helper()
	var obj struct {
		Token string `json:"token"`
	}
	if json.Unmarshal([]byte(out), &obj) == nil && obj.Token != "" {
		return obj.Token
	}
	fields := strings.Fields(out)
	if len(fields) == 0 {
		t.Fatalf("registration-token create printed nothing")
	}
	return fields[len(fields)-1]
}

func wantValidity(t *testing.T, srv *testserver.Server, token string, want bool) {
	t.Helper()
	r := srv.Do(t, "GET", validityPath+"?token="+url.QueryEscape(token), "", nil)
	wantResp(t, "token validity", r, 200)
	if r.JSON["valid"] != want {
		t.Fatalf("validity of a registration token = %v, want %v", r.JSON["valid"], want)
	}
}

func idOf(r *testserver.Response, key string) id.DeviceID {
	return id.DeviceID(r.String(key))
}
