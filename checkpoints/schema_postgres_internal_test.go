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
	"time"

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

// pgLegacyState makes schema (of dsn) a state as a ferry of layout version v (1 to
// 3) left it: the real upgrade steps up to v and no further, its version v.
func pgLegacyState(t *testing.T, dsn string, v int) {
	t.Helper()
	if v < 1 || v >= pgOneRowVersion {
		t.Fatalf("pgLegacyState: version %d", v)
	}
	s, err := openPostgres(context.Background(), dsn, Options{}, pgSteps[:v])
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// pgLegacySeed writes into a legacy state (pgLegacyState) what seedState writes into
// a current one, as ferries before layout version 4 wrote it (a row in records, one
// per replica in replicas), and returns the records as a current ferry should read
// them back.
func pgLegacySeed(t *testing.T, c *pgx.Conn, schema string, n int) []Record {
	t.Helper()
	ctx := context.Background()
	q := pgx.Identifier{schema}.Sanitize()
	recs := seedRecords(n)
	b := &pgx.Batch{}
	for i := range recs {
		r := &recs[i]
		r.UpdatedAt = legacyUpdatedAt
		if i%3 == 0 {
			// Every replica field set somewhere, and times and sizes at the edges, so
			// that the upgrade's SQL is held to what Save writes for each of them.
			a, b := &r.Replicas[0], &r.Replicas[1]
			a.Version, a.SHA256, a.Mode, a.Handle = fmt.Sprintf("v%d", i), fmt.Sprintf("%064x", i+1), "soft", ".ferry-trash/"+r.Key
			a.IntentAt, a.PurgedAt, a.ConfirmedAbsent = time.Unix(1700000001, 5).UTC(), time.Unix(1700000002, 7).UTC(), true
			a.DeletedAt, a.LastError = time.Unix(1700000001, 6).UTC(), `retried <2x> & "quoted"`
			b.ModTime, b.Size = time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC), 5<<40+int64(i)
		}
		b.Queue("INSERT INTO "+q+".records("+pgRecCols+") VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
			r.Key, r.User, r.Size, string(r.State), r.SHA256, r.CRC32C, r.Source, r.TargetKey, r.TargetETag, r.TargetVersion,
			nanos(r.CopiedAt), nanos(r.VerifiedAt), r.Attempts, r.LastError, r.Conflict, nanos(r.UpdatedAt))
		for _, p := range r.Replicas {
			b.Queue("INSERT INTO "+q+".replicas("+pgRepCols+") VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
				r.Key, p.Site, p.SiteKey, p.Primary, p.Size, p.ETag, p.Version, nanos(p.ModTime), p.SHA256, string(p.State), p.Stage, p.Mode,
				p.Handle, nanos(p.IntentAt), nanos(p.DeletedAt), nanos(p.PurgedAt), p.ConfirmedAbsent, p.LastError)
		}
	}
	b.Queue("INSERT INTO " + q + ".meta(k, v) VALUES('plan_digest', 'd1')")
	b.Queue("INSERT INTO " + q + ".stages(name, ord, mode, state) VALUES('one', 1, 'soft', 'pending')")
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.Key, b.Key) })
	return recs
}

// TestPgLegacyStateIsOld: pgLegacyState and pgLegacySeed write the old layout, which
// the upgrade then has to convert (the tests built on them would prove nothing
// against a state that is already new).
func TestPgLegacyStateIsOld(t *testing.T) {
	dsn, schema, c := pgVersionTest(t)
	pgLegacyState(t, dsn, 3)
	pgLegacySeed(t, c, schema, 10)
	var reps int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schema, "replicas"}.Sanitize()).Scan(&reps); err != nil {
		t.Fatal(err)
	}
	if v := pgStoredVersion(t, c, schema); reps != 20 || v != 3 {
		t.Fatalf("legacy state: %d replica rows, version %d", reps, v)
	}
}

// TestPostgresUpgradesOlderLayouts: a state of layout version 1 (also unversioned,
// as the ferries before versioning left it) or 3 is read by a read-only open as the
// upgrade would convert it, leaving it as it was, and is upgraded in place by an
// open that writes, keeping every record with its replicas, its counts, meta value
// and stage; the replicas table is gone after.
func TestPostgresUpgradesOlderLayouts(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		v, stamped int
	}{{"unversioned", 1, 0}, {"version 1", 1, 1}, {"version 3", 3, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			dsn, schema, c := pgVersionTest(t)
			pgLegacyState(t, dsn, tc.v)
			want := pgLegacySeed(t, c, schema, 2000)
			// Some replicas in other states, so that the counts have something to count.
			if _, err := c.Exec(ctx, "UPDATE "+pgx.Identifier{schema, "replicas"}.Sanitize()+
				" SET state = 'deleted', deleted_at = 1700000000000000000, last_error = 'x' WHERE key LIKE 'user03/%' AND site = 'b'"); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if strings.HasPrefix(want[i].Key, "user03/") {
					want[i].Replicas[1].State, want[i].Replicas[1].DeletedAt, want[i].Replicas[1].LastError = Deleted, time.Unix(0, 1700000000000000000).UTC(), "x"
				}
			}
			if tc.stamped == 0 {
				if _, err := c.Exec(ctx, "DROP TABLE "+pgx.Identifier{schema, "schema_version"}.Sanitize()); err != nil {
					t.Fatal(err)
				}
			}
			before := pgVersionDump(t, c, schema)
			if v := pgStoredVersion(t, c, schema); v != tc.stamped {
				t.Fatalf("legacy state at version %d, want %d", v, tc.stamped)
			}

			ro, err := OpenPostgres(ctx, dsn, Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("read-only open: %v", err)
			}
			defer ro.Close()
			if !ro.Reopen() {
				t.Error("a read-only open of an older state does not ask a poller to reopen it")
			}
			got, meta, stages := readAll(t, ro)
			if !reflect.DeepEqual(got, want) || meta != "d1" || len(stages) != 1 {
				t.Errorf("read-only: %d records (want %d), meta %q, stages %+v", len(got), len(want), meta, stages)
			}
			roStats, err := ro.Stats(ctx, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			var staged, wantStaged []string
			if err := ro.Records(ctx, Query{Stage: "two", ReplicaStates: []ReplicaState{Deleted}}, func(r Record) error {
				staged = append(staged, r.Key)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for _, r := range want {
				if r.Replicas[1].State == Deleted {
					wantStaged = append(wantStaged, r.Key)
				}
			}
			if len(wantStaged) == 0 || !slices.Equal(staged, wantStaged) {
				t.Errorf("read-only: %d records with a deleted replica in stage two, want %d", len(staged), len(wantStaged))
			}
			if err := ro.SetMeta(ctx, "migration", "other"); err == nil {
				t.Error("the read-only open took a write")
			}
			if after := pgVersionDump(t, c, schema); !slices.Equal(after, before) {
				t.Fatalf("a read-only open changed the state")
			}

			// An open that writes upgrades it (while the read-only one stays open).
			s, err := OpenPostgres(ctx, dsn, Options{})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			got, meta, stages = readAll(t, s)
			stats, err := s.Stats(ctx, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			// The upgrade built each record's replicas exactly as Save writes them: a
			// Save of what was read changes no row.
			if err := s.Save(ctx, got); err != nil {
				t.Fatal(err)
			}
			again, _, _ := readAll(t, s)
			s.Close()
			for i := range again {
				if !again[i].UpdatedAt.Equal(legacyUpdatedAt) {
					t.Fatalf("record %q was rewritten by a Save of itself after the upgrade: the upgrade's replicas differ from Save's", again[i].Key)
				}
			}
			ro2, err := OpenPostgres(ctx, dsn, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if ro2.Reopen() {
				t.Error("a read-only open of an upgraded state asks to be reopened")
			}
			if got2, _, _ := readAll(t, ro2); !reflect.DeepEqual(got2, want) {
				t.Error("a read-only open of the upgraded state reads other records")
			}
			ro2.Close()
			sameUpgradedState(t, got, want, meta, stages)
			if !reflect.DeepEqual(stats, roStats) || stats.ReplicasSite["b"][Deleted].N == 0 || stats.StageCounts["one"][Identical].N != 2000 {
				t.Errorf("counts after the upgrade %+v, read-only before it %+v", stats, roStats)
			}
			if v := pgStoredVersion(t, c, schema); v != SchemaVersion {
				t.Errorf("after the upgrade: version %d, want %d", v, SchemaVersion)
			}
			for _, l := range pgVersionDump(t, c, schema) {
				if strings.HasPrefix(l, "replicas.") {
					t.Fatalf("the upgrade kept the replicas table: %s", l)
				}
			}
		})
	}
}

// TestPostgresUpgradeRefusesOrphanReplicas: a version 3 state holding a replica row
// without its record (which no ferry writes) is not upgraded, and not changed.
func TestPostgresUpgradeRefusesOrphanReplicas(t *testing.T) {
	ctx := context.Background()
	dsn, schema, c := pgVersionTest(t)
	pgLegacyState(t, dsn, 3)
	pgLegacySeed(t, c, schema, 10)
	if _, err := c.Exec(ctx, "INSERT INTO "+pgx.Identifier{schema, "replicas"}.Sanitize()+
		"(key, site, site_key, size, state) VALUES('zz/orphan', 'virginia', 'zz/orphan', 1, 'present')"); err != nil {
		t.Fatal(err)
	}
	before := pgVersionDump(t, c, schema)
	_, err := OpenPostgres(ctx, dsn, Options{})
	if err == nil || !strings.Contains(err.Error(), `"zz/orphan"`) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("open of a state with an orphan replica row: %v", err)
	}
	if after := pgVersionDump(t, c, schema); !slices.Equal(after, before) {
		t.Fatalf("the refused upgrade changed the state")
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
			if unversioned {
				// Version 1's tables without a version: every step runs, then the
				// failing one.
				pgLegacyState(t, dsn, 1)
				pgLegacySeed(t, c, schema, 300)
				if _, err := c.Exec(ctx, "DROP TABLE "+pgx.Identifier{schema, "schema_version"}.Sanitize()); err != nil {
					t.Fatal(err)
				}
			} else {
				s, err := OpenPostgres(ctx, dsn, Options{})
				if err != nil {
					t.Fatal(err)
				}
				seedState(t, s, 300)
				s.Close()
			}
			before := pgVersionDump(t, c, schema)
			_, err := openPostgres(ctx, dsn, Options{}, steps)
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

// TestPostgresRefusesNewer: a schema from a newer ferry (even one without a table
// this ferry has) is refused by every kind of open, and not modified (nor is a dry
// run's copy left behind).
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
	// A newer layout need not have this ferry's tables: still "newer", not "no state".
	if _, err := c.Exec(ctx, "DROP TABLE "+pgx.Identifier{schema, "journal"}.Sanitize()); err != nil {
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

// TestPostgresLegacyReadDuringUpgrade: a read-only store reading an older state
// (status --watch) whose read waits on a writer's upgrade and runs once the upgrade
// committed (the tables its view read are gone) reads the new layout instead of
// failing, and no longer asks to be reopened.
func TestPostgresLegacyReadDuringUpgrade(t *testing.T) {
	ctx := context.Background()
	dsn, schema, c := pgVersionTest(t)
	pgLegacyState(t, dsn, 3)
	want := pgLegacySeed(t, c, schema, 200)
	ro, err := OpenPostgres(ctx, dsn, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if !ro.Reopen() {
		t.Fatal("a read-only open of a version 3 state does not read it as an older layout")
	}
	// Hold the records table, so that the upgrade waits, and the reads queue behind it.
	hold, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(ctx, "LOCK TABLE "+pgx.Identifier{schema, "records"}.Sanitize()+" IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	upgraded := make(chan error, 1)
	go func() {
		s, err := OpenPostgres(ctx, dsn, Options{})
		if err == nil {
			err = s.Close()
		}
		upgraded <- err
	}()
	waitFor(t, func() bool { // the upgrade is waiting for its lock
		var n int
		err := c.QueryRow(ctx, "SELECT count(*) FROM pg_locks l JOIN pg_class r ON r.oid = l.relation WHERE r.relname = 'records' AND NOT l.granted").Scan(&n)
		return err == nil && n > 0
	})
	type result struct {
		st  Stats
		rec Record
		ok  bool
		err error
	}
	reads := make(chan result, 1)
	go func() {
		var res result
		if res.st, res.err = ro.Stats(ctx, time.Now()); res.err == nil {
			res.rec, res.ok, res.err = ro.Get(ctx, want[0].Key)
		}
		reads <- res
	}()
	time.Sleep(200 * time.Millisecond) // (the read queues behind the upgrade)
	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-upgraded; err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	res := <-reads
	if res.err != nil {
		t.Fatalf("a read of the older layout across the upgrade: %v", res.err)
	}
	if res.st.StageCounts["one"][Identical].N != int64(len(want)) || !res.ok || !reflect.DeepEqual(res.rec, want[0]) {
		t.Errorf("read across the upgrade: stage one %+v, Get %v %+v", res.st.StageCounts["one"], res.ok, res.rec)
	}
	if ro.Reopen() {
		t.Error("the store still asks to be reopened once it reads the upgraded state")
	}
	var recs []Record
	if err := ro.Records(ctx, Query{Stage: "two"}, func(r Record) error { recs = append(recs, r); return nil }); err != nil || len(recs) != len(want) {
		t.Errorf("Records after the upgrade: %d records, %v", len(recs), err)
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("timed out waiting")
}
