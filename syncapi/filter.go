package syncapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"myelin/internal/apierr"
	"myelin/storage"
)

// Filter is the spec's Filter (POST /user/{userId}/filter, ?filter= on
// /sync). A list that is absent (nil) allows everything; a present empty
// list allows nothing, as the spec's "if this list is absent" wording
// implies.
type Filter struct {
	EventFields []string     `json:"event_fields,omitempty"`
	EventFormat string       `json:"event_format,omitempty"`
	Presence    *EventFilter `json:"presence,omitempty"`
	AccountData *EventFilter `json:"account_data,omitempty"`
	Room        *RoomFilter  `json:"room,omitempty"`
}

// EventFilter is the spec's EventFilter.
type EventFilter struct {
	Limit      *int     `json:"limit,omitempty"`
	NotSenders []string `json:"not_senders,omitempty"`
	NotTypes   []string `json:"not_types,omitempty"`
	Senders    []string `json:"senders,omitempty"`
	Types      []string `json:"types,omitempty"`
}

// RoomEventFilter is the spec's RoomEventFilter.
type RoomEventFilter struct {
	EventFilter
	UnreadThreadNotifications bool     `json:"unread_thread_notifications,omitempty"`
	LazyLoadMembers           bool     `json:"lazy_load_members,omitempty"`
	IncludeRedundantMembers   bool     `json:"include_redundant_members,omitempty"`
	NotRooms                  []string `json:"not_rooms,omitempty"`
	Rooms                     []string `json:"rooms,omitempty"`
	ContainsURL               *bool    `json:"contains_url,omitempty"`
}

// RoomFilter is the spec's RoomFilter.
type RoomFilter struct {
	NotRooms     []string         `json:"not_rooms,omitempty"`
	Rooms        []string         `json:"rooms,omitempty"`
	Ephemeral    *RoomEventFilter `json:"ephemeral,omitempty"`
	IncludeLeave bool             `json:"include_leave,omitempty"`
	State        *RoomEventFilter `json:"state,omitempty"`
	Timeline     *RoomEventFilter `json:"timeline,omitempty"`
	AccountData  *RoomEventFilter `json:"account_data,omitempty"`
}

// Limits. The spec asks servers to apply a default and impose a maximum.
const (
	defaultTimelineLimit = 10
	maxEventLimit        = 1000
)

// ParseFilter decodes and validates a filter definition: M_NOT_JSON for
// text that is not JSON, M_BAD_JSON for JSON that is not a valid filter.
func ParseFilter(body []byte) (*Filter, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || !json.Valid(trimmed) {
		return nil, apierr.NotJSON("filter is not JSON")
	}
	if trimmed[0] != '{' {
		return nil, apierr.BadJSON("filter must be a JSON object")
	}
	var f Filter
	if err := json.Unmarshal(trimmed, &f); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, apierr.BadJSON("filter: wrong type for " + te.Field)
		}
		return nil, apierr.BadJSON("filter is malformed")
	}
	if err := f.validate(); err != nil {
		return nil, apierr.BadJSON("filter: " + err.Error())
	}
	return &f, nil
}

func (f *Filter) validate() error {
	switch f.EventFormat {
	case "", "client", "federation":
	default:
		return fmt.Errorf("event_format must be client or federation")
	}
	for _, p := range f.EventFields {
		if p == "" {
			return fmt.Errorf("event_fields entries must not be empty")
		}
	}
	if err := f.Presence.validate("presence"); err != nil {
		return err
	}
	if err := f.AccountData.validate("account_data"); err != nil {
		return err
	}
	if r := f.Room; r != nil {
		if err := checkRooms("room.rooms", r.Rooms); err != nil {
			return err
		}
		if err := checkRooms("room.not_rooms", r.NotRooms); err != nil {
			return err
		}
		for name, ref := range map[string]*RoomEventFilter{"room.ephemeral": r.Ephemeral, "room.state": r.State,
			"room.timeline": r.Timeline, "room.account_data": r.AccountData} {
			if err := ref.validate(name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *EventFilter) validate(name string) error {
	if e == nil {
		return nil
	}
	// NOTSPEC: the spec asks clients for a limit above 0; 0 is accepted
	// (clients and Complement use it to ask for state without a timeline)
	// and means no events.
	if e.Limit != nil && *e.Limit < 0 {
		return fmt.Errorf("%s.limit must not be negative", name)
	}
	for _, s := range slicesConcat(e.Senders, e.NotSenders) {
		if !strings.HasPrefix(s, "@") || len(s) > 255 {
			return fmt.Errorf("%s: %q is not a user ID", name, truncate(s, 64))
		}
	}
	for _, t := range slicesConcat(e.Types, e.NotTypes) {
		if len(t) > 255 {
			return fmt.Errorf("%s: event type too long", name)
		}
	}
	return nil
}

func (r *RoomEventFilter) validate(name string) error {
	if r == nil {
		return nil
	}
	if err := r.EventFilter.validate(name); err != nil {
		return err
	}
	if err := checkRooms(name+".rooms", r.Rooms); err != nil {
		return err
	}
	return checkRooms(name+".not_rooms", r.NotRooms)
}

func checkRooms(name string, ids []string) error {
	for _, id := range ids {
		if !validRoomID(id) {
			return fmt.Errorf("%s: %q is not a room ID", name, truncate(id, 64))
		}
	}
	return nil
}

func slicesConcat(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

// validRoomID checks the shape of a room ID: "!" then an opaque local part
// (room version 12 IDs have no server name), at most 255 bytes, no
// whitespace or control characters.
func validRoomID(id string) bool {
	if len(id) < 2 || len(id) > 255 || id[0] != '!' {
		return false
	}
	for _, c := range id {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// globMatch matches an event type against a filter pattern where "*"
// stands for any run of characters.
func globMatch(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last)
}

func matchAny(patterns []string, s string, glob bool) bool {
	for _, p := range patterns {
		if (glob && globMatch(p, s)) || (!glob && p == s) {
			return true
		}
	}
	return false
}

// allows applies types/not_types and senders/not_senders. A nil filter
// allows everything.
func (e *EventFilter) allows(eventType, sender string) bool {
	if e == nil {
		return true
	}
	if matchAny(e.NotTypes, eventType, true) || matchAny(e.NotSenders, sender, false) {
		return false
	}
	if e.Types != nil && !matchAny(e.Types, eventType, true) {
		return false
	}
	if e.Senders != nil && !matchAny(e.Senders, sender, false) {
		return false
	}
	return true
}

// limit is the filter's limit, or def when unset, capped at the maximum.
func (e *EventFilter) limit(def int) int {
	if e == nil || e.Limit == nil {
		return def
	}
	return min(*e.Limit, maxEventLimit)
}

func (r *RoomEventFilter) eventFilter() *EventFilter {
	if r == nil {
		return nil
	}
	return &r.EventFilter
}

// allowsRoom applies rooms/not_rooms.
func (r *RoomEventFilter) allowsRoom(roomID string) bool {
	if r == nil {
		return true
	}
	if matchAny(r.NotRooms, roomID, false) {
		return false
	}
	return r.Rooms == nil || matchAny(r.Rooms, roomID, false)
}

// allowsEvent applies the event filter and contains_url to a room event.
func (r *RoomEventFilter) allowsEvent(eventType, sender string, content []byte) bool {
	if r == nil {
		return true
	}
	if !r.EventFilter.allows(eventType, sender) {
		return false
	}
	if r.ContainsURL != nil {
		hasURL := gjson.GetBytes(content, "url").Type == gjson.String
		if hasURL != *r.ContainsURL {
			return false
		}
	}
	return true
}

func (r *RoomEventFilter) lazyMembers() bool { return r != nil && r.LazyLoadMembers }

func (r *RoomEventFilter) redundantMembers() bool { return r != nil && r.IncludeRedundantMembers }

// allowsRoom applies the top-level rooms/not_rooms (before every other
// room filter).
func (r *RoomFilter) allowsRoom(roomID string) bool {
	if r == nil {
		return true
	}
	if matchAny(r.NotRooms, roomID, false) {
		return false
	}
	return r.Rooms == nil || matchAny(r.Rooms, roomID, false)
}

func (f *Filter) room() *RoomFilter {
	if f.Room == nil {
		return &RoomFilter{}
	}
	return f.Room
}

// PutFilter stores a filter for userID and returns its ID.
func (s *Service) PutFilter(ctx context.Context, userID string, body []byte) (string, error) {
	if _, err := ParseFilter(body); err != nil {
		return "", err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, bytes.TrimSpace(body)); err != nil {
		return "", apierr.NotJSON("filter is not JSON")
	}
	id, err := s.store.PutFilter(ctx, userID, compact.String())
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(id, 10), nil
}

// GetFilter returns a stored filter as uploaded. M_NOT_FOUND if the user
// has no such filter.
func (s *Service) GetFilter(ctx context.Context, userID, filterID string) (json.RawMessage, error) {
	id, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil || id <= 0 {
		return nil, apierr.NotFound("unknown filter")
	}
	js, err := s.store.Filter(ctx, userID, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, apierr.NotFound("unknown filter")
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(js), nil
}

// resolveFilter reads the ?filter= parameter: inline JSON when it starts
// with "{", otherwise a stored filter's ID. "" is the empty filter.
func (s *Service) resolveFilter(ctx context.Context, userID, param string) (*Filter, error) {
	param = strings.TrimSpace(param)
	if param == "" {
		return &Filter{}, nil
	}
	if strings.HasPrefix(param, "{") {
		return ParseFilter([]byte(param))
	}
	js, err := s.GetFilter(ctx, userID, param)
	if err != nil {
		if e, ok := apierr.As(err); ok && e.Code == "M_NOT_FOUND" {
			return nil, apierr.InvalidParam("unknown filter ID")
		}
		return nil, err
	}
	return ParseFilter(js)
}

// ParseRoomEventFilter decodes the ?filter= of /messages and /context: an
// inline RoomEventFilter. "" is no filter.
func ParseRoomEventFilter(param string) (*RoomEventFilter, error) {
	trimmed := bytes.TrimSpace([]byte(param))
	if len(trimmed) == 0 {
		return nil, nil
	}
	if !json.Valid(trimmed) {
		return nil, apierr.NotJSON("filter is not JSON")
	}
	if trimmed[0] != '{' {
		return nil, apierr.BadJSON("filter must be a JSON object")
	}
	var f RoomEventFilter
	if err := json.Unmarshal(trimmed, &f); err != nil {
		return nil, apierr.BadJSON("filter is malformed")
	}
	if err := f.validate("filter"); err != nil {
		return nil, apierr.BadJSON(err.Error())
	}
	return &f, nil
}
