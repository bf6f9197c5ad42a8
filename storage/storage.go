// Package storage owns everything persisted: one portable SQL implementation
// on database/sql for both engines, the sentinel errors callers match on (so
// no caller imports a driver), and the migration runner. Engine-specific
// code lives only in storage/sqlite and storage/postgres.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
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
	// TxRederivable and BeginUnflushed.
	FlushEachCommit bool
	// WALPath is the SQLite write-ahead log that FlushLog flushes (set by
	// the SQLite engine; empty elsewhere).
	WALPath string

	// flushFailed holds the first failed flush of the log: after a failed
	// fsync the kernel may have dropped the dirty pages, so a later
	// successful fsync proves nothing and no unflushed commit may be
	// acknowledged again until the process restarts and SQLite recovers
	// from what the log on disk holds.
	flushFailed atomic.Pointer[error]
	// httpPushers says whether the pushers table may hold an HTTP pusher
	// (pushersUnknown until a notification batch first asks): most
	// servers' users have none, and every batch looked them up.
	httpPushers atomic.Int32
}

// httpPushers states; "some" is sticky (a deletion does not clear it).
const (
	pushersUnknown int32 = iota
	pushersNone
	pushersSome
)

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
	if db.Engine == Postgres {
		return db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return fmt.Errorf("relax commit: %w", err)
			}
			return fn(tx)
		})
	}
	tx, err := db.BeginUnflushed(ctx)
	if err != nil {
		return err
	}
	return finish(tx, fn)
}

// BeginUnflushed begins a write transaction whose commit does not wait for
// the disk. Where every commit is otherwise flushed (SQLite at the default
// durability) the engine runs it at synchronous=NORMAL — a per-connection
// setting, unchangeable inside a transaction, which the SQLite engine
// switches only when the next transaction on its single writer connection
// wants the other level (see Unflushed); elsewhere it is a plain BeginTx.
// The commit survives a crash of the process at once (the WAL is written
// before COMMIT returns) and a power loss after the next FlushLog or
// flushed commit.
func (db *DB) BeginUnflushed(ctx context.Context) (*sql.Tx, error) {
	if db.CommitsUnflushed() {
		ctx = context.WithValue(ctx, unflushedKey{}, true)
	}
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return tx, nil
}

type unflushedKey struct{}

// Unflushed reports whether a transaction begun with ctx may commit
// without waiting for the disk (BeginUnflushed); engines read it when the
// transaction begins.
func Unflushed(ctx context.Context) bool {
	v, _ := ctx.Value(unflushedKey{}).(bool)
	return v
}

// CommitsUnflushed reports whether a commit begun by BeginUnflushed
// needs FlushLog to survive a power loss: SQLite at the default
// durability. PostgreSQL's commits are flushed by the server (or, relaxed,
// never), as are SQLite's at relaxed durability.
func (db *DB) CommitsUnflushed() bool { return db.Engine == SQLite && db.FlushEachCommit }

// FlushLog makes every transaction committed so far survive a power loss:
// on SQLite at the default durability it fsyncs the write-ahead log, which
// is what synchronous=FULL does inside COMMIT, here done outside the
// single writer connection so the next transaction can run meanwhile.
// Elsewhere every commit is already as durable as configured and FlushLog
// does nothing. It is safe beside checkpoints: SQLite flushes the log
// before it copies frames into the database and flushes the database
// before it rewinds the log, so frames are never rewound unflushed. Once a
// flush has failed, FlushLog keeps failing (see flushFailed).
func (db *DB) FlushLog() error {
	if failed := db.flushFailed.Load(); failed != nil {
		return *failed
	}
	if !db.CommitsUnflushed() || db.WALPath == "" {
		return nil
	}
	// Opened per flush, not kept: the log is removed when the last
	// connection closes (after a full checkpoint) and a kept descriptor
	// would then flush a file nobody writes.
	f, err := os.OpenFile(db.WALPath, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // checkpointed into the flushed database and removed
	}
	if err == nil {
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		err = fmt.Errorf("flush write-ahead log: %w", err)
		db.flushFailed.CompareAndSwap(nil, &err)
		return *db.flushFailed.Load()
	}
	return nil
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
