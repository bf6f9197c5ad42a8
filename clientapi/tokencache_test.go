package clientapi

import (
	"fmt"
	"testing"
	"time"

	"myelin/config"
)

// TestTokenRevocationIsImmediate drives every endpoint that revokes access
// tokens through the router, with the tokens just used (so the account
// service has them cached), and checks the next request with a revoked
// token is refused at once while the others keep working.
func TestTokenRevocationIsImmediate(t *testing.T) {
	eachEngine(t, func(c *config.Config) { c.Auth.AccessTokenLifetime = time.Hour }, func(t *testing.T, s *server) {
		const pw = "correct horse"
		for i, tc := range []struct {
			name string
			// act revokes through the API; me and other are two devices
			// of the same user (other has device ID OTHER).
			act                 func(user string, me, other resp) resp
			meLives, otherLives bool
		}{
			{"logout", func(_ string, me, _ resp) resp {
				return s.do("POST", v3+"/logout", me.str("access_token"), nil)
			}, false, true},
			{"logout all", func(_ string, me, _ resp) resp {
				return s.do("POST", v3+"/logout/all", me.str("access_token"), nil)
			}, false, false},
			{"delete device", func(user string, me, _ resp) resp {
				r := s.do("DELETE", v3+"/devices/OTHER", me.str("access_token"), nil)
				return s.do("DELETE", v3+"/devices/OTHER", me.str("access_token"), map[string]any{"auth": passwordAuth(user, pw, r.str("session"))})
			}, true, false},
			{"delete devices", func(user string, me, _ resp) resp {
				body := map[string]any{"devices": []string{"OTHER", me.str("device_id")}}
				r := s.do("POST", v3+"/delete_devices", me.str("access_token"), body)
				body["auth"] = passwordAuth(user, pw, r.str("session"))
				return s.do("POST", v3+"/delete_devices", me.str("access_token"), body)
			}, false, false},
			{"password change", func(user string, me, _ resp) resp {
				return s.do("POST", v3+"/account/password", me.str("access_token"), map[string]any{"new_password": "new password 1",
					"auth": passwordAuth(user, pw, "")})
			}, true, false},
			{"deactivate", func(user string, me, _ resp) resp {
				return s.do("POST", v3+"/account/deactivate", me.str("access_token"), map[string]any{"auth": passwordAuth(user, pw, "")})
			}, false, false},
			{"refresh", func(_ string, me, _ resp) resp {
				return s.do("POST", v3+"/refresh", "", map[string]any{"refresh_token": me.str("refresh_token")})
			}, false, true},
			{"login reusing a device ID", func(user string, _, _ resp) resp {
				return s.login(user, pw, map[string]any{"device_id": "OTHER"})
			}, true, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				user := fmt.Sprintf("tc%d", i)
				s.register(user, pw)
				me := s.login(user, pw, map[string]any{"refresh_token": true})
				other := s.login(user, pw, map[string]any{"device_id": "OTHER"})
				s.expect(me, 200, "")
				s.expect(other, 200, "")
				for range 2 {
					for _, d := range []resp{me, other} {
						s.expect(s.do("GET", v3+"/account/whoami", d.str("access_token"), nil), 200, "")
					}
				}
				s.expect(tc.act(user, me, other), 200, "")
				for _, d := range []struct {
					r     resp
					lives bool
				}{{me, tc.meLives}, {other, tc.otherLives}} {
					r := s.do("GET", v3+"/account/whoami", d.r.str("access_token"), nil)
					if d.lives {
						s.expect(r, 200, "")
						continue
					}
					s.expect(r, 401, "M_UNKNOWN_TOKEN")
					if r.body["soft_logout"] != false {
						t.Fatalf("revoked token answered soft_logout: %s", r.raw)
					}
				}
			})
		}
	})
}
