package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// optionalRoomID reads {roomId} when the route has one ("" otherwise).
func optionalRoomID(r *http.Request) (string, error) {
	if _, ok := mux.Vars(r)["roomId"]; !ok {
		return "", nil
	}
	return roomIDVar(r)
}

// readObject reads a JSON-object body raw.
func readObject(r *http.Request) (json.RawMessage, error) {
	body, err := httpapi.ReadBody(r, httpapi.DefaultMaxBody)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := httpapi.DecodeJSONBytes(body, &obj); err != nil {
		return nil, err
	}
	return body, nil
}

// putAccountData is PUT /user/{userId}/account_data/{type} and
// /user/{userId}/rooms/{roomId}/account_data/{type}.
func (sa *syncAPI) putAccountData(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	if err := ownUser(r, c, "add account data"); err != nil {
		return err
	}
	roomID, err := optionalRoomID(r)
	if err != nil {
		return err
	}
	typ, err := httpapi.Var(r, "type")
	if err != nil {
		return err
	}
	content, err := readObject(r)
	if err != nil {
		return err
	}
	if err := sa.sync.PutAccountData(r.Context(), c.UserID, roomID, typ, content); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// getAccountData is GET of the same paths.
func (sa *syncAPI) getAccountData(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	if err := ownUser(r, c, "read account data"); err != nil {
		return err
	}
	roomID, err := optionalRoomID(r)
	if err != nil {
		return err
	}
	typ, err := httpapi.Var(r, "type")
	if err != nil {
		return err
	}
	content, err := sa.sync.AccountData(r.Context(), c.UserID, roomID, typ)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, content)
	return nil
}

// getTags is GET /user/{userId}/rooms/{roomId}/tags.
func (sa *syncAPI) getTags(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	if err := ownUser(r, c, "read tags"); err != nil {
		return err
	}
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	tags, err := sa.sync.Tags(r.Context(), c.UserID, roomID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, tags)
	return nil
}

// putTag is PUT /user/{userId}/rooms/{roomId}/tags/{tag}.
func (sa *syncAPI) putTag(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, tag, err := tagPath(r, c)
	if err != nil {
		return err
	}
	content, err := readObject(r)
	if err != nil {
		return err
	}
	if err := sa.sync.PutTag(r.Context(), c.UserID, roomID, tag, content); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// deleteTag is DELETE /user/{userId}/rooms/{roomId}/tags/{tag}.
func (sa *syncAPI) deleteTag(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, tag, err := tagPath(r, c)
	if err != nil {
		return err
	}
	if err := sa.sync.DeleteTag(r.Context(), c.UserID, roomID, tag); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func tagPath(r *http.Request, c *account.Caller) (string, string, error) {
	if err := ownUser(r, c, "change tags"); err != nil {
		return "", "", err
	}
	roomID, err := roomIDVar(r)
	if err != nil {
		return "", "", err
	}
	tag, err := httpapi.Var(r, "tag")
	if err != nil {
		return "", "", err
	}
	if tag == "" {
		return "", "", apierr.InvalidParam("tag must not be empty")
	}
	return roomID, tag, nil
}
