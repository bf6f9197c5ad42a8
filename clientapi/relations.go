package clientapi

import (
	"net/http"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/syncapi"
)

// registerRelationRoutes adds the event-relationship endpoints (syncapi
// serves them: they read the event log and render like /messages).
func (sa *syncAPI) registerRelationRoutes(r *httpapi.Routes, v1 string) {
	const rel = "/rooms/{roomId}/relations/{eventId}"
	for _, p := range []string{rel, rel + "/{relType}", rel + "/{relType}/{eventType}"} {
		r.Handle(http.MethodGet, v1+p, sa.authed(sa.relations))
	}
	r.Handle(http.MethodGet, v1+"/rooms/{roomId}/threads", sa.authed(sa.threads))
}

// relations is GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
func (sa *syncAPI) relations(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDVar(r)
	if err != nil {
		return err
	}
	relType, err := httpapi.Var(r, "relType")
	if err != nil {
		return err
	}
	eventType, err := httpapi.Var(r, "eventType")
	if err != nil {
		return err
	}
	if len(relType) > maxIDBytes || len(eventType) > maxIDBytes {
		return apierr.InvalidParam("relType and eventType are at most 255 bytes")
	}
	limit, err := queryInt(r, "limit", -1)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	req := syncapi.RelationsRequest{UserID: c.UserID, DeviceID: c.DeviceID, RoomID: roomID, EventID: eventID,
		RelType: relType, EventType: eventType, From: q.Get("from"), To: q.Get("to"), Dir: q.Get("dir"),
		Limit: int(min(limit, 1<<20))}
	if q.Has("recurse") {
		rec, err := queryBool(r, "recurse")
		if err != nil {
			return err
		}
		req.Recurse = &rec
	}
	resp, err := sa.sync.Relations(r.Context(), req)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// threads is GET /v1/rooms/{roomId}/threads.
func (sa *syncAPI) threads(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", -1)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	resp, err := sa.sync.Threads(r.Context(), syncapi.ThreadsRequest{UserID: c.UserID, DeviceID: c.DeviceID, RoomID: roomID,
		Include: q.Get("include"), From: q.Get("from"), Limit: int(min(limit, 1<<20))})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}
