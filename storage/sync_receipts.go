package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Receipt is one user's receipt of one type (and thread) in a room.
// ThreadID "" is the unthreaded receipt.
type Receipt struct {
	RoomID    string
	Type      string
	UserID    string
	ThreadID  string
	EventID   string
	EventPos  int64 // the event's stream position
	TS        int64
	StreamPos int64
}

// PutReceipt records a receipt inside the caller's transaction unless the
// stored one already points at the same or a later event (receipts are
// "read up to" markers and never move back). It reports whether it wrote.
func (s *Sync) PutReceipt(ctx context.Context, tx *sql.Tx, r Receipt) (bool, error) {
	var cur int64
	err := tx.QueryRowContext(ctx, `SELECT event_pos FROM receipts WHERE room_id = $1 AND receipt_type = $2 AND user_id = $3 AND thread_id = $4`,
		r.RoomID, r.Type, r.UserID, r.ThreadID).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return false, fmt.Errorf("read receipt: %w", err)
	case cur >= r.EventPos:
		return false, nil
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET
			event_id = excluded.event_id, event_pos = excluded.event_pos, ts = excluded.ts, stream_pos = excluded.stream_pos`,
		r.RoomID, r.Type, r.UserID, r.ThreadID, r.EventID, r.EventPos, r.TS, r.StreamPos)
	if err != nil {
		return false, fmt.Errorf("store receipt: %w", err)
	}
	return true, nil
}

// ReceiptsSince lists the receipts in the given rooms with after < stream
// position <= upTo. Private receipts (m.read.private) are only returned
// when they are viewer's own.
func (s *Sync) ReceiptsSince(ctx context.Context, roomIDs []string, viewer string, after, upTo int64) ([]Receipt, error) {
	var out []Receipt
	for start := 0; start < len(roomIDs); start += 500 {
		chunk := roomIDs[start:min(start+500, len(roomIDs))]
		args := append([]any{after, upTo, viewer}, stringArgs(chunk)...)
		rows, err := s.db.R.QueryContext(ctx, `SELECT room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos
			FROM receipts WHERE stream_pos > $1 AND stream_pos <= $2 AND (receipt_type <> 'm.read.private' OR user_id = $3)
			AND room_id IN (`+placeholders(4, len(chunk))+`) ORDER BY stream_pos`, args...)
		if err != nil {
			return nil, fmt.Errorf("read receipts: %w", err)
		}
		for rows.Next() {
			var r Receipt
			if err := rows.Scan(&r.RoomID, &r.Type, &r.UserID, &r.ThreadID, &r.EventID, &r.EventPos, &r.TS, &r.StreamPos); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read receipts: %w", err)
			}
			out = append(out, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read receipts: %w", err)
		}
	}
	return out, nil
}

// ReadUpTo returns, per room, the highest event position userID's m.read or
// m.read.private receipts (any thread) point at; 0 when none. Unread counts
// (push rules) start after it.
func (s *Sync) ReadUpTo(ctx context.Context, userID string, roomIDs []string) (map[string]int64, error) {
	out := map[string]int64{}
	if len(roomIDs) == 0 {
		return out, nil
	}
	args := append([]any{userID}, stringArgs(roomIDs)...)
	rows, err := s.db.R.QueryContext(ctx, `SELECT room_id, MAX(event_pos) FROM receipts
		WHERE user_id = $1 AND receipt_type IN ('m.read', 'm.read.private') AND room_id IN (`+placeholders(2, len(roomIDs))+`)
		GROUP BY room_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read receipts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var room string
		var pos int64
		if err := rows.Scan(&room, &pos); err != nil {
			return nil, fmt.Errorf("read receipts: %w", err)
		}
		out[room] = pos
	}
	return out, rows.Err()
}
