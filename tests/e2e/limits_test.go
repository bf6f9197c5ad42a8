package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"myelin/internal/testserver"
)

// TestRateLimits runs a server with tight limits: registration and login per
// IP, and failed logins per account, each answer 429 M_LIMIT_EXCEEDED with
// Retry-After once spent, a limited request changes nothing, and one
// account's failures do not lock out another.
func TestRateLimits(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		slow := func(burst int) map[string]any { return map[string]any{"per_second": 0.001, "burst": burst} }
		srv := testserver.Start(t, testserver.Options{Engine: engine, Set: map[string]any{
			"rate_limits.enabled":                  true,
			"rate_limits.registration_per_ip":      slow(4),
			"rate_limits.login_per_ip":             slow(8),
			"rate_limits.failed_login_per_account": slow(2),
		}})
		ctx := context.Background()
		// Accounts made by the CLI, which is not rate limited.
		victimPW, bystanderPW := newPassword(), newPassword()
		srv.Run("user", "create", "victim", "--password", victimPW)
		srv.Run("user", "create", "bystander", "--password", bystanderPW)

		step(t, "registration_per_ip", func(t *testing.T) {
			limited := false
			for i := range 8 {
				name := fmt.Sprintf("newcomer%d", i)
				r := uia(t, srv, "POST", clientPrefix+"/register", "", map[string]any{"username": name, "password": newPassword()}, uiaCreds{})
				if r.Status == 429 {
					wantLimited(t, "registration", r)
					if _, err := srv.Client(t, "", "").RegisterAvailable(ctx, name); err != nil {
						t.Fatalf("a rate-limited registration took %s: %v", name, err)
					}
					limited = true
					break
				}
				wantResp(t, "registration within the limit", r, 200)
			}
			if !limited {
				t.Fatalf("8 registrations from one IP with burst 4: never limited")
			}
		})

		step(t, "failed_logins_per_account", func(t *testing.T) {
			anon := srv.Client(t, "", "")
			for range 2 {
				_, err := tryLogin(anon, "victim", "wrong-"+victimPW, "x")
				wantMatrixErr(t, "wrong password within the limit", err, 403, "M_FORBIDDEN")
			}
			r := srv.DoJSON(t, "POST", clientPrefix+"/login", "", loginBody("victim", "wrong-"+victimPW))
			wantLimited(t, "third wrong password", r)
			// The account is protected even from the right password for now.
			r = srv.DoJSON(t, "POST", clientPrefix+"/login", "", loginBody("victim", victimPW))
			wantLimited(t, "right password on a limited account", r)
			// Another account from the same IP is not affected.
			login(t, srv, "bystander", bystanderPW, "bystander")
		})

		step(t, "login_per_ip", func(t *testing.T) {
			for i := range 10 {
				r := srv.DoJSON(t, "POST", clientPrefix+"/login", "", loginBody("bystander", bystanderPW))
				if r.Status == 429 {
					wantLimited(t, "login", r)
					return
				}
				wantResp(t, fmt.Sprintf("login %d within the limit", i), r, 200)
			}
			t.Fatalf("10 more logins from one IP with burst 8: never limited")
		})
	})
}

func loginBody(user, password string) map[string]any {
	return map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": user},
		"password":   password,
	}
}

// wantLimited checks a 429 M_LIMIT_EXCEEDED with a Retry-After header in
// whole seconds and retry_after_ms.
func wantLimited(t *testing.T, what string, r *testserver.Response) {
	t.Helper()
	wantResp(t, what, r, 429, "M_LIMIT_EXCEEDED")
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 1 {
		t.Fatalf("%s: Retry-After = %q, want whole seconds >= 1", what, r.Header.Get("Retry-After"))
	}
	if ms, ok := r.JSON["retry_after_ms"].(float64); !ok || ms <= 0 {
		t.Fatalf("%s: retry_after_ms = %v", what, r.JSON["retry_after_ms"])
	}
}

// TestConcurrency races requests that contend for the same rows: exactly one
// of many simultaneous registrations of one name wins, distinct ones all
// succeed (SQLite's single writer must queue them, not fail them), and
// simultaneous logins each get their own device.
func TestConcurrency(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		ctx := context.Background()
		const n = 12

		step(t, "same_name", func(t *testing.T) {
			errs := parallel(n, func(i int) error {
				_, err := srv.Client(t, "", "").RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "contested", Password: newPassword()})
				return err
			})
			won := 0
			for _, err := range errs {
				if err == nil {
					won++
					continue
				}
				wantMatrixErr(t, "losing a registration race", err, 400, "M_USER_IN_USE")
			}
			if won != 1 {
				t.Fatalf("%d of %d simultaneous registrations of one name succeeded, want 1", won, n)
			}
		})

		pw := newPassword()
		step(t, "distinct_names", func(t *testing.T) {
			errs := parallel(n, func(i int) error {
				_, err := srv.Client(t, "", "").RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: fmt.Sprintf("crowd%d", i), Password: pw})
				return err
			})
			for i, err := range errs {
				if err != nil {
					t.Errorf("simultaneous registration crowd%d: %v", i, err)
				}
			}
		})

		step(t, "same_user_logins", func(t *testing.T) {
			devices := make([]id.DeviceID, n)
			tokens := make([]string, n)
			errs := parallel(n, func(i int) error {
				resp, err := tryLogin(srv.Client(t, "", ""), "crowd0", pw, fmt.Sprintf("crowd0 #%d", i))
				if err == nil {
					devices[i], tokens[i] = resp.DeviceID, resp.AccessToken
				}
				return err
			})
			for i, err := range errs {
				if err != nil {
					t.Fatalf("simultaneous login %d: %v", i, err)
				}
			}
			list, err := srv.Client(t, userID("crowd0"), tokens[0]).GetDevicesInfo(ctx)
			if err != nil {
				t.Fatalf("devices: %v", err)
			}
			got := map[id.DeviceID]bool{}
			for _, d := range list.Devices {
				got[d.DeviceID] = true
			}
			for i, d := range devices {
				if !got[d] {
					t.Errorf("login %d's device %s is missing", i, d)
				}
			}
			if len(got) != n+1 { // + the registration's device
				t.Errorf("crowd0 has %d devices, want %d", len(got), n+1)
			}
		})
	})
}

// parallel runs f(0..n-1) at once and returns their errors by index.
func parallel(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// TestTokenExpiry runs with short-lived access tokens: a client that asked
// for a refresh token gets an expiring access token, which after expiry
// answers 401 M_UNKNOWN_TOKEN with soft_logout true and is replaced by
// /refresh; a client that did not ask keeps a token that does not expire.
// Both verdicts survive a restart.
func TestTokenExpiry(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		const lifetime = 2 * time.Second
		srv := testserver.Start(t, testserver.Options{Engine: engine, Set: map[string]any{
			"auth.access_token_lifetime": lifetime.String(),
		}})
		ctx := context.Background()
		pw := newPassword()
		plain := registerDummy(t, srv, "olga", pw, "Olga plain")

		resp, err := srv.Client(t, "", "").Login(ctx, &mautrix.ReqLogin{
			Type:         mautrix.AuthTypePassword,
			Identifier:   mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "olga"},
			Password:     pw,
			RefreshToken: true,
		})
		if err != nil {
			t.Fatalf("login with refresh_token: %v", err)
		}
		if resp.RefreshToken == "" || resp.ExpiresInMS <= 0 || resp.ExpiresInMS > lifetime.Milliseconds() {
			t.Fatalf("login with refresh_token: refresh_token %t, expires_in_ms %d (lifetime %s)",
				resp.RefreshToken != "", resp.ExpiresInMS, lifetime)
		}
		r := srv.Do(t, "GET", clientPrefix+"/account/whoami", resp.AccessToken, nil)
		wantResp(t, "whoami before expiry", r, 200)

		time.Sleep(lifetime + 300*time.Millisecond)
		check := func(t *testing.T) {
			r := srv.Do(t, "GET", clientPrefix+"/account/whoami", resp.AccessToken, nil)
			wantResp(t, "whoami with an expired token", r, 401, "M_UNKNOWN_TOKEN")
			if r.JSON["soft_logout"] != true {
				t.Fatalf("an expired token must be a soft logout: %s", r.Body)
			}
			r = srv.Do(t, "GET", clientPrefix+"/account/whoami", plain.Token, nil)
			wantResp(t, "whoami with a token issued without refresh", r, 200)
		}
		check(t)
		srv.Stop()
		srv.Restart()
		check(t)

		at, rt := mustRefresh(t, srv, "the refresh token of an expired session", resp.RefreshToken)
		c := srv.Client(t, resp.UserID, at)
		who, err := c.Whoami(ctx)
		if err != nil || who.DeviceID != resp.DeviceID {
			t.Fatalf("whoami after refresh: %+v %v (the device must stay the same)", who, err)
		}
		if rt == "" {
			t.Fatalf("no new refresh token")
		}
	})
}
