package checkpoints

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ferrymigrate/ferry/checkpoints/clock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the shared checkpoint store: the same tables and the same semantics as
// the SQLite store, in one schema of a PostgreSQL database, so that ferry processes on
// many machines can work one migration.
//
// The schema is named by the DSN: a `schema` parameter (ferry's own, not sent to the
// server), else the first entry of `search_path`, else "ferry". Every statement names
// its tables with that schema, whatever the session's search_path.
//
// Keys (and every other string) are text with COLLATE "C" in a UTF8 database: the
// order is the order of the UTF-8 bytes, exactly as in SQLite and Go. Times are bigint
// nanoseconds since the Unix epoch, 0 when unset. Sessions run with
// synchronous_commit=on, so a committed Save is durable (I4).
type Postgres struct {
	pool    *pgxpool.Pool
	schema  string // where the tables are (the scratch copy's schema in a dry run)
	qual    string // schema as a quoted identifier
	real    string // the schema named by the DSN
	dsn     string // the DSN without its password, for messages
	secrets []string
	scratch bool // schema is a dry run's copy: dropped on Close
	// pointMode runs lookups of one row by primary key (prepared, plan cached).
	pointMode pgx.QueryExecMode
	steps     []pgStep // the upgrades (pgSteps)
	// clock, when set (Options.Clock: tests), stands in for the database's clock in
	// every lease the store sets or judges; nil: the database's clock (pgNow).
	clock clock.Clock
	// legacy is set by a read-only open of a state older than the one-row layout
	// (pgOneRowVersion): its reads see the records through pgLegacyRecords, until
	// a writer's upgrade drops the tables that view reads (readUpgraded).
	legacy atomic.Bool
}

var _ Store = (*Postgres)(nil)

// pgDefaultSchema is the schema used when the DSN names none.
const pgDefaultSchema = "ferry"

// pgScratchPrefix starts the name of a dry run's scratch schema.
const pgScratchPrefix = "ferry_dryrun_"

const (
	pgRecCols    = "key, user_name, size, state, sha256, crc32c, source, target_key, target_etag, target_version, copied_at, verified_at, attempts, last_error, conflict, updated_at"
	pgRepCols    = "key, site, site_key, primary_site, size, etag, version, mtime, sha256, state, stage, mode, handle, intent_at, deleted_at, purged_at, confirmed_absent, last_error"
	pgListCols   = "key, site, site_key, size, etag, version, mtime, sha256"
	pgStageCols  = "name, ord, mode, digest, state, started_at, finished_at, purged_at, restored_at, deleted, retained"
	pgLockCols   = "id, host, pid, start, phase, acquired, lease_until, token"
	pgWorkerCols = workerCols
	pgClaimCols  = "scope, round, seq, site, lo, hi, state, worker, epoch, lease_until, resume_after, done_at"
)

// pgSchemaSQL creates the tables; "@." stands for the quoted schema and a dot. Text
// columns use the "C" collation: byte order, as SQLite compares keys, and the fastest.
const pgSchemaSQL = `
CREATE TABLE IF NOT EXISTS @.meta(
	k text COLLATE "C" PRIMARY KEY,
	v text COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS @.records(
	key text COLLATE "C" PRIMARY KEY,
	user_name text COLLATE "C" NOT NULL DEFAULT '',
	size bigint NOT NULL DEFAULT 0,
	state text COLLATE "C" NOT NULL,
	sha256 text COLLATE "C" NOT NULL DEFAULT '',
	crc32c text COLLATE "C" NOT NULL DEFAULT '',
	source text COLLATE "C" NOT NULL DEFAULT '',
	target_key text COLLATE "C" NOT NULL DEFAULT '',
	target_etag text COLLATE "C" NOT NULL DEFAULT '',
	target_version text COLLATE "C" NOT NULL DEFAULT '',
	copied_at bigint NOT NULL DEFAULT 0,
	verified_at bigint NOT NULL DEFAULT 0,
	attempts bigint NOT NULL DEFAULT 0,
	last_error text COLLATE "C" NOT NULL DEFAULT '',
	conflict text COLLATE "C" NOT NULL DEFAULT '',
	updated_at bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS records_state ON @.records(state, key);
CREATE INDEX IF NOT EXISTS records_user ON @.records(user_name, key);
CREATE TABLE IF NOT EXISTS @.replicas(
	key text COLLATE "C" NOT NULL,
	site text COLLATE "C" NOT NULL,
	site_key text COLLATE "C" NOT NULL,
	primary_site boolean NOT NULL DEFAULT false,
	size bigint NOT NULL DEFAULT 0,
	etag text COLLATE "C" NOT NULL DEFAULT '',
	version text COLLATE "C" NOT NULL DEFAULT '',
	mtime bigint NOT NULL DEFAULT 0,
	sha256 text COLLATE "C" NOT NULL DEFAULT '',
	state text COLLATE "C" NOT NULL,
	stage text COLLATE "C" NOT NULL DEFAULT '',
	mode text COLLATE "C" NOT NULL DEFAULT '',
	handle text COLLATE "C" NOT NULL DEFAULT '',
	intent_at bigint NOT NULL DEFAULT 0,
	deleted_at bigint NOT NULL DEFAULT 0,
	purged_at bigint NOT NULL DEFAULT 0,
	confirmed_absent boolean NOT NULL DEFAULT false,
	last_error text COLLATE "C" NOT NULL DEFAULT '',
	PRIMARY KEY(key, site)
);
CREATE INDEX IF NOT EXISTS replicas_stage ON @.replicas(stage, state, key);
CREATE INDEX IF NOT EXISTS replicas_site ON @.replicas(site, state);
CREATE TABLE IF NOT EXISTS @.listing(
	key text COLLATE "C" NOT NULL,
	site text COLLATE "C" NOT NULL,
	site_key text COLLATE "C" NOT NULL,
	size bigint NOT NULL DEFAULT 0,
	etag text COLLATE "C" NOT NULL DEFAULT '',
	version text COLLATE "C" NOT NULL DEFAULT '',
	mtime bigint NOT NULL DEFAULT 0,
	sha256 text COLLATE "C" NOT NULL DEFAULT '',
	PRIMARY KEY(key, site)
);
CREATE TABLE IF NOT EXISTS @.stages(
	name text COLLATE "C" PRIMARY KEY,
	ord bigint NOT NULL,
	mode text COLLATE "C" NOT NULL DEFAULT '',
	digest text COLLATE "C" NOT NULL DEFAULT '',
	state text COLLATE "C" NOT NULL DEFAULT 'pending',
	started_at bigint NOT NULL DEFAULT 0,
	finished_at bigint NOT NULL DEFAULT 0,
	purged_at bigint NOT NULL DEFAULT 0,
	restored_at bigint NOT NULL DEFAULT 0,
	deleted bigint NOT NULL DEFAULT 0,
	retained bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS @.lock(
	id integer PRIMARY KEY CHECK (id = 1),
	host text COLLATE "C" NOT NULL,
	pid bigint NOT NULL,
	start bigint NOT NULL,
	phase text COLLATE "C" NOT NULL,
	acquired bigint NOT NULL,
	lease_until bigint NOT NULL,
	token text COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS @.workers(
	id text COLLATE "C" PRIMARY KEY,
	host text COLLATE "C" NOT NULL,
	pid bigint NOT NULL,
	start bigint NOT NULL,
	phase text COLLATE "C" NOT NULL,
	joined bigint NOT NULL,
	heartbeat bigint NOT NULL,
	lease_until bigint NOT NULL,
	left_at bigint NOT NULL DEFAULT 0,
	ranges bigint NOT NULL DEFAULT 0,
	records bigint NOT NULL DEFAULT 0,
	bytes bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS @.claims(
	scope text COLLATE "C" NOT NULL,
	round bigint NOT NULL,
	seq bigint NOT NULL,
	site text COLLATE "C" NOT NULL DEFAULT '',
	lo text COLLATE "C" NOT NULL,
	hi text COLLATE "C" NOT NULL,
	state text COLLATE "C" NOT NULL DEFAULT 'open',
	worker text COLLATE "C" NOT NULL DEFAULT '',
	epoch bigint NOT NULL DEFAULT 0,
	lease_until bigint NOT NULL DEFAULT 0,
	resume_after text COLLATE "C" NOT NULL DEFAULT '',
	done_at bigint NOT NULL DEFAULT 0,
	PRIMARY KEY(scope, round, seq)
);
CREATE INDEX IF NOT EXISTS claims_worker ON @.claims(worker, state);
CREATE TABLE IF NOT EXISTS @.journal(
	stream text COLLATE "C" NOT NULL,
	first_seq bigint NOT NULL,
	last_seq bigint NOT NULL,
	lines text COLLATE "C" NOT NULL,
	PRIMARY KEY(stream, first_seq)
);
`

// pgNow is the database's clock in nanoseconds (microsecond resolution). Leases are
// set and judged by it, so that machines whose clocks disagree still agree on when a
// lease ends.
const pgNow = `((extract(epoch FROM clock_timestamp()) * 1000000)::bigint * 1000)`

// nowAt is the time leases are set and judged by in a statement whose parameter $n
// is s.clockArg(): the store's clock when one was set (Options.Clock), else the
// database's (pgNow), as without one.
func nowAt(n int) string { return fmt.Sprintf("COALESCE($%d::int8, %s)", n, pgNow) }

// clockArg is the parameter of nowAt: the store's clock in nanoseconds, or NULL for
// the database's clock.
func (s *Postgres) clockArg() any {
	if s.clock == nil {
		return nil
	}
	return s.clock.Now().UnixNano()
}

// OpenPostgres opens (creating its tables if needed) the store in the PostgreSQL
// database named by dsn, a postgres:// or postgresql:// URL.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (*Postgres, error) {
	return openPostgres(ctx, dsn, opts, pgSteps)
}

// openPostgres opens the store with the given upgrade steps (tests add their own).
func openPostgres(ctx context.Context, dsn string, opts Options, steps []pgStep) (*Postgres, error) {
	secrets := dsnSecrets(dsn)
	shown := scrubString(redactDSN(dsn), secrets)
	fail := func(err error) error {
		return scrubError(fmt.Errorf("state %s: %w", shown, err), secrets)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fail(err)
	}
	if pw := cfg.ConnConfig.Password; pw != "" && !slices.Contains(secrets, pw) {
		secrets = append(secrets, pw) // from PGPASSWORD or a passfile
	}
	rp := cfg.ConnConfig.RuntimeParams
	schema, err := pgSchemaName(rp)
	if err != nil {
		return nil, fail(err)
	}
	delete(rp, "schema") // ferry's parameter, not the server's
	// Durable commits (I4), whatever the DSN or the role's defaults say; remote_apply
	// is stronger still and is kept.
	if rp["synchronous_commit"] != "remote_apply" {
		rp["synchronous_commit"] = "on"
	}
	if opts.ReadOnly && !opts.Scratch {
		rp["default_transaction_read_only"] = "on"
	}
	// A process frozen inside a transaction (SIGSTOP, a paused VM, a debugger) keeps
	// its row locks, and workers claim with SKIP LOCKED: a range it holds could never
	// be taken over, and every other worker would wait for it. The server ends such a
	// session after this long idle in a transaction (ferry's transactions wait on
	// nothing but the database), and writeTx runs the transaction again.
	if rp["idle_in_transaction_session_timeout"] == "" {
		rp["idle_in_transaction_session_timeout"] = idleInTxTimeout
	}
	// ferry's statements are short, or scans whose cost PostgreSQL overestimates
	// (a jsonb array's elements are guessed at 100 a row): JIT compiling them costs
	// more than it saves (140 ms of a 100,000-record Stats that then takes 180 ms).
	// (The parameter exists from PostgreSQL 11 on: older servers refuse the session.)
	if rp["jit"] == "" {
		rp["jit"] = "off"
	}
	if rp["application_name"] == "" {
		rp["application_name"] = "ferry"
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 15 * time.Second
	}
	// The tables grow from nothing to billions of rows during a migration: a generic
	// plan made while they were small (a prepared statement's, after five runs) can
	// scan a whole table for a batch of keys. Statements are planned for their
	// arguments each time (unnamed statements, descriptions cached: still one round
	// trip), except single-row lookups by primary key, whose plan cannot go wrong.
	pointMode := cfg.ConnConfig.DefaultQueryExecMode
	if pointMode == pgx.QueryExecModeCacheStatement { // pgx's default: the DSN chose none
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fail(err)
	}
	s := &Postgres{pool: pool, schema: schema, real: schema, dsn: shown, secrets: secrets,
		pointMode: pointMode, steps: steps, clock: opts.Clock}
	s.qual = pgx.Identifier{schema}.Sanitize()
	if err := s.init(ctx, opts); err != nil {
		pool.Close()
		var ne *NewerStateError
		var oe *OlderStateError
		if errors.As(err, &ne) || errors.As(err, &oe) {
			return nil, err // names the state already
		}
		return nil, fail(err)
	}
	return s, nil
}

// pgSchemaName picks the schema from the DSN's parameters.
func pgSchemaName(rp map[string]string) (string, error) {
	name := rp["schema"]
	if name == "" {
		// search_path: the first entry other than "$user", as the server reads it
		// (unquoted names fold to lower case).
		for _, e := range strings.Split(rp["search_path"], ",") {
			e = strings.TrimSpace(e)
			if len(e) >= 2 && e[0] == '"' && e[len(e)-1] == '"' {
				e = strings.ReplaceAll(e[1:len(e)-1], `""`, `"`)
			} else {
				e = strings.ToLower(e)
			}
			if e != "" && e != "$user" {
				name = e
				break
			}
		}
	}
	if name == "" {
		name = pgDefaultSchema
	}
	if len(name) > 63 || strings.IndexByte(name, 0) >= 0 || !utf8.ValidString(name) {
		return "", fmt.Errorf("schema name %q: at most 63 bytes of UTF-8 text", name)
	}
	return name, nil
}

func (s *Postgres) init(ctx context.Context, opts Options) error {
	var enc, sync string
	if err := s.pool.QueryRow(ctx, "SELECT current_setting('server_encoding'), current_setting('synchronous_commit')").Scan(&enc, &sync); err != nil {
		return err
	}
	// Keys are compared as text in the "C" collation: that is byte order of the
	// database's encoding, which is Go's (and SQLite's) order only for UTF-8.
	if enc != "UTF8" {
		return fmt.Errorf("the database's encoding is %s; ferry needs a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')", enc)
	}
	if sync != "on" && sync != "remote_apply" {
		return fmt.Errorf("synchronous_commit is %q after setting it on: commits would not be durable", sync)
	}
	have, err := s.tablesIn(ctx, s.real)
	if err != nil {
		return err
	}
	if opts.Scratch {
		return s.makeScratch(ctx, have)
	}
	latest := len(s.steps)
	v, err := pgVersion(ctx, s.pool, s.real)
	if err != nil {
		return err
	}
	if v > latest {
		// Before the tables: a newer layout may not have this ferry's tables.
		return s.newerError(v, latest)
	}
	if opts.ReadOnly && !hasTables(have, max(v, 1)) {
		return fmt.Errorf("schema %q: %w", s.real, errNoState)
	}
	switch {
	case v == latest && hasTables(have, v):
		return nil
	case opts.ReadOnly:
		// A read-only open may not upgrade: it reads the older layout as the
		// upgrade would convert it (every older version has version 1's tables).
		s.legacy.Store(v < pgOneRowVersion && latest >= pgOneRowVersion)
		return nil
	}
	return s.upgrade(ctx)
}

func (s *Postgres) stateName() string { return fmt.Sprintf("%s (schema %q)", s.dsn, s.real) }

func (s *Postgres) newerError(v, latest int) error {
	return &NewerStateError{State: s.stateName(), Version: v, Supported: latest}
}

// pgStep takes a state from one version to the next inside the upgrade's
// transaction; sql qualifies "@." names with the schema being upgraded.
type pgStep func(ctx context.Context, tx pgx.Tx, sql func(string) string) error

// pgSteps are the upgrades: step i takes version i to version i+1, and the state is
// at version len(pgSteps) after them (SchemaVersion; a test checks).
var pgSteps = []pgStep{
	// 0 -> 1: version 1's tables, created or completed (see SchemaVersion).
	func(ctx context.Context, tx pgx.Tx, sql func(string) string) error {
		_, err := tx.Exec(ctx, sql(pgSchemaSQL))
		return err
	},
	// 1 -> 2: nothing. Version 2 adds SQLite's tallies (see SchemaVersion); a
	// PostgreSQL state counts with queries, so concurrent workers do not all update
	// the same counter rows.
	func(context.Context, pgx.Tx, func(string) string) error { return nil },
	// 2 -> 3: nothing. Version 3 puts SQLite's replicas inside their record's row.
	func(context.Context, pgx.Tx, func(string) string) error { return nil },
	// 3 -> 4: the replicas move into their record's row (postgres_replicas.go).
	pgToV4,
}

// pgVersionSQL creates the table that holds a schema's layout version.
const pgVersionSQL = `CREATE TABLE IF NOT EXISTS @.schema_version(
	id integer PRIMARY KEY CHECK (id = 1),
	version integer NOT NULL
)`

type pgQueryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgVersion reads the layout version of schema: 0 when it has no schema_version
// table (or no row in it). Whether the table exists is read from pg_class, in the
// statement's snapshot: to_regclass would ask the session's catalog cache, which
// may still hold "no such schema" from before another opener created it (the
// cache hears of others' commits only when the session next takes a lock on a
// table), and an opener waiting for the upgrade lock would run the steps again.
func pgVersion(ctx context.Context, q pgQueryer, schema string) (int, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = 'schema_version' AND c.relkind = 'r')`, schema).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var v int
	err := q.QueryRow(ctx, "SELECT COALESCE((SELECT version FROM "+pgx.Identifier{schema}.Sanitize()+".schema_version WHERE id = 1), 0)").Scan(&v)
	return v, err
}

// upgradeTo runs the steps from version from to version to on the schema sql
// qualifies, then records version to, in tx.
func upgradeTo(ctx context.Context, tx pgx.Tx, steps []pgStep, sql func(string) string, from, to int) error {
	for i := from; i < to; i++ {
		if err := steps[i](ctx, tx, sql); err != nil {
			return fmt.Errorf("upgrading the state from version %d to %d (nothing was changed): %w", i, i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, sql(pgVersionSQL)); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, sql("INSERT INTO @.schema_version(id, version) VALUES(1, $1) ON CONFLICT (id) DO UPDATE SET version = excluded.version"), to)
	return err
}

// upgrade creates the schema, or upgrades it to the latest version, in one
// transaction: the steps and the new version commit together or not at all.
// Concurrent openers are serialised by an advisory lock (CREATE ... IF NOT EXISTS
// races otherwise); the version is read again under it.
func (s *Postgres) upgrade(ctx context.Context) error {
	latest := len(s.steps)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", pgLockKey(s.schema)); err != nil {
			return err
		}
		v, err := pgVersion(ctx, tx, s.schema)
		if err != nil {
			return err
		}
		if v > latest {
			return s.newerError(v, latest)
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+s.qual); err != nil {
			return err
		}
		return upgradeTo(ctx, tx, s.steps, s.sql, v, latest)
	})
	var ne *NewerStateError
	if err != nil && !errors.As(err, &ne) {
		return fmt.Errorf("schema %q: creating the tables: %w", s.schema, err)
	}
	return err
}

var errNoState = errors.New("no checkpoint state yet (run ferry plan first)")

// tablesIn reports which of the store's tables exist in schema.
func (s *Postgres) tablesIn(ctx context.Context, schema string) (map[string]bool, error) {
	names := pgTableNames()
	rows, err := s.pool.Query(ctx, "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = ANY($2::text[])", schema, names)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	have := map[string]bool{}
	for _, n := range found {
		have[n] = true
	}
	return have, err
}

func pgLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("ferry checkpoints schema\x00" + schema))
	return int64(h.Sum64())
}

// makeScratch creates a dry run's schema holding a copy of the real schema's tables
// (read in one snapshot), and switches the store to it. The real schema is only read.
func (s *Postgres) makeScratch(ctx context.Context, have map[string]bool) error {
	name := pgScratchPrefix + newToken()
	scratch := pgx.Identifier{name}.Sanitize()
	host, _ := os.Hostname()
	comment := fmt.Sprintf("ferry dry run: a copy of schema %s by %s pid %d at %s; dropped when the dry run ends",
		s.real, host, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	latest := len(s.steps)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		// The copy is made in the real state's layout, then upgraded: an unversioned
		// state's tables are version 1's.
		v, err := pgVersion(ctx, tx, s.real)
		if err != nil {
			return err
		}
		if v > latest {
			return s.newerError(v, latest)
		}
		layout := max(v, 1)
		if _, err := tx.Exec(ctx, "CREATE SCHEMA "+scratch); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "COMMENT ON SCHEMA "+scratch+" IS "+pgQuoteLiteral(comment)); err != nil {
			return err
		}
		inScratch := func(q string) string { return strings.ReplaceAll(q, "@.", scratch+".") }
		if err := upgradeTo(ctx, tx, s.steps, inScratch, 0, layout); err != nil {
			return err
		}
		for _, t := range pgTablesAt(layout) {
			if !have[t.name] {
				continue
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s.%s(%s) SELECT %s FROM %s.%s",
				scratch, t.name, t.cols, t.cols, s.qual, t.name)); err != nil {
				return fmt.Errorf("copying %s: %w", t.name, err)
			}
		}
		return upgradeTo(ctx, tx, s.steps, inScratch, layout, latest)
	})
	var ne *NewerStateError
	if errors.As(err, &ne) {
		return err
	}
	if err != nil {
		return fmt.Errorf("schema %q: copying for a dry run: %w", s.real, err)
	}
	s.schema, s.qual, s.scratch = name, scratch, true
	// Fresh tables have no statistics; give the planner some.
	if _, err := s.pool.Exec(ctx, "ANALYZE "+scratch+".records, "+scratch+".listing"); err != nil {
		return s.dropScratch(ctx, err)
	}
	return nil
}

func (s *Postgres) dropScratch(ctx context.Context, cause error) error {
	_, err := s.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+s.qual+" CASCADE")
	if err != nil {
		err = fmt.Errorf("dropping the dry run's schema %q: %w", s.schema, err)
	}
	return errors.Join(cause, err)
}

func pgQuoteLiteral(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// Reopen reports whether a reader that polls the state (`ferry status --watch`)
// must open it again: a read-only open of an older layout reads its tables through
// pgLegacyRecords, which stop existing once a command that writes the state
// upgrades it; opened again, it reads the new layout.
func (s *Postgres) Reopen() bool { return s.legacy.Load() }

// readUpgraded runs read, a read of the records built with s.sql, and runs it once
// more if it failed because the store read an older layout through pgLegacyRecords
// and a writer has since upgraded the state (which dropped the tables the view
// reads): the store then reads the new layout. A read in progress when the upgrade
// commits fails so, however the reader timed its reopening.
func (s *Postgres) readUpgraded(ctx context.Context, read func() error) error {
	err := read()
	var pe *pgconn.PgError
	if !s.legacy.Load() || !errors.As(err, &pe) || pe.Code != "42P01" { // undefined_table
		return err
	}
	if v, verr := pgVersion(ctx, s.pool, s.real); verr != nil || v < pgOneRowVersion {
		return err
	}
	s.legacy.Store(false)
	return read()
}

// Schema is the schema the store's tables are in: the DSN's, or a dry run's copy.
func (s *Postgres) Schema() string { return s.schema }

// DSN is the store's DSN without its password, for messages.
func (s *Postgres) DSN() string { return s.dsn }

// Close closes the connections (and drops a dry run's scratch schema).
func (s *Postgres) Close() error {
	var err error
	if s.scratch {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = s.wrap("close", s.dropScratch(ctx, nil))
		cancel()
		s.scratch = false
	}
	s.pool.Close()
	return err
}

// sql qualifies the tables of q ("@.name") with the store's schema.
func (s *Postgres) sql(q string) string {
	if s.legacy.Load() {
		q = strings.ReplaceAll(q, "FROM @.records r ", "FROM "+pgLegacyRecords+" r ")
	}
	return strings.ReplaceAll(q, "@.", s.qual+".")
}

// ---- errors and secrets ----

func (s *Postgres) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return scrubError(fmt.Errorf("state: %s: %w", op, err), s.secrets)
}

// dsnSecrets returns the passwords a DSN carries (userinfo, password parameter).
func dsnSecrets(dsn string) []string {
	var out []string
	add := func(v string) {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if u, err := url.Parse(dsn); err == nil {
		if pw, ok := u.User.Password(); ok {
			add(pw)
			add(url.PathEscape(pw))
			add(url.QueryEscape(pw))
		}
		for _, pw := range u.Query()["password"] {
			add(pw)
			add(url.QueryEscape(pw))
		}
		return out
	}
	// A DSN url cannot parse may still hold a password: between ':' and '@' (as
	// redactDSN sees it), or as a parameter.
	at, scheme := strings.LastIndex(dsn, "@"), strings.Index(dsn, "://")
	if at > scheme && scheme >= 0 {
		if i := strings.Index(dsn[scheme+3:at], ":"); i >= 0 {
			add(dsn[scheme+3+i+1 : at])
		}
	}
	if i := strings.Index(dsn, "password="); i >= 0 {
		v := dsn[i+len("password="):]
		if j := strings.IndexAny(v, "& "); j >= 0 {
			v = v[:j]
		}
		add(v)
	}
	return out
}

func scrubString(msg string, secrets []string) string {
	for _, pw := range secrets {
		if len(pw) >= 3 { // shorter ones would mangle every message
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}

// scrubbedError is an error whose message had a password removed (I8).
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func scrubError(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if clean := scrubString(msg, secrets); clean != msg {
		return &scrubbedError{msg: clean, err: err}
	}
	return err
}

// ---- text PostgreSQL can hold ----

// pgText reports whether v can be stored in a text column: UTF-8 without NUL bytes.
// Every string the store keeps must be; Save and the other writes refuse others, and
// lookups by such a string find nothing (nothing stored can equal it).
func pgText(v string) bool { return strings.IndexByte(v, 0) < 0 && utf8.ValidString(v) }

// pgMessage makes free text (an error message) storable, replacing what is not.
func pgMessage(v string) string {
	if pgText(v) {
		return v
	}
	return strings.ReplaceAll(strings.ToValidUTF8(v, "\uFFFD"), "\x00", "\uFFFD")
}

// pgTextPrefix is the longest prefix of v that is storable text.
func pgTextPrefix(v string) string {
	for i, r := range v {
		if r == 0 || (r == utf8.RuneError && !strings.HasPrefix(v[i:], "\uFFFD")) {
			return v[:i]
		}
	}
	return v
}

func checkText(what string, fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if !pgText(fields[i+1]) {
			return fmt.Errorf("%s: %s %q is not UTF-8 text without NUL bytes; PostgreSQL cannot store it", what, fields[i], fields[i+1])
		}
	}
	return nil
}

func storableOnly[T ~string](in []T) []string {
	out := make([]string, 0, len(in))
	for _, v := range in {
		if pgText(string(v)) {
			out = append(out, string(v))
		}
	}
	return out
}

// ---- transactions ----

// readTx runs fn in a read-only REPEATABLE READ transaction: one snapshot. fn
// builds its statements with s.sql (readUpgraded).
func (s *Postgres) readTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.readUpgraded(ctx, func() error {
		return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
	})
}

// idleInTxTimeout is how long the server lets a ferry session sit idle inside a
// transaction before it ends it (unless the DSN sets it).
const idleInTxTimeout = "30s"

// writeTx runs fn in a read-write transaction, again when PostgreSQL reports a
// deadlock or serialization failure, or ended the session because it sat idle in
// the transaction (the process was frozen): none of those committed anything, and
// every write of the store is idempotent.
func (s *Postgres) writeTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, fn)
		var pe *pgconn.PgError
		if err == nil || attempt == 5 || !errors.As(err, &pe) || (pe.Code != "40P01" && pe.Code != "40001" && pe.Code != "25P03") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt*attempt) * 10 * time.Millisecond):
		}
	}
}

// ---- meta ----

func (s *Postgres) Meta(ctx context.Context, key string) (string, bool, error) {
	if !pgText(key) {
		return "", false, nil
	}
	var v string
	err := s.pool.QueryRow(ctx, s.sql("SELECT v FROM @.meta WHERE k = $1"), s.pointMode, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return v, err == nil, s.wrap("meta", err)
}

func (s *Postgres) SetMeta(ctx context.Context, key, value string) error {
	if err := checkText("meta", "key", key, "value", value); err != nil {
		return s.wrap("meta", err)
	}
	_, err := s.pool.Exec(ctx, s.sql("INSERT INTO @.meta(k, v) VALUES($1, $2) ON CONFLICT(k) DO UPDATE SET v = excluded.v"), key, value)
	return s.wrap("meta", err)
}

// ---- lock ----

type pgLock struct {
	s     *Postgres
	info  LockInfo
	lease time.Duration
}

var errLockRace = errors.New("lock row appeared concurrently")

// Lock takes the migration lock: the lock table's one row, read with SELECT ... FOR
// UPDATE so that contenders queue on it, replaced when its holder is gone
// (HolderAlive, judged by the database's clock, or Options.Clock).
func (s *Postgres) Lock(ctx context.Context, holder LockInfo, lease time.Duration) (Lock, error) {
	if err := checkText("lock", "host", holder.Host, "phase", holder.Phase); err != nil {
		return nil, s.wrap("lock", err)
	}
	for range 20 {
		h := holder
		h.Token = newToken()
		err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey()); err != nil {
				return err
			}
			var now int64
			cur, ok, err := scanPGLock(tx.QueryRow(ctx, s.sql("SELECT host, pid, start, phase, acquired, lease_until, token, "+nowAt(1)+" FROM @.lock WHERE id = 1 FOR UPDATE"), s.clockArg()), &now)
			if err != nil {
				return err
			}
			ws, err := s.activeWorkers(ctx, tx)
			if err != nil {
				return err
			}
			if err := excluded(cur, ok, ws, fromNanos(now), ""); err != nil {
				return err
			}
			var acq, till int64
			if ok {
				err = tx.QueryRow(ctx, s.sql(`UPDATE @.lock SET host = $1, pid = $2, start = $3, phase = $4,
					acquired = n.now, lease_until = n.now + $5, token = $6
					FROM (SELECT `+nowAt(7)+` AS now) n WHERE id = 1 RETURNING acquired, lease_until`),
					h.Host, h.PID, h.Start, h.Phase, int64(lease), h.Token, s.clockArg()).Scan(&acq, &till)
			} else {
				// No row: insert one. A contender inserting at the same time makes this
				// wait for its commit, then do nothing: start again and find its row.
				err = tx.QueryRow(ctx, s.sql(`INSERT INTO @.lock(`+pgLockCols+`)
					SELECT 1, $1, $2, $3, $4, n.now, n.now + $5, $6 FROM (SELECT `+nowAt(7)+` AS now) n
					ON CONFLICT (id) DO NOTHING RETURNING acquired, lease_until`),
					h.Host, h.PID, h.Start, h.Phase, int64(lease), h.Token, s.clockArg()).Scan(&acq, &till)
				if errors.Is(err, pgx.ErrNoRows) {
					return errLockRace
				}
			}
			h.Acquired, h.LeaseTill = fromNanos(acq), fromNanos(till)
			return err
		})
		var le *LockedError
		switch {
		case err == nil:
			return &pgLock{s: s, info: h, lease: lease}, nil
		case errors.As(err, &le):
			return nil, le
		case errors.Is(err, errLockRace):
			continue
		default:
			return nil, s.wrap("lock", err)
		}
	}
	return nil, s.wrap("lock", errors.New("the lock row keeps changing under contention"))
}

func scanPGLock(row pgx.Row, extra ...any) (LockInfo, bool, error) {
	var l LockInfo
	var acq, lease int64
	err := row.Scan(append([]any{&l.Host, &l.PID, &l.Start, &l.Phase, &acq, &lease, &l.Token}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, false, nil
	}
	if err != nil {
		return l, false, err
	}
	l.Acquired, l.LeaseTill = fromNanos(acq), fromNanos(lease)
	return l, true, nil
}

func (s *Postgres) LockHolder(ctx context.Context) (LockInfo, bool, error) {
	l, ok, err := scanPGLock(s.pool.QueryRow(ctx, s.sql("SELECT host, pid, start, phase, acquired, lease_until, token FROM @.lock WHERE id = 1"), s.pointMode))
	return l, ok, s.wrap("lock", err)
}

func (l *pgLock) Refresh(ctx context.Context) error {
	tag, err := l.s.pool.Exec(ctx, l.s.sql("UPDATE @.lock SET lease_until = "+nowAt(3)+" + $1 WHERE id = 1 AND token = $2"), int64(l.lease), l.info.Token, l.s.clockArg())
	if err != nil {
		return l.s.wrap("lock refresh", err)
	}
	if tag.RowsAffected() != 1 {
		return errors.New("lock refresh: the migration lock was taken over by another process")
	}
	return nil
}

func (l *pgLock) Release(ctx context.Context) error {
	_, err := l.s.pool.Exec(ctx, l.s.sql("DELETE FROM @.lock WHERE id = 1 AND token = $1"), l.info.Token)
	return l.s.wrap("lock release", err)
}

// ---- listing ----

func (s *Postgres) ResetListing(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, s.sql("DELETE FROM @.listing"))
	return s.wrap("listing", err)
}

func (s *Postgres) AddListed(ctx context.Context, objs []Listed) error {
	if len(objs) == 0 {
		return nil
	}
	q, args, err := s.listedInsert(objs)
	if err != nil {
		return s.wrap("listing", err)
	}
	err = s.writeTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, q, args...)
		return err
	})
	return s.wrap("listing", err)
}

// listedInsert is the statement that stages objs.
func (s *Postgres) listedInsert(objs []Listed) (string, []any, error) {
	// One row per (key, site), the last one staged, in key order (rows are locked in
	// a consistent order across concurrent writers).
	type ks struct{ key, site string }
	last := make(map[ks]int, len(objs))
	for i, o := range objs {
		if err := checkText("listing: "+strconv.Quote(o.Key), "key", o.Key, "site", o.Site, "site key", o.SiteKey,
			"etag", o.ETag, "version", o.Version, "sha256", o.SHA256); err != nil {
			return "", nil, err
		}
		last[ks{o.Key, o.Site}] = i
	}
	uniq := make([]*Listed, 0, len(last))
	for i := range objs {
		if last[ks{objs[i].Key, objs[i].Site}] == i {
			uniq = append(uniq, &objs[i])
		}
	}
	slices.SortFunc(uniq, func(a, b *Listed) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return strings.Compare(a.Site, b.Site)
	})
	n := len(uniq)
	keys, sites, siteKeys, etags, versions, shas := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	sizes, mtimes := make([]int64, n), make([]int64, n)
	for i, o := range uniq {
		keys[i], sites[i], siteKeys[i], sizes[i], etags[i], versions[i], mtimes[i], shas[i] = o.Key, o.Site, o.SiteKey, o.Size, o.ETag, o.Version, nanos(o.ModTime), o.SHA256
	}
	q := s.sql(`INSERT INTO @.listing(` + pgListCols + `)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::int8[], $8::text[])
		ON CONFLICT (key, site) DO UPDATE SET site_key = excluded.site_key, size = excluded.size, etag = excluded.etag,
		version = excluded.version, mtime = excluded.mtime, sha256 = excluded.sha256`)
	return q, []any{keys, sites, siteKeys, sizes, etags, versions, mtimes, shas}, nil
}

func (s *Postgres) ListedCount(ctx context.Context, site string) (int64, error) {
	if !pgText(site) {
		return 0, nil
	}
	var n int64
	err := s.pool.QueryRow(ctx, s.sql("SELECT count(*) FROM @.listing WHERE site = $1"), site).Scan(&n)
	return n, s.wrap("listing", err)
}

const pgListPage = 4096

func (s *Postgres) Listed(ctx context.Context, fn func(key string, objs []Listed) error) error {
	return keysetListed(ctx, pgKeyset, pgListPage, s.listedPage, fn)
}

func (s *Postgres) listedPage(ctx context.Context, query string, args []any) ([]Listed, error) {
	rows, err := s.pool.Query(ctx, s.sql(query), args...)
	if err != nil {
		return nil, s.wrap("listing", err)
	}
	var page []Listed
	var mt int64
	var o Listed
	_, err = pgx.ForEachRow(rows, []any{&o.Key, &o.Site, &o.SiteKey, &o.Size, &o.ETag, &o.Version, &mt, &o.SHA256}, func() error {
		o.ModTime = fromNanos(mt)
		page = append(page, o)
		return nil
	})
	return page, s.wrap("listing", err)
}

// Unlisted pages through the unlisted replicas by key; each page's records are read
// in the same snapshot as the page, and fn runs after that transaction ended.
func (s *Postgres) Unlisted(ctx context.Context, sites []string, fn func(Record, []string) error) error {
	return keysetUnlisted(ctx, pgKeyset, storableOnly(sites), pgListPage, s.view, fn)
}

// view runs f in one read-only, repeatable-read transaction: one snapshot.
func (s *Postgres) view(ctx context.Context, f func(pageReader) error) error {
	var ferr error
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		ferr = f(pgReader{s, tx})
		return ferr
	})
	if err != nil && err != ferr {
		return s.wrap("read", err)
	}
	return err
}

type pgReader struct {
	s  *Postgres
	tx pgx.Tx
}

func (r pgReader) keySites(ctx context.Context, query string, args []any) ([]keySite, error) {
	rows, err := r.tx.Query(ctx, r.s.sql(query), args...)
	if err != nil {
		return nil, r.s.wrap("unlisted", err)
	}
	var out []keySite
	var ks keySite
	_, err = pgx.ForEachRow(rows, []any{&ks.key, &ks.site}, func() error {
		out = append(out, ks)
		return nil
	})
	return out, r.s.wrap("unlisted", err)
}

func (r pgReader) records(ctx context.Context, query string, args []any) ([]Record, error) {
	recs, err := r.s.readRecords(ctx, r.tx, query, args)
	return recs, r.s.wrap("records", err)
}

// ---- records ----

// pgReadCols are the columns a read of records selects: pgRecCols and the replicas.
var pgReadCols = pgRecCols + ", replicas"

type pgRecScan struct {
	r          Record
	st         string
	cp, vf, up int64
	reps       []byte
}

func (x *pgRecScan) dest() []any {
	r := &x.r
	return []any{&r.Key, &r.User, &r.Size, &x.st, &r.SHA256, &r.CRC32C, &r.Source, &r.TargetKey, &r.TargetETag, &r.TargetVersion,
		&x.cp, &x.vf, &r.Attempts, &r.LastError, &r.Conflict, &x.up, &x.reps}
}

func (x *pgRecScan) record() (Record, error) {
	r := x.r
	r.State = RecordState(x.st)
	r.CopiedAt, r.VerifiedAt, r.UpdatedAt = fromNanos(x.cp), fromNanos(x.vf), fromNanos(x.up)
	var err error
	r.Replicas, err = pgReplicasFrom(r.Key, x.reps)
	return r, err
}

// readRecords runs a query for records (pgReadCols) in tx.
func (s *Postgres) readRecords(ctx context.Context, tx pgx.Tx, query string, args []any) ([]Record, error) {
	rows, err := tx.Query(ctx, s.sql(query), args...)
	if err != nil {
		return nil, err
	}
	var page []Record
	var rs pgRecScan
	_, err = pgx.ForEachRow(rows, rs.dest(), func() error {
		r, err := rs.record()
		page = append(page, r)
		return err
	})
	return page, err
}

// pgGetSQL reads one record with its replicas.
var pgGetSQL = "SELECT " + prefixed("r.", pgReadCols) + " FROM @.records r WHERE r.key = $1"

func (s *Postgres) Get(ctx context.Context, key string) (Record, bool, error) {
	if !pgText(key) {
		return Record{}, false, nil
	}
	var rs pgRecScan
	err := s.readUpgraded(ctx, func() error {
		return s.pool.QueryRow(ctx, s.sql(pgGetSQL), s.pointMode, key).Scan(rs.dest()...)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, s.wrap("get", err)
	}
	r, err := rs.record()
	if err != nil {
		return Record{}, false, s.wrap("get", err)
	}
	return r, true, nil
}

const pgRecPage = 1024

func (s *Postgres) Records(ctx context.Context, q Query, fn func(Record) error) error {
	// A filter value PostgreSQL cannot store matches nothing stored.
	states, repStates := storable(q.States), storable(q.ReplicaStates)
	if (len(q.States) > 0 && len(states) == 0) || (q.Stage != "" && len(q.ReplicaStates) > 0 && len(repStates) == 0) {
		return nil
	}
	if !pgText(q.User) || !pgText(q.Stage) {
		return nil
	}
	q.States, q.ReplicaStates = states, repStates
	// One read-only snapshot per page: each record with its replicas as one commit
	// left them. The transaction ends before fn runs (fn may write).
	read := func(ctx context.Context, query string, args []any) ([]Record, error) {
		var page []Record
		err := s.readTx(ctx, func(tx pgx.Tx) error {
			var err error
			page, err = s.readRecords(ctx, tx, query, args)
			return err
		})
		return page, s.wrap("records", err)
	}
	return keysetRecords(ctx, pgKeyset, q, pgRecPage, read, fn)
}

// storable is the values of in that PostgreSQL can store (see pgText).
func storable[T ~string](in []T) []T {
	var out []T
	for _, v := range in {
		if pgText(string(v)) {
			out = append(out, v)
		}
	}
	return out
}

// pgRecColumns holds records column by column, for one statement over arrays.
type pgRecColumns struct {
	key, user, state, sha, crc, source, tkey, tetag, tver, lastErr, conflict, replicas []string
	size, copied, verified, attempts                                                   []int64
}

func (c *pgRecColumns) add(r *Record) error {
	if err := checkText("record "+strconv.Quote(r.Key), "key", r.Key, "user", r.User, "state", string(r.State), "sha256", r.SHA256,
		"crc32c", r.CRC32C, "source", r.Source, "target key", r.TargetKey, "target etag", r.TargetETag, "target version", r.TargetVersion); err != nil {
		return err
	}
	reps, err := pgReplicasJSON(r)
	if err != nil {
		return err
	}
	c.key, c.user, c.size, c.state = append(c.key, r.Key), append(c.user, r.User), append(c.size, r.Size), append(c.state, string(r.State))
	c.sha, c.crc, c.source = append(c.sha, r.SHA256), append(c.crc, r.CRC32C), append(c.source, r.Source)
	c.tkey, c.tetag, c.tver = append(c.tkey, r.TargetKey), append(c.tetag, r.TargetETag), append(c.tver, r.TargetVersion)
	c.copied, c.verified, c.attempts = append(c.copied, nanos(r.CopiedAt)), append(c.verified, nanos(r.VerifiedAt)), append(c.attempts, int64(r.Attempts))
	c.lastErr, c.conflict = append(c.lastErr, pgMessage(r.LastError)), append(c.conflict, pgMessage(r.Conflict))
	c.replicas = append(c.replicas, reps)
	return nil
}

// args are in pgSaveSQL's order, without updated_at.
func (c *pgRecColumns) args() []any {
	return []any{c.key, c.user, c.size, c.state, c.sha, c.crc, c.source, c.tkey, c.tetag, c.tver, c.copied, c.verified, c.attempts,
		c.lastErr, c.conflict, c.replicas}
}

// pgSaveSQL upserts records from arrays, one row per record with its replicas, and
// changes only a stored record that differs: a record saved unchanged keeps its row
// (and its updated_at), and PostgreSQL writes nothing for it.
var pgSaveSQL = func() string {
	cols := strings.Split(pgRecCols, ", ")
	cols = append(cols[:len(cols)-1], "replicas") // updated_at is the statement's
	sel := prefixed("u.", strings.Join(cols, ", ")) + "::jsonb"
	var set, stored, saved []string
	for _, c := range cols[1:] {
		set = append(set, c+" = excluded."+c)
		stored, saved = append(stored, "r."+c), append(saved, "excluded."+c)
	}
	return `INSERT INTO @.records AS r(` + strings.Join(cols, ", ") + `, updated_at)
		SELECT ` + sel + `, $17::int8
		FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
			$10::text[], $11::int8[], $12::int8[], $13::int8[], $14::text[], $15::text[], $16::text[]) AS u(` + strings.Join(cols, ", ") + `)
		ON CONFLICT (key) DO UPDATE SET ` + strings.Join(set, ", ") + `, updated_at = excluded.updated_at
		WHERE (` + strings.Join(stored, ", ") + `) IS DISTINCT FROM (` + strings.Join(saved, ", ") + `)`
}()

// Save upserts records with their replica sets, one statement over arrays in one
// transaction. Commit waits for the WAL flush (synchronous_commit).
func (s *Postgres) Save(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := s.queueSave(b, recs); err != nil {
		return s.wrap("save", err)
	}
	err := s.writeTx(ctx, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
	return s.wrap("save", err)
}

// queueSave queues the statement that upserts recs with their replicas onto b.
func (s *Postgres) queueSave(b *pgx.Batch, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	// The last write of a key wins.
	last := make(map[string]int, len(recs))
	for i := range recs {
		last[recs[i].Key] = i
	}
	uniq := make([]*Record, 0, len(last))
	for i := range recs {
		if last[recs[i].Key] == i {
			uniq = append(uniq, &recs[i])
		}
	}
	// Key order: concurrent writers lock rows in the same order.
	slices.SortFunc(uniq, func(a, b *Record) int { return strings.Compare(a.Key, b.Key) })
	var rc pgRecColumns
	for _, r := range uniq {
		if err := rc.add(r); err != nil {
			return err
		}
	}
	b.Queue(s.sql(pgSaveSQL), append(rc.args(), time.Now().UnixNano())...)
	return nil
}

// ---- stages ----

func (s *Postgres) Stages(ctx context.Context) ([]StageState, error) {
	rows, err := s.pool.Query(ctx, s.sql("SELECT "+pgStageCols+" FROM @.stages ORDER BY ord, name"))
	if err != nil {
		return nil, s.wrap("stages", err)
	}
	var out []StageState
	var st StageState
	var a, b, c, d int64
	_, err = pgx.ForEachRow(rows, []any{&st.Name, &st.Ord, &st.Mode, &st.Digest, &st.State, &a, &b, &c, &d, &st.Deleted, &st.Retained}, func() error {
		st.StartedAt, st.FinishedAt, st.PurgedAt, st.RestoredAt = fromNanos(a), fromNanos(b), fromNanos(c), fromNanos(d)
		out = append(out, st)
		return nil
	})
	return out, s.wrap("stages", err)
}

func (s *Postgres) SaveStage(ctx context.Context, st StageState) error {
	if err := checkText("stage", "name", st.Name, "mode", st.Mode, "digest", st.Digest, "state", st.State); err != nil {
		return s.wrap("stages", err)
	}
	_, err := s.pool.Exec(ctx, s.sql(`INSERT INTO @.stages(`+pgStageCols+`) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (name) DO UPDATE SET ord = excluded.ord, mode = excluded.mode, digest = excluded.digest, state = excluded.state,
		started_at = excluded.started_at, finished_at = excluded.finished_at, purged_at = excluded.purged_at,
		restored_at = excluded.restored_at, deleted = excluded.deleted, retained = excluded.retained`),
		st.Name, st.Ord, st.Mode, st.Digest, st.State, nanos(st.StartedAt), nanos(st.FinishedAt), nanos(st.PurgedAt), nanos(st.RestoredAt),
		st.Deleted, st.Retained)
	return s.wrap("stages", err)
}

// ---- stats ----

// Stats reads every count in one snapshot, in one round trip.
func (s *Postgres) Stats(ctx context.Context, now time.Time) (Stats, error) {
	st := newStats()
	since := now.Add(-RecentWindow).UnixNano()
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		// The records by state, and the recent copies and verifications, in one pass.
		b.Queue(s.sql(`SELECT r.state, count(*), COALESCE(sum(r.size), 0)::bigint,
				count(*) FILTER (WHERE r.copied_at > $1), count(*) FILTER (WHERE r.verified_at > $1)
			FROM @.records r GROUP BY r.state`), since).Query(func(rows pgx.Rows) error {
			var k string
			var c Count
			var copied, verified int64
			_, err := pgx.ForEachRow(rows, []any{&k, &c.N, &c.Bytes, &copied, &verified}, func() error {
				st.Records[RecordState(k)] = c
				st.Recent["copied"] += copied
				st.Recent["verified"] += verified
				return nil
			})
			return err
		})
		// The replicas' counts by site and by stage, and the recent deletions, in one
		// pass over the rows' jsonb, grouped once by (site, stage, state) and summed
		// here by site and by stage, which costs the server less than GROUPING SETS
		// over the same rows (docs/benchmarks.md, session 14).
		b.Queue(s.sql(`SELECT COALESCE(e->>'site', ''), COALESCE(e->>'stage', ''), COALESCE(e->>'state', ''),
				count(*), COALESCE(sum((e->>'size')::int8), 0)::bigint, count(*) FILTER (WHERE (e->>'deleted_at')::int8 > $1)
			FROM @.records r CROSS JOIN LATERAL jsonb_array_elements(r.replicas) e
			GROUP BY 1, 2, 3`), since).Query(func(rows pgx.Rows) error {
			var site, stage, state string
			var c Count
			var deleted int64
			_, err := pgx.ForEachRow(rows, []any{&site, &stage, &state, &c.N, &c.Bytes, &deleted}, func() error {
				addReplicas(st.ReplicasSite, site, ReplicaState(state), c)
				if stage != "" { // replicas in no stage are counted by site only
					addReplicas(st.StageCounts, stage, ReplicaState(state), c)
				}
				st.Recent["deleted"] += deleted
				return nil
			})
			return err
		})
		return tx.SendBatch(ctx, b).Close()
	})
	return st, s.wrap("stats", err)
}
