package clientapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// postReceipt is POST /rooms/{roomId}/receipt/{receiptType}/{eventId}.
func (sa *syncAPI) postReceipt(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDVar(r)
	if err != nil {
		return err
	}
	typ, err := httpapi.Var(r, "receiptType")
	if err != nil {
		return err
	}
	var body struct {
		ThreadID json.RawMessage `json:"thread_id"`
	}
	raw, err := httpapi.ReadBody(r, httpapi.DefaultMaxBody)
	if err != nil {
		return err
	}
	// An empty body is read as {}: several clients send none, and the
	// receipt carries nothing else.
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := httpapi.DecodeJSONBytes(raw, &body); err != nil {
			return err
		}
	}
	var thread *string
	if body.ThreadID != nil && string(body.ThreadID) != "null" {
		var s string
		if json.Unmarshal(body.ThreadID, &s) != nil {
			return apierr.InvalidParam("thread_id must be a string")
		}
		thread = &s
	}
	if err := sa.sync.PostReceipt(r.Context(), c.UserID, roomID, typ, eventID, thread); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// readMarkers is POST /rooms/{roomId}/read_markers.
func (sa *syncAPI) readMarkers(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var body struct {
		FullyRead   string `json:"m.fully_read"`
		Read        string `json:"m.read"`
		ReadPrivate string `json:"m.read.private"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	if err := sa.sync.ReadMarkers(r.Context(), c.UserID, roomID, body.FullyRead, body.Read, body.ReadPrivate); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}
