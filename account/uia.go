package account

import (
	"context"
	"errors"
	"slices"
	"time"

	"myelin/internal/apierr"
	"myelin/storage"
)

// User-interactive authentication (spec: client-server-api, "User-Interactive
// Authentication API").
//
// Sessions are stored in the database (table uia_sessions), not in memory:
// several myelin processes may serve one database and a client's next step
// can land on any of them; a restart does not break a flow in progress; and a
// registration token held by a session is counted consistently with the
// token's pending uses. A session lives uiaLifetime; expired ones are purged
// whenever a new session is created.

const uiaLifetime = 30 * time.Minute

// Stage names.
const (
	StageDummy             = "m.login.dummy"
	StagePassword          = "m.login.password"
	StageRegistrationToken = "m.login.registration_token"
)

// Operations a session may authorise; a session is bound to one.
const (
	opRegister      = "register"
	opDeleteDevices = "delete_devices"
	opPassword      = "password"
	opDeactivate    = "deactivate"
)

// AuthData is the "auth" object of a request to a UIA endpoint.
type AuthData struct {
	Type       string      `json:"type"`
	Session    string      `json:"session"`
	Identifier *Identifier `json:"identifier,omitempty"`
	User       string      `json:"user,omitempty"` // deprecated form of identifier
	Password   string      `json:"password,omitempty"`
	Token      string      `json:"token,omitempty"`
}

// Identifier is a user identifier object (spec: "Identifier types").
type Identifier struct {
	Type    string `json:"type"`
	User    string `json:"user,omitempty"`
	Medium  string `json:"medium,omitempty"`
	Address string `json:"address,omitempty"`
	Country string `json:"country,omitempty"`
	Phone   string `json:"phone,omitempty"`
}

// AuthRequired is the 401 answer of a UIA endpoint: the flows, the session,
// the stages completed so far, and optionally the error of a failed attempt.
// clientapi renders it as the spec's auth response body (no errcode unless
// Err is set).
type AuthRequired struct {
	Flows     [][]string
	Params    map[string]any
	Session   string
	Completed []string
	Err       *apierr.Error
}

func (e *AuthRequired) Error() string {
	if e.Err != nil {
		return "user-interactive auth required: " + e.Err.Code
	}
	return "user-interactive auth required"
}

// Body is the JSON body of the 401 response.
func (e *AuthRequired) Body() map[string]any {
	flows := make([]map[string]any, len(e.Flows))
	for i, f := range e.Flows {
		flows[i] = map[string]any{"stages": f}
	}
	params := e.Params
	if params == nil {
		params = map[string]any{}
	}
	b := map[string]any{"flows": flows, "params": params, "session": e.Session}
	if len(e.Completed) > 0 {
		b["completed"] = e.Completed
	}
	if e.Err != nil {
		b["errcode"] = e.Err.Code
		b["error"] = e.Err.Msg
	}
	return b
}

// uiaRequest describes one call to a UIA-protected operation.
type uiaRequest struct {
	op     string
	caller *Caller // nil when the request carried no access token
	flows  [][]string
	auth   *AuthData
}

// uiaResult is a completed authentication.
type uiaResult struct {
	session   string
	localpart string // the user proven by a password stage, or the caller
}

// interactiveAuth advances the request's session by the stage in auth and
// reports either completion or an *AuthRequired to send back.
func (s *Service) interactiveAuth(ctx context.Context, req uiaRequest) (uiaResult, error) {
	auth := req.auth
	callerLocal := ""
	if req.caller != nil {
		callerLocal = req.caller.Localpart
	}
	var sess storage.UIASession
	if auth == nil || auth.Session == "" {
		sess = storage.UIASession{
			ID: randomString(24), Kind: req.op, Localpart: callerLocal,
			CreatedTS: s.nowMS(), ExpiresTS: s.now().Add(uiaLifetime).UnixMilli(),
		}
		if err := s.store.CreateUIASession(ctx, sess, s.nowMS()); err != nil {
			return uiaResult{}, internal("create uia session", err)
		}
		if auth == nil || auth.Type == "" {
			return uiaResult{}, &AuthRequired{Flows: req.flows, Session: sess.ID}
		}
	} else {
		var err error
		sess, err = s.store.UIASession(ctx, auth.Session)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && (sess.ExpiresTS <= s.nowMS() || sess.Kind != req.op ||
			(callerLocal != "" && sess.Localpart != "" && sess.Localpart != callerLocal))) {
			return uiaResult{}, apierr.New(400, "M_UNKNOWN", "Unknown or expired user-interactive auth session")
		}
		if err != nil {
			return uiaResult{}, internal("load uia session", err)
		}
	}
	challenge := func(e *apierr.Error) error {
		return &AuthRequired{Flows: req.flows, Session: sess.ID, Completed: sess.Completed, Err: e}
	}

	if auth.Type != "" && !slices.Contains(sess.Completed, auth.Type) {
		if !nextStageAllowed(req.flows, sess.Completed, auth.Type) {
			return uiaResult{}, challenge(apierr.New(401, "M_FORBIDDEN", "Authentication type not offered at this point"))
		}
		completed := append(slices.Clone(sess.Completed), auth.Type)
		switch auth.Type {
		case StageDummy:
			if err := s.store.CompleteUIAStage(ctx, sess.ID, sess.Localpart, completed); err != nil {
				return uiaResult{}, sessionGone(err)
			}
		case StagePassword:
			local, err := s.checkPasswordStage(ctx, auth, callerLocal)
			if err != nil {
				if errors.Is(err, errNotCaller) {
					return uiaResult{}, apierr.Forbidden("The authenticated user must be the user making the request")
				}
				if ae, ok := apierr.As(err); ok && ae.Code != "M_LIMIT_EXCEEDED" {
					return uiaResult{}, challenge(ae)
				}
				return uiaResult{}, err
			}
			if sess.Localpart != "" && sess.Localpart != local {
				return uiaResult{}, challenge(apierr.New(401, "M_FORBIDDEN", "Invalid username or password"))
			}
			sess.Localpart = local
			if err := s.store.CompleteUIAStage(ctx, sess.ID, local, completed); err != nil {
				return uiaResult{}, sessionGone(err)
			}
		case StageRegistrationToken:
			if !validRegistrationToken(auth.Token) {
				return uiaResult{}, challenge(apierr.New(401, "M_FORBIDDEN", "Invalid registration token"))
			}
			err := s.store.HoldRegistrationToken(ctx, sess.ID, auth.Token, completed, s.nowMS())
			if errors.Is(err, storage.ErrNotFound) {
				return uiaResult{}, challenge(apierr.New(401, "M_FORBIDDEN", "Invalid registration token"))
			}
			if err != nil {
				return uiaResult{}, internal("hold registration token", err)
			}
		default:
			return uiaResult{}, challenge(apierr.New(401, "M_FORBIDDEN", "Authentication type not supported"))
		}
		sess.Completed = completed
	}
	for _, f := range req.flows {
		if flowDone(f, sess.Completed) {
			return uiaResult{session: sess.ID, localpart: sess.Localpart}, nil
		}
	}
	return uiaResult{}, challenge(nil)
}

func sessionGone(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return apierr.New(400, "M_UNKNOWN", "Unknown or expired user-interactive auth session")
	}
	return internal("update uia session", err)
}

// nextStageAllowed reports whether some flow starts with the completed
// stages (in order) and continues with stage: the spec requires stages to be
// completed in the order of a flow.
func nextStageAllowed(flows [][]string, completed []string, stage string) bool {
	for _, f := range flows {
		if len(f) > len(completed) && slices.Equal(f[:len(completed)], completed) && f[len(completed)] == stage {
			return true
		}
	}
	return false
}

func flowDone(flow, completed []string) bool {
	return len(completed) >= len(flow) && slices.Equal(completed[:len(flow)], flow)
}

// errNotCaller is checkPasswordStage's answer when an authenticated
// request identifies another user: the request is refused (403) rather than
// the stage offered again.
var errNotCaller = errors.New("uia: identified user is not the caller")

// checkPasswordStage verifies an m.login.password auth dict. When the
// request is authenticated the identified user must be the caller.
func (s *Service) checkPasswordStage(ctx context.Context, auth *AuthData, callerLocal string) (string, error) {
	user := auth.User
	if auth.Identifier != nil {
		if auth.Identifier.Type != "m.id.user" {
			return "", apierr.New(401, "M_FORBIDDEN", "Only m.id.user identifiers are supported")
		}
		user = auth.Identifier.User
	}
	if user == "" && callerLocal != "" {
		user = callerLocal
	}
	local, ok := s.loginLocalpart(user)
	if !ok {
		s.passwordMatches("", auth.Password)
		return "", apierr.New(401, "M_FORBIDDEN", "Invalid username or password")
	}
	if callerLocal != "" && local != callerLocal {
		// Not a failed attempt at the stage but a request this caller may
		// not make: authenticating as someone else never authorises an
		// operation on the caller's account. The other user's password is
		// not checked, so this answer says nothing about it.
		return "", errNotCaller
	}
	if err := s.verifyPassword(ctx, local, auth.Password); err != nil {
		return "", err
	}
	return local, nil
}

// verifyPassword checks localpart's password under the failed-attempt limit.
// Unknown and deactivated users fail exactly like a wrong password.
func (s *Service) verifyPassword(ctx context.Context, local, password string) error {
	if err := s.failedLimit.Check(local, 1); err != nil {
		return err
	}
	u, err := s.store.User(ctx, local)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return internal("load user", err)
	}
	if err != nil || u.Deactivated || !s.passwordMatches(u.PasswordHash, password) {
		if err == nil {
			s.failedLimit.Charge(local)
		}
		return apierr.New(403, "M_FORBIDDEN", "Invalid username or password")
	}
	return nil
}

// validRegistrationToken checks the spec's grammar for registration tokens:
// the opaque identifier grammar, at most 64 characters.
func validRegistrationToken(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
