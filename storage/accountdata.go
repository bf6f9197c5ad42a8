package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AccountData is one account-data entry: global when RoomID is "".
type AccountData struct {
	RoomID    string
	Type      string
	Content   []byte
	StreamPos int64
}

// PutAccountData sets (or replaces) an entry at stream position pos, inside
// the caller's transaction.
func (s *Sync) PutAccountData(ctx context.Context, tx *sql.Tx, userID, roomID, typ string, content []byte, pos int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO account_data (user_id, room_id, type, content, stream_pos) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos`,
		userID, roomID, typ, string(content), pos)
	if err != nil {
		return fmt.Errorf("store account data: %w", err)
	}
	return nil
}

// AccountDataEntry reads one entry; tx may be nil to read outside a
// transaction. ErrNotFound if unset.
func (s *Sync) AccountDataEntry(ctx context.Context, tx *sql.Tx, userID, roomID, typ string) ([]byte, error) {
	q := `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`
	var row *sql.Row
	if tx != nil {
		row = tx.QueryRowContext(ctx, q, userID, roomID, typ)
	} else {
		row = s.db.R.QueryRowContext(ctx, q, userID, roomID, typ)
	}
	var content string
	err := row.Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read account data: %w", err)
	}
	return []byte(content), nil
}

// AccountDataSince lists a user's entries (global and per room) with
// after < stream position <= upTo, oldest first.
func (s *Sync) AccountDataSince(ctx context.Context, userID string, after, upTo int64) ([]AccountData, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT room_id, type, content, stream_pos FROM account_data
		WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos`, userID, after, upTo)
	if err != nil {
		return nil, fmt.Errorf("read account data: %w", err)
	}
	defer rows.Close()
	var out []AccountData
	for rows.Next() {
		var a AccountData
		var content string
		if err := rows.Scan(&a.RoomID, &a.Type, &content, &a.StreamPos); err != nil {
			return nil, fmt.Errorf("read account data: %w", err)
		}
		a.Content = []byte(content)
		out = append(out, a)
	}
	return out, rows.Err()
}

// StreamPositions returns the highest stream position in use by account
// data, receipts and presence, so syncapi's writer continues after a
// restart.
func (s *Sync) StreamPositions(ctx context.Context) (accountData, receipts, presence int64, err error) {
	err = s.db.W.QueryRowContext(ctx, `SELECT
		COALESCE((SELECT MAX(stream_pos) FROM account_data), 0),
		COALESCE((SELECT MAX(stream_pos) FROM receipts), 0),
		COALESCE((SELECT MAX(stream_pos) FROM presence), 0)`).Scan(&accountData, &receipts, &presence)
	if err != nil {
		err = fmt.Errorf("read stream positions: %w", err)
	}
	return
}
