// Package storagetest opens throwaway databases of either engine for the
// tests of every package that stores something, so each package's
// "run on SQLite and on PostgreSQL" loop opens them the same way: SQLite in
// the test's temporary directory, PostgreSQL as a fresh database from
// pgtest (which, with CI=true, fails rather than skips when PostgreSQL is
// missing). Tests that reopen a database across a simulated restart keep
// their own path or DSN and open it themselves.
package storagetest

import (
	"context"
	"path/filepath"
	"testing"

	"myelin/internal/pgtest"
	"myelin/storage"
	"myelin/storage/postgres"
	"myelin/storage/sqlite"
)

// Engines are the engines every storage test runs on, in the order the
// subtests run.
var Engines = []string{"sqlite", "postgres"}

// Open opens a throwaway, unmigrated database of engine ("sqlite" or
// "postgres") with a pool of readers, closed when the test ends.
func Open(t testing.TB, engine string, readers int) *storage.DB {
	t.Helper()
	var db *storage.DB
	var err error
	switch engine {
	case "sqlite":
		db, err = sqlite.Open(filepath.Join(t.TempDir(), "test.db"), readers)
	case "postgres":
		db, err = postgres.Open(pgtest.DSN(t), readers)
	default:
		t.Fatalf("storagetest: unknown engine %q", engine)
	}
	if err != nil {
		t.Fatalf("open %s: %v", engine, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// OpenMigrated is Open with every migration applied.
func OpenMigrated(t testing.TB, engine string, readers int) *storage.DB {
	t.Helper()
	db := Open(t, engine, readers)
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate %s: %v", engine, err)
	}
	return db
}
