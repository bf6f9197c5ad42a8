// Package config owns Myelin's typed configuration: the YAML schema, its
// defaults, and Verify, which reports every problem at once so an admin can
// fix a config file in one pass.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"myelin/internal/outbound"
)

// Config is the whole server configuration. The commented default lives in
// config.yaml at the repository root.
type Config struct {
	ServerName string `yaml:"server_name"`
	// PublicBaseURL is what /.well-known/matrix/client advertises; empty means
	// https://<server_name>.
	PublicBaseURL string `yaml:"public_base_url"`
	// DataDir holds generated secrets (signing key, token secret), the SQLite
	// database by default, and later the media store.
	DataDir string `yaml:"data_dir"`

	Listeners    Listeners    `yaml:"listeners"`
	Database     Database     `yaml:"database"`
	Registration Registration `yaml:"registration"`
	Auth         Auth         `yaml:"auth"`
	Rooms        Rooms        `yaml:"rooms"`
	RateLimits   RateLimits   `yaml:"rate_limits"`
	Logging      Logging      `yaml:"logging"`
	Metrics      Metrics      `yaml:"metrics"`
	Debug        Debug        `yaml:"debug"`
	Outbound     Outbound     `yaml:"outbound"`
	Push         Push         `yaml:"push"`
	Media        Media        `yaml:"media"`
}

// Listeners are the addresses the server binds.
type Listeners struct {
	Client     string `yaml:"client"`     // Client-Server API, e.g. 127.0.0.1:8008
	Federation string `yaml:"federation"` // Server-Server API, e.g. :8448 (empty disables)
	// TLSCert/TLSKey serve the federation listener over TLS when both are set.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// TrustedProxies are the reverse proxies (IPs or CIDRs) whose
	// X-Forwarded-For header is believed. The client IP (rate limits, a
	// device's last_seen_ip) is then the right-most address in that header
	// that is not itself a trusted proxy. Empty: the TCP peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// TrustedProxyNets parses TrustedProxies (Verify reports bad entries); a
// bare IP is a single-address network.
func (l Listeners) TrustedProxyNets() ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, p := range l.TrustedProxies {
		if !strings.Contains(p, "/") {
			ip := net.ParseIP(p)
			if ip == nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR", p)
			}
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// Database selects the engine and its DSN.
type Database struct {
	Engine string `yaml:"engine"` // "sqlite" (default) or "postgres"
	// DSN: a file path for sqlite (relative paths are under data_dir), a
	// postgres:// URL or key=value string for postgres.
	DSN string `yaml:"dsn"`
	// MaxOpenConns bounds the PostgreSQL pool and the SQLite reader pool.
	MaxOpenConns int `yaml:"max_open_conns"`
	// Durability is "full" (the default: every acknowledged commit is
	// fsynced, concurrent room writes sharing one fsync) or "relaxed"
	// (SQLite synchronous=NORMAL, PostgreSQL synchronous_commit=off: a
	// crash of the process loses nothing, a power loss may lose the last
	// commits). Relaxed is never the default and benchmarks label it.
	Durability string `yaml:"durability"`
}

// Durability settings of Database.Durability.
const (
	DurabilityFull    = "full"
	DurabilityRelaxed = "relaxed"
)

// Registration controls who may create accounts.
type Registration struct {
	// Enabled opens /register to anyone who completes the flows.
	Enabled bool `yaml:"enabled"`
	// RequireToken makes m.login.registration_token mandatory.
	RequireToken bool `yaml:"require_token"`
	// SharedSecret enables /_synapse/admin/v1/register. Empty disables it;
	// never commit a real one.
	SharedSecret string `yaml:"shared_secret"`
}

// Auth holds token and password settings.
type Auth struct {
	// PasswordHashCost is the bcrypt cost (4–31). 12 by default.
	PasswordHashCost int `yaml:"password_hash_cost"`
	// AccessTokenLifetime: 0 means access tokens do not expire. When set,
	// clients that asked for refresh tokens get expiring access tokens.
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime"`
	// MinPasswordLength refuses shorter passwords with M_WEAK_PASSWORD.
	MinPasswordLength int `yaml:"min_password_length"`
}

// Rooms configures room creation.
type Rooms struct {
	// DefaultRoomVersion is the version createRoom uses when the request
	// names none; one of CreatableRoomVersions.
	DefaultRoomVersion string `yaml:"default_room_version"`
}

// CreatableRoomVersions are the room versions the roomserver builds events
// for (roomserver.CreatableRoomVersions; config imports nothing, so the list
// is repeated here and the roomserver rejects anything else at start-up).
var CreatableRoomVersions = []string{"9", "10", "11", "12"}

// Rate is a token bucket: PerSecond sustained, Burst at once.
type Rate struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// RateLimits per action. Enabled false turns them all off (conformance runs).
type RateLimits struct {
	Enabled           bool `yaml:"enabled"`
	RegistrationPerIP Rate `yaml:"registration_per_ip"`
	LoginPerIP        Rate `yaml:"login_per_ip"`
	FailedLoginPerAcc Rate `yaml:"failed_login_per_account"`
	// MessagePerUser bounds the events a user sends: messages, state and
	// redactions.
	MessagePerUser Rate `yaml:"message_per_user"`
	// JoinPerUser bounds joins, knocks and room creations.
	JoinPerUser Rate `yaml:"join_per_user"`
	// InvitePerUser bounds invites, including those of createRoom.
	InvitePerUser Rate `yaml:"invite_per_user"`
}

// Logging configures log/slog.
type Logging struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Metrics exposes Prometheus metrics.
type Metrics struct {
	Enabled bool   `yaml:"enabled"`
	Path    string `yaml:"path"` // served on the client listener
}

// Debug holds operator-only diagnostics, all off by default.
type Debug struct {
	// PprofListen serves net/http/pprof on its own listener, never on the
	// client one: profiles expose memory contents and cost CPU. "" disables
	// it; Verify accepts only loopback addresses.
	PprofListen string `yaml:"pprof_listen"`
}

// Outbound configures the one HTTP client for requests to addresses users
// choose (push gateways; later federation and URL previews). Loopback,
// private, link-local, CGNAT, multicast and other special-purpose
// addresses are refused unless listed here.
type Outbound struct {
	// AllowNetworks are CIDRs (or single addresses) exempt from the
	// deny-list, e.g. 127.0.0.0/8 for a push gateway on the same host.
	AllowNetworks []string `yaml:"allow_networks"`
}

// AllowPrefixes parses AllowNetworks (Verify reports bad entries); a bare
// IP is a single-address network. The grammar is the outbound client's own.
func (o Outbound) AllowPrefixes() ([]netip.Prefix, error) {
	return outbound.ParseNetworks(o.AllowNetworks)
}

// Push configures delivery to push gateways.
type Push struct {
	// GatewayTimeout bounds one request to a push gateway.
	GatewayTimeout time.Duration `yaml:"gateway_timeout"`
	// InitialBackoff is the wait after a pusher's first failed delivery;
	// it doubles per consecutive failure (with jitter) up to MaxBackoff.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	// MaxAttempts failed attempts give up one notification.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxAge gives up notifications not delivered this long after they
	// were queued: a phone alert about a day-old message helps no one.
	MaxAge time.Duration `yaml:"max_age"`
}

// Media configures the media repository (files under <data_dir>/media).
type Media struct {
	// MaxUploadSize is the largest upload accepted, in bytes (M_TOO_LARGE
	// above it). /media/config advertises it.
	MaxUploadSize int64 `yaml:"max_upload_size"`
	// UserQuota bounds the bytes one user may have uploaded in total; 0
	// means no quota.
	UserQuota int64 `yaml:"user_quota"`
	// QuotaInfoURI is the info_uri of the M_USER_LIMIT_EXCEEDED error a
	// user over quota gets; empty means public_base_url (or
	// https://<server_name>).
	QuotaInfoURI string `yaml:"quota_info_uri"`
	// MaxThumbnailPixels refuses to decode images with more pixels than
	// this (width x height, read from the header before decoding), so a
	// small file that expands into gigabytes cannot exhaust memory.
	MaxThumbnailPixels int64 `yaml:"max_thumbnail_pixels"`
	// MaxPendingUploads bounds the media IDs one user may have created with
	// /media/v1/create and not yet uploaded to (M_LIMIT_EXCEEDED beyond).
	MaxPendingUploads int `yaml:"max_pending_uploads"`
	// PendingExpiry is how long a created media ID waits for its upload.
	PendingExpiry time.Duration `yaml:"pending_expiry"`
	// LegacyUnauthenticatedDownloads serves local media through the
	// deprecated /_matrix/media/v3/download and /thumbnail endpoints, which
	// take no access token. Off by default: the spec asks servers to freeze
	// them, since anyone holding an mxc:// URI could then fetch the file
	// (patient photos, documents). An admin may turn it on for a while for
	// staff on client versions that predate authenticated media (2024).
	LegacyUnauthenticatedDownloads bool `yaml:"legacy_unauthenticated_downloads"`
	// URLPreviews serves /preview_url: the server fetches pages users ask
	// about (through the outbound client, so outbound.allow_networks
	// governs which addresses it may reach) and stores their images as the
	// asking user's uploads. false answers 404 M_UNRECOGNIZED.
	URLPreviews bool `yaml:"url_previews"`
}

// Default returns the configuration used for anything config.yaml leaves out.
func Default() Config {
	return Config{
		ServerName: "localhost",
		DataDir:    "./data",
		Listeners:  Listeners{Client: "127.0.0.1:8008", Federation: "127.0.0.1:8448"},
		Database:   Database{Engine: "sqlite", DSN: "myelin.db", MaxOpenConns: 8, Durability: DurabilityFull},
		Registration: Registration{
			Enabled: false,
		},
		Auth:  Auth{PasswordHashCost: 12, MinPasswordLength: 8},
		Rooms: Rooms{DefaultRoomVersion: "12"},
		RateLimits: RateLimits{
			Enabled:           true,
			RegistrationPerIP: Rate{PerSecond: 0.17, Burst: 3},
			LoginPerIP:        Rate{PerSecond: 0.17, Burst: 3},
			FailedLoginPerAcc: Rate{PerSecond: 0.17, Burst: 3},
			// A person typing sends far below 5/s; the burst covers a client
			// flushing its offline queue.
			MessagePerUser: Rate{PerSecond: 5, Burst: 30},
			JoinPerUser:    Rate{PerSecond: 0.5, Burst: 10},
			InvitePerUser:  Rate{PerSecond: 0.5, Burst: 20},
		},
		Logging: Logging{Level: "info", Format: "text"},
		Metrics: Metrics{Enabled: true, Path: "/metrics"},
		Push: Push{GatewayTimeout: 10 * time.Second, InitialBackoff: time.Second, MaxBackoff: 10 * time.Minute,
			MaxAttempts: 15, MaxAge: 12 * time.Hour},
		Media: Media{
			MaxUploadSize: 50 << 20,
			UserQuota:     1 << 30,
			// 40 megapixels: any phone photo, and at most ~160 MB of RGBA
			// while a thumbnail is made.
			MaxThumbnailPixels: 40_000_000,
			MaxPendingUploads:  10,
			// The spec recommends 24 hours.
			PendingExpiry: 24 * time.Hour,
			URLPreviews:   true,
		},
	}
}

// Load reads a YAML file over the defaults. Unknown keys are errors: a typo
// in a config file must not silently fall back to a default.
func Load(path string) (Config, error) {
	cfg := Default()
	f, err := os.Open(path)
	if err != nil {
		return cfg, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("parse config %s: %w", path, err)
	}
	return cfg, nil
}

// Verify reports every configuration error at once, joined.
func (c *Config) Verify() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.ServerName == "" {
		bad("server_name: must be set")
	} else if strings.ContainsAny(c.ServerName, " /@:!#") && !validHostPort(c.ServerName) {
		bad("server_name: %q is not a valid server name (hostname[:port])", c.ServerName)
	}
	if c.DataDir == "" {
		bad("data_dir: must be set")
	}
	if c.Listeners.Client == "" {
		bad("listeners.client: must be set")
	} else if _, _, err := net.SplitHostPort(c.Listeners.Client); err != nil {
		bad("listeners.client: %v", err)
	}
	if c.Listeners.Federation != "" {
		if _, _, err := net.SplitHostPort(c.Listeners.Federation); err != nil {
			bad("listeners.federation: %v", err)
		}
	}
	if (c.Listeners.TLSCert == "") != (c.Listeners.TLSKey == "") {
		bad("listeners: tls_cert and tls_key must be set together")
	}
	for _, p := range c.Listeners.TrustedProxies {
		if _, err := (Listeners{TrustedProxies: []string{p}}).TrustedProxyNets(); err != nil {
			bad("listeners.trusted_proxies: %v", err)
		}
	}
	switch c.Database.Engine {
	case "sqlite", "postgres":
	default:
		bad("database.engine: %q is not one of sqlite, postgres", c.Database.Engine)
	}
	if c.Database.DSN == "" {
		bad("database.dsn: must be set")
	}
	if c.Database.MaxOpenConns < 1 {
		bad("database.max_open_conns: must be at least 1")
	}
	switch c.Database.Durability {
	case DurabilityFull, DurabilityRelaxed:
	default:
		bad("database.durability: %q is not one of full, relaxed", c.Database.Durability)
	}
	if c.Debug.PprofListen != "" && !loopbackHostPort(c.Debug.PprofListen) {
		bad("debug.pprof_listen: %q must be a loopback address (127.0.0.1:port or [::1]:port)", c.Debug.PprofListen)
	}
	if c.Registration.RequireToken && !c.Registration.Enabled {
		bad("registration.require_token: only takes effect with registration.enabled: true")
	}
	if c.Auth.PasswordHashCost < 4 || c.Auth.PasswordHashCost > 31 {
		bad("auth.password_hash_cost: %d is outside bcrypt's 4–31", c.Auth.PasswordHashCost)
	}
	if c.Auth.AccessTokenLifetime < 0 {
		bad("auth.access_token_lifetime: must not be negative")
	}
	if c.Auth.MinPasswordLength < 0 {
		bad("auth.min_password_length: must not be negative")
	}
	if !slices.Contains(CreatableRoomVersions, c.Rooms.DefaultRoomVersion) {
		bad("rooms.default_room_version: %q is not one of %s", c.Rooms.DefaultRoomVersion, strings.Join(CreatableRoomVersions, ", "))
	}
	if c.RateLimits.Enabled {
		for name, r := range map[string]Rate{
			"registration_per_ip":      c.RateLimits.RegistrationPerIP,
			"login_per_ip":             c.RateLimits.LoginPerIP,
			"failed_login_per_account": c.RateLimits.FailedLoginPerAcc,
			"message_per_user":         c.RateLimits.MessagePerUser,
			"join_per_user":            c.RateLimits.JoinPerUser,
			"invite_per_user":          c.RateLimits.InvitePerUser,
		} {
			if r.PerSecond <= 0 || r.Burst < 1 {
				bad("rate_limits.%s: per_second must be > 0 and burst >= 1", name)
			}
		}
	}
	switch c.Logging.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("logging.level: %q is not one of debug, info, warn, error", c.Logging.Level)
	}
	switch c.Logging.Format {
	case "text", "json":
	default:
		bad("logging.format: %q is not one of text, json", c.Logging.Format)
	}
	if c.Metrics.Enabled && !strings.HasPrefix(c.Metrics.Path, "/") {
		bad("metrics.path: must start with /")
	}
	if _, err := c.Outbound.AllowPrefixes(); err != nil {
		bad("outbound.allow_networks: %v", err)
	}
	if c.Push.GatewayTimeout <= 0 {
		bad("push.gateway_timeout: must be positive")
	}
	if c.Push.InitialBackoff <= 0 || c.Push.MaxBackoff < c.Push.InitialBackoff {
		bad("push.initial_backoff and push.max_backoff: need 0 < initial_backoff <= max_backoff")
	}
	if c.Push.MaxAttempts < 1 {
		bad("push.max_attempts: must be at least 1")
	}
	if c.Push.MaxAge <= 0 {
		bad("push.max_age: must be positive")
	}
	if c.Media.MaxUploadSize < 1 {
		bad("media.max_upload_size: must be at least 1 byte")
	}
	if c.Media.UserQuota < 0 {
		bad("media.user_quota: must not be negative (0 means no quota)")
	}
	if c.Media.MaxThumbnailPixels < 1 {
		bad("media.max_thumbnail_pixels: must be at least 1")
	}
	if c.Media.MaxPendingUploads < 1 {
		bad("media.max_pending_uploads: must be at least 1")
	}
	if c.Media.PendingExpiry < time.Minute {
		bad("media.pending_expiry: must be at least 1m")
	}
	return errors.Join(errs...)
}

// loopbackHostPort reports whether s is host:port with a literal loopback IP
// (or "localhost"), so a diagnostics listener cannot be exposed by accident.
func loopbackHostPort(s string) bool {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	return err == nil && host != "" && port != "" && !strings.ContainsAny(host, " /@!#")
}
