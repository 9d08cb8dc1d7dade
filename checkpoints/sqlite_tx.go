package checkpoints

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"

	"github.com/ncruces/go-sqlite3"
	sqlite3drv "github.com/ncruces/go-sqlite3/driver" // also registers the "sqlite3" driver
)

// sqliteTx is a transaction on one of the store's connections, begun and ended by
// the store itself (BEGIN, COMMIT, ROLLBACK on the connection), not by database/sql.
// Statements through database/sql run on that connection (the embedded *sql.Conn:
// ExecContext, QueryContext, QueryRowContext, each with its own context), inside the
// transaction; the hot path's (Save's, and the pages of records and of the staged
// listing) go through the driver's own API on the same connection (exec, query):
// each distinct statement prepared once in the transaction, its arguments bound and
// its columns read in place, with no database/sql call, lock or driver.Value per row
// or per column. The driver (github.com/ncruces/go-sqlite3) runs SQLite built
// single-threaded, one instance per connection, so SQLite takes no mutex per call
// either (issue 15 item 5).
//
// database/sql does not know of the transaction, so it never ends one on its own: a
// database/sql transaction rolls back and discards its connection the moment its
// context ends, while our statements would still be prepared on it, and SQLite does
// not close a connection with prepared statements (the connection, its file
// descriptors and its WAL would be left open). The caller ends every transaction
// (Commit, or a deferred Rollback); end finalizes the statements first.
type sqliteTx struct {
	*sql.Conn
	ctx   context.Context
	stmts map[string]*sqlite3.Stmt
	ended bool
}

// begin starts a transaction on a connection of its own: a read transaction if ro,
// else one that holds the write lock from the start (BEGIN IMMEDIATE). Waiting for
// that lock (up to the busy timeout) ends when ctx does.
func (s *SQLite) begin(ctx context.Context, ro bool) (*sqliteTx, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	q := "BEGIN IMMEDIATE"
	if ro {
		q = "BEGIN"
	}
	if _, err := conn.ExecContext(ctx, q); err != nil {
		conn.Close()
		return nil, err
	}
	return &sqliteTx{Conn: conn, ctx: ctx, stmts: map[string]*sqlite3.Stmt{}}, nil
}

// Commit commits the transaction and returns its connection to the pool.
func (t *sqliteTx) Commit() error { return t.end("COMMIT") }

// Rollback rolls the transaction back (sql.ErrTxDone once it ended) and returns its
// connection to the pool.
func (t *sqliteTx) Rollback() error { return t.end("ROLLBACK") }

// end finalizes the transaction's statements and runs q (COMMIT or ROLLBACK), which
// no context interrupts. A connection left inside a transaction (a COMMIT that
// failed and did not roll back) is discarded, not handed to the next transaction. A
// ROLLBACK of a transaction SQLite already rolled back itself (after an interrupted
// write, say) has nothing left to do: not an error.
func (t *sqliteTx) end(q string) error {
	if t.ended {
		return sql.ErrTxDone
	}
	t.ended = true
	defer t.Conn.Close()
	var err error
	rerr := t.Conn.Raw(func(dc any) error {
		c := dc.(sqlite3drv.Conn).Raw()
		t.closeStmts()
		defer c.SetInterrupt(c.SetInterrupt(context.Background()))
		switch err = c.Exec(q); {
		case err == nil:
		case !c.GetAutocommit():
			return driver.ErrBadConn // database/sql discards the connection
		case q == "ROLLBACK":
			err = nil
		}
		return nil
	})
	if err == nil {
		err = rerr
	}
	return err
}

// closeStmts finalizes the transaction's statements (on its connection).
func (t *sqliteTx) closeStmts() {
	for q, st := range t.stmts {
		st.Close()
		delete(t.stmts, q)
	}
}

// exec runs the statement q with args.
func (t *sqliteTx) exec(q string, args []any) error {
	return t.query(q, args, func(*sqlite3.Stmt) error { return nil })
}

// query runs the statement q with args, prepared on first use, and calls row for
// each row it returns, on the transaction's connection, interrupted if the
// transaction's context ends. A column read in place (ColumnRawText,
// ColumnRawBlob) is valid only until row returns.
func (t *sqliteTx) query(q string, args []any, row func(st *sqlite3.Stmt) error) error {
	return t.Conn.Raw(func(dc any) error {
		c := dc.(sqlite3drv.Conn).Raw()
		defer c.SetInterrupt(c.SetInterrupt(t.ctx))
		defer func() {
			// database/sql closes the connection after a panic here: finalize the
			// statements first, or SQLite would not close it.
			if p := recover(); p != nil {
				t.closeStmts()
				panic(p)
			}
		}()
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
		for st.Step() {
			if err := row(st); err != nil {
				return err
			}
		}
		return st.Err()
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
