package clientapi

import (
	"net/http"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/roomserver"
)

// send is PUT /rooms/{roomId}/send/{eventType}/{txnId}. The roomserver
// keeps the transaction ID with the event, per device, in the same
// commit: a retry — even after a crash — answers with the first event_id.
func (ra *roomsAPI) send(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	eventType, err := httpapi.Var(r, "eventType")
	if err != nil {
		return err
	}
	txnID, err := txnIDVar(r)
	if err != nil {
		return err
	}
	content, err := readContent(r)
	if err != nil {
		return err
	}
	if err := ra.sendLimit.Take(c.UserID, 1); err != nil {
		return err
	}
	id, err := ra.rooms.Send(r.Context(), roomserver.SendRequest{
		RoomID: roomID, Sender: c.UserID, DeviceID: c.DeviceID, TxnID: txnID, Type: eventType, Content: content,
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"event_id": id})
	return nil
}

// stateVars reads {eventType} and the optional {stateKey} (absent means "").
func stateVars(r *http.Request) (eventType, stateKey string, err error) {
	if eventType, err = httpapi.Var(r, "eventType"); err != nil {
		return "", "", err
	}
	if stateKey, err = httpapi.Var(r, "stateKey"); err != nil {
		return "", "", err
	}
	return eventType, stateKey, nil
}

// putState is PUT /rooms/{roomId}/state/{eventType}[/{stateKey}]. No
// transaction ID exists on this path; setting identical content again
// returns the current event instead of adding one (roomserver).
func (ra *roomsAPI) putState(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	eventType, stateKey, err := stateVars(r)
	if err != nil {
		return err
	}
	content, err := readContent(r)
	if err != nil {
		return err
	}
	if err := ra.sendLimit.Take(c.UserID, 1); err != nil {
		return err
	}
	id, err := ra.rooms.Send(r.Context(), roomserver.SendRequest{
		RoomID: roomID, Sender: c.UserID, DeviceID: c.DeviceID, Type: eventType, StateKey: &stateKey, Content: content,
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"event_id": id})
	return nil
}

// state is GET /rooms/{roomId}/state: the current state while joined, the
// state at leaving after leaving, 403 otherwise (an unknown room too).
func (ra *roomsAPI) state(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	evs, err := ra.rooms.StateFor(r.Context(), roomID, c.UserID)
	if err != nil {
		return err
	}
	out, err := ra.rooms.ClientEvents(r.Context(), evs, roomserver.Viewer{UserID: c.UserID, DeviceID: c.DeviceID})
	if err != nil {
		return err
	}
	if out == nil {
		out = []roomserver.ClientEvent{}
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// stateEvent is GET /rooms/{roomId}/state/{eventType}[/{stateKey}]: the
// content, or with ?format=event the whole client event (v1.16).
func (ra *roomsAPI) stateEvent(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	eventType, stateKey, err := stateVars(r)
	if err != nil {
		return err
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "content" && format != "event" {
		return apierr.InvalidParam("format must be content or event")
	}
	ev, err := ra.rooms.StateEventFor(r.Context(), roomID, c.UserID, eventType, stateKey)
	if err != nil {
		return err
	}
	if format != "event" {
		httpapi.WriteJSON(w, http.StatusOK, ev.Content)
		return nil
	}
	out, err := ra.rooms.ClientEvents(r.Context(), []*roomserver.Event{ev}, roomserver.Viewer{UserID: c.UserID, DeviceID: c.DeviceID})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, out[0])
	return nil
}

// redact is PUT /rooms/{roomId}/redact/{eventId}/{txnId}, idempotent per
// transaction ID like send.
func (ra *roomsAPI) redact(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDVar(r)
	if err != nil {
		return err
	}
	txnID, err := txnIDVar(r)
	if err != nil {
		return err
	}
	var b struct {
		Reason string `json:"reason"`
	}
	if err := decodeOptional(r, &b); err != nil {
		return err
	}
	if err := ra.sendLimit.Take(c.UserID, 1); err != nil {
		return err
	}
	id, err := ra.rooms.Redact(r.Context(), roomserver.RedactRequest{
		RoomID: roomID, Sender: c.UserID, DeviceID: c.DeviceID, TxnID: txnID, EventID: eventID, Reason: b.Reason,
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"event_id": id})
	return nil
}

// event is GET /rooms/{roomId}/event/{eventId}: 404 M_NOT_FOUND for an
// event that does not exist and for one the caller may not see (history
// visibility), alike.
func (ra *roomsAPI) event(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDVar(r)
	if err != nil {
		return err
	}
	ev, err := ra.rooms.GetEvent(r.Context(), roomID, eventID, c.UserID)
	if err != nil {
		return err
	}
	out, err := ra.rooms.ClientEvents(r.Context(), []*roomserver.Event{ev}, roomserver.Viewer{UserID: c.UserID, DeviceID: c.DeviceID})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, out[0])
	return nil
}
