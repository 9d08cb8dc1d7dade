package checkpoints

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPostgresFrozenTransactionEnds: a process frozen inside a transaction must not
// hold its row locks for good (workers claim with SKIP LOCKED, so a frozen holder's
// range could never be taken over). The server ends the idle session, another
// session can lock the row, and the frozen writer's transaction runs again when it
// wakes, without an error.
func TestPostgresFrozenTransactionEnds(t *testing.T) {
	dsn := os.Getenv("FERRY_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx := context.Background()
	if c, err := pgx.Connect(ctx, dsn); err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("FERRY_REQUIRE_SERVERS") == "1" {
			t.Fatalf("PostgreSQL at %s does not answer: %v", dsn, err)
		}
		t.Skipf("PostgreSQL at %s does not answer: %v", dsn, err)
	} else {
		c.Close(ctx)
	}
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	schema := "ferry_frozen_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			c.Close(ctx)
		}
	})
	open := func(extra string) *Postgres {
		s, err := OpenPostgres(ctx, dsn+"&schema="+schema+extra, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	// ferry's own sessions get the timeout unless the DSN says otherwise.
	var got string
	if err := open("").pool.QueryRow(ctx, "SHOW idle_in_transaction_session_timeout").Scan(&got); err != nil || got != idleInTxTimeout {
		t.Fatalf("idle_in_transaction_session_timeout = %q (%v), want %s", got, err, idleInTxTimeout)
	}
	frozen := open("&idle_in_transaction_session_timeout=300ms")
	other := open("")
	if err := frozen.SetMeta(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	locked := make(chan struct{})
	attempts := 0
	done := make(chan error, 1)
	go func() {
		done <- frozen.writeTx(ctx, func(tx pgx.Tx) error {
			attempts++
			if _, err := tx.Exec(ctx, frozen.sql("SELECT v FROM @.meta WHERE k = 'k' FOR UPDATE")); err != nil {
				return err
			}
			if attempts == 1 {
				close(locked)
				time.Sleep(2 * time.Second) // frozen, holding the row
			}
			_, err := tx.Exec(ctx, frozen.sql("UPDATE @.meta SET v = 'frozen' WHERE k = 'k'"))
			return err
		})
	}()
	<-locked
	// Another session gets the row long before the frozen one wakes.
	start := time.Now()
	err := other.writeTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, other.sql("UPDATE @.meta SET v = 'other' WHERE k = 'k'"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 1500*time.Millisecond {
		t.Fatalf("the row stayed locked %v by a frozen session", waited)
	}
	if err := <-done; err != nil {
		t.Fatalf("the frozen writer's transaction, once awake: %v", err)
	}
	if attempts != 2 {
		t.Fatalf("the frozen writer ran its transaction %d times, want 2 (once ended by the server)", attempts)
	}
	if v, _, err := other.Meta(ctx, "k"); err != nil || v != "frozen" {
		t.Fatalf("meta k = %q (%v): the rerun write is missing", v, err)
	}
}
