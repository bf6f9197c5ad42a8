package sqlite

import (
	"container/list"
	"context"
	"database/sql/driver"
	"reflect"
	"strings"
)

// Why a statement cache: profiles of the send path on SQLite showed
// modernc.org/sqlite's prepareV2 (SQLite parsing and planning the SQL) at
// about 20% of all server CPU, because database/sql's Exec and Query with
// arguments go through Conn.ExecContext/QueryContext, which prepare and
// finalize the statement on every call. Since v1.61 a driver.Stmt made with
// Prepare keeps its sqlite3_stmt for a single statement and only resets it
// between runs, so each connection keeps its recently used statements
// prepared here and runs the calls through them.
//
// What the cache must respect:
//   - modernc's Rows of a cached statement step that statement and reset it
//     on Close. Two open Rows on one sqlite3_stmt would reset each other, so
//     a statement whose Rows are open is busy, and a call with the same SQL
//     meanwhile (database/sql lets a Tx run statements while iterating a
//     query) runs on a one-off statement, as without the cache.
//   - Generated SQL (IN lists of varying length) must not grow memory without
//     bound: the cache is an LRU of stmtCacheSize statements per connection.
//     A statement evicted while busy is closed when its Rows close.
//   - A script (several statements, e.g. a migration) is re-parsed by modernc
//     on every run anyway, so it is never cached; see singleStatement.
//   - Errors are the driver's own: on a failed step modernc resets the
//     statement (and leaves the error with its code), so the next call starts
//     clean.
//
// database/sql never uses one driver.Conn from two goroutines at once (every
// call on it, Rows.Next and Rows.Close included, holds the driverConn's
// lock), so the cache needs no lock of its own.

// stmtCacheSize is the number of statements each connection keeps prepared.
// The server runs a few hundred distinct statements; the hot ones (the send
// and sync paths) are a few dozen, which an LRU of this size keeps.
const stmtCacheSize = 128

// stmtCache is one connection's LRU of prepared statements by SQL text.
type stmtCache struct {
	max   int
	bySQL map[string]*list.Element // of *cachedStmt
	lru   list.List                // front: most recently used
	// prepares and closes count statements prepared for the cache and
	// closed by it (the tests tell hits from misses and check evictions).
	prepares, closes int
}

type cachedStmt struct {
	query   string
	stmt    driver.Stmt
	busy    bool // its Rows are open
	evicted bool // left the cache while busy: close when its Rows close
}

func newStmtCache(max int) *stmtCache {
	return &stmtCache{max: max, bySQL: make(map[string]*list.Element)}
}

// get returns the idle cached statement for query, preparing and caching it
// on a miss; nil (and no error) when the caller must run query uncached: a
// script, or the cached statement is busy.
func (c *stmtCache) get(ctx context.Context, conn driver.Conn, query string) (*cachedStmt, error) {
	if e, ok := c.bySQL[query]; ok {
		cs := e.Value.(*cachedStmt)
		if cs.busy {
			return nil, nil
		}
		c.lru.MoveToFront(e)
		return cs, nil
	}
	if !singleStatement(query) {
		return nil, nil
	}
	var s driver.Stmt
	var err error
	if p, ok := conn.(driver.ConnPrepareContext); ok {
		s, err = p.PrepareContext(ctx, query)
	} else {
		s, err = conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	c.prepares++
	cs := &cachedStmt{query: query, stmt: s}
	c.bySQL[query] = c.lru.PushFront(cs)
	for c.lru.Len() > c.max {
		c.evict(c.lru.Back())
	}
	return cs, nil
}

// evict removes e from the cache and closes its statement unless Rows of it
// are open; those close it (rowsDone).
func (c *stmtCache) evict(e *list.Element) {
	cs := c.lru.Remove(e).(*cachedStmt)
	delete(c.bySQL, cs.query)
	if cs.busy {
		cs.evicted = true
		return
	}
	c.close(cs)
}

func (c *stmtCache) close(cs *cachedStmt) {
	c.closes++
	// A failed finalize reports the statement's last error again; the
	// statement is gone either way and that error was returned to its call.
	_ = cs.stmt.Close()
}

// rowsDone is called when the Rows of cs close.
func (c *stmtCache) rowsDone(cs *cachedStmt) {
	cs.busy = false
	if cs.evicted {
		c.close(cs)
	}
}

// closeAll closes every cached statement; the connection is closing, and
// database/sql closes a connection only once no Rows of it are open.
func (c *stmtCache) closeAll() {
	for c.lru.Len() > 0 {
		c.evict(c.lru.Back())
	}
}

// exec runs query through a cached statement; ok is false when it must run
// uncached instead.
func (c *stmtCache) exec(ctx context.Context, conn driver.Conn, query string, args []driver.NamedValue) (res driver.Result, ok bool, err error) {
	cs, err := c.get(ctx, conn, query)
	if err != nil {
		return nil, true, err
	}
	if cs == nil {
		return nil, false, nil
	}
	res, err = cs.stmt.(driver.StmtExecContext).ExecContext(ctx, args)
	return res, true, err
}

// query runs query through a cached statement; ok is false when it must
// run uncached instead. The statement is busy until the Rows close.
func (c *stmtCache) query(ctx context.Context, conn driver.Conn, query string, args []driver.NamedValue) (rows driver.Rows, ok bool, err error) {
	cs, err := c.get(ctx, conn, query)
	if err != nil {
		return nil, true, err
	}
	if cs == nil {
		return nil, false, nil
	}
	r, err := cs.stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, true, err
	}
	cs.busy = true
	return &cachedRows{Rows: r, cache: c, cs: cs}, true, nil
}

// cachedRows marks its statement idle again when it closes. It passes on
// the column-type interfaces modernc's rows implement, so ColumnTypes sees
// the same as without the cache.
type cachedRows struct {
	driver.Rows
	cache  *stmtCache
	cs     *cachedStmt
	closed bool
}

func (r *cachedRows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.Rows.Close()
	r.cache.rowsDone(r.cs)
	return err
}

func (r *cachedRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *cachedRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *cachedRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *cachedRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *cachedRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

// singleStatement reports whether query holds at most one statement: no ';'
// outside string literals, quoted identifiers and comments. A trailing ';'
// counts too (modernc then sees a tail and re-parses anyway). Conservative:
// a script or anything this scan does not understand is run uncached.
func singleStatement(query string) bool {
	for i := 0; i < len(query); {
		switch ch := query[i]; {
		case ch == '\'' || ch == '"' || ch == '`' || ch == '[':
			end := ch
			if ch == '[' {
				end = ']'
			}
			j := strings.IndexByte(query[i+1:], end)
			if j < 0 {
				return false
			}
			i += j + 2
		case ch == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				return true
			}
			i += j + 1
		case ch == '/' && i+1 < len(query) && query[i+1] == '*':
			j := strings.Index(query[i+2:], "*/")
			if j < 0 {
				return false
			}
			i += j + 4
		case ch == ';':
			return false
		default:
			i++
		}
	}
	return true
}
