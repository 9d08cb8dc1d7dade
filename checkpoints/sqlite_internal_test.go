package checkpoints

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// TestSQLiteEveryConnectionDurable: the pool's connections all run in WAL with
// synchronous=FULL (a committed Save survives power loss, I4) and wait for locks
// instead of failing. A kill -9 test cannot see a missing fsync; this can.
func TestSQLiteEveryConnectionDurable(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
