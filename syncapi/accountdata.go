package syncapi

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"

	"myelin/internal/apierr"
	"myelin/storage"
)

// serverManaged are account-data types clients may read but not write
// ("Client Config", server behaviour): m.fully_read is set through
// /read_markers, m.push_rules through /pushrules.
var serverManaged = map[string]bool{"m.fully_read": true, "m.push_rules": true}

// maxTagLength is the spec's limit on a tag name (bytes).
const maxTagLength = 255

func checkAccountDataType(typ string) error {
	if typ == "" || len(typ) > 255 {
		return apierr.InvalidParam("account data type must be 1 to 255 bytes")
	}
	return nil
}

// isObject reports whether raw is a JSON object.
func isObject(raw []byte) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{' && json.Valid(t)
}

// PutAccountData is PUT /user/{userId}/account_data/{type} (roomID "") and
// /user/{userId}/rooms/{roomId}/account_data/{type}: content must be a JSON
// object; server-managed types answer 405 M_BAD_JSON.
func (s *Service) PutAccountData(ctx context.Context, userID, roomID, typ string, content json.RawMessage) error {
	if roomID != "" && !validRoomID(roomID) {
		return apierr.InvalidParam("invalid room ID")
	}
	if err := checkAccountDataType(typ); err != nil {
		return err
	}
	if serverManaged[typ] {
		return apierr.New(http.StatusMethodNotAllowed, "M_BAD_JSON", "Cannot set "+typ+" through this API")
	}
	if !isObject(content) {
		return apierr.BadJSON("account data content must be a JSON object")
	}
	return s.SetAccountData(ctx, userID, roomID, typ, content)
}

// SetAccountData stores account data without the client checks: for
// components that manage server-managed types (push rules set
// m.push_rules here so it reaches clients through /sync).
func (s *Service) SetAccountData(ctx context.Context, userID, roomID, typ string, content json.RawMessage) error {
	var compact bytes.Buffer
	if err := json.Compact(&compact, content); err != nil {
		return apierr.NotJSON("content is not JSON")
	}
	err := s.write(ctx, useAccountData, func(tx *sql.Tx, pos streamWrite) error {
		return s.store.PutAccountData(ctx, tx, userID, roomID, typ, compact.Bytes(), pos.AccountData)
	})
	if err != nil {
		return err
	}
	if roomID == "" && typ == "m.ignored_user_list" {
		s.forgetIgnored(userID)
	}
	s.hub.wake(userID)
	return nil
}

// AccountData is GET of an account-data entry. M_NOT_FOUND if unset.
func (s *Service) AccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error) {
	if roomID != "" && !validRoomID(roomID) {
		return nil, apierr.InvalidParam("invalid room ID")
	}
	if err := checkAccountDataType(typ); err != nil {
		return nil, err
	}
	c, err := s.store.AccountDataEntry(ctx, nil, userID, roomID, typ)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, apierr.NotFound("account data not found")
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// tagsContent is m.tag's content.
type tagsContent struct {
	Tags map[string]json.RawMessage `json:"tags"`
}

func readTags(raw []byte) tagsContent {
	var t tagsContent
	_ = json.Unmarshal(raw, &t)
	if t.Tags == nil {
		t.Tags = map[string]json.RawMessage{}
	}
	return t
}

// Tags is GET /user/{userId}/rooms/{roomId}/tags.
func (s *Service) Tags(ctx context.Context, userID, roomID string) (json.RawMessage, error) {
	if !validRoomID(roomID) {
		return nil, apierr.InvalidParam("invalid room ID")
	}
	c, err := s.store.AccountDataEntry(ctx, nil, userID, roomID, "m.tag")
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return json.Marshal(readTags(c))
}

// PutTag is PUT /user/{userId}/rooms/{roomId}/tags/{tag}: body is the
// tag's object (e.g. {"order": 0.5}).
func (s *Service) PutTag(ctx context.Context, userID, roomID, tag string, body json.RawMessage) error {
	if err := checkTag(roomID, tag); err != nil {
		return err
	}
	if !isObject(body) {
		return apierr.BadJSON("tag content must be a JSON object")
	}
	var t struct {
		Order *float64 `json:"order"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		return apierr.BadJSON("order must be a number")
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, body)
	return s.editTags(ctx, userID, roomID, func(tags map[string]json.RawMessage) bool {
		tags[tag] = compact.Bytes()
		return true
	})
}

// DeleteTag is DELETE /user/{userId}/rooms/{roomId}/tags/{tag}; removing
// an absent tag succeeds and changes nothing.
func (s *Service) DeleteTag(ctx context.Context, userID, roomID, tag string) error {
	if err := checkTag(roomID, tag); err != nil {
		return err
	}
	return s.editTags(ctx, userID, roomID, func(tags map[string]json.RawMessage) bool {
		if _, ok := tags[tag]; !ok {
			return false
		}
		delete(tags, tag)
		return true
	})
}

func checkTag(roomID, tag string) error {
	if !validRoomID(roomID) {
		return apierr.InvalidParam("invalid room ID")
	}
	if tag == "" || len(tag) > maxTagLength {
		return apierr.InvalidParam("tag must be 1 to 255 bytes")
	}
	return nil
}

// editTags reads, changes and writes m.tag in one transaction (under the
// stream lock, so two edits cannot lose each other's tag).
func (s *Service) editTags(ctx context.Context, userID, roomID string, edit func(map[string]json.RawMessage) bool) error {
	changed := false
	err := s.write(ctx, useAccountData, func(tx *sql.Tx, pos streamWrite) error {
		cur, err := s.store.AccountDataEntry(ctx, tx, userID, roomID, "m.tag")
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		t := readTags(cur)
		if !edit(t.Tags) {
			return nil
		}
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		changed = true
		return s.store.PutAccountData(ctx, tx, userID, roomID, "m.tag", b, pos.AccountData)
	})
	if err == nil && changed {
		s.hub.wake(userID)
	}
	return err
}
