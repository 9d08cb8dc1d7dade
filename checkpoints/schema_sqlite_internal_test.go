package checkpoints

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// upgradeCrashEnv names the state a re-executed test binary upgrades with
// noteStep(true) after the real steps until it is killed, and upgradeV3CrashEnv
// one it upgrades with the real steps, stopped once the step to version 3 has run,
// before the upgrade commits (see init).
const (
	upgradeCrashEnv   = "FERRY_CHECKPOINTS_UPGRADE_CRASH_CHILD"
	upgradeV3CrashEnv = "FERRY_CHECKPOINTS_UPGRADE_V3_CRASH_CHILD"
)

func init() {
	if path := os.Getenv(upgradeCrashEnv); path != "" {
		// The child: upgrade path to version SchemaVersion+1 through a step that
		// stops half-way (after most of its writes) and waits to be killed.
		_, err := openSQLite(context.Background(), path, Options{}, append(slices.Clip(sqliteSteps), noteStep(true)))
		fmt.Fprintln(os.Stderr, "the upgrade was not killed:", err)
		os.Exit(3)
	}
	if path := os.Getenv(upgradeV3CrashEnv); path != "" {
		// The child: the real upgrade, stopped once the step to version 3 has
		// written every new row and tally and dropped the old tables, before the
		// upgrade commits.
		steps := append(slices.Clone(sqliteSteps[:2]), func(ctx context.Context, tx *sqliteTx) error {
			if err := upgradeToV3(ctx, tx); err != nil {
				return err
			}
			fmt.Println("midway")
			time.Sleep(time.Hour)
			return nil
		})
		_, err := openSQLite(context.Background(), path, Options{}, steps)
		fmt.Fprintln(os.Stderr, "the upgrade was not killed:", err)
		os.Exit(3)
	}
}

// noteStep is a version 1 -> 2 upgrade for tests: a column added to records and
// filled for every row, and a table. With hang, it stops after its writes (its
// transaction open, with a cache so small that uncommitted pages spill into the
// WAL), says "midway" on stdout and waits to be killed.
func noteStep(hang bool) sqliteStep {
	return func(ctx context.Context, tx *sqliteTx) error {
		if hang {
			if _, err := tx.ExecContext(ctx, "PRAGMA cache_size = 8"); err != nil {
				return err
			}
		}
		for _, q := range []string{
			"ALTER TABLE records ADD COLUMN note TEXT NOT NULL DEFAULT ''",
			"UPDATE records SET note = 'n-' || key",
			"CREATE TABLE notes(k TEXT PRIMARY KEY, n INTEGER NOT NULL)",
			"INSERT INTO notes(k, n) SELECT key, length(data) FROM records",
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		if hang {
			fmt.Println("midway")
			time.Sleep(time.Hour)
		}
		return nil
	}
}

// failingStep makes changes, then fails.
func failingStep(ctx context.Context, tx *sqliteTx) error {
	if err := noteStep(false)(ctx, tx); err != nil {
		return err
	}
	return errors.New("step failed on purpose")
}

// sqliteDump is the state file's version, schema and every row of every table, as
// text: equal dumps, equal state.
func sqliteDump(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	v, err := sqliteVersion(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{fmt.Sprintf("user_version %d", v)}
	rows, err := db.QueryContext(ctx, "SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var typ, name, ddl string
		if err := rows.Scan(&typ, &name, &ddl); err != nil {
			t.Fatal(err)
		}
		out = append(out, typ+" "+name+": "+ddl)
		if typ == "table" {
			tables = append(tables, name)
		}
	}
	rows.Close()
	for _, tb := range tables {
		rows, err := db.QueryContext(ctx, "SELECT * FROM "+tb)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, tb+fmt.Sprint(vals...))
		}
		rows.Close()
		slices.Sort(lines)
		out = append(out, lines...)
	}
	return out
}

func setUserVersion(t *testing.T, path string, v int) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
		t.Fatal(err)
	}
}

// seedRecords are n records with two replicas each.
func seedRecords(n int) []Record {
	var recs []Record
	for i := range n {
		k := fmt.Sprintf("user%02d/file%05d", i%7, i)
		recs = append(recs, Record{Key: k, User: fmt.Sprintf("user%02d", i%7), Size: int64(i), State: Copied,
			SHA256: fmt.Sprintf("%064x", i), Attempts: i % 5, CopiedAt: time.Unix(1700000000, int64(i)).UTC(),
			Replicas: []Replica{
				{Site: "a", SiteKey: k, Primary: true, Size: int64(i), ETag: fmt.Sprintf("e%d", i), State: Identical, Stage: "one"},
				{Site: "b", SiteKey: "b/" + k, Size: int64(i), State: Present, Stage: "two", ModTime: time.Unix(1600000000, 0).UTC()},
			}})
	}
	return recs
}

// seedState writes n records with two replicas each (seedRecords), meta and a stage.
func seedState(t *testing.T, s Store, n int) {
	t.Helper()
	ctx := context.Background()
	if err := s.Save(ctx, seedRecords(n)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(ctx, "plan_digest", "d1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveStage(ctx, StageState{Name: "one", Ord: 1, Mode: "soft", State: "pending"}); err != nil {
		t.Fatal(err)
	}
}

// readAll is every record (with replicas), the meta value and the stages of s.
func readAll(t *testing.T, s Store) ([]Record, string, []StageState) {
	t.Helper()
	ctx := context.Background()
	var recs []Record
	if err := s.Records(ctx, Query{}, func(r Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	v, _, err := s.Meta(ctx, "plan_digest")
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return recs, v, st
}

func TestSchemaVersionIsTheSteps(t *testing.T) {
	if len(sqliteSteps) != SchemaVersion || len(pgSteps) != SchemaVersion {
		t.Errorf("SchemaVersion %d, but %d SQLite and %d PostgreSQL upgrade steps", SchemaVersion, len(sqliteSteps), len(pgSteps))
	}
}

// newSQLiteState writes a state at the current version with n records and closes it.
func newSQLiteState(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenSQLite(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	seedState(t, s, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSQLiteFreshStateIsCurrent(t *testing.T) {
	path := newSQLiteState(t, 0)
	if d := sqliteDump(t, path); d[0] != fmt.Sprintf("user_version %d", SchemaVersion) {
		t.Errorf("a new state has %s, want %d", d[0], SchemaVersion)
	}
}

// sameUpgradedState fails the test unless an upgraded state read back the records
// want, with the meta value and the stage legacySeed and pgLegacySeed write.
func sameUpgradedState(t *testing.T, got, want []Record, meta string, stages []StageState) {
	t.Helper()
	if reflect.DeepEqual(got, want) && meta == "d1" && len(stages) == 1 && stages[0].Name == "one" {
		return
	}
	i := 0
	for i < min(len(got), len(want)) && reflect.DeepEqual(got[i], want[i]) {
		i++
	}
	t.Fatalf("the upgrade changed the state: %d records (want %d), first difference at %d; meta %q, stages %+v", len(got), len(want), i, meta, stages)
}

// legacySeed writes into a legacy state (legacyState) what seedState writes into a
// current one, and returns the records as a current ferry should read them back.
func legacySeed(t *testing.T, db *sql.DB, n int) []Record {
	t.Helper()
	recs := seedRecords(n)
	legacySave(t, db, recs)
	if _, err := db.Exec("INSERT INTO meta(k, v) VALUES('plan_digest', 'd1'); INSERT INTO stages(name, ord, mode, state) VALUES('one', 1, 'soft', 'pending')"); err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		recs[i].UpdatedAt = legacyUpdatedAt
	}
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(a.Key, b.Key) })
	return recs
}

// TestSQLiteUpgradesOlderLayouts: a state of layout version 1 (also unversioned, as
// the ferries before versioning left it, with their two replica indexes) or 2 is
// read by a read-only open through an upgraded copy, leaving it as it was, and is
// upgraded in place by an open that writes, keeping every record with its
// replicas, meta value and stage.
func TestSQLiteUpgradesOlderLayouts(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name       string
		v, stamped int
	}{{"unversioned", 1, 0}, {"version 1", 1, 1}, {"version 2", 2, 2}} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			db := legacyState(t, path, c.v)
			want := legacySeed(t, db, 3000)
			if c.stamped == 0 {
				if _, err := db.Exec("PRAGMA user_version = 0; CREATE INDEX replicas_stage ON replicas(stage, state, key); CREATE INDEX replicas_site ON replicas(site, state)"); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()
			before := sqliteDump(t, path)

			ro, err := OpenSQLite(ctx, path, Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("read-only open: %v", err)
			}
			got, meta, stages := readAll(t, ro)
			if !reflect.DeepEqual(got, want) || meta != "d1" || len(stages) != 1 {
				t.Errorf("read-only: %d records (want %d), meta %q, stages %+v", len(got), len(want), meta, stages)
			}
			if !ro.Reopen() {
				t.Error("a read-only open of an older state does not say it reads a snapshot")
			}
			if err := ro.SetMeta(ctx, "migration", "other"); err == nil {
				t.Error("the read-only copy took a write")
			}
			ro.Close()
			if after := sqliteDump(t, path); !slices.Equal(after, before) {
				t.Fatalf("a read-only open changed the state:\n%s", diffLines(after, before))
			}

			s, err := OpenSQLite(ctx, path, Options{})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			got, meta, stages = readAll(t, s)
			s.Close()
			sameUpgradedState(t, got, want, meta, stages)
			d := sqliteDump(t, path)
			if d[0] != fmt.Sprintf("user_version %d", SchemaVersion) {
				t.Errorf("after the upgrade: %s, want %d", d[0], SchemaVersion)
			}
			for _, l := range d {
				if strings.HasPrefix(l, "index replicas_") || strings.HasPrefix(l, "table replicas:") || strings.HasPrefix(l, "trigger ") {
					t.Errorf("the upgrade kept an old table, index or trigger: %s", l)
				}
			}
		})
	}
}

// TestSQLiteUpgradeRefusesOrphanReplicas: a version 2 state holding a replica row
// without its record (which no ferry writes) is not upgraded, and not changed: the
// upgrade has nowhere to put the row and does not drop what it says.
func TestSQLiteUpgradeRefusesOrphanReplicas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := legacyState(t, path, 2)
	legacySeed(t, db, 10)
	if _, err := db.Exec("INSERT INTO replicas(key, site, site_key, size, state, stage) VALUES('zz/orphan', 'virginia', 'zz/orphan', 1, 'present', '')"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before := sqliteDump(t, path)
	_, err := OpenSQLite(context.Background(), path, Options{})
	if err == nil || !strings.Contains(err.Error(), `"zz/orphan"`) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("open of a state with an orphan replica row: %v", err)
	}
	if after := sqliteDump(t, path); !slices.Equal(after, before) {
		t.Fatalf("the refused upgrade changed the state:\n%s", diffLines(after, before))
	}
}

// TestSQLiteUpgradeInterrupted: an upgrade interrupted because its context ended
// (Ctrl-C) fails with the context's error, so the command exits as interrupted, and
// changes nothing.
func TestSQLiteUpgradeInterrupted(t *testing.T) {
	path := newSQLiteState(t, 50)
	before := sqliteDump(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	steps := append(slices.Clip(sqliteSteps), func(_ context.Context, tx *sqliteTx) error {
		if err := tx.exec("CREATE TABLE interrupted(a)", nil); err != nil {
			return err
		}
		cancel()
		return tx.exec("UPDATE records SET updated_at = updated_at + 1", nil)
	})
	_, err := openSQLite(ctx, path, Options{}, steps)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, sqlite3.INTERRUPT) {
		t.Fatalf("an upgrade interrupted by its context: %v; want context.Canceled with SQLite's INTERRUPT inside", err)
	}
	if after := sqliteDump(t, path); !slices.Equal(after, before) {
		t.Errorf("an interrupted upgrade changed the state:\n%s", diffLines(after, before))
	}
}

// TestSQLiteUpgradeAtomic: an upgrade whose step fails after writing leaves the
// state exactly as it was, whether it started at the current version or at
// version 1 (the steps to 2 and to 3 ran, then the failing one).
func TestSQLiteUpgradeAtomic(t *testing.T) {
	ctx := context.Background()
	steps := append(slices.Clip(sqliteSteps), failingStep)
	for _, from := range []int{SchemaVersion, 1} {
		t.Run(fmt.Sprint("from", from), func(t *testing.T) {
			var path string
			if from == SchemaVersion {
				path = newSQLiteState(t, 500)
			} else {
				path = filepath.Join(t.TempDir(), "state.db")
				db := legacyState(t, path, from)
				legacySeed(t, db, 500)
				db.Close()
			}
			before := sqliteDump(t, path)
			_, err := openSQLite(ctx, path, Options{}, steps)
			if err == nil || !strings.Contains(err.Error(), "step failed on purpose") ||
				!strings.Contains(err.Error(), fmt.Sprintf("from version %d to %d", SchemaVersion, SchemaVersion+1)) {
				t.Fatalf("open with a failing step: %v", err)
			}
			if after := sqliteDump(t, path); !slices.Equal(after, before) {
				t.Errorf("a failed upgrade changed the state:\n%s\nwant\n%s", diffLines(after, before), diffLines(before, after))
			}
			// The real steps still open it.
			s, err := OpenSQLite(ctx, path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if recs, _, _ := readAll(t, s); len(recs) != 500 || len(recs[499].Replicas) != 2 {
				t.Errorf("%d records after the failed upgrade, want 500", len(recs))
			}
			s.Close()
		})
	}
}

// TestSQLiteUpgradeToV3Killed: the real upgrade of a version 2 state, killed
// (SIGKILL) after it wrote every new row and dropped the old tables but before it
// committed, leaves the state at version 2 as it was, and the next open upgrades it
// with nothing lost.
func TestSQLiteUpgradeToV3Killed(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	db := legacyState(t, path, 2)
	want := legacySeed(t, db, 20000)
	db.Close()
	before := sqliteDump(t, path)

	killMidway(t, upgradeV3CrashEnv, path)

	if after := sqliteDump(t, path); !slices.Equal(after, before) {
		t.Fatalf("a killed upgrade changed the state:\n%s", diffLines(after, before))
	}
	s, err := OpenSQLite(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("open after a killed upgrade: %v", err)
	}
	defer s.Close()
	got, meta, _ := readAll(t, s)
	if !reflect.DeepEqual(got, want) || meta != "d1" {
		t.Fatalf("after the upgrade: %d records (want %d), meta %q", len(got), len(want), meta)
	}
	if st := statsMatch(t, s, time.Unix(1700000000, 0).Add(RecentWindow/2)); st.Records[Copied].N != 20000 || st.Recent["copied"] != 20000 {
		t.Fatalf("the upgraded state's counts: %+v", st)
	}
}

// killMidway runs the test binary as a child with env=path, waits for it to say
// "midway", and kills it (SIGKILL).
func killMidway(t *testing.T, env, path string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "midway\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the upgrading child said %q, stderr %s", line, stderr.String())
	}
	if wal, err := os.Stat(path + "-wal"); err != nil || wal.Size() == 0 {
		t.Logf("the killed upgrade left no WAL frames (%v): the test shows less", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

func diffLines(a, b []string) string {
	var out []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			out = append(out, l)
			if len(out) == 5 {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestSQLiteRefusesNewer: a state from a newer ferry is refused by every kind of
// open, with its version and ours, and not modified.
func TestSQLiteRefusesNewer(t *testing.T) {
	ctx := context.Background()
	path := newSQLiteState(t, 100)
	setUserVersion(t, path, SchemaVersion+7)
	before := sqliteDump(t, path)
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []Options{{}, {ReadOnly: true}, {Scratch: true}} {
		s, err := Open(ctx, path, opts)
		var ne *NewerStateError
		if !errors.As(err, &ne) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("Open(%+v) of a newer state: %v, want a *NewerStateError", opts, err)
		}
		if ne.Version != SchemaVersion+7 || ne.Supported != SchemaVersion || ne.State != path ||
			!strings.Contains(err.Error(), fmt.Sprint(SchemaVersion+7)) || !strings.Contains(err.Error(), "newer ferry") {
			t.Errorf("Open(%+v): %+v: %v", opts, *ne, err)
		}
	}
	if after := sqliteDump(t, path); !slices.Equal(after, before) {
		t.Errorf("refusing a newer state changed it:\n%s", diffLines(after, before))
	}
	if now, _ := os.ReadFile(path); string(now) != string(file) {
		t.Error("refusing a newer state changed its file")
	}
}

// TestSQLiteUpgradeKilled: an upgrade killed (SIGKILL) half-way, its writes partly
// in the WAL, leaves the state at its old version with its old layout, and the
// next open upgrades it.
func TestSQLiteUpgradeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	ctx := context.Background()
	path := newSQLiteState(t, 20000)
	before := sqliteDump(t, path)

	killMidway(t, upgradeCrashEnv, path)

	if after := sqliteDump(t, path); !slices.Equal(after, before) {
		t.Fatalf("a killed upgrade changed the state:\n%s", diffLines(after, before))
	}
	s, err := openSQLite(ctx, path, Options{}, append(slices.Clip(sqliteSteps), noteStep(false)))
	if err != nil {
		t.Fatalf("open after a killed upgrade: %v", err)
	}
	defer s.Close()
	var v, notes, wrong int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow("SELECT (SELECT COUNT(*) FROM notes), (SELECT COUNT(*) FROM records WHERE note != 'n-' || key)").Scan(&notes, &wrong); err != nil {
		t.Fatal(err)
	}
	if v != SchemaVersion+1 || notes != 20000 || wrong != 0 {
		t.Errorf("after the upgrade: version %d (want %d), %d notes (want 20000), %d records without their note", v, SchemaVersion+1, notes, wrong)
	}
	if recs, meta, _ := readAll(t, s); len(recs) != 20000 || meta != "d1" || len(recs[19999].Replicas) != 2 {
		t.Errorf("after the upgrade: %d records, meta %q", len(recs), meta)
	}
}

// TestWhyNamesTheCause: the SQLite errors an operator can act on say what to do,
// among them a write lock held past the busy timeout (e.g. by an upgrade).
func TestWhyNamesTheCause(t *testing.T) {
	for code, want := range map[int]string{5: "write lock", 5 | 2<<8: "upgrading it", 13: "disk full", 8: "read-only", 1: ""} {
		got := why(fmt.Errorf("wrapped: %w", sqlite3.ExtendedErrorCode(code)))
		if want == "" && got != "" || !strings.Contains(got, want) {
			t.Errorf("why(code %d) = %q, want it to hold %q", code, got, want)
		}
	}
}

// TestSQLiteReadsVersion3InPlace: version 4 changed nothing in SQLite (it is
// PostgreSQL's), so a read-only open of a version 3 state reads the file itself, not
// an upgraded copy, and changes nothing; an open that writes stamps it version 4.
func TestSQLiteReadsVersion3InPlace(t *testing.T) {
	ctx := context.Background()
	path := newSQLiteState(t, 100)
	setUserVersion(t, path, 3)
	before := sqliteDump(t, path)
	ro, err := OpenSQLite(ctx, path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of a version 3 state: %v", err)
	}
	if ro.Reopen() {
		t.Error("a read-only open of a version 3 state copied it")
	}
	if got, meta, _ := readAll(t, ro); len(got) != 100 || meta != "d1" {
		t.Errorf("read-only: %d records, meta %q", len(got), meta)
	}
	ro.Close()
	if after := sqliteDump(t, path); !slices.Equal(after, before) {
		t.Fatalf("a read-only open changed the state:\n%s", diffLines(after, before))
	}
	s, err := OpenSQLite(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if d := sqliteDump(t, path); d[0] != fmt.Sprintf("user_version %d", SchemaVersion) || !slices.Equal(d[1:], before[1:]) {
		t.Errorf("after an open that writes: %s (want version %d, nothing else changed)", d[0], SchemaVersion)
	}
}
