package clientapi

import (
	"net/http"
	"time"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// typing is PUT /rooms/{roomId}/typing/{userId}.
func (sa *syncAPI) typing(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	if err := ownUser(r, c, "set typing"); err != nil {
		return err
	}
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	if body.Typing == nil {
		return apierr.BadJSON("typing is required")
	}
	var timeout time.Duration
	if body.Timeout != nil {
		if *body.Timeout < 0 {
			return apierr.BadJSON("timeout must not be negative")
		}
		// Capped by the service; bound here so the conversion cannot overflow.
		timeout = time.Duration(min(*body.Timeout, int64(time.Hour/time.Millisecond))) * time.Millisecond
	}
	if err := sa.sync.SetTyping(r.Context(), c.UserID, roomID, *body.Typing, timeout); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}
