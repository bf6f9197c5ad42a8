package clientapi

import (
	"net/http"

	"myelin/account"
	"myelin/internal/httpapi"
	"myelin/syncapi"
)

// search is POST /search (server-side search; syncapi owns the query and
// the visibility rules).
func (sa *syncAPI) search(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var req syncapi.SearchRequest
	if err := httpapi.DecodeJSON(r, httpapi.DefaultMaxBody, &req); err != nil {
		return err
	}
	resp, err := sa.sync.Search(r.Context(), c.UserID, c.DeviceID, &req, r.URL.Query().Get("next_batch"))
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}
