package account

import (
	"strings"

	"myelin/internal/apierr"
)

// maxUserIDLength is the spec's limit on a whole user ID, in bytes,
// including "@", the localpart, ":" and the server name.
const maxUserIDLength = 255

// normalizeUsername maps a requested username onto a localpart the way the
// spec asks: new localparts use only a-z 0-9 . _ = - / + (appendices, "User
// Identifiers", since v1.8), so ASCII upper case is folded to lower case and
// anything else outside that set is refused with M_INVALID_USERNAME. A
// leading "@user:server" form is not accepted here: /register takes a
// localpart.
func (s *Service) normalizeUsername(username string) (string, error) {
	if username == "" {
		return "", apierr.InvalidUsername("Username must not be empty")
	}
	local := strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, username)
	for i := 0; i < len(local); i++ {
		if !localpartChar(local[i]) {
			return "", apierr.InvalidUsername("Username may contain only a-z, 0-9, '.', '_', '=', '-', '/' and '+'")
		}
	}
	if len(s.UserID(local)) > maxUserIDLength {
		return "", apierr.InvalidUsername("User ID would be longer than 255 bytes")
	}
	return local, nil
}

func localpartChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '.', '_', '=', '-', '/', '+':
		return true
	}
	return false
}

// loginLocalpart resolves the "user" of an m.id.user identifier: a full user
// ID of this server or a bare localpart. Case is folded because every local
// account was created lower-case. ok is false for another server's ID or a
// malformed value; the caller answers exactly as for a wrong password.
func (s *Service) loginLocalpart(user string) (string, bool) {
	if strings.HasPrefix(user, "@") {
		local, ok := s.LocalpartOf(user)
		if !ok {
			return "", false
		}
		user = local
	}
	local, err := s.normalizeUsername(user)
	return local, err == nil
}
