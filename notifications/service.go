// Package notifications owns what push rules produce: a durable consumer
// of the event log that evaluates every new event for each local member of
// its room (except the sender) with that member's push rules, and stores
// the resulting notifications — with its own event-log position — in one
// transaction per batch; unread counts for /sync; the notification list
// (/notifications); users' push rules (/pushrules) and pushers (/pushers).
//
// It sits beside syncapi, not inside it: it needs the roomserver's event
// log and the storage, and syncapi reads its counts through the small
// UnreadCounter interface syncapi declares (adapted in cmd/myelin).
// Evaluation itself is the pure pushrules package. See README.md.
package notifications

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"myelin/pushrules"
	"myelin/roomserver"
	"myelin/storage"
)

// consumerName keys this consumer's position in consumer_positions.
const consumerName = "notifications"

// Options configure a Service. DB, Rooms and ServerName are required.
type Options struct {
	DB         *storage.DB
	Rooms      *roomserver.Service
	ServerName string
	// Wake is called with the users whose counts changed, after the commit
	// (syncapi.Service.Wake), so their long-polls return with the counts.
	Wake func(userIDs ...string)
	// BatchSize bounds the events evaluated per transaction (500 if 0).
	BatchSize int
	// Gather is how long the consumer waits for more events before a
	// batch while nobody waits for its counts (gatherWait if 0, none if
	// negative).
	Gather time.Duration
	Logger *slog.Logger
}

// Service is the notifications component.
type Service struct {
	opts  Options
	store *storage.Push
	sync  *storage.Sync
	rooms *roomserver.Service
	log   *slog.Logger

	committed *position

	rulesMu    sync.Mutex
	evaluators map[string]*pushrules.Evaluator // per user, dropped on edit
	editMu     sync.Mutex                      // serialises rule edits

	states *stateCache
	counts *countCache
	marks  *roomMarks
	wake   atomic.Pointer[func(userIDs ...string)]
	// publish puts a user's rules in their m.push_rules account data.
	publish atomic.Pointer[func(ctx context.Context, userID string, content json.RawMessage) error]

	cancel context.CancelFunc
	done   chan struct{}
}

// New starts the consumer at its stored position. A database that never
// had one starts at the current end of the event log: history from before
// this component existed notifies nobody.
func New(opts Options) (*Service, error) {
	if opts.DB == nil || opts.Rooms == nil || opts.ServerName == "" {
		return nil, errors.New("notifications: DB, Rooms and ServerName are required")
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.Gather == 0 {
		opts.Gather = gatherWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Service{
		opts: opts, store: storage.NewPush(opts.DB), sync: storage.NewSync(opts.DB), rooms: opts.Rooms,
		log: opts.Logger.With("component", "notifications"), evaluators: map[string]*pushrules.Evaluator{},
		states: newStateCache(256), counts: newCountCache(), done: make(chan struct{}),
	}
	ctx := context.Background()
	pos, ok, err := s.store.ConsumerPosition(ctx, consumerName)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	if !ok {
		pos = opts.Rooms.Notifier().Position()
		if err := s.store.StoreNotifications(ctx, consumerName, pos, nil); err != nil {
			return nil, fmt.Errorf("notifications: %w", err)
		}
	}
	s.committed = newPosition(pos)
	s.marks = newRoomMarks(pos)
	if opts.Wake != nil {
		s.SetWake(opts.Wake)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(runCtx, pos)
	return s, nil
}

// SetWake sets the function told which users' counts changed (for a
// sync service built after this one).
func (s *Service) SetWake(fn func(userIDs ...string)) { s.wake.Store(&fn) }

// SetRulesPublisher sets where a user's effective rules go after each
// edit: the m.push_rules account data (syncapi.Service.SetAccountData), so
// clients see changes made by their other devices through /sync.
func (s *Service) SetRulesPublisher(fn func(ctx context.Context, userID string, content json.RawMessage) error) {
	s.publish.Store(&fn)
}

// Close stops the consumer after its current batch (committed or not: an
// uncommitted batch is evaluated again at the next start).
func (s *Service) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// Position is the event-log position whose notifications are committed.
func (s *Service) Position() int64 { return s.committed.get() }

// gatherWait is how long the consumer lets events gather before a batch
// that nobody waits for. Each batch is a transaction on SQLite's single
// writer connection (the rooms' commits queue behind it) plus per-batch
// reads; under a stream of sends an immediate batch after every commit
// held one to three events. Whoever needs the batch — a /sync or
// /notifications waiting for counts — ends the wait at once, so only
// pushes to pushers can be this much later.
const gatherWait = 5 * time.Millisecond

func (s *Service) run(ctx context.Context, pos int64) {
	defer close(s.done)
	notifier := s.rooms.Notifier()
	var gather *time.Timer
	if s.opts.Gather > 0 {
		gather = time.NewTimer(s.opts.Gather)
		gather.Stop()
		defer gather.Stop()
	}
	for {
		upTo, err := notifier.Wait(ctx, pos)
		if err != nil {
			return
		}
		if gather != nil && upTo-pos < int64(s.opts.BatchSize) && s.committed.gatherable() {
			gather.Reset(s.opts.Gather)
			select {
			case <-ctx.Done():
				return
			case <-gather.C:
			case <-s.committed.demand:
				gather.Stop()
			}
			upTo = max(upTo, notifier.Position())
		}
		next, err := s.processBatch(ctx, pos, upTo)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// The batch is retried: nothing of it was committed.
			s.log.Error("evaluating push rules", "err", err, "after", pos)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		pos = next
	}
}

// processBatch evaluates events (after, upTo] (at most a batch) and commits
// their notifications with the new position; it returns that position.
func (s *Service) processBatch(ctx context.Context, after, upTo int64) (int64, error) {
	rows, err := s.store.EventsAfter(ctx, after, upTo, s.opts.BatchSize)
	if err != nil {
		return after, err
	}
	next := upTo
	if len(rows) == s.opts.BatchSize {
		next = rows[len(rows)-1].NID
	}
	var b storage.NotificationBatch
	if len(rows) > 0 {
		b, err = s.evaluate(ctx, rows)
		if err != nil {
			return after, err
		}
	}
	if err := s.store.StoreBatch(ctx, consumerName, next, b); err != nil {
		return after, err
	}
	s.counts.advance(after, next, s.marks, b)
	s.marks.note(b)
	s.committed.advance(next)
	if wake := s.wake.Load(); wake != nil && (len(b.Explicit) > 0 || len(b.Shared) > 0) {
		woken := map[string]bool{}
		var users []string
		add := func(u string) {
			if !woken[u] {
				woken[u] = true
				users = append(users, u)
			}
		}
		for _, n := range b.Explicit {
			add(n.UserID)
		}
		for _, sh := range b.Shared {
			for _, u := range sh.Notified {
				add(u)
			}
		}
		(*wake)(users...)
	}
	return next, nil
}

func (s *Service) local(userID string) bool {
	return strings.HasSuffix(userID, ":"+s.opts.ServerName)
}

// plainActions are the actions of a plain notification: what the default
// rules give every member for a message, stored once per event.
const plainActions = `["notify"]`

// evaluate evaluates rows for their recipients. An event that notified at
// least one joined member plainly (actions exactly ["notify"], no
// highlight) becomes one shared row, with the other joined members as its
// skips and their explicit rows if they were notified otherwise; without
// a plain recipient every notification is explicit. An invitee is not
// joined: always explicit. Local members' membership events maintain the
// join spans the shared rows are read through.
func (s *Service) evaluate(ctx context.Context, rows []storage.StoredEvent) (storage.NotificationBatch, error) {
	var out storage.NotificationBatch
	events, err := s.rooms.EventsFromLog(ctx, rows, nil)
	if err != nil {
		return out, fmt.Errorf("read events: %w", err)
	}
	groups := make([]int64, 0, len(rows))
	for _, r := range rows {
		groups = append(groups, r.StateGroup)
	}
	states, err := s.roomStates(ctx, groups)
	if err != nil {
		return out, err
	}
	out.RoomNIDs = make(map[string]int64, 4)
	for i, e := range events {
		out.RoomNIDs[e.RoomID] = rows[i].RoomNID
		membership := ""
		if e.Type == "m.room.member" && e.StateKey != nil {
			var c struct {
				Membership string `json:"membership"`
			}
			if json.Unmarshal(e.Content, &c) == nil {
				membership = c.Membership
			}
			// Every membership event of a local user moves their join span,
			// redacted or not (redaction keeps membership).
			if s.local(*e.StateKey) && membership != "" {
				out.Memberships = append(out.Memberships, storage.JoinChange{RoomID: e.RoomID, UserID: *e.StateKey, EventNID: e.Position, Joined: membership == "join"})
			}
		}
		if e.Redacted() {
			continue
		}
		st := states[rows[i].StateGroup]
		if st == nil {
			continue
		}
		recipients := make([]string, 0, len(st.members))
		for u := range st.members {
			if u != e.Sender {
				recipients = append(recipients, u)
			}
		}
		invitee := ""
		if membership == "invite" && *e.StateKey != e.Sender && s.local(*e.StateKey) {
			invitee = *e.StateKey
		}
		if len(recipients) == 0 && invitee == "" {
			continue
		}
		pev, err := pushrules.NewEventOf(pushrules.Fields{Type: e.Type, StateKey: e.StateKey, Sender: e.Sender, RoomID: e.RoomID, EventID: e.EventID}, e.Content)
		if err != nil {
			continue // content that is not JSON cannot match any rule
		}
		room := &pushrules.Room{MemberCount: st.joined, SenderPower: st.power(e.Sender), NotificationLevels: st.notifLevels}
		all := recipients
		if invitee != "" {
			all = append(slices.Clip(recipients), invitee)
		}
		evals, err := s.evaluatorsFor(ctx, all)
		if err != nil {
			return out, err
		}
		thread := ""
		// explicit are this event's notifications that are not plain;
		// skipped the joined recipients it did not plainly notify.
		var explicit []storage.Notification
		var plain, skipped []string
		for _, u := range all {
			res := evals[u].Evaluate(pev, room, st.members[u])
			joined := u != invitee
			if !res.Notify {
				if joined {
					skipped = append(skipped, u)
				}
				continue
			}
			if thread == "" {
				if thread, err = s.threadFor(ctx, pev, e); err != nil {
					return out, err
				}
			}
			acts := res.ActionsJSON
			if joined && !res.Highlight && string(acts) == plainActions {
				plain = append(plain, u)
				continue
			}
			if joined {
				skipped = append(skipped, u)
			}
			explicit = append(explicit, storage.Notification{UserID: u, EventNID: e.Position, RoomID: e.RoomID, ThreadID: thread,
				Highlight: res.Highlight, Actions: acts, TS: e.OriginServerTS})
		}
		out.Explicit = append(out.Explicit, explicit...)
		if len(plain) > 0 {
			out.Shared = append(out.Shared, storage.SharedNotification{RoomID: e.RoomID, EventNID: e.Position, ThreadID: thread,
				Sender: e.Sender, Skipped: skipped, Notified: plain})
		}
	}
	return out, nil
}

// threadFor is the thread a notifying event counts in: its own m.thread
// root, or — for a reaction, edit or reference of a threaded reply — the
// thread its relationships lead to (receipts.md, "Threaded read receipts";
// the receipts check uses the same roomserver.ThreadOf).
func (s *Service) threadFor(ctx context.Context, pev *pushrules.Event, e *roomserver.Event) (string, error) {
	thread := threadOf(pev)
	if _, related := pev.String(`content.m\.relates_to.event_id`); thread != "main" || !related {
		return thread, nil
	}
	thread, err := s.rooms.ThreadOf(ctx, e)
	if err != nil {
		return "", fmt.Errorf("thread of event: %w", err)
	}
	return thread, nil
}

// threadOf is the thread an event counts in when its own relationship
// says so: the root of an m.thread relation, else the main timeline (other
// relationships are followed by roomserver.ThreadOf).
func threadOf(ev *pushrules.Event) string {
	if rel, _ := ev.String(`content.m\.relates_to.rel_type`); rel == "m.thread" {
		if root, ok := ev.String(`content.m\.relates_to.event_id`); ok && root != "" {
			return root
		}
	}
	return "main"
}

// evaluatorsFor returns each user's compiled rules, loading the missing
// ones in one query.
func (s *Service) evaluatorsFor(ctx context.Context, users []string) (map[string]*pushrules.Evaluator, error) {
	out := make(map[string]*pushrules.Evaluator, len(users))
	var missing []string
	s.rulesMu.Lock()
	for _, u := range users {
		if e, ok := s.evaluators[u]; ok {
			out[u] = e
		} else {
			missing = append(missing, u)
		}
	}
	s.rulesMu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	stored, err := s.store.PushRulesOf(ctx, missing)
	if err != nil {
		return nil, err
	}
	s.rulesMu.Lock()
	defer s.rulesMu.Unlock()
	for _, u := range missing {
		ur, err := pushrules.ParseUserRules(stored[u])
		if err != nil {
			s.log.Error("stored push rules unreadable; using defaults", "err", err)
			ur = &pushrules.UserRules{}
		}
		e := pushrules.Compile(ur.Effective(u))
		s.evaluators[u] = e
		out[u] = e
	}
	return out, nil
}

// position is a committed position that readers can wait for.
type position struct {
	mu      sync.Mutex
	pos     int64
	ch      chan struct{}
	waiters int // in wait, behind pos
	// demand gets a token when a waiter arrives, to end a gather early.
	demand chan struct{}
}

func newPosition(p int64) *position {
	return &position{pos: p, ch: make(chan struct{}), demand: make(chan struct{}, 1)}
}

func (p *position) get() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pos
}

func (p *position) advance(to int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if to > p.pos {
		p.pos = to
		close(p.ch)
		p.ch = make(chan struct{})
	}
}

// gatherable reports whether nobody waits for the position, after
// dropping a stale demand token: a waiter arriving from here on puts a
// fresh one, which ends the gather.
func (p *position) gatherable() bool {
	select {
	case <-p.demand:
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiters == 0
}

// wait returns once the position reaches at or ctx ends.
func (p *position) wait(ctx context.Context, at int64) bool {
	p.mu.Lock()
	if p.pos >= at {
		p.mu.Unlock()
		return true
	}
	p.waiters++
	p.mu.Unlock()
	select {
	case p.demand <- struct{}{}:
	default:
	}
	defer func() {
		p.mu.Lock()
		p.waiters--
		p.mu.Unlock()
	}()
	for {
		p.mu.Lock()
		pos, ch := p.pos, p.ch
		p.mu.Unlock()
		if pos >= at {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}
