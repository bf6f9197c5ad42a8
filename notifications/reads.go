package notifications

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"myelin/pushrules"
	"myelin/roomserver"
	"myelin/storage"
)

// Counts are one room's (or thread's) unread notification counts.
type Counts struct {
	Highlight    int64
	Notification int64
	Threads      map[string]Counts // thread root → counts (only when asked)
}

// catchUpWait bounds how long a count read waits for the consumer to
// reach the events already committed: the spec wants an event's count in
// the same /sync response as the event, and the consumer is normally a
// few milliseconds behind.
const catchUpWait = time.Second

// UnreadCounts returns userID's unread counts in roomIDs. It first waits
// (briefly) until every event committed so far has been evaluated. With
// threads, each room's own counts cover the main timeline and Threads the
// rest; without, a room's counts include its threads.
func (s *Service) UnreadCounts(ctx context.Context, userID string, roomIDs []string, threads bool) (map[string]Counts, error) {
	s.catchUp(ctx)
	rows, err := s.countRows(ctx, userID, roomIDs)
	if err != nil {
		return nil, err
	}
	out := map[string]Counts{}
	for _, r := range rows {
		c := out[r.RoomID]
		if threads && r.ThreadID != "main" {
			if c.Threads == nil {
				c.Threads = map[string]Counts{}
			}
			c.Threads[r.ThreadID] = Counts{Highlight: r.Highlight, Notification: r.Notifications}
		} else {
			c.Highlight += r.Highlight
			c.Notification += r.Notifications
		}
		out[r.RoomID] = c
	}
	return out, nil
}

// countRows reads userID's unread counts in roomIDs per room and thread:
// the receipts always, and for each room only the notification rows after
// what the count cache already holds for the same receipts.
func (s *Service) countRows(ctx context.Context, userID string, roomIDs []string) ([]storage.UnreadCount, error) {
	// Every notification of an event at or before pos is committed: the
	// consumer commits its rows with its position.
	pos := s.committed.get()
	// Each room once (its rows are appended per room below); the order
	// does not matter, the caller gets a map.
	roomIDs = slices.Compact(slices.Sorted(slices.Values(roomIDs)))
	bounds, err := s.store.ReadBounds(ctx, userID, roomIDs)
	if err != nil {
		return nil, err
	}
	base := make(map[string][]storage.UnreadCount, len(roomIDs))
	after := make(map[string]int64, len(roomIDs))
	var stale []string
	for _, room := range roomIDs {
		if e, ok := s.counts.get(userID, room); ok && e.upTo <= pos && e.bound.Equal(bounds[room]) {
			base[room] = e.rows
			if e.upTo == pos || s.marks.lastIn(room) <= e.upTo {
				continue // no notification of the room since the entry
			}
			after[room] = e.upTo
		}
		stale = append(stale, room)
	}
	var delta []storage.UnreadCount
	if len(stale) > 0 {
		if delta, err = s.store.CountUnread(ctx, userID, stale, bounds, after, pos); err != nil {
			return nil, err
		}
	}
	byRoom := make(map[string][]storage.UnreadCount, len(stale))
	for _, d := range delta {
		byRoom[d.RoomID] = append(byRoom[d.RoomID], d)
	}
	for _, room := range stale {
		rows := addCounts(base[room], byRoom[room])
		s.counts.put(userID, room, countEntry{upTo: pos, bound: bounds[room], rows: rows})
		base[room] = rows
	}
	var out []storage.UnreadCount
	for _, room := range roomIDs {
		out = append(out, base[room]...)
	}
	return out, nil
}

// catchUp waits (at most catchUpWait) until the events committed so far
// are evaluated, so a read after an event sees its notifications.
func (s *Service) catchUp(ctx context.Context) {
	s.WaitCounted(ctx, s.rooms.Notifier().Position())
}

// WaitCounted waits (at most catchUpWait) until every event up to
// position pos is evaluated. A /sync calls it as soon as it knows its
// position, beside its other reads, so the wait for the consumer's commit
// overlaps them instead of following them; UnreadCounts then finds the
// consumer caught up.
func (s *Service) WaitCounted(ctx context.Context, pos int64) {
	wctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	s.committed.wait(wctx, pos)
}

// Rules returns userID's effective push rules.
func (s *Service) Rules(ctx context.Context, userID string) (pushrules.Ruleset, error) {
	b, err := s.store.PushRules(ctx, userID)
	if err != nil {
		return pushrules.Ruleset{}, err
	}
	u, err := pushrules.ParseUserRules(b)
	if err != nil {
		return pushrules.Ruleset{}, err
	}
	return u.Effective(userID), nil
}

// EditRules applies fn to userID's rules in one transaction; an error
// from fn (pushrules.ErrInvalid, ErrNotFound) changes nothing. The next
// event evaluated for the user uses the new rules.
func (s *Service) EditRules(ctx context.Context, userID string, fn func(*pushrules.UserRules) error) error {
	s.editMu.Lock()
	defer s.editMu.Unlock()
	err := s.store.UpdatePushRules(ctx, userID, func(old []byte) ([]byte, error) {
		u, err := pushrules.ParseUserRules(old)
		if err != nil {
			return nil, err
		}
		if err := fn(u); err != nil {
			return nil, err
		}
		return json.Marshal(u)
	})
	if err != nil {
		return err
	}
	s.rulesMu.Lock()
	delete(s.evaluators, userID)
	s.rulesMu.Unlock()
	return s.publishRules(ctx, userID)
}

// PushRulesContent is userID's effective rules as m.push_rules account
// data content: {"global": ruleset}.
func (s *Service) PushRulesContent(ctx context.Context, userID string) (json.RawMessage, error) {
	rs, err := s.Rules(ctx, userID)
	if err != nil {
		return nil, err
	}
	content, err := json.Marshal(map[string]any{"global": rs})
	if err != nil {
		return nil, fmt.Errorf("encode push rules: %w", err)
	}
	return content, nil
}

// publishRules writes the user's effective rules to m.push_rules. It runs
// after the edit committed (the account data is syncapi's, in its own
// transaction); the edit stands even if this fails, and the next edit
// publishes the whole ruleset again.
func (s *Service) publishRules(ctx context.Context, userID string) error {
	pub := s.publish.Load()
	if pub == nil {
		return nil
	}
	content, err := s.PushRulesContent(ctx, userID)
	if err != nil {
		return err
	}
	if err := (*pub)(ctx, userID, content); err != nil {
		s.log.Error("publishing m.push_rules", "err", err)
	}
	return nil
}

// Notification is one entry of GET /notifications.
type Notification struct {
	Actions    json.RawMessage         `json:"actions"`
	Event      *roomserver.ClientEvent `json:"event"`
	ProfileTag string                  `json:"profile_tag,omitempty"`
	Read       bool                    `json:"read"`
	RoomID     string                  `json:"room_id"`
	TS         int64                   `json:"ts"`
}

// NotificationPage is the response of GET /notifications.
type NotificationPage struct {
	NextToken     string         `json:"next_token,omitempty"`
	Notifications []Notification `json:"notifications"`
}

// ErrBadToken is a from token this service did not issue.
var ErrBadToken = fmt.Errorf("invalid from token")

// Notifications lists userID's notifications, newest first, starting
// before from (a next_token; "" for the newest).
func (s *Service) Notifications(ctx context.Context, viewer roomserver.Viewer, from string, limit int, onlyHighlight bool) (*NotificationPage, error) {
	var before int64
	if from != "" {
		v, err := strconv.ParseInt(from, 10, 64)
		if err != nil || v <= 0 {
			return nil, ErrBadToken
		}
		before = v
	}
	s.catchUp(ctx)
	rows, err := s.store.Notifications(ctx, viewer.UserID, before, limit, onlyHighlight)
	if err != nil {
		return nil, err
	}
	page := &NotificationPage{Notifications: []Notification{}}
	if len(rows) == 0 {
		return page, nil
	}
	nids := make([]int64, len(rows))
	for i, r := range rows {
		nids[i] = r.EventNID
	}
	stored, err := s.sync.EventsByNID(ctx, nids)
	if err != nil {
		return nil, fmt.Errorf("read notified events: %w", err)
	}
	byNID := map[int64]storage.StoredEvent{}
	for _, e := range stored {
		byNID[e.NID] = e
	}
	ordered := make([]storage.StoredEvent, 0, len(rows))
	kept := make([]storage.Notification, 0, len(rows))
	for _, r := range rows {
		if e, ok := byNID[r.EventNID]; ok {
			ordered = append(ordered, e)
			kept = append(kept, r)
		}
	}
	events, err := s.rooms.EventsFromLog(ctx, ordered, nil)
	if err != nil {
		return nil, err
	}
	client, err := s.rooms.ClientEvents(ctx, events, viewer)
	if err != nil {
		return nil, err
	}
	for i, r := range kept {
		page.Notifications = append(page.Notifications, Notification{Actions: r.Actions, Event: &client[i], Read: r.Read, RoomID: r.RoomID, TS: r.TS})
	}
	if len(rows) == limit {
		page.NextToken = strconv.FormatInt(rows[len(rows)-1].EventNID, 10)
	}
	return page, nil
}

// Pusher is one registered pusher (delivered to by the pusher component).
type Pusher = storage.Pusher

// Pushers lists userID's pushers.
func (s *Service) Pushers(ctx context.Context, userID string) ([]Pusher, error) {
	return s.store.Pushers(ctx, userID)
}

// SetPusher stores a pusher (validated by the caller); appendOthers false
// removes other users' pushers with the same app_id and pushkey.
func (s *Service) SetPusher(ctx context.Context, p Pusher, appendOthers bool) error {
	return s.store.SetPusher(ctx, p, appendOthers)
}

// DeletePusher removes userID's pusher for (appID, pushKey).
func (s *Service) DeletePusher(ctx context.Context, userID, appID, pushKey string) error {
	return s.store.DeletePusher(ctx, userID, appID, pushKey)
}

// DevicesRemoved is account's hook (account.WithDevicesRemoved), run after
// devices of localpart were deleted: the pushers those devices created go
// too, so a logged-out or deleted device (or, on a password change with
// logout_devices, every other device) is no longer pushed to. Pushers
// with no recorded device are kept. It never blocks for long: a failure is
// logged and the pushers stay until the next removal.
func (s *Service) DevicesRemoved(localpart string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	userID := "@" + localpart + ":" + s.opts.ServerName
	if _, err := s.store.DeletePushersOfRemovedDevices(ctx, userID, localpart); err != nil {
		s.log.Error("removing the pushers of removed devices", "err", err)
	}
}
