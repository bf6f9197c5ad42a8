package clientapi

import (
	"encoding/json"
	"net/http"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// Profiles are public reads (the spec's GET endpoints take no token) and
// owner-only writes.

func (a *api) getProfile(w http.ResponseWriter, r *http.Request) error {
	userID, err := httpapi.Var(r, "userId")
	if err != nil {
		return err
	}
	p, err := a.accounts.Profile(r.Context(), userID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (a *api) getProfileField(w http.ResponseWriter, r *http.Request) error {
	userID, key, err := profileVars(r)
	if err != nil {
		return err
	}
	v, err := a.accounts.ProfileField(r.Context(), userID, key)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]json.RawMessage{key: v})
	return nil
}

func (a *api) setProfileField(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	userID, key, err := profileVars(r)
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := decode(r, &body); err != nil {
		return err
	}
	v, ok := body[key]
	if !ok {
		return apierr.MissingParam("Body must contain " + key)
	}
	if err := a.accounts.SetProfileField(r.Context(), c, userID, key, v); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (a *api) deleteProfileField(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	userID, key, err := profileVars(r)
	if err != nil {
		return err
	}
	if err := a.accounts.DeleteProfileField(r.Context(), c, userID, key); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func profileVars(r *http.Request) (userID, key string, err error) {
	if userID, err = httpapi.Var(r, "userId"); err != nil {
		return "", "", err
	}
	if key, err = httpapi.Var(r, "keyName"); err != nil {
		return "", "", err
	}
	return userID, key, nil
}
