package clientapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"myelin/account"
	"myelin/internal/apierr"
	"myelin/internal/httpapi"
	"myelin/roomserver"
)

// GET /_matrix/client/v1/rooms/{roomId}/hierarchy walks a space tree depth
// first over the rooms this server knows (without federation, children on
// other servers are skipped). Each page is the walk from the root again,
// stopped once it has the rooms the page needs: no walk state is kept
// between requests, and the `from` token carries the offset together with
// the parameters that must not change between pages.
const (
	defaultHierarchyLimit = 50
	maxHierarchyLimit     = 100
	defaultHierarchyDepth = 10
	maxHierarchyDepth     = 20
	// maxHierarchyRooms bounds how many rooms one walk visits, so a huge or
	// looping tree cannot make a request unbounded.
	maxHierarchyRooms = 1000
)

// hierarchyRoom is one SpaceHierarchyRoomsChunk.
type hierarchyRoom struct {
	RoomID           string           `json:"room_id"`
	Name             string           `json:"name,omitempty"`
	Topic            string           `json:"topic,omitempty"`
	AvatarURL        string           `json:"avatar_url,omitempty"`
	CanonicalAlias   string           `json:"canonical_alias,omitempty"`
	NumJoinedMembers int              `json:"num_joined_members"`
	WorldReadable    bool             `json:"world_readable"`
	GuestCanJoin     bool             `json:"guest_can_join"`
	JoinRule         string           `json:"join_rule"`
	RoomType         string           `json:"room_type,omitempty"`
	AllowedRoomIDs   []string         `json:"allowed_room_ids,omitempty"`
	Encryption       string           `json:"encryption,omitempty"`
	RoomVersion      string           `json:"room_version"`
	ChildrenState    []childStateJSON `json:"children_state"`
}

// childStateJSON is a stripped m.space.child event with its timestamp.
type childStateJSON struct {
	Type           string          `json:"type"`
	StateKey       string          `json:"state_key"`
	Content        json.RawMessage `json:"content"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
}

// hierarchyParams are the request's parameters with defaults applied.
type hierarchyParams struct {
	limit         int
	maxDepth      int
	suggestedOnly bool
	offset        int
}

func parseHierarchyParams(r *http.Request) (hierarchyParams, error) {
	q := r.URL.Query()
	p := hierarchyParams{limit: defaultHierarchyLimit, maxDepth: defaultHierarchyDepth}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p, apierr.InvalidParam("limit must be an integer greater than zero")
		}
		p.limit = min(n, maxHierarchyLimit)
	}
	if v := q.Get("max_depth"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, apierr.InvalidParam("max_depth must be a non-negative integer")
		}
		p.maxDepth = min(n, maxHierarchyDepth)
	}
	if v := q.Get("suggested_only"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return p, apierr.InvalidParam("suggested_only must be true or false")
		}
		p.suggestedOnly = b
	}
	if from := q.Get("from"); from != "" {
		var offset, depth int
		var suggested bool
		parts := strings.Split(from, "_")
		ok := len(parts) == 3
		if ok {
			var e1, e2, e3 error
			offset, e1 = strconv.Atoi(parts[0])
			suggested, e2 = strconv.ParseBool(parts[1])
			depth, e3 = strconv.Atoi(parts[2])
			ok = e1 == nil && e2 == nil && e3 == nil && offset > 0 && offset <= maxHierarchyRooms
		}
		if !ok {
			return p, apierr.InvalidParam("Unknown from token")
		}
		if suggested != p.suggestedOnly || depth != p.maxDepth {
			return p, apierr.InvalidParam("suggested_only and max_depth cannot change on paginated requests")
		}
		p.offset = offset
	}
	return p, nil
}

func (p hierarchyParams) token(offset int) string {
	return fmt.Sprintf("%d_%t_%d", offset, p.suggestedOnly, p.maxDepth)
}

func (ra *roomsAPI) hierarchy(w http.ResponseWriter, r *http.Request, c *account.Caller) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	p, err := parseHierarchyParams(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	root, err := ra.rooms.Room(ctx, roomID)
	if err != nil {
		if e, ok := apierr.As(err); ok && e.Code == "M_NOT_FOUND" {
			return apierr.Forbidden("You are not allowed to view this room")
		}
		return err
	}
	if ok, err := ra.accessible(ctx, root, c.UserID); err != nil {
		return err
	} else if !ok {
		return apierr.Forbidden("You are not allowed to view this room")
	}

	want := p.offset + p.limit
	type item struct {
		roomID string
		depth  int
	}
	var out []hierarchyRoom
	stack := []item{{roomID, 0}}
	seen := map[string]bool{}
	more := false
	for len(stack) > 0 && len(seen) < maxHierarchyRooms {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[it.roomID] {
			continue // the spec forbids loops but warns they happen
		}
		seen[it.roomID] = true
		room := root
		if it.roomID != roomID {
			room, err = ra.rooms.Room(ctx, it.roomID)
			if e, ok := apierr.As(err); ok && e.Code == "M_NOT_FOUND" {
				continue // on another server: not reachable without federation
			}
			if err != nil {
				return err
			}
			if ok, err := ra.accessible(ctx, room, c.UserID); err != nil {
				return err
			} else if !ok {
				continue
			}
		}
		if len(out) == want {
			more = true
			break
		}
		entry, err := ra.summarize(ctx, room, p.suggestedOnly)
		if err != nil {
			return err
		}
		out = append(out, entry)
		if it.depth < p.maxDepth {
			for i := len(entry.ChildrenState) - 1; i >= 0; i-- {
				stack = append(stack, item{entry.ChildrenState[i].StateKey, it.depth + 1})
			}
		}
	}
	resp := map[string]any{"rooms": []hierarchyRoom{}}
	if p.offset < len(out) {
		resp["rooms"] = out[p.offset:]
	}
	if more {
		resp["next_batch"] = p.token(want)
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// accessible is the spec's rule for which rooms /hierarchy returns: the
// caller is joined or invited, may join (public, or restricted and a
// member of an allowed room), may knock, or the room is world_readable.
// A banned caller sees nothing of the room.
func (ra *roomsAPI) accessible(ctx context.Context, room *roomserver.Room, userID string) (bool, error) {
	m, err := room.Membership(ctx, userID)
	if err != nil {
		return false, err
	}
	switch m {
	case "join", "invite":
		return true, nil
	case "ban":
		return false, nil
	}
	if room.HistoryVisibility == "world_readable" {
		return true, nil
	}
	switch room.JoinRule {
	case "public", "knock", "knock_restricted":
		return true, nil
	case "restricted":
		for _, allowed := range room.JoinAllowRooms {
			other, err := ra.rooms.Room(ctx, allowed)
			if e, ok := apierr.As(err); ok && e.Code == "M_NOT_FOUND" {
				continue
			}
			if err != nil {
				return false, err
			}
			if m, err := other.Membership(ctx, userID); err != nil {
				return false, err
			} else if m == "join" {
				return true, nil
			}
		}
	}
	return false, nil
}

// summarize builds a room's chunk: its summary and, for a space, its valid
// m.space.child events in the spec's order.
func (ra *roomsAPI) summarize(ctx context.Context, room *roomserver.Room, suggestedOnly bool) (hierarchyRoom, error) {
	h := hierarchyRoom{
		RoomID: room.ID, WorldReadable: room.HistoryVisibility == "world_readable",
		GuestCanJoin: room.GuestAccess == "can_join", JoinRule: room.JoinRule, RoomType: room.Type,
		RoomVersion: room.Version, ChildrenState: []childStateJSON{},
	}
	if room.JoinRule == "restricted" || room.JoinRule == "knock_restricted" {
		h.AllowedRoomIDs = room.JoinAllowRooms
	}
	state, err := room.State(ctx, "m.room.name", "m.room.topic", "m.room.avatar", "m.room.canonical_alias",
		"m.room.encryption", "m.space.child")
	if err != nil {
		return h, err
	}
	var children []child
	for _, e := range state {
		if e.StateKey == nil {
			continue
		}
		if e.Type == "m.space.child" {
			if ch, ok := parseChild(e); ok && room.Type == "m.space" && (!suggestedOnly || ch.suggested) {
				children = append(children, ch)
			}
			continue
		}
		if *e.StateKey != "" {
			continue
		}
		var c struct {
			Name      string `json:"name"`
			Topic     string `json:"topic"`
			URL       string `json:"url"`
			Alias     string `json:"alias"`
			Algorithm string `json:"algorithm"`
		}
		_ = json.Unmarshal(e.Content, &c)
		switch e.Type {
		case "m.room.name":
			h.Name = c.Name
		case "m.room.topic":
			h.Topic = c.Topic
		case "m.room.avatar":
			h.AvatarURL = c.URL
		case "m.room.canonical_alias":
			h.CanonicalAlias = c.Alias
		case "m.room.encryption":
			h.Encryption = c.Algorithm
		}
	}
	members, err := room.Members(ctx, "join")
	if err != nil {
		return h, err
	}
	h.NumJoinedMembers = len(members)
	sortChildren(children)
	for _, ch := range children {
		h.ChildrenState = append(h.ChildrenState, ch.stripped)
	}
	return h, nil
}

// child is a valid m.space.child link.
type child struct {
	stripped  childStateJSON
	order     string // "" when absent or invalid
	suggested bool
}

// parseChild keeps a link only when its content has a non-empty via list
// of strings (the spec: without it the child is not part of the space).
func parseChild(e *roomserver.Event) (child, bool) {
	var c struct {
		Via       []json.RawMessage `json:"via"`
		Order     json.RawMessage   `json:"order"`
		Suggested json.RawMessage   `json:"suggested"`
	}
	if json.Unmarshal(e.Content, &c) != nil || len(c.Via) == 0 || !validSigilID(*e.StateKey, '!') {
		return child{}, false
	}
	for _, v := range c.Via {
		var s string
		if json.Unmarshal(v, &s) != nil || s == "" {
			return child{}, false
		}
	}
	ch := child{stripped: childStateJSON{Type: e.Type, StateKey: *e.StateKey, Content: e.Content, Sender: e.Sender, OriginServerTS: e.OriginServerTS}}
	var order string
	if json.Unmarshal(c.Order, &order) == nil && validOrder(order) {
		ch.order = order
	}
	_ = json.Unmarshal(c.Suggested, &ch.suggested)
	return ch, true
}

// validOrder is the spec's `order`: 1–50 characters of \x20–\x7E.
func validOrder(s string) bool {
	if s == "" || len(s) > 50 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// sortChildren applies "Ordering of children within a space": children
// with a valid order first, by order; then by timestamp; then by room ID.
func sortChildren(cs []child) {
	slices.SortStableFunc(cs, func(a, b child) int {
		switch {
		case a.order != "" && b.order == "":
			return -1
		case a.order == "" && b.order != "":
			return 1
		case a.order != b.order:
			return strings.Compare(a.order, b.order)
		case a.stripped.OriginServerTS != b.stripped.OriginServerTS:
			if a.stripped.OriginServerTS < b.stripped.OriginServerTS {
				return -1
			}
			return 1
		}
		return strings.Compare(a.stripped.StateKey, b.stripped.StateKey)
	})
}
