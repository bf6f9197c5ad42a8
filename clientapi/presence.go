package clientapi

import (
	"net/http"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// putPresence is PUT /presence/{userId}/status.
func (sa *syncAPI) putPresence(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	if err := ownUser(r, c, "set presence"); err != nil {
		return err
	}
	var body struct {
		Presence  *string `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	if body.Presence == nil {
		return apierr.BadJSON("presence is required")
	}
	if err := sa.sync.SetPresence(r.Context(), c.UserID, *body.Presence, body.StatusMsg); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// getPresence is GET /presence/{userId}/status.
func (sa *syncAPI) getPresence(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	userID, err := httpapi.Var(r, "userId")
	if err != nil {
		return err
	}
	p, err := sa.sync.GetPresence(r.Context(), c.UserID, userID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
	return nil
}
