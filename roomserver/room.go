package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"

	gmsl "github.com/matrix-org/gomatrixserverlib"

	"myelin/storage"
)

// PowerLevels is a room's effective m.room.power_levels, with the spec's
// defaults applied and, in room version 12, the creators' unlimited level.
type PowerLevels struct {
	Ban           int64
	Invite        int64
	Kick          int64
	Redact        int64
	StateDefault  int64
	EventsDefault int64
	UsersDefault  int64
	Users         map[string]int64
	Events        map[string]int64
	Notifications map[string]int64
	// Creators have an unlimited power level (room version 12+); nil before.
	Creators []string
	// Exists is false when the room has no m.room.power_levels event; the
	// levels are then the spec's defaults and, before v12, the creator has
	// 100.
	Exists bool
	// creator is the pre-v12 creator for the no-event default.
	creator string
}

// CreatorLevel is the level UserLevel reports for a v12 room creator:
// above every level a power_levels event can hold.
const CreatorLevel = int64(math.MaxInt64)

// UserLevel is a user's power level.
func (p PowerLevels) UserLevel(userID string) int64 {
	if slices.Contains(p.Creators, userID) {
		return CreatorLevel
	}
	if !p.Exists {
		if p.Creators == nil && userID == p.creator {
			return 100
		}
		return 0
	}
	if l, ok := p.Users[userID]; ok {
		return l
	}
	return p.UsersDefault
}

// EventLevel is the level required to send an event of this type.
func (p PowerLevels) EventLevel(eventType string, isState bool) int64 {
	if l, ok := p.Events[eventType]; ok {
		return l
	}
	if isState {
		return p.StateDefault
	}
	return p.EventsDefault
}

// CanSend reports whether a user's level allows sending the event type.
// It does not check membership.
func (p PowerLevels) CanSend(userID, eventType string, isState bool) bool {
	return p.UserLevel(userID) >= p.EventLevel(eventType, isState)
}

// NotificationLevel is the level for a notification key ("room" for @room).
func (p PowerLevels) NotificationLevel(key string) int64 {
	if l, ok := p.Notifications[key]; ok {
		return l
	}
	return 50
}

// Predecessor is the room a room was upgraded from.
type Predecessor struct {
	RoomID  string `json:"room_id"`
	EventID string `json:"event_id,omitempty"`
}

// Room is a read-only view of a room's current state, read at one moment.
type Room struct {
	ID      string
	Version string
	// Creator is the sender of the m.room.create event.
	Creator string
	// Type is the room type from the create event ("m.space" or "").
	Type              string
	Predecessor       *Predecessor
	Federate          bool
	JoinRule          string   // "invite" when unset
	JoinAllowRooms    []string // restricted: rooms whose members may join
	HistoryVisibility string   // "shared" when unset or unknown
	GuestAccess       string   // "forbidden" when unset
	PowerLevels       PowerLevels
	// ReplacementRoom is set once the room was upgraded (m.room.tombstone).
	ReplacementRoom string
	// Visibility in the published room directory: "public" or "private".
	Visibility string

	nid int64
	svc *Service
}

var roomViewTypes = []string{"m.room.create", "m.room.power_levels", "m.room.join_rules",
	"m.room.history_visibility", "m.room.guest_access", "m.room.tombstone"}

// Room reads the view of a room. M_NOT_FOUND if the server does not know it.
func (s *Service) Room(ctx context.Context, roomID string) (*Room, error) {
	row, _, err := s.store.RoomByID(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound("room")
	}
	if err != nil {
		return nil, err
	}
	s.roomIDs.Store(row.NID, row.RoomID)
	stored, err := s.store.CurrentStateEvents(ctx, row.NID, roomViewTypes...)
	if err != nil {
		return nil, err
	}
	r := &Room{ID: row.RoomID, Version: row.Version, Creator: row.Creator, Visibility: row.Visibility,
		nid: row.NID, svc: s, JoinRule: "invite", HistoryVisibility: "shared", GuestAccess: "forbidden", Federate: true}
	var plContent json.RawMessage
	for _, se := range stored {
		if se.StateKey == nil || *se.StateKey != "" {
			continue
		}
		e, err := s.toEvent(ctx, se)
		if err != nil {
			return nil, err
		}
		switch se.Type {
		case "m.room.create":
			var c struct {
				Type               string       `json:"type"`
				Predecessor        *Predecessor `json:"predecessor"`
				Federate           *bool        `json:"m.federate"`
				Creator            string       `json:"creator"`
				AdditionalCreators []string     `json:"additional_creators"`
			}
			_ = json.Unmarshal(e.Content, &c)
			r.Type, r.Predecessor = c.Type, c.Predecessor
			if c.Federate != nil {
				r.Federate = *c.Federate
			}
			if v, err := gmsl.GetRoomVersion(gmsl.RoomVersion(r.Version)); err == nil && v.PrivilegedCreators() {
				r.PowerLevels.Creators = append([]string{e.Sender}, c.AdditionalCreators...)
			} else if c.Creator != "" && (r.Version != "11") {
				r.PowerLevels.creator = c.Creator
			} else {
				r.PowerLevels.creator = e.Sender
			}
		case "m.room.power_levels":
			plContent = e.Content
		case "m.room.join_rules":
			var c struct {
				JoinRule string `json:"join_rule"`
				Allow    []struct {
					Type   string `json:"type"`
					RoomID string `json:"room_id"`
				} `json:"allow"`
			}
			_ = json.Unmarshal(e.Content, &c)
			if c.JoinRule != "" {
				r.JoinRule = c.JoinRule
			}
			for _, a := range c.Allow {
				if a.Type == "m.room_membership" && a.RoomID != "" {
					r.JoinAllowRooms = append(r.JoinAllowRooms, a.RoomID)
				}
			}
		case "m.room.history_visibility":
			var c struct {
				V string `json:"history_visibility"`
			}
			_ = json.Unmarshal(e.Content, &c)
			r.HistoryVisibility = normaliseVisibility(c.V)
		case "m.room.guest_access":
			var c struct {
				V string `json:"guest_access"`
			}
			_ = json.Unmarshal(e.Content, &c)
			if c.V != "" {
				r.GuestAccess = c.V
			}
		case "m.room.tombstone":
			var c struct {
				Replacement string `json:"replacement_room"`
			}
			_ = json.Unmarshal(e.Content, &c)
			r.ReplacementRoom = c.Replacement
		}
	}
	r.PowerLevels.fill(plContent, r.Version)
	return r, nil
}

func (p *PowerLevels) fill(content json.RawMessage, version string) {
	var c gmsl.PowerLevelContent
	c.Defaults()
	if content != nil {
		p.Exists = true
		if v, err := gmsl.GetRoomVersion(gmsl.RoomVersion(version)); err == nil {
			_ = v.ParsePowerLevels(content, &c)
		}
	}
	p.Ban, p.Invite, p.Kick, p.Redact = c.Ban, c.Invite, c.Kick, c.Redact
	p.StateDefault, p.EventsDefault, p.UsersDefault = c.StateDefault, c.EventsDefault, c.UsersDefault
	p.Users, p.Events, p.Notifications = c.Users, c.Events, c.Notifications
}

func normaliseVisibility(v string) string {
	switch v {
	case "world_readable", "shared", "invited", "joined":
		return v
	}
	return "shared"
}

// Membership is a user's current membership ("leave" when none).
func (r *Room) Membership(ctx context.Context, userID string) (string, error) {
	m, err := r.svc.store.Membership(ctx, r.nid, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return "leave", nil
	}
	if err != nil {
		return "", err
	}
	return m.Membership, nil
}

// StateEvent returns the current state event for (type, stateKey).
// M_NOT_FOUND if unset.
func (r *Room) StateEvent(ctx context.Context, eventType, stateKey string) (*Event, error) {
	se, err := r.svc.store.CurrentStateEvent(ctx, r.nid, eventType, stateKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notFound("state event")
	}
	if err != nil {
		return nil, err
	}
	return r.svc.toEvent(ctx, se)
}

// State returns the current state events, all or those of the given types.
func (r *Room) State(ctx context.Context, types ...string) ([]*Event, error) {
	stored, err := r.svc.store.CurrentStateEvents(ctx, r.nid, types...)
	if err != nil {
		return nil, err
	}
	return r.svc.toEvents(ctx, stored)
}

// Member is one member of a room.
type Member struct {
	UserID      string
	Membership  string
	DisplayName string
	AvatarURL   string
	// Position is the stream position of the membership event.
	Position int64
}

// Members lists current members, optionally only those with the given
// memberships, with their displayname and avatar_url.
func (r *Room) Members(ctx context.Context, memberships ...string) ([]Member, error) {
	rows, err := r.svc.store.MembersOf(ctx, r.nid, memberships...)
	if err != nil {
		return nil, err
	}
	nids := make([]int64, len(rows))
	for i, m := range rows {
		nids[i] = m.EventNID
	}
	stored, err := r.svc.store.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	profiles := map[int64]memberProfile{}
	for _, se := range stored {
		profiles[se.NID] = profileOf(se.JSON)
	}
	out := make([]Member, len(rows))
	for i, m := range rows {
		p := profiles[m.EventNID]
		out[i] = Member{UserID: m.UserID, Membership: m.Membership, DisplayName: p.DisplayName, AvatarURL: p.AvatarURL, Position: m.EventNID}
	}
	return out, nil
}

type memberProfile struct {
	DisplayName string `json:"displayname"`
	AvatarURL   string `json:"avatar_url"`
}

func profileOf(pdu []byte) memberProfile {
	var ev struct {
		Content memberProfile `json:"content"`
	}
	_ = json.Unmarshal(pdu, &ev)
	return ev.Content
}

// IsCreator reports whether the user is a creator of the room (the create
// event's sender, plus additional_creators in v12+).
func (r *Room) IsCreator(userID string) bool {
	return userID == r.Creator || slices.Contains(r.PowerLevels.Creators, userID)
}
