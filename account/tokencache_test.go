package account

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"myelin/config"
	"myelin/internal/apierr"
	"myelin/storage"
	"myelin/storage/sqlite"
)

func TestTokenCacheUnit(t *testing.T) {
	ti := func(user, dev string) storage.TokenInfo { return storage.TokenInfo{Localpart: user, DeviceID: dev} }
	type step struct {
		op    string // put, putStale, get, invalidate, touch
		hash  string
		user  string
		found bool // for get
	}
	for _, tc := range []struct {
		name  string
		max   int
		steps []step
		size  int
	}{
		{"hit after put", 4, []step{{op: "put", hash: "a", user: "u"}, {op: "get", hash: "a", found: true}}, 1},
		{"miss when absent", 4, []step{{op: "get", hash: "a"}}, 0},
		{"invalidate drops only that user", 4, []step{
			{op: "put", hash: "a", user: "u"}, {op: "put", hash: "b", user: "u"}, {op: "put", hash: "c", user: "v"},
			{op: "invalidate", user: "u"},
			{op: "get", hash: "a"}, {op: "get", hash: "b"}, {op: "get", hash: "c", found: true},
		}, 1},
		{"put with an epoch older than an invalidation is dropped", 4, []step{
			{op: "putStale", hash: "a", user: "u"}, {op: "get", hash: "a"},
		}, 0},
		{"evicts least recently used", 2, []step{
			{op: "put", hash: "a", user: "u"}, {op: "put", hash: "b", user: "u"},
			{op: "get", hash: "a", found: true}, // a is now more recent than b
			{op: "put", hash: "c", user: "v"},
			{op: "get", hash: "b"}, {op: "get", hash: "a", found: true}, {op: "get", hash: "c", found: true},
		}, 2},
		{"touch never inserts", 4, []step{{op: "touch", hash: "a"}, {op: "get", hash: "a"}}, 0},
		{"eviction keeps the user index consistent", 1, []step{
			{op: "put", hash: "a", user: "u"}, {op: "put", hash: "b", user: "v"},
			{op: "invalidate", user: "u"}, {op: "get", hash: "b", found: true},
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTokenCache(tc.max)
			for i, st := range tc.steps {
				switch st.op {
				case "put":
					c.put(c.snapshot(), st.hash, ti(st.user, "D"))
				case "putStale":
					e := c.snapshot()
					c.invalidateUser("someone else")
					c.put(e, st.hash, ti(st.user, "D"))
				case "get":
					if _, ok := c.get(st.hash); ok != st.found {
						t.Fatalf("step %d: get(%s) found=%v", i, st.hash, ok)
					}
				case "invalidate":
					c.invalidateUser(st.user)
				case "touch":
					c.touched(st.hash, "1.2.3.4", 5)
				}
			}
			if got := c.len(); got != tc.size {
				t.Fatalf("len = %d, want %d", got, tc.size)
			}
			if len(c.byUser) > c.len() {
				t.Fatalf("user index holds %d users for %d entries", len(c.byUser), c.len())
			}
		})
	}
	// A disabled cache is a nil pointer and every method is a no-op.
	var off *tokenCache = newTokenCache(0)
	off.put(off.snapshot(), "a", ti("u", "D"))
	off.touched("a", "", 0)
	off.invalidateUser("u")
	if _, ok := off.get("a"); ok || off.len() != 0 {
		t.Fatal("disabled cache stored something")
	}
	// touched updates the cached last-seen values in place.
	c := newTokenCache(2)
	c.put(c.snapshot(), "a", ti("u", "D"))
	c.touched("a", "10.0.0.9", 42)
	if got, _ := c.get("a"); got.LastSeenIP != "10.0.0.9" || got.LastSeenTS != 42 {
		t.Fatalf("touched: %+v", got)
	}
}

// softLogout reports the soft_logout flag of an M_UNKNOWN_TOKEN error.
func softLogout(err error) bool {
	e, ok := apierr.As(err)
	if !ok {
		return false
	}
	soft, _ := e.Extra["soft_logout"].(bool)
	return soft
}

// TestTokenCacheInvalidation checks, for every write that can kill or change
// a token, that a token served from the cache just before is refused
// immediately after the write returned.
func TestTokenCacheInvalidation(t *testing.T) {
	const pw = "long enough pw"
	eachEngine(t, func(c *config.Config) { c.Auth.AccessTokenLifetime = time.Hour }, func(t *testing.T, s *Service, clk *clock) {
		ctx := context.Background()
		n := 0
		type device struct {
			token, refresh string
			caller         *Caller
		}
		for _, tc := range []struct {
			name string
			// act runs the change; me is the device that asks for it, other
			// a second device of the same user, bystander another user's.
			act func(t *testing.T, user string, me, other *device) error
			// dead lists which tokens must be refused afterwards, by role.
			meDead, otherDead bool
		}{
			{"logout", func(t *testing.T, _ string, me, _ *device) error { return s.Logout(ctx, me.caller) }, true, false},
			{"logout all", func(t *testing.T, _ string, me, _ *device) error { return s.LogoutAll(ctx, me.caller) }, true, true},
			{"delete one device", func(t *testing.T, user string, me, other *device) error {
				return s.DeleteDevices(ctx, me.caller, []string{other.caller.DeviceID}, &AuthData{Type: StagePassword, User: user, Password: pw})
			}, false, true},
			{"delete devices in bulk", func(t *testing.T, user string, me, other *device) error {
				return s.DeleteDevices(ctx, me.caller, []string{me.caller.DeviceID, other.caller.DeviceID}, &AuthData{Type: StagePassword, User: user, Password: pw})
			}, true, true},
			{"password change logging out others", func(t *testing.T, user string, me, _ *device) error {
				return s.ChangePassword(ctx, me.caller, "another long pw", true, &AuthData{Type: StagePassword, User: user, Password: pw})
			}, false, true},
			{"password change keeping devices", func(t *testing.T, user string, me, _ *device) error {
				return s.ChangePassword(ctx, me.caller, "another long pw", false, &AuthData{Type: StagePassword, User: user, Password: pw})
			}, false, false},
			{"password change without a token", func(t *testing.T, user string, _, _ *device) error {
				return s.ChangePassword(ctx, nil, "another long pw", true, &AuthData{Type: StagePassword, User: user, Password: pw})
			}, true, true},
			{"deactivation", func(t *testing.T, user string, me, _ *device) error {
				return s.Deactivate(ctx, me.caller, &AuthData{Type: StagePassword, User: user, Password: pw})
			}, true, true},
			{"refresh rotation", func(t *testing.T, _ string, me, _ *device) error {
				_, err := s.Refresh(ctx, me.refresh)
				return err
			}, true, false},
			{"login reusing the device ID", func(t *testing.T, user string, me, _ *device) error {
				_, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: user, Password: pw, DeviceID: me.caller.DeviceID})
				return err
			}, true, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n++
				user := fmt.Sprintf("u%d", n)
				if _, err := s.CreateUser(ctx, user, pw, false); err != nil {
					t.Fatal(err)
				}
				login := func() *device {
					ls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: user, Password: pw, RefreshToken: true})
					if err != nil {
						t.Fatal(err)
					}
					return &device{token: ls.AccessToken, refresh: ls.RefreshToken}
				}
				me, other := login(), login()
				if _, err := s.CreateUser(ctx, user+"b", pw, false); err != nil {
					t.Fatal(err)
				}
				bls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: user + "b", Password: pw})
				if err != nil {
					t.Fatal(err)
				}
				bystander := &device{token: bls.AccessToken}
				// Two rounds: the first fills the cache, the second must be
				// answered from it (else this test would prove nothing).
				for round := 0; round < 2; round++ {
					hits := s.tokens.hits.Load()
					for _, d := range []*device{me, other, bystander} {
						if d.caller, err = s.Authenticate(ctx, d.token, "10.0.0.1"); err != nil {
							t.Fatalf("round %d: %v", round, err)
						}
					}
					if round == 1 && s.tokens.hits.Load()-hits != 3 {
						t.Fatalf("second round not served from the cache (%d hits)", s.tokens.hits.Load()-hits)
					}
				}
				if err := tc.act(t, user, me, other); err != nil {
					t.Fatalf("act: %v", err)
				}
				for _, d := range []struct {
					role string
					dev  *device
					dead bool
				}{{"me", me, tc.meDead}, {"other", other, tc.otherDead}, {"bystander", bystander, false}} {
					_, err := s.Authenticate(ctx, d.dev.token, "10.0.0.1")
					if d.dead && (code(err) != "M_UNKNOWN_TOKEN" || softLogout(err)) {
						t.Errorf("%s: token still accepted or wrong error after the change: %v", d.role, err)
					}
					if !d.dead && err != nil {
						t.Errorf("%s: token refused: %v", d.role, err)
					}
				}
			})
		}

		t.Run("expired token from the cache is a soft logout", func(t *testing.T) {
			if _, err := s.CreateUser(ctx, "exp", pw, false); err != nil {
				t.Fatal(err)
			}
			ls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: "exp", Password: pw, RefreshToken: true})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				if _, err := s.Authenticate(ctx, ls.AccessToken, ""); err != nil {
					t.Fatal(err)
				}
			}
			if _, ok := s.tokens.get(hashToken(ls.AccessToken)); !ok {
				t.Fatal("token not cached")
			}
			clk.t = clk.t.Add(2 * time.Hour)
			defer func() { clk.t = clk.t.Add(-2 * time.Hour) }()
			if _, err := s.Authenticate(ctx, ls.AccessToken, ""); code(err) != "M_UNKNOWN_TOKEN" || !softLogout(err) {
				t.Fatalf("expired cached token: %v", err)
			}
			// Logout still accepts it (it can only end the session).
			c, err := s.AuthenticateExpired(ctx, ls.AccessToken, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Logout(ctx, c); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AuthenticateExpired(ctx, ls.AccessToken, ""); code(err) != "M_UNKNOWN_TOKEN" || softLogout(err) {
				t.Fatalf("after logout: %v", err)
			}
		})

		t.Run("refresh retires the parent on first use of the new pair", func(t *testing.T) {
			if _, err := s.CreateUser(ctx, "ref", pw, false); err != nil {
				t.Fatal(err)
			}
			ls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: "ref", Password: pw, RefreshToken: true})
			if err != nil {
				t.Fatal(err)
			}
			next, err := s.Refresh(ctx, ls.RefreshToken)
			if err != nil {
				t.Fatal(err)
			}
			// The new token has a pending parent: its first use must go to
			// the database (to retire the parent) and is not cached.
			if _, err := s.Authenticate(ctx, next.AccessToken, ""); err != nil {
				t.Fatal(err)
			}
			if _, ok := s.tokens.get(hashToken(next.AccessToken)); ok {
				t.Fatal("token with a pending parent was cached")
			}
			if _, err := s.Refresh(ctx, ls.RefreshToken); code(err) != "M_UNKNOWN_TOKEN" {
				t.Fatalf("parent refresh token still usable: %v", err)
			}
			// Retired: the next use caches it, and it keeps working.
			for i := 0; i < 2; i++ {
				if _, err := s.Authenticate(ctx, next.AccessToken, ""); err != nil {
					t.Fatal(err)
				}
			}
			if _, ok := s.tokens.get(hashToken(next.AccessToken)); !ok {
				t.Fatal("retired pair not cached")
			}
		})

		t.Run("last seen is written from cached values", func(t *testing.T) {
			if _, err := s.CreateUser(ctx, "seen", pw, false); err != nil {
				t.Fatal(err)
			}
			ls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: "seen", Password: pw, IP: "10.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.Authenticate(ctx, ls.AccessToken, "10.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				advance time.Duration
				ip      string
				wantIP  string
				moved   bool
			}{
				{time.Minute, "10.0.0.1", "10.0.0.1", false},    // same IP within the interval: no write
				{time.Minute, "10.0.0.2", "10.0.0.2", true},     // IP change: written at once
				{time.Minute, "10.0.0.2", "10.0.0.2", false},    // the cache saw the write: no second one
				{6 * time.Minute, "10.0.0.2", "10.0.0.2", true}, // interval passed: written
			} {
				before, err := s.Device(ctx, c, c.DeviceID)
				if err != nil {
					t.Fatal(err)
				}
				clk.t = clk.t.Add(tc.advance)
				if _, err := s.Authenticate(ctx, ls.AccessToken, tc.ip); err != nil {
					t.Fatal(err)
				}
				after, err := s.Device(ctx, c, c.DeviceID)
				if err != nil {
					t.Fatal(err)
				}
				if *after.LastSeenIP != tc.wantIP || (*after.LastSeenTS != *before.LastSeenTS) != tc.moved {
					t.Fatalf("%+v: last seen %s at %d (was %d)", tc, *after.LastSeenIP, *after.LastSeenTS, *before.LastSeenTS)
				}
			}
		})
	})
}

// TestTokenCacheConcurrentLogout hammers Authenticate from many goroutines
// while one logs the device out: once Logout has returned, no Authenticate
// that starts afterwards may succeed.
func TestTokenCacheConcurrentLogout(t *testing.T) {
	eachEngine(t, nil, func(t *testing.T, s *Service, _ *clock) {
		ctx := context.Background()
		const pw = "long enough pw"
		for round := 0; round < 5; round++ {
			user := fmt.Sprintf("c%d", round)
			if _, err := s.CreateUser(ctx, user, pw, false); err != nil {
				t.Fatal(err)
			}
			ls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: user, Password: pw})
			if err != nil {
				t.Fatal(err)
			}
			caller, err := s.Authenticate(ctx, ls.AccessToken, "")
			if err != nil {
				t.Fatal(err)
			}
			var (
				loggedOut atomic.Bool
				accepted  atomic.Int64
				stale     atomic.Int64
				wg        sync.WaitGroup
				stop      = make(chan struct{})
			)
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						after := loggedOut.Load()
						_, err := s.Authenticate(ctx, ls.AccessToken, "")
						switch {
						case err == nil && after:
							stale.Add(1)
						case err == nil:
							accepted.Add(1)
						case code(err) != "M_UNKNOWN_TOKEN":
							t.Errorf("authenticate: %v", err)
							return
						}
					}
				}()
			}
			time.Sleep(20 * time.Millisecond)
			if err := s.Logout(ctx, caller); err != nil {
				t.Fatal(err)
			}
			loggedOut.Store(true)
			time.Sleep(20 * time.Millisecond)
			close(stop)
			wg.Wait()
			if stale.Load() != 0 {
				t.Fatalf("round %d: %d authentications succeeded after logout returned", round, stale.Load())
			}
			if accepted.Load() == 0 {
				t.Fatalf("round %d: no authentication succeeded before logout", round)
			}
		}
	})
}

// BenchmarkAuthenticate compares a cached and an uncached token lookup on
// SQLite (the default engine) for one device authenticating repeatedly from
// the same IP, as a busy client does.
func BenchmarkAuthenticate(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"cached", defaultTokenCacheSize}, {"uncached", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			db, err := sqlite.Open(filepath.Join(dir, "a.db"), 4)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			if err := db.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			s, err := New(testConfig(), db, WithTokenCache(bc.size))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.CreateUser(ctx, "bench", "long enough pw", false); err != nil {
				b.Fatal(err)
			}
			ls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: "bench", Password: "long enough pw", IP: "10.0.0.1"})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Authenticate(ctx, ls.AccessToken, "10.0.0.1"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func TestTokenCacheMetrics(t *testing.T) {
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "a.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(testConfig(), db, WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, "m", "long enough pw", false); err != nil {
		t.Fatal(err)
	}
	ls, err := s.Login(ctx, LoginRequest{Type: LoginTypePassword, User: "m", Password: "long enough pw"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Authenticate(ctx, ls.AccessToken, ""); err != nil {
			t.Fatal(err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		got[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
	}
	want := map[string]float64{"myelin_access_token_cache_hits_total": 2, "myelin_access_token_cache_misses_total": 1}
	if !maps.Equal(got, want) {
		t.Fatalf("metrics = %v, want %v", got, want)
	}
	// A second service on the same registry is refused, not silently shared.
	if _, err := New(testConfig(), db, WithMetrics(reg)); err == nil {
		t.Fatal("duplicate registration accepted")
	}
}
