package storage

import (
	"context"
	"fmt"
	"strings"
)

// Relations reads the event_relations table (migration 0004): which events
// point at which parent with which rel_type. Rows are written only by the
// roomserver's writer, with the child event (NewEvent.Relation), and
// removed when the child is redacted (Redaction). Reads go to db.R and are
// batched: one query per aggregation kind for any number of parents.
type Relations struct {
	db *DB
}

// NewRelations returns the relations store on db.
func NewRelations(db *DB) *Relations { return &Relations{db: db} }

// Relation is a child event's m.relates_to: its rel_type and parent.
type Relation struct {
	RelType  string
	TargetID string // the parent's event ID (it may be unknown here)
	Key      string // m.annotation's aggregation key; "" otherwise
}

const (
	relationInsert = `INSERT INTO event_relations (event_nid, room_nid, target_id, rel_type, event_type, sender, aggregation_key) VALUES `
	relationCols   = 7
)

func relationRow(roomNID int64, ev *NewEvent, rel *Relation) []any {
	var key any
	if rel.Key != "" {
		key = rel.Key
	}
	return []any{ev.NID, roomNID, rel.TargetID, rel.RelType, ev.Type, ev.Sender, key}
}

// ChildrenQuery selects a page of a parent's children.
type ChildrenQuery struct {
	RoomNID  int64
	TargetID string
	// RelType and EventType filter the returned children ("" for any).
	// With Depth > 1 the walk goes through children of any type; the
	// filters apply to what is returned.
	RelType, EventType string
	// The page is the positions in (After, UpTo], newest first when
	// Backward is set, oldest first otherwise.
	After, UpTo int64
	Backward    bool
	Limit       int
	// Depth is how many relationship hops to follow: 1 for direct
	// children only.
	Depth int
}

// Children returns a page of the events relating to a parent, directly or
// through up to Depth hops, within one room.
func (r *Relations) Children(ctx context.Context, q ChildrenQuery) ([]StoredEvent, error) {
	depth := max(q.Depth, 1)
	args := []any{q.TargetID, q.RoomNID, depth, q.After, q.UpTo}
	where := ``
	if q.RelType != "" {
		args = append(args, q.RelType)
		where += fmt.Sprintf(` AND r.rel_type = $%d`, len(args))
	}
	if q.EventType != "" {
		args = append(args, q.EventType)
		where += fmt.Sprintf(` AND r.event_type = $%d`, len(args))
	}
	order := "ASC"
	if q.Backward {
		order = "DESC"
	}
	args = append(args, q.Limit)
	// Relationships always point at older events, so the walk cannot
	// loop; the depth bound keeps a long chain from costing much.
	query := `WITH RECURSIVE tree(event_nid, depth) AS (
			SELECT event_nid, 1 FROM event_relations WHERE target_id = $1 AND room_nid = $2
			UNION ALL
			SELECT c.event_nid, t.depth + 1 FROM tree t
				JOIN events p ON p.event_nid = t.event_nid
				JOIN event_relations c ON c.target_id = p.event_id AND c.room_nid = $2
			WHERE t.depth < $3
		)
		SELECT ` + prefixed("e.", eventCols) + ` FROM events e JOIN event_relations r ON r.event_nid = e.event_nid
		WHERE e.event_nid IN (SELECT event_nid FROM tree) AND e.event_nid > $4 AND e.event_nid <= $5` + where + `
		ORDER BY e.event_nid ` + order + fmt.Sprintf(` LIMIT $%d`, len(args))
	evs, err := queryEvents(ctx, r.db, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read relations: %w", err)
	}
	return evs, nil
}

// Thread is a thread root of a room and its latest reply's position.
type Thread struct {
	RootID string
	Latest int64
}

// Threads lists a room's threads by latest reply, newest first, whose
// latest reply is at or before upTo. A non-empty participant keeps only
// threads that user started or replied to.
func (r *Relations) Threads(ctx context.Context, roomNID int64, participant string, upTo int64, limit int) ([]Thread, error) {
	args := []any{roomNID, upTo}
	having := `MAX(r.event_nid) <= $2`
	if participant != "" {
		args = append(args, participant)
		having += ` AND (SUM(CASE WHEN r.sender = $3 THEN 1 ELSE 0 END) > 0
			OR EXISTS (SELECT 1 FROM events e WHERE e.event_id = r.target_id AND e.sender = $3))`
	}
	args = append(args, limit)
	rows, err := r.db.R.QueryContext(ctx, `SELECT r.target_id, MAX(r.event_nid) FROM event_relations r
		WHERE r.room_nid = $1 AND r.rel_type = 'm.thread'
		GROUP BY r.target_id HAVING `+having+`
		ORDER BY MAX(r.event_nid) DESC`+fmt.Sprintf(` LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("read threads: %w", err)
	}
	defer rows.Close()
	var out []Thread
	for rows.Next() {
		var t Thread
		if err := rows.Scan(&t.RootID, &t.Latest); err != nil {
			return nil, fmt.Errorf("read threads: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RelationSummary aggregates one parent's children of one rel_type.
type RelationSummary struct {
	TargetID string
	RelType  string
	Count    int64
	Latest   int64 // the newest child's position
	// ByViewer reports that the viewer sent at least one of them.
	ByViewer bool
}

// Summaries aggregates the children of the given rel_types for every
// parent at once, leaving out children sent by the ignored users.
func (r *Relations) Summaries(ctx context.Context, targetIDs, relTypes []string, viewer string, ignored []string) ([]RelationSummary, error) {
	var out []RelationSummary
	for start := 0; start < len(targetIDs); start += 500 {
		chunk := targetIDs[start:min(start+500, len(targetIDs))]
		args := []any{viewer}
		where := inList("target_id", &args, chunk) + ` AND ` + inList("rel_type", &args, relTypes)
		if len(ignored) > 0 {
			where += ` AND NOT ` + inList("sender", &args, ignored)
		}
		rows, err := r.db.R.QueryContext(ctx, `SELECT target_id, rel_type, COUNT(*), MAX(event_nid),
			MAX(CASE WHEN sender = $1 THEN 1 ELSE 0 END) FROM event_relations
			WHERE `+where+` GROUP BY target_id, rel_type`, args...)
		if err != nil {
			return nil, fmt.Errorf("read relation summaries: %w", err)
		}
		for rows.Next() {
			var s RelationSummary
			var mine int
			if err := rows.Scan(&s.TargetID, &s.RelType, &s.Count, &s.Latest, &mine); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read relation summaries: %w", err)
			}
			s.ByViewer = mine == 1
			out = append(out, s)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read relation summaries: %w", err)
		}
	}
	return out, nil
}

// Child is one child event of a parent, without its JSON.
type Child struct {
	TargetID string
	NID      int64
	EventID  string
	Type     string
	Sender   string
	OriginTS int64
}

// ChildrenOf lists, for every parent at once, its children of one
// rel_type in stream order, leaving out children sent by the ignored
// users.
func (r *Relations) ChildrenOf(ctx context.Context, targetIDs []string, relType string, ignored []string) ([]Child, error) {
	var out []Child
	for start := 0; start < len(targetIDs); start += 500 {
		chunk := targetIDs[start:min(start+500, len(targetIDs))]
		args := []any{relType}
		where := `r.rel_type = $1 AND ` + inList("r.target_id", &args, chunk)
		if len(ignored) > 0 {
			where += ` AND NOT ` + inList("r.sender", &args, ignored)
		}
		rows, err := r.db.R.QueryContext(ctx, `SELECT r.target_id, e.event_nid, e.event_id, e.type, e.sender, e.origin_ts
			FROM event_relations r JOIN events e ON e.event_nid = r.event_nid
			WHERE `+where+` ORDER BY e.event_nid`, args...)
		if err != nil {
			return nil, fmt.Errorf("read related events: %w", err)
		}
		for rows.Next() {
			var c Child
			if err := rows.Scan(&c.TargetID, &c.NID, &c.EventID, &c.Type, &c.Sender, &c.OriginTS); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read related events: %w", err)
			}
			out = append(out, c)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read related events: %w", err)
		}
	}
	return out, nil
}

// inList renders "col IN ($n, ...)" for vals, appending them to args.
func inList(col string, args *[]any, vals []string) string {
	var b strings.Builder
	b.WriteString(col)
	b.WriteString(` IN (`)
	b.WriteString(placeholders(len(*args)+1, len(vals)))
	b.WriteByte(')')
	*args = append(*args, stringArgs(vals)...)
	return b.String()
}

// EventsByID returns the events with the given IDs (any order; unknown
// ones are skipped), in chunks that stay within the parameter limits.
func (r *Relations) EventsByID(ctx context.Context, ids []string) ([]StoredEvent, error) {
	var out []StoredEvent
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		var args []any
		evs, err := queryEvents(ctx, r.db, `SELECT `+eventCols+` FROM events WHERE `+inList("event_id", &args, chunk), args...)
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		out = append(out, evs...)
	}
	return out, nil
}

// HasAnnotation reports whether sender already annotated the parent with
// an event of this type and key (a redacted annotation no longer counts:
// its row is gone).
func (r *Relations) HasAnnotation(ctx context.Context, targetID, sender, eventType, key string) (bool, error) {
	var n int
	err := r.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM event_relations
		WHERE target_id = $1 AND rel_type = 'm.annotation' AND sender = $2 AND event_type = $3 AND aggregation_key = $4`,
		targetID, sender, eventType, key).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read annotations: %w", err)
	}
	return n > 0, nil
}
