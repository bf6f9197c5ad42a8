package storage_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"myelin/internal/pgtest"
	"myelin/storage"
	"myelin/storage/storagetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// eachEngine runs fn against a fresh, migrated database on SQLite and on
// PostgreSQL: the conformance suite for the portable SQL.
func eachEngine(t *testing.T, fn func(t *testing.T, db *storage.DB)) {
	t.Helper()
	for _, engine := range storagetest.Engines {
		t.Run(engine, func(t *testing.T) {
			fn(t, storagetest.OpenMigrated(t, engine, 4))
		})
	}
}

func strp(s string) *string { return &s }

func mustCreate(t *testing.T, a *storage.Accounts, localpart, device, access, refresh string) {
	t.Helper()
	na := storage.NewAccount{Localpart: localpart, PasswordHash: "hash-" + localpart, CreatedTS: 1000}
	if device != "" {
		na.Device = &storage.NewDevice{DeviceID: device, DisplayName: strp("phone"), IP: "10.0.0.1", TS: 1000,
			Tokens: storage.NewTokens{AccessHash: access, RefreshHash: refresh}}
	}
	if err := a.CreateAccount(context.Background(), na); err != nil {
		t.Fatalf("create %s: %v", localpart, err)
	}
}

func TestCreateAccountAndConflict(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		a := storage.NewAccounts(db)
		mustCreate(t, a, "alice", "DEV1", "a1", "")
		u, err := a.User(ctx, "alice")
		if err != nil || u.Localpart != "alice" || u.PasswordHash != "hash-alice" || u.Admin || u.Deactivated || u.CreatedTS != 1000 {
			t.Fatalf("user = %+v, %v", u, err)
		}
		err = a.CreateAccount(ctx, storage.NewAccount{Localpart: "alice", CreatedTS: 2,
			Device: &storage.NewDevice{DeviceID: "X", Tokens: storage.NewTokens{AccessHash: "other"}}})
		if !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("duplicate user: %v, want ErrConflict", err)
		}
		// The failed transaction left nothing behind.
		if _, err := a.AccessToken(ctx, "other"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("token of failed create: %v", err)
		}
		// A duplicate token hash conflicts too (and rolls back the user).
		err = a.CreateAccount(ctx, storage.NewAccount{Localpart: "bob", CreatedTS: 2,
			Device: &storage.NewDevice{DeviceID: "X", Tokens: storage.NewTokens{AccessHash: "a1"}}})
		if !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("duplicate token: %v, want ErrConflict", err)
		}
		if _, err := a.User(ctx, "bob"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("bob after rollback: %v", err)
		}
		ti, err := a.AccessToken(ctx, "a1")
		if err != nil || ti.Localpart != "alice" || ti.DeviceID != "DEV1" || ti.ExpiresTS != 0 || ti.RefreshHash != "" {
			t.Fatalf("token = %+v, %v", ti, err)
		}
		if ti.LastSeenIP != "10.0.0.1" || ti.LastSeenTS != 1000 {
			t.Fatalf("last seen = %q %d", ti.LastSeenIP, ti.LastSeenTS)
		}
	})
}

func TestLoginReusesDeviceAndRevokesItsTokens(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		a := storage.NewAccounts(db)
		mustCreate(t, a, "alice", "DEV1", "a1", "r1")
		if err := a.Login(ctx, "alice", storage.NewDevice{DeviceID: "DEV1", DisplayName: strp("ignored"), IP: "10.0.0.2", TS: 2000,
			Tokens: storage.NewTokens{AccessHash: "a2", ExpiresTS: 5000}}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AccessToken(ctx, "a1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("old token after device reuse: %v", err)
		}
		if _, _, err := a.Refresh(ctx, "r1", storage.NewTokens{AccessHash: "zz"}, 2001); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("old refresh token after device reuse: %v", err)
		}
		ti, err := a.AccessToken(ctx, "a2")
		if err != nil || ti.ExpiresTS != 5000 {
			t.Fatalf("new token = %+v, %v", ti, err)
		}
		d, err := a.Device(ctx, "alice", "DEV1")
		if err != nil || d.DisplayName == nil || *d.DisplayName != "phone" || *d.LastSeenIP != "10.0.0.2" {
			t.Fatalf("device = %+v, %v", d, err)
		}
		if err := a.Login(ctx, "nobody", storage.NewDevice{DeviceID: "D", Tokens: storage.NewTokens{AccessHash: "n"}}); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("login unknown user: %v", err)
		}
	})
}

func TestRefreshRotation(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		a := storage.NewAccounts(db)
		mustCreate(t, a, "alice", "DEV1", "a1", "r1")

		lp, dev, err := a.Refresh(ctx, "r1", storage.NewTokens{AccessHash: "a2", RefreshHash: "r2", ExpiresTS: 9}, 10)
		if err != nil || lp != "alice" || dev != "DEV1" {
			t.Fatalf("refresh = %s %s %v", lp, dev, err)
		}
		if _, err := a.AccessToken(ctx, "a1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("old access token still valid: %v", err)
		}
		// The client may not have received a2/r2: r1 still works and
		// supersedes the unused pair.
		if _, _, err := a.Refresh(ctx, "r1", storage.NewTokens{AccessHash: "a3", RefreshHash: "r3"}, 11); err != nil {
			t.Fatalf("retry with r1: %v", err)
		}
		if _, err := a.AccessToken(ctx, "a2"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("superseded a2 still valid: %v", err)
		}
		if _, _, err := a.Refresh(ctx, "r2", storage.NewTokens{AccessHash: "x"}, 12); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("superseded r2 still valid: %v", err)
		}
		// Using a3 retires r1.
		ti, err := a.AccessToken(ctx, "a3")
		if err != nil || ti.ParentRefresh != "r1" || ti.RefreshHash != "r3" {
			t.Fatalf("a3 = %+v, %v", ti, err)
		}
		if err := a.RetireParentRefresh(ctx, ti.RefreshHash); err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.Refresh(ctx, "r1", storage.NewTokens{AccessHash: "y"}, 13); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("r1 after its child was used: %v", err)
		}
		ti, err = a.AccessToken(ctx, "a3")
		if err != nil || ti.ParentRefresh != "" {
			t.Fatalf("a3 after retire = %+v, %v", ti, err)
		}
		// Using r3 directly also retires nothing else and rotates.
		if _, _, err := a.Refresh(ctx, "r3", storage.NewTokens{AccessHash: "a4", RefreshHash: "r4"}, 14); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AccessToken(ctx, "a3"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("a3 after rotation: %v", err)
		}
	})
}

func TestDevicesRenameDelete(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		a := storage.NewAccounts(db)
		mustCreate(t, a, "alice", "DEV1", "a1", "r1")
		for i, d := range []string{"DEV2", "DEV3"} {
			if err := a.Login(ctx, "alice", storage.NewDevice{DeviceID: d, IP: "1.1.1.1", TS: int64(2000 + i),
				Tokens: storage.NewTokens{AccessHash: "t" + d}}); err != nil {
				t.Fatal(err)
			}
		}
		ds, err := a.Devices(ctx, "alice")
		if err != nil || len(ds) != 3 || ds[0].DeviceID != "DEV1" || ds[2].DeviceID != "DEV3" || ds[1].DisplayName != nil {
			t.Fatalf("devices = %+v, %v", ds, err)
		}
		if err := a.SetDeviceDisplayName(ctx, "alice", "DEV2", "laptop"); err != nil {
			t.Fatal(err)
		}
		if d, _ := a.Device(ctx, "alice", "DEV2"); d.DisplayName == nil || *d.DisplayName != "laptop" {
			t.Fatalf("rename: %+v", d)
		}
		if err := a.SetDeviceDisplayName(ctx, "alice", "NOPE", "x"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("rename unknown: %v", err)
		}
		if _, err := a.Device(ctx, "bob", "DEV1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("other user's device: %v", err)
		}
		if err := a.TouchDevice(ctx, "alice", "DEV3", "9.9.9.9", 5000); err != nil {
			t.Fatal(err)
		}
		if d, _ := a.Device(ctx, "alice", "DEV3"); *d.LastSeenIP != "9.9.9.9" || *d.LastSeenTS != 5000 {
			t.Fatalf("touch: %+v", d)
		}
		if err := a.DeleteDevices(ctx, "alice", []string{"DEV2", "MISSING"}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AccessToken(ctx, "tDEV2"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("token of deleted device: %v", err)
		}
		if err := a.DeleteDevicesExcept(ctx, "alice", "DEV3"); err != nil {
			t.Fatal(err)
		}
		ds, _ = a.Devices(ctx, "alice")
		if len(ds) != 1 || ds[0].DeviceID != "DEV3" {
			t.Fatalf("after delete except: %+v", ds)
		}
		if _, _, err := a.Refresh(ctx, "r1", storage.NewTokens{AccessHash: "q"}, 1); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("refresh token of deleted device: %v", err)
		}
	})
}

func TestSetPasswordAndDeactivate(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		a := storage.NewAccounts(db)
		mustCreate(t, a, "alice", "DEV1", "a1", "r1")
		if err := a.Login(ctx, "alice", storage.NewDevice{DeviceID: "DEV2", Tokens: storage.NewTokens{AccessHash: "a2"}}); err != nil {
			t.Fatal(err)
		}
		if err := a.SetPassword(ctx, "alice", "new", false, "", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AccessToken(ctx, "a2"); err != nil {
			t.Fatalf("password change without logout revoked a2: %v", err)
		}
		if err := a.SetPassword(ctx, "alice", "newer", true, "DEV1", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AccessToken(ctx, "a2"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("other device survived password change: %v", err)
		}
		if _, err := a.AccessToken(ctx, "a1"); err != nil {
			t.Fatalf("current device revoked: %v", err)
		}
		if u, _ := a.User(ctx, "alice"); u.PasswordHash != "newer" {
			t.Fatalf("hash = %q", u.PasswordHash)
		}
		if err := a.UpdateProfile(ctx, "alice", "displayname", json.RawMessage(`"Alice"`), nil); err != nil {
			t.Fatal(err)
		}
		if err := a.CreateUIASession(ctx, storage.UIASession{ID: "s1", Kind: "password", Localpart: "alice", CreatedTS: 1, ExpiresTS: 1 << 40}, 1); err != nil {
			t.Fatal(err)
		}
		if err := a.Deactivate(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		u, err := a.User(ctx, "alice")
		if err != nil || !u.Deactivated || u.PasswordHash != "" {
			t.Fatalf("deactivated user = %+v, %v", u, err)
		}
		if _, err := a.AccessToken(ctx, "a1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("token after deactivate: %v", err)
		}
		if ds, _ := a.Devices(ctx, "alice"); len(ds) != 0 {
			t.Fatalf("devices after deactivate: %+v", ds)
		}
		if p, err := a.Profile(ctx, "alice"); err != nil || len(p) != 0 {
			t.Fatalf("profile after deactivate: %v, %v", p, err)
		}
		if _, err := a.UIASession(ctx, "s1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("uia session after deactivate: %v", err)
		}
		// Every path back in is closed.
		if err := a.Login(ctx, "alice", storage.NewDevice{DeviceID: "D", Tokens: storage.NewTokens{AccessHash: "z"}}); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("login after deactivate: %v", err)
		}
		if err := a.SetPassword(ctx, "alice", "x", false, "", ""); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("set password after deactivate: %v", err)
		}
		if err := a.CreateAccount(ctx, storage.NewAccount{Localpart: "alice", CreatedTS: 5}); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("re-register after deactivate: %v", err)
		}
		if err := a.UpdateProfile(ctx, "alice", "displayname", json.RawMessage(`"x"`), nil); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("profile update after deactivate: %v", err)
		}
		if err := a.Deactivate(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("deactivate unknown: %v", err)
		}
	})
}

func TestProfile(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		a := storage.NewAccounts(db)
		if err := a.CreateAccount(ctx, storage.NewAccount{Localpart: "alice", CreatedTS: 1,
			Profile: map[string]json.RawMessage{"displayname": json.RawMessage(`"alice"`)}}); err != nil {
			t.Fatal(err)
		}
		p, err := a.Profile(ctx, "alice")
		if err != nil || string(p["displayname"]) != `"alice"` {
			t.Fatalf("profile = %v, %v", p, err)
		}
		if err := a.UpdateProfile(ctx, "alice", "displayname", json.RawMessage(`"Alice A"`), nil); err != nil {
			t.Fatal(err)
		}
		if err := a.UpdateProfile(ctx, "alice", "avatar_url", json.RawMessage(`"mxc://x/y"`), nil); err != nil {
			t.Fatal(err)
		}
		veto := errors.New("too big")
		var seen map[string]json.RawMessage
		err = a.UpdateProfile(ctx, "alice", "m.tz", json.RawMessage(`"Europe/Berlin"`), func(m map[string]json.RawMessage) error {
			seen = m
			return veto
		})
		if !errors.Is(err, veto) || len(seen) != 3 {
			t.Fatalf("veto: %v, saw %v", err, seen)
		}
		p, _ = a.Profile(ctx, "alice")
		if len(p) != 2 || string(p["displayname"]) != `"Alice A"` || string(p["avatar_url"]) != `"mxc://x/y"` {
			t.Fatalf("profile = %v", p)
		}
		if err := a.UpdateProfile(ctx, "alice", "avatar_url", nil, nil); err != nil {
			t.Fatal(err)
		}
		if p, _ = a.Profile(ctx, "alice"); len(p) != 1 {
			t.Fatalf("after delete: %v", p)
		}
		if _, err := a.Profile(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown user profile: %v", err)
		}
		if err := a.UpdateProfile(ctx, "nobody", "displayname", json.RawMessage(`"x"`), nil); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown user update: %v", err)
		}
	})
}

func TestRegistrationTokensAndUIASessions(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		a := storage.NewAccounts(db)
		one := 1
		if err := a.CreateRegistrationToken(ctx, storage.RegistrationToken{Token: "tok", UsesAllowed: &one, CreatedTS: 1}); err != nil {
			t.Fatal(err)
		}
		if err := a.CreateRegistrationToken(ctx, storage.RegistrationToken{Token: "tok", CreatedTS: 1}); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("duplicate token: %v", err)
		}
		if err := a.CreateRegistrationToken(ctx, storage.RegistrationToken{Token: "old", ExpiryTS: 50, CreatedTS: 1}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"s1", "s2", "s3"} {
			if err := a.CreateUIASession(ctx, storage.UIASession{ID: id, Kind: "register", CreatedTS: 10, ExpiresTS: 1000}, 10); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.HoldRegistrationToken(ctx, "s1", "tok", []string{"m.login.registration_token"}, 20); err != nil {
			t.Fatal(err)
		}
		// Idempotent for the same session; the single use is taken for others.
		if err := a.HoldRegistrationToken(ctx, "s1", "tok", []string{"m.login.registration_token"}, 20); err != nil {
			t.Fatalf("retry hold: %v", err)
		}
		if err := a.HoldRegistrationToken(ctx, "s2", "tok", nil, 20); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("second hold of single-use token: %v", err)
		}
		if err := a.HoldRegistrationToken(ctx, "s2", "old", nil, 60); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("expired token: %v", err)
		}
		if err := a.HoldRegistrationToken(ctx, "s2", "missing", nil, 20); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown token: %v", err)
		}
		s, err := a.UIASession(ctx, "s1")
		if err != nil || s.RegToken != "tok" || len(s.Completed) != 1 || s.Kind != "register" {
			t.Fatalf("session = %+v, %v", s, err)
		}
		if rt, _ := a.RegistrationToken(ctx, "tok"); rt.Pending != 1 || rt.Completed != 0 || rt.UsesAllowed == nil || *rt.UsesAllowed != 1 {
			t.Fatalf("token state = %+v", rt)
		}
		// Abandoning the session releases the use.
		if err := a.DeleteUIASession(ctx, "s1"); err != nil {
			t.Fatal(err)
		}
		if rt, _ := a.RegistrationToken(ctx, "tok"); rt.Pending != 0 {
			t.Fatalf("after release = %+v", rt)
		}
		if err := a.HoldRegistrationToken(ctx, "s2", "tok", []string{"m.login.registration_token"}, 20); err != nil {
			t.Fatal(err)
		}
		if err := a.CompleteUIAStage(ctx, "s3", "bob", []string{"m.login.dummy"}); err != nil {
			t.Fatal(err)
		}
		if s, _ := a.UIASession(ctx, "s3"); s.Localpart != "bob" || s.Completed[0] != "m.login.dummy" {
			t.Fatalf("s3 = %+v", s)
		}
		// Registering with s2 consumes the use for good.
		if err := a.CreateAccount(ctx, storage.NewAccount{Localpart: "carol", CreatedTS: 30, UIASession: "s2"}); err != nil {
			t.Fatal(err)
		}
		if rt, _ := a.RegistrationToken(ctx, "tok"); rt.Pending != 0 || rt.Completed != 1 {
			t.Fatalf("after registration = %+v", rt)
		}
		// A consumed session cannot authorise a second account.
		if err := a.CreateAccount(ctx, storage.NewAccount{Localpart: "dave", CreatedTS: 30, UIASession: "s2"}); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("reuse of consumed session: %v", err)
		}
		if _, err := a.User(ctx, "dave"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("dave created: %v", err)
		}
		// Creating a session after expiry purges the old ones.
		if err := a.CreateUIASession(ctx, storage.UIASession{ID: "s4", Kind: "register", CreatedTS: 2000, ExpiresTS: 3000}, 2000); err != nil {
			t.Fatal(err)
		}
		if _, err := a.UIASession(ctx, "s3"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("expired session not purged: %v", err)
		}
		if err := a.CompleteUIAStage(ctx, "s3", "", nil); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("complete stage of purged session: %v", err)
		}
	})
}
