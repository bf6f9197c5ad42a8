// Package clientapi owns the Client-Server API's HTTP surface
// (/_matrix/client/*, /.well-known/matrix/*, and Synapse's shared-secret
// admin registration): routing, request decoding and validation of shape,
// access-token authentication, and rendering. Domain rules live in the
// services it calls (account today); errors are rendered once, here.
//
// One file per area: discovery.go (versions, well-known, capabilities),
// register.go, login.go, devices.go, account.go (password, deactivation),
// profile.go.
package clientapi

import (
	"errors"
	"fmt"
	"github.com/gorilla/mux"
	"net"
	"net/http"
	"strings"

	"myelin/account"
	"myelin/config"
	"myelin/e2ee"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/media"
	"myelin/notifications"
	"myelin/roomserver"
	"myelin/syncapi"
)

// Options are clientapi's dependencies, wired in cmd/myelin.
type Options struct {
	Config   *config.Config   // required; must have passed Verify
	Accounts *account.Service // required
	// Rooms serves the room, directory and space endpoints; nil leaves them
	// unserved (404 M_UNRECOGNIZED). cmd/myelin always sets it.
	Rooms *roomserver.Service
	// Sync serves /sync, history, receipts, typing, presence, account data
	// and filters; nil leaves them unserved.
	Sync *syncapi.Service
	// Keys serves the end-to-end encryption endpoints (keys, cross-signing,
	// key backups, send-to-device); nil leaves them unserved.
	Keys *e2ee.Service
	// Push serves /pushrules, /notifications and /pushers; nil leaves them
	// unserved.
	Push *notifications.Service
	// Media serves the content repository (upload, download, thumbnails,
	// config); nil leaves it unserved.
	Media   *media.Service
	Metrics *httpapi.Metrics // optional: per-route request metrics
}

// api holds the dependencies the handlers use.
type api struct {
	cfg      *config.Config
	accounts *account.Service
	rooms    *roomserver.Service // nil: no rooms, so no member events to update
	proxies  []*net.IPNet        // trusted reverse proxies (X-Forwarded-For)
}

// New returns the Client-Server API handler: the routes below under CORS,
// unknown paths 404 M_UNRECOGNIZED, wrong methods 405 M_UNRECOGNIZED.
func New(opts Options) (http.Handler, error) {
	r, err := newRouter(opts)
	if err != nil {
		return nil, err
	}
	return httpapi.CORS(legacyR0(r)), nil
}

// newRouter registers every route of opts' services.
func newRouter(opts Options) (*httpapi.Routes, error) {
	if opts.Config == nil || opts.Accounts == nil {
		return nil, errors.New("clientapi: Config and Accounts are required")
	}
	proxies, err := opts.Config.Listeners.TrustedProxyNets()
	if err != nil {
		return nil, fmt.Errorf("clientapi: listeners.trusted_proxies: %w", err)
	}
	a := &api{cfg: opts.Config, accounts: opts.Accounts, rooms: opts.Rooms, proxies: proxies}
	var instrument func(*mux.Router)
	if opts.Metrics != nil {
		instrument = opts.Metrics.Instrument
	}
	// Routes are grouped by their leading path segments (httpapi.Routes),
	// so a request walks only its group's routes.
	r := httpapi.NewRoutes(instrument)
	handle := r.Handle
	const c, v1, v3 = "/_matrix/client", "/_matrix/client/v1", "/_matrix/client/v3"

	// Within a group gorilla/mux tries routes in registration order,
	// matching each one's regular expression against the path: the room
	// routes go first, send first among them, ahead of the sync service's
	// routes under /rooms. No two routes match the same method and path
	// (TestRoutesDoNotOverlap), so the order changes nothing else.
	a.registerRoomRoutes(r, opts.Rooms, v1, v3)
	a.registerSyncRoutes(r, opts.Sync, v1, v3)
	handle(http.MethodGet, "/.well-known/matrix/client", a.handle(a.wellKnownClient))
	handle(http.MethodGet, "/.well-known/matrix/server", a.handle(a.wellKnownServer))
	handle(http.MethodGet, c+"/versions", a.handle(a.versions))
	handle(http.MethodGet, v1+"/register/m.login.registration_token/validity", a.handle(a.registrationTokenValidity))
	handle(http.MethodGet, v3+"/capabilities", a.authed(a.capabilities))
	handle(http.MethodPost, v3+"/register", a.handle(a.register))
	handle(http.MethodGet, v3+"/register/available", a.handle(a.registerAvailable))
	handle(http.MethodGet, v3+"/login", a.handle(a.loginFlows))
	handle(http.MethodPost, v3+"/login", a.handle(a.login))
	handle(http.MethodPost, v3+"/logout", a.authedAllowExpired(a.logout))
	handle(http.MethodPost, v3+"/logout/all", a.authedAllowExpired(a.logoutAll))
	handle(http.MethodPost, v3+"/refresh", a.handle(a.refresh))
	handle(http.MethodGet, v3+"/account/whoami", a.authed(a.whoami))
	handle(http.MethodPost, v3+"/account/password", a.optionallyAuthed(a.changePassword))
	handle(http.MethodPost, v3+"/account/deactivate", a.optionallyAuthed(a.deactivate))
	handle(http.MethodGet, v3+"/devices", a.authed(a.listDevices))
	handle(http.MethodGet, v3+"/devices/{deviceId}", a.authed(a.getDevice))
	handle(http.MethodPut, v3+"/devices/{deviceId}", a.authed(a.updateDevice))
	handle(http.MethodDelete, v3+"/devices/{deviceId}", a.authed(a.deleteDevice))
	handle(http.MethodPost, v3+"/delete_devices", a.authed(a.deleteDevices))
	handle(http.MethodGet, v3+"/profile/{userId}", a.handle(a.getProfile))
	handle(http.MethodGet, v3+"/profile/{userId}/{keyName}", a.handle(a.getProfileField))
	handle(http.MethodPut, v3+"/profile/{userId}/{keyName}", a.authed(a.setProfileField))
	handle(http.MethodDelete, v3+"/profile/{userId}/{keyName}", a.authed(a.deleteProfileField))
	handle(http.MethodGet, "/_synapse/admin/v1/register", a.handle(a.sharedSecretNonce))
	handle(http.MethodPost, "/_synapse/admin/v1/register", a.handle(a.sharedSecretRegister))
	handle(http.MethodGet, "/_synapse/admin/v1/users/{userId}/admin", a.authed(a.adminStatus))
	a.registerKeyRoutes(r, opts.Keys, v3)
	a.registerPushRoutes(r, opts.Push, v3)
	a.registerMediaRoutes(r, opts.Media)
	return r, nil
}

// legacyR0 serves the r0 prefix as v3. NOTSPEC: spec v1.1 renamed r0 to v3
// without changing the endpoints, and r0 is no longer in the spec; older
// clients, bots and scripts (and Complement) still call it, and Synapse and
// conduwuit answer it, so it is an alias rather than a 404. Endpoints that
// only ever existed under v1 are not reachable through it.
func legacyR0(next http.Handler) http.Handler {
	const r0, v3 = "/_matrix/client/r0/", "/_matrix/client/v3/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, r0) {
			u := *r.URL
			u.Path = v3 + strings.TrimPrefix(u.Path, r0)
			if strings.HasPrefix(u.RawPath, r0) {
				u.RawPath = v3 + strings.TrimPrefix(u.RawPath, r0)
			}
			r2 := r.Clone(r.Context())
			r2.URL = &u
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

// handler is an endpoint that returns its error; the caller (if any) is set
// by authed/optionallyAuthed.
type handler func(w http.ResponseWriter, r *http.Request) error
type authedHandler func(w http.ResponseWriter, r *http.Request, c *account.Caller) error

// handle renders errors once: the user-interactive-auth 401 has its own body
// shape (flows, session, completed; errcode only on a failed attempt), all
// other errors go through httpapi.WriteError.
func (a *api) handle(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var uia *account.AuthRequired
		if errors.As(err, &uia) {
			httpapi.WriteJSON(w, http.StatusUnauthorized, uia.Body())
			return
		}
		httpapi.WriteError(w, r, err)
	})
}

// authed requires a valid access token.
func (a *api) authed(h authedHandler) http.Handler {
	return a.handle(func(w http.ResponseWriter, r *http.Request) error {
		token, err := accessToken(r)
		if err != nil {
			return err
		}
		c, err := a.accounts.Authenticate(r.Context(), token, a.clientIP(r))
		if err != nil {
			return err
		}
		return h(w, r.WithContext(account.WithCaller(r.Context(), c)), c)
	})
}

// authedAllowExpired is authed that also accepts an expired access token
// (logout only: ending a session needs no fresh credential).
func (a *api) authedAllowExpired(h authedHandler) http.Handler {
	return a.handle(func(w http.ResponseWriter, r *http.Request) error {
		token, err := accessToken(r)
		if err != nil {
			return err
		}
		c, err := a.accounts.AuthenticateExpired(r.Context(), token, a.clientIP(r))
		if err != nil {
			return err
		}
		return h(w, r.WithContext(account.WithCaller(r.Context(), c)), c)
	})
}

// optionallyAuthed serves endpoints whose spec security includes "{}": with
// no token the caller is nil; a token that is present must be valid.
func (a *api) optionallyAuthed(h authedHandler) http.Handler {
	return a.handle(func(w http.ResponseWriter, r *http.Request) error {
		token, err := accessToken(r)
		if err != nil {
			return err
		}
		if token == "" {
			return h(w, r, nil)
		}
		c, err := a.accounts.Authenticate(r.Context(), token, a.clientIP(r))
		if err != nil {
			return err
		}
		return h(w, r.WithContext(account.WithCaller(r.Context(), c)), c)
	})
}

// accessToken reads the token from "Authorization: Bearer" or the
// deprecated access_token query parameter (the spec says servers MUST
// support both). "" means none was sent. Two different tokens in one request
// are refused rather than guessed between.
func accessToken(r *http.Request) (string, error) {
	var header string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", apierr.MissingToken()
		}
		header = strings.TrimSpace(tok)
	}
	query := r.URL.Query().Get("access_token")
	if header != "" && query != "" && header != query {
		return "", apierr.New(http.StatusUnauthorized, "M_MISSING_TOKEN", "Conflicting access tokens in header and query")
	}
	if header != "" {
		return header, nil
	}
	return query, nil
}

// clientIP is the address rate limits and a device's last_seen_ip use: the
// TCP peer, unless the peer is a configured trusted proxy, in which case it
// is the right-most X-Forwarded-For entry that is not itself a trusted proxy
// (entries left of that were written by the client and prove nothing).
func (a *api) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(a.proxies) == 0 || !a.trusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if net.ParseIP(hop) == nil {
			break // malformed: stop at the last address we can vouch for
		}
		host = hop
		if !a.trusted(hop) {
			break
		}
	}
	return host
}

func (a *api) trusted(host string) bool {
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, n := range a.proxies {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// decode reads and strictly decodes a JSON object body.
func decode(r *http.Request, v any) error {
	return httpapi.DecodeJSON(r, httpapi.DefaultMaxBody, v)
}

// empty is the {} most successful writes answer with.
var empty = struct{}{}
