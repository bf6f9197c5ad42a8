package roomserver

import (
	"context"
	"errors"
	"slices"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"myelin/internal/apierr"
	"myelin/storage"
)

// GetEvent returns one event of a room if userID may see it; M_NOT_FOUND
// otherwise (unknown and invisible look the same).
func (s *Service) GetEvent(ctx context.Context, roomID, eventID, userID string) (*Event, error) {
	se, err := s.store.EventByID(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound("event")
	}
	if err != nil {
		return nil, err
	}
	e, err := s.toEvent(ctx, se)
	if err != nil {
		return nil, err
	}
	if e.RoomID != roomID {
		return nil, notFound("event")
	}
	ok, err := s.CanSee(ctx, userID, e)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound("event")
	}
	return e, nil
}

// stateView decides which state of a room userID may read: the current
// state while joined (or when the room is world_readable), the state at
// their leave while they have left or been banned. M_FORBIDDEN otherwise.
// It returns the state group to read, 0 meaning the current state.
func (s *Service) stateView(ctx context.Context, roomID, userID string) (*Room, int64, error) {
	r, err := s.Room(ctx, roomID)
	if err != nil {
		if e, ok := apierr.As(err); ok && e.Code == "M_NOT_FOUND" {
			return nil, 0, apierr.Forbidden("you are not a member of this room")
		}
		return nil, 0, err
	}
	m, err := s.store.Membership(ctx, r.nid, userID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, 0, err
	}
	switch {
	case err == nil && m.Membership == spec.Join:
		return r, 0, nil
	case err == nil && (m.Membership == spec.Leave || m.Membership == spec.Ban):
		evs, err := s.store.EventsByNID(ctx, []int64{m.EventNID})
		if err != nil {
			return nil, 0, err
		}
		if len(evs) == 1 {
			return r, evs[0].StateGroup, nil
		}
	case r.HistoryVisibility == "world_readable":
		return r, 0, nil
	}
	return nil, 0, apierr.Forbidden("you are not a member of this room")
}

// StateFor is GET /rooms/{roomId}/state: the state userID may read.
func (s *Service) StateFor(ctx context.Context, roomID, userID string) ([]*Event, error) {
	r, group, err := s.stateView(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if group == 0 {
		return r.State(ctx)
	}
	return s.stateAtGroup(ctx, group)
}

// StateEventFor is GET /rooms/{roomId}/state/{type}/{stateKey}.
// M_NOT_FOUND if unset in the state userID may read.
func (s *Service) StateEventFor(ctx context.Context, roomID, userID, eventType, stateKey string) (*Event, error) {
	r, group, err := s.stateView(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if group == 0 {
		return r.StateEvent(ctx, eventType, stateKey)
	}
	nid, err := s.store.StateEntryAtGroup(ctx, group, eventType, stateKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound("state event")
	}
	if err != nil {
		return nil, err
	}
	stored, err := s.store.EventsByNID(ctx, []int64{nid})
	if err != nil {
		return nil, err
	}
	if len(stored) == 0 {
		return nil, notFound("state event")
	}
	return s.toEvent(ctx, stored[0])
}

func (s *Service) stateAtGroup(ctx context.Context, group int64, types ...string) ([]*Event, error) {
	entries, err := s.store.StateAtGroup(ctx, group)
	if err != nil {
		return nil, err
	}
	nids := make([]int64, 0, len(entries))
	for _, e := range entries {
		if len(types) == 0 || slices.Contains(types, e.Type) {
			nids = append(nids, e.EventNID)
		}
	}
	stored, err := s.store.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(stored, func(a, b storage.StoredEvent) int { return int(a.NID - b.NID) })
	return s.toEvents(ctx, stored)
}

// StateAt returns a room's state as of stream position pos (the state
// after the room's last event at or before pos), optionally only some
// types. It applies no access check: callers (sync) decide what a user may
// see. Nil when the room had no events by then.
func (s *Service) StateAt(ctx context.Context, roomID string, pos int64, types ...string) ([]*Event, error) {
	row, _, err := s.store.RoomByID(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound("room")
	}
	if err != nil {
		return nil, err
	}
	last, err := s.store.LastEventAtOrBefore(ctx, row.NID, pos)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.stateAtGroup(ctx, last.StateGroup, types...)
}

// MembersQuery filters GET /rooms/{roomId}/members.
type MembersQuery struct {
	// At is a stream position: members as of then. 0 means now.
	At            int64
	Membership    string // only this membership
	NotMembership string // exclude this membership
}

// MembersFor is GET /rooms/{roomId}/members: the m.room.member events of
// the state userID may read (or at q.At, never later than that state).
func (s *Service) MembersFor(ctx context.Context, roomID, userID string, q MembersQuery) ([]*Event, error) {
	r, group, err := s.stateView(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if q.At > 0 {
		last, err := s.store.LastEventAtOrBefore(ctx, r.nid, q.At)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		// A departed member sees no later than their departure.
		if group == 0 || last.StateGroup < group {
			group = last.StateGroup
		}
	}
	var evs []*Event
	if group == 0 {
		evs, err = r.State(ctx, "m.room.member")
	} else {
		evs, err = s.stateAtGroup(ctx, group, "m.room.member")
	}
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(evs, func(e *Event) bool {
		m := membershipFromContent(e.Content)
		return (q.Membership != "" && m != q.Membership) || (q.NotMembership != "" && m == q.NotMembership)
	}), nil
}

// JoinedMembers is GET /rooms/{roomId}/joined_members: userID must be
// joined (M_FORBIDDEN otherwise).
func (s *Service) JoinedMembers(ctx context.Context, roomID, userID string) (map[string]Profile, error) {
	r, err := s.Room(ctx, roomID)
	if err != nil {
		if e, ok := apierr.As(err); ok && e.Code == "M_NOT_FOUND" {
			return nil, apierr.Forbidden("you are not a member of this room")
		}
		return nil, err
	}
	if m, err := r.Membership(ctx, userID); err != nil {
		return nil, err
	} else if m != spec.Join {
		return nil, apierr.Forbidden("you are not a member of this room")
	}
	members, err := r.Members(ctx, spec.Join)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Profile, len(members))
	for _, m := range members {
		out[m.UserID] = Profile{DisplayName: m.DisplayName, AvatarURL: m.AvatarURL}
	}
	return out, nil
}

// JoinedRooms lists the rooms userID is joined to.
func (s *Service) JoinedRooms(ctx context.Context, userID string) ([]string, error) {
	rows, err := s.store.RoomsOfUser(ctx, userID, spec.Join)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(rows))
	for i, m := range rows {
		out[i] = m.RoomID
	}
	return out, nil
}

// UserRoom is a user's membership in one room.
type UserRoom struct {
	RoomID     string
	Membership string
	// Position is the stream position of the membership event.
	Position  int64
	Forgotten bool
}

// RoomsOfUser lists every room userID has a membership in (optionally
// only the given memberships), for /sync.
func (s *Service) RoomsOfUser(ctx context.Context, userID string, memberships ...string) ([]UserRoom, error) {
	rows, err := s.store.RoomsOfUser(ctx, userID, memberships...)
	if err != nil {
		return nil, err
	}
	out := make([]UserRoom, len(rows))
	for i, m := range rows {
		s.roomIDs.Store(m.RoomNID, m.RoomID)
		out[i] = UserRoom{RoomID: m.RoomID, Membership: m.Membership, Position: m.EventNID, Forgotten: m.Forgotten}
	}
	return out, nil
}

// RoomEvents returns up to limit events of a room with after < Position <=
// upTo, oldest first (newest first when backwards). No access check: use
// Visible.
func (s *Service) RoomEvents(ctx context.Context, roomID string, after, upTo int64, limit int, backwards bool) ([]*Event, error) {
	row, _, err := s.store.RoomByID(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound("room")
	}
	if err != nil {
		return nil, err
	}
	stored, err := s.store.RoomEvents(ctx, row.NID, after, upTo, limit, backwards)
	if err != nil {
		return nil, err
	}
	return s.toEvents(ctx, stored)
}
