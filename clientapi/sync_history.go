package clientapi

import (
	"net/http"
	"strconv"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/syncapi"
)

// messages is GET /rooms/{roomId}/messages.
func (sa *syncAPI) messages(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", -1)
	if err != nil {
		return err
	}
	resp, err := sa.sync.Messages(r.Context(), syncapi.MessagesRequest{
		UserID: c.UserID, DeviceID: c.DeviceID, RoomID: roomID, From: q.Get("from"), To: q.Get("to"),
		Dir: q.Get("dir"), Limit: int(min(limit, 1<<20)), Filter: q.Get("filter"),
	})
	if err != nil {
		return err
	}
	httpapi.WriteEncoded(w, http.StatusOK, resp.AppendJSON(nil))
	return nil
}

// eventContext is GET /rooms/{roomId}/context/{eventId}.
func (sa *syncAPI) eventContext(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDVar(r)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", -1)
	if err != nil {
		return err
	}
	resp, err := sa.sync.Context(r.Context(), syncapi.ContextRequest{
		UserID: c.UserID, DeviceID: c.DeviceID, RoomID: roomID, EventID: eventID,
		Limit: int(min(limit, 1<<20)), Filter: r.URL.Query().Get("filter"),
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// timestampToEvent is GET /v1/rooms/{roomId}/timestamp_to_event.
func (sa *syncAPI) timestampToEvent(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if q.Get("ts") == "" {
		return apierr.MissingParam("ts is required")
	}
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil {
		return apierr.InvalidParam("ts must be an integer")
	}
	var forward bool
	switch q.Get("dir") {
	case "f":
		forward = true
	case "b":
	case "":
		return apierr.MissingParam("dir is required")
	default:
		return apierr.InvalidParam("dir must be f or b")
	}
	resp, err := sa.sync.TimestampToEvent(r.Context(), c.UserID, roomID, ts, forward)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}
