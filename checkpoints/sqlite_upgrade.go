package checkpoints

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The upgrade of a SQLite state from layout version 2 (a records table and a
// replicas table, one row per replica, tallies kept by triggers) to version 3 (one
// row per record, its replicas inside the row's data: record_codec.go).
//
// It runs inside the upgrade's one transaction (checkVersion): it reads the old
// rows page by page in key order, writes each record as one new row into a new
// table and counts it into fresh tallies, then drops the old tables and triggers and
// puts the new table in their place. A crash or an error anywhere leaves the state
// at version 2 as it was; the next open starts over.

// v2RecCols and v2RepCols are version 2's record and replica columns.
const (
	v2RecCols = "key, user, size, state, sha256, crc32c, source, target_key, target_etag, target_version, copied_at, verified_at, attempts, last_error, conflict, updated_at"
	v2RepCols = "key, site, site_key, primary_site, size, etag, version, mtime, sha256, state, stage, mode, handle, intent_at, deleted_at, purged_at, confirmed_absent, last_error"
)

// sqliteV3 creates version 3's records table (the upgrade renames it to records).
const sqliteV3 = `
DROP TRIGGER IF EXISTS records_tally_ins; DROP TRIGGER IF EXISTS records_tally_del; DROP TRIGGER IF EXISTS records_tally_upd;
DROP TRIGGER IF EXISTS records_copied_upd; DROP TRIGGER IF EXISTS records_verified_upd;
DROP TRIGGER IF EXISTS replicas_tally_ins; DROP TRIGGER IF EXISTS replicas_tally_del; DROP TRIGGER IF EXISTS replicas_tally_upd;
DROP TRIGGER IF EXISTS replicas_deleted_upd;
CREATE TABLE records_v3(
	key TEXT PRIMARY KEY,
	user TEXT NOT NULL,
	state TEXT NOT NULL,
	stages TEXT NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL DEFAULT 0,
	data BLOB NOT NULL
) WITHOUT ROWID;
`

// sqliteV3Done puts the new table in place of the old ones.
const sqliteV3Done = `
DROP TABLE records;
DROP TABLE replicas;
ALTER TABLE records_v3 RENAME TO records;
CREATE INDEX records_state ON records(state, key);
CREATE INDEX records_user ON records(user, key);
DELETE FROM tallies;
DELETE FROM events;
`

// upgradePage is how many records the upgrade reads at a time.
const upgradePage = 1024

// upgradeToV3 is the step from version 2 to 3.
func upgradeToV3(ctx context.Context, tx *sqliteTx) error {
	// A replica row without its record (which no ferry writes) would have no row to
	// go into: refuse rather than drop what it says.
	var orphan string
	err := tx.QueryRowContext(ctx, "SELECT p.key FROM replicas p WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.key = p.key) LIMIT 1").Scan(&orphan)
	if err == nil {
		return fmt.Errorf("replicas of %q are stored without their record: the state is inconsistent, keep a copy of it and report this", orphan)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if _, err := tx.ExecContext(ctx, sqliteV3); err != nil {
		return err
	}
	var t tallies
	after, first := "", true
	for {
		recs, err := readV2Page(ctx, tx, after, first)
		if err != nil {
			return err
		}
		for i := 0; i < len(recs); i += saveChunk {
			chunk := recs[i:min(i+saveChunk, len(recs))]
			args := make([]any, 0, len(chunk)*6)
			for j := range chunk {
				r := &chunk[j]
				// The old rows are already one per site, in site order.
				args = append(args, r.Key, r.User, string(r.State), stagesOf(r.Replicas), nanos(r.UpdatedAt), encodeRecord(nil, r, r.Replicas))
				t.add(r, r.Replicas, 1)
			}
			if err := tx.exec(upsertRows("INSERT INTO records_v3("+recCols+") VALUES(?,?,?,?,?,?)", 6, len(chunk)), args); err != nil {
				return err
			}
		}
		if len(recs) < upgradePage {
			break
		}
		after, first = recs[len(recs)-1].Key, false
	}
	if _, err := tx.ExecContext(ctx, sqliteV3Done); err != nil {
		return err
	}
	return t.flush(tx)
}

// readV2Page reads a page of version 2's records, with their replicas, from after
// on (first) or above it.
func readV2Page(ctx context.Context, tx *sqliteTx, after string, first bool) ([]Record, error) {
	op := ">"
	if first {
		op = ">="
	}
	rows, err := tx.QueryContext(ctx, "SELECT "+v2RecCols+" FROM records WHERE key "+op+" ? ORDER BY key LIMIT ?", after, upgradePage)
	if err != nil {
		return nil, err
	}
	var page []Record
	for rows.Next() {
		var r Record
		var st string
		var cp, vf, up int64
		if err := rows.Scan(&r.Key, &r.User, &r.Size, &st, &r.SHA256, &r.CRC32C, &r.Source, &r.TargetKey, &r.TargetETag, &r.TargetVersion,
			&cp, &vf, &r.Attempts, &r.LastError, &r.Conflict, &up); err != nil {
			rows.Close()
			return nil, err
		}
		r.State = RecordState(st)
		r.CopiedAt, r.VerifiedAt, r.UpdatedAt = fromNanos(cp), fromNanos(vf), fromNanos(up)
		page = append(page, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(page) == 0 {
		return nil, err
	}
	idx := make(map[string]int, len(page))
	for i, r := range page {
		idx[r.Key] = i
	}
	rows, err = tx.QueryContext(ctx, "SELECT "+v2RepCols+" FROM replicas WHERE key >= ? AND key <= ? ORDER BY key, site",
		page[0].Key, page[len(page)-1].Key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var key, st string
		var p Replica
		var mt, in, de, pu int64
		var prim, abs int
		if err := rows.Scan(&key, &p.Site, &p.SiteKey, &prim, &p.Size, &p.ETag, &p.Version, &mt, &p.SHA256, &st, &p.Stage, &p.Mode, &p.Handle,
			&in, &de, &pu, &abs, &p.LastError); err != nil {
			return nil, err
		}
		p.State = ReplicaState(st)
		p.Primary, p.ConfirmedAbsent = prim != 0, abs != 0
		p.ModTime, p.IntentAt, p.DeletedAt, p.PurgedAt = fromNanos(mt), fromNanos(in), fromNanos(de), fromNanos(pu)
		if i, ok := idx[key]; ok {
			page[i].Replicas = append(page[i].Replicas, p)
		}
	}
	return page, rows.Err()
}
