package clientapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/syncapi"
)

// syncAPI serves what syncapi owns: /sync and filters (this file), history
// (sync_history.go), receipts and read markers (receipts.go), typing and
// presence (typing.go, presence.go), account data and tags
// (accountdata.go).
type syncAPI struct {
	*api
	sync *syncapi.Service
}

func (a *api) registerSyncRoutes(r *httpapi.Routes, svc *syncapi.Service, v1, v3 string) {
	if svc == nil {
		return
	}
	sa := &syncAPI{api: a, sync: svc}
	handle := r.Handle
	const room = "/rooms/{roomId}"
	const user = "/user/{userId}"
	handle(http.MethodGet, v3+"/sync", a.authed(sa.syncHandler))
	handle(http.MethodPost, v3+user+"/filter", a.authed(sa.postFilter))
	handle(http.MethodGet, v3+user+"/filter/{filterId}", a.authed(sa.getFilter))

	handle(http.MethodGet, v3+room+"/messages", a.authed(sa.messages))
	handle(http.MethodGet, v3+room+"/context/{eventId}", a.authed(sa.eventContext))
	handle(http.MethodGet, v1+room+"/timestamp_to_event", a.authed(sa.timestampToEvent))
	handle(http.MethodPost, v3+"/search", a.authed(sa.search))
	sa.registerRelationRoutes(r, v1) // relations.go

	handle(http.MethodPost, v3+room+"/receipt/{receiptType}/{eventId}", a.authed(sa.postReceipt))
	handle(http.MethodPost, v3+room+"/read_markers", a.authed(sa.readMarkers))
	handle(http.MethodPut, v3+room+"/typing/{userId}", a.authed(sa.typing))
	handle(http.MethodPut, v3+"/presence/{userId}/status", a.authed(sa.putPresence))
	handle(http.MethodGet, v3+"/presence/{userId}/status", a.authed(sa.getPresence))

	handle(http.MethodPut, v3+user+"/account_data/{type}", a.authed(sa.putAccountData))
	handle(http.MethodGet, v3+user+"/account_data/{type}", a.authed(sa.getAccountData))
	handle(http.MethodPut, v3+user+room+"/account_data/{type}", a.authed(sa.putAccountData))
	handle(http.MethodGet, v3+user+room+"/account_data/{type}", a.authed(sa.getAccountData))
	handle(http.MethodGet, v3+user+room+"/tags", a.authed(sa.getTags))
	handle(http.MethodPut, v3+user+room+"/tags/{tag}", a.authed(sa.putTag))
	handle(http.MethodDelete, v3+user+room+"/tags/{tag}", a.authed(sa.deleteTag))
}

// ownUser reads the {userId} path variable, which must be the caller:
// filters, account data, tags, typing and presence writes are the user's
// own (M_FORBIDDEN otherwise).
func ownUser(r *http.Request, c *account.Caller, what string) error {
	u, err := httpapi.Var(r, "userId")
	if err != nil {
		return err
	}
	if u != c.UserID {
		return apierr.Forbidden("Cannot " + what + " for other users")
	}
	return nil
}

// queryBool reads a boolean query parameter ("true"/"false"; absent is
// false).
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	switch v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, apierr.InvalidParam(name + " must be true or false")
}

// queryInt reads a non-negative integer query parameter; def when absent.
func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, apierr.InvalidParam(name + " must be a non-negative integer")
	}
	return n, nil
}

// syncHandler is GET /sync.
func (sa *syncAPI) syncHandler(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	q := r.URL.Query()
	full, err := queryBool(r, "full_state")
	if err != nil {
		return err
	}
	after, err := queryBool(r, "use_state_after")
	if err != nil {
		return err
	}
	timeout, err := queryInt(r, "timeout", 0)
	if err != nil {
		return err
	}
	// Cap before converting: a huge value must not overflow the duration.
	timeout = min(timeout, int64(24*time.Hour/time.Millisecond))
	resp, err := sa.sync.Sync(r.Context(), syncapi.Request{
		UserID: c.UserID, DeviceID: c.DeviceID, Since: q.Get("since"), Filter: q.Get("filter"),
		FullState: full, SetPresence: q.Get("set_presence"), UseStateAfter: after,
		Timeout: time.Duration(timeout) * time.Millisecond,
	})
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return nil // the client went away while waiting; nobody to answer
	}
	if err != nil {
		return err
	}
	// The response is written as encoded, not through WriteJSON:
	// json.Marshal would scan every event again (syncapi/encode.go).
	httpapi.WriteEncoded(w, http.StatusOK, resp.AppendJSON(make([]byte, 0, 4096)))
	return nil
}

// postFilter is POST /user/{userId}/filter.
func (sa *syncAPI) postFilter(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	if err := ownUser(r, c, "create filters"); err != nil {
		return err
	}
	body, err := httpapi.ReadBody(r, httpapi.DefaultMaxBody)
	if err != nil {
		return err
	}
	id, err := sa.sync.PutFilter(r.Context(), c.UserID, body)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"filter_id": id})
	return nil
}

// getFilter is GET /user/{userId}/filter/{filterId}.
func (sa *syncAPI) getFilter(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	if err := ownUser(r, c, "read filters"); err != nil {
		return err
	}
	id, err := httpapi.Var(r, "filterId")
	if err != nil {
		return err
	}
	f, err := sa.sync.GetFilter(r.Context(), c.UserID, id)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, f)
	return nil
}
