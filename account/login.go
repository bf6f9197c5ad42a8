package account

import (
	"context"
	"errors"
	"time"

	"myelin/internal/apierr"
	"myelin/storage"
)

// LoginTypePassword is the only login type offered.
const LoginTypePassword = "m.login.password"

// LoginRequest is a decoded POST /login.
type LoginRequest struct {
	Type                     string
	Identifier               *Identifier
	User                     string // deprecated top-level "user"
	Medium, Address          string // deprecated top-level 3PID fields
	Password                 string
	DeviceID                 string
	InitialDeviceDisplayName *string
	RefreshToken             bool
	IP                       string
}

// Login authenticates with a password and issues a device and tokens.
func (s *Service) Login(ctx context.Context, req LoginRequest) (*Session, error) {
	if err := s.loginLimit.Take(req.IP, 1); err != nil {
		return nil, err
	}
	local, err := s.CheckLoginRequest(req)
	if err != nil {
		if ae, ok := apierr.As(err); ok && ae.Status == 403 {
			s.passwordMatches("", req.Password) // same cost as a real check
		}
		return nil, err
	}
	if err := s.failedLimit.Check(local, 1); err != nil {
		return nil, err
	}
	u, err := s.store.User(ctx, local)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, internal("load user", err)
	}
	if err == nil && u.Deactivated {
		s.passwordMatches("", req.Password)
		return nil, apierr.UserDeactivated()
	}
	if err := s.verifyPassword(ctx, local, req.Password); err != nil {
		return nil, err
	}
	dev, sess := s.mintDevice(req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken, req.IP)
	err = s.store.Login(ctx, local, dev)
	if errors.Is(err, storage.ErrNotFound) {
		// Deactivated between the password check and now.
		return nil, apierr.UserDeactivated()
	}
	if err != nil {
		return nil, internal("login", err)
	}
	sess.UserID = s.UserID(local)
	return &sess, nil
}

// CheckLoginRequest is the part of login that needs no database: the login
// type, the identifier, and the device ID. It returns the localpart to check
// the password of. A malformed or foreign user is 403 M_FORBIDDEN, exactly
// like a wrong password, so the answer reveals nothing.
func (s *Service) CheckLoginRequest(req LoginRequest) (string, error) {
	if req.Type != LoginTypePassword {
		return "", apierr.Unknown("Bad login type")
	}
	user := req.User
	if req.Identifier != nil {
		switch req.Identifier.Type {
		case "m.id.user":
			user = req.Identifier.User
		case "m.id.thirdparty", "m.id.phone":
			// No third-party identifiers are ever bound here; the spec
			// says an unknown 3PID is 403.
			return "", apierr.Forbidden("Unknown third-party identifier")
		default:
			return "", apierr.Unknown("Unknown identifier type")
		}
	} else if user == "" && (req.Medium != "" || req.Address != "") {
		return "", apierr.Forbidden("Unknown third-party identifier")
	}
	if user == "" {
		return "", apierr.MissingParam("Missing user identifier")
	}
	if req.DeviceID != "" && !validDeviceID(req.DeviceID) {
		return "", apierr.InvalidParam("Invalid device_id")
	}
	local, ok := s.loginLocalpart(user)
	if !ok {
		return "", apierr.Forbidden("Invalid username or password")
	}
	return local, nil
}

// seenInterval bounds how often a device's last-seen IP/time is written.
const seenInterval = 5 * time.Minute

// Authenticate resolves an access token. Unknown, revoked and deactivated
// users' tokens are M_UNKNOWN_TOKEN with soft_logout false; an expired token
// whose refresh token is still valid is M_UNKNOWN_TOKEN with soft_logout
// true (the client refreshes instead of logging in again).
func (s *Service) Authenticate(ctx context.Context, token, ip string) (*Caller, error) {
	return s.authenticate(ctx, token, ip, false)
}

// AuthenticateExpired is Authenticate that also accepts an expired access
// token; /logout and /logout/all use it, so a client holding only an expired
// token can still end its own session (that can only destroy, never grant).
func (s *Service) AuthenticateExpired(ctx context.Context, token, ip string) (*Caller, error) {
	return s.authenticate(ctx, token, ip, true)
}

func (s *Service) authenticate(ctx context.Context, token, ip string, allowExpired bool) (*Caller, error) {
	if token == "" {
		return nil, apierr.MissingToken()
	}
	hash := hashToken(token)
	ti, err := s.lookupToken(ctx, hash)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errUnknownToken
	}
	if err != nil {
		return nil, internal("load access token", err)
	}
	now := s.nowMS()
	if ti.ExpiresTS != 0 && now >= ti.ExpiresTS {
		if allowExpired {
			return &Caller{UserID: s.UserID(ti.Localpart), Localpart: ti.Localpart, DeviceID: ti.DeviceID, Admin: ti.Admin}, nil
		}
		return nil, apierr.UnknownToken(ti.RefreshHash != "")
	}
	if ti.ParentRefresh != "" {
		// First use of a refreshed pair: the client has it, so the refresh
		// token it replaced can go.
		if err := s.store.RetireParentRefresh(ctx, ti.RefreshHash); err != nil {
			return nil, internal("retire refresh token", err)
		}
	}
	if ip != "" && (ip != ti.LastSeenIP || now-ti.LastSeenTS >= seenInterval.Milliseconds()) {
		if err := s.store.TouchDevice(ctx, ti.Localpart, ti.DeviceID, ip, now); err != nil {
			return nil, internal("touch device", err)
		}
		s.tokens.touched(hash, ip, now)
	}
	return &Caller{UserID: s.UserID(ti.Localpart), Localpart: ti.Localpart, DeviceID: ti.DeviceID, Admin: ti.Admin}, nil
}

// lookupToken resolves a token hash from the cache or the database. Expiry
// is not decided here: the caller compares the (cached) ExpiresTS with the
// current time on every request.
func (s *Service) lookupToken(ctx context.Context, hash string) (storage.TokenInfo, error) {
	if ti, ok := s.tokens.get(hash); ok {
		return ti, nil
	}
	epoch := s.tokens.snapshot() // before the read: see tokenCache
	ti, err := s.store.AccessToken(ctx, hash)
	if err != nil {
		// Unknown tokens are not cached: a token minted a moment later
		// must work at once, and a negative entry would need its own
		// invalidation on every login.
		return ti, err
	}
	if ti.ParentRefresh == "" {
		// A pending parent means the first use must reach the database to
		// retire it; once retired the next lookup finds no parent and
		// caches.
		s.tokens.put(epoch, hash, ti)
	}
	return ti, nil
}

// Logout deletes the caller's device and its tokens.
func (s *Service) Logout(ctx context.Context, c *Caller) error {
	if err := s.store.DeleteDevices(ctx, c.Localpart, []string{c.DeviceID}, ""); err != nil {
		return internal("logout", err)
	}
	s.notifyDevicesRemoved(c.Localpart)
	return nil
}

// LogoutAll deletes every device of the caller and their tokens.
func (s *Service) LogoutAll(ctx context.Context, c *Caller) error {
	if err := s.store.DeleteDevicesExcept(ctx, c.Localpart, ""); err != nil {
		return internal("logout all", err)
	}
	s.notifyDevicesRemoved(c.Localpart)
	return nil
}

// Refresh exchanges a refresh token for a new access and refresh token.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Session, error) {
	if refreshToken == "" {
		return nil, apierr.MissingParam("Missing refresh_token")
	}
	access, accessHash := newToken(accessPrefix)
	refresh, refreshHash := newToken(refreshPrefix)
	t := storage.NewTokens{AccessHash: accessHash, RefreshHash: refreshHash}
	out := &Session{AccessToken: access, RefreshToken: refresh}
	if lt := s.cfg.Auth.AccessTokenLifetime; lt > 0 {
		t.ExpiresTS = s.now().Add(lt).UnixMilli()
		out.ExpiresInMS = lt.Milliseconds()
	}
	local, device, err := s.store.Refresh(ctx, hashToken(refreshToken), t, s.nowMS())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errUnknownToken
	}
	if err != nil {
		return nil, internal("refresh", err)
	}
	out.UserID, out.DeviceID = s.UserID(local), device
	return out, nil
}
