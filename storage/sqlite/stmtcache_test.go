package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"myelin/storage"
)

func TestSingleStatement(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"SELECT 1", true},
		{"", true},
		{"INSERT INTO t (a) VALUES ('x;y')", true},
		{`SELECT "a;b" FROM t`, true},
		{"SELECT `a;b`, [c;d] FROM t", true},
		{"SELECT 1 -- trailing; comment", true},
		{"SELECT 1 -- comment; here\nFROM t", true},
		{"SELECT /* a; b */ 1", true},
		{"SELECT 'it''s; fine'", true},
		{"SELECT 1;", false},
		{"SELECT 1; SELECT 2", false},
		{"CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1);", false},
		{"CREATE TRIGGER x AFTER INSERT ON t BEGIN DELETE FROM u; END", false},
		{"SELECT 'unterminated", false},
		{"SELECT /* unterminated", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := singleStatement(tc.in); got != tc.want {
				t.Errorf("singleStatement(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// openCached opens a database whose connections cache size statements.
func openCached(t testing.TB, size int) *storage.DB {
	t.Helper()
	db, err := openWith(filepath.Join(t.TempDir(), "c.db"), 4, Options{}, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// cacheOf returns the statement cache of conn's driver connection.
func cacheOf(t testing.TB, conn *sql.Conn) *stmtCache {
	t.Helper()
	var c *stmtCache
	if err := conn.Raw(func(dc any) error {
		c = dc.(*positionalConn).cache
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if c == nil {
		t.Fatal("connection has no statement cache")
	}
	return c
}

func TestStmtCacheReusesStatements(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		queries  []string
		prepares int
	}{
		{"same query twice", []string{"SELECT $1", "SELECT $1"}, 1},
		{"two queries alternating", []string{"SELECT $1", "SELECT $1 + 0", "SELECT $1", "SELECT $1 + 0"}, 2},
		{"numbered parameters", []string{"SELECT $1 + $2", "SELECT $1 + $2"}, 1},
		{"reused parameter", []string{"SELECT $1 + $2 - $2", "SELECT $1 + $2 - $2"}, 1},
		{"script is never cached", []string{"SELECT $1; SELECT $1", "SELECT $1; SELECT $1"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openCached(t, 8)
			conn, err := db.R.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for i, q := range tc.queries {
				var got int
				if err := conn.QueryRowContext(ctx, q, i, 0).Scan(&got); err != nil || got != i {
					t.Fatalf("%s = %d, %v; want %d", q, got, err, i)
				}
				if _, err := conn.ExecContext(ctx, q, i, 0); err != nil {
					t.Fatalf("exec %s: %v", q, err)
				}
			}
			if got := cacheOf(t, conn).prepares; got != tc.prepares {
				t.Errorf("prepared %d statements, want %d", got, tc.prepares)
			}
		})
	}
}

// A query whose Rows are open keeps its statement busy: the same SQL again
// on the same connection (here inside one Tx) runs on a one-off statement,
// and the open Rows are not disturbed.
func TestStmtCacheBusyStatementFallsBack(t *testing.T) {
	ctx := context.Background()
	db := openCached(t, 8)
	if _, err := db.W.ExecContext(ctx, "CREATE TABLE t (a INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := db.W.ExecContext(ctx, "INSERT INTO t (a) VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	const q = "SELECT a FROM t WHERE a >= $1 ORDER BY a"
	conn, err := db.W.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cache := cacheOf(t, conn)
	before := cache.prepares

	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	outer, err := tx.QueryContext(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	var seen []int
	for outer.Next() {
		var a int
		if err := outer.Scan(&a); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, a)
		// The same SQL while outer is open: as a query, fully read...
		var inner []int
		rows, err := tx.QueryContext(ctx, q, a)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b int
			if err := rows.Scan(&b); err != nil {
				t.Fatal(err)
			}
			inner = append(inner, b)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if len(inner) != 6-a || inner[0] != a {
			t.Errorf("inner query from %d read %v", a, inner)
		}
		// ...and as an Exec.
		if _, err := tx.ExecContext(ctx, q, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	if fmt.Sprint(seen) != "[1 2 3 4 5]" {
		t.Errorf("outer query read %v, want [1 2 3 4 5]", seen)
	}
	if got := cache.prepares - before; got != 1 {
		t.Errorf("prepared %d statements for the cache, want 1 (the busy one's uses run uncached)", got)
	}
	// Idle again: the next use is a hit.
	if _, err := tx.ExecContext(ctx, q, 1); err != nil {
		t.Fatal(err)
	}
	if got := cache.prepares - before; got != 1 {
		t.Errorf("after the Rows closed, prepared %d statements, want 1", got)
	}
}

func TestStmtCacheEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	const size = 4
	db := openCached(t, size)
	conn, err := db.R.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cache := cacheOf(t, conn)
	query := func(n int) string { return fmt.Sprintf("SELECT %d + $1", n) }
	run := func(n int) {
		t.Helper()
		var got int
		if err := conn.QueryRowContext(ctx, query(n), 1).Scan(&got); err != nil || got != n+1 {
			t.Fatalf("%s = %d, %v", query(n), got, err)
		}
	}
	for n := range 10 {
		run(n)
	}
	for _, tc := range []struct {
		name          string
		run           int
		wantPrepares  int
		wantCached    bool
		wantEvictedOf int // query no longer cached afterwards; -1: none
	}{
		{"most recent is a hit", 9, 10, true, -1},
		{"oldest kept is a hit", 6, 10, true, -1},
		{"evicted is prepared again", 0, 11, true, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run(tc.run)
			if cache.prepares != tc.wantPrepares {
				t.Errorf("prepares = %d, want %d", cache.prepares, tc.wantPrepares)
			}
			if n := cache.lru.Len(); n != size || len(cache.bySQL) != size {
				t.Errorf("cache holds %d (%d by SQL), want %d", n, len(cache.bySQL), size)
			}
			if _, ok := cache.bySQL[positional(query(tc.run))]; ok != tc.wantCached {
				t.Errorf("%s cached = %v", query(tc.run), ok)
			}
			if tc.wantEvictedOf >= 0 {
				if _, ok := cache.bySQL[positional(query(tc.wantEvictedOf))]; ok {
					t.Errorf("%s still cached", query(tc.wantEvictedOf))
				}
			}
		})
	}
	// Evicted statements were closed; the cached ones are still open.
	if want := cache.prepares - size; cache.closes != want {
		t.Errorf("closed %d statements, want %d", cache.closes, want)
	}
}

// A statement evicted while its Rows are open stays usable by them and is
// closed when they close.
func TestStmtCacheEvictsBusyStatementOnClose(t *testing.T) {
	ctx := context.Background()
	db := openCached(t, 2)
	conn, err := db.R.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cache := cacheOf(t, conn)
	rows, err := conn.QueryContext(ctx, "SELECT value FROM json_each($1)", "[1,2,3]")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SELECT 1 + $1", "SELECT 2 + $1", "SELECT 3 + $1"} {
		var n int
		if err := conn.QueryRowContext(ctx, q, 1).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	if cache.closes != 1 { // "SELECT 1 + ?" only; the busy one waits
		t.Errorf("closed %d statements while the Rows are open, want 1", cache.closes)
	}
	var sum int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if sum != 6 {
		t.Errorf("rows of the evicted statement summed to %d, want 6", sum)
	}
	if cache.closes != 2 {
		t.Errorf("closed %d statements after the Rows closed, want 2", cache.closes)
	}
}

func TestStmtCacheClosesAllWithTheConnection(t *testing.T) {
	ctx := context.Background()
	db, err := openWith(filepath.Join(t.TempDir(), "c.db"), 1, Options{}, 8)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.R.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cache := cacheOf(t, conn)
	for _, q := range []string{"SELECT $1", "SELECT $1 + 1", "SELECT $1 + 2"} {
		if _, err := conn.ExecContext(ctx, q, 1); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if cache.prepares != 3 || cache.closes != 3 || cache.lru.Len() != 0 {
		t.Errorf("after Close: prepares %d, closes %d, cached %d; want 3, 3, 0", cache.prepares, cache.closes, cache.lru.Len())
	}
}

// Errors are the driver's own, with or without the cache, and a failed
// statement is reset: the same cached statement works on the next call.
func TestStmtCacheErrorsUnchanged(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{0, 8} {
		t.Run(fmt.Sprintf("cache %d", size), func(t *testing.T) {
			db := openCached(t, size)
			if _, err := db.W.ExecContext(ctx, "CREATE TABLE u (name TEXT PRIMARY KEY, n INTEGER NOT NULL CHECK (n > 0))"); err != nil {
				t.Fatal(err)
			}
			const ins = "INSERT INTO u (name, n) VALUES ($1, $2)"
			for _, tc := range []struct {
				name string
				args []any
				code int // 0: success
			}{
				{"first insert", []any{"a", 1}, 0},
				{"duplicate key", []any{"a", 2}, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY},
				{"after the failure", []any{"b", 1}, 0},
				{"check violated", []any{"c", 0}, sqlite3.SQLITE_CONSTRAINT_CHECK},
				{"not null violated", []any{"d", nil}, sqlite3.SQLITE_CONSTRAINT_NOTNULL},
				{"again after failures", []any{"e", 5}, 0},
			} {
				err := db.Tx(ctx, func(tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, ins, tc.args...)
					return err
				})
				var liteErr *sqlite.Error
				switch {
				case tc.code == 0 && err != nil:
					t.Errorf("%s: %v", tc.name, err)
				case tc.code != 0 && (!errors.As(err, &liteErr) || liteErr.Code() != tc.code):
					t.Errorf("%s: error %v, want sqlite code %d", tc.name, err, tc.code)
				}
			}
			// A RETURNING query that fails at its first step, then succeeds.
			const ret = "INSERT INTO u (name, n) VALUES ($1, $2) RETURNING n"
			var n int
			err := db.W.QueryRowContext(ctx, ret, "a", 9).Scan(&n)
			var liteErr *sqlite.Error
			if !errors.As(err, &liteErr) || liteErr.Code() != sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
				t.Errorf("duplicate RETURNING: %v", err)
			}
			if err := db.W.QueryRowContext(ctx, ret, "f", 9).Scan(&n); err != nil || n != 9 {
				t.Errorf("RETURNING after the failure: %d, %v", n, err)
			}
			var count int
			if err := db.R.QueryRowContext(ctx, "SELECT COUNT(*) FROM u").Scan(&count); err != nil || count != 4 {
				t.Errorf("rows = %d, %v; want 4", count, err)
			}
		})
	}
}

// Several goroutines run the same statements on the reader pool (each
// connection its own cache) while the writer inserts; run with -race.
func TestStmtCacheConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	db := openCached(t, 8)
	if _, err := db.W.ExecContext(ctx, "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		if _, err := db.W.ExecContext(ctx, "INSERT INTO k (id, v) VALUES ($1, $2)", i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 6 {
		wg.Go(func() {
			for i := range n {
				id := (i*7 + g) % n
				var v string
				if err := db.R.QueryRowContext(ctx, "SELECT v FROM k WHERE id = $1", id).Scan(&v); err != nil {
					errs <- err
					return
				}
				if v != fmt.Sprint("v", id) {
					errs <- fmt.Errorf("id %d read %q", id, v)
					return
				}
				rows, err := db.R.QueryContext(ctx, "SELECT id FROM k WHERE id >= $1 ORDER BY id LIMIT 3", id)
				if err != nil {
					errs <- err
					return
				}
				for rows.Next() {
				}
				if err := rows.Close(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			if _, err := db.W.ExecContext(ctx, "UPDATE k SET v = v WHERE id = $1", i); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkExecCached compares the send path's shape of statements with and
// without the statement cache: a small INSERT in a transaction, and a point
// SELECT.
func BenchmarkExecCached(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{0, stmtCacheSize} {
		// Relaxed: without an fsync per commit the benchmark measures CPU.
		db, err := openWith(filepath.Join(b.TempDir(), "b.db"), 4, Options{Relaxed: true}, size)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		if _, err := db.W.ExecContext(ctx, "CREATE TABLE e (id INTEGER PRIMARY KEY, room TEXT NOT NULL, body TEXT NOT NULL)"); err != nil {
			b.Fatal(err)
		}
		for range 100 {
			if _, err := db.W.ExecContext(ctx, "INSERT INTO e (room, body) VALUES ($1, $2)", "!r:x", "hello"); err != nil {
				b.Fatal(err)
			}
		}
		name := "uncached"
		if size > 0 {
			name = "cached"
		}
		b.Run("insert_in_tx/"+name, func(b *testing.B) {
			for b.Loop() {
				err := db.Tx(ctx, func(tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, "INSERT INTO e (room, body) VALUES ($1, $2)", "!r:x", "hello")
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("point_select/"+name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				var body string
				err := db.R.QueryRowContext(ctx, "SELECT body FROM e WHERE id = $1 AND room = $2", i%100+1, "!r:x").Scan(&body)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
