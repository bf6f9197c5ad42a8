package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"myelin/internal/apierr"
	"myelin/storage"
)

// CreateAlias maps a local alias to a room (PUT /directory/room/{alias}).
// M_INVALID_PARAM for a malformed or non-local alias, M_NOT_FOUND for an
// unknown room, 409 M_UNKNOWN when the alias exists.
func (s *Service) CreateAlias(ctx context.Context, alias, roomID, userID string) error {
	if err := checkAlias(alias); err != nil {
		return err
	}
	if domainOf(alias) != s.cfg.ServerName {
		return apierr.InvalidParam("room alias must be on this server")
	}
	row, _, err := s.store.RoomByID(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return notFound("room")
	}
	if err != nil {
		return err
	}
	err = s.store.CreateAlias(ctx, alias, row.NID, userID, s.cfg.Now().UnixMilli())
	if errors.Is(err, storage.ErrConflict) {
		return apierr.New(409, "M_UNKNOWN", "room alias already exists")
	}
	return err
}

// ResolveAlias returns the room an alias names and the servers to join
// through. M_NOT_FOUND if unknown.
func (s *Service) ResolveAlias(ctx context.Context, alias string) (string, []string, error) {
	if err := checkAlias(alias); err != nil {
		return "", nil, err
	}
	a, err := s.store.AliasByName(ctx, alias)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil, notFound("room alias")
	}
	if err != nil {
		return "", nil, err
	}
	return a.RoomID, []string{s.cfg.ServerName}, nil
}

// DeleteAlias removes an alias. Its creator may, as may server admins
// (admin) and room members whose power level allows sending
// m.room.canonical_alias. M_NOT_FOUND if unknown, M_FORBIDDEN otherwise.
func (s *Service) DeleteAlias(ctx context.Context, alias, userID string, admin bool) error {
	if err := checkAlias(alias); err != nil {
		return err
	}
	a, err := s.store.AliasByName(ctx, alias)
	if errors.Is(err, storage.ErrNotFound) {
		return notFound("room alias")
	}
	if err != nil {
		return err
	}
	if !admin && a.Creator != userID {
		r, err := s.Room(ctx, a.RoomID)
		if err != nil {
			return err
		}
		m, err := r.Membership(ctx, userID)
		if err != nil {
			return err
		}
		if m != spec.Join || !r.PowerLevels.CanSend(userID, spec.MRoomCanonicalAlias, true) {
			return apierr.Forbidden("you may not delete this alias")
		}
	}
	if err := s.store.DeleteAlias(ctx, alias); errors.Is(err, storage.ErrNotFound) {
		return notFound("room alias")
	} else if err != nil {
		return err
	}
	s.dropFromCanonicalAlias(ctx, a.RoomID, alias, userID)
	return nil
}

// dropFromCanonicalAlias removes a deleted alias from the room's
// m.room.canonical_alias event (alias and alt_aliases), sent by the user who
// deleted it, so clients stop advertising an alias that no longer resolves.
// The spec lets servers do this and recommends that the deletion succeed even
// when the user may not update the event, so a refusal here is not an error.
func (s *Service) dropFromCanonicalAlias(ctx context.Context, roomID, alias, userID string) {
	r, err := s.Room(ctx, roomID)
	if err != nil {
		return
	}
	ev, err := r.StateEvent(ctx, spec.MRoomCanonicalAlias, "")
	if err != nil || ev == nil {
		return
	}
	content, changed := withoutAlias(ev.Content, alias)
	if !changed {
		return
	}
	empty := ""
	_, _ = s.Send(ctx, SendRequest{RoomID: roomID, Sender: userID, Type: spec.MRoomCanonicalAlias, StateKey: &empty, Content: content})
}

// withoutAlias is canonical_alias content with alias removed from "alias"
// and "alt_aliases" (other keys kept); changed is false when it was in
// neither or the content is not an object.
func withoutAlias(raw json.RawMessage, alias string) (json.RawMessage, bool) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(raw, &c); err != nil || c == nil {
		return nil, false
	}
	changed := false
	var main string
	if json.Unmarshal(c["alias"], &main) == nil && main == alias {
		delete(c, "alias")
		changed = true
	}
	var alts []string
	if v, ok := c["alt_aliases"]; ok && json.Unmarshal(v, &alts) == nil {
		kept := slices.DeleteFunc(slices.Clone(alts), func(a string) bool { return a == alias })
		if len(kept) != len(alts) {
			changed = true
			if len(kept) == 0 {
				delete(c, "alt_aliases")
			} else {
				b, _ := json.Marshal(kept)
				c["alt_aliases"] = b
			}
		}
	}
	if !changed {
		return nil, false
	}
	out, err := json.Marshal(c)
	if err != nil {
		return nil, false
	}
	return out, true
}

// LocalAliases is GET /rooms/{roomId}/aliases: members (or anyone, when the
// room is world_readable) may list them; M_FORBIDDEN otherwise.
func (s *Service) LocalAliases(ctx context.Context, roomID, userID string) ([]string, error) {
	r, err := s.Room(ctx, roomID)
	if err != nil {
		if e, ok := apierr.As(err); ok && e.Code == "M_NOT_FOUND" {
			return nil, apierr.Forbidden("you are not a member of this room")
		}
		return nil, err
	}
	if r.HistoryVisibility != "world_readable" {
		m, err := r.Membership(ctx, userID)
		if err != nil {
			return nil, err
		}
		if m != spec.Join {
			return nil, apierr.Forbidden("you are not a member of this room")
		}
	}
	aliases, err := s.store.AliasesOf(ctx, r.nid)
	if err != nil {
		return nil, err
	}
	if aliases == nil {
		aliases = []string{}
	}
	return aliases, nil
}

// SetDirectoryVisibility publishes ("public") or unpublishes ("private") a
// room (PUT /directory/list/room/{roomId}). Room members whose power level
// allows sending m.room.canonical_alias may, as may server admins.
func (s *Service) SetDirectoryVisibility(ctx context.Context, roomID, userID, visibility string, admin bool) error {
	if visibility != "public" && visibility != "private" {
		return apierr.InvalidParam("visibility must be public or private")
	}
	r, err := s.Room(ctx, roomID)
	if err != nil {
		return err
	}
	if !admin {
		m, err := r.Membership(ctx, userID)
		if err != nil {
			return err
		}
		if m != spec.Join || !r.PowerLevels.CanSend(userID, spec.MRoomCanonicalAlias, true) {
			return apierr.Forbidden("you may not change this room's directory visibility")
		}
	}
	return s.store.SetVisibility(ctx, r.nid, visibility)
}

// DirectoryVisibility is GET /directory/list/room/{roomId}.
func (s *Service) DirectoryVisibility(ctx context.Context, roomID string) (string, error) {
	row, _, err := s.store.RoomByID(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", notFound("room")
	}
	if err != nil {
		return "", err
	}
	return row.Visibility, nil
}

// PublicRoomsQuery is /publicRooms's paging and filter.
type PublicRoomsQuery struct {
	Limit int    // 0: no limit
	Since string // a NextBatch/PrevBatch token
	// Filter matches name, topic and canonical alias, case-insensitively.
	Filter string
	// RoomTypes filters by room type; "" in the list matches rooms without
	// a type. Nil means all.
	RoomTypes []string
}

// PublicRoom is one entry of the published room directory
// ("PublishedRoomsChunk").
type PublicRoom struct {
	RoomID           string `json:"room_id"`
	Name             string `json:"name,omitempty"`
	Topic            string `json:"topic,omitempty"`
	AvatarURL        string `json:"avatar_url,omitempty"`
	CanonicalAlias   string `json:"canonical_alias,omitempty"`
	NumJoinedMembers int64  `json:"num_joined_members"`
	WorldReadable    bool   `json:"world_readable"`
	GuestCanJoin     bool   `json:"guest_can_join"`
	JoinRule         string `json:"join_rule,omitempty"`
	RoomType         string `json:"room_type,omitempty"`
}

// PublicRoomsPage is a page of the directory.
type PublicRoomsPage struct {
	Chunk                  []PublicRoom `json:"chunk"`
	NextBatch              string       `json:"next_batch,omitempty"`
	PrevBatch              string       `json:"prev_batch,omitempty"`
	TotalRoomCountEstimate int          `json:"total_room_count_estimate"`
}

// PublicRooms lists the published rooms, largest first. M_INVALID_PARAM for
// a malformed since token.
func (s *Service) PublicRooms(ctx context.Context, q PublicRoomsQuery) (PublicRoomsPage, error) {
	offset := 0
	if q.Since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(q.Since, "o"))
		if err != nil || n < 0 || !strings.HasPrefix(q.Since, "o") {
			return PublicRoomsPage{}, apierr.InvalidParam("invalid since token")
		}
		offset = n
	}
	rooms, err := s.store.PublicRooms(ctx)
	if err != nil {
		return PublicRoomsPage{}, err
	}
	filter := strings.ToLower(q.Filter)
	var all []PublicRoom
	for _, pr := range rooms {
		s.roomIDs.Store(pr.RoomNID, pr.RoomID)
		entry, err := s.publicEntry(ctx, pr)
		if err != nil {
			return PublicRoomsPage{}, err
		}
		if filter != "" && !strings.Contains(strings.ToLower(entry.Name), filter) &&
			!strings.Contains(strings.ToLower(entry.Topic), filter) && !strings.Contains(strings.ToLower(entry.CanonicalAlias), filter) {
			continue
		}
		if q.RoomTypes != nil && !slices.Contains(q.RoomTypes, entry.RoomType) {
			continue
		}
		all = append(all, entry)
	}
	page := PublicRoomsPage{Chunk: []PublicRoom{}, TotalRoomCountEstimate: len(all)}
	if offset > len(all) {
		offset = len(all)
	}
	end := len(all)
	if q.Limit > 0 && offset+q.Limit < end {
		end = offset + q.Limit
		page.NextBatch = "o" + strconv.Itoa(end)
	}
	if offset > 0 {
		prev := 0
		if q.Limit > 0 {
			prev = max(0, offset-q.Limit)
		}
		page.PrevBatch = "o" + strconv.Itoa(prev)
	}
	page.Chunk = append(page.Chunk, all[offset:end]...)
	return page, nil
}

func (s *Service) publicEntry(ctx context.Context, pr storage.PublicRoom) (PublicRoom, error) {
	stored, err := s.store.CurrentStateEvents(ctx, pr.RoomNID, "m.room.name", "m.room.topic", "m.room.avatar",
		"m.room.canonical_alias", "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.create")
	if err != nil {
		return PublicRoom{}, err
	}
	e := PublicRoom{RoomID: pr.RoomID, NumJoinedMembers: pr.JoinedMembers, JoinRule: "invite"}
	for _, se := range stored {
		if se.StateKey == nil || *se.StateKey != "" {
			continue
		}
		ev, err := s.toEvent(ctx, se)
		if err != nil {
			return PublicRoom{}, err
		}
		var c struct {
			Name              string `json:"name"`
			Topic             string `json:"topic"`
			URL               string `json:"url"`
			Alias             string `json:"alias"`
			JoinRule          string `json:"join_rule"`
			HistoryVisibility string `json:"history_visibility"`
			GuestAccess       string `json:"guest_access"`
			Type              string `json:"type"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		switch se.Type {
		case "m.room.name":
			e.Name = c.Name
		case "m.room.topic":
			e.Topic = c.Topic
		case "m.room.avatar":
			e.AvatarURL = c.URL
		case "m.room.canonical_alias":
			e.CanonicalAlias = c.Alias
		case "m.room.join_rules":
			if c.JoinRule != "" {
				e.JoinRule = c.JoinRule
			}
		case "m.room.history_visibility":
			e.WorldReadable = c.HistoryVisibility == "world_readable"
		case "m.room.guest_access":
			e.GuestCanJoin = c.GuestAccess == "can_join"
		case "m.room.create":
			e.RoomType = c.Type
		}
	}
	return e, nil
}
