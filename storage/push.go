package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
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
	TS        int64  // the event's origin_server_ts (not stored: read from events)
	Read      bool   // set by reads: at or before the user's read receipt
}

// StoreNotifications records a batch's explicit notifications and
// advances the consumer's position to pos in ONE transaction (StoreBatch
// with only explicit rows).
func (p *Push) StoreNotifications(ctx context.Context, consumer string, pos int64, ns []Notification) error {
	return p.storeBatch(ctx, p.db.Tx, consumer, pos, NotificationBatch{Explicit: ns})
}

// StoreBatch records a batch's notifications (explicit rows, shared rows
// with their skips, members' join spans) and advances the consumer's
// position to pos in ONE transaction, so a restart resumes after exactly
// what was counted. Rows already present (a batch replayed after a crash
// between commit and memory) are kept once. Every room must be a stored
// room.
//
// The commit is not flushed to disk by itself (DB.TxRederivable): after a
// power loss the consumer evaluates the lost batches again from its last
// durable position, so the events' own commits carry the only fsync on the
// send path. StoreNotifications commits durably.
func (p *Push) StoreBatch(ctx context.Context, consumer string, pos int64, b NotificationBatch) error {
	return p.storeBatch(ctx, p.db.TxRederivable, consumer, pos, b)
}

func (p *Push) storeBatch(ctx context.Context, inTx func(context.Context, func(*sql.Tx) error) error, consumer string, pos int64, b NotificationBatch) error {
	return inTx(ctx, func(tx *sql.Tx) error {
		roomNIDs, err := roomNIDsOf(ctx, tx, b.roomIDs(), b.RoomNIDs)
		if err != nil {
			return err
		}
		// Spans first: a shared row's recipients are read through them.
		if err := storeMemberships(ctx, tx, b.Memberships, roomNIDs); err != nil {
			return err
		}
		inserted, err := storeExplicit(ctx, tx, b.Explicit, roomNIDs)
		if err != nil {
			return err
		}
		shared, err := storeShared(ctx, tx, b.Shared, roomNIDs)
		if err != nil {
			return err
		}
		// Deliveries to the users' HTTP pushers commit with the
		// notifications: none is lost, none is queued twice.
		if err := p.enqueuePushes(ctx, tx, inserted, shared, roomNIDs, time.Now().UnixMilli()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO consumer_positions (name, pos) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`, consumer, pos); err != nil {
			return fmt.Errorf("advance consumer position: %w", err)
		}
		return nil
	})
}

// storeExplicit inserts one push_notifications row per notification and
// returns those actually inserted (not replayed).
func storeExplicit(ctx context.Context, tx *sql.Tx, ns []Notification, roomNIDs map[string]int64) ([]Notification, error) {
	// One INSERT per event and set of actions, the users as a VALUES
	// list: modernc.org/sqlite re-parses a statement's SQL on every
	// Exec, and a message in a 50-member room was 49 rows, so one
	// statement per row was half the server's CPU under load. Only the
	// users are per-row parameters because binding "$N" parameters is
	// quadratic in their number (docs/performance.md, pprof findings).
	// RETURNING names the rows actually inserted (not replayed).
	inserted := make([]Notification, 0, len(ns))
	for _, g := range groupNotifications(ns) {
		for chunk := range slices.Chunk(g.ns, notificationsPerInsert) {
			args := make([]any, 0, 5+len(chunk))
			args = append(args, roomNIDs[g.RoomID], g.EventNID, storedThread(g.ThreadID), g.highlight, storedActions(g.actions))
			for _, n := range chunk {
				args = append(args, n.UserID)
			}
			added, err := insertedUsers(ctx, tx, notificationInsertSQL(len(chunk)), args)
			if err != nil {
				return nil, fmt.Errorf("store notifications: %w", err)
			}
			for _, n := range chunk {
				if added[n.UserID] {
					delete(added, n.UserID) // a duplicate in ns was not inserted twice
					inserted = append(inserted, n)
				}
			}
		}
	}
	return inserted, nil
}

// insertedUsers runs an INSERT … RETURNING user_id and collects the users.
func insertedUsers(ctx context.Context, tx *sql.Tx, query string, args []any) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	added := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		added[u] = true
	}
	return added, rows.Err()
}

// roomNIDsOf maps rooms to their room_nid (rows are keyed by it, not by
// the room ID text), reading only the rooms known does not map: the
// consumer passes what it read with the events, which spares a query per
// room per batch.
func roomNIDsOf(ctx context.Context, tx *sql.Tx, roomIDs []string, known map[string]int64) (map[string]int64, error) {
	out := make(map[string]int64, len(known))
	for _, roomID := range roomIDs {
		if _, ok := out[roomID]; ok {
			continue
		}
		if nid, ok := known[roomID]; ok {
			out[roomID] = nid
			continue
		}
		var nid int64
		err := tx.QueryRowContext(ctx, `SELECT room_nid FROM rooms WHERE room_id = $1`, roomID).Scan(&nid)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("store notifications: room %s is not stored", roomID)
		}
		if err != nil {
			return nil, fmt.Errorf("store notifications: read room: %w", err)
		}
		out[roomID] = nid
	}
	return out, nil
}

// mainThread is the main timeline's thread ID (receipts' and the API's),
// stored as NULL in push_notifications.thread_id.
const mainThread = "main"

// defaultActions are the actions of most notifications (the default
// message rules' ["notify"] with no tweaks), stored as NULL in
// push_notifications.actions.
const defaultActions = `["notify"]`

// storedThread is thread's push_notifications.thread_id.
func storedThread(thread string) any {
	if thread == mainThread {
		return nil
	}
	return thread
}

// storedActions is actions' push_notifications.actions.
func storedActions(actions string) any {
	if actions == defaultActions {
		return nil
	}
	return actions
}

// threadSQL and actionsSQL read the stored columns of n back.
const (
	threadSQL  = `COALESCE(n.thread_id, '` + mainThread + `')`
	actionsSQL = `COALESCE(n.actions, '` + defaultActions + `')`
)

// notificationsPerInsert bounds the users of one INSERT.
const notificationsPerInsert = 200

// notificationGroup is the notifications of one event that share their
// actions: they differ only in the user.
type notificationGroup struct {
	EventNID  int64
	RoomID    string
	ThreadID  string
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
		if g == nil || g.RoomID != n.RoomID || g.ThreadID != n.ThreadID {
			g = &notificationGroup{EventNID: n.EventNID, RoomID: n.RoomID, ThreadID: n.ThreadID, actions: k.actions}
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

// notificationInsertSQL inserts one row per user ($6…$(5+n)) with the
// shared columns $1…$5. The CASTs type the shared parameters for
// PostgreSQL (they sit in a SELECT list, not against a column); WHERE true
// resolves SQLite's parsing ambiguity of INSERT … SELECT … ON CONFLICT.
func notificationInsertSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO push_notifications (user_id, room_nid, event_nid, thread_id, highlight, actions)
		SELECT v.column1, CAST($1 AS BIGINT), CAST($2 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS INTEGER), CAST($5 AS TEXT)
		FROM (VALUES `)
	writeValueRows(&b, 6, n)
	b.WriteString(`) AS v WHERE true ON CONFLICT (user_id, room_nid, event_nid) DO NOTHING RETURNING user_id`)
	return b.String()
}

// writeValueRows writes n one-column VALUES rows "($from), ($from+1), …".
func writeValueRows(b *strings.Builder, from, n int) {
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("($")
		b.WriteString(strconv.Itoa(from + i))
		b.WriteString(")")
	}
}

// readUpToSQL is the position a user has read up to for notification n
// (in the room whose room ID is r.room_id): the furthest m.read or
// m.read.private receipt that is unthreaded or in n's thread ("Marking
// notifications as read"). Only the /notifications page uses it, for its
// own rows; counts read the receipts once (ReadBounds).
const readUpToSQL = `COALESCE((SELECT MAX(rc.event_pos) FROM receipts rc WHERE rc.room_id = r.room_id AND rc.user_id = n.user_id
	AND rc.receipt_type IN ('m.read', 'm.read.private') AND (rc.thread_id = '' OR rc.thread_id = ` + threadSQL + `)), 0)`

// UnreadCount is one room's (thread's) unread notification count.
type UnreadCount struct {
	RoomID, ThreadID         string
	Notifications, Highlight int64
}

// UnreadCounts returns userID's unread counts in roomIDs per room and
// thread (threads with nothing unread are absent).
//
// The user's read receipts are read first, one bound per room (and per
// thread whose own receipt is further), and the counts are then index
// ranges starting at those bounds. Reading the receipt once per counted
// row instead cost a probe per row and, since the bound was not a range,
// scanned every row the user ever had in the room: a /sync of a listener
// in a busy room was half the server's CPU in the fan-out scenario
// (docs/performance.md).
func (p *Push) UnreadCounts(ctx context.Context, userID string, roomIDs []string) ([]UnreadCount, error) {
	if len(roomIDs) == 0 {
		return nil, nil
	}
	bounds, err := p.ReadBounds(ctx, userID, roomIDs)
	if err != nil {
		return nil, err
	}
	return p.CountUnread(ctx, userID, roomIDs, bounds, nil, 0)
}

// CountUnread counts userID's notifications in roomIDs that are unread by
// bounds (ReadBounds), counting only those after after[room] (if set) and
// at or before upTo (if > 0): a caller that knows a room's counts up to a
// position adds the rows since. Notification rows are only ever added, in
// position order, with the consumer's position, so the counts up to a
// committed position never change while the bounds stay the same.
func (p *Push) CountUnread(ctx context.Context, userID string, roomIDs []string, bounds map[string]ReadBound, after map[string]int64, upTo int64) ([]UnreadCount, error) {
	if len(roomIDs) == 0 {
		return nil, nil
	}
	// A room listed twice would be counted twice (it is a VALUES row).
	roomIDs = slices.Compact(slices.Sorted(slices.Values(roomIDs)))
	q, args := unreadCountsQuery(userID, roomIDs, bounds, after, upTo)
	rows, err := p.db.R.QueryContext(ctx, q, args...)
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

// ReadBound is where a user's reading of one room stands: rows at or
// before Lo are read (the unthreaded receipt); Threads maps a thread
// ("main" or a root event ID) whose own receipt is further than Lo to it.
type ReadBound struct {
	Lo      int64
	Threads map[string]int64
}

// Equal reports whether b and o are the same bound.
func (b ReadBound) Equal(o ReadBound) bool {
	if b.Lo != o.Lo || len(b.Threads) != len(o.Threads) {
		return false
	}
	for t, pos := range b.Threads {
		if op, ok := o.Threads[t]; !ok || op != pos {
			return false
		}
	}
	return true
}

// ReadBounds reads userID's m.read and m.read.private receipts in roomIDs
// ("Marking notifications as read": a notification is read when an
// unthreaded receipt or one in its thread is at or after it). Rooms with
// no receipt are absent (their bound is zero).
func (p *Push) ReadBounds(ctx context.Context, userID string, roomIDs []string) (map[string]ReadBound, error) {
	out := map[string]ReadBound{}
	if len(roomIDs) == 0 {
		return out, nil
	}
	args := append(stringArgs(roomIDs), userID)
	rows, err := p.db.R.QueryContext(ctx, `SELECT room_id, thread_id, MAX(event_pos) FROM receipts
		WHERE room_id IN (`+placeholders(1, len(roomIDs))+`) AND receipt_type IN ('m.read', 'm.read.private') AND user_id = $`+strconv.Itoa(len(roomIDs)+1)+`
		GROUP BY room_id, thread_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read receipts for counts: %w", err)
	}
	defer rows.Close()
	type threadPos struct {
		room, thread string
		pos          int64
	}
	var threaded []threadPos
	for rows.Next() {
		var t threadPos
		if err := rows.Scan(&t.room, &t.thread, &t.pos); err != nil {
			return nil, fmt.Errorf("read receipts for counts: %w", err)
		}
		b := out[t.room]
		if t.thread == "" {
			b.Lo = max(b.Lo, t.pos)
		} else {
			threaded = append(threaded, t)
		}
		out[t.room] = b
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read receipts for counts: %w", err)
	}
	for _, t := range threaded {
		if b := out[t.room]; t.pos > b.Lo {
			if b.Threads == nil {
				b.Threads = map[string]int64{}
			}
			b.Threads[t.thread] = t.pos
			out[t.room] = b
		}
	}
	return out, nil
}

// unreadCountsQuery counts userID's unread notifications in roomIDs from
// their read bounds: explicit rows, plus the shared rows inside the user's
// join spans (never highlights), summed per room and thread. The bounds
// and the user come in as VALUES lists whose parameters are used once each
// and in order, so SQLite binds them positionally (storage/sqlite). A row
// is counted after max(its room's bound, its span's start): one range of
// the index, not a scan of the user's whole history in the room. The
// CROSS JOINs fix SQLite's join order (b, rooms, u, then the user's rows):
// left free, it scanned every user's spans and filtered by user last.
// PostgreSQL plans them as inner joins.
func unreadCountsQuery(userID string, roomIDs []string, bounds map[string]ReadBound, after map[string]int64, upTo int64) (string, []any) {
	var q strings.Builder
	args := make([]any, 0, 2*len(roomIDs)+1)
	param := func(v any, typ string) string {
		args = append(args, v)
		return "CAST($" + strconv.Itoa(len(args)) + " AS " + typ + ")"
	}
	q.WriteString(`WITH b(room_id, lo) AS (VALUES `)
	var threadRows [][3]any
	for i, room := range roomIDs {
		rb := bounds[room]
		lo := max(rb.Lo, after[room])
		for t, pos := range rb.Threads {
			threadRows = append(threadRows, [3]any{room, t, pos})
		}
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(" + param(room, "TEXT") + ", " + param(lo, "BIGINT") + ")")
	}
	// u carries the user and the ceiling (a parameter, so the SQL text,
	// and with it SQLite's cached statement, is the same at every position).
	if upTo <= 0 {
		upTo = math.MaxInt64
	}
	q.WriteString(`), u(id, hi) AS (VALUES (` + param(userID, "TEXT") + `, ` + param(upTo, "BIGINT") + `))`)
	const ceiling = ` AND n.event_nid <= u.hi`
	// A thread whose own receipt is further than its room's: its rows
	// start there instead (rare: only clients sending threaded receipts).
	threadCond := ``
	if len(threadRows) > 0 {
		q.WriteString(`, tb(room_id, thread, lo) AS (VALUES `)
		for i, t := range threadRows {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(" + param(t[0], "TEXT") + ", " + param(t[1], "TEXT") + ", " + param(t[2], "BIGINT") + ")")
		}
		q.WriteString(`)`)
		threadCond = ` AND n.event_nid > COALESCE((SELECT tb.lo FROM tb WHERE tb.room_id = b.room_id AND tb.thread = ` + threadSQL + `), 0)`
	}
	q.WriteString(`
		SELECT c.room_id, c.thread, SUM(c.n), SUM(c.h) FROM (
		SELECT b.room_id AS room_id, ` + threadSQL + ` AS thread, COUNT(*) AS n, SUM(n.highlight) AS h
		FROM b CROSS JOIN rooms r CROSS JOIN u CROSS JOIN push_notifications n
		WHERE r.room_id = b.room_id AND n.user_id = u.id AND n.room_nid = r.room_nid AND n.event_nid > b.lo` + ceiling + threadCond + `
		GROUP BY b.room_id, ` + threadSQL + `
		UNION ALL
		SELECT b.room_id AS room_id, ` + threadSQL + ` AS thread, COUNT(*) AS n, 0 AS h
		FROM b CROSS JOIN rooms r CROSS JOIN u CROSS JOIN push_member_spans sp CROSS JOIN push_shared n
		WHERE r.room_id = b.room_id AND sp.user_id = u.id AND sp.room_nid = r.room_nid AND ` + sharedForUserSQL("u.id", "b.lo") + ceiling + threadCond + `
		GROUP BY b.room_id, ` + threadSQL + `
		) c GROUP BY c.room_id, c.thread`)
	return q.String(), args
}

// Notifications lists userID's notifications newest first, those before
// position before (0: from the newest), at most limit, optionally only
// highlights. TS is the event's origin_server_ts.
func (p *Push) Notifications(ctx context.Context, userID string, before int64, limit int, onlyHighlight bool) ([]Notification, error) {
	if limit <= 0 {
		return nil, nil
	}
	// The only B-tree is keyed (user, room, event), so "the user's newest
	// rows across rooms" is not an index range. Every row of the page is
	// among its room's newest limit rows, so the page's oldest row is at
	// or after cutoff = the newest room-wise limit-th row: the page is
	// read from each room's range at or after cutoff (one seek per room,
	// the rooms found by skipping through the key, rs), not from all the
	// user's rows. Highlights are few and need not be in every room's
	// newest rows, so a highlight-only page is one pass over the user's
	// rows instead. The CROSS JOIN keeps SQLite's planner on rs first
	// (one seek per room); PostgreSQL plans it as an inner join. Only the
	// page's rows are joined to their room, event and receipts.
	args := []any{userID}
	if before > 0 {
		args = append(args, before)
	}
	q := notificationsSQL(before > 0, limit, onlyHighlight)
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

// notificationsSQL is Notifications' query: $1 the user, $2 before (with
// hasBefore).
func notificationsSQL(hasBefore bool, limit int, onlyHighlight bool) string {
	filter := ``
	if hasBefore {
		filter = ` AND p.event_nid < $2`
	}
	// Shared rows (never highlights) are read the same way with the
	// user's join spans in the place of rooms: each span's newest limit
	// rows bound the page (scut), then the spans' rows at or after it.
	// The page merges the two kinds' newest limit rows.
	sfilter := strings.ReplaceAll(filter, "p.event_nid", "n.event_nid")
	page := `SELECT p.user_id, p.room_nid, p.event_nid, p.thread_id, p.highlight, p.actions FROM push_notifications p
		WHERE p.user_id = $1` + filter + ` AND p.highlight = 1 ORDER BY p.event_nid DESC LIMIT ` + strconv.Itoa(limit)
	if !onlyHighlight {
		page = `WITH RECURSIVE rs(room_nid) AS (
			SELECT MIN(p.room_nid) FROM push_notifications p WHERE p.user_id = $1
			UNION ALL
			SELECT (SELECT MIN(p.room_nid) FROM push_notifications p WHERE p.user_id = $1 AND p.room_nid > rs.room_nid) FROM rs WHERE rs.room_nid IS NOT NULL
		), cut(c) AS (
			SELECT COALESCE(MAX((SELECT p.event_nid FROM push_notifications p WHERE p.user_id = $1 AND p.room_nid = rs.room_nid` + filter + `
				ORDER BY p.event_nid DESC LIMIT 1 OFFSET ` + strconv.Itoa(limit-1) + `)), 0) FROM rs WHERE rs.room_nid IS NOT NULL
		), scut(c) AS (
			SELECT COALESCE(MAX((SELECT n.event_nid FROM push_shared n WHERE ` + sharedForUserSQL("$1", "") + sfilter + `
				ORDER BY n.event_nid DESC LIMIT 1 OFFSET ` + strconv.Itoa(limit-1) + `)), 0) FROM push_member_spans sp WHERE sp.user_id = $1
		), ep AS (
			SELECT p.user_id, p.room_nid, p.event_nid, p.thread_id, p.highlight, p.actions
			FROM rs CROSS JOIN push_notifications p
			WHERE p.user_id = $1 AND p.room_nid = rs.room_nid AND p.event_nid >= (SELECT c FROM cut)` + filter + `
			ORDER BY p.event_nid DESC LIMIT ` + strconv.Itoa(limit) + `
		), sh AS (
			SELECT CAST($1 AS TEXT) AS user_id, n.room_nid, n.event_nid, n.thread_id, 0 AS highlight, CAST(NULL AS TEXT) AS actions
			FROM push_member_spans sp CROSS JOIN push_shared n
			WHERE sp.user_id = $1 AND ` + sharedForUserSQL("$1", "") + ` AND n.event_nid >= (SELECT c FROM scut)` + sfilter + `
			ORDER BY n.event_nid DESC LIMIT ` + strconv.Itoa(limit) + `
		)
		SELECT * FROM (SELECT * FROM ep UNION ALL SELECT * FROM sh) m ORDER BY m.event_nid DESC LIMIT ` + strconv.Itoa(limit)
	}
	return `SELECT n.event_nid, r.room_id, ` + threadSQL + `, n.highlight, ` + actionsSQL + `, COALESCE(e.origin_ts, 0), ` + readUpToSQL + `
		FROM (` + page + `) n JOIN rooms r ON r.room_nid = n.room_nid LEFT JOIN events e ON e.event_nid = n.event_nid
		ORDER BY n.event_nid DESC`
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
	// Before the row exists: a batch that looked for pushers before this
	// commit and found none cannot then mark the table empty.
	p.db.httpPushers.Store(pushersSome)
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
