package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/notifications"
	"myelin/pushrules"
	"myelin/roomserver"
)

// pushAPI serves /pushrules, /notifications and /pushers.
type pushAPI struct {
	*api
	push *notifications.Service
}

const maxPushBody = 64 << 10

func (a *api) registerPushRoutes(r *httpapi.Routes, push *notifications.Service, v3 string) {
	if push == nil {
		return
	}
	pa := &pushAPI{api: a, push: push}
	handle := r.Handle
	handle(http.MethodGet, v3+"/pushrules/", a.authed(pa.getAll))
	handle(http.MethodGet, v3+"/pushrules/global/", a.authed(pa.getGlobal))
	rule := v3 + "/pushrules/global/{kind}/{ruleId}"
	handle(http.MethodGet, rule, a.authed(pa.getRule))
	handle(http.MethodPut, rule, a.authed(pa.putRule))
	handle(http.MethodDelete, rule, a.authed(pa.deleteRule))
	handle(http.MethodGet, rule+"/enabled", a.authed(pa.getEnabled))
	handle(http.MethodPut, rule+"/enabled", a.authed(pa.putEnabled))
	handle(http.MethodGet, rule+"/actions", a.authed(pa.getActions))
	handle(http.MethodPut, rule+"/actions", a.authed(pa.putActions))
	handle(http.MethodGet, v3+"/notifications", a.authed(pa.notifications))
	handle(http.MethodGet, v3+"/pushers", a.authed(pa.getPushers))
	handle(http.MethodPost, v3+"/pushers/set", a.authed(pa.setPusher))
}

// pushError maps the rule-editing errors to the spec's codes.
func pushError(err error) error {
	switch {
	case errors.Is(err, pushrules.ErrInvalid):
		return apierr.InvalidParam(err.Error())
	case errors.Is(err, pushrules.ErrNotFound):
		return apierr.NotFound("Push rule not found")
	}
	return err
}

func (pa *pushAPI) getAll(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	rs, err := pa.push.Rules(r.Context(), c.UserID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"global": rs})
	return nil
}

func (pa *pushAPI) getGlobal(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	rs, err := pa.push.Rules(r.Context(), c.UserID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, rs)
	return nil
}

// ruleVars reads {kind} and {ruleId}; an unknown kind is M_INVALID_PARAM.
func ruleVars(r *http.Request) (kind, ruleID string, err error) {
	if kind, err = httpapi.Var(r, "kind"); err != nil {
		return "", "", err
	}
	if !pushrules.ValidKind(kind) {
		return "", "", apierr.InvalidParam("kind must be override, content, room, sender or underride")
	}
	if ruleID, err = httpapi.Var(r, "ruleId"); err != nil {
		return "", "", err
	}
	return kind, ruleID, nil
}

// findRule returns the caller's effective rule.
func (pa *pushAPI) findRule(r *http.Request, c *account.Caller) (*pushrules.Rule, error) {
	kind, ruleID, err := ruleVars(r)
	if err != nil {
		return nil, err
	}
	rs, err := pa.push.Rules(r.Context(), c.UserID)
	if err != nil {
		return nil, err
	}
	rule := rs.Find(kind, ruleID)
	if rule == nil {
		return nil, apierr.NotFound("Push rule not found")
	}
	return rule, nil
}

func (pa *pushAPI) getRule(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	rule, err := pa.findRule(r, c)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, rule)
	return nil
}

func (pa *pushAPI) putRule(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	kind, ruleID, err := ruleVars(r)
	if err != nil {
		return err
	}
	var body pushrules.NewRule
	if err := httpapi.DecodeJSON(r, maxPushBody, &body); err != nil {
		return err
	}
	if body.Actions == nil {
		return apierr.MissingParam("actions is required")
	}
	q := r.URL.Query()
	err = pa.push.EditRules(r.Context(), c.UserID, func(u *pushrules.UserRules) error {
		return u.Put(kind, ruleID, body, q.Get("before"), q.Get("after"))
	})
	if err != nil {
		return pushError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (pa *pushAPI) deleteRule(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	kind, ruleID, err := ruleVars(r)
	if err != nil {
		return err
	}
	if err := pa.push.EditRules(r.Context(), c.UserID, func(u *pushrules.UserRules) error { return u.Delete(kind, ruleID) }); err != nil {
		return pushError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (pa *pushAPI) getEnabled(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	rule, err := pa.findRule(r, c)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"enabled": rule.Enabled})
	return nil
}

func (pa *pushAPI) putEnabled(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	kind, ruleID, err := ruleVars(r)
	if err != nil {
		return err
	}
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := httpapi.DecodeJSON(r, maxPushBody, &body); err != nil {
		return err
	}
	if body.Enabled == nil {
		return apierr.MissingParam("enabled is required")
	}
	if err := pa.push.EditRules(r.Context(), c.UserID, func(u *pushrules.UserRules) error {
		return u.SetEnabled(c.UserID, kind, ruleID, *body.Enabled)
	}); err != nil {
		return pushError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (pa *pushAPI) getActions(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	rule, err := pa.findRule(r, c)
	if err != nil {
		return err
	}
	acts := rule.Actions
	if acts == nil {
		acts = []pushrules.Action{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"actions": acts})
	return nil
}

func (pa *pushAPI) putActions(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	kind, ruleID, err := ruleVars(r)
	if err != nil {
		return err
	}
	var body struct {
		Actions json.RawMessage `json:"actions"`
	}
	if err := httpapi.DecodeJSON(r, maxPushBody, &body); err != nil {
		return err
	}
	if body.Actions == nil {
		return apierr.MissingParam("actions is required")
	}
	if err := pa.push.EditRules(r.Context(), c.UserID, func(u *pushrules.UserRules) error {
		return u.SetActions(c.UserID, kind, ruleID, body.Actions)
	}); err != nil {
		return pushError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// notifications is GET /notifications.
func (pa *pushAPI) notifications(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	q := r.URL.Query()
	limit := 20
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return apierr.InvalidParam("limit must be a positive integer")
		}
		limit = min(n, 100)
	}
	only := q.Get("only")
	page, err := pa.push.Notifications(r.Context(), roomserver.Viewer{UserID: c.UserID, DeviceID: c.DeviceID}, q.Get("from"), limit, only == "highlight")
	if errors.Is(err, notifications.ErrBadToken) {
		return apierr.InvalidParam("from is not a token this server issued")
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
	return nil
}

// pusherJSON is a pusher as GET /pushers shows it.
type pusherJSON struct {
	PushKey           string          `json:"pushkey"`
	Kind              string          `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
}

func (pa *pushAPI) getPushers(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	ps, err := pa.push.Pushers(r.Context(), c.UserID)
	if err != nil {
		return err
	}
	out := make([]pusherJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, pusherJSON{PushKey: p.PushKey, Kind: p.Kind, AppID: p.AppID, AppDisplayName: p.AppDisplayName,
			DeviceDisplayName: p.DeviceDisplayName, ProfileTag: p.ProfileTag, Lang: p.Lang, Data: p.Data})
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"pushers": out})
	return nil
}

// setPusher is POST /pushers/set: kind null deletes the caller's pusher.
func (pa *pushAPI) setPusher(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b struct {
		PushKey           *string         `json:"pushkey"`
		Kind              json.RawMessage `json:"kind"`
		AppID             *string         `json:"app_id"`
		AppDisplayName    *string         `json:"app_display_name"`
		DeviceDisplayName *string         `json:"device_display_name"`
		ProfileTag        string          `json:"profile_tag"`
		Lang              *string         `json:"lang"`
		Data              json.RawMessage `json:"data"`
		Append            bool            `json:"append"`
	}
	if err := httpapi.DecodeJSON(r, maxPushBody, &b); err != nil {
		return err
	}
	if b.PushKey == nil || b.AppID == nil || b.Kind == nil {
		return apierr.MissingParam("kind, app_id and pushkey are required")
	}
	if *b.PushKey == "" || len(*b.PushKey) > 512 {
		return apierr.InvalidParam("pushkey must be 1 to 512 bytes")
	}
	if *b.AppID == "" || len([]rune(*b.AppID)) > 64 {
		return apierr.InvalidParam("app_id must be 1 to 64 characters")
	}
	if string(b.Kind) == "null" {
		if err := pa.push.DeletePusher(r.Context(), c.UserID, *b.AppID, *b.PushKey); err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, empty)
		return nil
	}
	var kind string
	if err := json.Unmarshal(b.Kind, &kind); err != nil {
		return apierr.BadJSON("kind must be a string or null")
	}
	if kind != "http" {
		// Email pushers need a validated email address, which this server
		// does not keep.
		return apierr.InvalidParam("only http pushers are supported")
	}
	if b.AppDisplayName == nil || b.DeviceDisplayName == nil || b.Lang == nil || b.Data == nil {
		return apierr.MissingParam("app_display_name, device_display_name, lang and data are required")
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(b.Data, &data); err != nil || data == nil {
		return apierr.BadJSON("data must be an object")
	}
	var rawURL string
	if err := json.Unmarshal(data["url"], &rawURL); err != nil || rawURL == "" {
		return apierr.MissingParam("data.url is required for http pushers")
	}
	// NOTSPEC: the spec says the URL MUST be HTTPS; plain http is accepted
	// too so a gateway on the same host or in a test rig works.
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "/_matrix/push/v1/notify" {
		return apierr.InvalidParam("data.url must be an http(s) URL with the path /_matrix/push/v1/notify")
	}
	if f, ok := data["format"]; ok && string(f) != `"event_id_only"` {
		return apierr.InvalidParam(`data.format must be "event_id_only" when present`)
	}
	p := notifications.Pusher{UserID: c.UserID, AppID: *b.AppID, PushKey: *b.PushKey, Kind: kind, AppDisplayName: *b.AppDisplayName,
		DeviceDisplayName: *b.DeviceDisplayName, ProfileTag: b.ProfileTag, Lang: *b.Lang, Data: b.Data, CreatedTS: time.Now().UnixMilli(),
		DeviceID: c.DeviceID}
	if err := pa.push.SetPusher(r.Context(), p, b.Append); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}
