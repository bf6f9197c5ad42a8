package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
)

// pageCachePoolBytes is SQLite's process-wide page cache memory
// (SQLITE_STATUS_PAGECACHE_OVERFLOW: every page buffer comes from the heap,
// since no SQLITE_CONFIG_PAGECACHE buffer is configured). It is counted even
// though modernc.org/sqlite builds with SQLITE_DEFAULT_MEMSTATUS=0.
func pageCachePoolBytes(t *testing.T) int64 {
	t.Helper()
	tls := libc.NewTLS()
	defer tls.Close()
	// SQLite writes the current and highest values through plain addresses:
	// a package variable's never moves (a local's could, with its stack).
	cur, high := uintptr(unsafe.Pointer(&statusOut[0])), uintptr(unsafe.Pointer(&statusOut[1]))
	if rc := lib.Xsqlite3_status64(tls, lib.SQLITE_STATUS_PAGECACHE_OVERFLOW, cur, high, 0); rc != lib.SQLITE_OK {
		t.Fatalf("sqlite3_status64: %d", rc)
	}
	return statusOut[0]
}

// statusOut receives sqlite3_status64's two values; the tests that read it
// do not run in parallel.
var statusOut [2]int64

// TestPageCachePoolBounded writes many times the writer's cache while the
// readers read what it wrote, and checks that the page cache pool ends within
// the caches' configured sizes: the writer's plus the small share of each
// reader and temp database (see writerCacheKiB). With SQLite's default
// sizes the writer's cache alone outgrows that, and it keeps taking the
// pages the readers leave behind.
func TestPageCachePoolBounded(t *testing.T) {
	const readers = 4
	before := pageCachePoolBytes(t)
	db, err := Open(filepath.Join(t.TempDir(), "x.db"), readers)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.W.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.W.ExecContext(ctx, `CREATE INDEX t_k ON t (k)`); err != nil {
		t.Fatal(err)
	}
	// A reader reads the newest 200 rows: ~100 pages, several times its
	// own cache.
	scan := func() error {
		var size int64
		return db.R.QueryRowContext(ctx, `SELECT coalesce(sum(length(v)), 0) FROM t WHERE id > (SELECT max(id) FROM t) - 200`).Scan(&size)
	}
	body := strings.Repeat("x", 1500)
	// 40 transactions of 100 rows: ~6 MB of table and index pages.
	for batch := range 40 {
		tx, err := db.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			// Keys out of order, so inserts touch pages all over the index.
			k := string(rune('a'+(i*7+batch)%26)) + body[:batch%10]
			if _, err := tx.ExecContext(ctx, `INSERT INTO t (k, v) VALUES ($1, $2)`, k, body); err != nil {
				tx.Rollback()
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		// Every reader scans, and leaves its pages in the pool.
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		for range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- scan()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// The writer's main and temp caches, and each reader's.
	budget := int64(writerCacheKiB+(1+2*readers)*otherCacheKiB) << 10
	// Each page's buffer carries SQLite's headers beyond the KiB counted
	// by cache_size (about 8 %); allow for them.
	limit := budget * 5 / 4
	if got := pageCachePoolBytes(t) - before; got > limit {
		t.Errorf("page cache pool %d KiB after the writes, want at most %d KiB (caches configured for %d KiB)", got>>10, limit>>10, budget>>10)
	} else {
		t.Logf("page cache pool %d KiB (configured %d KiB)", got>>10, budget>>10)
	}
}
