package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"

	"myelin/account"
	"myelin/e2ee"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
)

// Server-side key backups: /room_keys/version[/{version}] and
// /room_keys/keys[/{roomId}[/{sessionId}]].

type backupVersionBody struct {
	Algorithm *string         `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   string          `json:"version"`
}

func (b *backupVersionBody) check() error {
	if b.Algorithm == nil || len(b.AuthData) == 0 {
		return apierr.MissingParam("algorithm and auth_data are required")
	}
	return nil
}

func (ka *keysAPI) createBackup(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b backupVersionBody
	if err := httpapi.DecodeJSON(r, maxKeysBody, &b); err != nil {
		return err
	}
	if err := b.check(); err != nil {
		return err
	}
	v, err := ka.keys.CreateBackup(r.Context(), c.UserID, *b.Algorithm, b.AuthData)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"version": v})
	return nil
}

// versionVar is the {version} path variable, "" on the route without one.
func versionVar(r *http.Request) (string, error) {
	if _, ok := mux.Vars(r)["version"]; !ok {
		return "", nil
	}
	v, err := httpapi.Var(r, "version")
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", apierr.NotFound("Unknown backup version")
	}
	return v, nil
}

func (ka *keysAPI) getBackup(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	v, err := versionVar(r)
	if err != nil {
		return err
	}
	info, err := ka.keys.Backup(r.Context(), c.UserID, v)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, info)
	return nil
}

func (ka *keysAPI) updateBackup(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	v, err := versionVar(r)
	if err != nil {
		return err
	}
	var b backupVersionBody
	if err := httpapi.DecodeJSON(r, maxKeysBody, &b); err != nil {
		return err
	}
	if err := b.check(); err != nil {
		return err
	}
	if err := ka.keys.UpdateBackup(r.Context(), c.UserID, v, b.Version, *b.Algorithm, b.AuthData); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (ka *keysAPI) deleteBackup(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	v, err := versionVar(r)
	if err != nil {
		return err
	}
	if err := ka.keys.DeleteBackup(r.Context(), c.UserID, v); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// backupTarget reads the optional {roomId} and {sessionId} path variables
// and the required version query parameter.
func backupTarget(r *http.Request) (version, roomID, sessionID string, err error) {
	version = r.URL.Query().Get("version")
	if version == "" {
		return "", "", "", apierr.MissingParam("Missing version")
	}
	vars := mux.Vars(r)
	if _, ok := vars["roomId"]; ok {
		if roomID, err = roomIDVar(r); err != nil {
			return "", "", "", err
		}
	}
	if _, ok := vars["sessionId"]; ok {
		if sessionID, err = httpapi.Var(r, "sessionId"); err != nil {
			return "", "", "", err
		}
		if sessionID == "" || len(sessionID) > maxIDBytes {
			return "", "", "", apierr.InvalidParam("Invalid session ID")
		}
	}
	return version, roomID, sessionID, nil
}

func (ka *keysAPI) getBackupKeys(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	version, roomID, sessionID, err := backupTarget(r)
	if err != nil {
		return err
	}
	out, err := ka.keys.BackupKeys(r.Context(), c.UserID, version, roomID, sessionID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// putBackupKeys accepts the three shapes of the three routes: {"rooms":
// {roomId: {"sessions": …}}}, {"sessions": …} for one room, and one
// KeyBackupData for one session.
func (ka *keysAPI) putBackupKeys(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	version, roomID, sessionID, err := backupTarget(r)
	if err != nil {
		return err
	}
	var rooms map[string]e2ee.RoomKeyBackup
	switch {
	case sessionID != "":
		var k e2ee.KeyBackupData
		if err := httpapi.DecodeJSON(r, maxBackupBody, &k); err != nil {
			return err
		}
		rooms = map[string]e2ee.RoomKeyBackup{roomID: {Sessions: map[string]e2ee.KeyBackupData{sessionID: k}}}
	case roomID != "":
		var room e2ee.RoomKeyBackup
		if err := httpapi.DecodeJSON(r, maxBackupBody, &room); err != nil {
			return err
		}
		if room.Sessions == nil {
			return apierr.MissingParam("Missing sessions")
		}
		rooms = map[string]e2ee.RoomKeyBackup{roomID: room}
	default:
		var b struct {
			Rooms map[string]e2ee.RoomKeyBackup `json:"rooms"`
		}
		if err := httpapi.DecodeJSON(r, maxBackupBody, &b); err != nil {
			return err
		}
		if b.Rooms == nil {
			return apierr.MissingParam("Missing rooms")
		}
		rooms = b.Rooms
	}
	res, err := ka.keys.PutBackupKeys(r.Context(), c.UserID, version, rooms)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (ka *keysAPI) deleteBackupKeys(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	version, roomID, sessionID, err := backupTarget(r)
	if err != nil {
		return err
	}
	res, err := ka.keys.DeleteBackupKeys(r.Context(), c.UserID, version, roomID, sessionID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
	return nil
}
