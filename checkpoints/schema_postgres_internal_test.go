package checkpoints

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// pgVersionTest returns the test server's DSN with a fresh schema (dropped when the
// test ends) and an admin connection; it skips, or fails under CI or
// FERRY_REQUIRE_SERVERS=1, when the server does not answer.
func pgVersionTest(t *testing.T) (dsn, schema string, admin *pgx.Conn) {
	t.Helper()
	base := os.Getenv("FERRY_TEST_POSTGRES")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("FERRY_REQUIRE_SERVERS") == "1" {
			t.Fatalf("PostgreSQL at %s does not answer: %v", base, err)
		}
		t.Skipf("PostgreSQL at %s does not answer: %v", base, err)
	}
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	schema = "ferry_version_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		_, _ = c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		c.Close(ctx)
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "schema=" + schema, schema, c
}

// pgVersionDump is the schema's tables, columns and rows, as text.
func pgVersionDump(t *testing.T, c *pgx.Conn, schema string) []string {
	t.Helper()
	ctx := context.Background()
	rows, err := c.Query(ctx, `SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns
		WHERE table_schema = $1 ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	rows, err = c.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1", schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		rows, err := c.Query(ctx, fmt.Sprintf("SELECT %s || t::text FROM %s.%s t ORDER BY 1", pgQuoteLiteral(tb),
			pgx.Identifier{schema}.Sanitize(), pgx.Identifier{tb}.Sanitize()))
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lines...)
	}
	return out
}

func pgStoredVersion(t *testing.T, c *pgx.Conn, schema string) int {
	t.Helper()
	v, err := pgVersion(context.Background(), c, schema)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func pgFailingStep(ctx context.Context, tx pgx.Tx, sql func(string) string) error {
	for _, q := range []string{
		"ALTER TABLE @.records ADD COLUMN note text NOT NULL DEFAULT ''",
		"UPDATE @.records SET note = 'n-' || key",
		"CREATE TABLE @.notes(k text PRIMARY KEY)",
		"DELETE FROM @.meta",
	} {
		if _, err := tx.Exec(ctx, sql(q)); err != nil {
			return err
		}
	}
	return errors.New("step failed on purpose")
}

func TestPostgresFreshStateIsCurrent(t *testing.T) {
	dsn, schema, c := pgVersionTest(t)
	s, err := OpenPostgres(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v := pgStoredVersion(t, c, schema); v != SchemaVersion {
		t.Errorf("a new state has version %d, want %d", v, SchemaVersion)
	}
}

// TestPostgresUpgradesUnversioned: a schema of today's layout without its
// schema_version table (as the ferries before versioning left it) is upgraded on
// open and keeps every record, replica, meta value and stage.
func TestPostgresUpgradesUnversioned(t *testing.T) {
	ctx := context.Background()
	dsn, schema, c := pgVersionTest(t)
	s, err := OpenPostgres(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	seedState(t, s, 2000)
	wantRecs, wantMeta, wantStages := readAll(t, s)
	s.Close()
	if _, err := c.Exec(ctx, "DROP TABLE "+pgx.Identifier{schema, "schema_version"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	before := pgVersionDump(t, c, schema)
	if v := pgStoredVersion(t, c, schema); v != 0 {
		t.Fatalf("version %d after dropping its table", v)
	}

	ro, err := OpenPostgres(ctx, dsn, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of an unversioned state: %v", err)
	}
	ro.Close()
	if after := pgVersionDump(t, c, schema); !slices.Equal(after, before) {
		t.Fatalf("a read-only open changed an unversioned state")
	}

	s, err = OpenPostgres(ctx, dsn, Options{})
	if err != nil {
		t.Fatalf("open of an unversioned state: %v", err)
	}
	gotRecs, gotMeta, gotStages := readAll(t, s)
	s.Close()
	if !reflect.DeepEqual(gotRecs, wantRecs) || gotMeta != wantMeta || !reflect.DeepEqual(gotStages, wantStages) {
		t.Errorf("the upgrade changed the state: %d records (want %d), meta %q (want %q)", len(gotRecs), len(wantRecs), gotMeta, wantMeta)
	}
	if v := pgStoredVersion(t, c, schema); v != SchemaVersion {
		t.Errorf("after the upgrade: version %d, want %d", v, SchemaVersion)
	}
}

// TestPostgresUpgradeAtomic: an upgrade whose step fails after writing leaves the
// schema exactly as it was, from the current version or unversioned.
func TestPostgresUpgradeAtomic(t *testing.T) {
	ctx := context.Background()
	steps := append(slices.Clip(pgSteps), pgFailingStep)
	for _, unversioned := range []bool{false, true} {
		t.Run(fmt.Sprint("unversioned=", unversioned), func(t *testing.T) {
			dsn, schema, c := pgVersionTest(t)
			s, err := OpenPostgres(ctx, dsn, Options{})
			if err != nil {
				t.Fatal(err)
			}
			seedState(t, s, 300)
			s.Close()
			if unversioned {
				if _, err := c.Exec(ctx, "DROP TABLE "+pgx.Identifier{schema, "schema_version"}.Sanitize()); err != nil {
					t.Fatal(err)
				}
			}
			before := pgVersionDump(t, c, schema)
			_, err = openPostgres(ctx, dsn, Options{}, steps)
			if err == nil || !strings.Contains(err.Error(), "step failed on purpose") ||
				!strings.Contains(err.Error(), fmt.Sprintf("from version %d to %d", SchemaVersion, SchemaVersion+1)) {
				t.Fatalf("open with a failing step: %v", err)
			}
			if after := pgVersionDump(t, c, schema); !slices.Equal(after, before) {
				t.Errorf("a failed upgrade changed the state: %d lines, want %d", len(after), len(before))
			}
		})
	}
}

// TestPostgresRefusesNewer: a schema from a newer ferry is refused by every kind of
// open, and not modified (nor is a dry run's copy left behind).
func TestPostgresRefusesNewer(t *testing.T) {
	ctx := context.Background()
	dsn, schema, c := pgVersionTest(t)
	s, err := OpenPostgres(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	seedState(t, s, 100)
	s.Close()
	if _, err := c.Exec(ctx, "UPDATE "+pgx.Identifier{schema, "schema_version"}.Sanitize()+" SET version = $1", SchemaVersion+7); err != nil {
		t.Fatal(err)
	}
	before := pgVersionDump(t, c, schema)
	countScratch := func() (n int) {
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ferry_dryrun_%'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	scratches := countScratch()
	for _, opts := range []Options{{}, {ReadOnly: true}, {Scratch: true}} {
		s, err := Open(ctx, dsn, opts)
		var ne *NewerStateError
		if !errors.As(err, &ne) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("Open(%+v) of a newer state: %v, want a *NewerStateError", opts, err)
		}
		if ne.Version != SchemaVersion+7 || ne.Supported != SchemaVersion || !strings.Contains(err.Error(), schema) ||
			!strings.Contains(err.Error(), "newer ferry") {
			t.Errorf("Open(%+v): %+v: %v", opts, *ne, err)
		}
	}
	if after := pgVersionDump(t, c, schema); !slices.Equal(after, before) {
		t.Error("refusing a newer state changed it")
	}
	if n := countScratch(); n > scratches {
		t.Errorf("a refused dry run left %d scratch schemas", n-scratches)
	}
}

// TestPostgresConcurrentFirstOpens: processes that open a new schema at the same
// time (workers started together) all open it: one creates the tables, the others
// wait for it and find the state current. (An opener that read the version from a
// stale catalog cache would run the upgrade steps again on the new tables.)
func TestPostgresConcurrentFirstOpens(t *testing.T) {
	ctx := context.Background()
	for round := range 5 {
		dsn, schema, c := pgVersionTest(t)
		// Each opener has looked at the schema before it existed, as Open does.
		errs := make([]error, 6)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() {
				s, err := OpenPostgres(ctx, dsn, Options{})
				if err == nil {
					err = s.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: opener %d: %v", round, i, err)
			}
		}
		if v := pgStoredVersion(t, c, schema); v != SchemaVersion {
			t.Fatalf("round %d: version %d", round, v)
		}
	}
}
