package sqlite

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"myelin/storage"
)

func TestOpenSetsPragmas(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "x.db"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		pool  *sql.DB
		query string
		want  string
	}{
		{db.W, "PRAGMA journal_mode", "wal"},
		{db.W, "PRAGMA foreign_keys", "1"},
		{db.W, "PRAGMA synchronous", "2"}, // FULL
		{db.W, "PRAGMA busy_timeout", "10000"},
		{db.R, "PRAGMA foreign_keys", "1"},
		{db.R, "PRAGMA query_only", "1"},
		{db.W, "PRAGMA cache_size", strconv.Itoa(-writerCacheKiB)},
		{db.W, "PRAGMA temp.cache_size", strconv.Itoa(-otherCacheKiB)},
		{db.R, "PRAGMA cache_size", strconv.Itoa(-otherCacheKiB)},
		{db.R, "PRAGMA temp.cache_size", strconv.Itoa(-otherCacheKiB)},
	} {
		var got string
		if err := tc.pool.QueryRowContext(ctx, tc.query).Scan(&got); err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		if got != tc.want {
			t.Errorf("%s = %s, want %s", tc.query, got, tc.want)
		}
	}
	if db.W.Stats().MaxOpenConnections != 1 {
		t.Errorf("writer pool allows %d connections, want 1", db.W.Stats().MaxOpenConnections)
	}
	if _, err := db.R.ExecContext(ctx, "CREATE TABLE nope (x INTEGER)"); err == nil {
		t.Error("reader pool accepted a write")
	}
}

func TestMigrateAppliesEachOnceInOrder(t *testing.T) {
	ctx := context.Background()
	migs := fstest.MapFS{
		"0002_second.sql": {Data: []byte("INSERT INTO t (v) VALUES ('second');")},
		"0001_first.sql":  {Data: []byte("CREATE TABLE t (v TEXT NOT NULL); INSERT INTO t (v) VALUES ('first');")},
	}
	path := filepath.Join(t.TempDir(), "m.db")
	open := func() *storage.DB {
		base, err := Open(path, 2)
		if err != nil {
			t.Fatal(err)
		}
		return storage.New(storage.SQLite, base.W, base.R, migs)
	}
	db := open()
	for range 2 {
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db = open() // a restart must not re-apply anything
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := db.R.QueryContext(ctx, "SELECT v FROM t ORDER BY rowid")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	rows.Close()
	if strings.Join(got, ",") != "first,second" {
		t.Fatalf("rows %v, want first,second", got)
	}
}

func TestMigrateRejectsBadSets(t *testing.T) {
	cases := map[string]fstest.MapFS{
		"unnumbered":     {"init.sql": {Data: []byte("SELECT 1;")}},
		"duplicate":      {"0001_a.sql": {Data: []byte("SELECT 1;")}, "0001_b.sql": {Data: []byte("SELECT 1;")}},
		"broken sql":     {"0001_a.sql": {Data: []byte("CREATE TABLE (;")}},
		"fails half-way": {"0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER); INSERT INTO missing VALUES (1);")}},
	}
	for name, migs := range cases {
		t.Run(name, func(t *testing.T) {
			base, err := Open(filepath.Join(t.TempDir(), "m.db"), 1)
			if err != nil {
				t.Fatal(err)
			}
			db := storage.New(storage.SQLite, base.W, base.R, migs)
			defer db.Close()
			if err := db.Migrate(context.Background()); err == nil {
				t.Fatal("bad migration set accepted")
			}
			// A failed migration leaves nothing behind: it ran in one transaction.
			var n int
			if err := db.R.QueryRow("SELECT count(*) FROM sqlite_master WHERE name = 'a'").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Error("half-applied migration left table a")
			}
		})
	}
}

func TestTxRollsBackOnError(t *testing.T) {
	base, err := Open(filepath.Join(t.TempDir(), "tx.db"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	ctx := context.Background()
	if _, err := base.W.Exec("CREATE TABLE t (v INTEGER)"); err != nil {
		t.Fatal(err)
	}
	sentinel := storage.ErrConflict
	err = base.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec("INSERT INTO t VALUES (1)"); err != nil {
			return err
		}
		return sentinel
	})
	if err != sentinel {
		t.Fatalf("Tx returned %v, want the callback's error", err)
	}
	var n int
	if err := base.R.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("rolled-back insert is visible (%d rows)", n)
	}
}

func TestOpenPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "odd #1 ?x %41")
	path := filepath.Join(dir, "my db.sqlite")
	db, err := Open(path, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.W.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q, err %v: pragmas lost", mode, err)
	}
	if _, err := db.W.Exec("CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the configured path: %v", err)
	}
}

func TestOpenDurability(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string // PRAGMA synchronous: 2 FULL, 1 NORMAL
	}{
		{"default is full", Options{}, "2"},
		{"relaxed is normal", Options{Relaxed: true}, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := OpenWith(filepath.Join(t.TempDir(), "x.db"), 2, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, pool := range []*sql.DB{db.W, db.R} {
				var got string
				if err := pool.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("PRAGMA synchronous = %s, want %s", got, tc.want)
				}
			}
		})
	}
}

// TxRederivable commits (or rolls back) like Tx, and the writer
// connection is back at the configured synchronous level afterwards, so
// the next durable commit is flushed.
func TestTxRederivable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o       Options
		fail    bool
		want    string // PRAGMA synchronous on the writer afterwards
		wantRow bool
	}{
		{"full: commit", Options{}, false, "2", true},
		{"full: error rolls back", Options{}, true, "2", false},
		{"relaxed: commit", Options{Relaxed: true}, false, "1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := OpenWith(filepath.Join(t.TempDir(), "x.db"), 2, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			if _, err := db.W.ExecContext(ctx, `CREATE TABLE t (x INTEGER)`); err != nil {
				t.Fatal(err)
			}
			var inside string
			err = db.TxRederivable(ctx, func(tx *sql.Tx) error {
				if err := tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&inside); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (1)`); err != nil {
					return err
				}
				if tc.fail {
					return os.ErrInvalid
				}
				return nil
			})
			if tc.fail != (err != nil) {
				t.Fatalf("TxRederivable: %v", err)
			}
			if inside != "1" {
				t.Errorf("PRAGMA synchronous inside = %s, want 1 (NORMAL)", inside)
			}
			var got string
			if err := db.W.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("PRAGMA synchronous after = %s, want %s", got, tc.want)
			}
			var n int
			if err := db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if (n == 1) != tc.wantRow {
				t.Errorf("rows = %d, want committed %v", n, tc.wantRow)
			}
		})
	}
}

// FlushLog fsyncs the write-ahead log only where commits are meant to be
// flushed (full durability), and once a flush has failed it keeps failing.
func TestFlushLog(t *testing.T) {
	for _, tc := range []struct {
		name     string
		o        Options
		badPath  bool
		wantFail bool
	}{
		{"full", Options{}, false, false},
		{"full, log cannot be opened", Options{}, true, true},
		{"relaxed flushes nothing", Options{Relaxed: true}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := OpenWith(filepath.Join(dir, "x.db"), 2, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if db.WALPath != filepath.Join(dir, "x.db-wal") {
				t.Fatalf("WALPath %q", db.WALPath)
			}
			if _, err := db.W.ExecContext(context.Background(), `CREATE TABLE t (x INTEGER)`); err != nil {
				t.Fatal(err)
			}
			good := db.WALPath
			if tc.badPath {
				db.WALPath = dir // a directory: opening it for writing fails
			}
			if err := db.FlushLog(); (err != nil) != tc.wantFail {
				t.Fatalf("FlushLog: %v, want failure %v", err, tc.wantFail)
			}
			db.WALPath = good
			if err := db.FlushLog(); (err != nil) != tc.wantFail {
				t.Fatalf("FlushLog with a good path after that: %v, want failure %v", err, tc.wantFail)
			}
		})
	}
}

// TestSyncLevelPerTransaction: on the writer at full durability every
// transaction and statement runs at FULL except those begun by
// BeginUnflushed, whatever ran before them on the connection (the level
// is switched only when it must change).
func TestSyncLevelPerTransaction(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "x.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	inTx := func(tx *sql.Tx) string {
		t.Helper()
		var got string
		if err := tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	unflushed := func(rollback bool) string {
		t.Helper()
		tx, err := db.BeginUnflushed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := inTx(tx)
		if rollback {
			err = tx.Rollback()
		} else {
			err = tx.Commit()
		}
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	durable := func() string {
		t.Helper()
		var got string
		if err := db.Tx(ctx, func(tx *sql.Tx) error { got = inTx(tx); return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	autocommit := func() string {
		t.Helper()
		var got string
		if err := db.W.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	for i, step := range []struct {
		name string
		run  func() string
		want string // 2 FULL, 1 NORMAL
	}{
		{"autocommit at start", autocommit, "2"},
		{"unflushed", func() string { return unflushed(false) }, "1"},
		{"unflushed again", func() string { return unflushed(false) }, "1"},
		{"durable after unflushed", durable, "2"},
		{"unflushed after durable", func() string { return unflushed(true) }, "1"},
		{"autocommit after a rolled-back unflushed", autocommit, "2"},
		{"durable after autocommit", durable, "2"},
		{"unflushed last", func() string { return unflushed(false) }, "1"},
		{"durable last", durable, "2"},
	} {
		if got := step.run(); got != step.want {
			t.Errorf("step %d (%s): PRAGMA synchronous = %s, want %s", i, step.name, got, step.want)
		}
	}
}
