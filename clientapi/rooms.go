package clientapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/internal/ratelimit"
	"myelin/roomserver"
)

// The room endpoints (rooms*.go, directory*.go) are thin: they authenticate,
// parse and validate the request's shape and IDs, apply the per-user rate
// limits, and call the roomserver, which owns every rule about rooms
// (authorisation, history visibility, idempotency). Each request is one
// roomserver call, so it happens entirely or not at all.

// roomsAPI serves the room endpoints.
type roomsAPI struct {
	*api
	rooms *roomserver.Service

	sendLimit   *ratelimit.Keyed // events sent: messages, state, redactions
	joinLimit   *ratelimit.Keyed // joins, knocks, room creations
	inviteLimit *ratelimit.Keyed // invites, createRoom's included
}

// registerRoomRoutes adds the room, directory and space endpoints. Without
// a roomserver they are not served (404 M_UNRECOGNIZED).
func (a *api) registerRoomRoutes(r *httpapi.Routes, rooms *roomserver.Service, v1, v3 string) {
	if rooms == nil {
		return
	}
	rl := a.cfg.RateLimits
	ra := &roomsAPI{
		api: a, rooms: rooms,
		sendLimit:   ratelimit.New(rl.Enabled, rl.MessagePerUser.PerSecond, rl.MessagePerUser.Burst, time.Now),
		joinLimit:   ratelimit.New(rl.Enabled, rl.JoinPerUser.PerSecond, rl.JoinPerUser.Burst, time.Now),
		inviteLimit: ratelimit.New(rl.Enabled, rl.InvitePerUser.PerSecond, rl.InvitePerUser.Burst, time.Now),
	}
	handle := r.Handle
	const room = "/rooms/{roomId}"
	// The most requested route first (see newRouter).
	handle(http.MethodPut, v3+room+"/send/{eventType}/{txnId}", a.authed(ra.send))
	handle(http.MethodPost, v3+"/createRoom", a.authed(ra.createRoom))
	handle(http.MethodPost, v3+room+"/upgrade", a.authed(ra.upgrade))
	handle(http.MethodPost, v3+"/user_directory/search", a.authed(ra.searchUserDirectory))

	// Membership (rooms_membership.go).
	handle(http.MethodPost, v3+"/join/{roomIdOrAlias}", a.authed(ra.joinByIDOrAlias))
	handle(http.MethodPost, v3+room+"/join", a.authed(ra.joinByID))
	handle(http.MethodPost, v3+"/knock/{roomIdOrAlias}", a.authed(ra.knock))
	handle(http.MethodPost, v3+room+"/leave", a.authed(ra.leave))
	handle(http.MethodPost, v3+room+"/forget", a.authed(ra.forget))
	handle(http.MethodPost, v3+room+"/invite", a.authed(ra.invite))
	handle(http.MethodPost, v3+room+"/kick", a.authed(ra.kick))
	handle(http.MethodPost, v3+room+"/ban", a.authed(ra.ban))
	handle(http.MethodPost, v3+room+"/unban", a.authed(ra.unban))
	handle(http.MethodGet, v3+"/joined_rooms", a.authed(ra.joinedRooms))
	handle(http.MethodGet, v3+room+"/joined_members", a.authed(ra.joinedMembers))
	handle(http.MethodGet, v3+room+"/members", a.authed(ra.members))

	// Events and state (rooms_events.go). The state key may be empty, with
	// or without the trailing slash; "[^/]*" lets the variable match "".
	handle(http.MethodGet, v3+room+"/state", a.authed(ra.state))
	handle(http.MethodGet, v3+room+"/state/{eventType}", a.authed(ra.stateEvent))
	handle(http.MethodGet, v3+room+"/state/{eventType}/{stateKey:[^/]*}", a.authed(ra.stateEvent))
	handle(http.MethodPut, v3+room+"/state/{eventType}", a.authed(ra.putState))
	handle(http.MethodPut, v3+room+"/state/{eventType}/{stateKey:[^/]*}", a.authed(ra.putState))
	handle(http.MethodPut, v3+room+"/redact/{eventId}/{txnId}", a.authed(ra.redact))
	handle(http.MethodGet, v3+room+"/event/{eventId}", a.authed(ra.event))

	// Spaces (rooms_hierarchy.go).
	handle(http.MethodGet, v1+room+"/hierarchy", a.authed(ra.hierarchy))

	// Aliases and the published room directory (directory.go).
	handle(http.MethodPut, v3+"/directory/room/{roomAlias}", a.authed(ra.putAlias))
	handle(http.MethodGet, v3+"/directory/room/{roomAlias}", a.handle(ra.getAlias))
	handle(http.MethodDelete, v3+"/directory/room/{roomAlias}", a.authed(ra.deleteAlias))
	handle(http.MethodGet, v3+room+"/aliases", a.authed(ra.roomAliases))
	handle(http.MethodGet, v3+"/directory/list/room/{roomId}", a.handle(ra.getVisibility))
	handle(http.MethodPut, v3+"/directory/list/room/{roomId}", a.authed(ra.putVisibility))
	handle(http.MethodGet, v3+"/publicRooms", a.handle(ra.publicRoomsGet))
	handle(http.MethodPost, v3+"/publicRooms", a.authed(ra.publicRoomsPost))
}

// maxIDBytes is the spec's limit on IDs, event types and state keys.
const maxIDBytes = 255

// validSigilID checks the grammar every room and event ID shares
// (appendices: "Room IDs", "Event IDs"): the sigil, then at least one
// character, valid UTF-8 without NUL, 255 bytes in all; when a domain is
// present (room versions before 12), neither side of the colon is empty.
func validSigilID(id string, sigil byte) bool {
	if len(id) < 2 || len(id) > maxIDBytes || id[0] != sigil || !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
		return false
	}
	if local, domain, ok := strings.Cut(id[1:], ":"); ok && (local == "" || domain == "") {
		return false
	}
	return true
}

// roomIDVar is the {roomId} path variable, which must be a room ID.
func roomIDVar(r *http.Request) (string, error) {
	id, err := httpapi.Var(r, "roomId")
	if err != nil {
		return "", err
	}
	if !validSigilID(id, '!') {
		return "", apierr.InvalidParam("Invalid room ID")
	}
	return id, nil
}

// eventIDVar is the {eventId} path variable, which must be an event ID.
func eventIDVar(r *http.Request) (string, error) {
	id, err := httpapi.Var(r, "eventId")
	if err != nil {
		return "", err
	}
	if !validSigilID(id, '$') {
		return "", apierr.InvalidParam("Invalid event ID")
	}
	return id, nil
}

// txnIDVar is the {txnId} path variable. NOTSPEC: the spec sets no limit;
// transaction IDs are stored and indexed, so they are held to the 255 bytes
// of every other identifier (clients use short random strings).
func txnIDVar(r *http.Request) (string, error) {
	id, err := httpapi.Var(r, "txnId")
	if err != nil {
		return "", err
	}
	if id == "" || len(id) > maxIDBytes || !utf8.ValidString(id) {
		return "", apierr.InvalidParam("Transaction IDs must be 1 to 255 bytes of UTF-8")
	}
	return id, nil
}

// readContent reads an event content body: one JSON object, raw, so the
// roomserver can apply the canonical JSON rules (no floats, integers within
// ±(2^53−1)) and the 65,536-byte event limit to exactly what was sent.
func readContent(r *http.Request) (json.RawMessage, error) {
	body, err := httpapi.ReadBody(r, httpapi.DefaultMaxBody)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || !json.Valid(trimmed) {
		return nil, apierr.NotJSON("Content not JSON")
	}
	if trimmed[0] != '{' {
		return nil, apierr.BadJSON("Event content must be a JSON object")
	}
	return json.RawMessage(trimmed), nil
}

// isLocal reports whether a user ID is on this server.
func (ra *roomsAPI) isLocal(userID string) bool {
	_, ok := ra.accounts.LocalpartOf(userID)
	return ok
}

// inviteeProfile is the profile an invite event carries. Local invitees
// must exist: an invite to a mistyped or deactivated account is refused
// rather than left pending forever. Remote invitees are the roomserver's
// call (it refuses them until federation exists).
func (ra *roomsAPI) inviteeProfile(ctx context.Context, userID string) (roomserver.Profile, error) {
	if !ra.isLocal(userID) {
		return roomserver.Profile{}, nil
	}
	p, err := ra.profileOf(ctx, userID)
	if e, ok := apierr.As(err); ok && e.Code == "M_NOT_FOUND" {
		return p, apierr.NotFound("The invited user does not exist")
	}
	return p, err
}

// notInRoom turns the roomserver's "unknown room" into the 403 the spec
// gives endpoints that only know "you are not in this room" (invite, kick,
// ban, unban, leave): from outside, an unknown room and a room one is not
// in look the same.
func notInRoom(err error) error {
	if e, ok := apierr.As(err); ok && e.Code == "M_NOT_FOUND" {
		return apierr.Forbidden("You are not in this room")
	}
	return err
}

// createRoomBody is POST /createRoom's request.
type createRoomBody struct {
	Visibility                string             `json:"visibility"`
	RoomAliasName             string             `json:"room_alias_name"`
	Name                      *string            `json:"name"`
	Topic                     *string            `json:"topic"`
	Invite                    []string           `json:"invite"`
	Invite3PID                []json.RawMessage  `json:"invite_3pid"`
	RoomVersion               string             `json:"room_version"`
	CreationContent           json.RawMessage    `json:"creation_content"`
	InitialState              []initialStateBody `json:"initial_state"`
	Preset                    string             `json:"preset"`
	IsDirect                  bool               `json:"is_direct"`
	PowerLevelContentOverride json.RawMessage    `json:"power_level_content_override"`
}

type initialStateBody struct {
	Type     *string         `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

func (ra *roomsAPI) createRoom(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	var b createRoomBody
	if err := decode(r, &b); err != nil {
		return err
	}
	if len(b.Invite3PID) > 0 {
		// Third-party invites need an identity server, which this server
		// does not talk to; refusing is better than dropping them.
		return apierr.InvalidParam("invite_3pid is not supported by this server")
	}
	req := roomserver.CreateRoomRequest{
		Creator: c.UserID, Visibility: b.Visibility, RoomAliasName: b.RoomAliasName, Name: b.Name, Topic: b.Topic,
		Invite: b.Invite, Preset: b.Preset, IsDirect: b.IsDirect, RoomVersion: b.RoomVersion,
		CreationContent: b.CreationContent, PowerLevelContentOverride: b.PowerLevelContentOverride,
		InviteProfiles: map[string]roomserver.Profile{},
	}
	for _, s := range b.InitialState {
		if s.Type == nil {
			return apierr.BadJSON("initial_state events need a type")
		}
		if len(s.Content) == 0 || s.Content[0] != '{' {
			return apierr.BadJSON("initial_state events need a content object")
		}
		req.InitialState = append(req.InitialState, roomserver.StateEvent{Type: *s.Type, StateKey: s.StateKey, Content: s.Content})
	}
	var err error
	if req.CreatorProfile, err = ra.profileOf(r.Context(), c.UserID); err != nil {
		return err
	}
	invites := 0 // distinct invitees, the units of the invite limit
	for _, u := range b.Invite {
		if _, seen := req.InviteProfiles[u]; seen || u == c.UserID {
			continue
		}
		invites++
		if !validUserIDShape(u) {
			return apierr.InvalidParam("Invalid user ID in invite")
		}
		if req.InviteProfiles[u], err = ra.inviteeProfile(r.Context(), u); err != nil {
			return err
		}
	}
	// Both limits are checked before either is charged, so a createRoom
	// refused for its invites does not spend a join.
	if err := ra.inviteLimit.Check(c.UserID, invites); err != nil {
		return err
	}
	if err := ra.joinLimit.Take(c.UserID, 1); err != nil {
		return err
	}
	if err := ra.inviteLimit.Take(c.UserID, invites); err != nil {
		return err
	}
	roomID, err := ra.rooms.CreateRoom(r.Context(), req)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"room_id": roomID})
	return nil
}

// validUserIDShape is the cheap check done before any lookup: "@", a
// localpart, ":", a domain, at most 255 bytes. The roomserver checks the
// full grammar.
func validUserIDShape(u string) bool {
	if len(u) > maxIDBytes || !strings.HasPrefix(u, "@") {
		return false
	}
	local, domain, ok := strings.Cut(u[1:], ":")
	return ok && local != "" && domain != ""
}

func (ra *roomsAPI) upgrade(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var b struct {
		NewVersion         *string  `json:"new_version"`
		AdditionalCreators []string `json:"additional_creators"`
	}
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.NewVersion == nil {
		return apierr.MissingParam("new_version is required")
	}
	profile, err := ra.profileOf(r.Context(), c.UserID)
	if err != nil {
		return err
	}
	if err := ra.joinLimit.Take(c.UserID, 1); err != nil {
		return err
	}
	newID, err := ra.rooms.Upgrade(r.Context(), roomserver.UpgradeRequest{
		RoomID: roomID, Sender: c.UserID, NewVersion: *b.NewVersion,
		AdditionalCreators: b.AdditionalCreators, SenderProfile: profile,
	})
	if err != nil {
		return notInRoom(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"replacement_room": newID})
	return nil
}
