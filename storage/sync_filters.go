package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// PutFilter stores a user's filter and returns its ID. Uploading the same
// filter again returns the existing ID: clients upload their filter on
// every start, and the table should not grow with each.
func (s *Sync) PutFilter(ctx context.Context, userID, filterJSON string) (int64, error) {
	var id int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT filter_id FROM sync_filters WHERE user_id = $1 AND json = $2 ORDER BY filter_id LIMIT 1`,
			userID, filterJSON).Scan(&id)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO sync_filters (user_id, filter_id, json)
			SELECT $1, COALESCE(MAX(filter_id), 0) + 1, $2 FROM sync_filters WHERE user_id = $1 RETURNING filter_id`,
			userID, filterJSON).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("store filter: %w", err)
	}
	return id, nil
}

// Filter returns a stored filter's JSON. ErrNotFound if the user has no
// filter with that ID.
func (s *Sync) Filter(ctx context.Context, userID string, filterID int64) (string, error) {
	var js string
	err := s.db.R.QueryRowContext(ctx, `SELECT json FROM sync_filters WHERE user_id = $1 AND filter_id = $2`, userID, filterID).Scan(&js)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read filter: %w", err)
	}
	return js, nil
}
