// Package syncapi owns what a client reads: /sync (v2) and its streams —
// the room event log read through the roomserver, account data (global,
// per room, tags, m.direct, m.ignored_user_list), receipts and read
// markers, typing, presence — plus the history endpoints /messages,
// /context and /timestamp_to_event, and filters. Other components fill the
// parts of a sync response they own through the small interfaces in
// providers.go.
//
// Every long-poll waits on channels (the roomserver's Notifier for room
// events, a per-user hub for everything else) and never on a timer loop.
// See README.md for the invariants.
package syncapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"myelin/roomserver"
	"myelin/storage"
)

// Options configure a Service. DB and Rooms are required.
type Options struct {
	DB    *storage.DB
	Rooms *roomserver.Service

	// Providers (optional; see providers.go).
	Unread      UnreadCounter
	ToDevice    ToDeviceInbox
	DeviceLists DeviceListTracker
	Keys        KeyCounter
	PushRules   PushRulesSource

	// PresenceOfflineAfter is how long after a user's last sync request
	// ends they become offline (30s when zero): a client between two
	// long-polls is still online.
	PresenceOfflineAfter time.Duration
	// PresenceIdleAfter is how long without activity turns online into
	// unavailable (5 minutes when zero, the spec's example).
	PresenceIdleAfter time.Duration
	// MaxTimeout caps a /sync timeout (5 minutes when zero).
	MaxTimeout time.Duration
	// MaxTypingTimeout caps a typing notification's timeout (2 minutes
	// when zero; clients renew every 20–30 seconds).
	MaxTypingTimeout time.Duration

	Now    func() time.Time
	Logger *slog.Logger
}

// Service is the sync API.
type Service struct {
	opts  Options
	store *storage.Sync
	rooms *roomserver.Service
	log   *slog.Logger
	now   func() time.Time

	hub      *hub
	typing   *typing
	presence *presenceTracker
	lazy     *lazyCache
	events   *eventCache
	members  *memberCache

	// writeMu serialises writes to the durable streams (account data,
	// receipts, presence): a position is handed out, written and published
	// under it, so a published position never has a lower one still in
	// flight. The streams are low-volume; one lock keeps multi-stream
	// requests (/read_markers) in one transaction.
	writeMu     sync.Mutex
	accountData atomic.Int64
	receipts    atomic.Int64
	presencePos atomic.Int64

	ignoredMu sync.Mutex
	ignored   map[string]map[string]bool // user → ignored users (cache)

	closed atomic.Bool
	quit   chan struct{}
	bg     sync.WaitGroup
}

// New starts the sync API on a migrated database.
func New(opts Options) (*Service, error) {
	if opts.DB == nil || opts.Rooms == nil {
		return nil, errors.New("syncapi: DB and Rooms are required")
	}
	if opts.PresenceOfflineAfter <= 0 {
		opts.PresenceOfflineAfter = 30 * time.Second
	}
	if opts.PresenceIdleAfter <= 0 {
		opts.PresenceIdleAfter = 5 * time.Minute
	}
	if opts.MaxTimeout <= 0 {
		opts.MaxTimeout = 5 * time.Minute
	}
	if opts.MaxTypingTimeout <= 0 {
		opts.MaxTypingTimeout = 2 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := checkProviderKeys(opts); err != nil {
		return nil, err
	}
	s := &Service{
		opts: opts, store: storage.NewSync(opts.DB), rooms: opts.Rooms, log: opts.Logger, now: opts.Now,
		hub: newHub(), lazy: newLazyCache(10000), events: newEventCache(), members: newMemberCache(), ignored: map[string]map[string]bool{},
	}
	ctx := context.Background()
	a, r, p, err := s.store.StreamPositions(ctx)
	if err != nil {
		return nil, err
	}
	s.accountData.Store(a)
	s.receipts.Store(r)
	s.presencePos.Store(p)
	s.typing = newTyping(s)
	s.presence = newPresenceTracker(s)
	if err := s.presence.start(ctx); err != nil {
		return nil, err
	}
	s.quit = make(chan struct{})
	s.bg.Add(2)
	go s.watchActivity()
	go s.indexSearch()
	return s, nil
}

// searchIndexEvery paces the background search indexer: FTS5 pays per
// transaction, so indexing a fifth of a second of events at a time keeps
// its cost per event low while a search (which catches up first) never
// waits for more than that much.
const searchIndexEvery = 200 * time.Millisecond

// indexSearch keeps the search index close behind the event log
// (storage.Search.CatchUp) on engines that index in batches: after new
// events it waits searchIndexEvery, so one transaction indexes everything
// sent meanwhile.
func (s *Service) indexSearch() {
	defer s.bg.Done()
	store := storage.NewSearch(s.opts.DB)
	if !store.Batched() {
		return
	}
	seen := s.rooms.Notifier().Position()
	for {
		pos, ok := s.eventsAfter(seen)
		if !ok {
			return
		}
		select {
		case <-time.After(searchIndexEvery):
		case <-s.quit:
			return
		}
		// Everything up to pos, and whatever came during the wait.
		seen = max(pos, s.rooms.Notifier().Position())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := store.CatchUp(ctx); err != nil {
			s.log.Warn("indexing new events for search failed", "err", err)
		}
		cancel()
	}
}

// eventsAfter waits, on the roomserver's Notifier (no polling), until
// events past seen are committed and returns the new position; false once
// the service is closing.
func (s *Service) eventsAfter(seen int64) (int64, bool) {
	for {
		pos, ch := s.rooms.Notifier().Changed()
		if pos > seen {
			return pos, true
		}
		select {
		case <-ch:
		case <-s.quit:
			return 0, false
		}
	}
}

// watchActivity counts sending an event as presence activity: it waits on
// the roomserver's Notifier (no polling) and touches the local senders of
// each newly committed batch, which keeps them online and brings them back
// from idle.
func (s *Service) watchActivity() {
	defer s.bg.Done()
	suffix := ":" + s.rooms.ServerName()
	seen := s.rooms.Notifier().Position()
	for {
		pos, ok := s.eventsAfter(seen)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// From the roomserver's memory of recent positions; the event
		// log only for a window it no longer holds.
		senders, ok := s.rooms.SendersBetween(seen, pos)
		if !ok {
			var err error
			if senders, err = s.store.SendersBetween(ctx, seen, pos); err != nil {
				s.log.Warn("reading the senders of new events failed", "err", err)
			}
		}
		for _, u := range senders {
			if strings.HasSuffix(u, suffix) {
				s.presence.touch(ctx, u)
			}
		}
		cancel()
		seen = pos
	}
}

// checkProviderKeys makes sure the providers' stream keys can be written
// in tokens and do not collide.
func checkProviderKeys(opts Options) error {
	keys := map[string]bool{}
	for _, src := range []StreamSource{asSource(opts.ToDevice), asSource(opts.DeviceLists)} {
		if src == nil {
			continue
		}
		k := src.StreamKey()
		if !validKey(k) || coreKeys[k] || keys[k] {
			return fmt.Errorf("syncapi: provider stream key %q is invalid or taken", k)
		}
		keys[k] = true
	}
	return nil
}

func asSource[T StreamSource](p T) StreamSource {
	if any(p) == nil {
		return nil
	}
	return p
}

// Close stops the typing and presence timers and waits for their
// callbacks. Requests after Close fail.
func (s *Service) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.quit)
	s.bg.Wait()
	s.typing.close()
	s.presence.close()
	// Every long-poll, parked or about to park, returns at once.
	s.hub.close()
	return nil
}

// Wake makes the long-polling /sync requests of these users re-read their
// streams. Providers call it after committing a change.
func (s *Service) Wake(userIDs ...string) { s.hub.wake(userIDs...) }

// Durable streams a write may use.
const (
	useAccountData = 1 << iota
	useReceipts
	usePresence
)

// streamWrite is the positions a durable-stream write may use.
type streamWrite struct {
	AccountData int64
	Receipts    int64
	Presence    int64
}

// write runs fn in one transaction with the next position of each stream
// it uses, and publishes them after the commit. A position fn leaves
// unused is a gap, which readers never notice.
func (s *Service) write(ctx context.Context, uses int, fn func(tx *sql.Tx, pos streamWrite) error) error {
	if s.closed.Load() {
		return errors.New("syncapi: closed")
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	pos := streamWrite{AccountData: s.accountData.Load(), Receipts: s.receipts.Load(), Presence: s.presencePos.Load()}
	if uses&useAccountData != 0 {
		pos.AccountData++
	}
	if uses&useReceipts != 0 {
		pos.Receipts++
	}
	if uses&usePresence != 0 {
		pos.Presence++
	}
	if err := s.store.Tx(ctx, func(tx *sql.Tx) error { return fn(tx, pos) }); err != nil {
		return err
	}
	s.accountData.Store(pos.AccountData)
	s.receipts.Store(pos.Receipts)
	s.presencePos.Store(pos.Presence)
	return nil
}

// current returns the newest position of every stream; events is the
// roomserver's position, read by the caller together with its channel.
func (s *Service) current(events int64) Token {
	t := Token{
		Events: events, AccountData: s.accountData.Load(), Receipts: s.receipts.Load(),
		Typing: s.typing.position(), Presence: s.presencePos.Load(),
	}
	if p := s.opts.ToDevice; p != nil {
		t.Ext = map[string]int64{p.StreamKey(): p.StreamPosition()}
	}
	if p := s.opts.DeviceLists; p != nil {
		if t.Ext == nil {
			t.Ext = map[string]int64{}
		}
		t.Ext[p.StreamKey()] = p.StreamPosition()
	}
	return t
}

// ignoredUsers returns the users userID ignores (m.ignored_user_list),
// cached until the list is written again.
func (s *Service) ignoredUsers(ctx context.Context, userID string) (map[string]bool, error) {
	s.ignoredMu.Lock()
	m, ok := s.ignored[userID]
	s.ignoredMu.Unlock()
	if ok {
		return m, nil
	}
	content, err := s.store.AccountDataEntry(ctx, nil, userID, "", "m.ignored_user_list")
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	m = parseIgnored(content)
	s.ignoredMu.Lock()
	s.ignored[userID] = m
	s.ignoredMu.Unlock()
	return m, nil
}

func parseIgnored(content []byte) map[string]bool {
	var c struct {
		Ignored map[string]json.RawMessage `json:"ignored_users"`
	}
	_ = json.Unmarshal(content, &c)
	out := make(map[string]bool, len(c.Ignored))
	for u := range c.Ignored {
		out[u] = true
	}
	return out
}

func (s *Service) forgetIgnored(userID string) {
	s.ignoredMu.Lock()
	delete(s.ignored, userID)
	s.ignoredMu.Unlock()
}
