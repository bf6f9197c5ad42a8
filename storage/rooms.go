package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Rooms is the portable SQL for rooms, events, state groups, current state,
// memberships, client transaction IDs and aliases (migrations 0002–0003).
//
// Room events have exactly one writer: the roomserver's writer goroutine,
// which applies RoomWrites through a WriteTx, many rooms per transaction
// (group commit). The small side tables that are not part of the event log
// (aliases, directory visibility, forgotten flags) are written directly in
// their own transactions. Reads go to db.R.
type Rooms struct {
	db *DB
}

// NewRooms returns the rooms store on db.
func NewRooms(db *DB) *Rooms { return &Rooms{db: db} }

// Engine reports the database engine, for callers that tune batching.
func (r *Rooms) Engine() Engine { return r.db.Engine }

// Close releases nothing today; it exists so callers need not change if the
// store starts holding resources. The DB itself is closed by its owner.
func (r *Rooms) Close() error { return nil }

// RoomRow is the fixed description of a room.
type RoomRow struct {
	NID        int64
	RoomID     string
	Version    string
	Creator    string
	CreatedTS  int64
	Visibility string // "public" or "private"
}

// RoomHead is where a room's history currently ends.
type RoomHead struct {
	StateGroup   int64
	Depth        int64
	LastEventNID int64
	Extremities  []string // event IDs new events cite as prev_events
}

// StateEntry maps one (type, state_key) to the event holding it.
type StateEntry struct {
	Type     string
	StateKey string
	EventNID int64
}

// NewStateGroup is a state group to insert. PrevID 0 makes it a full
// snapshot whose Entries are the whole state; otherwise Entries are the
// changes on top of PrevID and DeltaDepth is PrevID's depth plus one.
type NewStateGroup struct {
	ID         int64
	PrevID     int64
	DeltaDepth int
	Entries    []StateEntry
}

// Txn records a client transaction ID for an event.
type Txn struct {
	UserID    string
	DeviceID  string
	Scope     string // the endpoint, e.g. "send m.room.message" or "redact $ev"
	TxnID     string
	CreatedTS int64
}

// NewEvent is one event to append to the log.
type NewEvent struct {
	NID         int64 // the stream position; assigned by the writer
	EventID     string
	Type        string
	StateKey    *string
	Sender      string
	Depth       int64
	OriginTS    int64
	StateGroup  int64 // state after the event
	ReplacesNID int64 // state events: the event replaced in the state; 0 if none
	JSON        []byte
	// Membership is the new membership of StateKey for m.room.member events
	// ("" otherwise); it updates room_members.
	Membership string
	Txn        *Txn
	// Relation is the event's m.relates_to with a rel_type (nil: none);
	// it becomes an event_relations row (storage/relations.go).
	Relation *Relation
}

// Redaction applies a redaction: the target's JSON is replaced by its
// redacted form and it is marked as redacted by ByNID; its own relation to
// a parent (if any) is removed.
type Redaction struct {
	TargetNID    int64
	ByNID        int64
	RedactedJSON []byte
}

// NewAlias is an alias to create with a room write.
type NewAlias struct {
	Alias   string
	Creator string
	TS      int64
}

// RoomWrite is everything one request changes in one room, applied
// atomically. Events are appended in order; each state event also updates
// current_state (and room_members for memberships).
type RoomWrite struct {
	RoomNID int64
	NewRoom *RoomRow // insert the room first (room creation)
	Groups  []NewStateGroup
	Events  []NewEvent
	Redacts []Redaction
	Aliases []NewAlias // conflict → ErrConflict for the whole write
	// MoveAliasesFrom moves every alias of that room to this one (upgrades).
	MoveAliasesFrom int64
	Visibility      string // "" leaves it unchanged
	Head            RoomHead
	// Isolated writes run inside a savepoint so an expected failure (an
	// alias conflict) rolls back only this write, not the whole batch.
	Isolated bool
}

// WriteTx is one group-commit transaction of the roomserver writer.
//
// Rows of ordinary writes are buffered and written at Commit with
// multi-row statements: the SQLite driver parses every statement it runs,
// so one INSERT of n rows costs far less than n INSERTs, and PostgreSQL
// saves round trips. Row counts are split into power-of-two chunks so the
// set of distinct statement texts (which PostgreSQL caches prepared) stays
// small.
type WriteTx struct {
	r   *Rooms
	ctx context.Context
	tx  *sql.Tx

	heads map[int64]RoomHead
	order []int64

	groups, entries, events, txns [][]any
	current                       map[[3]string]int // (room, type, state_key) → index in currentRows
	currentRows                   [][]any
	members                       map[[2]string]int
	memberRows                    [][]any
	redacts                       []Redaction
	relations                     [][]any
}

// Begin starts a write transaction for a batch of RoomWrites. Its commit
// may not wait for the disk (DB.BeginUnflushed): when CommitsUnflushed
// says so, nothing in a batch may be acknowledged before FlushLog.
func (r *Rooms) Begin(ctx context.Context) (*WriteTx, error) {
	tx, err := r.db.BeginUnflushed(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin room batch: %w", err)
	}
	return &WriteTx{r: r, ctx: ctx, tx: tx, heads: map[int64]RoomHead{},
		current: map[[3]string]int{}, members: map[[2]string]int{}}, nil
}

// CommitsUnflushed reports whether a committed WriteTx survives a power
// loss only after FlushLog (SQLite at the default durability). Elsewhere
// its commit is already as durable as configured.
func (r *Rooms) CommitsUnflushed() bool { return r.db.CommitsUnflushed() }

// FlushLog makes every committed batch survive a power loss (DB.FlushLog).
func (r *Rooms) FlushLog() error { return r.db.FlushLog() }

// Rollback abandons the batch.
func (w *WriteTx) Rollback() error {
	return w.tx.Rollback()
}

// Commit writes the buffered rows and each touched room's final head, then
// commits.
func (w *WriteTx) Commit() error {
	if err := w.flush(); err != nil {
		_ = w.Rollback()
		return err
	}
	if err := w.writeHeads(); err != nil {
		_ = w.Rollback()
		return err
	}
	if err := w.tx.Commit(); err != nil {
		return fmt.Errorf("commit room batch: %w", err)
	}
	return nil
}

func (w *WriteTx) exec(query string, args ...any) error {
	_, err := w.tx.ExecContext(w.ctx, query, args...)
	return err
}

func (w *WriteTx) execCount(query string, args ...any) (int64, error) {
	res, err := w.tx.ExecContext(w.ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Apply adds one RoomWrite to the batch. An error from an Isolated write
// leaves the rest of the batch intact; any other error means the batch must
// be rolled back.
func (w *WriteTx) Apply(rw *RoomWrite) error {
	if rw.Isolated {
		// An isolated write runs now, inside a savepoint, after everything
		// buffered before it (it may depend on those rows).
		if err := w.flush(); err != nil {
			return err
		}
		if _, err := w.tx.ExecContext(w.ctx, `SAVEPOINT room_write`); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		err := w.apply(rw)
		if err == nil {
			err = w.flush()
		}
		if err != nil {
			w.dropBuffers()
			if _, rerr := w.tx.ExecContext(w.ctx, `ROLLBACK TO SAVEPOINT room_write`); rerr != nil {
				return errors.Join(err, fmt.Errorf("rollback to savepoint: %w", rerr))
			}
			return err
		}
		if _, err := w.tx.ExecContext(w.ctx, `RELEASE SAVEPOINT room_write`); err != nil {
			return fmt.Errorf("release savepoint: %w", err)
		}
	} else if err := w.apply(rw); err != nil {
		return err
	}
	if _, seen := w.heads[rw.RoomNID]; !seen {
		w.order = append(w.order, rw.RoomNID)
	}
	w.heads[rw.RoomNID] = rw.Head
	return nil
}

func (w *WriteTx) dropBuffers() {
	w.groups, w.entries, w.events, w.txns, w.currentRows, w.memberRows, w.redacts = nil, nil, nil, nil, nil, nil, nil
	w.relations = nil
	clear(w.current)
	clear(w.members)
}

// apply runs a write's one-off statements now and buffers its rows.
func (w *WriteTx) apply(rw *RoomWrite) error {
	if nr := rw.NewRoom; nr != nil {
		vis := nr.Visibility
		if vis == "" {
			vis = "private"
		}
		if err := w.exec(`INSERT INTO rooms (room_nid, room_id, room_version, creator, created_ts, visibility, state_group, depth, last_event_nid, extremities)
			VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0, '[]')`,
			nr.NID, nr.RoomID, nr.Version, nr.Creator, nr.CreatedTS, vis); err != nil {
			return fmt.Errorf("insert room: %w", err)
		}
	}
	for _, g := range rw.Groups {
		var prev any
		if g.PrevID != 0 {
			prev = g.PrevID
		}
		w.groups = append(w.groups, []any{g.ID, rw.RoomNID, prev, g.DeltaDepth})
		for _, e := range g.Entries {
			w.entries = append(w.entries, []any{g.ID, e.Type, e.StateKey, e.EventNID})
		}
	}
	for i := range rw.Events {
		w.bufferEvent(rw.RoomNID, &rw.Events[i])
	}
	w.redacts = append(w.redacts, rw.Redacts...)
	for _, a := range rw.Aliases {
		n, err := w.execCount(`INSERT INTO room_aliases (alias, room_nid, creator, created_ts) VALUES ($1, $2, $3, $4)
			ON CONFLICT (alias) DO NOTHING`, a.Alias, rw.RoomNID, a.Creator, a.TS)
		if err != nil {
			return fmt.Errorf("insert alias: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("alias %s: %w", a.Alias, ErrConflict)
		}
	}
	if rw.MoveAliasesFrom != 0 {
		if err := w.exec(`UPDATE room_aliases SET room_nid = $1 WHERE room_nid = $2`, rw.RoomNID, rw.MoveAliasesFrom); err != nil {
			return fmt.Errorf("move aliases: %w", err)
		}
	}
	if rw.Visibility != "" {
		if err := w.exec(`UPDATE rooms SET visibility = $1 WHERE room_nid = $2`, rw.Visibility, rw.RoomNID); err != nil {
			return fmt.Errorf("set visibility: %w", err)
		}
	}
	return nil
}

func (w *WriteTx) bufferEvent(roomNID int64, ev *NewEvent) {
	var stateKey, replaces any
	if ev.StateKey != nil {
		stateKey = *ev.StateKey
	}
	if ev.ReplacesNID != 0 {
		replaces = ev.ReplacesNID
	}
	w.events = append(w.events, []any{ev.NID, roomNID, ev.EventID, ev.Type, stateKey, ev.Sender, ev.Depth, ev.OriginTS,
		ev.StateGroup, replaces, string(ev.JSON)})
	room := strconv.FormatInt(roomNID, 10)
	if ev.StateKey != nil {
		// Later rows for a key replace earlier ones: one multi-row upsert may
		// not touch a row twice (PostgreSQL refuses).
		k := [3]string{room, ev.Type, *ev.StateKey}
		row := []any{roomNID, ev.Type, *ev.StateKey, ev.NID}
		if i, ok := w.current[k]; ok {
			w.currentRows[i] = row
		} else {
			w.current[k] = len(w.currentRows)
			w.currentRows = append(w.currentRows, row)
		}
		if ev.Membership != "" {
			mk := [2]string{room, *ev.StateKey}
			mrow := []any{roomNID, *ev.StateKey, ev.Membership, ev.NID}
			if i, ok := w.members[mk]; ok {
				w.memberRows[i] = mrow
			} else {
				w.members[mk] = len(w.memberRows)
				w.memberRows = append(w.memberRows, mrow)
			}
		}
	}
	if t := ev.Txn; t != nil {
		w.txns = append(w.txns, []any{t.UserID, t.DeviceID, roomNID, t.Scope, t.TxnID, ev.NID, t.CreatedTS})
	}
	if rel := ev.Relation; rel != nil {
		w.relations = append(w.relations, relationRow(roomNID, ev, rel))
	}
}

// flush writes the buffered rows in dependency order: events before the
// redactions that rewrite them.
func (w *WriteTx) flush() error {
	steps := []struct {
		what   string
		prefix string
		cols   int
		suffix string
		rows   [][]any
	}{
		{"state groups", `INSERT INTO state_groups (group_id, room_nid, prev_group, delta_depth) VALUES `, 4, ``, w.groups},
		{"state group entries", `INSERT INTO state_group_entries (group_id, type, state_key, event_nid) VALUES `, 4, ``, w.entries},
		{"events", `INSERT INTO events (event_nid, room_nid, event_id, type, state_key, sender, depth, origin_ts, state_group, replaces_nid, json) VALUES `, 11, ``, w.events},
		{"current state", `INSERT INTO current_state (room_nid, type, state_key, event_nid) VALUES `, 4,
			` ON CONFLICT (room_nid, type, state_key) DO UPDATE SET event_nid = excluded.event_nid`, w.currentRows},
		{"memberships", `INSERT INTO room_members (room_nid, user_id, membership, event_nid) VALUES `, 4,
			` ON CONFLICT (room_nid, user_id) DO UPDATE SET membership = excluded.membership, event_nid = excluded.event_nid, forgotten = FALSE`, w.memberRows},
		{"txns", `INSERT INTO event_txns (user_id, device_id, room_nid, scope, txn_id, event_nid, created_ts) VALUES `, 7, ``, w.txns},
		{"relations", relationInsert, relationCols, ``, w.relations},
	}
	for _, st := range steps {
		if err := w.insertRows(st.prefix, st.cols, st.suffix, st.rows); err != nil {
			return fmt.Errorf("insert %s: %w", st.what, err)
		}
	}
	for _, rd := range w.redacts {
		if err := w.exec(`UPDATE events SET json = $1, redacted_by_nid = $2 WHERE event_nid = $3`,
			string(rd.RedactedJSON), rd.ByNID, rd.TargetNID); err != nil {
			return fmt.Errorf("apply redaction: %w", err)
		}
		if err := w.exec(`DELETE FROM event_relations WHERE event_nid = $1`, rd.TargetNID); err != nil {
			return fmt.Errorf("apply redaction: remove relation: %w", err)
		}
	}
	w.dropBuffers()
	return nil
}

// maxChunk bounds rows per statement (SQLite allows 32766 parameters).
const maxChunk = 256

func (w *WriteTx) insertRows(prefix string, cols int, suffix string, rows [][]any) error {
	for len(rows) > 0 {
		n := maxChunk
		for n > len(rows) {
			n /= 2
		}
		var b strings.Builder
		b.WriteString(prefix)
		args := make([]any, 0, n*cols)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			b.WriteString(placeholders(len(args)+1, cols))
			b.WriteByte(')')
			args = append(args, rows[i]...)
		}
		b.WriteString(suffix)
		if _, err := w.tx.ExecContext(w.ctx, b.String(), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// writeHeads updates each touched room's head once per batch. (One
// UPDATE ... FROM (VALUES ...) for all rooms measured slower on SQLite than
// one small UPDATE per room.)
func (w *WriteTx) writeHeads() error {
	for _, nid := range w.order {
		h := w.heads[nid]
		ext := h.Extremities
		if ext == nil {
			ext = []string{}
		}
		js, err := json.Marshal(ext)
		if err != nil {
			return err
		}
		if err := w.exec(`UPDATE rooms SET state_group = $1, depth = $2, last_event_nid = $3, extremities = $4 WHERE room_nid = $5`,
			h.StateGroup, h.Depth, h.LastEventNID, string(js), nid); err != nil {
			return fmt.Errorf("update room head: %w", err)
		}
	}
	return nil
}
