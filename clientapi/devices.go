package clientapi

import (
	"net/http"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// deviceJSON is the spec's client device object.
type deviceJSON struct {
	DeviceID    string  `json:"device_id"`
	DisplayName *string `json:"display_name,omitempty"`
	LastSeenIP  *string `json:"last_seen_ip,omitempty"`
	LastSeenTS  *int64  `json:"last_seen_ts,omitempty"`
}

func toDeviceJSON(d account.Device) deviceJSON {
	return deviceJSON{DeviceID: d.DeviceID, DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, LastSeenTS: d.LastSeenTS}
}

func (a *api) listDevices(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	ds, err := a.accounts.Devices(r.Context(), c)
	if err != nil {
		return err
	}
	out := make([]deviceJSON, len(ds))
	for i, d := range ds {
		out[i] = toDeviceJSON(d)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"devices": out})
	return nil
}

func (a *api) getDevice(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	id, err := httpapi.Var(r, "deviceId")
	if err != nil {
		return err
	}
	d, err := a.accounts.Device(r.Context(), c, id)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, toDeviceJSON(d))
	return nil
}

func (a *api) updateDevice(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	id, err := httpapi.Var(r, "deviceId")
	if err != nil {
		return err
	}
	var b struct {
		DisplayName *string `json:"display_name"`
	}
	if err := decode(r, &b); err != nil {
		return err
	}
	if err := a.accounts.RenameDevice(r.Context(), c, id, b.DisplayName); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// uiaBody is the auth part shared by UIA-protected requests.
type uiaBody struct {
	Auth *account.AuthData `json:"auth"`
}

func (a *api) deleteDevice(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	id, err := httpapi.Var(r, "deviceId")
	if err != nil {
		return err
	}
	var b uiaBody
	if err := decodeOptional(r, &b); err != nil {
		return err
	}
	if err := a.accounts.DeleteDevices(r.Context(), c, []string{id}, b.Auth); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (a *api) deleteDevices(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b struct {
		Devices *[]string         `json:"devices"`
		Auth    *account.AuthData `json:"auth"`
	}
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.Devices == nil {
		return apierr.MissingParam("Missing devices")
	}
	if err := a.accounts.DeleteDevices(r.Context(), c, *b.Devices, b.Auth); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// decodeOptional decodes a JSON object body that clients commonly omit on
// the first UIA round (DELETE with no body): an empty body counts as {}.
func decodeOptional(r *http.Request, v any) error {
	body, err := httpapi.ReadBody(r, httpapi.DefaultMaxBody)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return nil
	}
	return httpapi.DecodeJSONBytes(body, v)
}
