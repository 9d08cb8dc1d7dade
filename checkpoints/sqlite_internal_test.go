package checkpoints

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// openInternal opens a new SQLite state in a temporary folder, closed when the test
// ends.
func openInternal(t *testing.T) *SQLite {
	s, _ := openInternalAt(t)
	return s
}

// openInternalAt is openInternal, with the state file's path.
func openInternalAt(t *testing.T) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenSQLite(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// closedCleanly closes s and checks that every SQLite connection to the state at path
// was closed for real: the last one to close checkpoints and removes the WAL, which a
// connection left open behind the pool's back (with a statement still prepared,
// SQLite does not close it) would keep.
func closedCleanly(t *testing.T, s *SQLite, path string) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Close the WAL is still there (%v): a connection was left open", err)
	}
}

// TestSQLiteEveryConnectionDurable: the pool's connections all run in WAL with
// synchronous=FULL (a committed Save survives power loss, I4) and wait for locks
// instead of failing. A kill -9 test cannot see a missing fsync; this can.
func TestSQLiteEveryConnectionDurable(t *testing.T) {
	ctx := context.Background()
	s := openInternal(t)
	// Hold as many connections as the pool allows, so that each is checked.
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 4 {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		var mode string
		var sync, busy int
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("connection %d: journal_mode %q, %v; want wal", i, mode, err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
			t.Errorf("connection %d: synchronous %d, %v; want 2 (FULL)", i, sync, err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil || busy < 1000 {
			t.Errorf("connection %d: busy_timeout %d ms, %v; want a wait of seconds", i, busy, err)
		}
	}
}

// TestSQLiteTxOneConnection: a transaction's statements through the driver's own API
// (exec, query) and through database/sql run on the same connection, in the same
// SQLite transaction: each sees what the other wrote, a rollback undoes both, and
// nothing is visible to another connection before the commit.
func TestSQLiteTxOneConnection(t *testing.T) {
	ctx := context.Background()
	s := openInternal(t)
	count := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		var n int
		if err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM meta WHERE k LIKE 't%'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, commit := range []bool{false, true} {
		tx, err := s.begin(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() // on a failure; sql.ErrTxDone once ended below
		if err := tx.exec("INSERT INTO meta(k, v) VALUES(?, ?)", []any{"t1", "raw"}); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO meta(k, v) VALUES(?, ?)", "t2", "sql"); err != nil {
			t.Fatal(err)
		}
		var raw int
		if err := tx.query("SELECT COUNT(*) FROM meta WHERE k LIKE 't%'", nil, func(st *sqlite3.Stmt) error {
			raw = st.ColumnInt(0)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got := count(tx); raw != 2 || got != 2 {
			t.Errorf("inside the transaction: the driver's API sees %d rows, database/sql %d; want 2 and 2", raw, got)
		}
		if got := count(s.db); got != 0 {
			t.Errorf("another connection sees %d uncommitted rows", got)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool]int{false: 0, true: 2}[commit]
		if got := count(s.db); got != want {
			t.Errorf("commit %v: %d rows after, want %d", commit, got, want)
		}
		// The connection went back to the pool with no statement left open.
		if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
			t.Errorf("ending a transaction twice: %v", err)
		}
	}
}

// TestSQLiteTxRefuses: a statement the driver's API cannot run as given fails with
// an error naming what is wrong; a cancelled context interrupts the transaction.
func TestSQLiteTxRefuses(t *testing.T) {
	ctx := context.Background()
	s := openInternal(t)
	tx, err := s.begin(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, c := range []struct {
		q    string
		args []any
		want string
	}{
		{"INSERT INTO meta(k, v) VALUES(?, ?)", []any{"k", 1.5}, "cannot bind a float64"},
		{"INSERT INTO meta(k, v) VALUES(?, ?)", []any{"k"}, "1 arguments for the 2 parameters"},
		{"DELETE FROM meta; DELETE FROM stages", nil, "more than one statement"},
	} {
		if err := tx.exec(c.q, c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("exec(%q, %v) = %v, want an error holding %q", c.q, c.args, err, c.want)
		}
	}
}

// TestSQLiteTxCancelled: a transaction whose context ends is interrupted with the
// context's error (an interrupted run exits 130), and its rollback still finalizes
// its statements and returns the connection whole: no connection is left open
// behind the pool's back (its WAL would outlive Close).
func TestSQLiteTxCancelled(t *testing.T) {
	ctx := context.Background()
	s, path := openInternalAt(t)
	recs := []Record{{Key: "k", User: "u", State: Planned}}
	for range 3 {
		cctx, cancel := context.WithCancel(ctx)
		tx, err := s.begin(cctx, false)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() // on a failure; sql.ErrTxDone once ended below
		if err := saveTx(tx, recs); err != nil {
			t.Fatal(err)
		}
		cancel()
		time.Sleep(20 * time.Millisecond) // database/sql would roll back now, were it watching cctx
		err = saveTx(tx, recs)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, sqlite3.INTERRUPT) {
			t.Errorf("a Save in a cancelled transaction: %v; want context.Canceled with SQLite's INTERRUPT inside", err)
		}
		if err := tx.Rollback(); err != nil {
			t.Errorf("rolling back a cancelled transaction: %v", err)
		}
		if len(tx.stmts) != 0 {
			t.Errorf("%d statements left prepared after the rollback", len(tx.stmts))
		}
	}
	if _, ok, err := s.Get(ctx, "k"); ok || err != nil {
		t.Errorf("after rolled-back Saves: found %v, %v; want nothing", ok, err)
	}
	if st := s.db.Stats(); st.OpenConnections != 1 {
		t.Errorf("%d connections open, want the one idle connection", st.OpenConnections)
	}
	closedCleanly(t, s, path)
}

// TestSQLiteWaitForLockCancelled: a Save waiting for the write lock (up to the busy
// timeout, 15 s) stops waiting when its context ends, with the context's error.
func TestSQLiteWaitForLockCancelled(t *testing.T) {
	ctx := context.Background()
	s := openInternal(t)
	holder, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer holder.ExecContext(ctx, "ROLLBACK")
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Save(cctx, []Record{{Key: "k", User: "u", State: Planned}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a Save whose deadline passed while it waited for the lock: %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the Save waited %v: the busy timeout, not its context", took)
	}
}

// TestSQLiteTxPanic: a panic while a statement runs through the driver's API reaches
// the caller, and the transaction and its connection end cleanly (database/sql
// discarding a connection inside a transaction of its own would wait forever).
func TestSQLiteTxPanic(t *testing.T) {
	ctx := context.Background()
	s, path := openInternalAt(t)
	if err := s.Save(ctx, []Record{{Key: "k", User: "u", State: Planned}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		_ = s.read(ctx, func(tx *sqliteTx) error {
			return tx.query("SELECT key FROM records", nil, func(*sqlite3.Stmt) error { panic("boom") })
		})
	}()
	select {
	case p := <-done:
		if p != "boom" {
			t.Errorf("recovered %v, want the panic", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the panic did not reach the caller: the transaction's end is stuck")
	}
	if _, ok, err := s.Get(ctx, "k"); !ok || err != nil {
		t.Errorf("after the panic: Get found %v, %v", ok, err)
	}
	if err := s.Save(ctx, []Record{{Key: "k", User: "u", State: Copied}}); err != nil {
		t.Errorf("after the panic: Save: %v", err)
	}
	// The connection database/sql discarded after the panic was closed for real.
	closedCleanly(t, s, path)
}

// TestSQLiteSaveEachKindOfChange: Save writes a changed row with the statement for
// what changed (a new row or its user, its state, its data alone); every kind leaves
// the row, the indexes the queries by user and by state read, and the tallies right.
func TestSQLiteSaveEachKindOfChange(t *testing.T) {
	ctx := context.Background()
	s := openInternal(t)
	rec := func(user string, st RecordState, etag string) Record {
		return Record{Key: "k", User: user, State: st, Size: 5, Replicas: []Replica{{Site: "a", SiteKey: "k", Size: 5, ETag: etag, State: Present}}}
	}
	for _, step := range []struct {
		what string
		r    Record
	}{
		{"new", rec("u1", Planned, "e1")},
		{"user", rec("u2", Planned, "e1")},
		{"state", rec("u2", Copied, "e1")},
		{"data", rec("u2", Copied, "e2")},
		{"user and state", rec("u3", Verified, "e3")},
	} {
		if err := s.Save(ctx, []Record{step.r}); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Get(ctx, "k")
		if err != nil || !ok || got.User != step.r.User || got.State != step.r.State || got.Replicas[0].ETag != step.r.Replicas[0].ETag {
			t.Fatalf("after a change of %s: %+v, %v, %v", step.what, got, ok, err)
		}
		for _, q := range []Query{{User: step.r.User}, {States: []RecordState{step.r.State}}, {User: step.r.User, States: []RecordState{step.r.State}}} {
			var n int
			if err := s.Records(ctx, q, func(Record) error { n++; return nil }); err != nil || n != 1 {
				t.Errorf("after a change of %s: Records(%+v) found %d, %v; want the record", step.what, q, n, err)
			}
		}
		for _, q := range []Query{{User: "u1"}, {States: []RecordState{Planned}}} {
			if q.User == step.r.User || (len(q.States) > 0 && q.States[0] == step.r.State) {
				continue
			}
			var n int
			if err := s.Records(ctx, q, func(Record) error { n++; return nil }); err != nil || n != 0 {
				t.Errorf("after a change of %s: Records(%+v) found %d, %v; want none", step.what, q, n, err)
			}
		}
		st, err := s.Stats(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if c := st.Records[step.r.State]; c.N != 1 || len(st.Records) != 1 {
			t.Errorf("after a change of %s: records tallied %v, want one %s", step.what, st.Records, step.r.State)
		}
	}
	var bad int
	if err := s.db.QueryRow("SELECT COUNT(*) FROM pragma_integrity_check WHERE integrity_check != 'ok'").Scan(&bad); err != nil || bad != 0 {
		t.Errorf("integrity_check: %d problems, %v", bad, err)
	}
}
