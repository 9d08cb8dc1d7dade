package checkpoints

import (
	"context"
	"time"
)

// Version 2 of the SQLite layout keeps Stats' counts as the records and replicas
// change, so that status and each phase's start and end read a few dozen rows
// instead of scanning every record and replica (seconds at 10 million records):
//
//   - tallies holds, per kind and group, the number of rows and their bytes:
//     (rec, state, empty), (rep, site, state), (stage, stage, state). Groups that
//     fall to zero rows stay with n = 0.
//   - events holds, per kind (copied, verified, deleted) and second, how many records
//     (replicas for deleted) carry that second as their copied_at, verified_at or
//     deleted_at: Recent sums the seconds of its window.
//
// In version 2, triggers on records and replicas kept both in the same transaction as
// the change; the upgrade from version 1 fills them from the rows (dropping any it
// finds first: it rebuilds them from the rows whenever it runs). Version 3 keeps the
// replicas inside their record's row, where no trigger sees them: Save, the one
// writer of records, keeps the counts in Go from the row it replaces and the one it
// writes, in the same transaction (tallies, below), and the upgrade to version 3
// drops the triggers and counts the rows afresh as it converts them
// (sqlite_upgrade.go). PostgreSQL has no such tables: many workers write its state
// at once, and one counter row per group would serialise them.
var sqliteV2 = `
DROP TRIGGER IF EXISTS records_tally_ins; DROP TRIGGER IF EXISTS records_tally_del; DROP TRIGGER IF EXISTS records_tally_upd;
DROP TRIGGER IF EXISTS records_copied_upd; DROP TRIGGER IF EXISTS records_verified_upd;
DROP TRIGGER IF EXISTS replicas_tally_ins; DROP TRIGGER IF EXISTS replicas_tally_del; DROP TRIGGER IF EXISTS replicas_tally_upd;
DROP TRIGGER IF EXISTS replicas_deleted_upd;
DROP TABLE IF EXISTS tallies; DROP TABLE IF EXISTS events;
CREATE TABLE tallies(
	kind TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL,
	n INTEGER NOT NULL, bytes INTEGER NOT NULL,
	PRIMARY KEY(kind, a, b)
) WITHOUT ROWID;
CREATE TABLE events(
	kind TEXT NOT NULL, sec INTEGER NOT NULL, n INTEGER NOT NULL,
	PRIMARY KEY(kind, sec)
) WITHOUT ROWID;

INSERT INTO tallies SELECT 'rec', state, '', COUNT(*), COALESCE(SUM(size), 0) FROM records GROUP BY state;
INSERT INTO tallies SELECT 'rep', site, state, COUNT(*), COALESCE(SUM(size), 0) FROM replicas GROUP BY site, state;
INSERT INTO tallies SELECT 'stage', stage, state, COUNT(*), COALESCE(SUM(size), 0) FROM replicas WHERE stage != '' GROUP BY stage, state;
INSERT INTO events SELECT 'copied', copied_at / 1000000000, COUNT(*) FROM records WHERE copied_at > 0 GROUP BY 2;
INSERT INTO events SELECT 'verified', verified_at / 1000000000, COUNT(*) FROM records WHERE verified_at > 0 GROUP BY 2;
INSERT INTO events SELECT 'deleted', deleted_at / 1000000000, COUNT(*) FROM replicas WHERE deleted_at > 0 GROUP BY 2;
` + tallyTriggers

// tallyTriggers: each change adds its new row to its groups and takes its old row
// out. An UPDATE trigger fires only when a counted column changed.
var tallyTriggers = `
CREATE TRIGGER records_tally_ins AFTER INSERT ON records BEGIN
	` + tallyAdd("'rec'", "NEW.state", "''", "1", "NEW.size") + `
	` + eventAdd("copied", "NEW.copied_at", "1") + `
	` + eventAdd("verified", "NEW.verified_at", "1") + `
END;
CREATE TRIGGER records_tally_del AFTER DELETE ON records BEGIN
	` + tallyAdd("'rec'", "OLD.state", "''", "-1", "-OLD.size") + `
	` + eventAdd("copied", "OLD.copied_at", "-1") + `
	` + eventAdd("verified", "OLD.verified_at", "-1") + `
END;
CREATE TRIGGER records_tally_upd AFTER UPDATE OF state, size ON records
WHEN OLD.state IS NOT NEW.state OR OLD.size IS NOT NEW.size BEGIN
	` + tallyAdd("'rec'", "OLD.state", "''", "-1", "-OLD.size") + `
	` + tallyAdd("'rec'", "NEW.state", "''", "1", "NEW.size") + `
END;
CREATE TRIGGER records_copied_upd AFTER UPDATE OF copied_at ON records
WHEN OLD.copied_at IS NOT NEW.copied_at BEGIN
	` + eventAdd("copied", "OLD.copied_at", "-1") + `
	` + eventAdd("copied", "NEW.copied_at", "1") + `
END;
CREATE TRIGGER records_verified_upd AFTER UPDATE OF verified_at ON records
WHEN OLD.verified_at IS NOT NEW.verified_at BEGIN
	` + eventAdd("verified", "OLD.verified_at", "-1") + `
	` + eventAdd("verified", "NEW.verified_at", "1") + `
END;
CREATE TRIGGER replicas_tally_ins AFTER INSERT ON replicas BEGIN
	` + repTally("NEW", "1") + `
	` + eventAdd("deleted", "NEW.deleted_at", "1") + `
END;
CREATE TRIGGER replicas_tally_del AFTER DELETE ON replicas BEGIN
	` + repTally("OLD", "-1") + `
	` + eventAdd("deleted", "OLD.deleted_at", "-1") + `
END;
CREATE TRIGGER replicas_tally_upd AFTER UPDATE OF site, state, stage, size ON replicas
WHEN OLD.site IS NOT NEW.site OR OLD.state IS NOT NEW.state OR OLD.stage IS NOT NEW.stage OR OLD.size IS NOT NEW.size BEGIN
	` + repTally("OLD", "-1") + `
	` + repTally("NEW", "1") + `
END;
CREATE TRIGGER replicas_deleted_upd AFTER UPDATE OF deleted_at ON replicas
WHEN OLD.deleted_at IS NOT NEW.deleted_at BEGIN
	` + eventAdd("deleted", "OLD.deleted_at", "-1") + `
	` + eventAdd("deleted", "NEW.deleted_at", "1") + `
END;
`

// tallyAdd adds n rows of bytes to the group (kind, a, b).
func tallyAdd(kind, a, b, n, bytes string) string {
	return "INSERT INTO tallies(kind, a, b, n, bytes) VALUES(" + kind + ", " + a + ", " + b + ", " + n + ", " + bytes + ")" +
		" ON CONFLICT(kind, a, b) DO UPDATE SET n = n + excluded.n, bytes = bytes + excluded.bytes;"
}

// repTally adds (sign 1) or takes out (-1) the replica row (NEW or OLD) in its site's
// and, when it has one, its stage's groups.
func repTally(row, sign string) string {
	return tallyAdd("'rep'", row+".site", row+".state", sign, sign+"*"+row+".size") + `
	INSERT INTO tallies(kind, a, b, n, bytes) SELECT 'stage', ` + row + `.stage, ` + row + `.state, ` + sign + `, ` + sign + `*` + row + `.size
		WHERE ` + row + `.stage != '' ON CONFLICT(kind, a, b) DO UPDATE SET n = n + excluded.n, bytes = bytes + excluded.bytes;`
}

// eventAdd counts n events of kind at the second of the nanosecond time t (none when
// t is 0: no such event).
func eventAdd(kind, t, n string) string {
	return "INSERT INTO events(kind, sec, n) SELECT '" + kind + "', " + t + " / 1000000000, " + n + " WHERE " + t + " > 0" +
		" ON CONFLICT(kind, sec) DO UPDATE SET n = n + excluded.n;"
}

// tallies is what one Save transaction changes in the tallies and events: each
// record row it writes adds its new record (sign 1) and takes out the one it
// replaces (-1). Layout version 3 keeps them in Go: the replicas are inside the
// record's data, where no trigger sees them.
type tallies struct {
	groups map[tallyKey]Count
	events map[eventKey]int64
}

type tallyKey struct{ kind, a, b string }

type eventKey struct {
	kind string
	sec  int64
}

// add counts r, with its replicas reps, into its groups sign times (1 or -1).
func (t *tallies) add(r *Record, reps []Replica, sign int64) {
	if t.groups == nil {
		t.groups, t.events = map[tallyKey]Count{}, map[eventKey]int64{}
	}
	t.group(tallyKey{"rec", string(r.State), ""}, sign, r.Size)
	t.event("copied", r.CopiedAt, sign)
	t.event("verified", r.VerifiedAt, sign)
	for i := range reps {
		p := &reps[i]
		t.group(tallyKey{"rep", p.Site, string(p.State)}, sign, p.Size)
		if p.Stage != "" {
			t.group(tallyKey{"stage", p.Stage, string(p.State)}, sign, p.Size)
		}
		t.event("deleted", p.DeletedAt, sign)
	}
}

func (t *tallies) group(k tallyKey, sign, bytes int64) {
	c := t.groups[k]
	c.N += sign
	c.Bytes += sign * bytes
	t.groups[k] = c
}

// event counts an event at the second of at (none when at is zero: no such event).
func (t *tallies) event(kind string, at time.Time, sign int64) {
	if n := nanos(at); n > 0 {
		t.events[eventKey{kind, n / int64(time.Second)}] += sign
	}
}

// flush adds the changes to the tallies and events tables, a statement per
// tallyRows groups or events; changes that cancel out are not written.
func (t *tallies) flush(tx *sqliteTx) error {
	const tallyRows = 128
	var args []any
	n := 0
	write := func(q string, cols int, last bool) error {
		if n == 0 || (n < tallyRows && !last) {
			return nil
		}
		err := tx.exec(upsertRows(q, cols, n), args)
		args, n = args[:0], 0
		return err
	}
	for k, c := range t.groups {
		if c.N == 0 && c.Bytes == 0 {
			continue
		}
		args, n = append(args, k.kind, k.a, k.b, c.N, c.Bytes), n+1
		if err := write(tallyUpsert, 5, false); err != nil {
			return err
		}
	}
	if err := write(tallyUpsert, 5, true); err != nil {
		return err
	}
	for k, d := range t.events {
		if d == 0 {
			continue
		}
		args, n = append(args, k.kind, k.sec, d), n+1
		if err := write(eventUpsert, 3, false); err != nil {
			return err
		}
	}
	return write(eventUpsert, 3, true)
}

const (
	tallyUpsert = "INSERT INTO tallies(kind, a, b, n, bytes) VALUES(?,?,?,?,?)" +
		" ON CONFLICT(kind, a, b) DO UPDATE SET n = n + excluded.n, bytes = bytes + excluded.bytes"
	eventUpsert = "INSERT INTO events(kind, sec, n) VALUES(?,?,?) ON CONFLICT(kind, sec) DO UPDATE SET n = n + excluded.n"
)

// statsFromTallies fills st's counts from the tallies and events (version 2).
func (s *SQLite) statsFromTallies(ctx context.Context, st *Stats, now time.Time) error {
	tx, err := s.begin(ctx, true)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "SELECT kind, a, b, n, bytes FROM tallies WHERE n != 0")
	if err != nil {
		return err
	}
	for rows.Next() {
		var kind, a, b string
		var c Count
		if err := rows.Scan(&kind, &a, &b, &c.N, &c.Bytes); err != nil {
			rows.Close()
			return err
		}
		switch kind {
		case "rec":
			st.Records[RecordState(a)] = c
		case "rep", "stage":
			m := st.ReplicasSite
			if kind == "stage" {
				m = st.StageCounts
			}
			addReplicas(m, a, ReplicaState(b), c) // one row per (kind, a, b)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	// A time t is in the window when t > since; its second is then >= since's second
	// (the window is counted in whole seconds: at most one second more).
	since := now.Add(-RecentWindow).Unix()
	for _, kind := range []string{"copied", "verified", "deleted"} {
		var n int64
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(SUM(n), 0) FROM events WHERE kind = ? AND sec >= ?", kind, since).Scan(&n); err != nil {
			return err
		}
		st.Recent[kind] = n
	}
	return nil
}
