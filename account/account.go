// Package account owns local accounts: registration (user-interactive auth,
// registration tokens, shared-secret admin registration), login, access and
// refresh tokens, devices, password changes, deactivation, profiles, and the
// rate limits that guard them. It speaks in Matrix terms (user IDs, errcodes
// as *apierr.Error) but knows nothing about HTTP: clientapi decodes requests
// and renders the errors this package returns.
//
// Invariants: tokens are random (256 bits), prefixed ("myt_" access, "myr_"
// refresh) and stored only as sha256 hashes; passwords are stored only as
// bcrypt hashes; a deactivated account can never obtain or use a token again.
package account

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"myelin/config"
	"myelin/internal/apierr"
	"myelin/internal/ratelimit"
	"myelin/storage"
)

// Service is the account component. It is safe for concurrent use.
type Service struct {
	cfg   *config.Config
	store *storage.Accounts
	now   func() time.Time

	regLimit    *ratelimit.Keyed // registration attempts per IP
	loginLimit  *ratelimit.Keyed // login attempts per IP
	failedLimit *ratelimit.Keyed // failed password checks per account

	nonceMu sync.Mutex
	nonces  map[string]time.Time // shared-secret registration nonces → expiry

	dummyHash []byte // compared against when a login names no user, so timing leaks nothing

	devicesRemoved func(localpart string) // see WithDevicesRemoved

	tokenCacheSize int         // see WithTokenCache
	tokens         *tokenCache // nil when disabled
	metrics        prometheus.Registerer
}

// Option adjusts a Service at construction.
type Option func(*Service)

// WithClock replaces time.Now (tests use it to expire tokens and nonces).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithTokenCache sets how many access-token lookups are kept in memory
// (default 10,000); 0 disables the cache. See tokenCache for why it is
// exact, and README.md for why it is single-process only.
func WithTokenCache(entries int) Option { return func(s *Service) { s.tokenCacheSize = entries } }

// WithMetrics registers the token cache's hit and miss counters on reg.
func WithMetrics(reg prometheus.Registerer) Option { return func(s *Service) { s.metrics = reg } }

// New builds the account service on db. cfg must have passed Verify; it is
// read, never modified, and must outlive the service.
func New(cfg *config.Config, db *storage.DB, opts ...Option) (*Service, error) {
	if cfg == nil || db == nil {
		return nil, errors.New("account: config and database are required")
	}
	s := &Service{
		cfg:            cfg,
		store:          storage.NewAccounts(db),
		now:            time.Now,
		nonces:         map[string]time.Time{},
		tokenCacheSize: defaultTokenCacheSize,
	}
	for _, o := range opts {
		o(s)
	}
	if s.tokens = newTokenCache(s.tokenCacheSize); s.tokens != nil {
		// This Service owns the only storage.Accounts of the process, so
		// every write that can change a token lookup passes through here.
		s.store.OnAuthChange(s.tokens.invalidateUser)
		if err := s.registerMetrics(); err != nil {
			return nil, err
		}
	}
	rl := cfg.RateLimits
	s.regLimit = ratelimit.New(rl.Enabled, rl.RegistrationPerIP.PerSecond, rl.RegistrationPerIP.Burst, s.now)
	s.loginLimit = ratelimit.New(rl.Enabled, rl.LoginPerIP.PerSecond, rl.LoginPerIP.Burst, s.now)
	s.failedLimit = ratelimit.New(rl.Enabled, rl.FailedLoginPerAcc.PerSecond, rl.FailedLoginPerAcc.Burst, s.now)
	h, err := s.hashPassword(randomString(24))
	if err != nil {
		return nil, fmt.Errorf("account: prepare dummy hash: %w", err)
	}
	s.dummyHash = []byte(h)
	return s, nil
}

func (s *Service) registerMetrics() error {
	if s.metrics == nil {
		return nil
	}
	for _, m := range []struct {
		name, help string
		n          func() float64
	}{
		{"myelin_access_token_cache_hits_total", "Access-token lookups answered from memory.", func() float64 { return float64(s.tokens.hits.Load()) }},
		{"myelin_access_token_cache_misses_total", "Access-token lookups that went to the database.", func() float64 { return float64(s.tokens.misses.Load()) }},
	} {
		c := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help}, m.n)
		if err := s.metrics.Register(c); err != nil {
			return fmt.Errorf("account: register %s: %w", m.name, err)
		}
	}
	return nil
}

// ServerName is the domain of every local user ID.
func (s *Service) ServerName() string { return s.cfg.ServerName }

// UserID is the full Matrix ID of a local localpart.
func (s *Service) UserID(localpart string) string { return "@" + localpart + ":" + s.cfg.ServerName }

// LocalpartOf returns the localpart of userID if it belongs to this server.
func (s *Service) LocalpartOf(userID string) (string, bool) {
	rest, ok := strings.CutPrefix(userID, "@")
	if !ok {
		return "", false
	}
	local, domain, ok := strings.Cut(rest, ":")
	if !ok || domain != s.cfg.ServerName {
		return "", false
	}
	return local, true
}

// Caller is the authenticated owner of an access token.
type Caller struct {
	UserID    string
	Localpart string
	DeviceID  string
	Admin     bool
}

func (s *Service) nowMS() int64 { return s.now().UnixMilli() }

// Token prefixes make a leaked token recognisable to secret scanners and to
// humans reading a log by mistake.
const (
	accessPrefix  = "myt_"
	refreshPrefix = "myr_"
)

// newToken returns prefix + 43 symbols of a 64-letter URL-safe alphabet (258
// random bits) and the hash that gets stored.
func newToken(prefix string) (token, hash string) {
	token = prefix + randomString(43)
	return token, hashToken(token)
}

// hashToken is how tokens are stored: sha256 is enough because the tokens
// have 256 bits of entropy (no dictionary to attack, no need for a slow KDF).
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// randomString returns n characters from crypto/rand over a 64-symbol
// alphabet (6 bits each, no modulo bias since 256 is a multiple of 64).
func randomString(n int) string {
	return randomFrom(tokenAlphabet, n)
}

func randomFrom(alphabet string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand never fails on supported platforms (Go 1.24+ panics
		// internally instead); a token from a broken RNG must not exist.
		panic("crypto/rand: " + err.Error())
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// newDeviceID returns 10 uppercase letters, the shape clients are used to.
// 26^10 ≈ 1.4e14 makes collisions within one user practically impossible;
// a collision would only reuse the user's own device.
func newDeviceID() string {
	// 256 % 26 != 0 gives a tiny bias; device IDs are identifiers, not secrets.
	return randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)
}

// internal wraps an unexpected storage failure with context; the HTTP edge
// logs it and answers 500.
func internal(op string, err error) error { return fmt.Errorf("account: %s: %w", op, err) }

// errUnknownToken is the 401 for a token that is unknown, revoked, or whose
// user is deactivated.
var errUnknownToken = apierr.UnknownToken(false)

// ctxKey is unexported so only this package can store a Caller in a context.
type ctxKey struct{}

// WithCaller returns ctx carrying the authenticated caller.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// CallerFrom returns the caller stored by WithCaller, or nil.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(ctxKey{}).(*Caller)
	return c
}
