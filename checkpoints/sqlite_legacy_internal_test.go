package checkpoints

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// legacyUpdatedAt is the updated_at legacySave writes.
var legacyUpdatedAt = time.Unix(1_750_000_000, 123).UTC()

// legacyState creates at path a state as a ferry of layout version v (1 or 2) left
// it: the real upgrade steps up to v and no further, its user_version v. It returns
// the database, for legacySave.
func legacyState(t *testing.T, path string, v int) *sql.DB {
	t.Helper()
	if v < 1 || v >= 3 {
		t.Fatalf("legacyState: version %d", v)
	}
	s, err := openSQLite(context.Background(), path, Options{}, sqliteSteps[:v])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.db
}

// legacySave writes recs as ferries before layout version 3 did: a row in records
// and one per replica in replicas, each an upsert that changes only what differs
// (so that version 2's triggers see the changes they count), the replicas a record
// no longer has deleted. updated_at is legacyUpdatedAt.
func legacySave(t *testing.T, db *sql.DB, recs []Record) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// Each statement prepared once per call (the same statements, without parsing
	// them again for every record).
	prepared := map[string]*sql.Stmt{}
	exec := func(query string, args ...any) {
		st, ok := prepared[query]
		if !ok {
			var err error
			if st, err = tx.PrepareContext(ctx, query); err != nil {
				t.Fatal(err)
			}
			prepared[query] = st
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	recUpsert, repUpsert := legacyUpsert("records", v2RecCols, "key", "updated_at"), legacyUpsert("replicas", v2RepCols, "key, site", "")
	for _, r := range recs {
		exec(recUpsert,
			r.Key, r.User, r.Size, string(r.State), r.SHA256, r.CRC32C, r.Source, r.TargetKey, r.TargetETag, r.TargetVersion,
			nanos(r.CopiedAt), nanos(r.VerifiedAt), r.Attempts, r.LastError, r.Conflict, nanos(legacyUpdatedAt))
		keep := []any{r.Key}
		for _, p := range r.Replicas {
			keep = append(keep, p.Site)
		}
		exec("DELETE FROM replicas WHERE key = ? AND site NOT IN ("+placeholders(len(keep)-1)+")", keep...)
		for _, p := range r.Replicas {
			exec(repUpsert,
				r.Key, p.Site, p.SiteKey, b2i(p.Primary), p.Size, p.ETag, p.Version, nanos(p.ModTime), p.SHA256,
				string(p.State), p.Stage, p.Mode, p.Handle, nanos(p.IntentAt), nanos(p.DeletedAt), nanos(p.PurgedAt), b2i(p.ConfirmedAbsent), p.LastError)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// legacyUpsert is the upsert of cols into table that ferries before version 3
// wrote: on a conflict on the key columns it updates the other columns only where
// one of them (but ignore) differs.
func legacyUpsert(table, cols, key, ignore string) string {
	keys := map[string]bool{}
	for _, k := range strings.Split(key, ",") {
		keys[strings.TrimSpace(k)] = true
	}
	list := strings.Split(cols, ",")
	var set, differ []string
	for _, c := range list {
		c = strings.TrimSpace(c)
		if keys[c] {
			continue
		}
		set = append(set, c+" = excluded."+c)
		if c != ignore {
			differ = append(differ, table+"."+c+" IS NOT excluded."+c)
		}
	}
	return "INSERT INTO " + table + "(" + cols + ") VALUES(" + placeholders(len(list)) + ") ON CONFLICT(" + key + ") DO UPDATE SET " +
		strings.Join(set, ", ") + " WHERE " + strings.Join(differ, " OR ")
}

// TestLegacyStateIsOld: legacyState and legacySave write the old layout, at its
// version, which the upgrade then has to convert (the tests built on them would
// prove nothing against a state that is already new).
func TestLegacyStateIsOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := legacyState(t, path, 2)
	legacySave(t, db, seedRecords(10))
	var v, reps int
	if err := db.QueryRow("SELECT (SELECT COUNT(*) FROM replicas), (SELECT COUNT(*) FROM pragma_table_info('records') WHERE name = 'attempts')").Scan(&reps, &v); err != nil {
		t.Fatal(err)
	}
	if reps != 20 || v != 1 {
		t.Fatalf("legacy state: %d replica rows, attempts column %d", reps, v)
	}
	if v, _ := sqliteVersion(context.Background(), db); v != 2 {
		t.Fatalf("legacy state at version %d", v)
	}
}
