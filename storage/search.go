package storage

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"unicode"
)

// Search is the portable half of server-side search (POST /search). The
// index itself is engine DDL (migration 0050: an FTS5 table on SQLite, a
// tsvector table with a GIN index on PostgreSQL) and is emptied of an
// event by a trigger when a redaction rewrites it. PostgreSQL's triggers
// fill it in each event's own transaction; SQLite's is filled in batches
// behind the event log (CatchUp, migration 0051), because FTS5 pays per
// transaction and SQLite's writer is the send path's one serial stage.
// The few statement fragments that differ per engine — how to match the
// index and how to rank — are a SearchDialect the engine packages
// register; everything else (access, filters, order, pagination) is
// written once here.
type Search struct {
	db *DB
}

// NewSearch returns the search store on db.
func NewSearch(db *DB) *Search { return &Search{db: db} }

// SearchDialect is the engine-specific part of a full-text query.
// storage/sqlite and storage/postgres each register one in init (they own
// the index's DDL, so they own the statements that read it); the table is
// keyed by DB.Engine and only written during init.
type SearchDialect struct {
	// From joins the engine's index to the event log, aliased e.
	From string
	// Match is the WHERE condition; $1 is the query text.
	Match string
	// Rank is the relevance of a row, higher is better; $1 is the query.
	Rank string
	// Query turns search words into the engine's query text ($1). Words
	// are letters and digits only (SearchWords), so they need no escaping.
	Query func(words []string) string
	// Index, when set, inserts the index rows of the events with
	// positions in ($1, $2] and the index follows the event log from
	// event_search_position (CatchUp); when empty the engine's triggers
	// index each event in its own transaction.
	Index string
}

var searchDialects = map[Engine]SearchDialect{}

// RegisterSearchDialect records engine's search statements; the engine
// packages call it from init.
func RegisterSearchDialect(engine Engine, d SearchDialect) { searchDialects[engine] = d }

// SearchableTypes are the event types the index holds, with the one
// content key each is searched by (the spec's `keys`).
var SearchableTypes = map[string]string{
	"m.room.message": "content.body",
	"m.room.name":    "content.name",
	"m.room.topic":   "content.topic",
}

// Limits on what one search term may ask of the index.
const (
	maxSearchWords   = 16
	maxSearchWordLen = 64
)

// SearchWords splits a search term into the words the index matches:
// lower-cased runs of letters and digits, at most maxSearchWords of them,
// each cut to maxSearchWordLen runes. Punctuation never reaches the
// engines' query syntax.
func SearchWords(term string) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.FieldsFunc(strings.ToLower(term), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		if r := []rune(f); len(r) > maxSearchWordLen {
			f = string(r[:maxSearchWordLen])
		}
		if seen[f] {
			continue
		}
		seen[f] = true
		out = append(out, f)
		if len(out) == maxSearchWords {
			break
		}
	}
	return out
}

// SearchQuery is one page of a search over the rooms userID is or was in.
// Nil lists do not filter; the caller resolves type globs and keys into
// Types (a subset of SearchableTypes).
type SearchQuery struct {
	UserID              string
	Words               []string
	Types               []string
	Rooms, NotRooms     []string
	Senders, NotSenders []string
	// ByRank orders by relevance (then newest first); otherwise newest
	// first.
	ByRank bool
	// BeforeNID, when > 0, keeps events older than it (the recent order's
	// cursor); Offset skips rows (the rank order's cursor: relevance moves
	// as the index grows, so a rank cursor would not be stable).
	BeforeNID int64
	Offset    int
	Limit     int
}

// SearchHit is an event that matched and its relevance.
type SearchHit struct {
	Event StoredEvent
	Rank  float64
}

// searchWhere builds the shared FROM and WHERE clauses and their
// arguments.
//
// Access is part of the query: only rooms where the user has a membership
// they have not forgotten, and in rooms they left or were banned from only
// events up to their departure. Finer history visibility (a joined-only
// room before the user's join) is the caller's per-result check.
func (s *Search) searchWhere(q SearchQuery) (string, []any, error) {
	d, ok := searchDialects[s.db.Engine]
	if !ok {
		return "", nil, fmt.Errorf("search: no dialect registered for engine %q", s.db.Engine)
	}
	args := []any{d.Query(q.Words), q.UserID}
	var b strings.Builder
	b.WriteString(` FROM ` + d.From + `
		JOIN rooms r ON r.room_nid = e.room_nid
		JOIN room_members m ON m.room_nid = e.room_nid AND m.user_id = $2
		WHERE ` + d.Match + ` AND m.forgotten = FALSE
		AND (m.membership IN ('join', 'invite') OR (m.membership IN ('leave', 'ban') AND e.event_nid <= m.event_nid))`)
	in := func(col string, vals []string, not bool) {
		if vals == nil {
			return
		}
		if len(vals) == 0 {
			if !not {
				b.WriteString(` AND 1 = 0`)
			}
			return
		}
		op := " IN "
		if not {
			op = " NOT IN "
		}
		b.WriteString(` AND ` + col + op + `(` + placeholders(len(args)+1, len(vals)) + `)`)
		args = append(args, stringArgs(vals)...)
	}
	types := q.Types
	if types == nil {
		types = []string{"m.room.message", "m.room.name", "m.room.topic"}
	}
	in("e.type", types, false)
	in("r.room_id", q.Rooms, false)
	in("r.room_id", q.NotRooms, true)
	in("e.sender", q.Senders, false)
	in("e.sender", q.NotSenders, true)
	return b.String(), args, nil
}

// Batched reports whether the index follows the event log in batches
// (CatchUp) rather than inside each event's transaction.
func (s *Search) Batched() bool { return searchDialects[s.db.Engine].Index != "" }

// searchCatchUpBatch bounds the events one CatchUp transaction indexes,
// so a long backlog never holds the writer for long.
const searchCatchUpBatch = 4096

// CatchUp indexes every event stored since the index last caught up; a
// search calls it first so it finds what was just sent, and a background
// loop (syncapi) calls it a few times a second. Engines that index in the
// event's own transaction have nothing to do. The index and its position
// commit together and are derived from the log, hence TxRederivable.
func (s *Search) CatchUp(ctx context.Context) error {
	d := searchDialects[s.db.Engine]
	if d.Index == "" {
		return nil
	}
	// Most calls find nothing to do: ask a reader first rather than take
	// the write lock.
	var from, last int64
	if err := s.db.R.QueryRowContext(ctx, searchPositionSQL).Scan(&from, &last); err != nil {
		return fmt.Errorf("read search position: %w", err)
	}
	if last <= from {
		return nil
	}
	for {
		more := false
		err := s.db.TxRederivable(ctx, func(tx *sql.Tx) error {
			var from, last int64
			if err := tx.QueryRowContext(ctx, searchPositionSQL).Scan(&from, &last); err != nil {
				return fmt.Errorf("read search position: %w", err)
			}
			if last <= from {
				return nil
			}
			to := min(last, from+searchCatchUpBatch)
			more = to < last
			if _, err := tx.ExecContext(ctx, d.Index, from, to); err != nil {
				return fmt.Errorf("index events: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE event_search_position SET indexed_nid = $1`, to); err != nil {
				return fmt.Errorf("advance search position: %w", err)
			}
			return nil
		})
		if err != nil || !more {
			return err
		}
	}
}

// searchPositionSQL reads the indexer's position and the newest event.
const searchPositionSQL = `SELECT p.indexed_nid, COALESCE((SELECT MAX(event_nid) FROM events), 0) FROM event_search_position p`

// Search returns one page of matching events in the requested order.
func (s *Search) Search(ctx context.Context, q SearchQuery) ([]SearchHit, error) {
	if len(q.Words) == 0 || q.Limit <= 0 {
		return nil, nil
	}
	where, args, err := s.searchWhere(q)
	if err != nil {
		return nil, err
	}
	d := searchDialects[s.db.Engine]
	if q.BeforeNID > 0 {
		args = append(args, q.BeforeNID)
		where += fmt.Sprintf(` AND e.event_nid < $%d`, len(args))
	}
	order := `e.event_nid DESC`
	if q.ByRank {
		order = `rank DESC, e.event_nid DESC`
	}
	args = append(args, q.Limit, q.Offset)
	// Rank and order positions only, then read the page's events: sorting
	// narrow rows keeps a common word (thousands of matches) cheap.
	query := `SELECT e.event_nid, ` + d.Rank + ` AS rank` + where +
		fmt.Sprintf(` ORDER BY %s LIMIT $%d OFFSET $%d`, order, len(args)-1, len(args))
	rows, err := s.db.R.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	var nids []int64
	rank := map[int64]float64{}
	for rows.Next() {
		var nid int64
		var r float64
		if err := rows.Scan(&nid, &r); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		nids = append(nids, nid)
		rank[nid] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	rows.Close()
	evs, err := eventsByNID(ctx, s.db, nids)
	if err != nil {
		return nil, fmt.Errorf("search: read events: %w", err)
	}
	byNID := make(map[int64]StoredEvent, len(evs))
	for _, e := range evs {
		byNID[e.NID] = e
	}
	out := make([]SearchHit, 0, len(nids))
	for _, nid := range nids {
		if e, ok := byNID[nid]; ok {
			out = append(out, SearchHit{Event: e, Rank: rank[nid]})
		}
	}
	return out, nil
}

// Count is how many events match, before the per-result visibility check
// (the spec's count is approximate).
func (s *Search) Count(ctx context.Context, q SearchQuery) (int, error) {
	if len(q.Words) == 0 {
		return 0, nil
	}
	where, args, err := s.searchWhere(q)
	if err != nil {
		return 0, err
	}
	var n int
	if err := s.db.R.QueryRowContext(ctx, `SELECT COUNT(*)`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count search results: %w", err)
	}
	return n, nil
}
