package syncapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"myelin/internal/apierr"
	"myelin/storage"
)

// Presence states.
const (
	presenceOnline      = "online"
	presenceUnavailable = "unavailable"
	presenceOffline     = "offline"
)

// maxStatusMsg bounds status_msg (bytes). The spec sets no limit; a status
// line longer than this is not a status.
const maxStatusMsg = 1024

// presenceTracker decides each user's presence from their sync requests,
// explicit PUTs and activity, and publishes changes on the presence stream
// (table presence). Timers turn users offline after their last sync ends
// (Options.PresenceOfflineAfter) and online users unavailable after
// Options.PresenceIdleAfter without activity; nothing polls.
type presenceTracker struct {
	s     *Service
	mu    sync.Mutex // guards users and done
	users map[string]*presenceUser
	done  bool
	wg    sync.WaitGroup // timer callbacks armed and not yet finished
}

// presenceUser is one user's presence. mu orders the decisions and writes
// for that user (a sync starting while the offline timer fires must not
// end with the user offline).
type presenceUser struct {
	mu         sync.Mutex
	loaded     bool
	state      string
	statusMsg  *string
	lastActive int64 // ms
	syncing    int   // sync requests in flight that count as online
	idled      bool  // unavailable because of the idle timer, not by request
	offline    *time.Timer
	idle       *time.Timer
}

func newPresenceTracker(s *Service) *presenceTracker {
	return &presenceTracker{s: s, users: map[string]*presenceUser{}}
}

// start re-arms the offline timers of users a previous process left
// online or unavailable: nobody is syncing with this process yet.
func (p *presenceTracker) start(ctx context.Context) error {
	rows, err := p.s.store.PresenceNotOffline(ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		u := p.user(r.UserID)
		u.mu.Lock()
		u.loaded, u.state, u.statusMsg, u.lastActive = true, r.State, r.StatusMsg, r.LastActiveTS
		p.armOffline(r.UserID, u)
		u.mu.Unlock()
	}
	return nil
}

func (p *presenceTracker) user(userID string) *presenceUser {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.users[userID]
	if u == nil {
		u = &presenceUser{}
		p.users[userID] = u
	}
	return u
}

// load reads the stored presence once; u.mu is held.
func (p *presenceTracker) load(ctx context.Context, userID string, u *presenceUser) error {
	if u.loaded {
		return nil
	}
	r, err := p.s.store.PresenceOf(ctx, userID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		u.state = presenceOffline
	case err != nil:
		return err
	default:
		u.state, u.statusMsg, u.lastActive = r.State, r.StatusMsg, r.LastActiveTS
	}
	u.loaded = true
	return nil
}

// publish stores a new presence and wakes the users who see it; u.mu is
// held.
func (p *presenceTracker) publish(ctx context.Context, userID string, u *presenceUser, state string, msg *string) error {
	err := p.s.write(ctx, usePresence, func(tx *sql.Tx, pos streamWrite) error {
		return p.s.store.PutPresence(ctx, tx, storage.Presence{UserID: userID, State: state, StatusMsg: msg,
			LastActiveTS: u.lastActive, StreamPos: pos.Presence})
	})
	if err != nil {
		return err
	}
	u.state, u.statusMsg = state, msg
	if state == presenceOnline {
		p.armIdle(userID, u)
	} else if u.idle != nil {
		p.stopTimer(u.idle)
		u.idle = nil
	}
	users, err := p.s.store.UsersSharingRooms(ctx, userID)
	if err != nil {
		p.s.log.Warn("reading who shares a room to wake their syncs failed", "err", err)
	}
	p.s.hub.wake(append(users, userID)...)
	return nil
}

// syncStarted applies a /sync request's set_presence and counts the
// request as the user being connected until the returned function runs.
func (p *presenceTracker) syncStarted(ctx context.Context, userID, set string) func() {
	if set == presenceOffline {
		return func() {} // "not marked as being online when it uses this API"
	}
	u := p.user(userID)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.syncing++
	if u.offline != nil {
		p.stopTimer(u.offline)
		u.offline = nil
	}
	if err := p.load(ctx, userID, u); err != nil {
		p.s.log.Warn("reading presence failed", "err", err)
	} else {
		var err error
		switch {
		case set == presenceUnavailable && u.state != presenceUnavailable:
			err = p.publish(ctx, userID, u, presenceUnavailable, u.statusMsg)
		case set != presenceUnavailable && u.state == presenceOffline:
			// Connecting is a pro-active change to online.
			u.lastActive = p.s.now().UnixMilli()
			u.idled = false
			err = p.publish(ctx, userID, u, presenceOnline, u.statusMsg)
		}
		if err != nil {
			p.s.log.Warn("storing presence failed", "err", err)
		}
	}
	return func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		u.syncing--
		if u.syncing == 0 && u.state != presenceOffline {
			p.armOffline(userID, u)
		}
	}
}

// touch records activity: it bumps the last-active time and brings a user
// the idle timer made unavailable back online.
func (p *presenceTracker) touch(ctx context.Context, userID string) {
	u := p.user(userID)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lastActive = p.s.now().UnixMilli()
	if err := p.load(ctx, userID, u); err != nil {
		p.s.log.Warn("reading presence failed", "err", err)
		return
	}
	switch {
	case u.state == presenceUnavailable && u.idled:
		u.idled = false
		if err := p.publish(ctx, userID, u, presenceOnline, u.statusMsg); err != nil {
			p.s.log.Warn("storing presence failed", "err", err)
		}
	case u.state == presenceOnline:
		p.armIdle(userID, u)
	}
}

// set is PUT /presence: an explicit state and status message.
func (p *presenceTracker) set(ctx context.Context, userID, state string, msg *string) error {
	u := p.user(userID)
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := p.load(ctx, userID, u); err != nil {
		return err
	}
	u.lastActive = p.s.now().UnixMilli()
	u.idled = false
	if err := p.publish(ctx, userID, u, state, msg); err != nil {
		return err
	}
	if state != presenceOffline && u.syncing == 0 {
		// Not connected to an event stream: offline unless a sync follows.
		p.armOffline(userID, u)
	}
	return nil
}

// armOffline (u.mu held) turns the user offline after the grace period
// unless a sync starts meanwhile.
func (p *presenceTracker) armOffline(userID string, u *presenceUser) {
	if u.offline != nil {
		p.stopTimer(u.offline)
	}
	u.offline = p.after(p.s.opts.PresenceOfflineAfter, func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.syncing > 0 || u.state == presenceOffline {
			return
		}
		u.offline = nil
		u.idled = false
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.publish(ctx, userID, u, presenceOffline, u.statusMsg); err != nil {
			p.s.log.Warn("storing presence failed", "err", err)
		}
	})
}

// armIdle (u.mu held) turns an online user unavailable after the idle
// period without activity.
func (p *presenceTracker) armIdle(userID string, u *presenceUser) {
	if u.idle != nil {
		p.stopTimer(u.idle)
	}
	u.idle = p.after(p.s.opts.PresenceIdleAfter, func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		idleFor := time.Duration(p.s.now().UnixMilli()-u.lastActive) * time.Millisecond
		if u.state != presenceOnline || idleFor < p.s.opts.PresenceIdleAfter {
			return
		}
		u.idle = nil
		u.idled = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.publish(ctx, userID, u, presenceUnavailable, u.statusMsg); err != nil {
			p.s.log.Warn("storing presence failed", "err", err)
		}
	})
}

// after arms a timer whose callback the tracker waits for on close. A nil
// timer is returned after close.
func (p *presenceTracker) after(d time.Duration, f func()) *time.Timer {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return nil
	}
	p.wg.Add(1)
	return time.AfterFunc(d, func() {
		defer p.wg.Done()
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		if !done {
			f()
		}
	})
}

func (p *presenceTracker) stopTimer(t *time.Timer) {
	if t != nil && t.Stop() {
		p.wg.Done()
	}
}

func (p *presenceTracker) close() {
	p.mu.Lock()
	p.done = true
	users := make([]*presenceUser, 0, len(p.users))
	for _, u := range p.users {
		users = append(users, u)
	}
	p.mu.Unlock()
	for _, u := range users {
		u.mu.Lock()
		p.stopTimer(u.offline)
		p.stopTimer(u.idle)
		u.offline, u.idle = nil, nil
		u.mu.Unlock()
	}
	p.wg.Wait()
}

// lastActive returns the newest activity time known for userID (memory
// first: it is bumped without a write), or stored when none.
func (p *presenceTracker) lastActive(userID string, stored int64) int64 {
	p.mu.Lock()
	u := p.users[userID]
	p.mu.Unlock()
	if u == nil {
		return stored
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return max(u.lastActive, stored)
}

// PresenceContent is the content of an m.presence event.
type PresenceContent struct {
	Presence        string  `json:"presence"`
	LastActiveAgo   *int64  `json:"last_active_ago,omitempty"`
	CurrentlyActive *bool   `json:"currently_active,omitempty"`
	StatusMsg       *string `json:"status_msg,omitempty"`
}

func (p *presenceTracker) content(r storage.Presence) PresenceContent {
	c := PresenceContent{Presence: r.State, StatusMsg: r.StatusMsg}
	last := p.lastActive(r.UserID, r.LastActiveTS)
	if last > 0 {
		ago := max(0, p.s.now().UnixMilli()-last)
		c.LastActiveAgo = &ago
		if r.State == presenceOnline {
			active := time.Duration(ago)*time.Millisecond < p.s.opts.PresenceIdleAfter
			c.CurrentlyActive = &active
		}
	}
	return c
}

func (p *presenceTracker) event(r storage.Presence) json.RawMessage {
	b, _ := json.Marshal(struct {
		Content PresenceContent `json:"content"`
		Sender  string          `json:"sender"`
		Type    string          `json:"type"`
	}{p.content(r), r.UserID, "m.presence"})
	return b
}

// SetPresence is PUT /presence/{userId}/status for the caller.
func (s *Service) SetPresence(ctx context.Context, userID, state string, statusMsg *string) error {
	switch state {
	case presenceOnline, presenceUnavailable, presenceOffline:
	default:
		return apierr.InvalidParam("presence must be online, unavailable or offline")
	}
	if statusMsg != nil && len(*statusMsg) > maxStatusMsg {
		return apierr.InvalidParam("status_msg is too long")
	}
	return s.presence.set(ctx, userID, state, statusMsg)
}

// GetPresence is GET /presence/{userId}/status: a user's own presence, or
// that of a user who shares a room with the viewer (M_FORBIDDEN
// otherwise).
func (s *Service) GetPresence(ctx context.Context, viewer, userID string) (PresenceContent, error) {
	if viewer != userID {
		ok, err := s.store.SharesRoom(ctx, viewer, userID)
		if err != nil {
			return PresenceContent{}, err
		}
		if !ok {
			return PresenceContent{}, apierr.Forbidden("you are not allowed to see this user's presence")
		}
	}
	r, err := s.store.PresenceOf(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return PresenceContent{Presence: presenceOffline}, nil
	}
	if err != nil {
		return PresenceContent{}, err
	}
	return s.presence.content(r), nil
}

// Touch records that a user acted (sent an event, for example), keeping
// them online and bringing them back from idle.
func (s *Service) Touch(ctx context.Context, userID string) { s.presence.touch(ctx, userID) }
