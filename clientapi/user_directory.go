package clientapi

import (
	"net/http"
	"slices"
	"strings"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// maxDirectoryLimit bounds one search's result list whatever the client asks.
const maxDirectoryLimit = 100

type directoryUser struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
	rank        int
}

// searchUserDirectory is POST /user_directory/search: the users the
// requester may see (roomserver.DirectoryUsers) whose user ID or global
// displayname contains the term, case-insensitively. Names are the global
// profile, never a room-specific member name: that name was only given to
// one room, and a directory visible to others must not reveal it.
func (ra *roomsAPI) searchUserDirectory(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var body struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int    `json:"limit"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	if body.SearchTerm == nil {
		return apierr.MissingParam("search_term is required")
	}
	limit := 10
	if body.Limit != nil {
		if *body.Limit < 0 {
			return apierr.InvalidParam("limit must not be negative")
		}
		limit = min(*body.Limit, maxDirectoryLimit)
	}
	term := strings.ToLower(strings.TrimSpace(*body.SearchTerm))
	candidates, err := ra.rooms.DirectoryUsers(r.Context(), c.UserID)
	if err != nil {
		return err
	}
	var found []directoryUser
	for _, userID := range candidates {
		u := directoryUser{UserID: userID}
		if ra.isLocal(userID) {
			p, err := ra.profileOf(r.Context(), userID)
			if e, ok := apierr.As(err); ok && e.Code == "M_NOT_FOUND" {
				continue // deactivated: no longer in the directory
			} else if err != nil {
				return err
			}
			u.DisplayName, u.AvatarURL = p.DisplayName, p.AvatarURL
		}
		rank, ok := directoryRank(term, u)
		if !ok {
			continue
		}
		u.rank = rank
		found = append(found, u)
	}
	// Best match first, then users with profile information, then by ID.
	slices.SortStableFunc(found, func(a, b directoryUser) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		if ha, hb := a.DisplayName != "", b.DisplayName != ""; ha != hb {
			if ha {
				return -1
			}
			return 1
		}
		return strings.Compare(a.UserID, b.UserID)
	})
	limited := len(found) > limit
	if limited {
		found = found[:limit]
	}
	if found == nil {
		found = []directoryUser{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"results": found, "limited": limited})
	return nil
}

// directoryRank matches term (lower-cased) against the user's ID and
// displayname: 0 when one starts with it (the localpart counts as the ID's
// start), 1 when one contains it; ok is false when neither does.
func directoryRank(term string, u directoryUser) (rank int, ok bool) {
	id, name := strings.ToLower(u.UserID), strings.ToLower(u.DisplayName)
	if strings.HasPrefix(id, term) || strings.HasPrefix(strings.TrimPrefix(id, "@"), term) || strings.HasPrefix(name, term) {
		return 0, true
	}
	if strings.Contains(id, term) || strings.Contains(name, term) {
		return 1, true
	}
	return 0, false
}
