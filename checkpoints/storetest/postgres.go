package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The test PostgreSQL server: FERRY_TEST_POSTGRES, else trust auth on 127.0.0.1:5432,
// database test (`make test` starts it when it is not answering).

// PostgresDefaultDSN is the test server when FERRY_TEST_POSTGRES is not set.
const PostgresDefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var pgProbe struct {
	once sync.Once
	err  error
}

// PostgresDSN is the test server's DSN, whether or not it answers.
func PostgresDSN() string {
	if dsn := os.Getenv("FERRY_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return PostgresDefaultDSN
}

// PostgresProbe reports whether the test server answers (asked once per process).
func PostgresProbe() error {
	pgProbe.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, PostgresDSN())
		if err == nil {
			err = c.Ping(ctx)
			c.Close(ctx)
		}
		pgProbe.err = err
	})
	return pgProbe.err
}

// PostgresServer returns the test server's DSN once it answers. When it does not,
// the test fails under CI or FERRY_REQUIRE_SERVERS=1 and is skipped otherwise.
func PostgresServer(t testing.TB) string {
	t.Helper()
	if err := PostgresProbe(); err != nil {
		msg := fmt.Sprintf("PostgreSQL at FERRY_TEST_POSTGRES (default %s) does not answer: %v; `make test` starts it", PostgresDefaultDSN, err)
		if os.Getenv("CI") == "true" || os.Getenv("FERRY_REQUIRE_SERVERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return PostgresDSN()
}

// PostgresState returns a state DSN naming a fresh schema of the test server (ferry
// creates it), dropped when the test ends.
func PostgresState(t testing.TB, prefix string) string {
	t.Helper()
	base := PostgresServer(t)
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	schema := prefix + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, base); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			c.Close(ctx)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("schema", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
