package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// BackupVersion is one key backup version of a user.
type BackupVersion struct {
	Version   int64
	Algorithm string
	AuthData  []byte // a JSON object
	Etag      int64
	Count     int64 // keys stored in it
}

// WrongBackupVersion is returned when keys are written to a version that
// is not the user's current one. It matches ErrConflict.
type WrongBackupVersion struct{ Current int64 }

func (e *WrongBackupVersion) Error() string {
	return fmt.Sprintf("storage: backup version is not the current one (%d)", e.Current)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *WrongBackupVersion) Is(target error) bool { return target == ErrConflict }

// BackupKey is one backed-up room key.
type BackupKey struct {
	RoomID            string
	SessionID         string
	FirstMessageIndex int64
	ForwardedCount    int64
	IsVerified        bool
	SessionData       []byte // a JSON object
}

// CreateBackupVersion creates a user's next backup version, which becomes
// the current one, and returns its number. Numbers are never reused.
func (k *Keys) CreateBackupVersion(ctx context.Context, localpart, algorithm string, authData []byte) (int64, error) {
	var v int64
	err := k.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM key_backup_versions WHERE localpart = $1`, localpart).Scan(&v); err != nil {
			return fmt.Errorf("select backup versions: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO key_backup_versions (localpart, version, algorithm, auth_data, etag, deleted)
			VALUES ($1, $2, $3, $4, 0, FALSE)`, localpart, v, algorithm, string(authData)); err != nil {
			return fmt.Errorf("insert backup version: %w", mapError(err))
		}
		return nil
	})
	return v, err
}

// currentBackupVersion is the newest version not deleted, 0 when none.
func currentBackupVersion(ctx context.Context, q rowQueryer, localpart string) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM key_backup_versions WHERE localpart = $1 AND deleted = FALSE`, localpart).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("select current backup version: %w", err)
	}
	return v, nil
}

// BackupVersion returns a version that exists and is not deleted (version
// 0: the current one), or ErrNotFound.
func (k *Keys) BackupVersion(ctx context.Context, localpart string, version int64) (BackupVersion, error) {
	if version == 0 {
		cur, err := currentBackupVersion(ctx, k.db.R, localpart)
		if err != nil {
			return BackupVersion{}, err
		}
		if cur == 0 {
			return BackupVersion{}, ErrNotFound
		}
		version = cur
	}
	b := BackupVersion{Version: version}
	var auth string
	err := k.db.R.QueryRowContext(ctx, `SELECT v.algorithm, v.auth_data, v.etag,
		(SELECT COUNT(*) FROM key_backup_keys k WHERE k.localpart = v.localpart AND k.version = v.version)
		FROM key_backup_versions v WHERE v.localpart = $1 AND v.version = $2 AND v.deleted = FALSE`, localpart, version).Scan(
		&b.Algorithm, &auth, &b.Etag, &b.Count)
	if errors.Is(err, sql.ErrNoRows) {
		return BackupVersion{}, ErrNotFound
	}
	if err != nil {
		return BackupVersion{}, fmt.Errorf("select backup version: %w", err)
	}
	b.AuthData = []byte(auth)
	return b, nil
}

// UpdateBackupVersion replaces a version's auth_data. ErrNotFound if the
// version does not exist or is deleted; ErrConflict if algorithm is not
// the version's algorithm (which never changes).
func (k *Keys) UpdateBackupVersion(ctx context.Context, localpart string, version int64, algorithm string, authData []byte) error {
	return k.db.Tx(ctx, func(tx *sql.Tx) error {
		var alg string
		err := tx.QueryRowContext(ctx, `SELECT algorithm FROM key_backup_versions WHERE localpart = $1 AND version = $2 AND deleted = FALSE`,
			localpart, version).Scan(&alg)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("select backup version: %w", err)
		}
		if alg != algorithm {
			return fmt.Errorf("backup algorithm differs: %w", ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE key_backup_versions SET auth_data = $3 WHERE localpart = $1 AND version = $2`,
			localpart, version, string(authData)); err != nil {
			return fmt.Errorf("update backup version: %w", err)
		}
		return nil
	})
}

// DeleteBackupVersion deletes a version and its keys; the version stays as
// a tombstone, so deleting it again succeeds. ErrNotFound if it never
// existed.
func (k *Keys) DeleteBackupVersion(ctx context.Context, localpart string, version int64) error {
	return k.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE key_backup_versions SET deleted = TRUE, auth_data = '{}' WHERE localpart = $1 AND version = $2`, localpart, version)
		if err != nil {
			return fmt.Errorf("delete backup version: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM key_backup_keys WHERE localpart = $1 AND version = $2`, localpart, version); err != nil {
			return fmt.Errorf("delete backup keys: %w", err)
		}
		return nil
	})
}

// better reports whether key a should replace the stored key b (spec:
// "Server-side key backups"): a verified key wins; then the lower
// first_message_index; then the lower forwarded_count.
func (a BackupKey) better(b BackupKey) bool {
	if a.IsVerified != b.IsVerified {
		return a.IsVerified
	}
	if a.FirstMessageIndex != b.FirstMessageIndex {
		return a.FirstMessageIndex < b.FirstMessageIndex
	}
	return a.ForwardedCount < b.ForwardedCount
}

// PutBackupKeys stores keys in the user's current version, each replacing
// a stored key for the same session only when it is better, in one
// transaction, and returns the version's etag and key count. ErrNotFound
// when the user has no backup; *WrongBackupVersion when version is not the
// current one.
func (k *Keys) PutBackupKeys(ctx context.Context, localpart string, version int64, keys []BackupKey) (etag, count int64, err error) {
	err = k.db.Tx(ctx, func(tx *sql.Tx) error {
		cur, err := currentBackupVersion(ctx, tx, localpart)
		if err != nil {
			return err
		}
		if cur == 0 {
			return ErrNotFound
		}
		if cur != version {
			return &WrongBackupVersion{Current: cur}
		}
		changed := false
		for _, key := range keys {
			var (
				old  BackupKey
				data string
			)
			err := tx.QueryRowContext(ctx, `SELECT first_message_index, forwarded_count, is_verified, session_data FROM key_backup_keys
				WHERE localpart = $1 AND version = $2 AND room_id = $3 AND session_id = $4`, localpart, version, key.RoomID, key.SessionID).Scan(
				&old.FirstMessageIndex, &old.ForwardedCount, &old.IsVerified, &data)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return fmt.Errorf("select backup key: %w", err)
			case !key.better(old):
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO key_backup_keys (localpart, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (localpart, version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index,
					forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data`,
				localpart, version, key.RoomID, key.SessionID, key.FirstMessageIndex, key.ForwardedCount, key.IsVerified, string(key.SessionData)); err != nil {
				return fmt.Errorf("store backup key: %w", err)
			}
			changed = true
		}
		etag, count, err = finishBackupWrite(ctx, tx, localpart, version, changed)
		return err
	})
	return etag, count, err
}

// finishBackupWrite bumps the version's etag when its keys changed and
// returns the etag and key count.
func finishBackupWrite(ctx context.Context, tx *sql.Tx, localpart string, version int64, changed bool) (etag, count int64, err error) {
	if changed {
		if _, err := tx.ExecContext(ctx, `UPDATE key_backup_versions SET etag = etag + 1 WHERE localpart = $1 AND version = $2`, localpart, version); err != nil {
			return 0, 0, fmt.Errorf("update backup etag: %w", err)
		}
	}
	err = tx.QueryRowContext(ctx, `SELECT v.etag, (SELECT COUNT(*) FROM key_backup_keys k WHERE k.localpart = v.localpart AND k.version = v.version)
		FROM key_backup_versions v WHERE v.localpart = $1 AND v.version = $2`, localpart, version).Scan(&etag, &count)
	if err != nil {
		return 0, 0, fmt.Errorf("select backup etag: %w", err)
	}
	return etag, count, nil
}

// requireBackupVersion returns ErrNotFound unless the version exists and
// is not deleted.
func requireBackupVersion(ctx context.Context, q rowQueryer, localpart string, version int64) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM key_backup_versions WHERE localpart = $1 AND version = $2 AND deleted = FALSE`, localpart, version).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("select backup version: %w", err)
	}
	return nil
}

// backupKeysWhere narrows a backup-keys statement to a room ("" for all)
// and a session in it ("" for all); the first two arguments are localpart
// and version.
func backupKeysWhere(roomID, sessionID string) (string, []any) {
	where, args := ` WHERE localpart = $1 AND version = $2`, []any{}
	if roomID != "" {
		where += ` AND room_id = $3`
		args = append(args, roomID)
		if sessionID != "" {
			where += ` AND session_id = $4`
			args = append(args, sessionID)
		}
	}
	return where, args
}

// BackupKeys returns the keys of a version: all of them (roomID ""), a
// room's, or one session's, ordered by room and session. ErrNotFound if the
// version does not exist or is deleted.
func (k *Keys) BackupKeys(ctx context.Context, localpart string, version int64, roomID, sessionID string) ([]BackupKey, error) {
	if err := requireBackupVersion(ctx, k.db.R, localpart, version); err != nil {
		return nil, err
	}
	where, extra := backupKeysWhere(roomID, sessionID)
	rows, err := k.db.R.QueryContext(ctx, `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
		FROM key_backup_keys`+where+` ORDER BY room_id, session_id`, append([]any{localpart, version}, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("select backup keys: %w", err)
	}
	defer rows.Close()
	var out []BackupKey
	for rows.Next() {
		var key BackupKey
		var data string
		if err := rows.Scan(&key.RoomID, &key.SessionID, &key.FirstMessageIndex, &key.ForwardedCount, &key.IsVerified, &data); err != nil {
			return nil, fmt.Errorf("select backup keys: %w", err)
		}
		key.SessionData = []byte(data)
		out = append(out, key)
	}
	return out, rows.Err()
}

// DeleteBackupKeys deletes a version's keys (all, a room's, or one
// session's) and returns the etag and the remaining count. ErrNotFound if
// the version does not exist or is deleted.
func (k *Keys) DeleteBackupKeys(ctx context.Context, localpart string, version int64, roomID, sessionID string) (etag, count int64, err error) {
	err = k.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := requireBackupVersion(ctx, tx, localpart, version); err != nil {
			return err
		}
		where, extra := backupKeysWhere(roomID, sessionID)
		res, err := tx.ExecContext(ctx, `DELETE FROM key_backup_keys`+where, append([]any{localpart, version}, extra...)...)
		if err != nil {
			return fmt.Errorf("delete backup keys: %w", err)
		}
		n, _ := res.RowsAffected()
		etag, count, err = finishBackupWrite(ctx, tx, localpart, version, n > 0)
		return err
	})
	return etag, count, err
}
