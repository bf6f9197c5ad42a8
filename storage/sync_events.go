package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Sync is the portable SQL behind syncapi: batch reads of the event log and
// room state written by the roomserver (migration 0002), and syncapi's own
// tables (migration 0010: filters, account data, receipts, presence).
//
// The event-log reads are batched across rooms on purpose: /sync serves
// every room of a user at once, and one query for all rooms costs the same
// round trip as one query for one room.
type Sync struct {
	db *DB
}

// NewSync returns the sync store on db.
func NewSync(db *DB) *Sync { return &Sync{db: db} }

// Tx runs fn in one write transaction (see DB.Tx).
func (s *Sync) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error { return s.db.Tx(ctx, fn) }

// maxUnion bounds the sub-selects of one UNION ALL query: SQLite's
// SQLITE_MAX_COMPOUND_SELECT defaults to 500.
const maxUnion = 200

func int64Args(vals []int64) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return out
}

func stringArgs(vals []string) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return out
}

func (s *Sync) queryEvents(ctx context.Context, query string, args ...any) ([]StoredEvent, error) {
	return queryEvents(ctx, s.db, query, args...)
}

// UserRooms lists every room where userID has a membership row, with the
// room's Matrix ID and the membership event's position.
func (s *Sync) UserRooms(ctx context.Context, userID string) ([]Member, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT m.room_nid, r.room_id, m.membership, m.event_nid, m.forgotten
		FROM room_members m JOIN rooms r ON r.room_nid = m.room_nid WHERE m.user_id = $1 ORDER BY r.room_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("read user rooms: %w", err)
	}
	defer rows.Close()
	var out []Member
	for rows.Next() {
		m := Member{UserID: userID}
		if err := rows.Scan(&m.RoomNID, &m.RoomID, &m.Membership, &m.EventNID, &m.Forgotten); err != nil {
			return nil, fmt.Errorf("read user rooms: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// RoomNID resolves a room ID. ErrNotFound if the server does not know it.
func (s *Sync) RoomNID(ctx context.Context, roomID string) (int64, error) {
	var nid int64
	err := s.db.R.QueryRowContext(ctx, `SELECT room_nid FROM rooms WHERE room_id = $1`, roomID).Scan(&nid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("read room: %w", err)
	}
	return nid, nil
}

// ChangedRooms returns, for each room where userID has a membership row and
// an event landed with after < position <= upTo, the newest such position.
// The range is short for an incremental sync, so this walks the event log
// by its primary key and joins the few rows to the user's memberships.
func (s *Sync) ChangedRooms(ctx context.Context, userID string, after, upTo int64) (map[int64]int64, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT e.room_nid, MAX(e.event_nid) FROM events e
		JOIN room_members m ON m.room_nid = e.room_nid AND m.user_id = $1
		WHERE e.event_nid > $2 AND e.event_nid <= $3 GROUP BY e.room_nid`, userID, after, upTo)
	if err != nil {
		return nil, fmt.Errorf("read changed rooms: %w", err)
	}
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var room, pos int64
		if err := rows.Scan(&room, &pos); err != nil {
			return nil, fmt.Errorf("read changed rooms: %w", err)
		}
		out[room] = pos
	}
	return out, rows.Err()
}

// EventWindow is a range of one room's event log: After < position <= UpTo.
type EventWindow struct {
	RoomNID int64
	After   int64
	UpTo    int64
}

// LatestEvents returns, for each window, its newest limit events, newest
// first within each room (rooms in no particular order). One round trip per
// 200 rooms: a UNION ALL of index range scans, each stopping at limit.
func (s *Sync) LatestEvents(ctx context.Context, windows []EventWindow, limit int) ([]StoredEvent, error) {
	var out []StoredEvent
	for start := 0; start < len(windows); start += maxUnion {
		q, args := latestQuery(eventCols, windows[start:min(start+maxUnion, len(windows))], limit)
		evs, err := s.queryEvents(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("read latest events: %w", err)
		}
		out = append(out, evs...)
	}
	return out, nil
}

// latestQuery is the UNION ALL of each window's newest limit events.
func latestQuery(cols string, windows []EventWindow, limit int) (string, []any) {
	var q strings.Builder
	args := make([]any, 0, 3*len(windows))
	for i, w := range windows {
		if i > 0 {
			q.WriteString(" UNION ALL ")
		}
		n := len(args)
		// The limit is an int written into the SQL, not a parameter
		// shared by every branch: parameters used once each, in order,
		// bind in linear time on SQLite (storage/sqlite/positional.go).
		fmt.Fprintf(&q, `SELECT * FROM (SELECT %s FROM events WHERE room_nid = $%d AND event_nid > $%d AND event_nid <= $%d
			ORDER BY event_nid DESC LIMIT %d) w%d`, cols, n+1, n+2, n+3, limit, i)
		args = append(args, w.RoomNID, w.After, w.UpTo)
	}
	return q.String(), args
}

// EventRef names a version of an event: its position, room, and the
// redaction applied to it. A redaction is the only change an event row
// ever sees (it rewrites json and sets redacted_by_nid together), so a
// copy read with the same RedactedByNID is current.
type EventRef struct {
	NID           int64
	RoomNID       int64
	RedactedByNID int64
}

// LatestEventRefs is LatestEvents without the events: the same windows
// and order, three small columns per row instead of the whole event, for
// readers that keep recently read events in memory.
func (s *Sync) LatestEventRefs(ctx context.Context, windows []EventWindow, limit int) ([]EventRef, error) {
	var out []EventRef
	for start := 0; start < len(windows); start += maxUnion {
		q, args := latestQuery(`event_nid, room_nid, redacted_by_nid`, windows[start:min(start+maxUnion, len(windows))], limit)
		rows, err := s.db.R.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("read latest event refs: %w", err)
		}
		for rows.Next() {
			var r EventRef
			var red sql.NullInt64
			if err := rows.Scan(&r.NID, &r.RoomNID, &red); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read latest event refs: %w", err)
			}
			r.RedactedByNID = red.Int64
			out = append(out, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read latest event refs: %w", err)
		}
	}
	return out, nil
}

// RoomEvents returns up to limit events of one room with after < position
// <= upTo, oldest first, or newest first when backwards is set.
func (s *Sync) RoomEvents(ctx context.Context, roomNID, after, upTo int64, limit int, backwards bool) ([]StoredEvent, error) {
	return roomEvents(ctx, s.db, roomNID, after, upTo, limit, backwards)
}

// EventsByTimestamp returns up to limit events of a room at or after ts
// (forward, earliest first) or at or before ts (backward, latest first),
// skipping the first skip of them.
func (s *Sync) EventsByTimestamp(ctx context.Context, roomNID, ts int64, forward bool, skip, limit int) ([]StoredEvent, error) {
	q := `SELECT ` + eventCols + ` FROM events WHERE room_nid = $1 AND origin_ts >= $2 ORDER BY origin_ts ASC, event_nid ASC LIMIT $3 OFFSET $4`
	if !forward {
		q = `SELECT ` + eventCols + ` FROM events WHERE room_nid = $1 AND origin_ts <= $2 ORDER BY origin_ts DESC, event_nid DESC LIMIT $3 OFFSET $4`
	}
	evs, err := s.queryEvents(ctx, q, roomNID, ts, limit, skip)
	if err != nil {
		return nil, fmt.Errorf("read events by timestamp: %w", err)
	}
	return evs, nil
}

// EventsByNID returns the events with the given positions (any order;
// missing ones are skipped).
func (s *Sync) EventsByNID(ctx context.Context, nids []int64) ([]StoredEvent, error) {
	return eventsByNID(ctx, s.db, nids)
}

// EventByID returns an event by its Matrix ID. ErrNotFound if unknown.
func (s *Sync) EventByID(ctx context.Context, eventID string) (StoredEvent, error) {
	return eventByID(ctx, s.db, eventID)
}

// LastEventsAtOrBefore returns, for each room, its newest event with
// position <= pos (rooms without one are absent). Each room's lookup is a
// MAX over its (room_nid, event_nid) index: one index probe, not a scan of
// the room's history.
func (s *Sync) LastEventsAtOrBefore(ctx context.Context, roomNIDs []int64, pos int64) (map[int64]StoredEvent, error) {
	out := map[int64]StoredEvent{}
	roomNIDs = uniqueInt64(roomNIDs)
	for start := 0; start < len(roomNIDs); start += maxUnion {
		chunk := roomNIDs[start:min(start+maxUnion, len(roomNIDs))]
		var q strings.Builder
		args := append(make([]any, 0, len(chunk)+1), pos)
		for i, room := range chunk {
			if i > 0 {
				q.WriteString(" UNION ALL ")
			}
			fmt.Fprintf(&q, `SELECT (SELECT MAX(event_nid) FROM events WHERE room_nid = $%d AND event_nid <= $1)`, len(args)+1)
			args = append(args, room)
		}
		evs, err := s.queryEvents(ctx, `SELECT `+eventCols+` FROM events WHERE event_nid IN (`+q.String()+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("read events at position: %w", err)
		}
		for _, e := range evs {
			out[e.RoomNID] = e
		}
	}
	return out, nil
}

// groupChainCTE walks several state groups' delta chains at once; start is
// the group asked for, lvl the distance from it (the lowest lvl wins per
// key).
const groupChainCTE = `WITH RECURSIVE chain(start_group, group_id, prev_group, lvl) AS (
	SELECT group_id, group_id, prev_group, 0 FROM state_groups WHERE group_id IN (%s)
	UNION ALL
	SELECT c.start_group, g.group_id, g.prev_group, c.lvl + 1 FROM state_groups g JOIN chain c ON g.group_id = c.prev_group
)`

// StateAtGroups resolves several state groups to their full state in one
// query. With memberKeys set, m.room.member entries are limited to those
// state keys (lazy-loading reads only the members it needs); other types
// are returned in full. typesOnly, if set, limits the result to those types.
func (s *Sync) StateAtGroups(ctx context.Context, groups []int64, typesOnly []string, memberKeys []string) (map[int64][]StateEntry, error) {
	out := map[int64][]StateEntry{}
	groups = uniqueInt64(groups)
	if len(groups) == 0 {
		return out, nil
	}
	args := int64Args(groups)
	where := ""
	if typesOnly != nil {
		if len(typesOnly) == 0 {
			return out, nil
		}
		where += ` AND e.type IN (` + placeholders(len(args)+1, len(typesOnly)) + `)`
		args = append(args, stringArgs(typesOnly)...)
	}
	if memberKeys != nil {
		if len(memberKeys) == 0 {
			where += ` AND e.type <> 'm.room.member'`
		} else {
			where += ` AND (e.type <> 'm.room.member' OR e.state_key IN (` + placeholders(len(args)+1, len(memberKeys)) + `))`
			args = append(args, stringArgs(memberKeys)...)
		}
	}
	rows, err := s.db.R.QueryContext(ctx, fmt.Sprintf(groupChainCTE, placeholders(1, len(groups)))+`
		SELECT c.start_group, c.lvl, e.type, e.state_key, e.event_nid FROM chain c JOIN state_group_entries e ON e.group_id = c.group_id
		WHERE 1 = 1`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read state groups: %w", err)
	}
	defer rows.Close()
	type key struct {
		group int64
		t, k  string
	}
	best := map[key]int{} // → lvl of the entry kept
	idx := map[key]int{}  // → index in out[group]
	for rows.Next() {
		var g int64
		var lvl int
		var e StateEntry
		if err := rows.Scan(&g, &lvl, &e.Type, &e.StateKey, &e.EventNID); err != nil {
			return nil, fmt.Errorf("read state groups: %w", err)
		}
		k := key{g, e.Type, e.StateKey}
		if l, ok := best[k]; ok {
			if lvl < l {
				best[k] = lvl
				out[g][idx[k]] = e
			}
			continue
		}
		best[k] = lvl
		idx[k] = len(out[g])
		out[g] = append(out[g], e)
	}
	return out, rows.Err()
}

func uniqueInt64(in []int64) []int64 {
	seen := make(map[int64]bool, len(in))
	out := make([]int64, 0, len(in))
	for _, v := range in {
		if v != 0 && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// MemberCounts returns each room's number of members per membership.
func (s *Sync) MemberCounts(ctx context.Context, roomNIDs []int64) (map[int64]map[string]int, error) {
	out := map[int64]map[string]int{}
	if len(roomNIDs) == 0 {
		return out, nil
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT room_nid, membership, COUNT(*) FROM room_members
		WHERE room_nid IN (`+placeholders(1, len(roomNIDs))+`) GROUP BY room_nid, membership`, int64Args(roomNIDs)...)
	if err != nil {
		return nil, fmt.Errorf("read member counts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var room int64
		var m string
		var n int
		if err := rows.Scan(&room, &m, &n); err != nil {
			return nil, fmt.Errorf("read member counts: %w", err)
		}
		if out[room] == nil {
			out[room] = map[string]int{}
		}
		out[room][m] = n
	}
	return out, rows.Err()
}

// HeroCandidates returns, per room, up to perRoom members of each
// membership other than exclude, earliest membership event first (the
// spec's "stream ordering" for m.heroes).
func (s *Sync) HeroCandidates(ctx context.Context, roomNIDs []int64, exclude string, perRoom int) (map[int64][]Member, error) {
	out := map[int64][]Member{}
	if len(roomNIDs) == 0 {
		return out, nil
	}
	args := append([]any{exclude, perRoom}, int64Args(roomNIDs)...)
	rows, err := s.db.R.QueryContext(ctx, `SELECT room_nid, user_id, membership, event_nid FROM (
		SELECT room_nid, user_id, membership, event_nid,
			ROW_NUMBER() OVER (PARTITION BY room_nid, membership ORDER BY event_nid) AS rn
		FROM room_members WHERE user_id <> $1 AND room_nid IN (`+placeholders(3, len(roomNIDs))+`)
	) ranked WHERE rn <= $2 ORDER BY room_nid, event_nid`, args...)
	if err != nil {
		return nil, fmt.Errorf("read heroes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m Member
		if err := rows.Scan(&m.RoomNID, &m.UserID, &m.Membership, &m.EventNID); err != nil {
			return nil, fmt.Errorf("read heroes: %w", err)
		}
		out[m.RoomNID] = append(out[m.RoomNID], m)
	}
	return out, rows.Err()
}

// JoinedUsers lists the users joined to a room (by Matrix room ID).
func (s *Sync) JoinedUsers(ctx context.Context, roomID string) ([]string, error) {
	return s.userList(ctx, `SELECT m.user_id FROM room_members m JOIN rooms r ON r.room_nid = m.room_nid
		WHERE r.room_id = $1 AND m.membership = 'join'`, roomID)
}

// UsersSharingRooms lists the users joined to any room userID is joined
// to, userID included if joined anywhere.
func (s *Sync) UsersSharingRooms(ctx context.Context, userID string) ([]string, error) {
	return s.userList(ctx, `SELECT DISTINCT o.user_id FROM room_members m JOIN room_members o ON o.room_nid = m.room_nid
		WHERE m.user_id = $1 AND m.membership = 'join' AND o.membership = 'join'`, userID)
}

// SharesRoom reports whether two users are both joined to some room.
func (s *Sync) SharesRoom(ctx context.Context, a, b string) (bool, error) {
	var one int
	err := s.db.R.QueryRowContext(ctx, `SELECT 1 FROM room_members m JOIN room_members o ON o.room_nid = m.room_nid
		WHERE m.user_id = $1 AND o.user_id = $2 AND m.membership = 'join' AND o.membership = 'join' LIMIT 1`, a, b).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read shared rooms: %w", err)
	}
	return true, nil
}

func (s *Sync) userList(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.db.R.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("read users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// RoomMembership is a user's current membership in a room.
type RoomMembership struct {
	Membership string // "leave" when the user never had one
	EventNID   int64  // the membership event's position (0: never)
	Forgotten  bool
}

// MembershipIn returns userID's current membership in a room (by Matrix
// room ID). ErrNotFound if the room is unknown.
func (s *Sync) MembershipIn(ctx context.Context, roomID, userID string) (RoomMembership, error) {
	var nid int64
	var m sql.NullString
	var pos sql.NullInt64
	var forgotten sql.NullBool
	err := s.db.R.QueryRowContext(ctx, `SELECT r.room_nid, m.membership, m.event_nid, m.forgotten FROM rooms r
		LEFT JOIN room_members m ON m.room_nid = r.room_nid AND m.user_id = $2 WHERE r.room_id = $1`, roomID, userID).Scan(&nid, &m, &pos, &forgotten)
	if errors.Is(err, sql.ErrNoRows) {
		return RoomMembership{}, ErrNotFound
	}
	if err != nil {
		return RoomMembership{}, fmt.Errorf("read membership: %w", err)
	}
	if !m.Valid {
		return RoomMembership{Membership: "leave"}, nil
	}
	return RoomMembership{Membership: m.String, EventNID: pos.Int64, Forgotten: forgotten.Bool}, nil
}

// CurrentStateOfTypes returns the current state events of the given types
// (state key "") in each room.
func (s *Sync) CurrentStateOfTypes(ctx context.Context, roomNIDs []int64, types []string) ([]StoredEvent, error) {
	if len(roomNIDs) == 0 || len(types) == 0 {
		return nil, nil
	}
	args := append(stringArgs(types), int64Args(roomNIDs)...)
	evs, err := s.queryEvents(ctx, `SELECT `+prefixed("e.", eventCols)+` FROM current_state cs JOIN events e ON e.event_nid = cs.event_nid
		WHERE cs.state_key = '' AND cs.type IN (`+placeholders(1, len(types))+`) AND cs.room_nid IN (`+placeholders(len(types)+1, len(roomNIDs))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read current state: %w", err)
	}
	return evs, nil
}

// JoinedUsersIn lists the users joined to any of the rooms.
func (s *Sync) JoinedUsersIn(ctx context.Context, roomNIDs []int64) ([]string, error) {
	if len(roomNIDs) == 0 {
		return nil, nil
	}
	return s.userList(ctx, `SELECT DISTINCT user_id FROM room_members WHERE membership = 'join'
		AND room_nid IN (`+placeholders(1, len(roomNIDs))+`)`, int64Args(roomNIDs)...)
}

// SendersBetween lists the distinct senders of the events with after <
// position <= upTo (presence counts sending as activity).
func (s *Sync) SendersBetween(ctx context.Context, after, upTo int64) ([]string, error) {
	return s.userList(ctx, `SELECT DISTINCT sender FROM events WHERE event_nid > $1 AND event_nid <= $2`, after, upTo)
}
