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
	"net"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"myelin/account"
	"myelin/config"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// Options are clientapi's dependencies, wired in cmd/myelin.
type Options struct {
	Config   *config.Config   // required; must have passed Verify
	Accounts *account.Service // required
	Metrics  *httpapi.Metrics // optional: per-route request metrics
}

// api holds the dependencies the handlers use.
type api struct {
	cfg      *config.Config
	accounts *account.Service
}

// New returns the Client-Server API handler: the routes below under CORS,
// unknown paths 404 M_UNRECOGNIZED, wrong methods 405 M_UNRECOGNIZED.
func New(opts Options) (http.Handler, error) {
	if opts.Config == nil || opts.Accounts == nil {
		return nil, errors.New("clientapi: Config and Accounts are required")
	}
	a := &api{cfg: opts.Config, accounts: opts.Accounts}
	r := httpapi.NewRouter()
	if opts.Metrics != nil {
		opts.Metrics.Instrument(r)
	}

	wk := r.PathPrefix("/.well-known/matrix").Subrouter()
	wk.Handle("/client", a.handle(a.wellKnownClient)).Methods(http.MethodGet)
	wk.Handle("/server", a.handle(a.wellKnownServer)).Methods(http.MethodGet)

	r.Handle("/_matrix/client/versions", a.handle(a.versions)).Methods(http.MethodGet)

	v1 := r.PathPrefix("/_matrix/client/v1").Subrouter()
	v1.Handle("/register/m.login.registration_token/validity", a.handle(a.registrationTokenValidity)).Methods(http.MethodGet)

	v3 := r.PathPrefix("/_matrix/client/v3").Subrouter()
	v3.Handle("/capabilities", a.authed(a.capabilities)).Methods(http.MethodGet)
	v3.Handle("/register", a.handle(a.register)).Methods(http.MethodPost)
	v3.Handle("/register/available", a.handle(a.registerAvailable)).Methods(http.MethodGet)
	v3.Handle("/login", a.handle(a.loginFlows)).Methods(http.MethodGet)
	v3.Handle("/login", a.handle(a.login)).Methods(http.MethodPost)
	v3.Handle("/logout", a.authed(a.logout)).Methods(http.MethodPost)
	v3.Handle("/logout/all", a.authed(a.logoutAll)).Methods(http.MethodPost)
	v3.Handle("/refresh", a.handle(a.refresh)).Methods(http.MethodPost)
	v3.Handle("/account/whoami", a.authed(a.whoami)).Methods(http.MethodGet)
	v3.Handle("/account/password", a.optionallyAuthed(a.changePassword)).Methods(http.MethodPost)
	v3.Handle("/account/deactivate", a.optionallyAuthed(a.deactivate)).Methods(http.MethodPost)
	v3.Handle("/devices", a.authed(a.listDevices)).Methods(http.MethodGet)
	v3.Handle("/devices/{deviceId}", a.authed(a.getDevice)).Methods(http.MethodGet)
	v3.Handle("/devices/{deviceId}", a.authed(a.updateDevice)).Methods(http.MethodPut)
	v3.Handle("/devices/{deviceId}", a.authed(a.deleteDevice)).Methods(http.MethodDelete)
	v3.Handle("/delete_devices", a.authed(a.deleteDevices)).Methods(http.MethodPost)
	v3.Handle("/profile/{userId}", a.handle(a.getProfile)).Methods(http.MethodGet)
	v3.Handle("/profile/{userId}/{keyName}", a.handle(a.getProfileField)).Methods(http.MethodGet)
	v3.Handle("/profile/{userId}/{keyName}", a.authed(a.setProfileField)).Methods(http.MethodPut)
	v3.Handle("/profile/{userId}/{keyName}", a.authed(a.deleteProfileField)).Methods(http.MethodDelete)

	admin := r.PathPrefix("/_synapse/admin/v1").Subrouter()
	admin.Handle("/register", a.handle(a.sharedSecretNonce)).Methods(http.MethodGet)
	admin.Handle("/register", a.handle(a.sharedSecretRegister)).Methods(http.MethodPost)

	// Subrouters answer unknown paths under their prefix themselves; give
	// them the router's Matrix errors (and metrics) too.
	for _, sr := range []*mux.Router{wk, v1, v3, admin} {
		sr.NotFoundHandler = r.NotFoundHandler
		sr.MethodNotAllowedHandler = r.MethodNotAllowedHandler
	}
	return httpapi.CORS(r), nil
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
		c, err := a.accounts.Authenticate(r.Context(), token, clientIP(r))
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
		c, err := a.accounts.Authenticate(r.Context(), token, clientIP(r))
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
		return "", apierr.New(http.StatusBadRequest, "M_MISSING_TOKEN", "Conflicting access tokens in header and query")
	}
	if header != "" {
		return header, nil
	}
	return query, nil
}

// clientIP is the peer address, used for rate limits and a device's
// last_seen_ip. Behind a reverse proxy every client shares the proxy's
// address; see README.md.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// decode reads and strictly decodes a JSON object body.
func decode(r *http.Request, v any) error {
	return httpapi.DecodeJSON(r, httpapi.DefaultMaxBody, v)
}

// empty is the {} most successful writes answer with.
var empty = struct{}{}
