package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"myelin/internal/apierr"
	"myelin/storage"
)

// MembershipRequest changes a membership.
type MembershipRequest struct {
	// RoomID is the room; Join and Knock also accept a room alias.
	RoomID string
	Sender string
	// Target is the user acted on by Invite, Kick, Ban and Unban.
	Target string
	Reason string
	// Profile is carried in the member event: the sender's for Join and
	// Knock, the target's for Invite.
	Profile  Profile
	IsDirect bool // Invite: this is a direct chat
}

// MembershipResult is the room (resolved from an alias) and the new
// membership event. EventID is the existing event when nothing changed.
type MembershipResult struct {
	RoomID  string
	EventID string
}

// Join joins the sender to a room (by ID or local alias). Restricted rooms
// admit members of an allowed room, authorised by a local member who may
// invite. Joining again with the same profile is a no-op.
func (s *Service) Join(ctx context.Context, req MembershipRequest) (MembershipResult, error) {
	return s.selfMembership(ctx, req, spec.Join)
}

// Knock asks to join a room whose join rule is knock or knock_restricted.
func (s *Service) Knock(ctx context.Context, req MembershipRequest) (MembershipResult, error) {
	return s.selfMembership(ctx, req, spec.Knock)
}

// Leave leaves a room, rejects an invite or withdraws a knock.
func (s *Service) Leave(ctx context.Context, req MembershipRequest) (MembershipResult, error) {
	return s.selfMembership(ctx, req, spec.Leave)
}

// Invite invites Target.
func (s *Service) Invite(ctx context.Context, req MembershipRequest) (MembershipResult, error) {
	return s.otherMembership(ctx, req, spec.Invite)
}

// Kick removes Target (joined, invited or knocking) from the room.
func (s *Service) Kick(ctx context.Context, req MembershipRequest) (MembershipResult, error) {
	return s.otherMembership(ctx, req, "kick")
}

// Ban bans Target.
func (s *Service) Ban(ctx context.Context, req MembershipRequest) (MembershipResult, error) {
	return s.otherMembership(ctx, req, spec.Ban)
}

// Unban lifts Target's ban (their membership becomes leave).
func (s *Service) Unban(ctx context.Context, req MembershipRequest) (MembershipResult, error) {
	return s.otherMembership(ctx, req, "unban")
}

// resolveRoom turns a room ID or local alias into a room ID.
func (s *Service) resolveRoom(ctx context.Context, idOrAlias string) (string, error) {
	if strings.HasPrefix(idOrAlias, "#") {
		if err := checkAlias(idOrAlias); err != nil {
			return "", err
		}
		a, err := s.store.AliasByName(ctx, idOrAlias)
		if errors.Is(err, storage.ErrNotFound) {
			return "", notFound("room alias")
		}
		if err != nil {
			return "", err
		}
		return a.RoomID, nil
	}
	if _, err := spec.NewRoomID(idOrAlias); err != nil {
		return "", apierr.InvalidParam("invalid room ID")
	}
	return idOrAlias, nil
}

func (s *Service) selfMembership(ctx context.Context, req MembershipRequest, membership string) (MembershipResult, error) {
	if err := checkUserID(req.Sender); err != nil {
		return MembershipResult{}, err
	}
	roomID, err := s.resolveRoom(ctx, req.RoomID)
	if err != nil {
		return MembershipResult{}, err
	}
	ids, err := s.do(ctx, roomID, func(ctx context.Context, t *stateTxn) (outcome, error) {
		if t.base == nil {
			return outcome{}, notFound("room")
		}
		cur, curContent, err := membershipOf(t, req.Sender)
		if err != nil {
			return outcome{}, err
		}
		content := memberContent(membership, req.Profile, req.Reason, false)
		if membership == spec.Join {
			if cur == spec.Join && curContent.DisplayName == req.Profile.DisplayName && curContent.AvatarURL == req.Profile.AvatarURL && req.Reason == "" {
				ev, _ := t.Member(spec.SenderID(req.Sender))
				return outcome{eventIDs: []string{ev.EventID()}}, nil
			}
			jr, err := joinRuleOf(t)
			if err != nil {
				return outcome{}, err
			}
			if (jr.JoinRule == spec.Restricted || jr.JoinRule == spec.KnockRestricted) && cur != spec.Join && cur != spec.Invite {
				via, err := s.restrictedAuthoriser(ctx, t, req.Sender, jr)
				if err != nil {
					return outcome{}, err
				}
				content["join_authorised_via_users_server"] = via
			}
		}
		return buildMember(t, req.Sender, req.Sender, content)
	})
	if err != nil {
		return MembershipResult{}, err
	}
	return MembershipResult{RoomID: roomID, EventID: ids[0]}, nil
}

func (s *Service) otherMembership(ctx context.Context, req MembershipRequest, action string) (MembershipResult, error) {
	if err := checkUserID(req.Sender); err != nil {
		return MembershipResult{}, err
	}
	if err := checkUserID(req.Target); err != nil {
		return MembershipResult{}, err
	}
	if _, err := spec.NewRoomID(req.RoomID); err != nil {
		return MembershipResult{}, apierr.InvalidParam("invalid room ID")
	}
	if action == spec.Invite && domainOf(req.Target) != s.cfg.ServerName {
		return MembershipResult{}, apierr.Forbidden("inviting users on other servers needs federation, which this server does not offer yet")
	}
	ids, err := s.do(ctx, req.RoomID, func(ctx context.Context, t *stateTxn) (outcome, error) {
		if t.base == nil {
			return outcome{}, notFound("room")
		}
		target, _, err := membershipOf(t, req.Target)
		if err != nil {
			return outcome{}, err
		}
		var content map[string]any
		switch action {
		case spec.Invite:
			content = memberContent(spec.Invite, req.Profile, req.Reason, req.IsDirect)
		case "kick":
			if target != spec.Join && target != spec.Invite && target != spec.Knock {
				return outcome{}, apierr.Forbidden("the user is not in the room")
			}
			content = memberContent(spec.Leave, Profile{}, req.Reason, false)
		case spec.Ban:
			content = memberContent(spec.Ban, Profile{}, req.Reason, false)
		case "unban":
			if target != spec.Ban {
				return outcome{}, apierr.Forbidden("the user is not banned")
			}
			content = memberContent(spec.Leave, Profile{}, req.Reason, false)
		}
		return buildMember(t, req.Sender, req.Target, content)
	})
	if err != nil {
		return MembershipResult{}, err
	}
	return MembershipResult{RoomID: req.RoomID, EventID: ids[0]}, nil
}

func buildMember(t *stateTxn, sender, target string, content map[string]any) (outcome, error) {
	raw, err := json.Marshal(content)
	if err != nil {
		return outcome{}, err
	}
	ev, err := t.build(proto{sender: sender, typ: spec.MRoomMember, stateKey: &target, content: raw}, &builtEvent{})
	if err != nil {
		return outcome{}, err
	}
	return outcome{eventIDs: []string{ev.EventID()}}, nil
}

func joinRuleOf(st authState) (gmsl.JoinRuleContent, error) {
	c := gmsl.JoinRuleContent{JoinRule: spec.Invite}
	ev, err := st.JoinRules()
	if err != nil || ev == nil {
		return c, err
	}
	if err := json.Unmarshal(ev.Content(), &c); err != nil {
		return c, apierr.Forbidden("the room's join rules are unreadable")
	}
	return c, nil
}

// restrictedAuthoriser checks a restricted join rule's allow list for the
// user and names a local member who may invite to authorise the join.
func (s *Service) restrictedAuthoriser(ctx context.Context, t *stateTxn, userID string, jr gmsl.JoinRuleContent) (string, error) {
	allowed := false
	for _, a := range jr.Allow {
		if a.Type != "m.room_membership" || a.RoomID == "" {
			continue
		}
		row, _, err := s.store.RoomByID(ctx, a.RoomID)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", err
		}
		m, err := s.store.Membership(ctx, row.NID, userID)
		if err == nil && m.Membership == spec.Join {
			allowed = true
			break
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
	}
	if !allowed {
		return "", apierr.Forbidden("joining needs an invite or membership of one of the rooms the join rule allows")
	}
	l, err := loadLevels(t)
	if err != nil {
		return "", err
	}
	joined, err := s.store.MembersOf(ctx, t.nid, spec.Join)
	if err != nil {
		return "", err
	}
	best, bestLevel := "", int64(0)
	for _, m := range joined {
		if domainOf(m.UserID) != s.cfg.ServerName {
			continue
		}
		lvl := l.user(m.UserID)
		if lvl >= l.content.Invite && (best == "" || lvl > bestLevel) {
			best, bestLevel = m.UserID, lvl
		}
	}
	if best == "" {
		return "", apierr.Forbidden("no member of this server can authorise the join")
	}
	return best, nil
}

// Forget hides a room the user has left from their room lists. M_UNKNOWN
// (400) while they are still joined, invited or knocking; M_NOT_FOUND when
// they were never in it.
func (s *Service) Forget(ctx context.Context, roomID, userID string) error {
	row, _, err := s.store.RoomByID(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return notFound("room")
	}
	if err != nil {
		return err
	}
	m, err := s.store.Membership(ctx, row.NID, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return notFound("room")
	}
	if err != nil {
		return err
	}
	if slices.Contains([]string{spec.Join, spec.Invite, spec.Knock}, m.Membership) {
		return apierr.Unknown("the user has not left the room")
	}
	if err := s.store.SetForgotten(ctx, row.NID, userID); err != nil {
		return err
	}
	s.members.changed(0)
	return nil
}

// Memberships is the clock of membership changes (see MembershipClock).
func (s *Service) Memberships() *MembershipClock { return &s.members }
