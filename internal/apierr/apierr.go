// Package apierr owns the Matrix standard error type: an errcode, an HTTP
// status and a human-readable message that carries no user data. Domain
// packages return these (possibly wrapped); the HTTP edge renders them once.
package apierr

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error is a Matrix API error as the spec's "Standard error response" defines
// it. Extra holds additional top-level JSON fields (e.g. soft_logout, flows).
type Error struct {
	Status     int
	Code       string
	Msg        string
	Extra      map[string]any
	RetryAfter time.Duration // when > 0 the edge sets Retry-After and retry_after_ms
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Msg) }

// New builds an error with the given status, errcode and message.
func New(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Msg: msg}
}

// With returns a copy of e carrying one more top-level JSON field.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return &c
}

// As finds an *Error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// Constructors for the codes the spec names. Messages are fixed strings or
// formatted from server-side facts only: never a body, token, phone or email.

func Unrecognized(msg string) *Error { return New(http.StatusNotFound, "M_UNRECOGNIZED", msg) }
func MethodNotAllowed() *Error {
	return New(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "Unrecognized request method")
}
func NotJSON(msg string) *Error   { return New(http.StatusBadRequest, "M_NOT_JSON", msg) }
func BadJSON(msg string) *Error   { return New(http.StatusBadRequest, "M_BAD_JSON", msg) }
func TooLarge(msg string) *Error  { return New(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", msg) }
func NotFound(msg string) *Error  { return New(http.StatusNotFound, "M_NOT_FOUND", msg) }
func Forbidden(msg string) *Error { return New(http.StatusForbidden, "M_FORBIDDEN", msg) }
func MissingToken() *Error {
	return New(http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token")
}

// UnknownToken is the 401 for an unrecognised, expired or revoked token.
// soft reports whether the client may refresh instead of logging in again.
func UnknownToken(soft bool) *Error {
	return New(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "Unrecognised access token").With("soft_logout", soft)
}
func MissingParam(msg string) *Error { return New(http.StatusBadRequest, "M_MISSING_PARAM", msg) }
func InvalidParam(msg string) *Error { return New(http.StatusBadRequest, "M_INVALID_PARAM", msg) }
func InvalidUsername(msg string) *Error {
	return New(http.StatusBadRequest, "M_INVALID_USERNAME", msg)
}
func UserInUse() *Error {
	return New(http.StatusBadRequest, "M_USER_IN_USE", "User ID already taken")
}
func UserDeactivated() *Error {
	return New(http.StatusForbidden, "M_USER_DEACTIVATED", "This account has been deactivated")
}
func WeakPassword(msg string) *Error { return New(http.StatusBadRequest, "M_WEAK_PASSWORD", msg) }
func Exclusive(msg string) *Error    { return New(http.StatusBadRequest, "M_EXCLUSIVE", msg) }
func Unknown(msg string) *Error      { return New(http.StatusBadRequest, "M_UNKNOWN", msg) }

// LimitExceeded is the 429 for a rate limit; retry is when the client may try again.
func LimitExceeded(retry time.Duration) *Error {
	e := New(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", "Too many requests")
	e.RetryAfter = retry
	return e
}

// Internal is the one 500: the edge logs the wrapped cause, the client sees only this.
func Internal() *Error {
	return New(http.StatusInternalServerError, "M_UNKNOWN", "Internal server error")
}
