package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Presence is a user's published presence.
type Presence struct {
	UserID       string
	State        string // online, unavailable, offline
	StatusMsg    *string
	LastActiveTS int64
	StreamPos    int64
}

// PutPresence stores a user's presence inside the caller's transaction.
func (s *Sync) PutPresence(ctx context.Context, tx *sql.Tx, p Presence) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_pos) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
			last_active_ts = excluded.last_active_ts, stream_pos = excluded.stream_pos`,
		p.UserID, p.State, p.StatusMsg, p.LastActiveTS, p.StreamPos)
	if err != nil {
		return fmt.Errorf("store presence: %w", err)
	}
	return nil
}

// PresenceOf reads one user's presence. ErrNotFound if never set.
func (s *Sync) PresenceOf(ctx context.Context, userID string) (Presence, error) {
	p := Presence{UserID: userID}
	var msg sql.NullString
	err := s.db.R.QueryRowContext(ctx, `SELECT state, status_msg, last_active_ts, stream_pos FROM presence WHERE user_id = $1`, userID).
		Scan(&p.State, &msg, &p.LastActiveTS, &p.StreamPos)
	if errors.Is(err, sql.ErrNoRows) {
		return p, ErrNotFound
	}
	if err != nil {
		return p, fmt.Errorf("read presence: %w", err)
	}
	if msg.Valid {
		p.StatusMsg = &msg.String
	}
	return p, nil
}

// PresenceSince lists the presence of userID and of every user joined to a
// room userID is joined to, changed with after < stream position <= upTo.
func (s *Sync) PresenceSince(ctx context.Context, userID string, after, upTo int64) ([]Presence, error) {
	return s.presenceList(ctx, `SELECT p.user_id, p.state, p.status_msg, p.last_active_ts, p.stream_pos FROM presence p
		WHERE p.stream_pos > $2 AND p.stream_pos <= $3 AND (p.user_id = $1 OR p.user_id IN (
			SELECT o.user_id FROM room_members m JOIN room_members o ON o.room_nid = m.room_nid
			WHERE m.user_id = $1 AND m.membership = 'join' AND o.membership = 'join'))
		ORDER BY p.stream_pos`, userID, after, upTo)
}

// PresenceNotOffline lists every user whose stored presence is not offline
// (at startup their offline timers are re-armed).
func (s *Sync) PresenceNotOffline(ctx context.Context) ([]Presence, error) {
	return s.presenceList(ctx, `SELECT user_id, state, status_msg, last_active_ts, stream_pos FROM presence WHERE state <> 'offline'`)
}

func (s *Sync) presenceList(ctx context.Context, query string, args ...any) ([]Presence, error) {
	rows, err := s.db.R.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	defer rows.Close()
	var out []Presence
	for rows.Next() {
		var p Presence
		var msg sql.NullString
		if err := rows.Scan(&p.UserID, &p.State, &msg, &p.LastActiveTS, &p.StreamPos); err != nil {
			return nil, fmt.Errorf("read presence: %w", err)
		}
		if msg.Valid {
			p.StatusMsg = &msg.String
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// PresenceOfUsers reads the stored presence of the given users (those who
// never had one are absent).
func (s *Sync) PresenceOfUsers(ctx context.Context, userIDs []string) ([]Presence, error) {
	var out []Presence
	for start := 0; start < len(userIDs); start += 500 {
		chunk := userIDs[start:min(start+500, len(userIDs))]
		ps, err := s.presenceList(ctx, `SELECT user_id, state, status_msg, last_active_ts, stream_pos FROM presence
			WHERE user_id IN (`+placeholders(1, len(chunk))+`) ORDER BY user_id`, stringArgs(chunk)...)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}
