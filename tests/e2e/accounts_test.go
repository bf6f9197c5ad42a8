package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/synapseadmin"

	"myelin/internal/testserver"
)

// TestAccountLifecycle walks every account operation of issue 2 the way a
// client does, then stops the server (SIGTERM) and restarts it, then kills
// it (SIGKILL) and restarts it, checking after each that every account,
// device, display name and token is exactly as before.
func TestAccountLifecycle(t *testing.T) {
	perEngine(t, func(t *testing.T, engine string) {
		srv := testserver.Start(t, testserver.Options{Engine: engine})
		w := newWorld()
		w.secrets.add("shared secret", srv.SharedSecret())
		ctx := context.Background()
		var refreshTokens []*refreshToken
		var liveRefresh *refreshToken

		step(t, "discovery", func(t *testing.T) {
			anon := srv.Client(t, "", "")
			v, err := anon.Versions(ctx)
			if err != nil {
				t.Fatalf("versions: %v", err)
			}
			if len(v.Versions) == 0 {
				t.Fatalf("versions: empty list")
			}
			flows, err := anon.GetLoginFlows(ctx)
			if err != nil {
				t.Fatalf("login flows: %v", err)
			}
			if !flows.HasFlow(mautrix.AuthTypePassword) {
				t.Fatalf("login flows %+v lack m.login.password", flows.Flows)
			}
			if _, err := anon.RegisterAvailable(ctx, "alice"); err != nil {
				t.Fatalf("register/available for a free name: %v", err)
			}
		})

		step(t, "register_dummy", func(t *testing.T) {
			pw := newPassword()
			s := registerDummy(t, srv, "alice", pw, "Alice phone")
			w.addAccount("alice", pw)
			w.addToken("alice/phone", s, "Alice phone")
			who, err := s.client(t, srv).Whoami(ctx)
			if err != nil {
				t.Fatalf("whoami: %v", err)
			}
			if who.UserID != s.UserID || who.DeviceID != s.DeviceID {
				t.Fatalf("whoami = %s/%s, want %s/%s", who.UserID, who.DeviceID, s.UserID, s.DeviceID)
			}
			r := srv.Do(t, "GET", clientPrefix+"/account/whoami", s.Token, nil)
			if g, ok := r.JSON["is_guest"]; ok && g != false {
				t.Fatalf("whoami: a registered user is not a guest: %s", r.Body)
			}
		})

		step(t, "register_inhibit_login", func(t *testing.T) {
			pw := newPassword()
			r := uia(t, srv, "POST", clientPrefix+"/register", "",
				map[string]any{"username": "ivan", "password": pw, "inhibit_login": true}, uiaCreds{})
			wantResp(t, "register with inhibit_login", r, 200)
			if r.String("user_id") != string(userID("ivan")) {
				t.Fatalf("user_id = %q", r.String("user_id"))
			}
			if _, ok := r.JSON["access_token"]; ok {
				t.Fatalf("inhibit_login: response carries an access_token")
			}
			if _, ok := r.JSON["device_id"]; ok {
				t.Fatalf("inhibit_login: response carries a device_id")
			}
			w.addAccount("ivan", pw)
		})

		step(t, "register_shared_secret_admin", func(t *testing.T) {
			admin := &synapseadmin.Client{Client: srv.Client(t, "", "")}
			pw := newPassword()
			resp, err := admin.SharedSecretRegister(ctx, srv.SharedSecret(), synapseadmin.ReqSharedSecretRegister{
				Username: "root", Password: pw, Admin: true,
			})
			if err != nil {
				t.Fatalf("shared-secret register: %v", err)
			}
			if resp.UserID != userID("root") || resp.AccessToken == "" || resp.DeviceID == "" {
				t.Fatalf("shared-secret register: %+v", resp)
			}
			w.addAccount("root", pw)
			root := session{UserID: resp.UserID, DeviceID: resp.DeviceID, Token: resp.AccessToken}
			w.addToken("root/shared-secret", root, deviceNameOf(t, srv, root))
			assertAdmin(t, srv, root, true)

			pw2 := newPassword()
			resp, err = admin.SharedSecretRegister(ctx, srv.SharedSecret(), synapseadmin.ReqSharedSecretRegister{
				Username: "sam", Password: pw2,
			})
			if err != nil {
				t.Fatalf("shared-secret register (non-admin): %v", err)
			}
			w.addAccount("sam", pw2)
			sam := session{UserID: resp.UserID, DeviceID: resp.DeviceID, Token: resp.AccessToken}
			w.addToken("sam/shared-secret", sam, deviceNameOf(t, srv, sam))
			assertAdmin(t, srv, sam, false)

			// A nonce is single-use and the MAC must match.
			nonce, err := admin.GetRegisterNonce(ctx)
			if err != nil {
				t.Fatalf("nonce: %v", err)
			}
			bad := synapseadmin.ReqSharedSecretRegister{Username: "mallet", Password: newPassword(), Nonce: nonce}
			bad.SHA1Checksum = bad.Sign("not the secret")
			r := srv.DoJSON(t, "POST", "/_synapse/admin/v1/register", "", bad)
			wantResp(t, "shared-secret register with a wrong MAC", r, 403, "M_FORBIDDEN")
			good := synapseadmin.ReqSharedSecretRegister{Username: "mallet", Password: bad.Password, Nonce: nonce}
			good.SHA1Checksum = good.Sign(srv.SharedSecret())
			r = srv.DoJSON(t, "POST", "/_synapse/admin/v1/register", "", good)
			// A nonce is spent even by a failed attempt (else the MAC could be
			// brute-forced against one nonce). Synapse answers 400 here.
			if r.Status != 400 && r.Status != 403 {
				t.Fatalf("shared-secret register with a spent nonce: want 400 or 403, got %d: %s", r.Status, r.Body)
			}
		})

		step(t, "cli_user_create", func(t *testing.T) {
			pw := newPassword()
			srv.Run("user", "create", "carol", "--password", pw)
			w.addAccount("carol", pw)
			pw2 := newPassword()
			srv.Run("user", "create", "opal", "--admin", "--password", pw2)
			w.addAccount("opal", pw2)
			s := login(t, srv, "opal", pw2, "Opal console")
			w.addToken("opal/console", s, "Opal console")
			assertAdmin(t, srv, s, true)
		})

		step(t, "login", func(t *testing.T) {
			a := w.accounts["alice"]
			laptop := login(t, srv, "alice", a.password, "Alice laptop")
			w.addToken("alice/laptop", laptop, "Alice laptop")
			// Element sends the full user ID when the user types one.
			tablet := login(t, srv, string(userID("alice")), a.password, "Alice tablet")
			w.addToken("alice/tablet", tablet, "Alice tablet")
			if laptop.UserID != userID("alice") || tablet.UserID != userID("alice") {
				t.Fatalf("login returned user IDs %s, %s", laptop.UserID, tablet.UserID)
			}
			if laptop.DeviceID == tablet.DeviceID {
				t.Fatalf("two logins got the same device %s", laptop.DeviceID)
			}
			anon := srv.Client(t, "", "")
			_, err := tryLogin(anon, "alice", "wrong-"+a.password, "x")
			wantMatrixErr(t, "login with a wrong password", err, 403, "M_FORBIDDEN")
			_, err = tryLogin(anon, "nobody", a.password, "x")
			wantMatrixErr(t, "login as an unknown user", err, 403, "M_FORBIDDEN")
			// A client may pick its device ID; logging in again with it
			// replaces that device's token instead of adding a device.
			resp, err := anon.Login(ctx, &mautrix.ReqLogin{
				Type:       mautrix.AuthTypePassword,
				Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"},
				Password:   a.password, DeviceID: "ALICEWATCH", InitialDeviceDisplayName: "Alice watch",
			})
			if err != nil {
				t.Fatalf("login with a chosen device_id: %v", err)
			}
			if resp.DeviceID != "ALICEWATCH" {
				t.Fatalf("login with device_id ALICEWATCH got device %s", resp.DeviceID)
			}
			w.addToken("alice/watch", session{resp.UserID, resp.DeviceID, resp.AccessToken}, "Alice watch")
		})

		step(t, "devices", func(t *testing.T) {
			phone := w.find("alice/phone")
			c := phone.s.client(t, srv)
			list, err := c.GetDevicesInfo(ctx)
			if err != nil {
				t.Fatalf("list devices: %v", err)
			}
			if len(list.Devices) != len(w.devices(phone.s.UserID)) {
				t.Fatalf("alice has %d devices, want %d: %+v", len(list.Devices), len(w.devices(phone.s.UserID)), list.Devices)
			}
			laptop := w.find("alice/laptop")
			if err := c.SetDeviceInfo(ctx, laptop.s.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "Alice work laptop"}); err != nil {
				t.Fatalf("rename device: %v", err)
			}
			laptop.deviceName = "Alice work laptop"
			d, err := c.GetDeviceInfo(ctx, laptop.s.DeviceID)
			if err != nil {
				t.Fatalf("get device: %v", err)
			}
			if d.DisplayName != "Alice work laptop" || d.DeviceID != laptop.s.DeviceID {
				t.Fatalf("get device after rename: %+v", d)
			}
			_, err = c.GetDeviceInfo(ctx, "NOSUCHDEVICE")
			wantMatrixErr(t, "get unknown device", err, 404, "M_NOT_FOUND")
			// Another user's device is not this user's to see.
			root := w.find("root/shared-secret")
			_, err = c.GetDeviceInfo(ctx, root.s.DeviceID)
			wantMatrixErr(t, "get another user's device", err, 404, "M_NOT_FOUND")
		})

		step(t, "delete_device_uia", func(t *testing.T) {
			a := w.accounts["alice"]
			phone := w.find("alice/phone")
			tablet := w.find("alice/tablet")
			path := clientPrefix + "/devices/" + string(tablet.s.DeviceID)
			flows := uiaFlows(t, srv, "DELETE", path, phone.s.Token, map[string]any{})
			if !hasFlow(flows, "m.login.password") {
				t.Fatalf("device delete flows %v lack [m.login.password]", flows)
			}
			r := uia(t, srv, "DELETE", path, phone.s.Token, map[string]any{},
				uiaCreds{User: "alice", Password: "wrong-" + a.password})
			wantResp(t, "device delete with a wrong password", r, 401, "M_FORBIDDEN")
			if r.JSON["flows"] == nil {
				t.Fatalf("failed UIA stage must repeat the flows: %s", r.Body)
			}
			if _, err := tablet.s.client(t, srv).Whoami(ctx); err != nil {
				t.Fatalf("a failed delete must change nothing, but the tablet token fails: %v", err)
			}
			// As a mautrix client does it: the bare request returns the
			// UIA session, then DeleteDevice carries the auth dict.
			c := phone.s.client(t, srv)
			body, err := c.MakeRequest(ctx, "DELETE", c.BuildClientURL("v3", "devices", tablet.s.DeviceID),
				&mautrix.ReqDeleteDevice[any]{}, nil)
			var he mautrix.HTTPError
			if !errors.As(err, &he) || he.Response == nil || he.Response.StatusCode != 401 {
				t.Fatalf("DELETE device without auth: want 401, got %v", err)
			}
			session := jsonField(string(body), "session")
			if session == "" {
				t.Fatalf("DELETE device without auth: no UIA session in %s", body)
			}
			err = c.DeleteDevice(ctx, tablet.s.DeviceID, &mautrix.ReqDeleteDevice[any]{Auth: map[string]any{
				"type": "m.login.password", "session": session, "password": a.password,
				"identifier": map[string]any{"type": "m.id.user", "user": "alice"},
			}})
			if err != nil {
				t.Fatalf("DeleteDevice with password auth: %v", err)
			}
			tablet.valid = false
			_, err = c.GetDeviceInfo(ctx, tablet.s.DeviceID)
			wantMatrixErr(t, "get deleted device", err, 404, "M_NOT_FOUND")
			_, err = tablet.s.client(t, srv).Whoami(ctx)
			wantMatrixErr(t, "whoami on a deleted device", err, 401, "M_UNKNOWN_TOKEN")
		})

		step(t, "path_escaping", func(t *testing.T) {
			// '/' is legal in a localpart and anything goes in a device ID
			// the client picks: both must survive the trip through the
			// path (%2F, spaces, dots) without being cleaned or split.
			pw := newPassword()
			s := registerDummy(t, srv, "slash/user", pw, "Slash one")
			sl := w.addAccount("slash/user", pw)
			w.addToken("slash/one", s, "Slash one")
			c := s.client(t, srv)
			if err := c.SetDisplayName(ctx, "Slash User"); err != nil {
				t.Fatalf("set displayname with a / in the user ID: %v", err)
			}
			sl.displayName = "Slash User"
			resp, err := srv.Client(t, "", "").Login(ctx, &mautrix.ReqLogin{
				Type:       mautrix.AuthTypePassword,
				Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "slash/user"},
				Password:   pw, DeviceID: "ODD/dev ice%2F..", InitialDeviceDisplayName: "Odd",
			})
			if err != nil || resp.DeviceID != "ODD/dev ice%2F.." {
				t.Fatalf("login with an odd device_id: %+v %v", resp, err)
			}
			odd := w.addToken("slash/odd", session{resp.UserID, resp.DeviceID, resp.AccessToken}, "Odd")
			if err := c.SetDeviceInfo(ctx, odd.s.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "Odd renamed"}); err != nil {
				t.Fatalf("rename the odd device: %v", err)
			}
			odd.deviceName = "Odd renamed"
			d, err := c.GetDeviceInfo(ctx, odd.s.DeviceID)
			if err != nil || d.DeviceID != odd.s.DeviceID || d.DisplayName != "Odd renamed" {
				t.Fatalf("get the odd device: %+v %v", d, err)
			}
			// The same device ID with its escapes decoded once more is a
			// different (unknown) device.
			_, err = c.GetDeviceInfo(ctx, "ODD/dev ice/..")
			wantMatrixErr(t, "get a device whose ID differs only by an escape", err, 404, "M_NOT_FOUND")
			// The deprecated access_token query parameter still works.
			r := srv.Do(t, "GET", clientPrefix+"/account/whoami?access_token="+url.QueryEscape(odd.s.Token), "", nil)
			wantResp(t, "whoami with the token in the query", r, 200)
			if r.String("device_id") != string(odd.s.DeviceID) {
				t.Fatalf("whoami device_id = %q, want %q", r.String("device_id"), odd.s.DeviceID)
			}
			w.check(t, srv)
		})

		step(t, "delete_devices_uia", func(t *testing.T) {
			a := w.accounts["alice"]
			phone := w.find("alice/phone")
			x := login(t, srv, "alice", a.password, "Alice spare 1")
			y := login(t, srv, "alice", a.password, "Alice spare 2")
			w.addToken("alice/spare1", x, "Alice spare 1")
			w.addToken("alice/spare2", y, "Alice spare 2")
			body := map[string]any{"devices": []string{string(x.DeviceID), string(y.DeviceID), "NOSUCHDEVICE"}}
			flows := uiaFlows(t, srv, "POST", clientPrefix+"/delete_devices", phone.s.Token, body)
			if !hasFlow(flows, "m.login.password") {
				t.Fatalf("delete_devices flows %v lack [m.login.password]", flows)
			}
			r := uia(t, srv, "POST", clientPrefix+"/delete_devices", phone.s.Token, body,
				uiaCreds{User: "alice", Password: a.password})
			// Unknown device IDs in the list are ignored, as Synapse does.
			wantResp(t, "delete_devices", r, 200)
			w.find("alice/spare1").valid = false
			w.find("alice/spare2").valid = false
			w.check(t, srv)
		})

		step(t, "password_change", func(t *testing.T) {
			pw := newPassword()
			desk := registerDummy(t, srv, "bob", pw, "Bob desk")
			bob := w.addAccount("bob", pw)
			w.addToken("bob/desk", desk, "Bob desk")
			w.addToken("bob/phone", login(t, srv, "bob", pw, "Bob phone"), "Bob phone")
			w.addToken("bob/tablet", login(t, srv, "bob", pw, "Bob tablet"), "Bob tablet")
			change := func(logout any) {
				t.Helper()
				next := newPassword()
				body := map[string]any{"new_password": next}
				if logout != nil {
					body["logout_devices"] = logout
				}
				r := uia(t, srv, "POST", clientPrefix+"/account/password", desk.Token, body,
					uiaCreds{User: "bob", Password: bob.password})
				wantResp(t, "password change", r, 200)
				bob.oldPasswords = append(bob.oldPasswords, bob.password)
				bob.password = next
				w.secrets.add("password of bob #"+next, next)
			}

			change(false)
			w.check(t, srv) // every bob token still valid, old password refused

			change(true)
			w.find("bob/phone").valid = false
			w.find("bob/tablet").valid = false
			w.check(t, srv)

			// logout_devices defaults to true.
			w.addToken("bob/laptop", login(t, srv, "bob", bob.password, "Bob laptop"), "Bob laptop")
			change(nil)
			w.find("bob/laptop").valid = false
			w.check(t, srv)

			// A wrong current password changes nothing.
			r := uia(t, srv, "POST", clientPrefix+"/account/password", desk.Token,
				map[string]any{"new_password": newPassword()}, uiaCreds{User: "bob", Password: "wrong-" + bob.password})
			wantResp(t, "password change with a wrong password", r, 401, "M_FORBIDDEN")
			w.addToken("bob/after", login(t, srv, "bob", bob.password, "Bob after failed change"), "Bob after failed change")
		})

		step(t, "password_change_without_token", func(t *testing.T) {
			// A forgotten-session client may change the password with UIA
			// alone; with no current device to spare, every device goes.
			pw := newPassword()
			h1 := registerDummy(t, srv, "hank", pw, "Hank one")
			hank := w.addAccount("hank", pw)
			w.addToken("hank/one", h1, "Hank one")
			w.addToken("hank/two", login(t, srv, "hank", pw, "Hank two"), "Hank two")
			next := newPassword()
			r := uia(t, srv, "POST", clientPrefix+"/account/password", "", map[string]any{"new_password": next},
				uiaCreds{User: "hank", Password: pw})
			wantResp(t, "password change without an access token", r, 200)
			hank.oldPasswords = append(hank.oldPasswords, pw)
			hank.password = next
			w.secrets.add("hank new password", next)
			w.invalidateUser(h1.UserID)
			w.check(t, srv)
		})

		step(t, "logout", func(t *testing.T) {
			c := w.accounts["carol"]
			one := login(t, srv, "carol", c.password, "Carol one")
			two := login(t, srv, "carol", c.password, "Carol two")
			w.addToken("carol/one", one, "Carol one")
			w.addToken("carol/two", two, "Carol two")
			if _, err := two.client(t, srv).Logout(ctx); err != nil {
				t.Fatalf("logout: %v", err)
			}
			w.find("carol/two").valid = false
			_, err := two.client(t, srv).Logout(ctx)
			wantMatrixErr(t, "logout twice", err, 401, "M_UNKNOWN_TOKEN")
			w.check(t, srv)
		})

		step(t, "logout_all", func(t *testing.T) {
			pw := newPassword()
			d1 := registerDummy(t, srv, "dave", pw, "Dave one")
			w.addAccount("dave", pw)
			w.addToken("dave/one", d1, "Dave one")
			d2 := login(t, srv, "dave", pw, "Dave two")
			w.addToken("dave/two", d2, "Dave two")
			if _, err := d2.client(t, srv).LogoutAll(ctx); err != nil {
				t.Fatalf("logout/all: %v", err)
			}
			w.invalidateUser(d1.UserID)
			w.addToken("dave/three", login(t, srv, "dave", pw, "Dave three"), "Dave three")
			w.check(t, srv)
		})

		step(t, "deactivate", func(t *testing.T) {
			pw := newPassword()
			e1 := registerDummy(t, srv, "erin", pw, "Erin one")
			erin := w.addAccount("erin", pw)
			w.addToken("erin/one", e1, "Erin one")
			w.addToken("erin/two", login(t, srv, "erin", pw, "Erin two"), "Erin two")
			r := uia(t, srv, "POST", clientPrefix+"/account/deactivate", e1.Token, map[string]any{},
				uiaCreds{User: "erin", Password: pw})
			wantResp(t, "deactivate", r, 200)
			if r.String("id_server_unbind_result") == "" {
				t.Fatalf("deactivate: response lacks id_server_unbind_result: %s", r.Body)
			}
			erin.deactivated = true
			w.invalidateUser(e1.UserID)

			_, err := srv.Client(t, "", "").RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "erin", Password: newPassword()})
			wantMatrixErr(t, "register a deactivated user's name", err, 400, "M_USER_IN_USE")
			admin := &synapseadmin.Client{Client: srv.Client(t, "", "")}
			_, err = admin.SharedSecretRegister(ctx, srv.SharedSecret(), synapseadmin.ReqSharedSecretRegister{Username: "erin", Password: newPassword()})
			wantMatrixErr(t, "shared-secret register a deactivated user's name", err, 400, "M_USER_IN_USE")
			// By any path: the legacy top-level "user" field and the full ID.
			for _, body := range []map[string]any{
				{"type": "m.login.password", "user": "erin", "password": pw},
				{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": string(e1.UserID)}, "password": pw},
			} {
				r := srv.DoJSON(t, "POST", clientPrefix+"/login", "", body)
				wantResp(t, "login to a deactivated account", r, 403, "M_USER_DEACTIVATED", "M_FORBIDDEN")
			}
			w.check(t, srv)
		})

		step(t, "profile", func(t *testing.T) {
			phone := w.find("alice/phone")
			c := phone.s.client(t, srv)
			if err := c.SetDisplayName(ctx, "Alice Liddell"); err != nil {
				t.Fatalf("set displayname: %v", err)
			}
			w.accounts["alice"].displayName = "Alice Liddell"
			p, err := srv.Client(t, "", "").GetProfile(ctx, phone.s.UserID)
			if err == nil {
				// Profile lookups may require auth; either way the value must match.
				if p.DisplayName != "Alice Liddell" {
					t.Fatalf("profile displayname = %q", p.DisplayName)
				}
			} else {
				wantMatrixErr(t, "unauthenticated profile lookup", err, 401, "M_MISSING_TOKEN")
			}
			avatar := id.MustParseContentURI("mxc://" + testserver.ServerName + "/aliceavatar")
			if err := c.SetAvatarURL(ctx, avatar); err != nil {
				t.Fatalf("set avatar_url: %v", err)
			}
			p, err = c.GetProfile(ctx, phone.s.UserID)
			if err != nil || p.DisplayName != "Alice Liddell" || p.AvatarURL != avatar {
				t.Fatalf("whole profile: %+v, %v", p, err)
			}
			// Nobody may edit another user's profile.
			other := w.find("root/shared-secret").s.client(t, srv)
			r := srv.DoJSON(t, "PUT", clientPrefix+"/profile/"+pathUser(phone.s.UserID)+"/displayname",
				w.find("root/shared-secret").s.Token, map[string]any{"displayname": "Mallory was here"})
			wantResp(t, "set another user's displayname", r, 403, "M_FORBIDDEN")
			dn, err := other.GetDisplayName(ctx, phone.s.UserID)
			if err != nil || dn.DisplayName != "Alice Liddell" {
				t.Fatalf("displayname after a refused edit: %+v %v", dn, err)
			}
		})

		step(t, "refresh_tokens", func(t *testing.T) {
			pw := newPassword()
			setup := registerDummy(t, srv, "frank", pw, "Frank setup")
			frank := w.addAccount("frank", pw)
			w.addToken("frank/setup", setup, "Frank setup")
			if _, err := setup.client(t, srv).LogoutAll(ctx); err != nil {
				t.Fatalf("logout/all: %v", err)
			}
			w.invalidateUser(setup.UserID)
			resp, err := srv.Client(t, "", "").Login(ctx, &mautrix.ReqLogin{
				Type:                     mautrix.AuthTypePassword,
				Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "frank"},
				Password:                 frank.password,
				InitialDeviceDisplayName: "Frank refresh",
				RefreshToken:             true,
			})
			if err != nil {
				t.Fatalf("login with refresh_token: %v", err)
			}
			if resp.RefreshToken == "" {
				t.Fatalf("login with refresh_token: true returned no refresh_token")
			}
			w.secrets.add("frank refresh 1", resp.RefreshToken)
			w.secrets.add("frank access 1", resp.AccessToken)
			at2, rt2 := mustRefresh(t, srv, "frank's first refresh token", resp.RefreshToken)
			w.secrets.add("frank refresh 2", rt2)
			s2 := session{UserID: resp.UserID, DeviceID: resp.DeviceID, Token: at2}
			w.addToken("frank/refreshed", s2, "Frank refresh")
			// Using the new access token revokes the old refresh token.
			if _, err := s2.client(t, srv).Whoami(ctx); err != nil {
				t.Fatalf("whoami with refreshed token: %v", err)
			}
			refreshTokens = append(refreshTokens, &refreshToken{label: "frank's first refresh token", value: resp.RefreshToken})
			liveRefresh = &refreshToken{label: "frank's second refresh token", value: rt2, valid: true}
			refreshTokens = append(refreshTokens, liveRefresh)
			checkRefreshRevoked(t, srv, refreshTokens)
			r := srv.DoJSON(t, "POST", clientPrefix+"/refresh", "", map[string]any{"refresh_token": "not-a-refresh-token"})
			wantResp(t, "refresh with an unknown token", r, 401, "M_UNKNOWN_TOKEN")
		})

		step(t, "capabilities", func(t *testing.T) {
			caps, err := w.find("alice/phone").s.client(t, srv).Capabilities(ctx)
			if err != nil {
				t.Fatalf("capabilities: %v", err)
			}
			if caps.ChangePassword == nil || !caps.ChangePassword.Enabled {
				t.Fatalf("capabilities: m.change_password must be enabled: %+v", caps.ChangePassword)
			}
		})

		step(t, "before_restart", func(t *testing.T) {
			w.check(t, srv)
			checkRefreshRevoked(t, srv, refreshTokens)
		})

		step(t, "restart_after_sigterm", func(t *testing.T) {
			srv.Stop()
			r, err := httpGet(srv.URL("/_matrix/client/versions"))
			if err == nil {
				t.Fatalf("server still answering after SIGTERM: %d", r)
			}
			srv.Restart()
			w.check(t, srv)
			checkRefreshRevoked(t, srv, refreshTokens)
		})

		step(t, "restart_after_kill9", func(t *testing.T) {
			// Writes acknowledged just before a crash must survive it.
			laptop := w.find("alice/laptop")
			c := laptop.s.client(t, srv)
			if err := c.SetDeviceInfo(ctx, laptop.s.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "Alice laptop before crash"}); err != nil {
				t.Fatalf("rename: %v", err)
			}
			laptop.deviceName = "Alice laptop before crash"
			if err := c.SetDisplayName(ctx, "Alice before crash"); err != nil {
				t.Fatalf("displayname: %v", err)
			}
			w.accounts["alice"].displayName = "Alice before crash"
			pw := newPassword()
			late := registerDummy(t, srv, "gina", pw, "Gina just registered")
			w.addAccount("gina", pw)
			w.addToken("gina/late", late, "Gina just registered")
			watch := w.find("alice/watch")
			if _, err := watch.s.client(t, srv).Logout(ctx); err != nil {
				t.Fatalf("logout: %v", err)
			}
			watch.valid = false

			srv.Kill()
			srv.Restart()
			w.check(t, srv)
			checkRefreshRevoked(t, srv, refreshTokens)
			// The live refresh token still works after both restarts.
			at3, rt3 := mustRefresh(t, srv, liveRefresh.label, liveRefresh.value)
			w.secrets.add("frank access 3", at3)
			w.secrets.add("frank refresh 3", rt3)
			s3 := w.find("frank/refreshed").s
			s3.Token = at3
			if who, err := s3.client(t, srv).Whoami(ctx); err != nil || who.DeviceID != s3.DeviceID {
				t.Fatalf("whoami after refresh across restarts: %+v %v", who, err)
			}
		})

		step(t, "no_secrets_in_logs", func(t *testing.T) {
			w.secrets.assertNotLogged(t, srv)
		})
	})
}

func (w *world) find(label string) *token {
	for _, tk := range w.tokens {
		if tk.label == label {
			return tk
		}
	}
	panic("e2e: no token labelled " + label)
}

// deviceNameOf reads a device's display name as the server reports it.
func deviceNameOf(t *testing.T, srv *testserver.Server, s session) string {
	t.Helper()
	d, err := s.client(t, srv).GetDeviceInfo(context.Background(), s.DeviceID)
	if err != nil {
		t.Fatalf("get own device %s: %v", s.DeviceID, err)
	}
	return d.DisplayName
}

// assertAdmin checks server-admin status through the Synapse-compatible
// admin API (GET /_synapse/admin/v1/users/{userId}/admin), which admin tools
// use and which only an admin may call.
func assertAdmin(t *testing.T, srv *testserver.Server, s session, want bool) {
	t.Helper()
	r := srv.Do(t, "GET", "/_synapse/admin/v1/users/"+pathUser(s.UserID)+"/admin", s.Token, nil)
	if want {
		wantResp(t, "admin check by an admin", r, 200)
		if r.JSON["admin"] != true {
			t.Fatalf("%s: admin = %v, want true", s.UserID, r.JSON["admin"])
		}
		return
	}
	wantResp(t, "admin API called by a non-admin", r, 403, "M_FORBIDDEN")
}

// httpGet reports the status of a plain GET, or the transport error.
func httpGet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// jsonField returns a top-level string field of a JSON body, or "".
func jsonField(body, key string) string {
	var m map[string]any
	if json.Unmarshal([]byte(body), &m) != nil {
		return ""
	}
	v, _ := m[key].(string)
	return v
}
