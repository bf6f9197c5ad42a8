package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// Rooms is the portable SQL for rooms, events, state groups, current state,
// memberships, client transaction IDs and aliases (migration 0002).
//
// Room events have exactly one writer: the roomserver's writer goroutine,
// which applies RoomWrites through a WriteTx, many rooms per transaction
// (group commit). The small side tables that are not part of the event log
// (aliases, directory visibility, forgotten flags) are written directly in
// their own transactions. Reads go to db.R.
type Rooms struct {
	db *DB

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// NewRooms returns the rooms store on db.
func NewRooms(db *DB) *Rooms { return &Rooms{db: db, stmts: map[string]*sql.Stmt{}} }

// Engine reports the database engine, for callers that tune batching.
func (r *Rooms) Engine() Engine { return r.db.Engine }

// prepare readies the hot write statements on the writer pool, once, before
// a batch transaction takes the writer connection (on SQLite the pool has
// exactly one, so preparing inside the transaction would wait for itself).
// Prepared statements spare SQLite from re-parsing the same SQL per event.
func (r *Rooms) prepare(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range hotWrites {
		if _, ok := r.stmts[q]; ok {
			continue
		}
		s, err := r.db.W.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		r.stmts[q] = s
	}
	return nil
}

func (r *Rooms) prepared(query string) *sql.Stmt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stmts[query]
}

// Close releases prepared statements. The DB itself is closed by its owner.
func (r *Rooms) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for q, s := range r.stmts {
		errs = append(errs, s.Close())
		delete(r.stmts, q)
	}
	return errors.Join(errs...)
}

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
}

// Redaction applies a redaction: the target's JSON is replaced by its
// redacted form and it is marked as redacted by ByNID.
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

// The hot write statements, prepared once (see prepare).
const (
	qUpdateHead         = `UPDATE rooms SET state_group = $1, depth = $2, last_event_nid = $3 WHERE room_nid = $4`
	qClearExtremities   = `DELETE FROM room_extremities WHERE room_nid = $1`
	qInsertExtremity    = `INSERT INTO room_extremities (room_nid, event_id) VALUES ($1, $2)`
	qInsertGroup        = `INSERT INTO state_groups (group_id, room_nid, prev_group, delta_depth) VALUES ($1, $2, $3, $4)`
	qInsertGroupEntry   = `INSERT INTO state_group_entries (group_id, type, state_key, event_nid) VALUES ($1, $2, $3, $4)`
	qInsertEvent        = `INSERT INTO events (event_nid, room_nid, event_id, type, state_key, sender, depth, origin_ts, state_group, replaces_nid, json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
	qUpsertCurrentState = `INSERT INTO current_state (room_nid, type, state_key, event_nid) VALUES ($1, $2, $3, $4) ON CONFLICT (room_nid, type, state_key) DO UPDATE SET event_nid = excluded.event_nid`
	qUpsertMember       = `INSERT INTO room_members (room_nid, user_id, membership, event_nid, forgotten) VALUES ($1, $2, $3, $4, FALSE) ON CONFLICT (room_nid, user_id) DO UPDATE SET membership = excluded.membership, event_nid = excluded.event_nid, forgotten = FALSE`
	qInsertTxn          = `INSERT INTO event_txns (user_id, device_id, room_nid, scope, txn_id, event_nid, created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7)`
	qRedact             = `UPDATE events SET json = $1, redacted_by_nid = $2 WHERE event_nid = $3`
)

var hotWrites = []string{qUpdateHead, qClearExtremities, qInsertExtremity, qInsertGroup, qInsertGroupEntry, qInsertEvent, qUpsertCurrentState, qUpsertMember, qInsertTxn, qRedact}

// WriteTx is one group-commit transaction of the roomserver writer.
type WriteTx struct {
	r     *Rooms
	ctx   context.Context
	tx    *sql.Tx
	heads map[int64]RoomHead
	order []int64
}

// Begin starts a write transaction for a batch of RoomWrites.
func (r *Rooms) Begin(ctx context.Context) (*WriteTx, error) {
	if err := r.prepare(ctx); err != nil {
		return nil, err
	}
	tx, err := r.db.W.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin room batch: %w", err)
	}
	return &WriteTx{r: r, ctx: ctx, tx: tx, heads: map[int64]RoomHead{}}, nil
}

// Rollback abandons the batch.
func (w *WriteTx) Rollback() error { return w.tx.Rollback() }

// Commit writes each touched room's final head once (several writes for one
// room in a batch only cost one head update) and commits.
func (w *WriteTx) Commit() error {
	for _, nid := range w.order {
		h := w.heads[nid]
		if err := w.exec(qUpdateHead,
			h.StateGroup, h.Depth, h.LastEventNID, nid); err != nil {
			_ = w.tx.Rollback()
			return fmt.Errorf("update room head: %w", err)
		}
		if err := w.exec(qClearExtremities, nid); err != nil {
			_ = w.tx.Rollback()
			return fmt.Errorf("clear extremities: %w", err)
		}
		for _, id := range h.Extremities {
			if err := w.exec(qInsertExtremity, nid, id); err != nil {
				_ = w.tx.Rollback()
				return fmt.Errorf("insert extremity: %w", err)
			}
		}
	}
	if err := w.tx.Commit(); err != nil {
		return fmt.Errorf("commit room batch: %w", err)
	}
	return nil
}

func (w *WriteTx) exec(query string, args ...any) error {
	_, err := w.execResult(query, args...)
	return err
}

func (w *WriteTx) execResult(query string, args ...any) (sql.Result, error) {
	if st := w.r.prepared(query); st != nil {
		return w.tx.StmtContext(w.ctx, st).ExecContext(w.ctx, args...)
	}
	return w.tx.ExecContext(w.ctx, query, args...)
}

func (w *WriteTx) execCount(query string, args ...any) (int64, error) {
	res, err := w.execResult(query, args...)
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
		if _, err := w.tx.ExecContext(w.ctx, `SAVEPOINT room_write`); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		if err := w.apply(rw); err != nil {
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

func (w *WriteTx) apply(rw *RoomWrite) error {
	if nr := rw.NewRoom; nr != nil {
		vis := nr.Visibility
		if vis == "" {
			vis = "private"
		}
		if err := w.exec(`INSERT INTO rooms (room_nid, room_id, room_version, creator, created_ts, visibility, state_group, depth, last_event_nid)
			VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0)`,
			nr.NID, nr.RoomID, nr.Version, nr.Creator, nr.CreatedTS, vis); err != nil {
			return fmt.Errorf("insert room: %w", err)
		}
	}
	for _, g := range rw.Groups {
		var prev any
		if g.PrevID != 0 {
			prev = g.PrevID
		}
		if err := w.exec(qInsertGroup,
			g.ID, rw.RoomNID, prev, g.DeltaDepth); err != nil {
			return fmt.Errorf("insert state group: %w", err)
		}
		for _, e := range g.Entries {
			if err := w.exec(qInsertGroupEntry,
				g.ID, e.Type, e.StateKey, e.EventNID); err != nil {
				return fmt.Errorf("insert state group entry: %w", err)
			}
		}
	}
	for i := range rw.Events {
		if err := w.insertEvent(rw.RoomNID, &rw.Events[i]); err != nil {
			return err
		}
	}
	for _, rd := range rw.Redacts {
		if err := w.exec(qRedact,
			string(rd.RedactedJSON), rd.ByNID, rd.TargetNID); err != nil {
			return fmt.Errorf("apply redaction: %w", err)
		}
	}
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

func (w *WriteTx) insertEvent(roomNID int64, ev *NewEvent) error {
	var stateKey, replaces any
	if ev.StateKey != nil {
		stateKey = *ev.StateKey
	}
	if ev.ReplacesNID != 0 {
		replaces = ev.ReplacesNID
	}
	if err := w.exec(qInsertEvent,
		ev.NID, roomNID, ev.EventID, ev.Type, stateKey, ev.Sender, ev.Depth, ev.OriginTS, ev.StateGroup, replaces, string(ev.JSON)); err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	if ev.StateKey != nil {
		if err := w.exec(qUpsertCurrentState,
			roomNID, ev.Type, *ev.StateKey, ev.NID); err != nil {
			return fmt.Errorf("update current state: %w", err)
		}
		if ev.Membership != "" {
			if err := w.exec(qUpsertMember,
				roomNID, *ev.StateKey, ev.Membership, ev.NID); err != nil {
				return fmt.Errorf("update membership: %w", err)
			}
		}
	}
	if t := ev.Txn; t != nil {
		if err := w.exec(qInsertTxn,
			t.UserID, t.DeviceID, roomNID, t.Scope, t.TxnID, ev.NID, t.CreatedTS); err != nil {
			return fmt.Errorf("insert txn: %w", err)
		}
	}
	return nil
}
