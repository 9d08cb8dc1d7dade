package checkpoints

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/ncruces/go-sqlite3"
	sqlite3drv "github.com/ncruces/go-sqlite3/driver" // also registers the "sqlite3" driver
)

// sqliteTx is a transaction on one of the store's connections. Most of its
// statements go through database/sql (the embedded *sql.Tx); the hot path's (Save's,
// and the pages of records and of the staged listing) go through the driver's own API
// on the same connection (exec, query): each distinct statement prepared once in the
// transaction, its arguments bound and its columns read in place, with no
// database/sql call, lock or driver.Value per row or per column. The driver
// (github.com/ncruces/go-sqlite3) runs SQLite built single-threaded, one instance per
// connection, so SQLite takes no mutex per call either (issue 15 item 5).
type sqliteTx struct {
	*sql.Tx
	ctx   context.Context
	conn  *sql.Conn
	stmts map[string]*sqlite3.Stmt
}

// begin starts a transaction (read-only if ro) on a connection of its own. The
// caller ends it (Commit, or a deferred Rollback) whatever happens.
//
// database/sql does not see ctx: if it did, it would roll the transaction back and
// discard the connection the moment ctx ends, while the transaction's statements
// are still prepared on it, and SQLite does not close a connection with prepared
// statements (sqlite3_close returns BUSY): the connection, its file descriptors and
// its WAL would be left open. ctx interrupts the transaction's statements instead
// (run, and database/sql's calls with their own contexts), and end finalizes them
// before the rollback.
func (s *SQLite) begin(ctx context.Context, ro bool) (*sqliteTx, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(context.WithoutCancel(ctx), &sql.TxOptions{ReadOnly: ro})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &sqliteTx{Tx: tx, ctx: ctx, conn: conn, stmts: map[string]*sqlite3.Stmt{}}, nil
}

// Commit commits the transaction and returns its connection to the pool.
func (t *sqliteTx) Commit() error { return t.end(t.Tx.Commit) }

// Rollback rolls the transaction back (nothing, after a Commit) and returns its
// connection to the pool.
func (t *sqliteTx) Rollback() error { return t.end(t.Tx.Rollback) }

func (t *sqliteTx) end(f func() error) error {
	if len(t.stmts) > 0 {
		_ = t.conn.Raw(func(any) error {
			for q, st := range t.stmts {
				st.Close()
				delete(t.stmts, q)
			}
			return nil
		})
	}
	err := f()
	if err != nil && !errors.Is(err, sql.ErrTxDone) {
		// A COMMIT or ROLLBACK that failed may leave the connection inside its
		// transaction (or a read-only one's query_only set): discard it rather than
		// hand it to the next transaction.
		_ = t.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	t.conn.Close()
	return err
}

// exec runs the statement q with args.
func (t *sqliteTx) exec(q string, args []any) error {
	return t.run(q, args, func(st *sqlite3.Stmt) error {
		for st.Step() {
		}
		return st.Err()
	})
}

// query runs the statement q with args and calls row for each row it returns. A
// column read in place (ColumnRawText, ColumnRawBlob) is valid only until row
// returns.
func (t *sqliteTx) query(q string, args []any, row func(st *sqlite3.Stmt) error) error {
	return t.run(q, args, func(st *sqlite3.Stmt) error {
		for st.Step() {
			if err := row(st); err != nil {
				return err
			}
		}
		return st.Err()
	})
}

// run binds args to the statement q (prepared on first use) and calls f with it on
// the transaction's connection, interrupted if the transaction's context ends.
func (t *sqliteTx) run(q string, args []any, f func(st *sqlite3.Stmt) error) error {
	return t.conn.Raw(func(dc any) error {
		c := dc.(sqlite3drv.Conn).Raw()
		defer c.SetInterrupt(c.SetInterrupt(t.ctx))
		st := t.stmts[q]
		if st == nil {
			var tail string
			var err error
			if st, tail, err = c.Prepare(q); err != nil {
				return err
			}
			if strings.TrimSpace(tail) != "" {
				st.Close()
				return fmt.Errorf("checkpoints: more than one statement in %q", q)
			}
			t.stmts[q] = st
		}
		defer st.Reset()
		if err := bind(st, args); err != nil {
			return err
		}
		return f(st)
	})
}

// bind binds args to st's parameters, in order.
func bind(st *sqlite3.Stmt, args []any) error {
	if n := st.BindCount(); n != len(args) {
		return fmt.Errorf("checkpoints: %d arguments for the %d parameters of %q", len(args), n, st.SQL())
	}
	for i, a := range args {
		var err error
		switch v := a.(type) {
		case string:
			err = st.BindText(i+1, v)
		case int64:
			err = st.BindInt64(i+1, v)
		case int:
			err = st.BindInt64(i+1, int64(v))
		case []byte:
			err = st.BindBlob(i+1, v)
		case bool:
			err = st.BindBool(i+1, v)
		default:
			err = fmt.Errorf("checkpoints: argument %d of %q: cannot bind a %T", i+1, st.SQL(), a)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
