package roomserver

import "sync/atomic"

// MembershipClock tells readers when room memberships last changed, so a
// /sync can keep a user's room list, or skip looking for membership events
// in a window that has none, with an atomic load instead of a query per
// request (every message in a busy room wakes each member's long-poll).
//
// Both values move only after the change is committed and readable, and
// before the Notifier announces its position: a reader that saw a
// position from the Notifier and then reads the clock sees every change at
// or before that position. One process only, like the writer.
type MembershipClock struct {
	last atomic.Int64  // highest stream position of a committed m.room.member event
	gen  atomic.Uint64 // bumped after every committed change to room_members
}

// LastChange is the highest stream position of a membership event
// committed by this process, or the log's end at start-up: a window
// (since, upTo] with since at or past it holds no membership event.
func (c *MembershipClock) LastChange() int64 { return c.last.Load() }

// Generation changes whenever any room_members row may have changed
// (memberships and forgotten flags). A reader reads it before querying
// memberships and keeps the result only while it is unchanged: a change
// that raced with the query bumps it after the query's read, so the kept
// result is dropped at the next comparison.
func (c *MembershipClock) Generation() uint64 { return c.gen.Load() }

// changed records committed membership changes up to position pos (0: no
// event position, e.g. a forgotten flag).
func (c *MembershipClock) changed(pos int64) {
	for {
		cur := c.last.Load()
		if pos <= cur || c.last.CompareAndSwap(cur, pos) {
			break
		}
	}
	c.gen.Add(1)
}
