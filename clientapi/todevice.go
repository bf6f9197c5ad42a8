package clientapi

import (
	"encoding/json"
	"net/http"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// sendToDevice is PUT /sendToDevice/{eventType}/{txnId}: idempotent per
// (sending device, txnId), like /send.
func (ka *keysAPI) sendToDevice(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	eventType, err := httpapi.Var(r, "eventType")
	if err != nil {
		return err
	}
	if eventType == "" || len(eventType) > maxIDBytes {
		return apierr.InvalidParam("Event types must be 1 to 255 bytes")
	}
	txnID, err := txnIDVar(r)
	if err != nil {
		return err
	}
	var b struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := httpapi.DecodeJSON(r, maxToDeviceBody, &b); err != nil {
		return err
	}
	if b.Messages == nil {
		return apierr.MissingParam("Missing messages")
	}
	if err := ka.keys.SendToDevice(r.Context(), device(c), eventType, txnID, b.Messages); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}
