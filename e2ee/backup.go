package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"myelin/internal/apierr"
	"myelin/storage"
)

// Server-side key backups (spec: "Server-side key backups"): encrypted
// room keys a user's devices store and fetch. The server cannot read them;
// it keeps versions, applies the spec's rule for which of two copies of a
// session's key to keep, and refuses writes to any version but the
// current one (M_WRONG_ROOM_KEYS_VERSION) so a device with a stale backup
// key notices.

// BackupAlgorithm is the one backup algorithm the spec defines.
const BackupAlgorithm = "m.megolm_backup.v1.curve25519-aes-sha2"

// BackupInfo is a backup version as GET /room_keys/version shows it.
type BackupInfo struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int64           `json:"count"`
	Etag      string          `json:"etag"`
	Version   string          `json:"version"`
}

// BackupUpdate is the answer to a write of backup keys.
type BackupUpdate struct {
	Etag  string `json:"etag"`
	Count int64  `json:"count"`
}

// KeyBackupData is one backed-up session key (KeyBackupData).
type KeyBackupData struct {
	FirstMessageIndex *int64          `json:"first_message_index"`
	ForwardedCount    *int64          `json:"forwarded_count"`
	IsVerified        *bool           `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// RoomKeyBackup is a room's sessions (RoomKeyBackup).
type RoomKeyBackup struct {
	Sessions map[string]KeyBackupData `json:"sessions"`
}

var errNoBackup = apierr.NotFound("No current backup version")
var errUnknownBackup = apierr.NotFound("Unknown backup version")

// parseVersion reads a version string. Versions are opaque to clients;
// Myelin's are positive integers, so anything else names no backup.
func parseVersion(v string) (int64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 0 && strconv.FormatInt(n, 10) == v
}

// checkAuthData validates a backup's algorithm and auth_data. For the
// spec's algorithm, auth_data must carry the backup's public key (clients
// need it to write to the backup). NOTSPEC: any other algorithm name is
// accepted with auth_data kept as an opaque object. The server never
// interprets a backup's contents — only clients can — so refusing names it
// does not know would only block clients adopting a newer algorithm (e.g.
// MSC3270's symmetric backups) before the spec lists it; Synapse stores
// them the same way.
func checkAuthData(algorithm string, authData json.RawMessage) ([]byte, error) {
	if algorithm == "" || len(algorithm) > 255 || !utf8.ValidString(algorithm) {
		return nil, apierr.InvalidParam("algorithm must be a non-empty string of at most 255 bytes")
	}
	o, err := parseObject(authData)
	if err != nil {
		return nil, apierr.BadJSON("auth_data must be a JSON object")
	}
	if algorithm != BackupAlgorithm {
		return compact(authData), nil
	}
	if pk, ok := stringMember(o, "public_key"); !ok || !validPublicKey(pk) {
		return nil, apierr.InvalidParam("auth_data.public_key must be a 32-byte curve25519 key in unpadded base64")
	}
	if _, err := signaturesOf(o); err != nil {
		return nil, apierr.BadJSON("auth_data." + err.Error())
	}
	return compact(authData), nil
}

func (s *Service) backupOwner(userID string) (string, error) {
	local, ok := s.localpart(userID)
	if !ok {
		return "", errNotLocal
	}
	return local, nil
}

// CreateBackup creates a new backup version, which becomes the current one.
func (s *Service) CreateBackup(ctx context.Context, userID, algorithm string, authData json.RawMessage) (string, error) {
	local, err := s.backupOwner(userID)
	if err != nil {
		return "", err
	}
	auth, err := checkAuthData(algorithm, authData)
	if err != nil {
		return "", err
	}
	v, err := s.store.CreateBackupVersion(ctx, local, algorithm, auth)
	if err != nil {
		return "", internal("create backup", err)
	}
	return strconv.FormatInt(v, 10), nil
}

// Backup returns a backup version ("" for the current one).
func (s *Service) Backup(ctx context.Context, userID, version string) (*BackupInfo, error) {
	local, err := s.backupOwner(userID)
	if err != nil {
		return nil, err
	}
	var v int64
	notFound := errNoBackup
	if version != "" {
		var ok bool
		if v, ok = parseVersion(version); !ok {
			return nil, errUnknownBackup
		}
		notFound = errUnknownBackup
	}
	b, err := s.store.BackupVersion(ctx, local, v)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, internal("read backup", err)
	}
	return &BackupInfo{Algorithm: b.Algorithm, AuthData: b.AuthData, Count: b.Count,
		Etag: strconv.FormatInt(b.Etag, 10), Version: strconv.FormatInt(b.Version, 10)}, nil
}

// UpdateBackup replaces a version's auth_data; the algorithm must stay the
// same, and bodyVersion, when given, must name the same version.
func (s *Service) UpdateBackup(ctx context.Context, userID, version, bodyVersion, algorithm string, authData json.RawMessage) error {
	local, err := s.backupOwner(userID)
	if err != nil {
		return err
	}
	if bodyVersion != "" && bodyVersion != version {
		return apierr.InvalidParam("version in the body does not match the path")
	}
	v, ok := parseVersion(version)
	if !ok {
		return errUnknownBackup
	}
	auth, err := checkAuthData(algorithm, authData)
	if err != nil {
		return err
	}
	err = s.store.UpdateBackupVersion(ctx, local, v, algorithm, auth)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return errUnknownBackup
	case errors.Is(err, storage.ErrConflict):
		return apierr.InvalidParam("Algorithm does not match the backup's")
	case err != nil:
		return internal("update backup", err)
	}
	return nil
}

// DeleteBackup deletes a version and its keys; deleting it again succeeds.
func (s *Service) DeleteBackup(ctx context.Context, userID, version string) error {
	local, err := s.backupOwner(userID)
	if err != nil {
		return err
	}
	v, ok := parseVersion(version)
	if !ok {
		return errUnknownBackup
	}
	err = s.store.DeleteBackupVersion(ctx, local, v)
	if errors.Is(err, storage.ErrNotFound) {
		return errUnknownBackup
	}
	if err != nil {
		return internal("delete backup", err)
	}
	return nil
}

// maxBackupKeysPerRequest bounds one PUT of backup keys.
const maxBackupKeysPerRequest = 10000

// PutBackupKeys stores keys (room ID → sessions) in the current version.
func (s *Service) PutBackupKeys(ctx context.Context, userID, version string, rooms map[string]RoomKeyBackup) (*BackupUpdate, error) {
	local, err := s.backupOwner(userID)
	if err != nil {
		return nil, err
	}
	if version == "" {
		return nil, apierr.MissingParam("Missing version")
	}
	var keys []storage.BackupKey
	for roomID, room := range rooms {
		if !validRoomID(roomID) {
			return nil, apierr.InvalidParam("Invalid room ID")
		}
		if room.Sessions == nil {
			return nil, apierr.BadJSON("Each room needs a sessions object")
		}
		for sessionID, k := range room.Sessions {
			if !validID(sessionID) {
				return nil, apierr.InvalidParam("Invalid session ID")
			}
			key, err := checkBackupKey(roomID, sessionID, k)
			if err != nil {
				return nil, err
			}
			keys = append(keys, key)
			if len(keys) > maxBackupKeysPerRequest {
				return nil, apierr.InvalidParam("Too many keys in one request")
			}
		}
	}
	v, ok := parseVersion(version)
	if !ok {
		v = -1 // names no version: the current one is reported below
	}
	etag, count, err := s.store.PutBackupKeys(ctx, local, v, keys)
	var wrong *storage.WrongBackupVersion
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, errUnknownBackup
	case errors.As(err, &wrong):
		return nil, apierr.New(403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version").With("current_version", strconv.FormatInt(wrong.Current, 10))
	case err != nil:
		return nil, internal("store backup keys", err)
	}
	return &BackupUpdate{Etag: strconv.FormatInt(etag, 10), Count: count}, nil
}

// checkBackupKey validates one KeyBackupData: every field required, counts
// non-negative, session_data an object.
func checkBackupKey(roomID, sessionID string, k KeyBackupData) (storage.BackupKey, error) {
	if k.FirstMessageIndex == nil || k.ForwardedCount == nil || k.IsVerified == nil || !present(k.SessionData) {
		return storage.BackupKey{}, apierr.BadJSON("Key data needs first_message_index, forwarded_count, is_verified and session_data")
	}
	if *k.FirstMessageIndex < 0 || *k.ForwardedCount < 0 {
		return storage.BackupKey{}, apierr.InvalidParam("first_message_index and forwarded_count must not be negative")
	}
	if _, err := parseObject(k.SessionData); err != nil {
		return storage.BackupKey{}, apierr.BadJSON("session_data must be a JSON object")
	}
	return storage.BackupKey{RoomID: roomID, SessionID: sessionID, FirstMessageIndex: *k.FirstMessageIndex,
		ForwardedCount: *k.ForwardedCount, IsVerified: *k.IsVerified, SessionData: compact(k.SessionData)}, nil
}

// validRoomID checks the shape of a room ID: "!" and an opaque part
// (room version 12 IDs carry no server name).
func validRoomID(id string) bool {
	return len(id) > 1 && strings.HasPrefix(id, "!") && validID(id)
}

// BackupKeys reads keys of a version: all (roomID ""), a room's, or one
// session's. A session that is not stored is M_NOT_FOUND; a room without
// keys is an empty sessions object.
func (s *Service) BackupKeys(ctx context.Context, userID, version, roomID, sessionID string) (any, error) {
	local, err := s.backupOwner(userID)
	if err != nil {
		return nil, err
	}
	if version == "" {
		return nil, apierr.MissingParam("Missing version")
	}
	v, ok := parseVersion(version)
	if !ok {
		return nil, errUnknownBackup
	}
	keys, err := s.store.BackupKeys(ctx, local, v, roomID, sessionID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errUnknownBackup
	}
	if err != nil {
		return nil, internal("read backup keys", err)
	}
	data := func(k storage.BackupKey) KeyBackupData {
		return KeyBackupData{FirstMessageIndex: &k.FirstMessageIndex, ForwardedCount: &k.ForwardedCount, IsVerified: &k.IsVerified, SessionData: k.SessionData}
	}
	switch {
	case sessionID != "":
		if len(keys) == 0 {
			return nil, apierr.NotFound("No key for this session")
		}
		return data(keys[0]), nil
	case roomID != "":
		room := RoomKeyBackup{Sessions: map[string]KeyBackupData{}}
		for _, k := range keys {
			room.Sessions[k.SessionID] = data(k)
		}
		return room, nil
	}
	rooms := map[string]RoomKeyBackup{}
	for _, k := range keys {
		if _, ok := rooms[k.RoomID]; !ok {
			rooms[k.RoomID] = RoomKeyBackup{Sessions: map[string]KeyBackupData{}}
		}
		rooms[k.RoomID].Sessions[k.SessionID] = data(k)
	}
	return map[string]any{"rooms": rooms}, nil
}

// DeleteBackupKeys deletes keys of a version: all, a room's or a session's.
func (s *Service) DeleteBackupKeys(ctx context.Context, userID, version, roomID, sessionID string) (*BackupUpdate, error) {
	local, err := s.backupOwner(userID)
	if err != nil {
		return nil, err
	}
	if version == "" {
		return nil, apierr.MissingParam("Missing version")
	}
	v, ok := parseVersion(version)
	if !ok {
		return nil, errUnknownBackup
	}
	etag, count, err := s.store.DeleteBackupKeys(ctx, local, v, roomID, sessionID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errUnknownBackup
	}
	if err != nil {
		return nil, internal("delete backup keys", err)
	}
	return &BackupUpdate{Etag: strconv.FormatInt(etag, 10), Count: count}, nil
}
