package account

import (
	"context"
)

// The two hooks below let the end-to-end encryption component (package
// e2ee, which account may not import) build on accounts: it re-proves the
// user's identity before cross-signing keys are replaced, and it learns
// when devices disappear so other users' clients hear about it at once.

// Reauthenticate runs user-interactive auth (m.login.password, bound to
// op and to the caller) for an operation another component performs, such
// as uploading cross-signing keys. It returns the completed session's ID,
// which that operation's transaction must consume (storage does so when
// handed the ID), so one authentication authorises one operation. An
// *AuthRequired error is the 401 to send back.
func (s *Service) Reauthenticate(ctx context.Context, c *Caller, op string, auth *AuthData) (string, error) {
	res, err := s.interactiveAuth(ctx, uiaRequest{op: op, caller: c, flows: passwordFlows, auth: auth})
	if err != nil {
		return "", err
	}
	return res.session, nil
}

// WithDevicesRemoved registers fn, called with the localpart after devices
// of that user were deleted (logout, logout/all, device deletion, password
// change with logout, deactivation) and the deletion committed. The
// deletion itself drops the devices' keys in the same transaction; fn only
// tells long-polling clients, so it must not block.
func WithDevicesRemoved(fn func(localpart string)) Option {
	return func(s *Service) { s.devicesRemoved = fn }
}

func (s *Service) notifyDevicesRemoved(localpart string) {
	if s.devicesRemoved != nil {
		s.devicesRemoved(localpart)
	}
}
