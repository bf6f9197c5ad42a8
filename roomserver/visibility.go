package roomserver

import (
	"context"
	"encoding/json"
	"errors"

	"myelin/storage"
)

// History visibility ("Room History Visibility", client-server API): a
// user may see an event if, in the room state at that event,
//  1. history_visibility was world_readable, or
//  2. the user's membership was join, or
//  3. it was shared and the user joined at any point after the event, or
//  4. the user was invited and it was invited;
//
// and, for m.room.history_visibility events and the user's own membership
// events, if the rule allows it with the state before or after the event.
// "State at an event" is the state group stored with it (the state after
// it, which for a message event is the state it was sent in).

// Visible returns the events userID may see, in their order. Callers on
// every read path (/event, /messages, /context, /sync) filter with it.
func (s *Service) Visible(ctx context.Context, userID string, events []*Event) ([]*Event, error) {
	v := &visibility{svc: s, user: userID, hv: map[int64]string{}, member: map[int64]string{}, joins: map[int64][]int64{}}
	out := make([]*Event, 0, len(events))
	for _, e := range events {
		ok, err := v.canSee(ctx, e)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// CanSee reports whether userID may see one event.
func (s *Service) CanSee(ctx context.Context, userID string, e *Event) (bool, error) {
	vis, err := s.Visible(ctx, userID, []*Event{e})
	return len(vis) == 1, err
}

// visibility caches state lookups per state group for one batch.
type visibility struct {
	svc    *Service
	user   string
	hv     map[int64]string  // state group → history_visibility
	member map[int64]string  // state group → the user's membership
	joins  map[int64][]int64 // room NID → positions of the user's joins
}

func (v *visibility) canSee(ctx context.Context, e *Event) (bool, error) {
	hv, err := v.hvAt(ctx, e.stateGroup)
	if err != nil {
		return false, err
	}
	mem, err := v.memberAt(ctx, e.stateGroup)
	if err != nil {
		return false, err
	}
	switch {
	case e.Type == "m.room.history_visibility" && e.StateKey != nil && *e.StateKey == "":
		before := "shared"
		if e.Replaces != 0 {
			c, err := v.contentOf(ctx, e.Replaces)
			if err != nil {
				return false, err
			}
			before = hvFromContent(c)
		}
		if ok, err := v.allowed(ctx, e, before, mem); ok || err != nil {
			return ok, err
		}
		return v.allowed(ctx, e, hv, mem)
	case e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == v.user:
		before := "leave"
		if e.Replaces != 0 {
			c, err := v.contentOf(ctx, e.Replaces)
			if err != nil {
				return false, err
			}
			before = membershipFromContent(c)
		}
		if ok, err := v.allowed(ctx, e, hv, before); ok || err != nil {
			return ok, err
		}
		return v.allowed(ctx, e, hv, mem)
	}
	return v.allowed(ctx, e, hv, mem)
}

func (v *visibility) allowed(ctx context.Context, e *Event, hv, membership string) (bool, error) {
	switch {
	case hv == "world_readable":
		return true, nil
	case membership == "join":
		return true, nil
	case hv == "invited" && membership == "invite":
		return true, nil
	case hv == "shared":
		joins, ok := v.joins[e.roomNID]
		if !ok {
			var err error
			if joins, err = v.svc.store.MembershipPositions(ctx, e.roomNID, v.user, "join"); err != nil {
				return false, err
			}
			v.joins[e.roomNID] = joins
		}
		return len(joins) > 0 && joins[len(joins)-1] > e.Position, nil
	}
	return false, nil
}

func (v *visibility) hvAt(ctx context.Context, group int64) (string, error) {
	if hv, ok := v.hv[group]; ok {
		return hv, nil
	}
	hv := "shared"
	c, err := v.stateContent(ctx, group, "m.room.history_visibility", "")
	if err != nil {
		return "", err
	}
	if c != nil {
		hv = hvFromContent(c)
	}
	v.hv[group] = hv
	return hv, nil
}

func (v *visibility) memberAt(ctx context.Context, group int64) (string, error) {
	if m, ok := v.member[group]; ok {
		return m, nil
	}
	m := "leave"
	c, err := v.stateContent(ctx, group, "m.room.member", v.user)
	if err != nil {
		return "", err
	}
	if c != nil {
		m = membershipFromContent(c)
	}
	v.member[group] = m
	return m, nil
}

// stateContent is the content of (type, key) in a state group, nil if unset.
func (v *visibility) stateContent(ctx context.Context, group int64, typ, key string) (json.RawMessage, error) {
	nid, err := v.svc.store.StateEntryAtGroup(ctx, group, typ, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return v.contentOf(ctx, nid)
}

func (v *visibility) contentOf(ctx context.Context, nid int64) (json.RawMessage, error) {
	stored, err := v.svc.store.EventsByNID(ctx, []int64{nid})
	if err != nil {
		return nil, err
	}
	if len(stored) == 0 {
		return json.RawMessage(`{}`), nil
	}
	var ev struct {
		Content json.RawMessage `json:"content"`
	}
	_ = json.Unmarshal(stored[0].JSON, &ev)
	return ev.Content, nil
}

func hvFromContent(c json.RawMessage) string {
	var h struct {
		V string `json:"history_visibility"`
	}
	_ = json.Unmarshal(c, &h)
	return normaliseVisibility(h.V)
}

func membershipFromContent(c json.RawMessage) string {
	var m struct {
		V string `json:"membership"`
	}
	_ = json.Unmarshal(c, &m)
	if m.V == "" {
		return "leave"
	}
	return m.V
}
