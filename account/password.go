package account

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"myelin/internal/apierr"
)

// prehash condenses a password before bcrypt. bcrypt only looks at the first
// 72 bytes (Go's implementation refuses longer input), so without this a long
// passphrase would either be rejected or silently truncated. The base64 form
// also keeps NUL bytes away from bcrypt.
func prehash(password string) []byte {
	sum := sha256.Sum256([]byte(password))
	return []byte(base64.StdEncoding.EncodeToString(sum[:]))
}

func (s *Service) hashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword(prehash(password), s.cfg.Auth.PasswordHashCost)
	if err != nil {
		return "", fmt.Errorf("bcrypt: %w", err)
	}
	return string(h), nil
}

// passwordMatches reports whether password matches hash. An empty hash (no
// password, or a deactivated account) never matches, but the comparison
// still costs one bcrypt run so response timing does not reveal it.
func (s *Service) passwordMatches(hash, password string) bool {
	if hash == "" {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, prehash(password))
		return false
	}
	err := bcrypt.CompareHashAndPassword([]byte(hash), prehash(password))
	return err == nil
}

// maxPasswordBytes bounds what we hash; far above any real passphrase.
const maxPasswordBytes = 1024

// checkNewPassword applies the server's password policy.
func (s *Service) checkNewPassword(password string) error {
	if password == "" {
		return apierr.MissingParam("Missing password")
	}
	if !utf8.ValidString(password) {
		return apierr.BadJSON("Password must be valid UTF-8")
	}
	if len(password) > maxPasswordBytes {
		return apierr.InvalidParam("Password too long")
	}
	if utf8.RuneCountInString(password) < s.cfg.Auth.MinPasswordLength {
		return apierr.WeakPassword(fmt.Sprintf("Password must be at least %d characters", s.cfg.Auth.MinPasswordLength))
	}
	return nil
}
