package syncapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"myelin/internal/apierr"
	"myelin/roomserver"
	"myelin/storage"
)

// Server-side search (POST /search, "Server Side Search" in the spec):
// the room_events category over the full-text index of storage/search.go.
// Only rooms the user is or was in are searched, rooms they left only up
// to their departure (both in the query), and every result passes the
// roomserver's history visibility check, batched per page.

// SearchRequest is the body of POST /search.
type SearchRequest struct {
	SearchCategories *SearchCategories `json:"search_categories"`
}

// SearchCategories holds the categories searched. Unknown categories are
// ignored.
type SearchCategories struct {
	RoomEvents *RoomEventsCriteria `json:"room_events"`
}

// RoomEventsCriteria is the room_events category.
type RoomEventsCriteria struct {
	SearchTerm   *string             `json:"search_term"`
	Keys         []string            `json:"keys"`
	Filter       *RoomEventFilter    `json:"filter"`
	OrderBy      string              `json:"order_by"`
	EventContext *SearchEventContext `json:"event_context"`
	IncludeState bool                `json:"include_state"`
	Groupings    *SearchGroupings    `json:"groupings"`

	groupBy map[string]bool // validated group_by keys
	types   []string        // keys and filter types resolved to indexed types
}

// SearchEventContext asks for events around each result.
type SearchEventContext struct {
	BeforeLimit    *int `json:"before_limit"`
	AfterLimit     *int `json:"after_limit"`
	IncludeProfile bool `json:"include_profile"`
}

// SearchGroupings asks for results grouped by room or sender.
type SearchGroupings struct {
	GroupBy []struct {
		Key string `json:"key"`
	} `json:"group_by"`
}

// SearchResponse is the /search response.
type SearchResponse struct {
	SearchCategories searchResultCategories `json:"search_categories"`
}

type searchResultCategories struct {
	RoomEvents *RoomEventsResults `json:"room_events,omitempty"`
}

// RoomEventsResults is the room_events part of the response.
type RoomEventsResults struct {
	Count      int                                       `json:"count"`
	Highlights []string                                  `json:"highlights"`
	Results    []SearchResult                            `json:"results"`
	NextBatch  string                                    `json:"next_batch,omitempty"`
	State      map[string][]json.RawMessage              `json:"state,omitempty"`
	Groups     map[string]map[string]*SearchGroupResults `json:"groups,omitempty"`
}

// SearchResult is one matching event.
type SearchResult struct {
	Rank    float64         `json:"rank"`
	Result  json.RawMessage `json:"result"`
	Context *SearchContext  `json:"context,omitempty"`
}

// SearchContext is the context of a result.
type SearchContext struct {
	Start        string                   `json:"start,omitempty"`
	End          string                   `json:"end,omitempty"`
	EventsBefore []json.RawMessage        `json:"events_before"`
	EventsAfter  []json.RawMessage        `json:"events_after"`
	ProfileInfo  map[string]searchProfile `json:"profile_info,omitempty"`
}

type searchProfile struct {
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// SearchGroupResults is one group's results.
type SearchGroupResults struct {
	NextBatch string   `json:"next_batch,omitempty"`
	Order     int      `json:"order"`
	Results   []string `json:"results"`
}

// Search bounds: a page, the context around each result, and how many
// index pages one request may read when visibility hides many hits (an
// empty page with a next_batch is a valid answer; the client pages on).
const (
	defaultSearchLimit   = 10
	maxSearchLimit       = 100
	defaultSearchContext = 5
	maxSearchContext     = 50
	searchScanPages      = 5
)

var searchKeyTypes = map[string]string{
	"content.body":  "m.room.message",
	"content.name":  "m.room.name",
	"content.topic": "m.room.topic",
}

// validate checks the criteria and resolves keys and the filter's types
// into the indexed event types: M_BAD_JSON for a missing or malformed
// part, M_INVALID_PARAM for a value outside the spec's enums.
func (c *RoomEventsCriteria) validate() error {
	if c.SearchTerm == nil {
		return apierr.BadJSON("room_events.search_term is required")
	}
	switch c.OrderBy {
	case "", "rank", "recent":
	default:
		return apierr.InvalidParam("order_by must be rank or recent")
	}
	if err := c.Filter.validate("filter"); err != nil {
		return apierr.BadJSON(err.Error())
	}
	if ec := c.EventContext; ec != nil {
		if (ec.BeforeLimit != nil && *ec.BeforeLimit < 0) || (ec.AfterLimit != nil && *ec.AfterLimit < 0) {
			return apierr.InvalidParam("event_context limits must not be negative")
		}
	}
	c.groupBy = map[string]bool{}
	if c.Groupings != nil {
		for _, g := range c.Groupings.GroupBy {
			if g.Key != "room_id" && g.Key != "sender" {
				return apierr.InvalidParam("group_by key must be room_id or sender")
			}
			c.groupBy[g.Key] = true
		}
	}
	keys := c.Keys
	if keys == nil {
		keys = []string{"content.body", "content.name", "content.topic"}
	}
	c.types = []string{}
	seen := map[string]bool{}
	for _, k := range keys {
		t, ok := searchKeyTypes[k]
		if !ok {
			return apierr.InvalidParam("keys must be content.body, content.name or content.topic")
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		if f := c.Filter; f != nil && (matchAny(f.NotTypes, t, true) || (f.Types != nil && !matchAny(f.Types, t, true))) {
			continue
		}
		c.types = append(c.types, t)
	}
	return nil
}

// searchCursor is the opaque next_batch: the order it belongs to and the
// position in it (an offset for rank, the last event's position for
// recent).
type searchCursor struct {
	byRank bool
	value  int64
}

func (c searchCursor) String() string {
	kind := "n"
	if c.byRank {
		kind = "r"
	}
	return base64.RawURLEncoding.EncodeToString([]byte("s1:" + kind + ":" + strconv.FormatInt(c.value, 10)))
}

func parseSearchCursor(s string, byRank bool) (searchCursor, error) {
	bad := apierr.InvalidParam("invalid next_batch")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return searchCursor{}, bad
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 3 || parts[0] != "s1" || (parts[1] == "r") != byRank || (parts[1] != "r" && parts[1] != "n") {
		return searchCursor{}, bad
	}
	v, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || v <= 0 || (byRank && v > math.MaxInt32) {
		return searchCursor{}, bad
	}
	return searchCursor{byRank: byRank, value: v}, nil
}

// Search is POST /search. nextBatch is the query parameter ("" for the
// first page).
func (s *Service) Search(ctx context.Context, userID, deviceID string, req *SearchRequest, nextBatch string) (*SearchResponse, error) {
	if req.SearchCategories == nil {
		return nil, apierr.BadJSON("search_categories is required")
	}
	resp := &SearchResponse{}
	c := req.SearchCategories.RoomEvents
	if c == nil {
		// Only room_events exists; other categories are ignored.
		return resp, nil
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	byRank := c.OrderBy != "recent"
	var cursor searchCursor
	if nextBatch != "" {
		var err error
		if cursor, err = parseSearchCursor(nextBatch, byRank); err != nil {
			return nil, err
		}
	}
	words := storage.SearchWords(*c.SearchTerm)
	limit := min(c.Filter.eventFilter().limit(defaultSearchLimit), maxSearchLimit)
	q := storage.SearchQuery{UserID: userID, Words: words, Types: c.types, ByRank: byRank, Limit: max(limit, 1)}
	if f := c.Filter; f != nil {
		q.Rooms, q.NotRooms, q.Senders, q.NotSenders = f.Rooms, f.NotRooms, f.Senders, f.NotSenders
	}
	if byRank {
		q.Offset = int(cursor.value)
	} else {
		q.BeforeNID = cursor.value
	}
	store := storage.NewSearch(s.opts.DB)
	out := &RoomEventsResults{Highlights: words, Results: []SearchResult{}}
	if out.Highlights == nil {
		out.Highlights = []string{}
	}
	resp.SearchCategories.RoomEvents = out
	// Index what was sent since the background indexer last ran, so a
	// search finds an event as soon as its send was answered.
	if err := store.CatchUp(ctx); err != nil {
		return nil, err
	}
	count, err := store.Count(ctx, q)
	if err != nil {
		return nil, err
	}
	out.Count = count

	hits, next, err := s.searchPage(ctx, store, q, limit, c.Filter)
	if err != nil {
		return nil, err
	}
	if next != nil {
		out.NextBatch = next.String()
	}
	if len(hits) == 0 {
		return resp, nil
	}
	evs := make([]*roomserver.Event, len(hits))
	for i, h := range hits {
		evs[i] = h.event
	}
	viewer := roomserver.Viewer{UserID: userID, DeviceID: deviceID}
	ces, err := s.rooms.ClientEvents(ctx, evs, viewer)
	if err != nil {
		return nil, err
	}
	format := newEventFormat(nil, true)
	ctxs := &searchContexts{s: s, userID: userID, viewer: viewer, access: map[string]access{}}
	for i, h := range hits {
		r := SearchResult{Rank: h.rank, Result: format.render(ces[i], h.event, "")}
		if c.EventContext != nil {
			if r.Context, err = ctxs.around(ctx, h, c.EventContext); err != nil {
				return nil, err
			}
		}
		out.Results = append(out.Results, r)
	}
	if len(c.groupBy) > 0 {
		out.Groups = map[string]map[string]*SearchGroupResults{}
		for key := range c.groupBy {
			groups := map[string]*SearchGroupResults{}
			for _, h := range hits {
				v := h.event.RoomID
				if key == "sender" {
					v = h.event.Sender
				}
				g, ok := groups[v]
				if !ok {
					g = &SearchGroupResults{Order: len(groups) + 1}
					groups[v] = g
				}
				g.Results = append(g.Results, h.event.EventID)
			}
			out.Groups[key] = groups
		}
	}
	if c.IncludeState {
		out.State = map[string][]json.RawMessage{}
		for _, h := range hits {
			roomID := h.event.RoomID
			if _, done := out.State[roomID]; done {
				continue
			}
			state, err := s.rooms.StateFor(ctx, roomID, userID)
			if err != nil {
				return nil, err
			}
			sces, err := s.rooms.ClientEvents(ctx, state, viewer)
			if err != nil {
				return nil, err
			}
			rendered := make([]json.RawMessage, len(state))
			for i, e := range state {
				rendered[i] = format.render(sces[i], e, "")
			}
			out.State[roomID] = rendered
		}
	}
	return resp, nil
}

type searchHit struct {
	event *roomserver.Event
	row   storage.StoredEvent
	rank  float64
}

// searchPage reads index pages until limit results pass the checks the
// query cannot do (history visibility, ignored users, contains_url) or
// the hits run out; next is where the following page starts (nil at the
// end).
func (s *Service) searchPage(ctx context.Context, store *storage.Search, q storage.SearchQuery, limit int, filter *RoomEventFilter) ([]searchHit, *searchCursor, error) {
	if limit == 0 || len(q.Words) == 0 || len(q.Types) == 0 {
		return nil, nil, nil
	}
	ignored, err := s.ignoredUsers(ctx, q.UserID)
	if err != nil {
		return nil, nil, err
	}
	rooms, err := s.userRooms(ctx, q.UserID)
	if err != nil {
		return nil, nil, err
	}
	joinedSince := map[int64]int64{} // room NID → join position, for rooms the user is joined to
	for _, m := range rooms {
		if m.Membership == "join" {
			joinedSince[m.RoomNID] = m.EventNID
		}
	}
	var out []searchHit
	for pages := 0; pages < searchScanPages; pages++ {
		hits, err := store.Search(ctx, q)
		if err != nil {
			return nil, nil, err
		}
		rows := make([]storage.StoredEvent, len(hits))
		for i, h := range hits {
			rows[i] = h.Event
		}
		evs, err := s.rooms.EventsFromLog(ctx, rows, nil)
		if err != nil {
			return nil, nil, err
		}
		// A joined user sees everything after their join without a check;
		// the rest goes to the roomserver in one batch.
		var check []*roomserver.Event
		for i, e := range evs {
			if pos, ok := joinedSince[rows[i].RoomNID]; !ok || e.Position <= pos {
				check = append(check, e)
			}
		}
		visible := map[int64]bool{}
		if len(check) > 0 {
			vis, err := s.rooms.Visible(ctx, q.UserID, check)
			if err != nil {
				return nil, nil, err
			}
			for _, e := range vis {
				visible[e.Position] = true
			}
		}
		for i, e := range evs {
			if q.ByRank {
				q.Offset++
			} else {
				q.BeforeNID = e.Position
			}
			if pos, ok := joinedSince[rows[i].RoomNID]; ok && e.Position > pos {
				visible[e.Position] = true
			}
			if !visible[e.Position] || ignored[e.Sender] {
				continue
			}
			if filter != nil && filter.ContainsURL != nil && (gjson.GetBytes(e.Content, "url").Type == gjson.String) != *filter.ContainsURL {
				continue
			}
			out = append(out, searchHit{event: e, row: rows[i], rank: hits[i].Rank})
			if len(out) == limit {
				if i == len(evs)-1 && len(hits) < q.Limit {
					return out, nil, nil
				}
				return out, cursorOf(q), nil
			}
		}
		if len(hits) < q.Limit {
			return out, nil, nil
		}
	}
	return out, cursorOf(q), nil
}

func cursorOf(q storage.SearchQuery) *searchCursor {
	if q.ByRank {
		return &searchCursor{byRank: true, value: int64(q.Offset)}
	}
	return &searchCursor{value: q.BeforeNID}
}

// searchContexts reads the events around results, caching each room's
// access for the request.
type searchContexts struct {
	s      *Service
	userID string
	viewer roomserver.Viewer
	access map[string]access
}

func (sc *searchContexts) around(ctx context.Context, h searchHit, spec *SearchEventContext) (*SearchContext, error) {
	a, ok := sc.access[h.event.RoomID]
	if !ok {
		var err error
		if a, err = sc.s.roomAccess(ctx, sc.userID, h.event.RoomID); err != nil {
			return nil, fmt.Errorf("search context: %w", err)
		}
		sc.access[h.event.RoomID] = a
	}
	before, after := defaultSearchContext, defaultSearchContext
	if spec.BeforeLimit != nil {
		before = min(*spec.BeforeLimit, maxSearchContext)
	}
	if spec.AfterLimit != nil {
		after = min(*spec.AfterLimit, maxSearchContext)
	}
	ignored, err := sc.s.ignoredUsers(ctx, sc.userID)
	if err != nil {
		return nil, err
	}
	hs := &historyScan{s: sc.s, userID: sc.userID, a: a, ignored: ignored, byPos: map[int64]storage.StoredEvent{}}
	evBefore, _, _, err := hs.scan(ctx, h.event.Position-1, 0, true, before)
	if err != nil {
		return nil, err
	}
	evAfter, _, _, err := hs.scan(ctx, h.event.Position, math.MaxInt64, false, after)
	if err != nil {
		return nil, err
	}
	all := append(append([]*roomserver.Event{}, evBefore...), evAfter...)
	ces, err := sc.s.rooms.ClientEvents(ctx, all, sc.viewer)
	if err != nil {
		return nil, err
	}
	format := newEventFormat(nil, true)
	out := &SearchContext{EventsBefore: []json.RawMessage{}, EventsAfter: []json.RawMessage{}}
	for i, e := range all {
		raw := format.render(ces[i], e, "")
		if i < len(evBefore) {
			out.EventsBefore = append(out.EventsBefore, raw)
		} else {
			out.EventsAfter = append(out.EventsAfter, raw)
		}
	}
	first, last := h.event, h.event
	if len(evBefore) > 0 {
		first = evBefore[len(evBefore)-1]
	}
	if len(evAfter) > 0 {
		last = evAfter[len(evAfter)-1]
	}
	out.Start, out.End = pageToken(first.Position-1), pageToken(last.Position)
	if spec.IncludeProfile {
		if out.ProfileInfo, err = sc.profiles(ctx, h, append(all, h.event)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// profiles is each sender's display name and avatar as of the result
// (their member event in the state at it).
func (sc *searchContexts) profiles(ctx context.Context, h searchHit, evs []*roomserver.Event) (map[string]searchProfile, error) {
	var senders []string
	seen := map[string]bool{}
	for _, e := range evs {
		if !seen[e.Sender] {
			seen[e.Sender] = true
			senders = append(senders, e.Sender)
		}
	}
	group := h.row.StateGroup
	state, err := sc.s.store.StateAtGroups(ctx, []int64{group}, []string{"m.room.member"}, senders)
	if err != nil {
		return nil, err
	}
	var nids []int64
	for _, e := range state[group] {
		if seen[e.StateKey] {
			nids = append(nids, e.EventNID)
		}
	}
	rows, err := sc.s.store.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	out := map[string]searchProfile{}
	for _, r := range rows {
		if r.StateKey == nil {
			continue
		}
		c := gjson.GetBytes(r.JSON, "content")
		out[*r.StateKey] = searchProfile{DisplayName: c.Get("displayname").String(), AvatarURL: c.Get("avatar_url").String()}
	}
	return out, nil
}
