package syncapi

import (
	"context"
	"slices"
	"sync"
	"time"

	"myelin/internal/apierr"
)

// typing keeps who is typing where, in memory only: typing notifications
// are ephemeral and a restart forgets them (as every client's own timeout
// would within seconds).
//
// Positions: every change takes the next position. They start at the
// process's start time in milliseconds, so a token from an earlier process
// (lower start time, and fewer than one change per millisecond of its
// uptime) is below every position this process hands out: nothing of this
// process is skipped. A token from "the future" (a clock set back) is
// treated the same way: the room's current list is sent again, which is
// harmless because m.typing replaces the client's whole list.
type typing struct {
	s    *Service
	mu   sync.Mutex
	pos  int64
	boot int64
	// rooms: room ID → users typing there.
	rooms map[string]*roomTyping
	wg    sync.WaitGroup
	done  bool
}

type roomTyping struct {
	pos   int64 // position of the room's last change
	users map[string]*typist
}

type typist struct {
	timer *time.Timer
	gen   int64 // the change that armed timer; a stale timer does nothing
}

func newTyping(s *Service) *typing {
	boot := s.now().UnixMilli()
	return &typing{s: s, pos: boot, boot: boot, rooms: map[string]*roomTyping{}}
}

func (t *typing) position() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pos
}

// defaultTypingTimeout applies when a client starts typing without a
// timeout.
const defaultTypingTimeout = 30 * time.Second

// SetTyping is PUT /rooms/{roomId}/typing/{userId}: userID must be joined
// to the room. timeout is capped by Options.MaxTypingTimeout.
func (s *Service) SetTyping(ctx context.Context, userID, roomID string, isTyping bool, timeout time.Duration) error {
	if !validRoomID(roomID) {
		return apierr.InvalidParam("invalid room ID")
	}
	m, err := s.membership(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if m.Membership != "join" {
		return apierr.Forbidden("you are not joined to this room")
	}
	if isTyping {
		if timeout <= 0 {
			// The spec leaves timeout out only when typing stops; clients
			// that omit it anyway get the common default.
			timeout = defaultTypingTimeout
		}
		timeout = min(timeout, s.opts.MaxTypingTimeout)
	}
	s.presence.touch(ctx, userID)
	if changed := s.typing.set(roomID, userID, isTyping, timeout); changed {
		s.wakeRoom(ctx, roomID)
	}
	return nil
}

// set records the change and reports whether the room's list changed
// (a renewal of an ongoing typing notification only re-arms the timer).
func (t *typing) set(roomID, userID string, isTyping bool, timeout time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return false
	}
	rt := t.rooms[roomID]
	if !isTyping {
		if rt == nil || rt.users[userID] == nil {
			return false
		}
		t.stop(rt.users[userID])
		delete(rt.users, userID)
		t.pos++
		rt.pos = t.pos
		return true
	}
	if rt == nil {
		rt = &roomTyping{users: map[string]*typist{}}
		t.rooms[roomID] = rt
	}
	t.pos++
	gen := t.pos
	if cur := rt.users[userID]; cur != nil {
		t.stop(cur)
		cur.gen = gen
		cur.timer = t.expireAfter(roomID, userID, gen, timeout)
		return false
	}
	rt.users[userID] = &typist{gen: gen, timer: t.expireAfter(roomID, userID, gen, timeout)}
	rt.pos = gen
	return true
}

// stop stops a typist's timer; a timer stopped before it fired never runs
// its callback, so its WaitGroup slot is released here.
func (t *typing) stop(tp *typist) {
	if tp.timer.Stop() {
		t.wg.Done()
	}
}

func (t *typing) expireAfter(roomID, userID string, gen int64, d time.Duration) *time.Timer {
	t.wg.Add(1)
	return time.AfterFunc(d, func() {
		defer t.wg.Done()
		t.mu.Lock()
		rt := t.rooms[roomID]
		expired := !t.done && rt != nil && rt.users[userID] != nil && rt.users[userID].gen == gen
		if expired {
			delete(rt.users, userID)
			t.pos++
			rt.pos = t.pos
		}
		t.mu.Unlock()
		if expired {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			t.s.wakeRoom(ctx, roomID)
		}
	})
}

// changedSince returns the typing lists of the rooms among roomIDs that
// changed after since (all non-empty lists when initial). A since from
// another process (below this one's start, or above its position) counts
// as initial for the rooms asked about, with empty lists included, so a
// stale list on the client is replaced.
func (t *typing) changedSince(roomIDs []string, since int64, initial bool) map[string][]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	foreign := !initial && (since < t.boot || since > t.pos)
	out := map[string][]string{}
	for _, id := range roomIDs {
		rt := t.rooms[id]
		switch {
		case rt == nil:
			continue
		case initial && len(rt.users) == 0:
			continue
		case !initial && !foreign && rt.pos <= since:
			continue
		}
		users := make([]string, 0, len(rt.users))
		for u := range rt.users {
			users = append(users, u)
		}
		slices.Sort(users)
		out[id] = users
	}
	return out
}

// close stops every timer and waits for callbacks already running.
func (t *typing) close() {
	t.mu.Lock()
	t.done = true
	for _, rt := range t.rooms {
		for _, u := range rt.users {
			t.stop(u)
		}
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// wakeRoom wakes the long-polls of a room's joined members.
func (s *Service) wakeRoom(ctx context.Context, roomID string) {
	users, err := s.store.JoinedUsers(ctx, roomID)
	if err != nil {
		s.log.Warn("reading room members to wake their syncs failed", "room", roomID, "err", err)
		return
	}
	s.hub.wake(users...)
}
