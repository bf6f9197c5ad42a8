package clientapi

import (
	"net/http"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// registerBody is POST /register's body. Pointers tell "absent" from "zero".
type registerBody struct {
	Auth                     *account.AuthData `json:"auth"`
	Username                 string            `json:"username"`
	Password                 string            `json:"password"`
	DeviceID                 string            `json:"device_id"`
	InitialDeviceDisplayName *string           `json:"initial_device_display_name"`
	InhibitLogin             bool              `json:"inhibit_login"`
	RefreshToken             bool              `json:"refresh_token"`
}

// decodeRegisterRequest turns the raw body and ?kind= into a request for the
// account service: non-JSON is M_NOT_JSON, wrong shapes M_BAD_JSON, guests
// M_GUEST_ACCESS_FORBIDDEN (this server has no guest accounts).
func decodeRegisterRequest(kind string, body []byte, ip string) (account.RegisterRequest, error) {
	switch kind {
	case "", "user":
	case "guest":
		return account.RegisterRequest{}, apierr.New(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is not enabled")
	default:
		return account.RegisterRequest{}, apierr.InvalidParam("kind must be user or guest")
	}
	var b registerBody
	if err := httpapi.DecodeJSONBytes(body, &b); err != nil {
		return account.RegisterRequest{}, err
	}
	return account.RegisterRequest{
		Username: b.Username, Password: b.Password, DeviceID: b.DeviceID,
		InitialDeviceDisplayName: b.InitialDeviceDisplayName,
		InhibitLogin:             b.InhibitLogin, RefreshToken: b.RefreshToken,
		Auth: b.Auth, IP: ip,
	}, nil
}

// sessionResponse is the success body of /register and /login.
type sessionResponse struct {
	UserID       string         `json:"user_id"`
	AccessToken  string         `json:"access_token,omitempty"`
	RefreshToken string         `json:"refresh_token,omitempty"`
	ExpiresInMS  int64          `json:"expires_in_ms,omitempty"`
	DeviceID     string         `json:"device_id,omitempty"`
	HomeServer   string         `json:"home_server"`
	WellKnown    map[string]any `json:"well_known,omitempty"`
}

func (a *api) sessionResponse(s *account.Session) sessionResponse {
	return sessionResponse{
		UserID: s.UserID, AccessToken: s.AccessToken, RefreshToken: s.RefreshToken,
		ExpiresInMS: s.ExpiresInMS, DeviceID: s.DeviceID, HomeServer: a.cfg.ServerName,
	}
}

func (a *api) register(w http.ResponseWriter, r *http.Request) error {
	body, err := httpapi.ReadBody(r, httpapi.DefaultMaxBody)
	if err != nil {
		return err
	}
	req, err := decodeRegisterRequest(r.URL.Query().Get("kind"), body, a.clientIP(r))
	if err != nil {
		return err
	}
	s, err := a.accounts.Register(r.Context(), req)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, a.sessionResponse(s))
	return nil
}

func (a *api) registerAvailable(w http.ResponseWriter, r *http.Request) error {
	username := r.URL.Query().Get("username")
	if username == "" {
		return apierr.MissingParam("Missing username")
	}
	if err := a.accounts.Available(r.Context(), username); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"available": true})
	return nil
}

func (a *api) registrationTokenValidity(w http.ResponseWriter, r *http.Request) error {
	token := r.URL.Query().Get("token")
	if token == "" {
		return apierr.MissingParam("Missing token")
	}
	valid, err := a.accounts.RegistrationTokenValid(r.Context(), token, a.clientIP(r))
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"valid": valid})
	return nil
}

func (a *api) sharedSecretNonce(w http.ResponseWriter, r *http.Request) error {
	nonce, err := a.accounts.SharedSecretNonce()
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"nonce": nonce})
	return nil
}

// sharedSecretBody is Synapse's admin registration body.
type sharedSecretBody struct {
	Nonce       string  `json:"nonce"`
	Username    string  `json:"username"`
	Displayname *string `json:"displayname"`
	Password    string  `json:"password"`
	Admin       bool    `json:"admin"`
	UserType    *string `json:"user_type"`
	MAC         string  `json:"mac"`
}

func (a *api) sharedSecretRegister(w http.ResponseWriter, r *http.Request) error {
	var b sharedSecretBody
	if err := decode(r, &b); err != nil {
		return err
	}
	s, err := a.accounts.SharedSecretRegister(r.Context(), account.SharedSecretRequest{
		Nonce: b.Nonce, Username: b.Username, Password: b.Password, Displayname: b.Displayname,
		Admin: b.Admin, UserType: b.UserType, MAC: b.MAC,
	}, a.clientIP(r))
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, a.sessionResponse(s))
	return nil
}

// adminStatus is Synapse's "query server admin status" admin API, the one
// admin tools use to check a provisioned account.
func (a *api) adminStatus(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	userID, err := httpapi.Var(r, "userId")
	if err != nil {
		return err
	}
	admin, err := a.accounts.AdminStatus(r.Context(), c, userID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"admin": admin})
	return nil
}
