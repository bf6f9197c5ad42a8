package syncapi

import (
	"context"
	"encoding/json"
	"math"

	"myelin/internal/apierr"
	"myelin/roomserver"
	"myelin/storage"
)

// Relations (/relations) and threads (/threads) read the event_relations
// table (storage/relations.go) and serve what the user may see of it:
// the parent must be visible (404 M_NOT_FOUND otherwise, unknown alike),
// each child passes history visibility and ignoring like /messages, and
// every event carries its bundled aggregations (roomserver.ClientEvents).
// Tokens are the /messages page tokens (points between stream positions),
// so a /messages or /sync token also works as from/to.

const (
	defaultRelationsLimit = 5
	// relationsRecurseDepth is how many relationship hops recurse=true
	// follows (the spec asks for at least 3).
	relationsRecurseDepth = 3
	defaultThreadsLimit   = 5
)

// RelationsRequest is GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
type RelationsRequest struct {
	UserID, DeviceID, RoomID, EventID string
	RelType, EventType                string // "" for any
	From, To                          string // tokens; "" for none
	Dir                               string // "b" (default) or "f"
	Limit                             int    // < 0: the default
	// Recurse is the recurse parameter; nil when the client left it out
	// (recursion_depth is then absent from the answer).
	Recurse *bool
}

// RelationsResponse is the /relations answer.
type RelationsResponse struct {
	Chunk          []json.RawMessage `json:"chunk"`
	NextBatch      string            `json:"next_batch,omitempty"`
	PrevBatch      string            `json:"prev_batch,omitempty"`
	RecursionDepth *int              `json:"recursion_depth,omitempty"`
}

func (s *Service) relations() *storage.Relations { return storage.NewRelations(s.opts.DB) }

// visibleParent checks that the user may read the room and see the event;
// both failures are 404 M_NOT_FOUND so neither reveals the other.
func (s *Service) visibleParent(ctx context.Context, userID, roomID, eventID string) (access, error) {
	a, err := s.roomAccess(ctx, userID, roomID)
	if err != nil {
		if e, ok := apierr.As(err); ok && e.Code == "M_FORBIDDEN" {
			return access{}, apierr.NotFound("event not found")
		}
		return access{}, err
	}
	if _, err := s.rooms.GetEvent(ctx, roomID, eventID, userID); err != nil {
		return access{}, err
	}
	return a, nil
}

// Relations is GET /relations: the parent's children (through up to
// relationsRecurseDepth hops with recurse), newest first with dir=b.
func (s *Service) Relations(ctx context.Context, req RelationsRequest) (*RelationsResponse, error) {
	backwards := true
	switch req.Dir {
	case "", "b":
	case "f":
		backwards = false
	default:
		return nil, apierr.InvalidParam("dir must be b or f")
	}
	limit := req.Limit
	if limit < 0 {
		limit = defaultRelationsLimit
	}
	limit = min(limit, maxEventLimit)
	var from, to int64
	var err error
	fromSet, toSet := req.From != "", req.To != ""
	if fromSet {
		if from, err = parsePageToken(req.From); err != nil {
			return nil, err
		}
	}
	if toSet {
		if to, err = parsePageToken(req.To); err != nil {
			return nil, err
		}
	}
	a, err := s.visibleParent(ctx, req.UserID, req.RoomID, req.EventID)
	if err != nil {
		return nil, err
	}
	depth := 1
	resp := &RelationsResponse{Chunk: []json.RawMessage{}, PrevBatch: req.From}
	if req.Recurse != nil {
		if *req.Recurse {
			depth = relationsRecurseDepth
		}
		resp.RecursionDepth = &depth
	}
	// The page is (lo, hi]: backwards it starts at from and stops above
	// to; forwards it starts after from and stops at to.
	lo, hi := int64(0), int64(math.MaxInt64)
	if backwards {
		if fromSet {
			hi = from
		}
		if toSet {
			lo = to
		}
	} else {
		if fromSet {
			lo = from
		}
		if toSet {
			hi = to
		}
	}
	hi = min(hi, a.upTo)
	ignored, err := s.ignoredUsers(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	h := &historyScan{s: s, userID: req.UserID, a: a, ignored: ignored, byPos: map[int64]storage.StoredEvent{}}
	var kept []*roomserver.Event
	exhausted := lo >= hi
	for pages := 0; pages < historyScanPages && !exhausted && len(kept) < limit; pages++ {
		rows, err := s.relations().Children(ctx, storage.ChildrenQuery{RoomNID: a.roomNID, TargetID: req.EventID,
			RelType: req.RelType, EventType: req.EventType, After: lo, UpTo: hi, Backward: backwards,
			Limit: limit - len(kept) + 1, Depth: depth})
		if err != nil {
			return nil, err
		}
		exhausted = len(rows) <= limit-len(kept)
		evs, err := s.rooms.EventsFromLog(ctx, rows, nil)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			h.byPos[r.NID] = r
		}
		visible, err := h.visible(ctx, evs)
		if err != nil {
			return nil, err
		}
		for i, e := range evs {
			if len(kept) == limit {
				break
			}
			if backwards {
				hi = e.Position - 1
			} else {
				lo = e.Position
			}
			if visible[i] && !ignored[e.Sender] {
				kept = append(kept, e)
			}
		}
	}
	if !exhausted {
		if backwards {
			resp.NextBatch = pageToken(hi)
		} else {
			resp.NextBatch = pageToken(lo)
		}
	}
	if resp.Chunk, err = s.renderBundled(ctx, h, kept, req.UserID, req.DeviceID, ignored); err != nil {
		return nil, err
	}
	return resp, nil
}

// renderBundled renders events in the client format with room_id, the
// viewer's membership and the bundled aggregations.
func (s *Service) renderBundled(ctx context.Context, h *historyScan, evs []*roomserver.Event, userID, deviceID string, ignored map[string]bool) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	if len(evs) == 0 {
		return out, nil
	}
	ces, err := s.rooms.ClientEvents(ctx, evs, roomserver.Viewer{UserID: userID, DeviceID: deviceID, Ignored: ignored})
	if err != nil {
		return nil, err
	}
	mem, err := h.memberships(ctx, evs)
	if err != nil {
		return nil, err
	}
	format := newEventFormat(nil, true)
	for i, e := range evs {
		out = append(out, format.render(ces[i], e, mem[e.Position]))
	}
	return out, nil
}

// ThreadsRequest is GET /rooms/{roomId}/threads.
type ThreadsRequest struct {
	UserID, DeviceID, RoomID string
	Include                  string // "all" (default) or "participated"
	From                     string
	Limit                    int // < 0: the default; 0 is refused
}

// ThreadsResponse is the /threads answer.
type ThreadsResponse struct {
	Chunk     []json.RawMessage `json:"chunk"`
	NextBatch string            `json:"next_batch,omitempty"`
}

// Threads is GET /threads: the room's thread roots the user may see, by
// latest reply, newest first. A next_batch is the point below the last
// returned thread's latest reply.
func (s *Service) Threads(ctx context.Context, req ThreadsRequest) (*ThreadsResponse, error) {
	var participant string
	switch req.Include {
	case "", "all":
	case "participated":
		participant = req.UserID
	default:
		return nil, apierr.InvalidParam("include must be all or participated")
	}
	limit := req.Limit
	if limit == 0 {
		return nil, apierr.InvalidParam("limit must be greater than zero")
	}
	if limit < 0 {
		limit = defaultThreadsLimit
	}
	limit = min(limit, maxEventLimit)
	upTo := int64(math.MaxInt64)
	if req.From != "" {
		p, err := parsePageToken(req.From)
		if err != nil {
			return nil, err
		}
		upTo = p
	}
	a, err := s.roomAccess(ctx, req.UserID, req.RoomID)
	if err != nil {
		return nil, err
	}
	upTo = min(upTo, a.upTo)
	ignored, err := s.ignoredUsers(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	h := &historyScan{s: s, userID: req.UserID, a: a, ignored: ignored, byPos: map[int64]storage.StoredEvent{}}
	var kept []*roomserver.Event
	more := false
	for pages := 0; pages < historyScanPages && len(kept) < limit && upTo > 0; pages++ {
		threads, err := s.relations().Threads(ctx, a.roomNID, participant, upTo, limit-len(kept)+1)
		if err != nil {
			return nil, err
		}
		more = len(threads) > limit-len(kept)
		if more {
			threads = threads[:limit-len(kept)]
		}
		ids := make([]string, len(threads))
		for i, t := range threads {
			ids[i] = t.RootID
		}
		rows, err := s.relations().EventsByID(ctx, ids)
		if err != nil {
			return nil, err
		}
		byID := map[string]storage.StoredEvent{}
		for _, r := range rows {
			if r.RoomNID == a.roomNID {
				byID[r.EventID] = r
				h.byPos[r.NID] = r
			}
		}
		var roots []storage.StoredEvent
		for _, t := range threads {
			if r, ok := byID[t.RootID]; ok {
				roots = append(roots, r)
			}
		}
		evs, err := s.rooms.EventsFromLog(ctx, roots, nil)
		if err != nil {
			return nil, err
		}
		visible, err := h.visible(ctx, evs)
		if err != nil {
			return nil, err
		}
		for i, e := range evs {
			if visible[i] && !ignored[e.Sender] {
				kept = append(kept, e)
			}
		}
		if len(threads) > 0 {
			upTo = threads[len(threads)-1].Latest - 1
		}
		if !more {
			break
		}
	}
	resp := &ThreadsResponse{}
	if more {
		resp.NextBatch = pageToken(upTo)
	}
	if resp.Chunk, err = s.renderBundled(ctx, h, kept, req.UserID, req.DeviceID, ignored); err != nil {
		return nil, err
	}
	return resp, nil
}
