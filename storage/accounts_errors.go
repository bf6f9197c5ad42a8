package storage

// This file is named for the accounts work that introduced it, but mapError
// serves every table in the package.

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// mapError turns driver errors the callers care about into sentinels, so no
// caller ever imports a driver. It is the only engine-specific error code in
// the portable layer, kept here in one place on purpose:
//   - PostgreSQL reports a unique violation as SQLSTATE 23505;
//   - modernc SQLite reports SQLITE_CONSTRAINT_UNIQUE (2067) for UNIQUE
//     indexes and SQLITE_CONSTRAINT_PRIMARYKEY (1555) for primary keys.
//
// Other errors are returned unchanged (callers wrap them with context).
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return errors.Join(ErrConflict, err)
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return errors.Join(ErrConflict, err)
		}
	}
	return err
}
