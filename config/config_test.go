package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultVerifies(t *testing.T) {
	c := Default()
	if err := c.Verify(); err != nil {
		t.Fatalf("Default() does not verify: %v", err)
	}
}

func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the joined error; none = valid
	}{
		{"default", func(*Config) {}, nil},
		{"server name with port", func(c *Config) { c.ServerName = "example.org:8448" }, nil},
		{"empty server name", func(c *Config) { c.ServerName = "" }, []string{"server_name: must be set"}},
		{"bad server name", func(c *Config) { c.ServerName = "exa mple" }, []string{"server_name"}},
		{"no data dir", func(c *Config) { c.DataDir = "" }, []string{"data_dir"}},
		{"bad client listener", func(c *Config) { c.Listeners.Client = "8008" }, []string{"listeners.client"}},
		{"no federation is fine", func(c *Config) { c.Listeners.Federation = "" }, nil},
		{"bad federation listener", func(c *Config) { c.Listeners.Federation = "nope" }, []string{"listeners.federation"}},
		{"half tls", func(c *Config) { c.Listeners.TLSCert = "cert.pem" }, []string{"tls_cert and tls_key"}},
		{"trusted proxies", func(c *Config) { c.Listeners.TrustedProxies = []string{"127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"} }, nil},
		{"bad trusted proxy", func(c *Config) { c.Listeners.TrustedProxies = []string{"10.0.0.0/99", "proxy.local"} },
			[]string{`"10.0.0.0/99" is not`, `"proxy.local" is not`}},
		{"bad engine", func(c *Config) { c.Database.Engine = "mysql" }, []string{"database.engine"}},
		{"no dsn", func(c *Config) { c.Database.DSN = "" }, []string{"database.dsn"}},
		{"no conns", func(c *Config) { c.Database.MaxOpenConns = 0 }, []string{"max_open_conns"}},
		{"token without registration", func(c *Config) { c.Registration.RequireToken = true }, []string{"registration.require_token"}},
		{"token with registration", func(c *Config) { c.Registration.RequireToken = true; c.Registration.Enabled = true }, nil},
		{"bcrypt cost low", func(c *Config) { c.Auth.PasswordHashCost = 3 }, []string{"password_hash_cost"}},
		{"bcrypt cost high", func(c *Config) { c.Auth.PasswordHashCost = 32 }, []string{"password_hash_cost"}},
		{"negative lifetime", func(c *Config) { c.Auth.AccessTokenLifetime = -time.Second }, []string{"access_token_lifetime"}},
		{"negative min password", func(c *Config) { c.Auth.MinPasswordLength = -1 }, []string{"min_password_length"}},
		{"zero rate", func(c *Config) { c.RateLimits.LoginPerIP = Rate{} }, []string{"rate_limits.login_per_ip"}},
		{"zero rate while disabled", func(c *Config) { c.RateLimits.Enabled = false; c.RateLimits.LoginPerIP = Rate{} }, nil},
		{"zero message rate", func(c *Config) { c.RateLimits.MessagePerUser = Rate{PerSecond: 1} }, []string{"rate_limits.message_per_user"}},
		{"negative join rate", func(c *Config) { c.RateLimits.JoinPerUser = Rate{PerSecond: -1, Burst: 1} }, []string{"rate_limits.join_per_user"}},
		{"zero invite rate", func(c *Config) { c.RateLimits.InvitePerUser = Rate{} }, []string{"rate_limits.invite_per_user"}},
		{"room limits off with limits", func(c *Config) { c.RateLimits.Enabled = false; c.RateLimits.InvitePerUser = Rate{} }, nil},
		{"room version 10", func(c *Config) { c.Rooms.DefaultRoomVersion = "10" }, nil},
		{"room version 11", func(c *Config) { c.Rooms.DefaultRoomVersion = "11" }, nil},
		{"room version 3", func(c *Config) { c.Rooms.DefaultRoomVersion = "3" }, []string{`rooms.default_room_version: "3"`}},
		{"no room version", func(c *Config) { c.Rooms.DefaultRoomVersion = "" }, []string{"rooms.default_room_version"}},
		{"bad log level", func(c *Config) { c.Logging.Level = "loud" }, []string{"logging.level"}},
		{"bad log format", func(c *Config) { c.Logging.Format = "xml" }, []string{"logging.format"}},
		{"bad metrics path", func(c *Config) { c.Metrics.Path = "metrics" }, []string{"metrics.path"}},
		{"relaxed durability", func(c *Config) { c.Database.Durability = DurabilityRelaxed }, nil},
		{"bad durability", func(c *Config) { c.Database.Durability = "none" }, []string{"database.durability"}},
		{"no durability", func(c *Config) { c.Database.Durability = "" }, []string{"database.durability"}},
		{"pprof on loopback", func(c *Config) { c.Debug.PprofListen = "127.0.0.1:6060" }, nil},
		{"pprof on ipv6 loopback", func(c *Config) { c.Debug.PprofListen = "[::1]:6060" }, nil},
		{"pprof on localhost", func(c *Config) { c.Debug.PprofListen = "localhost:6060" }, nil},
		{"pprof on all interfaces", func(c *Config) { c.Debug.PprofListen = ":6060" }, []string{"debug.pprof_listen"}},
		{"pprof on a public address", func(c *Config) { c.Debug.PprofListen = "192.0.2.1:6060" }, []string{"debug.pprof_listen"}},
		{"pprof without port", func(c *Config) { c.Debug.PprofListen = "127.0.0.1" }, []string{"debug.pprof_listen"}},
		{"outbound allow-list", func(c *Config) { c.Outbound.AllowNetworks = []string{"127.0.0.0/8", "::1", "10.1.2.3"} }, nil},
		{"bad outbound allow-list", func(c *Config) { c.Outbound.AllowNetworks = []string{"localhost"} }, []string{"outbound.allow_networks"}},
		{"zero gateway timeout", func(c *Config) { c.Push.GatewayTimeout = 0 }, []string{"push.gateway_timeout"}},
		{"backoff cap below start", func(c *Config) { c.Push.MaxBackoff = c.Push.InitialBackoff / 2 }, []string{"push.initial_backoff"}},
		{"zero push attempts", func(c *Config) { c.Push.MaxAttempts = 0 }, []string{"push.max_attempts"}},
		{"zero push age", func(c *Config) { c.Push.MaxAge = 0 }, []string{"push.max_age"}},
		{"no media quota is fine", func(c *Config) { c.Media.UserQuota = 0 }, nil},
		{"zero upload size", func(c *Config) { c.Media.MaxUploadSize = 0 }, []string{"media.max_upload_size"}},
		{"negative media quota", func(c *Config) { c.Media.UserQuota = -1 }, []string{"media.user_quota"}},
		{"zero thumbnail pixels", func(c *Config) { c.Media.MaxThumbnailPixels = 0 }, []string{"media.max_thumbnail_pixels"}},
		{"zero pending uploads", func(c *Config) { c.Media.MaxPendingUploads = 0 }, []string{"media.max_pending_uploads"}},
		{"short pending expiry", func(c *Config) { c.Media.PendingExpiry = time.Second }, []string{"media.pending_expiry"}},
		{"every error at once", func(c *Config) {
			c.ServerName = ""
			c.Database.Engine = "x"
			c.Auth.PasswordHashCost = 1
			c.Logging.Level = "x"
			c.Listeners.TrustedProxies = []string{"x"}
		}, []string{"server_name", "database.engine", "password_hash_cost", "logging.level", "trusted_proxies"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Verify()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if lines := strings.Count(err.Error(), "\n") + 1; lines != len(tc.want) && tc.name == "every error at once" {
				t.Errorf("got %d errors, want %d: %v", lines, len(tc.want), err)
			}
		})
	}
}

func TestTrustedProxyNets(t *testing.T) {
	nets, err := Listeners{TrustedProxies: []string{"192.0.2.7", "10.0.0.0/8", "2001:db8::1"}}.TrustedProxyNets()
	if err != nil || len(nets) != 3 {
		t.Fatal(nets, err)
	}
	for _, tc := range []struct {
		ip   string
		want []bool
	}{
		{"192.0.2.7", []bool{true, false, false}},
		{"192.0.2.8", []bool{false, false, false}},
		{"10.1.2.3", []bool{false, true, false}},
		{"2001:db8::1", []bool{false, false, true}},
	} {
		for i, n := range nets {
			if got := n.Contains(parseIP(t, tc.ip)); got != tc.want[i] {
				t.Errorf("%s in %s = %v", tc.ip, n, got)
			}
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := Load(write("ok.yaml", "server_name: vet.example\nlisteners:\n  trusted_proxies: [\"127.0.0.1\"]\nauth:\n  access_token_lifetime: 5m\n"+
		"rooms:\n  default_room_version: \"11\"\nrate_limits:\n  message_per_user: {per_second: 2, burst: 4}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "vet.example" || c.Listeners.TrustedProxies[0] != "127.0.0.1" || c.Auth.AccessTokenLifetime != 5*time.Minute ||
		c.Auth.PasswordHashCost != 12 || c.Database.Engine != "sqlite" || c.Rooms.DefaultRoomVersion != "11" ||
		c.RateLimits.MessagePerUser != (Rate{PerSecond: 2, Burst: 4}) || c.RateLimits.JoinPerUser != Default().RateLimits.JoinPerUser {
		t.Fatalf("loaded %+v", c)
	}
	if _, err := Load(write("typo.yaml", "server_nam: x\n")); err == nil {
		t.Fatal("unknown key accepted")
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func parseIP(t *testing.T, s string) []byte {
	t.Helper()
	ip := net.ParseIP(s)
	if ip == nil {
		t.Fatalf("bad test IP %q", s)
	}
	return ip
}
