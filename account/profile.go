package account

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"

	"myelin/internal/apierr"
	"myelin/storage"
)

// Profile fields (spec v1.16+: /profile/{userId}/{keyName}).
const (
	FieldDisplayName = "displayname"
	FieldAvatarURL   = "avatar_url"
	FieldTimeZone    = "m.tz"
)

const (
	maxProfileBytes    = 64 * 1024 // the spec: the whole profile MUST be under 64 KiB
	maxProfileKeyBytes = 255
	maxDisplayNameLen  = 256 // characters; a display name is a name, not a document
)

// profileKey is the spec's keyName pattern.
var profileKey = regexp.MustCompile(`^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$`)

// ValidProfileKey checks a keyName: M_KEY_TOO_LARGE over 255 bytes,
// M_INVALID_PARAM when it does not follow the grammar.
func ValidProfileKey(key string) error {
	if len(key) > maxProfileKeyBytes {
		return apierr.New(400, "M_KEY_TOO_LARGE", "Profile key longer than 255 bytes")
	}
	if !profileKey.MatchString(key) {
		return apierr.InvalidParam("Invalid profile key")
	}
	return nil
}

// profileOf loads a local, active user's profile, or 404 M_NOT_FOUND for
// unknown, remote (no federation query yet) and deactivated users.
func (s *Service) profileOf(ctx context.Context, userID string) (map[string]json.RawMessage, error) {
	local, ok := s.LocalpartOf(userID)
	if !ok {
		return nil, apierr.NotFound("Profile not found")
	}
	u, err := s.store.User(ctx, local)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && u.Deactivated) {
		return nil, apierr.NotFound("Profile not found")
	}
	if err != nil {
		return nil, internal("load user", err)
	}
	p, err := s.store.Profile(ctx, local)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, apierr.NotFound("Profile not found")
	}
	if err != nil {
		return nil, internal("load profile", err)
	}
	return p, nil
}

// Profile returns every profile field of a user.
func (s *Service) Profile(ctx context.Context, userID string) (map[string]json.RawMessage, error) {
	return s.profileOf(ctx, userID)
}

// ProfileField returns one field, or 404 M_NOT_FOUND.
func (s *Service) ProfileField(ctx context.Context, userID, key string) (json.RawMessage, error) {
	if err := ValidProfileKey(key); err != nil {
		return nil, err
	}
	p, err := s.profileOf(ctx, userID)
	if err != nil {
		return nil, err
	}
	v, ok := p[key]
	if !ok {
		return nil, apierr.NotFound("Profile field not set")
	}
	return v, nil
}

// SetProfileField sets a field of the caller's own profile. Validation:
// displayname a string of at most 256 characters, avatar_url an mxc:// URI,
// m.tz a string; custom keys any JSON. For displayname and avatar_url an
// empty string removes the field (what clients send to clear them).
func (s *Service) SetProfileField(ctx context.Context, c *Caller, userID, key string, value json.RawMessage) error {
	if err := ValidProfileKey(key); err != nil {
		return err
	}
	if userID != c.UserID {
		return apierr.Forbidden("You can only change your own profile")
	}
	value, err := normalizeProfileValue(key, value)
	if err != nil {
		return err
	}
	return s.writeProfile(ctx, c, key, value)
}

// DeleteProfileField removes a field of the caller's own profile.
func (s *Service) DeleteProfileField(ctx context.Context, c *Caller, userID, key string) error {
	if err := ValidProfileKey(key); err != nil {
		return err
	}
	if userID != c.UserID {
		return apierr.Forbidden("You can only change your own profile")
	}
	return s.writeProfile(ctx, c, key, nil)
}

func (s *Service) writeProfile(ctx context.Context, c *Caller, key string, value json.RawMessage) error {
	err := s.store.UpdateProfile(ctx, c.Localpart, key, value, func(p map[string]json.RawMessage) error {
		b, err := json.Marshal(p)
		if err != nil {
			return internal("encode profile", err)
		}
		if len(b) >= maxProfileBytes {
			return apierr.New(400, "M_PROFILE_TOO_LARGE", "Profile would exceed 64 KiB")
		}
		return nil
	})
	if errors.Is(err, storage.ErrNotFound) {
		return apierr.NotFound("Profile not found")
	}
	if _, ok := apierr.As(err); ok {
		return err
	}
	if err != nil {
		return internal("update profile", err)
	}
	return nil
}

// normalizeProfileValue validates a field value and returns what to store
// (nil: delete the field).
func normalizeProfileValue(key string, value json.RawMessage) (json.RawMessage, error) {
	switch key {
	case FieldDisplayName, FieldAvatarURL, FieldTimeZone:
		var str string
		if err := json.Unmarshal(value, &str); err != nil || string(value) == "null" {
			return nil, apierr.BadJSON(key + " must be a string")
		}
		if str == "" && key != FieldTimeZone {
			return nil, nil
		}
		switch key {
		case FieldDisplayName:
			if utf8.RuneCountInString(str) > maxDisplayNameLen {
				return nil, apierr.InvalidParam("displayname longer than 256 characters")
			}
		case FieldAvatarURL:
			if !validMXC(str) {
				return nil, apierr.InvalidParam("avatar_url must be an mxc:// URI")
			}
		}
		b, err := json.Marshal(str)
		if err != nil {
			return nil, internal("encode profile value", err)
		}
		return b, nil
	}
	// Custom fields: any JSON value, stored compacted (not re-encoded, so
	// large integers keep their precision).
	var buf bytes.Buffer
	if err := json.Compact(&buf, value); err != nil {
		return nil, apierr.BadJSON("Invalid JSON value")
	}
	return buf.Bytes(), nil
}

// validMXC checks the shape mxc://<server-name>/<media-id>.
func validMXC(s string) bool {
	rest, ok := strings.CutPrefix(s, "mxc://")
	if !ok {
		return false
	}
	server, media, ok := strings.Cut(rest, "/")
	return ok && server != "" && media != "" && !strings.Contains(media, "/")
}
