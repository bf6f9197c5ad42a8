package storage

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// StoredEvent is one row of the event log.
type StoredEvent struct {
	NID           int64 // global stream position
	RoomNID       int64
	EventID       string
	Type          string
	StateKey      *string
	Sender        string
	Depth         int64
	OriginTS      int64
	StateGroup    int64 // state after the event
	ReplacesNID   int64 // state events: the event it replaced; 0 if none
	RedactedByNID int64 // 0 unless a redaction has been applied
	JSON          []byte
}

const eventCols = `event_nid, room_nid, event_id, type, state_key, sender, depth, origin_ts, state_group, replaces_nid, redacted_by_nid, json`

func scanEvent(sc interface{ Scan(...any) error }) (StoredEvent, error) {
	var e StoredEvent
	var sk sql.NullString
	var repl, red sql.NullInt64
	// JSON scans straight into its []byte: through a string it was copied
	// twice per row, and a sync reads hundreds of rows.
	if err := sc.Scan(&e.NID, &e.RoomNID, &e.EventID, &e.Type, &sk, &e.Sender, &e.Depth, &e.OriginTS, &e.StateGroup, &repl, &red, &e.JSON); err != nil {
		return e, err
	}
	if sk.Valid {
		s := sk.String
		e.StateKey = &s
	}
	e.ReplacesNID = repl.Int64
	e.RedactedByNID = red.Int64
	return e, nil
}

func (r *Rooms) queryEvents(ctx context.Context, query string, args ...any) ([]StoredEvent, error) {
	return queryEvents(ctx, r.db, query, args...)
}

// queryEvents runs an event-log query on the readers and scans every row;
// the roomserver's and sync's reads of the log share it.
func queryEvents(ctx context.Context, db *DB, query string, args ...any) ([]StoredEvent, error) {
	rows, err := db.R.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoredEvent
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// placeholders returns "$from, ..., $(from+n-1)".
func placeholders(from, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(from + i))
	}
	return b.String()
}

// MaxIDs returns the highest event NID (stream position), state group ID and
// room NID in use, so the single writer can continue numbering after a
// restart.
func (r *Rooms) MaxIDs(ctx context.Context) (event, group, room int64, err error) {
	err = r.db.W.QueryRowContext(ctx, `SELECT
		COALESCE((SELECT MAX(event_nid) FROM events), 0),
		COALESCE((SELECT MAX(group_id) FROM state_groups), 0),
		COALESCE((SELECT MAX(room_nid) FROM rooms), 0)`).Scan(&event, &group, &room)
	if err != nil {
		err = fmt.Errorf("read max ids: %w", err)
	}
	return
}

const roomCols = `room_nid, room_id, room_version, creator, created_ts, visibility, state_group, depth, last_event_nid, extremities`

func (r *Rooms) room(ctx context.Context, db *sql.DB, where string, arg any) (RoomRow, RoomHead, error) {
	var rr RoomRow
	var h RoomHead
	var ext string
	err := db.QueryRowContext(ctx, `SELECT `+roomCols+` FROM rooms WHERE `+where, arg).
		Scan(&rr.NID, &rr.RoomID, &rr.Version, &rr.Creator, &rr.CreatedTS, &rr.Visibility, &h.StateGroup, &h.Depth, &h.LastEventNID, &ext)
	if errors.Is(err, sql.ErrNoRows) {
		return rr, h, ErrNotFound
	}
	if err != nil {
		return rr, h, fmt.Errorf("read room: %w", err)
	}
	if err := json.Unmarshal([]byte(ext), &h.Extremities); err != nil {
		return rr, h, fmt.Errorf("read room extremities: %w", err)
	}
	return rr, h, nil
}

// RoomByID reads a room and its head. ErrNotFound if unknown.
func (r *Rooms) RoomByID(ctx context.Context, roomID string) (RoomRow, RoomHead, error) {
	return r.room(ctx, r.db.R, `room_id = $1`, roomID)
}

// RoomByNID reads a room and its head. ErrNotFound if unknown.
func (r *Rooms) RoomByNID(ctx context.Context, nid int64) (RoomRow, RoomHead, error) {
	return r.room(ctx, r.db.R, `room_nid = $1`, nid)
}

// StateRef is a current-state entry with its event ID.
type StateRef struct {
	StateEntry
	EventID string
}

// CurrentStateRefs lists the room's current state keys and events.
func (r *Rooms) CurrentStateRefs(ctx context.Context, roomNID int64) ([]StateRef, error) {
	rows, err := r.db.R.QueryContext(ctx, `SELECT cs.type, cs.state_key, cs.event_nid, e.event_id
		FROM current_state cs JOIN events e ON e.event_nid = cs.event_nid WHERE cs.room_nid = $1`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("read current state: %w", err)
	}
	defer rows.Close()
	var out []StateRef
	for rows.Next() {
		var s StateRef
		if err := rows.Scan(&s.Type, &s.StateKey, &s.EventNID, &s.EventID); err != nil {
			return nil, fmt.Errorf("read current state: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// CurrentStateEvents returns the room's current state events, all of them
// or only those of the given types.
func (r *Rooms) CurrentStateEvents(ctx context.Context, roomNID int64, types ...string) ([]StoredEvent, error) {
	q := `SELECT ` + prefixed("e.", eventCols) + ` FROM current_state cs JOIN events e ON e.event_nid = cs.event_nid WHERE cs.room_nid = $1`
	args := []any{roomNID}
	if len(types) > 0 {
		q += ` AND cs.type IN (` + placeholders(2, len(types)) + `)`
		for _, t := range types {
			args = append(args, t)
		}
	}
	q += ` ORDER BY e.event_nid`
	evs, err := r.queryEvents(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read current state events: %w", err)
	}
	return evs, nil
}

// CurrentStateEvent returns one current state event. ErrNotFound if unset.
func (r *Rooms) CurrentStateEvent(ctx context.Context, roomNID int64, typ, stateKey string) (StoredEvent, error) {
	row := r.db.R.QueryRowContext(ctx, `SELECT `+prefixed("e.", eventCols)+` FROM current_state cs JOIN events e ON e.event_nid = cs.event_nid
		WHERE cs.room_nid = $1 AND cs.type = $2 AND cs.state_key = $3`, roomNID, typ, stateKey)
	e, err := scanEvent(row)
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	if err != nil {
		return e, fmt.Errorf("read state event: %w", err)
	}
	return e, nil
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// EventsByNID returns the events with the given NIDs (any order; missing
// ones are skipped).
func (r *Rooms) EventsByNID(ctx context.Context, nids []int64) ([]StoredEvent, error) {
	return eventsByNID(ctx, r.db, nids)
}

// eventsByNID reads events in chunks of 500 so a long list never exceeds
// an engine's bound-parameter limit.
func eventsByNID(ctx context.Context, db *DB, nids []int64) ([]StoredEvent, error) {
	var out []StoredEvent
	for start := 0; start < len(nids); start += 500 {
		chunk := nids[start:min(start+500, len(nids))]
		evs, err := queryEvents(ctx, db, `SELECT `+eventCols+` FROM events WHERE event_nid IN (`+placeholders(1, len(chunk))+`)`, int64Args(chunk)...)
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		out = append(out, evs...)
	}
	return out, nil
}

// EventByID returns an event by its Matrix ID. ErrNotFound if unknown.
func (r *Rooms) EventByID(ctx context.Context, eventID string) (StoredEvent, error) {
	return eventByID(ctx, r.db, eventID)
}

func eventByID(ctx context.Context, db *DB, eventID string) (StoredEvent, error) {
	e, err := scanEvent(db.R.QueryRowContext(ctx, `SELECT `+eventCols+` FROM events WHERE event_id = $1`, eventID))
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	if err != nil {
		return e, fmt.Errorf("read event: %w", err)
	}
	return e, nil
}

// RoomEvents returns up to limit events of a room with after < position <=
// upTo, oldest first, or newest first when backwards is set.
func (r *Rooms) RoomEvents(ctx context.Context, roomNID, after, upTo int64, limit int, backwards bool) ([]StoredEvent, error) {
	return roomEvents(ctx, r.db, roomNID, after, upTo, limit, backwards)
}

func roomEvents(ctx context.Context, db *DB, roomNID, after, upTo int64, limit int, backwards bool) ([]StoredEvent, error) {
	order := "ASC"
	if backwards {
		order = "DESC"
	}
	evs, err := queryEvents(ctx, db, `SELECT `+eventCols+` FROM events WHERE room_nid = $1 AND event_nid > $2 AND event_nid <= $3
		ORDER BY event_nid `+order+` LIMIT $4`, roomNID, after, upTo, limit)
	if err != nil {
		return nil, fmt.Errorf("read room events: %w", err)
	}
	return evs, nil
}

// LastEventAtOrBefore returns the room's latest event with position <= pos.
// ErrNotFound if the room had no events then.
func (r *Rooms) LastEventAtOrBefore(ctx context.Context, roomNID, pos int64) (StoredEvent, error) {
	e, err := scanEvent(r.db.R.QueryRowContext(ctx, `SELECT `+eventCols+` FROM events WHERE room_nid = $1 AND event_nid <= $2
		ORDER BY event_nid DESC LIMIT 1`, roomNID, pos))
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	if err != nil {
		return e, fmt.Errorf("read event at position: %w", err)
	}
	return e, nil
}

// MembershipPositions returns the positions of userID's membership events
// in the room whose membership is the given one, oldest first.
func (r *Rooms) MembershipPositions(ctx context.Context, roomNID int64, userID, membership string) ([]int64, error) {
	// The membership value is inside the JSON; the partial state index finds
	// the user's member events and the (few) candidates are decoded here.
	rows, err := r.db.R.QueryContext(ctx, `SELECT event_nid, json FROM events
		WHERE room_nid = $1 AND type = 'm.room.member' AND state_key = $2 ORDER BY event_nid`, roomNID, userID)
	if err != nil {
		return nil, fmt.Errorf("read memberships: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var nid int64
		var js string
		if err := rows.Scan(&nid, &js); err != nil {
			return nil, fmt.Errorf("read memberships: %w", err)
		}
		var ev struct {
			Content struct {
				Membership string `json:"membership"`
			} `json:"content"`
		}
		if json.Unmarshal([]byte(js), &ev) == nil && ev.Content.Membership == membership {
			out = append(out, nid)
		}
	}
	return out, rows.Err()
}

// Member is one room_members row.
type Member struct {
	RoomNID    int64
	RoomID     string
	UserID     string
	Membership string
	EventNID   int64
	Forgotten  bool
}

// Membership returns a user's current membership. ErrNotFound if the user
// never had one.
func (r *Rooms) Membership(ctx context.Context, roomNID int64, userID string) (Member, error) {
	m := Member{RoomNID: roomNID, UserID: userID}
	err := r.db.R.QueryRowContext(ctx, `SELECT membership, event_nid, forgotten FROM room_members WHERE room_nid = $1 AND user_id = $2`,
		roomNID, userID).Scan(&m.Membership, &m.EventNID, &m.Forgotten)
	if errors.Is(err, sql.ErrNoRows) {
		return m, ErrNotFound
	}
	if err != nil {
		return m, fmt.Errorf("read membership: %w", err)
	}
	return m, nil
}

// MembersOf lists the room's members, optionally only those with one of the
// given memberships.
func (r *Rooms) MembersOf(ctx context.Context, roomNID int64, memberships ...string) ([]Member, error) {
	q := `SELECT user_id, membership, event_nid, forgotten FROM room_members WHERE room_nid = $1`
	args := []any{roomNID}
	if len(memberships) > 0 {
		q += ` AND membership IN (` + placeholders(2, len(memberships)) + `)`
		for _, m := range memberships {
			args = append(args, m)
		}
	}
	q += ` ORDER BY user_id`
	rows, err := r.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read members: %w", err)
	}
	defer rows.Close()
	var out []Member
	for rows.Next() {
		m := Member{RoomNID: roomNID}
		if err := rows.Scan(&m.UserID, &m.Membership, &m.EventNID, &m.Forgotten); err != nil {
			return nil, fmt.Errorf("read members: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// RoomsOfUser lists the rooms where userID has one of the given memberships
// (all memberships when none are given).
func (r *Rooms) RoomsOfUser(ctx context.Context, userID string, memberships ...string) ([]Member, error) {
	q := `SELECT m.room_nid, r.room_id, m.membership, m.event_nid, m.forgotten FROM room_members m JOIN rooms r ON r.room_nid = m.room_nid
		WHERE m.user_id = $1`
	args := []any{userID}
	if len(memberships) > 0 {
		q += ` AND m.membership IN (` + placeholders(2, len(memberships)) + `)`
		for _, m := range memberships {
			args = append(args, m)
		}
	}
	q += ` ORDER BY r.room_id`
	rows, err := r.db.R.QueryContext(ctx, q, args...)
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

// SetForgotten marks the user's membership as forgotten. ErrNotFound if the
// user has no membership in the room.
func (r *Rooms) SetForgotten(ctx context.Context, roomNID int64, userID string) error {
	res, err := r.db.W.ExecContext(ctx, `UPDATE room_members SET forgotten = TRUE WHERE room_nid = $1 AND user_id = $2`, roomNID, userID)
	if err != nil {
		return fmt.Errorf("forget room: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// chainCTE walks a state group's delta chain up to its snapshot; lvl is the
// distance from the starting group, so the lowest lvl wins per key.
const chainCTE = `WITH RECURSIVE chain(group_id, prev_group, lvl) AS (
	SELECT group_id, prev_group, 0 FROM state_groups WHERE group_id = $1
	UNION ALL
	SELECT g.group_id, g.prev_group, c.lvl + 1 FROM state_groups g JOIN chain c ON g.group_id = c.prev_group
)`

// StateAtGroup resolves a state group to its full state.
func (r *Rooms) StateAtGroup(ctx context.Context, groupID int64) ([]StateEntry, error) {
	rows, err := r.db.R.QueryContext(ctx, chainCTE+`
		SELECT e.type, e.state_key, e.event_nid FROM chain c JOIN state_group_entries e ON e.group_id = c.group_id
		ORDER BY c.lvl DESC`, groupID)
	if err != nil {
		return nil, fmt.Errorf("read state group: %w", err)
	}
	defer rows.Close()
	// Rows come snapshot first, newest delta last: later rows override.
	type key struct{ t, k string }
	idx := map[key]int{}
	var out []StateEntry
	for rows.Next() {
		var e StateEntry
		if err := rows.Scan(&e.Type, &e.StateKey, &e.EventNID); err != nil {
			return nil, fmt.Errorf("read state group: %w", err)
		}
		if i, ok := idx[key{e.Type, e.StateKey}]; ok {
			out[i] = e
			continue
		}
		idx[key{e.Type, e.StateKey}] = len(out)
		out = append(out, e)
	}
	return out, rows.Err()
}

// StateEntryAtGroup returns the event NID holding (type, stateKey) in a
// state group. ErrNotFound if the key is unset there.
func (r *Rooms) StateEntryAtGroup(ctx context.Context, groupID int64, typ, stateKey string) (int64, error) {
	var nid int64
	err := r.db.R.QueryRowContext(ctx, chainCTE+`
		SELECT e.event_nid FROM chain c JOIN state_group_entries e ON e.group_id = c.group_id
		WHERE e.type = $2 AND e.state_key = $3 ORDER BY c.lvl ASC LIMIT 1`, groupID, typ, stateKey).Scan(&nid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("read state group entry: %w", err)
	}
	return nid, nil
}

// GroupDeltaDepth returns a state group's distance from its snapshot.
func (r *Rooms) GroupDeltaDepth(ctx context.Context, groupID int64) (int, error) {
	var d int
	err := r.db.R.QueryRowContext(ctx, `SELECT delta_depth FROM state_groups WHERE group_id = $1`, groupID).Scan(&d)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("read state group: %w", err)
	}
	return d, nil
}

// TxnKeys calls fn with every stored client transaction key, after
// reporting their number through size (the roomserver sizes its filter of
// keys by it before filling it at start-up).
func (r *Rooms) TxnKeys(ctx context.Context, size func(n int), fn func(userID, deviceID string, roomNID int64, scope, txnID string)) error {
	var n int
	if err := r.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM event_txns`).Scan(&n); err != nil {
		return fmt.Errorf("count txns: %w", err)
	}
	size(n)
	rows, err := r.db.R.QueryContext(ctx, `SELECT user_id, device_id, room_nid, scope, txn_id FROM event_txns`)
	if err != nil {
		return fmt.Errorf("read txns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var user, device, scope, txn string
		var room int64
		if err := rows.Scan(&user, &device, &room, &scope, &txn); err != nil {
			return fmt.Errorf("read txns: %w", err)
		}
		fn(user, device, room, scope, txn)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read txns: %w", err)
	}
	return nil
}

// TxnEvent returns the event ID a client transaction created. ErrNotFound if
// the transaction is new.
func (r *Rooms) TxnEvent(ctx context.Context, userID, deviceID string, roomNID int64, scope, txnID string) (string, error) {
	var id string
	err := r.db.R.QueryRowContext(ctx, `SELECT e.event_id FROM event_txns t JOIN events e ON e.event_nid = t.event_nid
		WHERE t.user_id = $1 AND t.device_id = $2 AND t.room_nid = $3 AND t.scope = $4 AND t.txn_id = $5`,
		userID, deviceID, roomNID, scope, txnID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read txn: %w", err)
	}
	return id, nil
}

// TxnIDsForEvents returns, for the events among nids that userID sent from
// deviceID with a transaction ID, that ID (for unsigned.transaction_id).
func (r *Rooms) TxnIDsForEvents(ctx context.Context, userID, deviceID string, nids []int64) (map[int64]string, error) {
	out := map[int64]string{}
	if len(nids) == 0 {
		return out, nil
	}
	args := make([]any, 0, len(nids))
	for _, n := range nids {
		args = append(args, n)
	}
	// By event_nid alone, the sender compared here: with user_id and
	// device_id in the WHERE clause SQLite's planner reads every
	// transaction of that device through the unique key index instead of
	// looking the few events up by their key.
	rows, err := r.db.R.QueryContext(ctx, `SELECT event_nid, txn_id, user_id, device_id FROM event_txns
		WHERE event_nid IN (`+placeholders(1, len(nids))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read txn ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var nid int64
		var id, user, device string
		if err := rows.Scan(&nid, &id, &user, &device); err != nil {
			return nil, fmt.Errorf("read txn ids: %w", err)
		}
		if user == userID && device == deviceID {
			out[nid] = id
		}
	}
	return out, rows.Err()
}

// PruneTxns deletes transaction mappings created before beforeTS. Rows are
// keyed by event_nid, and stream positions only grow, so event_nid order is
// the order the rows were written: everything before the first row created
// at or after beforeTS goes. That reads the rows it deletes plus one, with
// no index on created_ts to keep up on every send for this hourly job. A
// row stamped earlier than one before it (the wall clock stepped back)
// waits for a later prune; none goes before its time.
func (r *Rooms) PruneTxns(ctx context.Context, beforeTS int64) (int64, error) {
	res, err := r.db.W.ExecContext(ctx, `DELETE FROM event_txns WHERE event_nid < COALESCE(
		(SELECT event_nid FROM event_txns WHERE created_ts >= $1 ORDER BY event_nid LIMIT 1),
		(SELECT MAX(event_nid) + 1 FROM event_txns))`, beforeTS)
	if err != nil {
		return 0, fmt.Errorf("prune txns: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// CreateAlias maps alias to a room. ErrConflict if the alias exists.
func (r *Rooms) CreateAlias(ctx context.Context, alias string, roomNID int64, creator string, ts int64) error {
	res, err := r.db.W.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_nid, creator, created_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (alias) DO NOTHING`, alias, roomNID, creator, ts)
	if err != nil {
		return fmt.Errorf("create alias: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrConflict
	}
	return nil
}

// Alias is one room alias row.
type Alias struct {
	Alias   string
	RoomNID int64
	RoomID  string
	Creator string
}

// AliasByName resolves an alias. ErrNotFound if unknown.
func (r *Rooms) AliasByName(ctx context.Context, alias string) (Alias, error) {
	a := Alias{Alias: alias}
	err := r.db.R.QueryRowContext(ctx, `SELECT a.room_nid, r.room_id, a.creator FROM room_aliases a JOIN rooms r ON r.room_nid = a.room_nid
		WHERE a.alias = $1`, alias).Scan(&a.RoomNID, &a.RoomID, &a.Creator)
	if errors.Is(err, sql.ErrNoRows) {
		return a, ErrNotFound
	}
	if err != nil {
		return a, fmt.Errorf("read alias: %w", err)
	}
	return a, nil
}

// DeleteAlias removes an alias. ErrNotFound if unknown.
func (r *Rooms) DeleteAlias(ctx context.Context, alias string) error {
	res, err := r.db.W.ExecContext(ctx, `DELETE FROM room_aliases WHERE alias = $1`, alias)
	if err != nil {
		return fmt.Errorf("delete alias: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// AliasesOf lists a room's local aliases.
func (r *Rooms) AliasesOf(ctx context.Context, roomNID int64) ([]string, error) {
	rows, err := r.db.R.QueryContext(ctx, `SELECT alias FROM room_aliases WHERE room_nid = $1 ORDER BY alias`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("read aliases: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("read aliases: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// SetVisibility publishes ("public") or unpublishes ("private") a room in
// the directory. ErrNotFound if the room is unknown.
func (r *Rooms) SetVisibility(ctx context.Context, roomNID int64, visibility string) error {
	res, err := r.db.W.ExecContext(ctx, `UPDATE rooms SET visibility = $1 WHERE room_nid = $2`, visibility, roomNID)
	if err != nil {
		return fmt.Errorf("set visibility: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// PublicRooms lists the published rooms with their joined-member counts,
// most members first (ties by room ID, so paging is stable).
func (r *Rooms) PublicRooms(ctx context.Context) ([]PublicRoom, error) {
	rows, err := r.db.R.QueryContext(ctx, `SELECT r.room_nid, r.room_id,
		(SELECT COUNT(*) FROM room_members m WHERE m.room_nid = r.room_nid AND m.membership = 'join')
		FROM rooms r WHERE r.visibility = 'public'`)
	if err != nil {
		return nil, fmt.Errorf("read public rooms: %w", err)
	}
	defer rows.Close()
	var out []PublicRoom
	for rows.Next() {
		var p PublicRoom
		if err := rows.Scan(&p.RoomNID, &p.RoomID, &p.JoinedMembers); err != nil {
			return nil, fmt.Errorf("read public rooms: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sortPublicRooms(out)
	return out, nil
}

// PublicRoom is a published room and its joined-member count.
type PublicRoom struct {
	RoomNID       int64
	RoomID        string
	JoinedMembers int64
}

func sortPublicRooms(p []PublicRoom) {
	slices.SortFunc(p, func(a, b PublicRoom) int {
		if c := cmp.Compare(b.JoinedMembers, a.JoinedMembers); c != 0 {
			return c
		}
		return strings.Compare(a.RoomID, b.RoomID)
	})
}
