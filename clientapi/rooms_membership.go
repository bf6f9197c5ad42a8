package clientapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/roomserver"
)

// membershipFunc is one of the roomserver's membership operations.
type membershipFunc func(context.Context, roomserver.MembershipRequest) (roomserver.MembershipResult, error)

// reasonBody is the optional body of join, knock and leave.
// third_party_signed (join) is accepted and ignored: it only matters for
// third-party invites, which this server never issues.
type reasonBody struct {
	Reason string `json:"reason"`
}

// targetBody is the body of invite, kick, ban and unban.
type targetBody struct {
	UserID *string `json:"user_id"`
	Reason string  `json:"reason"`
}

func (ra *roomsAPI) joinByID(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	return ra.joinOrKnock(w, r, c, roomID, ra.rooms.Join)
}

func (ra *roomsAPI) joinByIDOrAlias(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	target, err := roomIDOrAliasVar(r)
	if err != nil {
		return err
	}
	return ra.joinOrKnock(w, r, c, target, ra.rooms.Join)
}

func (ra *roomsAPI) knock(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	target, err := roomIDOrAliasVar(r)
	if err != nil {
		return err
	}
	return ra.joinOrKnock(w, r, c, target, ra.rooms.Knock)
}

// roomIDOrAliasVar is {roomIdOrAlias}: a room ID, or an alias the
// roomserver resolves (and validates).
func roomIDOrAliasVar(r *http.Request) (string, error) {
	v, err := httpapi.Var(r, "roomIdOrAlias")
	if err != nil {
		return "", err
	}
	switch {
	case strings.HasPrefix(v, "#"):
		if len(v) > maxIDBytes {
			return "", apierr.InvalidParam("Invalid room alias")
		}
		return v, nil
	case validSigilID(v, '!'):
		return v, nil
	}
	return "", apierr.InvalidParam("Expected a room ID or a room alias")
}

// joinOrKnock changes the caller's own membership, with their profile in
// the event, and answers with the room ID. An unknown room or alias is 404
// M_NOT_FOUND (knocking's spec says so; joining does the same, as other
// homeservers do, since there is nothing to be refused from).
func (ra *roomsAPI) joinOrKnock(w http.ResponseWriter, r *http.Request, c *account.Caller, target string, act membershipFunc) error {
	var b reasonBody
	if err := decodeOptional(r, &b); err != nil {
		return err
	}
	profile, err := ra.profileOf(r.Context(), c.UserID)
	if err != nil {
		return err
	}
	if err := ra.joinLimit.Take(c.UserID, 1); err != nil {
		return err
	}
	res, err := act(r.Context(), roomserver.MembershipRequest{RoomID: target, Sender: c.UserID, Reason: b.Reason, Profile: profile})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"room_id": res.RoomID})
	return nil
}

func (ra *roomsAPI) leave(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var b reasonBody
	if err := decodeOptional(r, &b); err != nil {
		return err
	}
	if _, err := ra.rooms.Leave(r.Context(), roomserver.MembershipRequest{RoomID: roomID, Sender: c.UserID, Reason: b.Reason}); err != nil {
		return notInRoom(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

// forget takes no body. 400 M_UNKNOWN while the caller is still in the
// room (spec); 404 M_NOT_FOUND for a room they never had a membership in.
func (ra *roomsAPI) forget(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	if err := ra.rooms.Forget(r.Context(), roomID, c.UserID); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (ra *roomsAPI) invite(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	return ra.actOnUser(w, r, c, ra.rooms.Invite, true)
}

func (ra *roomsAPI) kick(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	return ra.actOnUser(w, r, c, ra.rooms.Kick, false)
}

func (ra *roomsAPI) ban(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	return ra.actOnUser(w, r, c, ra.rooms.Ban, false)
}

func (ra *roomsAPI) unban(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	return ra.actOnUser(w, r, c, ra.rooms.Unban, false)
}

// actOnUser serves invite, kick, ban and unban: user_id is required (400
// M_MISSING_PARAM), must be a user ID (400 M_INVALID_PARAM); everything the
// auth rules refuse is 403 M_FORBIDDEN, an unknown room included.
func (ra *roomsAPI) actOnUser(w http.ResponseWriter, r *http.Request, c *account.Caller, act membershipFunc, isInvite bool) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var b targetBody
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.UserID == nil {
		return apierr.MissingParam("user_id is required")
	}
	if !validUserIDShape(*b.UserID) {
		return apierr.InvalidParam("Invalid user ID")
	}
	req := roomserver.MembershipRequest{RoomID: roomID, Sender: c.UserID, Target: *b.UserID, Reason: b.Reason}
	if isInvite {
		if req.Profile, err = ra.inviteeProfile(r.Context(), req.Target); err != nil {
			return err
		}
		if err := ra.inviteLimit.Take(c.UserID, 1); err != nil {
			return err
		}
	}
	if _, err := act(r.Context(), req); err != nil {
		return notInRoom(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, empty)
	return nil
}

func (ra *roomsAPI) joinedRooms(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	ids, err := ra.rooms.JoinedRooms(r.Context(), c.UserID)
	if err != nil {
		return err
	}
	if ids == nil {
		ids = []string{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string][]string{"joined_rooms": ids})
	return nil
}

// roomMemberJSON is the spec's RoomMember of /joined_members.
type roomMemberJSON struct {
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

func (ra *roomsAPI) joinedMembers(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	members, err := ra.rooms.JoinedMembers(r.Context(), roomID, c.UserID)
	if err != nil {
		return err
	}
	out := make(map[string]roomMemberJSON, len(members))
	for u, p := range members {
		out[u] = roomMemberJSON{DisplayName: p.DisplayName, AvatarURL: p.AvatarURL}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"joined": out})
	return nil
}

// memberships are the values /members filters on.
var memberships = []string{"join", "invite", "knock", "leave", "ban"}

// members serves GET /members. The spec combines membership and
// not_membership with "or": a member is listed when their membership is
// `membership` or is not `not_membership`; each alone is a plain filter.
func (ra *roomsAPI) members(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	only, not := q.Get("membership"), q.Get("not_membership")
	for _, v := range []string{only, not} {
		if v != "" && !slices.Contains(memberships, v) {
			return apierr.InvalidParam("membership filters must be one of join, invite, knock, leave, ban")
		}
	}
	var query roomserver.MembersQuery
	beforeAll := false // at a position before any event: no members
	if at := q.Get("at"); at != "" {
		pos, ok := streamPosition(at)
		if !ok {
			return apierr.InvalidParam("Invalid at token")
		}
		query.At, beforeAll = pos, pos == 0
	}
	evs, err := ra.rooms.MembersFor(r.Context(), roomID, c.UserID, query)
	if err != nil {
		return err
	}
	if beforeAll {
		evs = nil
	}
	kept := evs[:0]
	for _, e := range evs {
		m := membershipOf(e)
		switch {
		case only != "" && not != "":
			if m == only || m != not {
				kept = append(kept, e)
			}
		case only != "":
			if m == only {
				kept = append(kept, e)
			}
		case not != "":
			if m != not {
				kept = append(kept, e)
			}
		default:
			kept = append(kept, e)
		}
	}
	chunk, err := ra.rooms.ClientEvents(r.Context(), kept, roomserver.Viewer{UserID: c.UserID, DeviceID: c.DeviceID})
	if err != nil {
		return err
	}
	if chunk == nil {
		chunk = []roomserver.ClientEvent{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"chunk": chunk})
	return nil
}

// membershipOf reads an m.room.member event's membership.
func membershipOf(e *roomserver.Event) string {
	var c struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(e.Content, &c)
	return c.Membership
}

// streamPosition reads the stream position from an `at` token. Tokens are
// opaque to clients; /sync's begin with the room event stream position,
// optionally after a one-letter prefix ("s123_…"), and a bare position is
// accepted too.
func streamPosition(token string) (int64, bool) {
	t := token
	if len(t) > 0 && t[0] >= 'a' && t[0] <= 'z' {
		t = t[1:]
	}
	end := 0
	for end < len(t) && t[end] >= '0' && t[end] <= '9' {
		end++
	}
	if end == 0 || end > 18 || (end < len(t) && t[end] != '_' && t[end] != '.') {
		return 0, false
	}
	pos, err := strconv.ParseInt(t[:end], 10, 64)
	if err != nil {
		return 0, false
	}
	return pos, true
}
