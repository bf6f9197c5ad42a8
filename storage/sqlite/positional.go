package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"strings"

	"myelin/storage"
)

// The portable SQL numbers its parameters ($1, $2, …). modernc.org/sqlite
// binds a named or numbered parameter by searching the arguments for it
// (formatting every argument's ordinal to compare), and SQLite's own name
// lookup is a linear scan too: binding n parameters costs O(n²). The
// batched reads (IN lists of hundreds of event positions) spent most of
// an initial /sync there. Anonymous "?" parameters are bound by position,
// so a statement whose parameters are exactly $1…$n, each once and in
// order, is rewritten to use "?"; any other statement is left as it is.

// positionalConnector opens connections whose statements get that rewrite.
// With cacheSize > 0 each connection also keeps that many statements
// prepared (stmtcache.go); 0 prepares every statement per call.
type positionalConnector struct {
	dsn       string
	drv       driver.Driver
	cacheSize int
	// toggleSync: the connection opens at synchronous=FULL and runs the
	// transactions begun by storage.DB.BeginUnflushed at NORMAL.
	toggleSync bool
}

func (c positionalConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	pc := &positionalConn{Conn: conn, toggleSync: c.toggleSync}
	if c.cacheSize > 0 {
		pc.cache = newStmtCache(c.cacheSize)
	}
	return pc, nil
}

func (c positionalConnector) Driver() driver.Driver { return c.drv }

// positionalConn wraps a modernc.org/sqlite connection, passing on every
// interface database/sql uses so it takes the same paths as without it.
type positionalConn struct {
	driver.Conn
	cache *stmtCache // nil: no statement cache

	// On the writer at full durability: relaxed says the connection is
	// at synchronous=NORMAL, inTx that a transaction is open. The level
	// changes only when the next transaction (or statement outside one)
	// wants the other: the PRAGMA is re-prepared on every run, and
	// setting NORMAL and back around each unflushed transaction was 3 %
	// of the server's CPU under sends. database/sql serialises a
	// connection's calls, so these need no lock.
	toggleSync, relaxed, inTx bool
}

// setSync puts the connection at synchronous=NORMAL (relaxed) or FULL. A
// connection whose level is unknown after a failure is bad: the pool
// replaces it with one opened at FULL.
func (c *positionalConn) setSync(ctx context.Context, relaxed bool) error {
	if !c.toggleSync || c.relaxed == relaxed {
		return nil
	}
	q := `PRAGMA synchronous = FULL`
	if relaxed {
		q = `PRAGMA synchronous = NORMAL`
	}
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return errNotSupported
	}
	if _, err := e.ExecContext(ctx, q, nil); err != nil {
		return errors.Join(driver.ErrBadConn, err)
	}
	c.relaxed = relaxed
	return nil
}

// syncTx ends the connection's open transaction for setSync's purposes.
type syncTx struct {
	driver.Tx
	c *positionalConn
}

func (t syncTx) Commit() error {
	t.c.inTx = false
	return t.Tx.Commit()
}

func (t syncTx) Rollback() error {
	t.c.inTx = false
	return t.Tx.Rollback()
}

var errNotSupported = errors.New("sqlite: driver interface not supported")

func (c *positionalConn) Prepare(query string) (driver.Stmt, error) {
	return c.Conn.Prepare(positional(query))
}

func (c *positionalConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, positional(query))
	}
	return c.Conn.Prepare(positional(query))
}

func (c *positionalConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	b, ok := c.Conn.(driver.ConnBeginTx)
	if !ok {
		return nil, errNotSupported
	}
	if !c.toggleSync {
		return b.BeginTx(ctx, opts)
	}
	if err := c.setSync(ctx, storage.Unflushed(ctx)); err != nil {
		return nil, err
	}
	tx, err := b.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.inTx = true
	return syncTx{Tx: tx, c: c}, nil
}

// autocommit makes a statement outside a transaction flushed, as every
// commit but BeginUnflushed's is.
func (c *positionalConn) autocommit(ctx context.Context) error {
	if c.inTx {
		return nil
	}
	return c.setSync(ctx, false)
}

func (c *positionalConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if err := c.autocommit(ctx); err != nil {
		return nil, err
	}
	query = positional(query)
	if c.cache != nil {
		if res, ok, err := c.cache.exec(ctx, c.Conn, query, args); ok {
			return res, err
		}
	}
	if e, ok := c.Conn.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

func (c *positionalConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if err := c.autocommit(ctx); err != nil {
		return nil, err
	}
	query = positional(query)
	if c.cache != nil {
		if rows, ok, err := c.cache.query(ctx, c.Conn, query, args); ok {
			return rows, err
		}
	}
	if q, ok := c.Conn.(driver.QueryerContext); ok {
		return q.QueryContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

// Close closes the cached statements first: they belong to the connection
// and cannot be finalized once it is gone.
func (c *positionalConn) Close() error {
	if c.cache != nil {
		c.cache.closeAll()
	}
	return c.Conn.Close()
}

func (c *positionalConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *positionalConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *positionalConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// positional returns query with $1…$n replaced by "?" when those are its
// parameters, each used once and in increasing order (outside string
// literals, quoted identifiers and comments); otherwise query unchanged.
func positional(query string) string {
	if !strings.Contains(query, "$") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query))
	next := 1
	for i := 0; i < len(query); {
		switch ch := query[i]; {
		case ch == '\'' || ch == '"' || ch == '`':
			// A quoted literal or identifier; a doubled quote is an
			// escaped one, which this loop handles as two literals.
			j := strings.IndexByte(query[i+1:], ch)
			if j < 0 {
				return query
			}
			b.WriteString(query[i : i+j+2])
			i += j + 2
		case ch == '-' && strings.HasPrefix(query[i:], "--"):
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i
			}
			b.WriteString(query[i : i+j])
			i += j
		case ch == '/' && strings.HasPrefix(query[i:], "/*"):
			j := strings.Index(query[i+2:], "*/")
			if j < 0 {
				return query
			}
			b.WriteString(query[i : i+j+4])
			i += j + 4
		case ch == '$':
			j := i + 1
			n := 0
			for j < len(query) && query[j] >= '0' && query[j] <= '9' && n <= 1<<20 {
				n = n*10 + int(query[j]-'0')
				j++
			}
			if j == i+1 || n != next {
				return query // not a number, reused, or out of order
			}
			next++
			b.WriteByte('?')
			i = j
		default:
			b.WriteByte(ch)
			i++
		}
	}
	return b.String()
}
