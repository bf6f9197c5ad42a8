// Package sqlite opens the embedded default database (modernc.org/sqlite,
// pure Go) and owns its migrations. SQLite-specific settings live here only.
//
// Every connection goes through a thin driver wrapper that rewrites $1…$n
// to positional "?" parameters (positional.go) and keeps the connection's
// 128 most recently used single statements prepared (stmtcache.go):
// modernc.org/sqlite otherwise parses and plans the SQL again on every
// Exec and Query, which was about 20% of the server's CPU on the send path.
// A statement whose Rows are still open is busy, and the same SQL meanwhile
// runs on a one-off statement; scripts are never cached; errors are the
// driver's own, unchanged.
package sqlite

import (
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"myelin/storage"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Open opens (creating if needed) the database file at path. maxReaders bounds
// the read-only pool.
//
// Why these pragmas: WAL lets readers run beside the single writer;
// busy_timeout absorbs the short waits WAL still has (checkpoints);
// foreign_keys is off by default in SQLite; synchronous=FULL makes an
// acknowledged commit survive power loss (NORMAL in WAL mode does not);
// _txlock=immediate takes the write lock at BEGIN so a transaction never
// fails half-way on a lock upgrade; cache_size: see the constants below.
func Open(path string, maxReaders int) (*storage.DB, error) {
	return OpenWith(path, maxReaders, Options{})
}

// The page cache sizes, in KiB. modernc.org/sqlite builds SQLite with
// SQLITE_ENABLE_MEMORY_MANAGEMENT, so all connections' page caches are one
// process-wide pool whose size is the sum of every open cache's
// cache_size (main and temp databases alike), and a connection at its own
// limit takes the pool's least recently used page from whichever
// connection holds it. With SQLite's default of 2,000 KiB each, the
// writer's cache kept growing into the share the readers did not use —
// 10 caches, ~20 MB of pool, each 4 KiB page in an 8 KiB slot of modernc's
// allocator — and RSS climbed through the whole 10-minute soak
// (docs/performance.md). A reader gains little from its share: in WAL mode
// a connection drops its whole cache when it starts a read after another
// connection committed, so under load it never holds more than one
// transaction's pages. So the writer's cache is the pool, and the readers
// and temp databases keep a small share each. (A sort still keeps up to
// 1 MB in memory before it spills to a temporary file: SQLite's sorter
// takes the larger of that and cache_size.)
const (
	writerCacheKiB = 1024
	otherCacheKiB  = 64
)

// Options are the settings an operator may change.
type Options struct {
	// Relaxed uses synchronous=NORMAL (config database.durability:
	// relaxed): in WAL mode a commit then survives a crash of the process
	// but not a power loss. Never the default.
	Relaxed bool
}

// OpenWith is Open with Options.
func OpenWith(path string, maxReaders int, o Options) (*storage.DB, error) {
	return openWith(path, maxReaders, o, stmtCacheSize)
}

// openWith is OpenWith keeping cacheSize prepared statements per connection
// (0: none; the benchmarks compare both).
func openWith(path string, maxReaders int, o Options, cacheSize int) (*storage.DB, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create database directory: %w", err)
		}
	}
	common := url.Values{}
	common.Add("_pragma", "busy_timeout(10000)")
	common.Add("_pragma", "foreign_keys(1)")
	common.Add("_pragma", "journal_mode(WAL)")
	if o.Relaxed {
		common.Add("_pragma", "synchronous(NORMAL)")
	} else {
		common.Add("_pragma", "synchronous(FULL)")
	}
	common.Add("_pragma", fmt.Sprintf("temp.cache_size(-%d)", otherCacheKiB))

	wq := url.Values{}
	for k, v := range common {
		wq[k] = append([]string(nil), v...)
	}
	wq.Set("_txlock", "immediate")
	wq.Add("_pragma", fmt.Sprintf("cache_size(-%d)", writerCacheKiB))
	// SQLite parses "file:" names as URIs: escape the path so '?', '#' and
	// '%' in a directory name cannot cut it short (and lose the pragmas).
	uri := "file:" + (&url.URL{Path: path}).EscapedPath()
	w, err := openPositional(uri+"?"+wq.Encode(), cacheSize, !o.Relaxed)
	if err != nil {
		return nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	// Create the file and switch it to WAL before readers open it.
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}

	rq := url.Values{}
	for k, v := range common {
		rq[k] = append([]string(nil), v...)
	}
	rq.Add("_pragma", "query_only(1)")
	rq.Add("_pragma", fmt.Sprintf("cache_size(-%d)", otherCacheKiB))
	r, err := openPositional(uri+"?"+rq.Encode(), cacheSize, false)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite readers: %w", err)
	}
	if maxReaders < 1 {
		maxReaders = 1
	}
	r.SetMaxOpenConns(maxReaders)
	r.SetMaxIdleConns(maxReaders)

	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	db := storage.New(storage.SQLite, w, r, sub)
	db.FlushEachCommit = !o.Relaxed
	db.WALPath = path + "-wal"
	return db, nil
}

// openPositional is sql.Open("sqlite", dsn) with the parameter rewrite of
// positional.go on every connection, and a cache of cacheSize prepared
// statements per connection (stmtcache.go; 0: none). toggleSync is for
// the writer at full durability (positionalConn.setSync).
func openPositional(dsn string, cacheSize int, toggleSync bool) (*sql.DB, error) {
	// sql.Open connects nothing: it only hands out the registered driver.
	probe, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	drv := probe.Driver()
	probe.Close()
	return sql.OpenDB(positionalConnector{dsn: dsn, drv: drv, cacheSize: cacheSize, toggleSync: toggleSync}), nil
}
