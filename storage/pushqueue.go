package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
)

// PushQueue is the durable push delivery queue: one row per notification
// (explicit or shared) and HTTP pusher of its user, written with the
// notification (StoreBatch) and deleted when its outcome is recorded.
type PushQueue struct{ db *DB }

// NewPushQueue returns the push queue storage on db.
func NewPushQueue(db *DB) *PushQueue { return &PushQueue{db: db} }

// PusherKey names one pusher.
type PusherKey struct{ UserID, AppID, PushKey string }

// PendingPusher is a pusher with queued deliveries.
type PendingPusher struct {
	PusherKey
	Queued int64
}

// QueuedPush is the oldest queued delivery of a pusher, with what building
// the request needs.
type QueuedPush struct {
	PusherKey
	EventNID   int64
	EnqueuedTS int64
	Attempts   int
	// Of the pusher:
	Kind      string
	Data      []byte // the pusher's data object as JSON (url included)
	CreatedTS int64
	// Of the notification:
	RoomID    string
	Highlight bool
	Actions   []byte // JSON array
}

// enqueuePushes queues one delivery per HTTP pusher of each notification's
// user, inside the transaction that stores the notifications (explicit and
// shared are the rows that transaction actually inserted; a shared row's
// notifications are its Notified users).
func (p *Push) enqueuePushes(ctx context.Context, tx *sql.Tx, explicit []Notification, shared []SharedNotification, roomNIDs map[string]int64, now int64) error {
	if len(explicit) == 0 && len(shared) == 0 {
		return nil
	}
	switch p.db.httpPushers.Load() {
	case pushersNone:
		return nil
	case pushersUnknown:
		var found bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pushers WHERE kind = 'http')`).Scan(&found); err != nil {
			return fmt.Errorf("read pushers: %w", err)
		}
		if !found {
			// Unless SetPusher marked "some" meanwhile.
			p.db.httpPushers.CompareAndSwap(pushersUnknown, pushersNone)
			return nil
		}
		p.db.httpPushers.CompareAndSwap(pushersUnknown, pushersSome)
	}
	// Expanded only here, past the pusher check: a shared row stands for
	// every member it plainly notified (49 in a 50-member room).
	ns := slices.Clip(explicit)
	for _, s := range shared {
		for _, u := range s.Notified {
			ns = append(ns, Notification{UserID: u, EventNID: s.EventNID, RoomID: s.RoomID, ThreadID: s.ThreadID})
		}
	}
	users := map[string]bool{}
	var list []string
	for _, n := range ns {
		if !users[n.UserID] {
			users[n.UserID] = true
			list = append(list, n.UserID)
		}
	}
	pushers := map[string][][2]string{} // user → (app_id, pushkey)
	for start := 0; start < len(list); start += 500 {
		chunk := list[start:min(start+500, len(list))]
		rows, err := tx.QueryContext(ctx, `SELECT user_id, app_id, pushkey FROM pushers WHERE kind = 'http' AND user_id IN (`+placeholders(1, len(chunk))+`)`, stringArgs(chunk)...)
		if err != nil {
			return fmt.Errorf("read pushers: %w", err)
		}
		for rows.Next() {
			var u, app, key string
			if err := rows.Scan(&u, &app, &key); err != nil {
				rows.Close()
				return fmt.Errorf("read pushers: %w", err)
			}
			pushers[u] = append(pushers[u], [2]string{app, key})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read pushers: %w", err)
		}
	}
	if len(pushers) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO push_queue (app_id, pushkey, user_id, room_nid, event_nid, enqueued_ts) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (app_id, pushkey, user_id, event_nid) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("prepare push queue: %w", err)
	}
	defer st.Close()
	for _, n := range ns {
		for _, p := range pushers[n.UserID] {
			if _, err := st.ExecContext(ctx, p[0], p[1], n.UserID, roomNIDs[n.RoomID], n.EventNID, now); err != nil {
				return fmt.Errorf("queue push: %w", err)
			}
		}
	}
	return nil
}

// Pending lists the pushers with queued deliveries and how many each has.
func (q *PushQueue) Pending(ctx context.Context) ([]PendingPusher, error) {
	rows, err := q.db.R.QueryContext(ctx, `SELECT user_id, app_id, pushkey, COUNT(*) FROM push_queue GROUP BY user_id, app_id, pushkey`)
	if err != nil {
		return nil, fmt.Errorf("read push queue: %w", err)
	}
	defer rows.Close()
	var out []PendingPusher
	for rows.Next() {
		var p PendingPusher
		if err := rows.Scan(&p.UserID, &p.AppID, &p.PushKey, &p.Queued); err != nil {
			return nil, fmt.Errorf("read push queue: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Next returns a pusher's oldest queued delivery (by event position, so a
// pusher's notifications go out in order); ErrNotFound when none is queued.
func (q *PushQueue) Next(ctx context.Context, k PusherKey) (QueuedPush, error) {
	p := QueuedPush{PusherKey: k}
	var data, acts string
	var hl int
	// A delivery of a shared notification (push_shared) has no
	// push_notifications row: it is a plain ["notify"] without highlight.
	err := q.db.R.QueryRowContext(ctx, `SELECT q.event_nid, q.enqueued_ts, q.attempts, p.kind, p.data, p.created_ts, r.room_id, COALESCE(n.highlight, 0), `+actionsSQL+`
		FROM push_queue q
		JOIN pushers p ON p.app_id = q.app_id AND p.pushkey = q.pushkey AND p.user_id = q.user_id
		LEFT JOIN push_notifications n ON n.user_id = q.user_id AND n.room_nid = q.room_nid AND n.event_nid = q.event_nid
		JOIN rooms r ON r.room_nid = q.room_nid
		WHERE q.app_id = $1 AND q.pushkey = $2 AND q.user_id = $3
		ORDER BY q.event_nid LIMIT 1`, k.AppID, k.PushKey, k.UserID).
		Scan(&p.EventNID, &p.EnqueuedTS, &p.Attempts, &p.Kind, &data, &p.CreatedTS, &p.RoomID, &hl, &acts)
	if errors.Is(err, sql.ErrNoRows) {
		return p, ErrNotFound
	}
	if err != nil {
		return p, fmt.Errorf("read push queue: %w", err)
	}
	p.Data, p.Actions, p.Highlight = []byte(data), []byte(acts), hl == 1
	return p, nil
}

// Done removes one queued delivery: delivered, or given up. Removing it is
// the record of the outcome, so a delivered notification is never sent
// again by this queue.
func (q *PushQueue) Done(ctx context.Context, k PusherKey, eventNID int64) error {
	if _, err := q.db.W.ExecContext(ctx, `DELETE FROM push_queue WHERE app_id = $1 AND pushkey = $2 AND user_id = $3 AND event_nid = $4`,
		k.AppID, k.PushKey, k.UserID, eventNID); err != nil {
		return fmt.Errorf("remove queued push: %w", err)
	}
	return nil
}

// Failed records a failed attempt and returns the delivery's attempts so far.
func (q *PushQueue) Failed(ctx context.Context, k PusherKey, eventNID int64) (int, error) {
	var n int
	err := q.db.W.QueryRowContext(ctx, `UPDATE push_queue SET attempts = attempts + 1
		WHERE app_id = $1 AND pushkey = $2 AND user_id = $3 AND event_nid = $4 RETURNING attempts`,
		k.AppID, k.PushKey, k.UserID, eventNID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("record push attempt: %w", err)
	}
	return n, nil
}

// DropOlder removes a pusher's deliveries queued before ts (ms) and
// returns how many went.
func (q *PushQueue) DropOlder(ctx context.Context, k PusherKey, ts int64) (int64, error) {
	res, err := q.db.W.ExecContext(ctx, `DELETE FROM push_queue WHERE app_id = $1 AND pushkey = $2 AND user_id = $3 AND enqueued_ts < $4`,
		k.AppID, k.PushKey, k.UserID, ts)
	if err != nil {
		return 0, fmt.Errorf("drop old pushes: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("drop old pushes: %w", err)
	}
	return n, nil
}

// RemovePusher deletes a pusher whose gateway rejected its pushkey; its
// queued deliveries go with it (ON DELETE CASCADE).
func (q *PushQueue) RemovePusher(ctx context.Context, k PusherKey) error {
	if _, err := q.db.W.ExecContext(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id = $3`,
		k.AppID, k.PushKey, k.UserID); err != nil {
		return fmt.Errorf("remove rejected pusher: %w", err)
	}
	return nil
}

// UnreadTotal is a user's unread notification count across the rooms
// they are joined to or invited to (the push gateway's counts.unread).
func (q *PushQueue) UnreadTotal(ctx context.Context, userID string) (int64, error) {
	// Counted like /sync's counts (Push.UnreadCounts: receipts read once,
	// index ranges from them), over the rooms the user is in.
	rooms, err := queryStrings(ctx, q.db.R, `SELECT r.room_id FROM room_members m JOIN rooms r ON r.room_nid = m.room_nid
		WHERE m.user_id = $1 AND m.membership IN ('join', 'invite')`, userID)
	if err != nil {
		return 0, fmt.Errorf("read unread total: %w", err)
	}
	counts, err := NewPush(q.db).UnreadCounts(ctx, userID, rooms)
	if err != nil {
		return 0, fmt.Errorf("read unread total: %w", err)
	}
	var n int64
	for _, c := range counts {
		n += c.Notifications
	}
	return n, nil
}
