// Package storage owns everything persisted: one portable SQL implementation
// on database/sql for both engines, the sentinel errors callers match on (so
// no caller imports a driver), and the migration runner. Engine-specific
// code lives only in storage/sqlite and storage/postgres.
package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Sentinel errors. Implementations wrap them; callers use errors.Is.
var (
	ErrNotFound = errors.New("storage: not found")
	ErrConflict = errors.New("storage: conflict")
)

// Engine names a database engine.
type Engine string

const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// DB is an open database. Writes go through W; reads may use R. For SQLite
// W is a single connection (SQLite allows one writer; serialising in the pool
// avoids SQLITE_BUSY storms) and R a pool of read-only connections that WAL
// lets run beside it. For PostgreSQL both are the same pool.
type DB struct {
	Engine Engine
	W      *sql.DB
	R      *sql.DB
	// migrations is the engine's numbered .sql files.
	migrations fs.FS
	// FlushEachCommit is set by the SQLite engine when every commit is
	// flushed to disk (synchronous=FULL, the default durability); see
	// TxRederivable.
	FlushEachCommit bool
}

// New wraps already-opened pools; the engine packages call it.
func New(engine Engine, w, r *sql.DB, migrations fs.FS) *DB {
	return &DB{Engine: engine, W: w, R: r, migrations: migrations}
}

// Close closes both pools.
func (db *DB) Close() error {
	err := db.W.Close()
	if db.R != db.W {
		err = errors.Join(err, db.R.Close())
	}
	return err
}

// Tx runs fn in one write transaction, committing if fn returns nil. A
// request is one transaction: it happens entirely or not at all.
func (db *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	return finish(tx, fn)
}

// finish runs fn in tx and commits, or rolls back if fn fails.
func finish(tx *sql.Tx, fn func(tx *sql.Tx) error) error {
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// TxRederivable is Tx for a writer that can derive the transaction's
// effects again from durable data if they are lost: the notifications
// consumer, whose rows and position follow the event log from its last
// durable position. Its commit skips its own flush to disk, which on the
// send path was a second fsync per batch on SQLite's single writer
// connection, in series with the events' own and in front of every
// /sync waiting for counts. It still survives a crash of the process (WAL
// on SQLite, the WAL buffers on PostgreSQL) and becomes durable with the
// next flushed commit; after a power loss the writer re-derives it. Never
// use it for anything acknowledged to a client.
func (db *DB) TxRederivable(ctx context.Context, fn func(tx *sql.Tx) error) error {
	switch {
	case db.Engine == Postgres:
		return db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return fmt.Errorf("relax commit: %w", err)
			}
			return fn(tx)
		})
	case !db.FlushEachCommit:
		return db.Tx(ctx, fn)
	}
	// synchronous is per connection and cannot change inside a
	// transaction: pin the single writer connection around BEGIN…COMMIT
	// and put FULL back before anyone else can use it.
	conn, err := db.W.Conn(ctx)
	if err != nil {
		return fmt.Errorf("writer connection: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = NORMAL`); err != nil {
		return fmt.Errorf("relax commit: %w", err)
	}
	defer func() {
		if _, err := conn.ExecContext(context.Background(), `PRAGMA synchronous = FULL`); err != nil {
			// The connection must not serve durable commits unflushed:
			// drop it, the pool opens a fresh one with FULL.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	return finish(tx, fn)
}

// Migrate applies every numbered migration (NNNN_name.sql) not yet recorded
// in schema_migrations, each in its own transaction together with its record.
func (db *DB) Migrate(ctx context.Context) error {
	if _, err := db.W.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		name TEXT NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	files, err := fs.Glob(db.migrations, "*.sql")
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	type mig struct {
		version int
		name    string
	}
	var migs []mig
	for _, f := range files {
		num, _, ok := strings.Cut(f, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("migration %s: name must be NNNN_description.sql", f)
		}
		migs = append(migs, mig{v, f})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })
	for i := 1; i < len(migs); i++ {
		if migs[i].version == migs[i-1].version {
			return fmt.Errorf("migrations %s and %s share a number", migs[i-1].name, migs[i].name)
		}
	}
	applied := map[int]bool{}
	rows, err := db.W.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	for _, m := range migs {
		if applied[m.version] {
			continue
		}
		body, err := fs.ReadFile(db.migrations, m.name)
		if err != nil {
			return fmt.Errorf("read migration %s: %w", m.name, err)
		}
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.name, err)
		}
	}
	return nil
}
