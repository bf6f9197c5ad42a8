package clientapi

import (
	"net"
	"net/http"
	"strings"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// supportedVersions are the spec versions /versions advertises.
//
// Why these: a version belongs here when every behaviour that version
// REQUIRES of the endpoints we serve is met (unserved endpoints answer 404
// M_UNRECOGNIZED, which the spec allows for features a server does not
// offer, but a client may take the list as a promise about rooms and sync,
// which arrive with issues 4 and 5). Walking the changelogs for the account
// endpoints:
//   - v1.1: whoami device_id — served.
//   - v1.2: whoami is_guest, m.login.registration_token and its /validity
//     endpoint — served.
//   - v1.3: refresh tokens (refresh_token on /register and /login, /refresh,
//     soft_logout for expired tokens) — served.
//   - v1.4–v1.10: nothing required of these endpoints that we lack
//     (Retry-After on 429 is sent; access_token query param still accepted).
//   - v1.11: access_token query parameter deprecated, still supported.
//   - v1.12: M_USER_LOCKED only applies to servers that lock accounts.
//   - v1.16: extended profile fields (/profile/{userId}/{keyName} with any
//     key, DELETE, m.profile_fields capability) — served.
//   - v1.17–v1.19: application-service registration/device management (no
//     application services exist yet, so nothing to honour), OAuth 2.0 (an
//     alternative API a server may omit; /auth_metadata answers 404
//     M_UNRECOGNIZED as the spec says for "not supported").
//
// No r0.x versions: we serve only the /v3 (and /v1) prefixes, not /r0.
var supportedVersions = []string{
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
	"v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18", "v1.19",
}

func (a *api) versions(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"versions":          supportedVersions,
		"unstable_features": map[string]bool{},
	})
	return nil
}

// baseURL is the client-server base URL clients should use.
func (a *api) baseURL() string {
	if a.cfg.PublicBaseURL != "" {
		return a.cfg.PublicBaseURL
	}
	return "https://" + a.cfg.ServerName
}

func (a *api) wellKnownClient(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"m.homeserver": map[string]string{"base_url": a.baseURL()},
	})
	return nil
}

// wellKnownServer delegates federation to the server name's host on the
// federation listener's port. Without a federation listener there is nothing
// to delegate to, so the file does not exist (404), as the spec allows.
func (a *api) wellKnownServer(w http.ResponseWriter, r *http.Request) error {
	fed := a.cfg.Listeners.Federation
	if fed == "" {
		return apierr.NotFound("Federation is not enabled")
	}
	_, port, err := net.SplitHostPort(fed)
	if err != nil {
		return apierr.NotFound("Federation is not enabled")
	}
	host := a.cfg.ServerName
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"m.server": host + ":" + port})
	return nil
}

// roomVersions are the room versions the roomserver reads and authorises
// (issue 4: versions 1–12), all stable; new rooms default to 12.
var roomVersions = map[string]string{
	"1": "stable", "2": "stable", "3": "stable", "4": "stable", "5": "stable", "6": "stable",
	"7": "stable", "8": "stable", "9": "stable", "10": "stable", "11": "stable", "12": "stable",
}

func (a *api) capabilities(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	enabled := func(b bool) map[string]bool { return map[string]bool{"enabled": b} }
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"capabilities": map[string]any{
			"m.change_password": enabled(true),
			"m.room_versions":   map[string]any{"default": a.cfg.Rooms.DefaultRoomVersion, "available": roomVersions},
			"m.set_displayname": enabled(true),
			"m.set_avatar_url":  enabled(true),
			"m.profile_fields":  enabled(true),
			"m.3pid_changes":    enabled(false),
			"m.get_login_token": enabled(false),
		},
	})
	return nil
}
