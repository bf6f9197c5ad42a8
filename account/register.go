package account

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"myelin/internal/apierr"
	"myelin/storage"
)

// RegisterRequest is a decoded POST /register (kind=user).
type RegisterRequest struct {
	Username                 string
	Password                 string
	DeviceID                 string
	InitialDeviceDisplayName *string
	InhibitLogin             bool
	RefreshToken             bool
	Auth                     *AuthData
	IP                       string
}

// Session is the result of a successful registration or login. AccessToken,
// RefreshToken and DeviceID are empty when registration inhibited login.
type Session struct {
	UserID       string
	DeviceID     string
	AccessToken  string
	RefreshToken string
	ExpiresInMS  int64 // 0: the access token does not expire
}

// RegistrationFlows are the UIA flows /register offers: m.login.dummy when
// registration is open (plus the token flow, so invite tokens work and are
// counted there too), only m.login.registration_token when a token is
// required.
func (s *Service) RegistrationFlows() [][]string {
	if s.cfg.Registration.RequireToken {
		return [][]string{{StageRegistrationToken}}
	}
	return [][]string{{StageDummy}, {StageRegistrationToken}}
}

// Register runs one step of POST /register. Username and password problems
// are reported before user-interactive auth, as the spec requires; the
// account is created only once a flow is complete.
func (s *Service) Register(ctx context.Context, req RegisterRequest) (*Session, error) {
	if !s.cfg.Registration.Enabled {
		return nil, apierr.Forbidden("Registration is disabled")
	}
	if err := s.regLimit.Take(req.IP, 1); err != nil {
		return nil, err
	}
	local, err := s.CheckRegisterRequest(req)
	if err != nil {
		return nil, err
	}
	if local != "" {
		if err := s.checkAvailable(ctx, local); err != nil {
			return nil, err
		}
	}
	res, err := s.interactiveAuth(ctx, uiaRequest{op: opRegister, flows: s.RegistrationFlows(), auth: req.Auth})
	if err != nil {
		return nil, err
	}
	if req.Password == "" {
		return nil, apierr.MissingParam("Missing password")
	}
	generated := local == ""
	for attempt := 0; ; attempt++ {
		if generated {
			local = generatedLocalpart()
		}
		sess, err := s.createAccount(ctx, local, req.Password, false, nil, !req.InhibitLogin, req.DeviceID,
			req.InitialDeviceDisplayName, req.RefreshToken, req.IP, res.session)
		if errors.Is(err, storage.ErrConflict) && generated && attempt < 3 {
			continue
		}
		return sess, err
	}
}

// CheckRegisterRequest is the part of registration that needs no database:
// the username (mapped to a localpart, "" when none was asked for), the
// password policy when a password is given, and the device ID.
func (s *Service) CheckRegisterRequest(req RegisterRequest) (localpart string, err error) {
	if req.Username != "" {
		if localpart, err = s.normalizeUsername(req.Username); err != nil {
			return "", err
		}
	}
	if req.Password != "" {
		if err := s.checkNewPassword(req.Password); err != nil {
			return "", err
		}
	}
	if req.DeviceID != "" && !validDeviceID(req.DeviceID) {
		return "", apierr.InvalidParam("Invalid device_id")
	}
	return localpart, nil
}

// generatedLocalpart names an account registered without a username. It is
// not purely numeric (other servers reserve those) and random, so it reveals
// nothing about how many accounts exist.
func generatedLocalpart() string {
	return "u" + randomFrom("abcdefghijklmnopqrstuvwxyz0123456789", 12)
}

// createAccount creates the user and, if login, its first device and tokens,
// consuming uiaSession (if any), in one transaction.
func (s *Service) createAccount(ctx context.Context, local, password string, admin bool, displayName *string,
	login bool, deviceID string, deviceName *string, refresh bool, ip, uiaSession string) (*Session, error) {
	hash, err := s.hashPassword(password)
	if err != nil {
		return nil, internal("hash password", err)
	}
	name := local
	if displayName != nil && *displayName != "" {
		name = *displayName
	}
	nameJSON, err := json.Marshal(name)
	if err != nil {
		return nil, internal("encode displayname", err)
	}
	na := storage.NewAccount{
		Localpart: local, PasswordHash: hash, Admin: admin, CreatedTS: s.nowMS(),
		Profile:    map[string]json.RawMessage{"displayname": nameJSON},
		UIASession: uiaSession,
	}
	out := &Session{UserID: s.UserID(local)}
	if login {
		dev, sess := s.mintDevice(deviceID, deviceName, refresh, ip)
		na.Device = &dev
		out.DeviceID, out.AccessToken, out.RefreshToken, out.ExpiresInMS = sess.DeviceID, sess.AccessToken, sess.RefreshToken, sess.ExpiresInMS
	}
	err = s.store.CreateAccount(ctx, na)
	switch {
	case errors.Is(err, storage.ErrConflict):
		return nil, fmt.Errorf("%w%w", apierr.UserInUse(), storage.ErrConflict)
	case errors.Is(err, storage.ErrNotFound):
		return nil, apierr.New(400, "M_UNKNOWN", "Unknown or expired user-interactive auth session")
	case err != nil:
		return nil, internal("create account", err)
	}
	return out, nil
}

// mintDevice prepares a device (new or reused ID) with fresh tokens.
func (s *Service) mintDevice(deviceID string, name *string, refresh bool, ip string) (storage.NewDevice, Session) {
	if deviceID == "" {
		deviceID = newDeviceID()
	}
	access, accessHash := newToken(accessPrefix)
	d := storage.NewDevice{DeviceID: deviceID, DisplayName: name, IP: ip, TS: s.nowMS(),
		Tokens: storage.NewTokens{AccessHash: accessHash}}
	out := Session{DeviceID: deviceID, AccessToken: access}
	if refresh {
		out.RefreshToken, d.Tokens.RefreshHash = newToken(refreshPrefix)
		if lt := s.cfg.Auth.AccessTokenLifetime; lt > 0 {
			d.Tokens.ExpiresTS = s.now().Add(lt).UnixMilli()
			out.ExpiresInMS = lt.Milliseconds()
		}
	}
	return d, out
}

// validDeviceID accepts what clients send in practice: 1–255 bytes of UTF-8
// without control characters.
func validDeviceID(id string) bool {
	if id == "" || len(id) > 255 || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// checkAvailable returns M_USER_IN_USE if the localpart exists (deactivated
// accounts included: their IDs are never handed out again).
func (s *Service) checkAvailable(ctx context.Context, local string) error {
	_, err := s.store.User(ctx, local)
	switch {
	case err == nil:
		return apierr.UserInUse()
	case errors.Is(err, storage.ErrNotFound):
		return nil
	default:
		return internal("load user", err)
	}
}

// Available answers GET /register/available.
func (s *Service) Available(ctx context.Context, username string) error {
	if !s.cfg.Registration.Enabled {
		return apierr.Forbidden("Registration is disabled")
	}
	local, err := s.normalizeUsername(username)
	if err != nil {
		return err
	}
	return s.checkAvailable(ctx, local)
}

// RegistrationTokenValid answers GET /register/m.login.registration_token/validity.
func (s *Service) RegistrationTokenValid(ctx context.Context, token, ip string) (bool, error) {
	if !s.cfg.Registration.Enabled {
		return false, apierr.Forbidden("Registration is disabled")
	}
	if err := s.regLimit.Take(ip, 1); err != nil {
		return false, err
	}
	if !validRegistrationToken(token) {
		return false, nil
	}
	t, err := s.store.RegistrationToken(ctx, token)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, internal("load registration token", err)
	}
	if t.ExpiryTS != 0 && t.ExpiryTS <= s.nowMS() {
		return false, nil
	}
	if t.UsesAllowed != nil && t.Pending+t.Completed >= *t.UsesAllowed {
		return false, nil
	}
	return true, nil
}

// CreateUser creates an account without logging it in; the CLI's
// `myelin user create NAME [--admin]` calls it. name is a localpart (or a
// full user ID of this server); it follows the same rules as /register and
// fails with M_USER_IN_USE / M_INVALID_USERNAME / M_WEAK_PASSWORD as an
// *apierr.Error. It returns the new user ID.
func (s *Service) CreateUser(ctx context.Context, name, password string, admin bool) (string, error) {
	if local, ok := s.LocalpartOf(name); ok {
		name = local
	}
	local, err := s.normalizeUsername(name)
	if err != nil {
		return "", err
	}
	if err := s.checkNewPassword(password); err != nil {
		return "", err
	}
	sess, err := s.createAccount(ctx, local, password, admin, nil, false, "", nil, false, "", "")
	if err != nil {
		return "", err
	}
	return sess.UserID, nil
}

// CreateRegistrationToken stores a registration token for
// m.login.registration_token; the CLI calls it. token "" generates a random
// 16-character one. usesAllowed nil means unlimited; a zero expiry means it
// never expires. It returns the token.
func (s *Service) CreateRegistrationToken(ctx context.Context, token string, usesAllowed *int, expiry time.Time) (string, error) {
	if token == "" {
		token = randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 16)
	}
	if !validRegistrationToken(token) {
		return "", apierr.InvalidParam("Registration tokens are 1-64 characters of A-Z a-z 0-9 . _ ~ -")
	}
	if usesAllowed != nil && *usesAllowed < 0 {
		return "", apierr.InvalidParam("uses_allowed must not be negative")
	}
	rt := storage.RegistrationToken{Token: token, UsesAllowed: usesAllowed, CreatedTS: s.nowMS()}
	if !expiry.IsZero() {
		rt.ExpiryTS = expiry.UnixMilli()
	}
	err := s.store.CreateRegistrationToken(ctx, rt)
	if errors.Is(err, storage.ErrConflict) {
		return "", apierr.InvalidParam("Registration token already exists")
	}
	if err != nil {
		return "", internal("create registration token", err)
	}
	return token, nil
}

// Shared-secret registration (Synapse's /_synapse/admin/v1/register): the
// admin fetches a nonce, then posts the account with
// mac = hex(HMAC-SHA1(secret, nonce NUL username NUL password NUL
// "admin"|"notadmin" [NUL user_type])). Nonces are single-use (consumed
// before the MAC is checked, so a wrong guess burns it) and expire.

const (
	nonceLifetime = 60 * time.Second
	maxNonces     = 10_000
)

func (s *Service) sharedSecretEnabled() error {
	if s.cfg.Registration.SharedSecret == "" {
		return apierr.New(400, "M_UNKNOWN", "Shared secret registration is not enabled")
	}
	return nil
}

// SharedSecretNonce issues a nonce for shared-secret registration.
func (s *Service) SharedSecretNonce() (string, error) {
	if err := s.sharedSecretEnabled(); err != nil {
		return "", err
	}
	s.nonceMu.Lock()
	defer s.nonceMu.Unlock()
	now := s.now()
	if len(s.nonces) >= maxNonces {
		for n, exp := range s.nonces {
			if !now.Before(exp) {
				delete(s.nonces, n)
			}
		}
		if len(s.nonces) >= maxNonces {
			return "", apierr.LimitExceeded(nonceLifetime)
		}
	}
	nonce := randomString(32)
	s.nonces[nonce] = now.Add(nonceLifetime)
	return nonce, nil
}

// SharedSecretRequest is a decoded POST /_synapse/admin/v1/register.
type SharedSecretRequest struct {
	Nonce       string
	Username    string
	Password    string
	Displayname *string
	Admin       bool
	UserType    *string
	MAC         string
}

// SharedSecretRegister creates (and logs in) an account authorised by the
// shared secret.
func (s *Service) SharedSecretRegister(ctx context.Context, req SharedSecretRequest, ip string) (*Session, error) {
	if err := s.sharedSecretEnabled(); err != nil {
		return nil, err
	}
	if req.Nonce == "" || req.Username == "" || req.Password == "" || req.MAC == "" {
		return nil, apierr.MissingParam("nonce, username, password and mac are required")
	}
	s.nonceMu.Lock()
	exp, ok := s.nonces[req.Nonce]
	delete(s.nonces, req.Nonce)
	s.nonceMu.Unlock()
	if !ok || !s.now().Before(exp) {
		return nil, apierr.New(400, "M_UNKNOWN", "Unrecognised nonce")
	}
	mac := hmac.New(sha1.New, []byte(s.cfg.Registration.SharedSecret))
	mac.Write([]byte(req.Nonce))
	mac.Write([]byte{0})
	mac.Write([]byte(req.Username))
	mac.Write([]byte{0})
	mac.Write([]byte(req.Password))
	mac.Write([]byte{0})
	if req.Admin {
		mac.Write([]byte("admin"))
	} else {
		mac.Write([]byte("notadmin"))
	}
	if req.UserType != nil {
		mac.Write([]byte{0})
		mac.Write([]byte(*req.UserType))
	}
	want := mac.Sum(nil)
	got, err := hex.DecodeString(req.MAC)
	if err != nil || !hmac.Equal(got, want) {
		return nil, apierr.Forbidden("HMAC incorrect")
	}
	if req.UserType != nil {
		// NOTSPEC (Synapse extension): user types ("bot", "support") are
		// not modelled here; refusing beats creating a different account.
		return nil, apierr.InvalidParam("user_type is not supported")
	}
	local, err := s.normalizeUsername(req.Username)
	if err != nil {
		return nil, err
	}
	if err := s.checkNewPassword(req.Password); err != nil {
		return nil, err
	}
	return s.createAccount(ctx, local, req.Password, req.Admin, req.Displayname, true, "", nil, false, ip, "")
}
