package jobs

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
)

// A prepared-statement cache for SQLite connections.
//
// River's SQLite driver sends each query as text through database/sql, and
// modernc.org/sqlite prepares (parses and plans) it anew on every call. For
// River's large UPDATE … RETURNING statements that parse dominates: profiling the
// completion path showed ~60% of CPU in sqlite3Prepare, with each completion
// running three such statements (JobCompleteTx, then River's completer and its
// metadata update). The wrapper below keeps each connection's prepared
// statements by query text, so a statement is parsed once per connection.
//
// The wrapped connection does not offer ExecerContext or QueryerContext, so
// database/sql prepares every query through PrepareContext, gets the cached
// statement, and "closes" it when done, which only returns it to the cache. A
// statement still in use (its rows open) is never handed out twice: a second
// user of the same text gets a fresh, uncached statement.

// stmtCacheSize bounds each connection's cache; River uses about 60 distinct
// queries and the store a dozen.
const stmtCacheSize = 256

type stmtCacheConnector struct{ base driver.Connector }

func (c stmtCacheConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &stmtCacheConn{conn: conn, byQuery: map[string]*list.Element{}, lru: list.New()}, nil
}

func (c stmtCacheConnector) Driver() driver.Driver { return c.base.Driver() }

// stmtCacheConn is used by one goroutine at a time (database/sql's rule for a
// driver.Conn), so it needs no lock.
type stmtCacheConn struct {
	conn    driver.Conn
	byQuery map[string]*list.Element // of *cachedStmt
	lru     *list.List               // front: most recently used
}

type cachedStmt struct {
	driver.Stmt
	query string
	inUse bool
	// owner is nil for a statement that is not cached (closed for real).
	owner *stmtCacheConn
}

var (
	_ driver.ConnBeginTx        = (*stmtCacheConn)(nil)
	_ driver.ConnPrepareContext = (*stmtCacheConn)(nil)
	_ driver.Pinger             = (*stmtCacheConn)(nil)
	_ driver.SessionResetter    = (*stmtCacheConn)(nil)
	_ driver.Validator          = (*stmtCacheConn)(nil)
	_ driver.StmtExecContext    = (*cachedStmt)(nil)
	_ driver.StmtQueryContext   = (*cachedStmt)(nil)
)

// Unwrap returns the SQLite connection.
func (c *stmtCacheConn) Unwrap() driver.Conn { return c.conn }

func (c *stmtCacheConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *stmtCacheConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if el, ok := c.byQuery[query]; ok {
		cs := el.Value.(*cachedStmt)
		if !cs.inUse {
			cs.inUse = true
			c.lru.MoveToFront(el)
			return cs, nil
		}
		st, err := c.prepare(ctx, query)
		if err != nil {
			return nil, err
		}
		return &cachedStmt{Stmt: st, query: query}, nil
	}
	st, err := c.prepare(ctx, query)
	if err != nil {
		return nil, err
	}
	cs := &cachedStmt{Stmt: st, query: query, inUse: true, owner: c}
	c.byQuery[query] = c.lru.PushFront(cs)
	for c.lru.Len() > stmtCacheSize {
		el := c.lru.Back()
		old := el.Value.(*cachedStmt)
		c.lru.Remove(el)
		delete(c.byQuery, old.query)
		old.owner = nil
		if !old.inUse {
			old.Stmt.Close()
		}
	}
	return cs, nil
}

func (c *stmtCacheConn) prepare(ctx context.Context, query string) (driver.Stmt, error) {
	if p, ok := c.conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.conn.Prepare(query)
}

// Close returns a cached statement to the cache, and closes any other.
func (s *cachedStmt) Close() error {
	s.inUse = false
	if s.owner == nil {
		return s.Stmt.Close()
	}
	return nil
}

func (s *cachedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := s.Stmt.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	return nil, errors.New("sqlite statement without ExecContext")
}

func (s *cachedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	return nil, errors.New("sqlite statement without QueryContext")
}

func (c *stmtCacheConn) Close() error {
	var errs []error
	for el := c.lru.Front(); el != nil; el = el.Next() {
		cs := el.Value.(*cachedStmt)
		cs.owner = nil
		if !cs.inUse {
			errs = append(errs, cs.Stmt.Close())
		}
	}
	c.lru.Init()
	clear(c.byQuery)
	return errors.Join(append(errs, c.conn.Close())...)
}

// Begin is required by driver.Conn; database/sql calls BeginTx.
func (c *stmtCacheConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx needs the wrapped connection's BeginTx (modernc.org/sqlite has it): the
// deprecated Begin would drop ctx and opts (a read-only or isolation request).
func (c *stmtCacheConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := c.conn.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	return nil, errors.New("sqlite connection without BeginTx")
}

func (c *stmtCacheConn) Ping(ctx context.Context) error {
	if p, ok := c.conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *stmtCacheConn) ResetSession(ctx context.Context) error {
	if r, ok := c.conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *stmtCacheConn) IsValid() bool {
	if v, ok := c.conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}
