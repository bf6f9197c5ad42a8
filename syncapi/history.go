package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"

	"myelin/internal/apierr"
	"myelin/roomserver"
	"myelin/storage"
)

// History reads (/messages, /context, /timestamp_to_event) walk one room's
// event log by stream position and keep the events the user may see
// (roomserver.Visible), that are not from a user they ignore, and that pass
// the request's filter. Pagination tokens are points between positions
// (see token.go).

const (
	defaultHistoryLimit = 10
	// historyScanPages bounds one request's work: a page that finds
	// nothing visible returns an empty chunk with an end token, and the
	// client pages on (the spec allows empty chunks).
	historyScanPages = 10
)

// access is what a user may read of a room's history.
type access struct {
	roomNID    int64
	membership string
	memberPos  int64 // the user's membership event (0: never a member)
	upTo       int64 // no visible event lies after this position
}

// roomAccess allows members, former members (up to their departure) and
// anyone in a world_readable room; M_FORBIDDEN otherwise, unknown rooms
// included.
func (s *Service) roomAccess(ctx context.Context, userID, roomID string) (access, error) {
	if !validRoomID(roomID) {
		return access{}, apierr.InvalidParam("invalid room ID")
	}
	nid, err := s.store.RoomNID(ctx, roomID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return access{}, apierr.Forbidden("you are not a member of this room")
		}
		return access{}, err
	}
	mem, err := s.membership(ctx, roomID, userID)
	if err != nil {
		return access{}, err
	}
	m, pos := mem.Membership, mem.EventNID
	a := access{roomNID: nid, membership: m, memberPos: pos, upTo: math.MaxInt64}
	if m == "join" {
		return a, nil
	}
	if mem.Forgotten {
		// A forgotten room's history is gone for the user ("Leaving rooms").
		return access{}, apierr.Forbidden("you have forgotten this room")
	}
	room, err := s.rooms.Room(ctx, roomID)
	if err != nil {
		return access{}, err
	}
	switch {
	case room.HistoryVisibility == "world_readable":
	case pos == 0:
		return access{}, apierr.Forbidden("you are not a member of this room")
	case m == "leave" || m == "ban":
		a.upTo = pos
	}
	return a, nil
}

// historyScan walks a room's log from a point in one direction and keeps
// what the user may see, up to limit events.
type historyScan struct {
	s       *Service
	userID  string
	a       access
	filter  *RoomEventFilter
	ignored map[string]bool
	byPos   map[int64]storage.StoredEvent
}

// scan returns up to limit events after (forward: position > from, up to
// bound) or before (backward: position <= from, above bound) a point, in
// the direction's order, and the point where the scan stopped; exhausted
// is set when no event remains in the range.
func (h *historyScan) scan(ctx context.Context, from, bound int64, backwards bool, limit int) ([]*roomserver.Event, int64, bool, error) {
	var out []*roomserver.Event
	point := from
	if limit <= 0 {
		return nil, point, false, nil
	}
	// The first read asks for one row past the page: when every event is
	// visible and passes the filter, which is the common case, that is all
	// the page costs (reading twice the page for it, as this once did,
	// parsed a hundred events nobody was sent). Further reads, when a
	// filter or history visibility dropped events, take twice the page,
	// so one request's work stays bounded as before.
	pageSize, laterReads := min(limit+1, maxEventLimit+1), min(max(2*limit, 20), maxEventLimit+1)
	for pages := 0; pages < historyScanPages; pages, pageSize = pages+1, laterReads {
		var rows []storage.StoredEvent
		var err error
		if backwards {
			if point <= bound {
				return out, point, true, nil
			}
			rows, err = h.s.store.RoomEvents(ctx, h.a.roomNID, bound, min(point, h.a.upTo), pageSize, true)
		} else {
			hi := min(bound, h.a.upTo)
			if point >= hi {
				return out, point, true, nil
			}
			rows, err = h.s.store.RoomEvents(ctx, h.a.roomNID, point, hi, pageSize, false)
		}
		if err != nil {
			return nil, 0, false, err
		}
		evs, err := h.s.rooms.EventsFromLog(ctx, rows, nil)
		if err != nil {
			return nil, 0, false, err
		}
		for _, r := range rows {
			h.byPos[r.NID] = r
		}
		visible, err := h.visible(ctx, evs)
		if err != nil {
			return nil, 0, false, err
		}
		for i, e := range evs {
			if backwards {
				point = e.Position - 1
			} else {
				point = e.Position
			}
			if visible[i] && !(!e.IsState() && h.ignored[e.Sender]) && h.filter.allowsEvent(e.Type, e.Sender, e.Content) {
				out = append(out, e)
				if len(out) == limit {
					exhausted := i == len(evs)-1 && len(rows) < pageSize
					return out, point, exhausted, nil
				}
			}
		}
		if len(rows) < pageSize {
			return out, point, true, nil
		}
	}
	return out, point, false, nil
}

// visible applies history visibility; a joined user sees everything after
// their current membership event without a per-event check.
func (h *historyScan) visible(ctx context.Context, evs []*roomserver.Event) ([]bool, error) {
	out := make([]bool, len(evs))
	var check []*roomserver.Event
	for i, e := range evs {
		if h.a.membership == "join" && e.Position > h.a.memberPos {
			out[i] = true
		} else {
			check = append(check, e)
		}
	}
	if len(check) == 0 {
		return out, nil
	}
	vis, err := h.s.rooms.Visible(ctx, h.userID, check)
	if err != nil {
		return nil, err
	}
	ok := map[int64]bool{}
	for _, e := range vis {
		ok[e.Position] = true
	}
	for i, e := range evs {
		if !out[i] {
			out[i] = ok[e.Position]
		}
	}
	return out, nil
}

// MessagesRequest is GET /rooms/{roomId}/messages.
type MessagesRequest struct {
	UserID, DeviceID, RoomID string
	From, To                 string // tokens; "" for none
	Dir                      string // "b" or "f"
	Limit                    int    // < 0: the default
	Filter                   string // inline RoomEventFilter JSON
}

// MessagesResponse is the /messages response.
type MessagesResponse struct {
	Start string            `json:"start"`
	End   string            `json:"end,omitempty"`
	Chunk []json.RawMessage `json:"chunk"`
	State []json.RawMessage `json:"state,omitempty"`
}

// Messages is GET /rooms/{roomId}/messages: from the given point (or the
// newest/oldest event the user may see when from is empty), in either
// direction, stopping at to.
func (s *Service) Messages(ctx context.Context, req MessagesRequest) (*MessagesResponse, error) {
	// Access first: a user who may not read the room learns nothing more
	// from the other parameters' errors.
	a, err := s.roomAccess(ctx, req.UserID, req.RoomID)
	if err != nil {
		return nil, err
	}
	var backwards bool
	switch req.Dir {
	case "b":
		backwards = true
	case "f":
	case "":
		return nil, apierr.MissingParam("dir is required")
	default:
		return nil, apierr.InvalidParam("dir must be b or f")
	}
	filter, err := ParseRoomEventFilter(req.Filter)
	if err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit < 0 {
		limit = filter.eventFilter().limit(defaultHistoryLimit)
	}
	limit = min(limit, maxEventLimit)
	var from, to int64
	if req.From != "" {
		if from, err = parsePageToken(req.From); err != nil {
			return nil, err
		}
	} else if backwards {
		from = s.rooms.Notifier().Position()
	}
	toSet := req.To != ""
	if toSet {
		if to, err = parsePageToken(req.To); err != nil {
			return nil, err
		}
	}
	ignored, err := s.ignoredUsers(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	h := &historyScan{s: s, userID: req.UserID, a: a, filter: filter, ignored: ignored, byPos: map[int64]storage.StoredEvent{}}
	bound := int64(0)
	if backwards && toSet {
		bound = to
	}
	if !backwards {
		bound = math.MaxInt64
		if toSet {
			bound = to
		}
	}
	evs, point, exhausted, err := h.scan(ctx, from, bound, backwards, limit)
	if err != nil {
		return nil, err
	}
	resp := &MessagesResponse{Start: req.From, Chunk: []json.RawMessage{}}
	if resp.Start == "" {
		resp.Start = pageToken(from)
	}
	if !exhausted {
		resp.End = pageToken(point)
	}
	chunk, err := s.renderBundled(ctx, h, evs, req.UserID, req.DeviceID, ignored)
	if err != nil {
		return nil, err
	}
	resp.Chunk = chunk
	if filter.lazyMembers() {
		if resp.State, err = h.senderMembers(ctx, evs, req); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// senderMembers returns, for lazy-loading, each sender's member event as
// of their newest event among evs (falling back to their older ones: a
// room's first events precede its creator's join).
func (h *historyScan) senderMembers(ctx context.Context, evs []*roomserver.Event, req MessagesRequest) ([]json.RawMessage, error) {
	byNewest := slices.Clone(evs)
	slices.SortFunc(byNewest, func(a, b *roomserver.Event) int { return int(b.Position - a.Position) })
	groupsOf := map[string][]int64{} // sender → state groups at their events, newest first
	var groups []int64
	var senders []string
	for _, e := range byNewest {
		g := h.byPos[e.Position].StateGroup
		if _, ok := groupsOf[e.Sender]; !ok {
			senders = append(senders, e.Sender)
		}
		groupsOf[e.Sender] = append(groupsOf[e.Sender], g)
		groups = append(groups, g)
	}
	if len(senders) == 0 {
		return []json.RawMessage{}, nil
	}
	state, err := h.s.store.StateAtGroups(ctx, groups, []string{"m.room.member"}, senders)
	if err != nil {
		return nil, err
	}
	var nids []int64
	for _, u := range senders {
	groups:
		for _, g := range groupsOf[u] {
			for _, e := range state[g] {
				if e.StateKey == u {
					nids = append(nids, e.EventNID)
					break groups
				}
			}
		}
	}
	// The filter selects the chunk; the state only serves to show it.
	return h.renderNIDs(ctx, nids, nil, roomserver.Viewer{UserID: req.UserID, DeviceID: req.DeviceID})
}

func (h *historyScan) renderNIDs(ctx context.Context, nids []int64, filter *RoomEventFilter, viewer roomserver.Viewer) ([]json.RawMessage, error) {
	slices.Sort(nids)
	nids = slices.Compact(nids)
	rows, err := h.s.store.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rows, func(a, b storage.StoredEvent) int { return int(a.NID - b.NID) })
	evs, err := h.s.rooms.EventsFromLog(ctx, rows, nil)
	if err != nil {
		return nil, err
	}
	evs = slices.DeleteFunc(evs, func(e *roomserver.Event) bool { return !filter.allowsEvent(e.Type, e.Sender, e.Content) })
	ces, err := h.s.rooms.ClientEvents(ctx, evs, viewer)
	if err != nil {
		return nil, err
	}
	format := newEventFormat(nil, true)
	out := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		out[i] = format.render(ces[i], e, "")
	}
	return out, nil
}

// memberships is the viewer's membership at each event (unsigned.membership).
func (h *historyScan) memberships(ctx context.Context, evs []*roomserver.Event) (map[int64]string, error) {
	return h.s.viewerMemberships(ctx, h.userID, evs,
		func(e *roomserver.Event) int64 { return h.byPos[e.Position].StateGroup },
		func(string) (string, int64) { return h.a.membership, h.a.memberPos })
}

// ContextRequest is GET /rooms/{roomId}/context/{eventId}.
type ContextRequest struct {
	UserID, DeviceID, RoomID, EventID string
	Limit                             int // < 0: the default
	Filter                            string
}

// ContextResponse is the /context response.
type ContextResponse struct {
	Start        string            `json:"start"`
	End          string            `json:"end"`
	EventsBefore []json.RawMessage `json:"events_before"`
	Event        json.RawMessage   `json:"event"`
	EventsAfter  []json.RawMessage `json:"events_after"`
	State        []json.RawMessage `json:"state"`
}

// Context is GET /rooms/{roomId}/context/{eventId}: the event, up to
// limit events around it (half before, half after), and the room state at
// the last event returned. M_NOT_FOUND when the user may not see the
// event (or ignores its sender).
func (s *Service) Context(ctx context.Context, req ContextRequest) (*ContextResponse, error) {
	filter, err := ParseRoomEventFilter(req.Filter)
	if err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit < 0 {
		limit = defaultHistoryLimit
	}
	limit = min(limit, maxEventLimit)
	a, err := s.roomAccess(ctx, req.UserID, req.RoomID)
	if err != nil {
		return nil, err
	}
	if len(req.EventID) < 2 || req.EventID[0] != '$' {
		return nil, apierr.NotFound("event not found")
	}
	ev, err := s.rooms.GetEvent(ctx, req.RoomID, req.EventID, req.UserID)
	if err != nil {
		return nil, err
	}
	ignored, err := s.ignoredUsers(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	if !ev.IsState() && ignored[ev.Sender] {
		return nil, apierr.NotFound("event not found")
	}
	h := &historyScan{s: s, userID: req.UserID, a: a, filter: filter, ignored: ignored, byPos: map[int64]storage.StoredEvent{}}
	before, _, _, err := h.scan(ctx, ev.Position-1, 0, true, limit/2)
	if err != nil {
		return nil, err
	}
	after, _, _, err := h.scan(ctx, ev.Position, math.MaxInt64, false, limit-limit/2)
	if err != nil {
		return nil, err
	}
	viewer := roomserver.Viewer{UserID: req.UserID, DeviceID: req.DeviceID, Ignored: ignored}
	all := append(append(append([]*roomserver.Event{}, before...), ev), after...)
	ces, err := s.rooms.ClientEvents(ctx, all, viewer)
	if err != nil {
		return nil, err
	}
	evRow, err := s.store.EventByID(ctx, ev.EventID)
	if err != nil {
		return nil, err
	}
	h.byPos[evRow.NID] = evRow
	mem, err := h.memberships(ctx, all)
	if err != nil {
		return nil, err
	}
	format := newEventFormat(nil, true)
	resp := &ContextResponse{EventsBefore: []json.RawMessage{}, EventsAfter: []json.RawMessage{}}
	for i, e := range all {
		raw := format.render(ces[i], e, mem[e.Position])
		switch {
		case i < len(before):
			resp.EventsBefore = append(resp.EventsBefore, raw)
		case i == len(before):
			resp.Event = raw
		default:
			resp.EventsAfter = append(resp.EventsAfter, raw)
		}
	}
	first, last := ev, ev
	if len(before) > 0 {
		first = before[len(before)-1]
	}
	if len(after) > 0 {
		last = after[len(after)-1]
	}
	resp.Start, resp.End = pageToken(first.Position-1), pageToken(last.Position)

	// State at the last event returned: the group stored with it.
	lastRow := h.byPos[last.Position]
	var memberKeys []string
	if filter.lazyMembers() {
		seen := map[string]bool{}
		for _, e := range all {
			if !seen[e.Sender] {
				seen[e.Sender] = true
				memberKeys = append(memberKeys, e.Sender)
			}
		}
	}
	state, err := s.store.StateAtGroups(ctx, []int64{lastRow.StateGroup}, nil, memberKeys)
	if err != nil {
		return nil, err
	}
	var nids []int64
	for _, e := range state[lastRow.StateGroup] {
		nids = append(nids, e.EventNID)
	}
	// "The filter is only applied to events_before, events_after, and
	// state" — state included.
	if resp.State, err = h.renderNIDs(ctx, nids, filter, viewer); err != nil {
		return nil, err
	}
	return resp, nil
}

// TimestampEvent is the /timestamp_to_event response.
type TimestampEvent struct {
	EventID        string `json:"event_id"`
	OriginServerTS int64  `json:"origin_server_ts"`
}

// TimestampToEvent is GET /rooms/{roomId}/timestamp_to_event: the closest
// event the user may see at or after ts (forward) or at or before it
// (backward). M_NOT_FOUND when there is none.
func (s *Service) TimestampToEvent(ctx context.Context, userID, roomID string, ts int64, forward bool) (*TimestampEvent, error) {
	a, err := s.roomAccess(ctx, userID, roomID)
	if err != nil {
		return nil, err
	}
	ignored, err := s.ignoredUsers(ctx, userID)
	if err != nil {
		return nil, err
	}
	h := &historyScan{s: s, userID: userID, a: a, ignored: ignored, byPos: map[int64]storage.StoredEvent{}}
	const page = 50
	for skip := 0; skip < page*historyScanPages; skip += page {
		rows, err := s.store.EventsByTimestamp(ctx, a.roomNID, ts, forward, skip, page)
		if err != nil {
			return nil, err
		}
		n := len(rows)
		rows = slices.DeleteFunc(rows, func(r storage.StoredEvent) bool { return r.NID > a.upTo })
		evs, err := s.rooms.EventsFromLog(ctx, rows, nil)
		if err != nil {
			return nil, err
		}
		visible, err := h.visible(ctx, evs)
		if err != nil {
			return nil, err
		}
		for i, e := range evs {
			if visible[i] && !(!e.IsState() && ignored[e.Sender]) {
				return &TimestampEvent{EventID: e.EventID, OriginServerTS: e.OriginServerTS}, nil
			}
		}
		if n < page {
			break
		}
	}
	dir := "backward"
	if forward {
		dir = "forward"
	}
	return nil, apierr.NotFound("no event found in the " + dir + " direction")
}
