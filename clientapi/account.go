package clientapi

import (
	"net/http"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

func (a *api) changePassword(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b struct {
		NewPassword   *string           `json:"new_password"`
		LogoutDevices *bool             `json:"logout_devices"`
		Auth          *account.AuthData `json:"auth"`
	}
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.NewPassword == nil {
		return apierr.MissingParam("Missing new_password")
	}
	logout := true // the spec's default
	if b.LogoutDevices != nil {
		logout = *b.LogoutDevices
	}
	if err := a.accounts.ChangePassword(r.Context(), c, *b.NewPassword, logout, b.Auth); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (a *api) deactivate(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b struct {
		Auth     *account.AuthData `json:"auth"`
		IDServer string            `json:"id_server"`
		Erase    bool              `json:"erase"`
	}
	if err := decode(r, &b); err != nil {
		return err
	}
	if err := a.accounts.Deactivate(r.Context(), c, b.Auth); err != nil {
		return err
	}
	// No third-party identifiers are ever bound, so there is nothing to
	// unbind: the spec says "success" in that case.
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"id_server_unbind_result": "success"})
	return nil
}
