package checkpoints

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/ferrymigrate/ferry/checkpoints/clock"
)

// sqliteV1 creates version 1's tables (SchemaVersion). It is also the upgrade of an
// unversioned state: the ferries before versioning ran it on every open.
const sqliteV1 = `
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records(
	key TEXT PRIMARY KEY,
	user TEXT NOT NULL,
	size INTEGER NOT NULL,
	state TEXT NOT NULL,
	sha256 TEXT NOT NULL DEFAULT '',
	crc32c TEXT NOT NULL DEFAULT '',
	source TEXT NOT NULL DEFAULT '',
	target_key TEXT NOT NULL DEFAULT '',
	target_etag TEXT NOT NULL DEFAULT '',
	target_version TEXT NOT NULL DEFAULT '',
	copied_at INTEGER NOT NULL DEFAULT 0,
	verified_at INTEGER NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	conflict TEXT NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_state ON records(state, key);
CREATE INDEX IF NOT EXISTS records_user ON records(user, key);
CREATE TABLE IF NOT EXISTS replicas(
	key TEXT NOT NULL,
	site TEXT NOT NULL,
	site_key TEXT NOT NULL,
	primary_site INTEGER NOT NULL DEFAULT 0,
	size INTEGER NOT NULL,
	etag TEXT NOT NULL DEFAULT '',
	version TEXT NOT NULL DEFAULT '',
	mtime INTEGER NOT NULL DEFAULT 0,
	sha256 TEXT NOT NULL DEFAULT '',
	state TEXT NOT NULL,
	stage TEXT NOT NULL DEFAULT '',
	mode TEXT NOT NULL DEFAULT '',
	handle TEXT NOT NULL DEFAULT '',
	intent_at INTEGER NOT NULL DEFAULT 0,
	deleted_at INTEGER NOT NULL DEFAULT 0,
	purged_at INTEGER NOT NULL DEFAULT 0,
	confirmed_absent INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	PRIMARY KEY(key, site)
) WITHOUT ROWID;
DROP INDEX IF EXISTS replicas_stage;
DROP INDEX IF EXISTS replicas_site;
CREATE TABLE IF NOT EXISTS listing(
	key TEXT NOT NULL,
	site TEXT NOT NULL,
	site_key TEXT NOT NULL,
	size INTEGER NOT NULL,
	etag TEXT NOT NULL DEFAULT '',
	version TEXT NOT NULL DEFAULT '',
	mtime INTEGER NOT NULL DEFAULT 0,
	sha256 TEXT NOT NULL DEFAULT '',
	PRIMARY KEY(key, site)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stages(
	name TEXT PRIMARY KEY,
	ord INTEGER NOT NULL,
	mode TEXT NOT NULL DEFAULT '',
	digest TEXT NOT NULL DEFAULT '',
	state TEXT NOT NULL DEFAULT 'pending',
	started_at INTEGER NOT NULL DEFAULT 0,
	finished_at INTEGER NOT NULL DEFAULT 0,
	purged_at INTEGER NOT NULL DEFAULT 0,
	restored_at INTEGER NOT NULL DEFAULT 0,
	deleted INTEGER NOT NULL DEFAULT 0,
	retained INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS lock(
	id INTEGER PRIMARY KEY CHECK (id = 1),
	host TEXT NOT NULL, pid INTEGER NOT NULL, start INTEGER NOT NULL,
	phase TEXT NOT NULL, acquired INTEGER NOT NULL, lease_until INTEGER NOT NULL,
	token TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workers(
	id TEXT PRIMARY KEY,
	host TEXT NOT NULL, pid INTEGER NOT NULL, start INTEGER NOT NULL, phase TEXT NOT NULL,
	joined INTEGER NOT NULL, heartbeat INTEGER NOT NULL, lease_until INTEGER NOT NULL,
	left_at INTEGER NOT NULL DEFAULT 0,
	ranges INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS claims(
	scope TEXT NOT NULL, round INTEGER NOT NULL, seq INTEGER NOT NULL,
	site TEXT NOT NULL DEFAULT '', lo TEXT NOT NULL, hi TEXT NOT NULL,
	state TEXT NOT NULL DEFAULT 'open',
	worker TEXT NOT NULL DEFAULT '', epoch INTEGER NOT NULL DEFAULT 0, lease_until INTEGER NOT NULL DEFAULT 0,
	resume_after TEXT NOT NULL DEFAULT '', done_at INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY(scope, round, seq)
);
CREATE INDEX IF NOT EXISTS claims_worker ON claims(worker, state);
CREATE TABLE IF NOT EXISTS journal(
	stream TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, lines TEXT NOT NULL,
	PRIMARY KEY(stream, first_seq)
);
`

// SQLite is the embedded checkpoint store: one file, WAL journal, synchronous=FULL so
// that every committed transaction survives a crash or power loss. Progress writes
// reach it in batches (see Batcher), so FULL costs one fsync per batch, not per record.
type SQLite struct {
	db      *sql.DB
	path    string
	scratch string // temp dir removed on Close (dry run)
	ro      bool
	// snapshot: a read-only open of a state in an older layout reads an upgraded
	// private copy, which does not see writes made after it was taken.
	snapshot bool
	clock    clock.Clock // leases and liveness (Options.Clock)
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the state file at path.
func OpenSQLite(ctx context.Context, path string, opts Options) (*SQLite, error) {
	return openSQLite(ctx, path, opts, sqliteSteps)
}

// openSQLite opens the state with the given upgrade steps (tests add their own).
func openSQLite(ctx context.Context, path string, opts Options, steps []sqliteStep) (*SQLite, error) {
	path = strings.TrimPrefix(path, "sqlite://")
	if path == "" {
		return nil, errors.New("state: empty SQLite path")
	}
	var s *SQLite
	var err error
	if opts.Scratch {
		s, err = openScratch(ctx, path, steps)
	} else {
		s, err = openReal(ctx, path, opts, steps)
	}
	if err != nil {
		return nil, err
	}
	if opts.Clock != nil {
		s.clock = opts.Clock
	}
	return s, nil
}

func openReal(ctx context.Context, path string, opts Options, steps []sqliteStep) (*SQLite, error) {
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("state %s: no checkpoint state yet (run ferry plan first): %w", path, err)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	s, err := openDB(ctx, path, opts.ReadOnly, false, steps)
	var older *OlderStateError
	if errors.As(err, &older) {
		// A read-only open of a state in an older layout, which this ferry reads only
		// once upgraded: upgrade a private copy and read that, read-only as asked
		// (the state itself is left as it is; the next command that writes it
		// upgrades it in place). The copy is a snapshot: it does not see later writes.
		return openSnapshot(ctx, path, steps)
	}
	return s, err
}

// openSnapshot opens a read-only, upgraded private copy of the state at path.
func openSnapshot(ctx context.Context, path string, steps []sqliteStep) (*SQLite, error) {
	cp, err := openScratch(ctx, path, steps)
	if err != nil {
		return nil, err
	}
	cp.db.Close()
	s, err := openDB(ctx, cp.path, true, false, steps)
	if err != nil {
		os.RemoveAll(cp.scratch)
		return nil, err
	}
	s.path, s.scratch, s.snapshot = path, cp.scratch, true
	return s, nil
}

// Reopen reports whether the store reads a copy of the state taken when it was
// opened (a read-only open of a state in an older layout): a reader that polls, such
// as `ferry status --watch`, opens the state again to see what changed since.
func (s *SQLite) Reopen() bool { return s.snapshot }

// openDB opens the database at path, read-only if ro, and checks its version (older
// lets a read-only open through at any version not newer than ours: openScratch
// copies such a state before upgrading the copy).
func openDB(ctx context.Context, path string, ro, older bool, steps []sqliteStep) (*SQLite, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(15000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(OFF)")
	// No _txlock: every transaction is begun by the store (begin, sqlite_tx.go),
	// never through database/sql.
	if ro {
		q.Set("mode", "ro")
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(time.Minute)
	s := &SQLite{db: db, path: path, ro: ro, clock: clock.Real}
	if err := s.checkVersion(ctx, steps, older); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// sqliteStep takes a state from one version to the next, inside the upgrade's
// transaction.
type sqliteStep func(ctx context.Context, tx *sqliteTx) error

// sqliteSteps are the upgrades: step i takes version i to version i+1, and the
// state is at version len(sqliteSteps) after them (SchemaVersion; a test checks).
var sqliteSteps = []sqliteStep{
	// 0 -> 1: version 1's tables, created or completed (see SchemaVersion).
	func(ctx context.Context, tx *sqliteTx) error {
		_, err := tx.ExecContext(ctx, sqliteV1)
		return err
	},
	// 1 -> 2: the tallies and events that Stats reads, filled from the rows, and the
	// triggers that keep them (sqlite_tallies.go).
	func(ctx context.Context, tx *sqliteTx) error {
		_, err := tx.ExecContext(ctx, sqliteV2)
		return err
	},
	// 2 -> 3: one row per record, its replicas inside it; the tallies kept by Save
	// instead of triggers (sqlite_upgrade.go).
	upgradeToV3,
	// 3 -> 4: nothing. Version 4 puts PostgreSQL's replicas inside their record's
	// row, as version 3 did SQLite's.
	func(context.Context, *sqliteTx) error { return nil },
}

// sqliteOneRowVersion is the first layout version a read-only open reads as it is:
// the versions after it changed nothing in SQLite.
const sqliteOneRowVersion = 3

type sqlQueryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func sqliteVersion(ctx context.Context, q sqlQueryer) (int, error) {
	var v int
	err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// checkVersion refuses a state from a newer ferry and, unless the store is
// read-only, upgrades an older one (a new file is version 0) to the latest version
// in one transaction: the steps and the new user_version commit together or not at
// all. BEGIN IMMEDIATE serialises concurrent openers; the version is read again
// under that lock. A read-only store refuses an older state with an
// *OlderStateError unless older.
func (s *SQLite) checkVersion(ctx context.Context, steps []sqliteStep, older bool) error {
	latest := len(steps)
	v, err := sqliteVersion(ctx, s.db)
	if err != nil {
		return fmt.Errorf("state %s: %w", s.path, hint(ctx, s.path, err))
	}
	switch {
	case v > latest:
		return &NewerStateError{State: s.path, Version: v, Supported: latest}
	case v == latest:
		return nil
	case s.ro:
		if older || (v >= sqliteOneRowVersion && latest >= sqliteOneRowVersion) {
			return nil
		}
		// Version 3 moved the replicas into their record's row: no older layout
		// reads as it is.
		return &OlderStateError{State: s.path, Version: v, Supported: latest}
	}
	tx, err := s.begin(ctx, false)
	if err != nil {
		return fmt.Errorf("state %s: upgrading: %w", s.path, hint(ctx, s.path, err))
	}
	defer tx.Rollback()
	if v, err = sqliteVersion(ctx, tx); err != nil {
		return fmt.Errorf("state %s: upgrading: %w", s.path, hint(ctx, s.path, err))
	}
	if v > latest {
		return &NewerStateError{State: s.path, Version: v, Supported: latest}
	}
	for i := v; i < latest; i++ {
		if err := steps[i](ctx, tx); err != nil {
			return fmt.Errorf("state %s: upgrading the state from version %d to %d (nothing was changed): %w", s.path, i, i+1, hint(ctx, s.path, err))
		}
	}
	// PRAGMA takes no parameters; latest is an int.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", latest)); err != nil {
		return fmt.Errorf("state %s: upgrading: %w", s.path, hint(ctx, s.path, err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state %s: upgrading from version %d to %d: %w", s.path, v, latest, hint(ctx, s.path, err))
	}
	return nil
}

// openScratch copies the real state (read-only) into a temp file, so a dry run can
// run the real code path without advancing the real state.
func openScratch(ctx context.Context, path string, steps []sqliteStep) (*SQLite, error) {
	dir, err := os.MkdirTemp("", "ferry-dryrun-")
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "state.db")
	if _, err := os.Stat(path); err == nil {
		real, err := openDB(ctx, path, true, true, steps)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		_, err = real.db.ExecContext(ctx, "VACUUM INTO ?", tmp)
		real.db.Close()
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("state %s: copying for dry run: %w", path, explain(ctx, err))
		}
	}
	s, err := openDB(ctx, tmp, false, false, steps)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.scratch = dir
	return s, nil
}

// Path is the state file.
func (s *SQLite) Path() string { return s.path }

// Close closes the database (and removes a dry run's scratch copy).
func (s *SQLite) Close() error {
	err := s.db.Close()
	if s.scratch != "" {
		os.RemoveAll(s.scratch)
	}
	return err
}

func (s *SQLite) Meta(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := s.db.QueryRowContext(ctx, "SELECT v FROM meta WHERE k = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return v, err == nil, wrap(ctx, "meta", err)
}

func (s *SQLite) SetMeta(ctx context.Context, key, value string) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO meta(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", key, value)
	return wrap(ctx, "meta", err)
}

// ---- lock ----

type sqliteLock struct {
	s     *SQLite
	info  LockInfo
	lease time.Duration
}

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *SQLite) Lock(ctx context.Context, holder LockInfo, lease time.Duration) (Lock, error) {
	tx, err := s.begin(ctx, false)
	if err != nil {
		return nil, wrap(ctx, "lock", err)
	}
	defer tx.Rollback()
	cur, ok, err := scanLock(tx.QueryRowContext(ctx, "SELECT host, pid, start, phase, acquired, lease_until, token FROM lock WHERE id = 1"))
	if err != nil {
		return nil, wrap(ctx, "lock", err)
	}
	now := s.clock.Now()
	ws, err := activeWorkers(ctx, tx)
	if err != nil {
		return nil, wrap(ctx, "lock", err)
	}
	if err := excluded(cur, ok, ws, now, ""); err != nil {
		return nil, err
	}
	holder.Acquired = now
	holder.LeaseTill = now.Add(lease)
	holder.Token = newToken()
	_, err = tx.ExecContext(ctx, `INSERT INTO lock(id, host, pid, start, phase, acquired, lease_until, token) VALUES(1, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET host=excluded.host, pid=excluded.pid, start=excluded.start, phase=excluded.phase,
		acquired=excluded.acquired, lease_until=excluded.lease_until, token=excluded.token`,
		holder.Host, holder.PID, holder.Start, holder.Phase, holder.Acquired.UnixNano(), holder.LeaseTill.UnixNano(), holder.Token)
	if err != nil {
		return nil, wrap(ctx, "lock", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, wrap(ctx, "lock", err)
	}
	return &sqliteLock{s: s, info: holder, lease: lease}, nil
}

func scanLock(row *sql.Row) (LockInfo, bool, error) {
	var l LockInfo
	var acq, lease int64
	err := row.Scan(&l.Host, &l.PID, &l.Start, &l.Phase, &acq, &lease, &l.Token)
	if errors.Is(err, sql.ErrNoRows) {
		return l, false, nil
	}
	if err != nil {
		return l, false, err
	}
	l.Acquired, l.LeaseTill = fromNanos(acq), fromNanos(lease)
	return l, true, nil
}

func (s *SQLite) LockHolder(ctx context.Context) (LockInfo, bool, error) {
	l, ok, err := scanLock(s.db.QueryRowContext(ctx, "SELECT host, pid, start, phase, acquired, lease_until, token FROM lock WHERE id = 1"))
	return l, ok, wrap(ctx, "lock", err)
}

func (l *sqliteLock) Refresh(ctx context.Context) error {
	till := l.s.clock.Now().Add(l.lease)
	res, err := l.s.db.ExecContext(ctx, "UPDATE lock SET lease_until = ? WHERE id = 1 AND token = ?", till.UnixNano(), l.info.Token)
	if err != nil {
		return wrap(ctx, "lock refresh", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return errors.New("lock refresh: the migration lock was taken over by another process")
	}
	return nil
}

func (l *sqliteLock) Release(ctx context.Context) error {
	_, err := l.s.db.ExecContext(ctx, "DELETE FROM lock WHERE id = 1 AND token = ?", l.info.Token)
	return wrap(ctx, "lock release", err)
}

// ---- listing ----

func (s *SQLite) ResetListing(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM listing")
	return wrap(ctx, "listing", err)
}

func (s *SQLite) AddListed(ctx context.Context, objs []Listed) error {
	if len(objs) == 0 {
		return nil
	}
	tx, err := s.begin(ctx, false)
	if err != nil {
		return wrap(ctx, "listing", err)
	}
	defer tx.Rollback()
	if err := addListedTx(tx, objs); err != nil {
		return err
	}
	return wrap(ctx, "listing", tx.Commit())
}

func addListedTx(tx *sqliteTx, objs []Listed) error {
	args := make([]any, 8)
	for _, o := range objs {
		args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7] = o.Key, o.Site, o.SiteKey, o.Size, o.ETag, o.Version, nanos(o.ModTime), o.SHA256
		if err := tx.exec(listedUpsert, args); err != nil {
			return wrap(tx.ctx, "listing", err)
		}
	}
	return nil
}

const listedUpsert = `INSERT INTO listing(key, site, site_key, size, etag, version, mtime, sha256) VALUES(?,?,?,?,?,?,?,?)
	ON CONFLICT(key, site) DO UPDATE SET site_key=excluded.site_key, size=excluded.size, etag=excluded.etag,
	version=excluded.version, mtime=excluded.mtime, sha256=excluded.sha256`

func (s *SQLite) ListedCount(ctx context.Context, site string) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM listing WHERE site = ?", site).Scan(&n)
	return n, wrap(ctx, "listing", err)
}

const listPage = 4096

func (s *SQLite) Listed(ctx context.Context, fn func(key string, objs []Listed) error) error {
	return keysetListed(ctx, sqliteKeyset, listPage, s.listedPage, fn)
}

func (s *SQLite) listedPage(ctx context.Context, query string, args []any) (page []Listed, err error) {
	err = s.read(ctx, func(tx *sqliteTx) error {
		return tx.query(query, args, func(st *sqlite3.Stmt) error {
			page = append(page, Listed{
				Key: st.ColumnText(0), Site: st.ColumnText(1), SiteKey: st.ColumnText(2), Size: st.ColumnInt64(3),
				ETag: st.ColumnText(4), Version: st.ColumnText(5), ModTime: fromNanos(st.ColumnInt64(6)), SHA256: st.ColumnText(7),
			})
			return nil
		})
	})
	return page, wrap(ctx, "listing", err)
}

// ---- records ----

// recCols are a record row's columns (layout version 3): the key, the user and the
// state (each indexed), the deletion stages its replicas are assigned to (the stage
// filter's, stagesOf), when it last changed, and everything else about it with its
// replicas (data, record_codec.go). readCols are those a read decodes.
const (
	recCols  = "key, user, state, stages, updated_at, data"
	readCols = "key, user, state, updated_at, data"
)

// readRecords reads the records query selects (readCols), in tx; it expects about
// want of them. The records' replicas share a few backing arrays (replicaArena).
func readRecords(tx *sqliteTx, query string, args []any, want int) ([]Record, error) {
	page := make([]Record, 0, want)
	var arena replicaArena
	err := tx.query(query, args, func(st *sqlite3.Stmt) error {
		page = append(page, Record{
			Key: st.ColumnText(0), User: st.ColumnText(1), State: recordState(st.ColumnRawText(2)),
			UpdatedAt: fromNanos(st.ColumnInt64(3)),
		})
		r := &page[len(page)-1]
		// The data is read in place: decodeRecord copies what it keeps.
		if err := decodeRecordIn(r, st.ColumnRawBlob(4), &arena); err != nil {
			return fmt.Errorf("record %q: %w", r.Key, err)
		}
		return nil
	})
	return page, wrap(tx.ctx, "records", err)
}

// recordState is the RecordState named b, without a copy of b for any state ferry
// writes.
func recordState(b []byte) RecordState {
	for _, s := range RecordStates {
		if string(s) == string(b) {
			return s
		}
	}
	return RecordState(b)
}

func (s *SQLite) Get(ctx context.Context, key string) (Record, bool, error) {
	var recs []Record
	err := s.read(ctx, func(tx *sqliteTx) (err error) {
		recs, err = readRecords(tx, "SELECT "+readCols+" FROM records WHERE key = ?", []any{key}, 1)
		return err
	})
	if err != nil || len(recs) == 0 {
		return Record{}, false, err
	}
	return recs[0], true, nil
}

// read runs f in one read-only transaction.
func (s *SQLite) read(ctx context.Context, f func(tx *sqliteTx) error) error {
	tx, err := s.begin(ctx, true)
	if err != nil {
		return wrap(ctx, "read", err)
	}
	defer tx.Rollback()
	return f(tx)
}

const recPage = 1024

func (s *SQLite) Records(ctx context.Context, q Query, fn func(Record) error) error {
	return keysetRecords(ctx, sqliteKeyset, q, recPage, s.recordsPage, fn)
}

// recordsPage reads one page of records in one read transaction, which ends before
// the caller's fn runs (fn may write).
func (s *SQLite) recordsPage(ctx context.Context, query string, args []any) (recs []Record, err error) {
	err = s.read(ctx, func(tx *sqliteTx) error {
		recs, err = readRecords(tx, query, args, recPage)
		return err
	})
	return recs, err
}

// Unlisted pages through the records in key order (keysetRecords), looking up each
// page's live replicas in the staged listing in the page's read transaction; fn runs
// after it ended.
func (s *SQLite) Unlisted(ctx context.Context, sites []string, fn func(Record, []string) error) error {
	if len(sites) == 0 {
		return nil
	}
	var missing map[string][]string // of the page read last
	page := func(ctx context.Context, query string, args []any) (recs []Record, err error) {
		err = s.read(ctx, func(tx *sqliteTx) error {
			if recs, err = readRecords(tx, query, args, recPage); err == nil {
				missing, err = unlistedOf(tx, recs, sites)
			}
			return err
		})
		return recs, err
	}
	return keysetRecords(ctx, sqliteKeyset, Query{}, recPage, page, func(r Record) error {
		if m := missing[r.Key]; len(m) > 0 {
			return fn(r, m)
		}
		return nil
	})
}

// unlistedOf returns, by key, the sites (in site order) where a record of recs has a
// replica in a state that says it is there (unlistedStates) that the staged listing
// lacks.
func unlistedOf(tx *sqliteTx, recs []Record, sites []string) (map[string][]string, error) {
	live := func(p *Replica) bool {
		return slices.Contains(sites, p.Site) && slices.Contains(unlistedStates, string(p.State))
	}
	var keys []string
	for i := range recs {
		for j := range recs[i].Replicas {
			if p := &recs[i].Replicas[j]; live(p) {
				keys = append(keys, p.SiteKey)
			}
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	listed := map[keySite]bool{}
	const batch = 500
	for i := 0; i < len(keys); i += batch {
		part := keys[i:min(i+batch, len(keys))]
		args := make([]any, len(part))
		for j, k := range part {
			args[j] = k
		}
		err := tx.query("SELECT key, site FROM listing WHERE key IN ("+placeholders(len(part))+")", args, func(st *sqlite3.Stmt) error {
			listed[keySite{st.ColumnText(0), st.ColumnText(1)}] = true
			return nil
		})
		if err != nil {
			return nil, wrap(tx.ctx, "unlisted", err)
		}
	}
	missing := map[string][]string{}
	for i := range recs {
		for j := range recs[i].Replicas {
			if p := &recs[i].Replicas[j]; live(p) && !listed[keySite{p.SiteKey, p.Site}] {
				missing[recs[i].Key] = append(missing[recs[i].Key], p.Site)
			}
		}
	}
	return missing, nil
}

func (s *SQLite) Save(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	tx, err := s.begin(ctx, false)
	if err != nil {
		return wrap(ctx, "save", err)
	}
	defer tx.Rollback()
	if err := saveTx(tx, recs); err != nil {
		return err
	}
	return wrap(ctx, "save", tx.Commit())
}

// saveTx writes recs inside tx: each record's row where it changed, and the
// tallies by what changed (sqlite_tallies.go). A record whose row would not change
// is not written: its updated_at tells when it last changed, not when it was last
// saved.
//
// Records go saveChunk to a statement: SQLite's cost per statement run is paid once
// per chunk, not once per record. A key that comes twice starts a new chunk, so each
// statement sees a key at most once.
func saveTx(tx *sqliteTx, recs []Record) error {
	now := time.Now().UnixNano()
	var t tallies
	seen := make(map[string]bool, saveChunk)
	start := 0
	for i := 0; i <= len(recs); i++ {
		if i < len(recs) && i-start < saveChunk && !seen[recs[i].Key] {
			seen[recs[i].Key] = true
			continue
		}
		if err := saveChunkTx(tx, recs[start:i], now, &t); err != nil {
			return err
		}
		clear(seen)
		if start = i; i < len(recs) {
			seen[recs[i].Key] = true
		}
	}
	return wrap(tx.ctx, "save", t.flush(tx))
}

// saveChunk is how many records one statement writes.
const saveChunk = 64

// stored is a record row as a Save finds it.
type stored struct {
	user, state string
	data        []byte
}

// saveChunkTx writes chunk (no key twice): it reads the chunk's rows as they are,
// and writes, in one upsert, those of its records that differ, counting the change
// in t.
func saveChunkTx(tx *sqliteTx, chunk []Record, now int64, t *tallies) error {
	if len(chunk) == 0 {
		return nil
	}
	args := make([]any, len(chunk), len(chunk)*6)
	for i := range chunk {
		args[i] = chunk[i].Key
	}
	old, err := storedRows(tx, args)
	if err != nil {
		return wrap(tx.ctx, "save", err)
	}
	var args3 [len(recUpserts)][]any
	for i := range chunk {
		r := &chunk[i]
		reps := canonicalReplicas(r.Replicas)
		data := encodeRecord(nil, r, reps)
		o, had := old[r.Key]
		if had && o.user == r.User && o.state == string(r.State) && bytes.Equal(o.data, data) {
			continue
		}
		how := rowNew
		if had {
			was := Record{Key: r.Key, User: o.user, State: RecordState(o.state)}
			if err := decodeRecord(&was, o.data); err != nil {
				return fmt.Errorf("state: save: record %q as stored: %w", r.Key, err)
			}
			t.add(&was, was.Replicas, -1)
			switch {
			case o.user != r.User:
			case o.state != string(r.State):
				how = rowState
			default:
				how = rowData
			}
		}
		t.add(r, reps, 1)
		args3[how] = append(args3[how], r.Key, r.User, string(r.State), stagesOf(reps), now, data)
	}
	for how, args := range args3 {
		if len(args) > 0 {
			if err := tx.exec(upsertRows(recUpserts[how], 6, len(args)/6), args); err != nil {
				return wrap(tx.ctx, "save", err)
			}
		}
	}
	return nil
}

// storedRows reads the rows of the keys in keys as they are.
func storedRows(tx *sqliteTx, keys []any) (map[string]stored, error) {
	old := make(map[string]stored, len(keys))
	err := tx.query("SELECT key, user, state, data FROM records WHERE key IN ("+placeholders(len(keys))+")", keys, func(st *sqlite3.Stmt) error {
		old[st.ColumnText(0)] = stored{user: st.ColumnText(1), state: st.ColumnText(2), data: st.ColumnBlob(3, nil)}
		return nil
	})
	return old, err
}

// upsertRows turns a one-row upsert of cols columns into one of n rows.
func upsertRows(one string, cols, n int) string {
	row := "(" + placeholders(cols) + ")"
	if !strings.Contains(one, "VALUES"+row) {
		panic("checkpoints: not a one-row upsert of " + strconv.Itoa(cols) + " columns: " + one)
	}
	return strings.Replace(one, "VALUES"+row, "VALUES"+strings.TrimSuffix(strings.Repeat(row+",", n), ","), 1)
}

// recUpserts write record rows (saveChunkTx writes only rows that changed), by what
// changed in them: SQLite moves a row's entry in an index only when the statement
// sets a column of that index, so a row whose user (records_user) or state
// (records_state) stays as it was is written without setting that column.
var recUpserts = [...]string{
	rowNew:   recUpsertSet("user = excluded.user, state = excluded.state, "),
	rowState: recUpsertSet("state = excluded.state, "),
	rowData:  recUpsertSet(""),
}

// What changed in a record row that Save writes: all of it (a new row, or one whose
// user changed), its state and data, or its data alone.
const (
	rowNew = iota
	rowState
	rowData
)

func recUpsertSet(set string) string {
	return "INSERT INTO records(" + recCols + ") VALUES(?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET " +
		set + "stages = excluded.stages, updated_at = excluded.updated_at, data = excluded.data"
}

// ---- stages ----

func (s *SQLite) Stages(ctx context.Context) ([]StageState, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT name, ord, mode, digest, state, started_at, finished_at, purged_at, restored_at, deleted, retained FROM stages ORDER BY ord, name")
	if err != nil {
		return nil, wrap(ctx, "stages", err)
	}
	defer rows.Close()
	var out []StageState
	for rows.Next() {
		var st StageState
		var a, b, c, d int64
		if err := rows.Scan(&st.Name, &st.Ord, &st.Mode, &st.Digest, &st.State, &a, &b, &c, &d, &st.Deleted, &st.Retained); err != nil {
			return nil, wrap(ctx, "stages", err)
		}
		st.StartedAt, st.FinishedAt, st.PurgedAt, st.RestoredAt = fromNanos(a), fromNanos(b), fromNanos(c), fromNanos(d)
		out = append(out, st)
	}
	return out, wrap(ctx, "stages", rows.Err())
}

func (s *SQLite) SaveStage(ctx context.Context, st StageState) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO stages(name, ord, mode, digest, state, started_at, finished_at, purged_at, restored_at, deleted, retained)
		VALUES(?,?,?,?,?,?,?,?,?,?,?)`, st.Name, st.Ord, st.Mode, st.Digest, st.State, nanos(st.StartedAt), nanos(st.FinishedAt),
		nanos(st.PurgedAt), nanos(st.RestoredAt), st.Deleted, st.Retained)
	return wrap(ctx, "stages", err)
}

// ---- stats ----

// RecentWindow is the window Stats.Recent counts events over.
const RecentWindow = time.Minute

func (s *SQLite) Stats(ctx context.Context, now time.Time) (Stats, error) {
	st := newStats()
	return st, wrap(ctx, "stats", s.statsFromTallies(ctx, &st, now))
}

// ---- helpers ----

func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hint adds to an error opening the state at path what an operator can act on.
func hint(ctx context.Context, path string, err error) error {
	if ctx.Err() == nil {
		for _, p := range []string{path, filepath.Dir(path)} {
			if aerr := syscall.Access(p, 2 /* W_OK */); aerr != nil && !errors.Is(aerr, syscall.ENOENT) {
				return fmt.Errorf("%w (the state's file or folder is not writable: %v)", err, aerr)
			}
		}
	}
	return explain(ctx, err)
}

// why says what an operator can act on for SQLite errors that do not ("disk I/O
// error (778)"); "" for others.
func why(err error) string {
	var code sqlite3.ErrorCode // the primary code of an *sqlite3.Error
	if errors.As(err, &code) {
		switch code {
		case sqlite3.IOERR, sqlite3.FULL:
			return " (writing the state failed: is its disk full?)"
		case sqlite3.READONLY:
			return " (the state's file or disk is read-only)"
		case sqlite3.BUSY: // after busy_timeout
			return " (another process held the state's write lock for over 15 s: another ferry writing it, or upgrading it to a new layout; retry once it is done)"
		}
	}
	return ""
}

// wrap names the operation that failed, and what an operator can act on (explain).
func wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("state: %s: %w", op, explain(ctx, err))
}

// explain adds to err what an operator can act on (why). If ctx ended, the error is
// ctx's (context.Canceled or DeadlineExceeded, which callers test for: an interrupted
// run exits 130), with err inside it: the driver reports a statement interrupted, or
// a wait for the write lock given up, as SQLite errors (INTERRUPT, BUSY) that say
// nothing of why.
func explain(ctx context.Context, err error) error {
	switch cerr := ctx.Err(); {
	case cerr == nil:
		return fmt.Errorf("%w%s", err, why(err))
	case errors.Is(err, cerr):
		return err
	default:
		return fmt.Errorf("%w (%w)", cerr, err)
	}
}
