package clientapi

import (
	"context"
	"encoding/json"
	"net/http"

	"myelin/account"
	"myelin/e2ee"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/syncapi"
)

// The end-to-end encryption endpoints (keys*.go, todevice.go): keys,
// cross-signing, key backups and send-to-device. They decode the request's
// shape and call package e2ee, which validates the keys themselves (their
// exact bytes are what signatures cover, so they travel raw) and owns
// every rule. Each request is one e2ee call and one transaction.

// keysAPI serves the E2EE endpoints.
type keysAPI struct {
	*api
	keys *e2ee.Service
}

// Body limits. Key uploads are small; a to-device request carries one
// encrypted message per recipient device (a room key shared with a few
// hundred devices is a few hundred KiB), and backups upload keys in
// batches.
const (
	maxKeysBody     = 1 << 20
	maxToDeviceBody = 4 << 20
	maxBackupBody   = 8 << 20
)

// registerKeyRoutes adds the E2EE endpoints. Without an e2ee service they
// are not served (404 M_UNRECOGNIZED).
func (a *api) registerKeyRoutes(r *httpapi.Routes, keys *e2ee.Service, v3 string) {
	if keys == nil {
		return
	}
	ka := &keysAPI{api: a, keys: keys}
	handle := r.Handle
	handle(http.MethodPost, v3+"/keys/upload", a.authed(ka.upload))
	handle(http.MethodPost, v3+"/keys/query", a.authed(ka.query))
	handle(http.MethodPost, v3+"/keys/claim", a.authed(ka.claim))
	handle(http.MethodGet, v3+"/keys/changes", a.authed(ka.changes))
	handle(http.MethodPost, v3+"/keys/device_signing/upload", a.authed(ka.uploadCrossSigning))
	handle(http.MethodPost, v3+"/keys/signatures/upload", a.authed(ka.uploadSignatures))
	handle(http.MethodPut, v3+"/sendToDevice/{eventType}/{txnId}", a.authed(ka.sendToDevice))

	// Key backups (keys_backup.go).
	handle(http.MethodPost, v3+"/room_keys/version", a.authed(ka.createBackup))
	handle(http.MethodGet, v3+"/room_keys/version", a.authed(ka.getBackup))
	handle(http.MethodGet, v3+"/room_keys/version/{version}", a.authed(ka.getBackup))
	handle(http.MethodPut, v3+"/room_keys/version/{version}", a.authed(ka.updateBackup))
	handle(http.MethodDelete, v3+"/room_keys/version/{version}", a.authed(ka.deleteBackup))
	for _, p := range []string{"/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"} {
		handle(http.MethodGet, v3+p, a.authed(ka.getBackupKeys))
		handle(http.MethodPut, v3+p, a.authed(ka.putBackupKeys))
		handle(http.MethodDelete, v3+p, a.authed(ka.deleteBackupKeys))
	}
}

func device(c *account.Caller) e2ee.Device {
	return e2ee.Device{UserID: c.UserID, DeviceID: c.DeviceID}
}

func (ka *keysAPI) upload(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b e2ee.UploadRequest
	if err := httpapi.DecodeJSON(r, maxKeysBody, &b); err != nil {
		return err
	}
	counts, err := ka.keys.Upload(r.Context(), device(c), b)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"one_time_key_counts": counts})
	return nil
}

func (ka *keysAPI) query(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b struct {
		DeviceKeys map[string][]string `json:"device_keys"`
		Timeout    *int64              `json:"timeout"`
	}
	if err := httpapi.DecodeJSON(r, maxKeysBody, &b); err != nil {
		return err
	}
	if b.DeviceKeys == nil {
		return apierr.MissingParam("Missing device_keys")
	}
	res, err := ka.keys.Query(r.Context(), c.UserID, b.DeviceKeys)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (ka *keysAPI) claim(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
		Timeout     *int64                       `json:"timeout"`
	}
	if err := httpapi.DecodeJSON(r, maxKeysBody, &b); err != nil {
		return err
	}
	if b.OneTimeKeys == nil {
		return apierr.MissingParam("Missing one_time_keys")
	}
	res, err := ka.keys.Claim(r.Context(), b.OneTimeKeys)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
	return nil
}

// changes is GET /keys/changes?from=&to=: both are /sync next_batch
// tokens; the device-list stream's and the event log's positions in them
// bound the window.
func (ka *keysAPI) changes(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	q := r.URL.Query()
	if q.Get("from") == "" || q.Get("to") == "" {
		return apierr.MissingParam("from and to are required")
	}
	from, err := syncapi.ParseToken(q.Get("from"))
	if err != nil {
		return apierr.InvalidParam("from is not a sync token")
	}
	to, err := syncapi.ParseToken(q.Get("to"))
	if err != nil {
		return apierr.InvalidParam("to is not a sync token")
	}
	dl := ka.keys.DeviceLists()
	key := dl.StreamKey()
	changed, left, err := dl.Changes(r.Context(), c.UserID, e2ee.Window{
		Since: from.Ext[key], UpTo: min(to.Ext[key], dl.StreamPosition()),
		EventsSince: from.Events, EventsUpTo: to.Events,
	})
	if err != nil {
		return err
	}
	if changed == nil {
		changed = []string{}
	}
	if left == nil {
		left = []string{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"changed": changed, "left": left})
	return nil
}

func (ka *keysAPI) uploadCrossSigning(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b struct {
		e2ee.CrossSigningUpload
		Auth *account.AuthData `json:"auth"`
	}
	if err := httpapi.DecodeJSON(r, maxKeysBody, &b); err != nil {
		return err
	}
	reauth := func(ctx context.Context) (string, error) {
		return ka.accounts.Reauthenticate(ctx, c, e2ee.ReauthOp, b.Auth)
	}
	if err := ka.keys.UploadCrossSigning(r.Context(), c.UserID, b.CrossSigningUpload, reauth); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (ka *keysAPI) uploadSignatures(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b map[string]map[string]json.RawMessage
	if err := httpapi.DecodeJSON(r, maxKeysBody, &b); err != nil {
		return err
	}
	failures, err := ka.keys.UploadSignatures(r.Context(), device(c), b)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"failures": failures})
	return nil
}
