package storage

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// Shared notifications (migration 0034): a plain ["notify"] without
// highlight — what the default rules give every joined member for a
// message — is stored ONCE per event (push_shared) instead of once per
// member. Who it notified is read through the members' join spans
// (push_member_spans) minus the sender and the users it skipped
// (push_skips). A message into a 50-member room was 49 rows and half the
// server's CPU under load (docs/performance.md, pprof findings).

// NotificationBatch is what one consumer batch stores.
type NotificationBatch struct {
	// Explicit are one-user notifications (highlights, tweaks, invitees,
	// events nobody got plainly).
	Explicit []Notification
	// Shared are events that plainly notified their room's joined members.
	Shared []SharedNotification
	// Memberships are the batch's membership changes of local users, in
	// event order.
	Memberships []JoinChange
	// RoomNIDs optionally maps the batch's rooms to their room_nid, as
	// the consumer read them with the events; rooms missing from it are
	// looked up.
	RoomNIDs map[string]int64
}

// SharedNotification is an event that notified, with plain ["notify"] and
// no highlight, every local user joined to its room in the state after it
// except its sender and Skipped.
type SharedNotification struct {
	RoomID   string
	EventNID int64
	ThreadID string // thread root event ID, or "main"
	Sender   string
	// Skipped are the joined users (not the sender) for whom the event is
	// not a plain notification: not notified, or notified otherwise (an
	// explicit notification in the same batch).
	Skipped []string
	// Notified are the users it plainly notified: not stored (the spans
	// say it) but queued for their HTTP pushers.
	Notified []string
}

// JoinChange is a local user's membership event: Joined when its
// membership is join.
type JoinChange struct {
	RoomID   string
	UserID   string
	EventNID int64
	Joined   bool
}

// roomIDs lists the rooms b names (with repeats).
func (b NotificationBatch) roomIDs() []string {
	out := make([]string, 0, len(b.Explicit)+len(b.Shared)+len(b.Memberships))
	for _, n := range b.Explicit {
		out = append(out, n.RoomID)
	}
	for _, s := range b.Shared {
		out = append(out, s.RoomID)
	}
	for _, m := range b.Memberships {
		out = append(out, m.RoomID)
	}
	return out
}

// storeMemberships maintains the join spans. A join opens a span unless
// one already holds its position (join→join is a profile change); any
// other membership closes the open span begun before it. A join before
// an open span's start extends that span back: the span was backfilled by
// migration 0034 from room_members while this consumer was behind it, and
// the events between are being replayed now. Membership events are rare
// next to messages: a statement or two each is fine.
func storeMemberships(ctx context.Context, tx *sql.Tx, ms []JoinChange, roomNIDs map[string]int64) error {
	for _, m := range ms {
		room := roomNIDs[m.RoomID]
		if !m.Joined {
			if _, err := tx.ExecContext(ctx, `UPDATE push_member_spans SET to_nid = $1
				WHERE user_id = $2 AND room_nid = $3 AND to_nid IS NULL AND from_nid < $1`, m.EventNID, m.UserID, room); err != nil {
				return fmt.Errorf("close join span: %w", err)
			}
			continue
		}
		var covered int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_member_spans
			WHERE user_id = $1 AND room_nid = $2 AND from_nid <= $3 AND (to_nid IS NULL OR to_nid > $3)`, m.UserID, room, m.EventNID).Scan(&covered); err != nil {
			return fmt.Errorf("read join spans: %w", err)
		}
		if covered > 0 {
			continue
		}
		res, err := tx.ExecContext(ctx, `UPDATE push_member_spans SET from_nid = $1
			WHERE user_id = $2 AND room_nid = $3 AND to_nid IS NULL AND from_nid > $1`, m.EventNID, m.UserID, room)
		if err != nil {
			return fmt.Errorf("extend join span: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("extend join span: %w", err)
		} else if n > 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO push_member_spans (user_id, room_nid, from_nid, to_nid) VALUES ($1, $2, $3, NULL)
			ON CONFLICT (user_id, room_nid, from_nid) DO NOTHING`, m.UserID, room, m.EventNID); err != nil {
			return fmt.Errorf("open join span: %w", err)
		}
	}
	return nil
}

// sharedPerInsert bounds the events of one push_shared INSERT (4
// parameters each; binding is quadratic in the parameters).
const sharedPerInsert = 50

// storeShared inserts the shared rows and their skips, and returns the
// rows actually inserted (not replayed), whose Notified users the push
// queue expands only if some HTTP pusher exists.
func storeShared(ctx context.Context, tx *sql.Tx, ss []SharedNotification, roomNIDs map[string]int64) ([]SharedNotification, error) {
	var added []SharedNotification
	for chunk := range slices.Chunk(ss, sharedPerInsert) {
		var b strings.Builder
		b.WriteString(`INSERT INTO push_shared (room_nid, event_nid, thread_id, sender) VALUES `)
		args := make([]any, 0, 4*len(chunk))
		for i, s := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "($%d, $%d, $%d, $%d)", 4*i+1, 4*i+2, 4*i+3, 4*i+4)
			args = append(args, roomNIDs[s.RoomID], s.EventNID, storedThread(s.ThreadID), s.Sender)
		}
		b.WriteString(` ON CONFLICT (room_nid, event_nid) DO NOTHING RETURNING event_nid`)
		rows, err := tx.QueryContext(ctx, b.String(), args...)
		if err != nil {
			return nil, fmt.Errorf("store shared notifications: %w", err)
		}
		inserted := map[int64]bool{}
		for rows.Next() {
			var nid int64
			if err := rows.Scan(&nid); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store shared notifications: %w", err)
			}
			inserted[nid] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("store shared notifications: %w", err)
		}
		for _, s := range chunk {
			if !inserted[s.EventNID] {
				continue
			}
			for skips := range slices.Chunk(s.Skipped, notificationsPerInsert) {
				args := make([]any, 0, 2+len(skips))
				args = append(args, roomNIDs[s.RoomID], s.EventNID)
				for _, u := range skips {
					args = append(args, u)
				}
				if _, err := tx.ExecContext(ctx, skipInsertSQL(len(skips)), args...); err != nil {
					return nil, fmt.Errorf("store notification skips: %w", err)
				}
			}
			added = append(added, s)
		}
	}
	return added, nil
}

// skipInsertSQL inserts one push_skips row per user ($3…$(2+n)) of the
// event ($1 room_nid, $2 event_nid); see notificationInsertSQL for the
// CASTs and WHERE true.
func skipInsertSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO push_skips (user_id, room_nid, event_nid)
		SELECT v.column1, CAST($1 AS BIGINT), CAST($2 AS BIGINT) FROM (VALUES `)
	writeValueRows(&b, 3, n)
	b.WriteString(`) AS v WHERE true ON CONFLICT (user_id, room_nid, event_nid) DO NOTHING`)
	return b.String()
}

// openSpanEnd is the end of a span still open (to_nid NULL): the largest
// BIGINT. Written as a bound (not "to_nid IS NULL OR …") so the span is
// one index range of push_shared, read backwards for the newest rows.
const openSpanEnd = `9223372036854775807`

// sharedForUserSQL matches the shared rows n that notified the user
// userExpr through the span sp: inside the span, not sent by the user,
// not skipped for them. With after set (an SQL expression), only rows
// after it: the span's start and after are folded into one lower bound,
// because given two SQLite seeks to one of them and filters by the other.
// It chose the span's start, so an unread count read every notification
// since the user joined instead of those since their receipt (or since
// the count cache's position): each /sync in a busy room cost more than
// the one before (send_sync_fanout, docs/performance.md).
//
// The sender test compares an expression, not the column: PostgreSQL's
// generic plan (a prepared statement's sixth run) estimates "column <> $1"
// as 1/ndistinct, i.e. no rows at all when one user sent everything (a
// bot's room), and then nested-loops every row with every span: unread
// counts took 2.9 s instead of 60 ms (BenchmarkNotificationsList, one
// sender).
func sharedForUserSQL(userExpr, after string) string {
	lower := `n.event_nid >= sp.from_nid`
	if after != "" {
		lower = `n.event_nid > CASE WHEN ` + after + ` >= sp.from_nid THEN ` + after + ` ELSE sp.from_nid - 1 END`
	}
	return `n.room_nid = sp.room_nid AND ` + lower + ` AND n.event_nid < COALESCE(sp.to_nid, ` + openSpanEnd + `)
		AND n.sender || '' <> ` + userExpr + `
		AND NOT EXISTS (SELECT 1 FROM push_skips k WHERE k.user_id = ` + userExpr + ` AND k.room_nid = n.room_nid AND k.event_nid = n.event_nid)`
}
