package clientapi

import (
	"net/http"

	"myelin/account"
	"myelin/internal/httpapi"
)

func (a *api) loginFlows(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"flows": []map[string]string{{"type": account.LoginTypePassword}},
	})
	return nil
}

// loginBody is POST /login's body, including the deprecated top-level
// user/medium/address fields.
type loginBody struct {
	Type                     string              `json:"type"`
	Identifier               *account.Identifier `json:"identifier"`
	User                     string              `json:"user"`
	Medium                   string              `json:"medium"`
	Address                  string              `json:"address"`
	Password                 string              `json:"password"`
	Token                    string              `json:"token"`
	DeviceID                 string              `json:"device_id"`
	InitialDeviceDisplayName *string             `json:"initial_device_display_name"`
	RefreshToken             bool                `json:"refresh_token"`
}

// decodeLoginRequest decodes POST /login strictly (M_NOT_JSON, M_BAD_JSON).
func decodeLoginRequest(body []byte, ip string) (account.LoginRequest, error) {
	var b loginBody
	if err := httpapi.DecodeJSONBytes(body, &b); err != nil {
		return account.LoginRequest{}, err
	}
	return account.LoginRequest{
		Type: b.Type, Identifier: b.Identifier, User: b.User, Medium: b.Medium, Address: b.Address,
		Password: b.Password, DeviceID: b.DeviceID, InitialDeviceDisplayName: b.InitialDeviceDisplayName,
		RefreshToken: b.RefreshToken, IP: ip,
	}, nil
}

func (a *api) login(w http.ResponseWriter, r *http.Request) error {
	body, err := httpapi.ReadBody(r, httpapi.DefaultMaxBody)
	if err != nil {
		return err
	}
	req, err := decodeLoginRequest(body, a.clientIP(r))
	if err != nil {
		return err
	}
	s, err := a.accounts.Login(r.Context(), req)
	if err != nil {
		return err
	}
	resp := a.sessionResponse(s)
	resp.WellKnown = map[string]any{"m.homeserver": map[string]string{"base_url": a.baseURL()}}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// logout and logoutAll take an empty body (the spec's exception to "POST
// bodies are JSON objects"), so the body is not read.
func (a *api) logout(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	if err := a.accounts.Logout(r.Context(), c); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (a *api) logoutAll(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	if err := a.accounts.LogoutAll(r.Context(), c); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (a *api) refresh(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := decode(r, &b); err != nil {
		return err
	}
	s, err := a.accounts.Refresh(r.Context(), b.RefreshToken)
	if err != nil {
		return err
	}
	out := map[string]any{"access_token": s.AccessToken, "refresh_token": s.RefreshToken}
	if s.ExpiresInMS > 0 {
		out["expires_in_ms"] = s.ExpiresInMS
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) whoami(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"user_id": c.UserID, "device_id": c.DeviceID, "is_guest": false,
	})
	return nil
}
