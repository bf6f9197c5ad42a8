package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Media errors beyond ErrNotFound and ErrConflict (a media ID that already
// has content).
var (
	// ErrMediaQuota: the upload would take the user over their quota.
	ErrMediaQuota = errors.New("storage: media quota exceeded")
	// ErrMediaPendingLimit: the user already holds the maximum number of
	// created, unexpired, not yet uploaded media IDs.
	ErrMediaPendingLimit = errors.New("storage: too many pending media uploads")
	// ErrMediaNotUploader: a pending media ID belongs to another user.
	ErrMediaNotUploader = errors.New("storage: media created by another user")
)

// MediaRecord is one media ID. SHA256 == "" means pending: created by
// /media/v1/create and not uploaded to yet (ExpiresTS then says until when
// the upload may come).
type MediaRecord struct {
	Server      string
	MediaID     string
	Uploader    string // the uploader's user ID
	ContentType string
	Filename    string
	Size        int64
	SHA256      string // hex; names the file in the media store
	CreatedTS   int64
	ExpiresTS   int64 // pending only; 0 once uploaded
}

// Pending reports whether the content has not been uploaded yet.
func (m MediaRecord) Pending() bool { return m.SHA256 == "" }

// Thumbnail is one cached thumbnail of a media ID.
type Thumbnail struct {
	Server, MediaID string
	Width, Height   int
	Method          string // "crop" or "scale"
	ContentType     string
	Size            int64
	SHA256          string
	CreatedTS       int64
}

// Media is the storage of media rows, cached thumbnails and per-user usage.
type Media struct{ db *DB }

// NewMedia returns the media storage on db.
func NewMedia(db *DB) *Media { return &Media{db: db} }

// addUsage charges size bytes to userID inside tx, refusing with
// ErrMediaQuota when the total would exceed quota (0: no quota). The
// upsert comes first and the check reads its result: the upsert locks the
// user's row, so concurrent uploads by one user are checked one after the
// other against committed totals (a read-then-write would let two pass
// together); the caller's rollback undoes the charge.
func addUsage(ctx context.Context, tx *sql.Tx, userID string, size, quota int64) error {
	var total int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO media_usage (user_id, bytes) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET bytes = media_usage.bytes + excluded.bytes
		RETURNING bytes`, userID, size).Scan(&total); err != nil {
		return fmt.Errorf("update media usage: %w", err)
	}
	if quota > 0 && total > quota {
		return ErrMediaQuota
	}
	return nil
}

// InsertMedia stores an uploaded media row and charges its size to the
// uploader in one transaction (ErrMediaQuota and nothing stored when over
// quota; ErrConflict when the ID exists).
func (m *Media) InsertMedia(ctx context.Context, rec MediaRecord, quota int64) error {
	if rec.SHA256 == "" {
		return errors.New("insert media: uploaded media needs its sha256")
	}
	return m.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := addUsage(ctx, tx, rec.Uploader, rec.Size, quota); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO media (server, media_id, uploader, content_type, filename, size, sha256, created_ts, expires_ts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)`,
			rec.Server, rec.MediaID, rec.Uploader, rec.ContentType, rec.Filename, rec.Size, rec.SHA256, rec.CreatedTS); err != nil {
			return fmt.Errorf("insert media: %w", mapError(err))
		}
		return nil
	})
}

// CreatePending reserves a media ID for a later upload by rec.Uploader,
// expiring at rec.ExpiresTS. The uploader's expired pending rows are
// dropped first; if they still hold maxPending unexpired ones at now, it
// returns ErrMediaPendingLimit and the earliest of their expiries.
func (m *Media) CreatePending(ctx context.Context, rec MediaRecord, now int64, maxPending int) (earliestExpiry int64, err error) {
	err = m.db.Tx(ctx, func(tx *sql.Tx) error {
		// Charging nothing locks the user's usage row: one user's creates
		// count and insert one after the other, so they cannot pass the
		// limit together.
		if err := addUsage(ctx, tx, rec.Uploader, 0, 0); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM media WHERE uploader = $1 AND sha256 = '' AND expires_ts <= $2`, rec.Uploader, now); err != nil {
			return fmt.Errorf("drop expired pending media: %w", err)
		}
		var n int
		var earliest sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), MIN(expires_ts) FROM media WHERE uploader = $1 AND sha256 = ''`,
			rec.Uploader).Scan(&n, &earliest); err != nil {
			return fmt.Errorf("count pending media: %w", err)
		}
		if n >= maxPending {
			earliestExpiry = earliest.Int64
			return ErrMediaPendingLimit
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO media (server, media_id, uploader, content_type, filename, size, sha256, created_ts, expires_ts)
			VALUES ($1, $2, $3, '', '', 0, '', $4, $5)`,
			rec.Server, rec.MediaID, rec.Uploader, rec.CreatedTS, rec.ExpiresTS); err != nil {
			return fmt.Errorf("insert pending media: %w", mapError(err))
		}
		return nil
	})
	return earliestExpiry, err
}

// CompletePending fills a pending media ID with its uploaded content, in one
// transaction with the uploader's usage. ErrNotFound: no such ID, or it
// expired before now. ErrMediaNotUploader: another user created it.
// ErrConflict: it already has content. ErrMediaQuota: over quota.
func (m *Media) CompletePending(ctx context.Context, rec MediaRecord, now, quota int64) error {
	if rec.SHA256 == "" {
		return errors.New("complete media: uploaded media needs its sha256")
	}
	return m.db.Tx(ctx, func(tx *sql.Tx) error {
		var uploader, sha string
		var expires int64
		err := tx.QueryRowContext(ctx, `SELECT uploader, sha256, expires_ts FROM media WHERE server = $1 AND media_id = $2`,
			rec.Server, rec.MediaID).Scan(&uploader, &sha, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read pending media: %w", err)
		}
		switch {
		case uploader != rec.Uploader:
			return ErrMediaNotUploader
		case sha != "":
			return ErrConflict
		case expires <= now:
			return ErrNotFound
		}
		if err := addUsage(ctx, tx, rec.Uploader, rec.Size, quota); err != nil {
			return err
		}
		// sha256 = '' guards against a concurrent completion on engines
		// whose isolation would let both read the row as pending.
		res, err := tx.ExecContext(ctx, `UPDATE media SET content_type = $3, filename = $4, size = $5, sha256 = $6, expires_ts = 0
			WHERE server = $1 AND media_id = $2 AND sha256 = ''`,
			rec.Server, rec.MediaID, rec.ContentType, rec.Filename, rec.Size, rec.SHA256)
		if err != nil {
			return fmt.Errorf("complete pending media: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrConflict
		}
		return nil
	})
}

// GetMedia returns one media row (ErrNotFound if none).
func (m *Media) GetMedia(ctx context.Context, server, mediaID string) (MediaRecord, error) {
	rec := MediaRecord{Server: server, MediaID: mediaID}
	err := m.db.R.QueryRowContext(ctx, `SELECT uploader, content_type, filename, size, sha256, created_ts, expires_ts
		FROM media WHERE server = $1 AND media_id = $2`, server, mediaID).
		Scan(&rec.Uploader, &rec.ContentType, &rec.Filename, &rec.Size, &rec.SHA256, &rec.CreatedTS, &rec.ExpiresTS)
	if errors.Is(err, sql.ErrNoRows) {
		return MediaRecord{}, ErrNotFound
	}
	if err != nil {
		return MediaRecord{}, fmt.Errorf("read media: %w", err)
	}
	return rec, nil
}

// Usage returns the bytes a user has uploaded.
func (m *Media) Usage(ctx context.Context, userID string) (int64, error) {
	var used int64
	err := m.db.R.QueryRowContext(ctx, `SELECT bytes FROM media_usage WHERE user_id = $1`, userID).Scan(&used)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read media usage: %w", err)
	}
	return used, nil
}

// GetThumbnail returns a cached thumbnail (ErrNotFound if none).
func (m *Media) GetThumbnail(ctx context.Context, server, mediaID string, width, height int, method string) (Thumbnail, error) {
	t := Thumbnail{Server: server, MediaID: mediaID, Width: width, Height: height, Method: method}
	err := m.db.R.QueryRowContext(ctx, `SELECT content_type, size, sha256, created_ts FROM media_thumbnails
		WHERE server = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5`,
		server, mediaID, width, height, method).Scan(&t.ContentType, &t.Size, &t.SHA256, &t.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return Thumbnail{}, ErrNotFound
	}
	if err != nil {
		return Thumbnail{}, fmt.Errorf("read thumbnail: %w", err)
	}
	return t, nil
}

// InsertThumbnail caches a thumbnail; a concurrent request that cached the
// same one first wins (both made identical bytes from the same input).
func (m *Media) InsertThumbnail(ctx context.Context, t Thumbnail) error {
	return m.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO media_thumbnails (server, media_id, width, height, method, content_type, size, sha256, created_ts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (server, media_id, width, height, method) DO NOTHING`,
			t.Server, t.MediaID, t.Width, t.Height, t.Method, t.ContentType, t.Size, t.SHA256, t.CreatedTS); err != nil {
			return fmt.Errorf("insert thumbnail: %w", err)
		}
		return nil
	})
}

// SHA256Referenced reports whether any media or thumbnail row names the
// file with this hash (the file store deletes a file only when none does).
func (m *Media) SHA256Referenced(ctx context.Context, sha string) (bool, error) {
	var n int
	err := m.db.W.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM media WHERE sha256 = $1) + (SELECT COUNT(*) FROM media_thumbnails WHERE sha256 = $1)`, sha).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("count media references: %w", err)
	}
	return n > 0, nil
}
