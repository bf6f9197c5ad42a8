package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Push is the storage of push rules, notifications, pushers and the
// notifier's durable event-log position.
type Push struct{ db *DB }

// NewPush returns the push storage on db.
func NewPush(db *DB) *Push { return &Push{db: db} }

// PushRules returns a user's stored rule changes (nil: none).
func (p *Push) PushRules(ctx context.Context, userID string) ([]byte, error) {
	var s string
	err := p.db.R.QueryRowContext(ctx, `SELECT rules FROM push_rules WHERE user_id = $1`, userID).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read push rules: %w", err)
	}
	return []byte(s), nil
}

// PushRulesOf returns the stored rule changes of several users (users
// without changes are absent).
func (p *Push) PushRulesOf(ctx context.Context, userIDs []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for start := 0; start < len(userIDs); start += 500 {
		chunk := userIDs[start:min(start+500, len(userIDs))]
		rows, err := p.db.R.QueryContext(ctx, `SELECT user_id, rules FROM push_rules WHERE user_id IN (`+placeholders(1, len(chunk))+`)`, stringArgs(chunk)...)
		if err != nil {
			return nil, fmt.Errorf("read push rules: %w", err)
		}
		for rows.Next() {
			var u, s string
			if err := rows.Scan(&u, &s); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read push rules: %w", err)
			}
			out[u] = []byte(s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read push rules: %w", err)
		}
	}
	return out, nil
}

// UpdatePushRules reads a user's rule changes, lets fn edit them and
// writes the result, in one transaction; an error from fn changes nothing.
// Callers serialise edits of one user (the notifications service does).
func (p *Push) UpdatePushRules(ctx context.Context, userID string, fn func(old []byte) ([]byte, error)) error {
	return p.db.Tx(ctx, func(tx *sql.Tx) error {
		var s string
		err := tx.QueryRowContext(ctx, `SELECT rules FROM push_rules WHERE user_id = $1`, userID).Scan(&s)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read push rules: %w", err)
		}
		var old []byte
		if err == nil {
			old = []byte(s)
		}
		updated, err := fn(old)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO push_rules (user_id, rules) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET rules = excluded.rules`, userID, string(updated)); err != nil {
			return fmt.Errorf("write push rules: %w", err)
		}
		return nil
	})
}

// ConsumerPosition returns a consumer's durable event-log position (0 and
// false when it never committed one).
func (p *Push) ConsumerPosition(ctx context.Context, name string) (int64, bool, error) {
	var pos int64
	err := p.db.R.QueryRowContext(ctx, `SELECT pos FROM consumer_positions WHERE name = $1`, name).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read consumer position: %w", err)
	}
	return pos, true, nil
}

// EventsAfter reads the event log (after, upTo], oldest first, at most
// limit events, across all rooms.
func (p *Push) EventsAfter(ctx context.Context, after, upTo int64, limit int) ([]StoredEvent, error) {
	rows, err := p.db.R.QueryContext(ctx, `SELECT `+eventCols+` FROM events WHERE event_nid > $1 AND event_nid <= $2 ORDER BY event_nid LIMIT $3`, after, upTo, limit)
	if err != nil {
		return nil, fmt.Errorf("read event log: %w", err)
	}
	defer rows.Close()
	var out []StoredEvent
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("read event log: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Notification is one event that notified one user.
type Notification struct {
	UserID    string
	EventNID  int64
	RoomID    string
	ThreadID  string // thread root event ID, or "main"
	Highlight bool
	Actions   []byte // JSON array
	TS        int64
	Read      bool // set by reads: at or before the user's read receipt
}

// StoreNotifications records a batch's notifications and advances the
// consumer's position to pos in ONE transaction, so a restart resumes
// after exactly what was counted. Rows already present (a batch replayed
// after a crash between commit and memory) are kept once.
func (p *Push) StoreNotifications(ctx context.Context, consumer string, pos int64, ns []Notification) error {
	return p.db.Tx(ctx, func(tx *sql.Tx) error {
		// One INSERT per event and set of actions, the users as a VALUES
		// list: modernc.org/sqlite re-parses a statement's SQL on every
		// Exec, and a message in a 50-member room is 49 rows, so one
		// statement per row was half the server's CPU under load. Only the
		// users are per-row parameters because binding "$N" parameters is
		// quadratic in their number (docs/performance.md, pprof findings).
		// RETURNING names the rows actually inserted (not replayed).
		inserted := make([]Notification, 0, len(ns))
		for _, g := range groupNotifications(ns) {
			for chunk := range slices.Chunk(g.ns, notificationsPerInsert) {
				args := make([]any, 0, 6+len(chunk))
				args = append(args, g.EventNID, g.RoomID, g.ThreadID, g.highlight, g.actions, g.TS)
				for _, n := range chunk {
					args = append(args, n.UserID)
				}
				rows, err := tx.QueryContext(ctx, notificationInsertSQL(len(chunk)), args...)
				if err != nil {
					return fmt.Errorf("store notifications: %w", err)
				}
				added := map[string]bool{}
				for rows.Next() {
					var u string
					if err := rows.Scan(&u); err != nil {
						rows.Close()
						return fmt.Errorf("store notifications: %w", err)
					}
					added[u] = true
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					return fmt.Errorf("store notifications: %w", err)
				}
				for _, n := range chunk {
					if added[n.UserID] {
						delete(added, n.UserID) // a duplicate in ns was not inserted twice
						inserted = append(inserted, n)
					}
				}
			}
		}
		// Deliveries to the users' HTTP pushers commit with the
		// notifications: none is lost, none is queued twice.
		if err := enqueuePushes(ctx, tx, inserted, time.Now().UnixMilli()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO consumer_positions (name, pos) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`, consumer, pos); err != nil {
			return fmt.Errorf("advance consumer position: %w", err)
		}
		return nil
	})
}

// notificationsPerInsert bounds the users of one INSERT.
const notificationsPerInsert = 200

// notificationGroup is the notifications of one event that share their
// actions: they differ only in the user.
type notificationGroup struct {
	EventNID  int64
	RoomID    string
	ThreadID  string
	TS        int64
	highlight int
	actions   string
	ns        []Notification
}

// groupNotifications groups ns by event and actions, in first-seen order.
func groupNotifications(ns []Notification) []*notificationGroup {
	type key struct {
		nid       int64
		highlight bool
		actions   string
	}
	var out []*notificationGroup
	idx := make(map[key]*notificationGroup)
	for _, n := range ns {
		k := key{n.EventNID, n.Highlight, string(n.Actions)}
		g := idx[k]
		if g == nil || g.RoomID != n.RoomID || g.ThreadID != n.ThreadID || g.TS != n.TS {
			g = &notificationGroup{EventNID: n.EventNID, RoomID: n.RoomID, ThreadID: n.ThreadID, TS: n.TS, actions: k.actions}
			if n.Highlight {
				g.highlight = 1
			}
			idx[k] = g
			out = append(out, g)
		}
		g.ns = append(g.ns, n)
	}
	return out
}

// notificationInsertSQL inserts one row per user ($7…$(6+n)) with the
// shared columns $1…$6. The CASTs type the shared parameters for
// PostgreSQL (they sit in a SELECT list, not against a column); WHERE true
// resolves SQLite's parsing ambiguity of INSERT … SELECT … ON CONFLICT.
func notificationInsertSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO push_notifications (user_id, event_nid, room_id, thread_id, highlight, actions, ts)
		SELECT v.column1, CAST($1 AS BIGINT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS INTEGER), CAST($5 AS TEXT), CAST($6 AS BIGINT)
		FROM (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("($")
		b.WriteString(strconv.Itoa(7 + i))
		b.WriteString(")")
	}
	b.WriteString(`) AS v WHERE true ON CONFLICT (user_id, event_nid) DO NOTHING RETURNING user_id`)
	return b.String()
}

// readUpToSQL is the position a user has read up to for notification n:
// the furthest m.read or m.read.private receipt that is unthreaded or in
// n's thread ("Marking notifications as read").
const readUpToSQL = `COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = n.room_id AND r.user_id = n.user_id
	AND r.receipt_type IN ('m.read', 'm.read.private') AND (r.thread_id = '' OR r.thread_id = n.thread_id)), 0)`

// UnreadCount is one room's (thread's) unread notification count.
type UnreadCount struct {
	RoomID, ThreadID         string
	Notifications, Highlight int64
}

// UnreadCounts returns userID's unread counts in roomIDs per room and
// thread (threads with nothing unread are absent).
func (p *Push) UnreadCounts(ctx context.Context, userID string, roomIDs []string) ([]UnreadCount, error) {
	if len(roomIDs) == 0 {
		return nil, nil
	}
	args := append([]any{userID}, stringArgs(roomIDs)...)
	rows, err := p.db.R.QueryContext(ctx, `SELECT n.room_id, n.thread_id, COUNT(*), SUM(n.highlight) FROM push_notifications n
		WHERE n.user_id = $1 AND n.room_id IN (`+placeholders(2, len(roomIDs))+`) AND n.event_nid > `+readUpToSQL+`
		GROUP BY n.room_id, n.thread_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read unread counts: %w", err)
	}
	defer rows.Close()
	var out []UnreadCount
	for rows.Next() {
		var c UnreadCount
		if err := rows.Scan(&c.RoomID, &c.ThreadID, &c.Notifications, &c.Highlight); err != nil {
			return nil, fmt.Errorf("read unread counts: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Notifications lists userID's notifications newest first, those before
// position before (0: from the newest), at most limit, optionally only
// highlights.
func (p *Push) Notifications(ctx context.Context, userID string, before int64, limit int, onlyHighlight bool) ([]Notification, error) {
	q := `SELECT n.event_nid, n.room_id, n.thread_id, n.highlight, n.actions, n.ts, ` + readUpToSQL + `
		FROM push_notifications n WHERE n.user_id = $1`
	args := []any{userID}
	if before > 0 {
		args = append(args, before)
		q += fmt.Sprintf(` AND n.event_nid < $%d`, len(args))
	}
	if onlyHighlight {
		q += ` AND n.highlight = 1`
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY n.event_nid DESC LIMIT $%d`, len(args))
	rows, err := p.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read notifications: %w", err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		n := Notification{UserID: userID}
		var hl int
		var acts string
		var readPos int64
		if err := rows.Scan(&n.EventNID, &n.RoomID, &n.ThreadID, &hl, &acts, &n.TS, &readPos); err != nil {
			return nil, fmt.Errorf("read notifications: %w", err)
		}
		n.Highlight, n.Actions, n.Read = hl == 1, []byte(acts), n.EventNID <= readPos
		out = append(out, n)
	}
	return out, rows.Err()
}

// Pusher is one registered pusher.
type Pusher struct {
	UserID, AppID, PushKey, Kind                  string
	AppDisplayName, DeviceDisplayName, ProfileTag string
	Lang                                          string
	Data                                          []byte // JSON object
	CreatedTS                                     int64
	// DeviceID is the device that created the pusher ("" if unknown): the
	// pusher is removed with it (DeletePushersOfRemovedDevices).
	DeviceID string
}

// SetPusher adds or replaces the user's pusher for (app_id, pushkey). With
// appendOthers false, other users' pushers with the same app_id and
// pushkey are removed (the spec's append=false).
func (p *Push) SetPusher(ctx context.Context, ps Pusher, appendOthers bool) error {
	return p.db.Tx(ctx, func(tx *sql.Tx) error {
		if !appendOthers {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3`, ps.AppID, ps.PushKey, ps.UserID); err != nil {
				return fmt.Errorf("replace pushers: %w", err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts, device_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET kind = excluded.kind, app_display_name = excluded.app_display_name,
				device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data,
				device_id = excluded.device_id`,
			ps.UserID, ps.AppID, ps.PushKey, ps.Kind, ps.AppDisplayName, ps.DeviceDisplayName, ps.ProfileTag, ps.Lang, string(ps.Data), ps.CreatedTS, ps.DeviceID)
		if err != nil {
			return fmt.Errorf("store pusher: %w", err)
		}
		return nil
	})
}

// DeletePusher removes the user's pusher for (app_id, pushkey), if any.
func (p *Push) DeletePusher(ctx context.Context, userID, appID, pushKey string) error {
	if _, err := p.db.W.ExecContext(ctx, `DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushKey); err != nil {
		return fmt.Errorf("delete pusher: %w", err)
	}
	return nil
}

// DeletePushersOfRemovedDevices removes userID's pushers whose creating
// device (of localpart, in devices) no longer exists; pushers with no
// recorded device stay. It returns how many went.
func (p *Push) DeletePushersOfRemovedDevices(ctx context.Context, userID, localpart string) (int64, error) {
	res, err := p.db.W.ExecContext(ctx, `DELETE FROM pushers WHERE user_id = $1 AND device_id <> ''
		AND NOT EXISTS (SELECT 1 FROM devices WHERE devices.localpart = $2 AND devices.device_id = pushers.device_id)`, userID, localpart)
	if err != nil {
		return 0, fmt.Errorf("delete pushers of removed devices: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete pushers of removed devices: %w", err)
	}
	return n, nil
}

// Pushers lists a user's pushers, oldest first.
func (p *Push) Pushers(ctx context.Context, userID string) ([]Pusher, error) {
	rows, err := p.db.R.QueryContext(ctx, `SELECT app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, created_ts, device_id
		FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey`, userID)
	if err != nil {
		return nil, fmt.Errorf("read pushers: %w", err)
	}
	defer rows.Close()
	var out []Pusher
	for rows.Next() {
		ps := Pusher{UserID: userID}
		var data string
		if err := rows.Scan(&ps.AppID, &ps.PushKey, &ps.Kind, &ps.AppDisplayName, &ps.DeviceDisplayName, &ps.ProfileTag, &ps.Lang, &data, &ps.CreatedTS, &ps.DeviceID); err != nil {
			return nil, fmt.Errorf("read pushers: %w", err)
		}
		ps.Data = []byte(data)
		out = append(out, ps)
	}
	return out, rows.Err()
}
