package storage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"myelin/storage"
)

// TestOnAuthChange checks that every write that can change what
// AccessToken answers reports the user, after the change is visible to
// readers (so a cache dropping the user cannot re-read the old state), and
// that writes which cannot change it stay quiet.
func TestOnAuthChange(t *testing.T) {
	eachEngine(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		a := storage.NewAccounts(db)
		type report struct {
			localpart string
			tokenLive bool // whether the first device's access token still resolved when reported
		}
		var reports []report
		var watch string // access token hash checked at report time
		a.OnAuthChange(func(localpart string) {
			_, err := a.AccessToken(ctx, watch)
			reports = append(reports, report{localpart, err == nil})
		})
		n := 0
		for _, tc := range []struct {
			name string
			act  func(u, access, refresh string) error
			// want is the report expected ("" = none); live whether the
			// watched token may still resolve then.
			want string
			live bool
		}{
			{"create account", func(u, _, _ string) error {
				return a.CreateAccount(ctx, storage.NewAccount{Localpart: u + "x", CreatedTS: 1})
			}, "x", true},
			{"login on a new device", func(u, _, _ string) error {
				return a.Login(ctx, u, storage.NewDevice{DeviceID: "NEW", TS: 2, Tokens: storage.NewTokens{AccessHash: u + "new"}})
			}, "u", true},
			{"login reusing the device", func(u, _, _ string) error {
				return a.Login(ctx, u, storage.NewDevice{DeviceID: "DEV1", TS: 2, Tokens: storage.NewTokens{AccessHash: u + "new"}})
			}, "u", false},
			{"refresh rotation", func(u, _, refresh string) error {
				_, _, err := a.Refresh(ctx, refresh, storage.NewTokens{AccessHash: u + "a2", RefreshHash: u + "r2"}, 2)
				return err
			}, "u", false},
			{"refresh with an unknown token", func(u, _, _ string) error {
				_, _, err := a.Refresh(ctx, "nope", storage.NewTokens{AccessHash: u + "a2", RefreshHash: u + "r2"}, 2)
				if !errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("want ErrNotFound, got %v", err)
				}
				return nil
			}, "", true},
			{"retire parent refresh", func(u, _, refresh string) error {
				if _, _, err := a.Refresh(ctx, refresh, storage.NewTokens{AccessHash: u + "a2", RefreshHash: u + "r2"}, 2); err != nil {
					return err
				}
				reports = nil // the rotation's own report was checked above
				return a.RetireParentRefresh(ctx, u+"r2")
			}, "u", false},
			{"delete one device", func(u, _, _ string) error { return a.DeleteDevices(ctx, u, []string{"DEV1"}, "") }, "u", false},
			{"delete other devices", func(u, _, _ string) error { return a.DeleteDevicesExcept(ctx, u, "DEV2") }, "u", false},
			{"delete all devices", func(u, _, _ string) error { return a.DeleteDevicesExcept(ctx, u, "") }, "u", false},
			{"password change logging out", func(u, _, _ string) error { return a.SetPassword(ctx, u, "h2", true, "DEV2", "") }, "u", false},
			{"password change keeping devices", func(u, _, _ string) error { return a.SetPassword(ctx, u, "h2", false, "", "") }, "u", true},
			{"deactivation", func(u, _, _ string) error { return a.Deactivate(ctx, u) }, "u", false},
			{"failed deactivation still reports", func(u, _, _ string) error {
				if err := a.Deactivate(ctx, u+"ghost"); !errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("want ErrNotFound, got %v", err)
				}
				return nil
			}, "ghost", true},
			{"touch device", func(u, _, _ string) error { return a.TouchDevice(ctx, u, "DEV1", "10.0.0.2", 5) }, "", true},
			{"rename device", func(u, _, _ string) error { return a.SetDeviceDisplayName(ctx, u, "DEV1", "tablet") }, "", true},
			{"profile change", func(u, _, _ string) error {
				return a.UpdateProfile(ctx, u, "displayname", []byte(`"U"`), nil)
			}, "", true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n++
				u := fmt.Sprintf("u%d", n)
				access, refresh := u+"a1", u+"r1"
				mustCreate(t, a, u, "DEV1", access, refresh)
				if err := a.Login(ctx, u, storage.NewDevice{DeviceID: "DEV2", TS: 1, Tokens: storage.NewTokens{AccessHash: u + "d2"}}); err != nil {
					t.Fatal(err)
				}
				watch, reports = access, nil
				if err := tc.act(u, access, refresh); err != nil {
					t.Fatal(err)
				}
				var want []report
				switch tc.want {
				case "":
				case "u":
					want = []report{{u, tc.live}}
				default:
					want = []report{{u + tc.want, tc.live}}
				}
				if !slices.Equal(reports, want) {
					t.Fatalf("reports = %+v, want %+v", reports, want)
				}
			})
		}
	})
}
