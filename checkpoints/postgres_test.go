package checkpoints_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/storetest"
)

// The PostgreSQL tests run against the server named by FERRY_TEST_POSTGRES (default:
// trust auth on 127.0.0.1:5432, database test). Each test works in its own schema,
// dropped when it ends.

// pgTestDSN returns the test server's DSN, or skips the test when it does not answer
// (fails under CI or FERRY_REQUIRE_SERVERS=1: `make test` starts the server).
func pgTestDSN(t testing.TB) string { return storetest.PostgresServer(t) }

// withParam returns dsn with a query parameter set.
func withParam(t testing.TB, dsn, k, v string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

// pgAdmin runs fn on a connection of its own (setup, checks and cleanup).
func pgAdmin(t testing.TB, fn func(ctx context.Context, c *pgx.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pgTestDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := fn(ctx, c); err != nil {
		t.Fatal(err)
	}
}

// pgSchema names a schema for this test (not created) and drops it when the test ends.
func pgSchema(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "ferry_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		pgAdmin(t, func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
			return err
		})
	})
	return name
}

func pgSchemaExists(t *testing.T, name string) bool {
	t.Helper()
	var ok bool
	pgAdmin(t, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", name).Scan(&ok)
	})
	return ok
}

// openPG opens the store in schema through checkpoints.Open (the DSN dispatch).
func openPG(t testing.TB, schema string, opts checkpoints.Options) *checkpoints.Postgres {
	t.Helper()
	s, err := checkpoints.Open(context.Background(), withParam(t, pgTestDSN(t), "schema", schema), opts)
	if err != nil {
		t.Fatalf("Open(schema %s, %+v): %v", schema, opts, err)
	}
	pg, ok := s.(*checkpoints.Postgres)
	if !ok {
		t.Fatalf("Open(postgres://) returned a %T", s)
	}
	return pg
}

// pgDump is every row of every table of schema, as text: equal dumps, equal state.
func pgDump(t *testing.T, schema string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	pgAdmin(t, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema)
		if err != nil {
			return err
		}
		tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, tb := range tables {
			rows, err := c.Query(ctx, fmt.Sprintf("SELECT t::text FROM %s.%s t ORDER BY 1",
				pgx.Identifier{schema}.Sanitize(), pgx.Identifier{tb}.Sanitize()))
			if err != nil {
				return err
			}
			if out[tb], err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

func sameDump(t *testing.T, what string, got, want map[string][]string) {
	t.Helper()
	for tb := range want {
		if !slices.Equal(got[tb], want[tb]) {
			t.Errorf("%s: table %s changed: %d rows, was %d", what, tb, len(got[tb]), len(want[tb]))
		}
	}
	for tb := range got {
		if _, ok := want[tb]; !ok {
			t.Errorf("%s: table %s appeared", what, tb)
		}
	}
}

func TestPostgresConformance(t *testing.T) {
	pgTestDSN(t)
	storetest.Run(t, func(t *testing.T, opts checkpoints.Options) checkpoints.Store {
		return openPG(t, pgSchema(t), opts)
	})
}

func TestPostgresScratchLeavesRealStateAlone(t *testing.T) {
	schema := pgSchema(t)
	real := openPG(t, schema, checkpoints.Options{})
	seed(t, real)
	closeStore(t, real)
	before := pgDump(t, schema)

	dry := openPG(t, schema, checkpoints.Options{Scratch: true})
	if dry.Schema() == schema || !strings.HasPrefix(dry.Schema(), "ferry_dryrun_") {
		t.Fatalf("scratch schema %q is not a copy beside %q", dry.Schema(), schema)
	}
	checkSeed(t, "scratch copy", dry) // it starts as a copy of the real state
	scribble(t, dry)
	sameDump(t, "while the scratch is open", pgDump(t, schema), before)
	closeStore(t, dry)
	if pgSchemaExists(t, dry.Schema()) {
		t.Errorf("Close left the scratch schema %s behind", dry.Schema())
	}
	sameDump(t, "after the dry run", pgDump(t, schema), before)

	real = openPG(t, schema, checkpoints.Options{ReadOnly: true})
	checkSeed(t, "real state after a dry run", real)
	if _, ok, _ := real.Get(context.Background(), "bob/new"); ok {
		t.Error("a record saved in the dry run reached the real state")
	}
	closeStore(t, real)
}

// TestPostgresScratchWhileWriterOpen: a dry run next to a live process sees its
// committed writes, and the live process sees none of the dry run's.
func TestPostgresScratchWhileWriterOpen(t *testing.T) {
	ctx := context.Background()
	schema := pgSchema(t)
	live := openPG(t, schema, checkpoints.Options{})
	defer closeStore(t, live)
	seed(t, live)
	if err := live.Save(ctx, []checkpoints.Record{rec("carol/late", 7)}); err != nil {
		t.Fatal(err)
	}
	dry := openPG(t, schema, checkpoints.Options{Scratch: true})
	if r, ok, err := dry.Get(ctx, "carol/late"); err != nil || !ok || consistent(r) != nil {
		t.Errorf("scratch copy misses the live process's last write: %+v, %v, %v", r, ok, err)
	}
	scribble(t, dry)
	closeStore(t, dry)
	if err := live.Save(ctx, []checkpoints.Record{rec("carol/later", 8)}); err != nil {
		t.Fatalf("the live process cannot write after a dry run: %v", err)
	}
	carol := 0
	if err := live.Records(ctx, checkpoints.Query{User: "carol"}, func(r checkpoints.Record) error {
		carol++
		return consistent(r)
	}); err != nil || carol != 2 {
		t.Errorf("the live state after a dry run: %d of its 2 late records, %v", carol, err)
	}
	if _, ok, _ := live.Get(ctx, "bob/new"); ok {
		t.Error("a record saved in the dry run reached the live state")
	}
	if r, _, _ := live.Get(ctx, "alice/000"); r.State != checkpoints.Copied || len(r.Replicas) != 3 {
		t.Errorf("the dry run changed the live state: %+v", r)
	}
	if _, ok, _ := live.LockHolder(ctx); ok {
		t.Error("the dry run's lock reached the live state")
	}
}

func TestPostgresScratchMissingSchema(t *testing.T) {
	schema := pgSchema(t)
	dry := openPG(t, schema, checkpoints.Options{Scratch: true})
	scribble(t, dry)
	if n, err := dry.ListedCount(context.Background(), "virginia"); err != nil || n != 0 {
		t.Errorf("ListedCount = %d, %v", n, err)
	}
	closeStore(t, dry)
	for _, name := range []string{schema, dry.Schema()} {
		if pgSchemaExists(t, name) {
			t.Errorf("a dry run on a missing state left schema %s", name)
		}
	}
}

func TestPostgresReadOnly(t *testing.T) {
	ctx := context.Background()
	schema := pgSchema(t)
	_, err := checkpoints.Open(ctx, withParam(t, pgTestDSN(t), "schema", schema), checkpoints.Options{ReadOnly: true})
	if err == nil {
		t.Fatal("ReadOnly open of a missing schema succeeded")
	}
	if !strings.Contains(err.Error(), schema) || !strings.Contains(err.Error(), "ferry plan") {
		t.Errorf("ReadOnly open of a missing schema: %q; want an error naming the schema and what to do", err)
	}
	if pgSchemaExists(t, schema) {
		t.Error("ReadOnly open of a missing schema created it")
	}

	w := openPG(t, schema, checkpoints.Options{})
	seed(t, w)
	closeStore(t, w)
	before := pgDump(t, schema)

	ro := openPG(t, schema, checkpoints.Options{ReadOnly: true})
	checkSeed(t, "read-only", ro)
	if _, err := ro.Stats(ctx, time.Now()); err != nil {
		t.Errorf("Stats: %v", err)
	}
	for name, write := range map[string]func() error{
		"Save":         func() error { return ro.Save(ctx, []checkpoints.Record{rec("bob/x", 1)}) },
		"SetMeta":      func() error { return ro.SetMeta(ctx, "plan_digest", "x") },
		"SaveStage":    func() error { return ro.SaveStage(ctx, checkpoints.StageState{Name: "x"}) },
		"AddListed":    func() error { return ro.AddListed(ctx, []checkpoints.Listed{{Site: "s", Key: "k"}}) },
		"ResetListing": func() error { return ro.ResetListing(ctx) },
		"Lock":         func() error { _, err := ro.Lock(ctx, checkpoints.Self("copy"), time.Minute); return err },
	} {
		if err := write(); err == nil {
			t.Errorf("%s on a read-only store succeeded", name)
		} else if !strings.Contains(err.Error(), "read-only") {
			t.Errorf("%s on a read-only store: %v; want a read-only transaction error", name, err)
		}
	}
	closeStore(t, ro)
	sameDump(t, "read-only use", pgDump(t, schema), before)
}

// TestPostgresSchemaFromDSN: the schema comes from `schema`, else search_path, else
// is "ferry".
func TestPostgresSchemaFromDSN(t *testing.T) {
	ctx := context.Background()
	dsn := pgTestDSN(t)
	a, b := pgSchema(t), pgSchema(t)
	for _, tc := range []struct{ dsn, want string }{
		{withParam(t, dsn, "schema", a), a},
		{withParam(t, dsn, "search_path", b+",public"), b},
		{withParam(t, dsn, "search_path", `"$user",`+strings.ToUpper(b)), b}, // unquoted names fold to lower case
	} {
		s, err := checkpoints.Open(ctx, tc.dsn, checkpoints.Options{})
		if err != nil {
			t.Fatalf("Open(%s): %v", tc.dsn, err)
		}
		if got := s.(*checkpoints.Postgres).Schema(); got != tc.want {
			t.Errorf("Open(%s): schema %q, want %q", tc.dsn, got, tc.want)
		}
		if !pgSchemaExists(t, tc.want) {
			t.Errorf("Open(%s) did not create schema %q", tc.dsn, tc.want)
		}
		closeStore(t, s)
	}
	// The default, read-only so that nothing is created in the test database.
	s, err := checkpoints.Open(ctx, dsn, checkpoints.Options{ReadOnly: true})
	if err == nil {
		if got := s.(*checkpoints.Postgres).Schema(); got != "ferry" {
			t.Errorf("default schema %q, want ferry", got)
		}
		closeStore(t, s)
	} else if !strings.Contains(err.Error(), `"ferry"`) {
		t.Errorf("Open without a schema: %v; want the default schema \"ferry\"", err)
	}
}

// TestPostgresTextKeys: keys PostgreSQL text cannot hold are refused with a message
// naming them, and lookups with them (or past them) behave as byte comparisons.
func TestPostgresTextKeys(t *testing.T) {
	ctx := context.Background()
	s := openPG(t, pgSchema(t), checkpoints.Options{})
	defer closeStore(t, s)
	keys := []string{"a", "a\u00e9", "a\u00e9z", "b", "\u00ff", "\U0010ffff"}
	var recs []checkpoints.Record
	for _, k := range keys {
		recs = append(recs, checkpoints.Record{Key: k, State: checkpoints.Planned,
			LastError: "bad bytes \xff\x00 in a message", // free text: made storable
			Replicas:  []checkpoints.Replica{{Site: "virginia", SiteKey: k, State: checkpoints.Present}}})
	}
	if err := s.Save(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := s.Get(ctx, "a"); r.LastError != "bad bytes \uFFFD\uFFFD in a message" {
		t.Errorf("LastError with invalid bytes stored as %q", r.LastError)
	}
	for _, bad := range []string{"k\x00", "k\xff"} {
		err := s.Save(ctx, []checkpoints.Record{{Key: bad, State: checkpoints.Planned}})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("Save(key %q) = %v; want an error naming the key", bad, err)
		}
		if _, ok, err := s.Get(ctx, bad); ok || err != nil {
			t.Errorf("Get(%q) = %v, %v; want not found", bad, ok, err)
		}
	}
	for _, after := range []string{"a\x00", "a\xc3", "a\xc3\xa9\x00", "a\xff", "\xc3", "\x00", "\xf4\x8f\xbf\xbf\x00"} {
		var want []string
		for _, k := range keys {
			if k > after {
				want = append(want, k)
			}
		}
		var got []string
		if err := s.Records(ctx, checkpoints.Query{After: after}, func(r checkpoints.Record) error {
			got = append(got, r.Key)
			return nil
		}); err != nil {
			t.Fatalf("Records(After %q): %v", after, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Records(After %q) = %q, want %q", after, got, want)
		}
	}
}

// TestPostgresPasswordRedacted: no error from Open shows the DSN's password (I8).
func TestPostgresPasswordRedacted(t *testing.T) {
	const pw = "s3cr3t-pw"
	dsns := []string{
		"postgres://ferry:" + pw + "@127.0.0.1:notaport/test",              // does not parse
		"postgresql://ferry:" + pw + "@127.0.0.1:1/test?sslmode=disable",   // nothing listens
		"postgres://ferry@127.0.0.1:1/test?sslmode=disable&password=" + pw, // password parameter
		"postgres://ferry:" + pw + "@db.example:5432/ferry?connect_timeout=5",
	}
	roOnly := "" // a DSN to open read-only only
	if storetest.PostgresProbe() == nil {
		// The live server, with a password (trust auth ignores it): a missing
		// database, and a read-only open of a missing schema.
		u, err := url.Parse(storetest.PostgresDSN())
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), pw)
		live := u.String()
		u.Path = "/ferry_no_such_db"
		dsns = append(dsns, u.String())
		roOnly = withParam(t, live, "schema", "ferry_no_such_schema")

		// A store that opens names its DSN without the password too.
		s, err := checkpoints.Open(context.Background(), withParam(t, live, "schema", pgSchema(t)), checkpoints.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if d := s.(*checkpoints.Postgres).DSN(); strings.Contains(d, pw) || !strings.Contains(d, ":xxxxx@") {
			t.Errorf("DSN() = %q; want it without the password", d)
		}
		closeStore(t, s)
	}
	for _, dsn := range append(dsns, roOnly) {
		for _, opts := range []checkpoints.Options{{}, {ReadOnly: true}, {Scratch: true}} {
			if dsn == "" || (dsn == roOnly && !opts.ReadOnly) {
				continue
			}
			s, err := checkpoints.Open(context.Background(), dsn, opts)
			if err == nil {
				s.Close()
				t.Errorf("Open(%s, %+v) succeeded", dsn, opts)
				continue
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("Open(%+v): error %q shows the password", opts, err)
			}
			if !strings.Contains(err.Error(), "xxxxx") {
				t.Errorf("Open(%+v): error %q does not name the DSN (without its password)", opts, err)
			}
		}
	}
}

// TestPostgresLockTakeoverAcrossHandles: two stores on one schema (two processes):
// the lock is one row both see, and a takeover by one is seen by the other's Refresh.
// The stores keep the database's clock (no Options.Clock), as in production, so this
// test waits for the lease to run out for real: it is the suite's check that leases
// set and judged by the database's clock (pgNow) expire. The conformance suite moves
// a fake clock instead.
func TestPostgresLockTakeoverAcrossHandles(t *testing.T) {
	ctx := context.Background()
	schema := pgSchema(t)
	a := openPG(t, schema, checkpoints.Options{})
	defer closeStore(t, a)
	b := openPG(t, schema, checkpoints.Options{})
	defer closeStore(t, b)
	other := checkpoints.LockInfo{Host: "worker-1.invalid", PID: 7, Phase: "copy"}
	theirs, err := a.Lock(ctx, other, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(ctx, checkpoints.Self("copy"), time.Minute); !errors.Is(err, checkpoints.ErrLocked) {
		t.Fatalf("Lock from the second handle = %v; want ErrLocked", err)
	}
	time.Sleep(400 * time.Millisecond)
	mine, err := b.Lock(ctx, checkpoints.Self("copy"), time.Minute)
	if err != nil {
		t.Fatalf("Lock after the lease ran out: %v", err)
	}
	if err := theirs.Refresh(ctx); err == nil {
		t.Error("Refresh after a takeover from another handle succeeded")
	}
	if h, ok, err := a.LockHolder(ctx); err != nil || !ok || h.PID != os.Getpid() {
		t.Errorf("LockHolder from the first handle = %+v, %v, %v", h, ok, err)
	}
	if err := mine.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresConcurrentWriters: two handles (two processes) save overlapping batches
// in opposite key orders while a third reads: no deadlock reaches a caller, no reader
// sees a record with another write's replicas, every write lands.
func TestPostgresConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	schema := pgSchema(t)
	w1 := openPG(t, schema, checkpoints.Options{})
	defer closeStore(t, w1)
	w2 := openPG(t, schema, checkpoints.Options{})
	defer closeStore(t, w2)
	ro := openPG(t, schema, checkpoints.Options{ReadOnly: true})
	defer closeStore(t, ro)

	const rounds, shared = 20, 30
	var writers, readers sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 100)
	for wi, s := range []checkpoints.Store{w1, w2} {
		writers.Go(func() {
			for i := 1; i <= rounds; i++ {
				var batch []checkpoints.Record
				for j := range shared {
					batch = append(batch, rec(fmt.Sprintf("hot/%02d", j), i*2+wi))
				}
				for j := range 10 {
					batch = append(batch, rec(fmt.Sprintf("w%d/%04d-%02d", wi, i, j), i))
				}
				if wi == 1 {
					slices.Reverse(batch)
				}
				if err := s.Save(ctx, batch); err != nil {
					errs <- fmt.Errorf("writer %d: %w", wi, err)
					return
				}
			}
		})
	}
	readers.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := ro.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error { return consistent(r) }); err != nil {
				errs <- fmt.Errorf("Records: %w", err)
				return
			}
			if r, ok, err := ro.Get(ctx, "hot/07"); err != nil || (ok && consistent(r) != nil) {
				errs <- fmt.Errorf("Get: %v %v", err, consistent(r))
				return
			}
		}
	})
	writers.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st, err := ro.Stats(ctx, time.Now())
	if want := int64(shared + 2*rounds*10); err != nil || st.Records[checkpoints.Copied].N != want {
		t.Errorf("after the writers: %d records, %v; want %d", st.Records[checkpoints.Copied].N, err, want)
	}
	for j := range shared {
		r, _, err := ro.Get(ctx, fmt.Sprintf("hot/%02d", j))
		if err != nil || (r.Attempts != 2*rounds && r.Attempts != 2*rounds+1) || consistent(r) != nil {
			t.Errorf("hot record %d after the writers: attempts %d, %v, %v", j, r.Attempts, err, consistent(r))
		}
	}
}

// ---- benchmarks (the SQLite ones, against PostgreSQL) ----

func benchPG(b *testing.B) *checkpoints.Postgres {
	b.Helper()
	s := openPG(b, pgSchema(b), checkpoints.Options{})
	b.Cleanup(func() { s.Close() })
	return s
}

// The same benchmarks as SQLite's, on PostgreSQL.
func BenchmarkPostgresSave(b *testing.B)        { benchSave(b, benchPG(b)) }
func BenchmarkPostgresRecordsScan(b *testing.B) { benchRecordsScan(b, benchPG(b)) }
func BenchmarkPostgresSaveUpdate(b *testing.B)  { benchSaveUpdate(b, benchPG(b)) }
func BenchmarkPostgresStats(b *testing.B)       { benchStats(b, benchPG(b)) }
func BenchmarkPostgresListedReconcileScan(b *testing.B) {
	benchListedReconcileScan(b, benchPG(b))
}
