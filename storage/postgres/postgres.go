// Package postgres opens a PostgreSQL database through pgx/v5's database/sql
// driver and owns its migrations. PostgreSQL-specific settings live here only.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"myelin/storage"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Open connects to dsn (a postgres:// URL or key=value string) with a pool of
// at most maxConns connections, used for both reads and writes.
func Open(dsn string, maxConns int) (*storage.DB, error) {
	return OpenWith(dsn, maxConns, Options{})
}

// Options are the settings an operator may change.
type Options struct {
	// Relaxed sets synchronous_commit=off on every connection (config
	// database.durability: relaxed): a commit returns before its WAL is
	// flushed, so a crash of PostgreSQL's host may lose the last commits
	// (never corrupts). Never the default.
	Relaxed bool
}

// OpenWith is Open with Options.
func OpenWith(dsn string, maxConns int, o Options) (*storage.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if o.Relaxed {
		cfg.RuntimeParams["synchronous_commit"] = "off"
	}
	db := stdlib.OpenDB(*cfg)
	if maxConns < 1 {
		maxConns = 1
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	return storage.New(storage.Postgres, db, db, sub), nil
}
