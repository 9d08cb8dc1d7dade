package checkpoints

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"
	"github.com/jackc/pgx/v5"
)

// From layout version 4 on, a PostgreSQL state keeps a record's replicas inside the
// record's row, as a jsonb array in the replicas column (one object per site, in
// site order): a Save writes one row per record, and only a record that changed.
// SQL still reaches into the replicas where it must: Stats' counts and the
// unlisted replicas take each replica out of the array (jsonb_array_elements, its
// fields by ->>), a stage's filter asks whether the array contains a replica of the
// stage (@>, which takes nothing out: about 3.7x faster than the former).
//
// The column is encoded and decoded with goccy/go-json, encoding/json's API: it
// decodes a page of records 1.9x faster (BenchmarkPostgresRecordsScan), where
// encoding/json's reflection was a fifth of the pipeline's CPU on PostgreSQL.
//
// Each object has the replica's fields under its version 1 column names (pgRepCols
// without key); a field at its zero value is left out, so that a replica costs
// only what it holds. The upgrade from version 3 (pgToV4SQL) and the read-only
// view of an older state (pgLegacyRecords) build the same objects in SQL.
type pgReplica struct {
	Site            string `json:"site"`
	SiteKey         string `json:"site_key,omitempty"`
	Primary         bool   `json:"primary_site,omitempty"`
	Size            int64  `json:"size,omitempty"`
	ETag            string `json:"etag,omitempty"`
	Version         string `json:"version,omitempty"`
	ModTime         int64  `json:"mtime,omitempty"`
	SHA256          string `json:"sha256,omitempty"`
	State           string `json:"state"`
	Stage           string `json:"stage,omitempty"`
	Mode            string `json:"mode,omitempty"`
	Handle          string `json:"handle,omitempty"`
	IntentAt        int64  `json:"intent_at,omitempty"`
	DeletedAt       int64  `json:"deleted_at,omitempty"`
	PurgedAt        int64  `json:"purged_at,omitempty"`
	ConfirmedAbsent bool   `json:"confirmed_absent,omitempty"`
	LastError       string `json:"last_error,omitempty"`
}

// pgReplicasJSON is the replicas column of record r: one object per site (a later
// replica of a site replaces an earlier one), in site order. Every text must be
// storable (pgText); a last error is cut to what PostgreSQL stores (pgMessage).
func pgReplicasJSON(r *Record) (string, error) {
	reps := make([]pgReplica, 0, len(r.Replicas))
	for j := range r.Replicas {
		p := &r.Replicas[j]
		if slices.ContainsFunc(r.Replicas[j+1:], func(q Replica) bool { return q.Site == p.Site }) {
			continue
		}
		if err := checkText("record "+strconv.Quote(r.Key), "site", p.Site, "site key", p.SiteKey, "etag", p.ETag, "version", p.Version,
			"sha256", p.SHA256, "replica state", string(p.State), "stage", p.Stage, "mode", p.Mode, "handle", p.Handle); err != nil {
			return "", err
		}
		reps = append(reps, pgReplica{
			Site: p.Site, SiteKey: p.SiteKey, Primary: p.Primary, Size: p.Size, ETag: p.ETag, Version: p.Version,
			ModTime: nanos(p.ModTime), SHA256: p.SHA256, State: string(p.State), Stage: p.Stage, Mode: p.Mode, Handle: p.Handle,
			IntentAt: nanos(p.IntentAt), DeletedAt: nanos(p.DeletedAt), PurgedAt: nanos(p.PurgedAt),
			ConfirmedAbsent: p.ConfirmedAbsent, LastError: pgMessage(p.LastError),
		})
	}
	slices.SortStableFunc(reps, func(a, b pgReplica) int { return strings.Compare(a.Site, b.Site) })
	b, err := json.Marshal(reps)
	return string(b), err
}

// pgContains is the JSON of an array holding one object with fields: what a
// replicas column contains (@>) when one of its replicas has those values.
func pgContains(fields map[string]string) string {
	b, _ := json.Marshal([]map[string]string{fields}) // strings only: cannot fail
	return string(b)
}

// pgReplicasFrom decodes a replicas column; nil for a record without replicas.
func pgReplicasFrom(key string, data []byte) ([]Replica, error) {
	var reps []pgReplica
	if err := json.Unmarshal(data, &reps); err != nil {
		return nil, fmt.Errorf("record %q: its replicas: %w", key, err)
	}
	if len(reps) == 0 {
		return nil, nil
	}
	out := make([]Replica, len(reps))
	for i, p := range reps {
		out[i] = Replica{
			Site: p.Site, SiteKey: p.SiteKey, Primary: p.Primary, Size: p.Size, ETag: p.ETag, Version: p.Version,
			ModTime: fromNanos(p.ModTime), SHA256: p.SHA256, State: ReplicaState(p.State), Stage: p.Stage, Mode: p.Mode,
			Handle: p.Handle, IntentAt: fromNanos(p.IntentAt), DeletedAt: fromNanos(p.DeletedAt), PurgedAt: fromNanos(p.PurgedAt),
			ConfirmedAbsent: p.ConfirmedAbsent, LastError: p.LastError,
		}
	}
	return out, nil
}

// pgReplicasAgg is the replicas column built, in SQL, from the version 1 replicas
// table's rows p of one record: the objects pgReplicasJSON writes, zero values left
// out, in site order; '[]' for a record without replicas.
const pgReplicasAgg = `COALESCE(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
	'site', p.site, 'site_key', NULLIF(p.site_key, ''), 'primary_site', NULLIF(p.primary_site, false),
	'size', NULLIF(p.size, 0), 'etag', NULLIF(p.etag, ''), 'version', NULLIF(p.version, ''),
	'mtime', NULLIF(p.mtime, 0), 'sha256', NULLIF(p.sha256, ''), 'state', p.state, 'stage', NULLIF(p.stage, ''),
	'mode', NULLIF(p.mode, ''), 'handle', NULLIF(p.handle, ''), 'intent_at', NULLIF(p.intent_at, 0),
	'deleted_at', NULLIF(p.deleted_at, 0), 'purged_at', NULLIF(p.purged_at, 0),
	'confirmed_absent', NULLIF(p.confirmed_absent, false), 'last_error', NULLIF(p.last_error, '')))
	ORDER BY p.site), '[]'::jsonb)`

// pgToV4 takes a state from version 3 to 4: each record's replica rows move into
// its row, and the replicas table goes. A replica row without its record (no ferry
// writes one) stops the upgrade rather than being dropped.
func pgToV4(ctx context.Context, tx pgx.Tx, sql func(string) string) error {
	var orphans int64
	var example string
	if err := tx.QueryRow(ctx, sql(`SELECT count(*), COALESCE(min(p.key), '') FROM @.replicas p
		WHERE NOT EXISTS (SELECT 1 FROM @.records r WHERE r.key = p.key)`)).Scan(&orphans, &example); err != nil {
		return err
	}
	if orphans > 0 {
		return fmt.Errorf("%d replica rows have no record (the first of key %q): the state was changed by hand; nothing was upgraded", orphans, example)
	}
	for _, q := range []string{
		`ALTER TABLE @.records ADD COLUMN replicas jsonb NOT NULL DEFAULT '[]'::jsonb`,
		`UPDATE @.records r SET replicas = a.replicas
			FROM (SELECT p.key, ` + pgReplicasAgg + ` AS replicas FROM @.replicas p GROUP BY p.key) a
			WHERE a.key = r.key`,
		`DROP TABLE @.replicas`,
	} {
		if _, err := tx.Exec(ctx, sql(q)); err != nil {
			return err
		}
	}
	return nil
}

// pgOneRowVersion is the first layout version whose replicas are in their record's
// row.
const pgOneRowVersion = 4

// pgLegacyRecords is what a read-only open of an older state (version 3 or less,
// which it may not upgrade) reads in place of the records table: the records with
// the replicas column built from the replicas table, as the upgrade would build
// it. Every read of the store names its records "FROM @.records r".
const pgLegacyRecords = `(SELECT r0.*, (SELECT ` + pgReplicasAgg + ` FROM @.replicas p WHERE p.key = r0.key) AS replicas FROM @.records r0)`

// pgTable is one of the store's tables and the columns a dry run's copy copies.
type pgTable struct{ name, cols string }

// pgTablesAt lists the tables of layout version v with their columns, in creation
// order (an unversioned state, version 0, has version 1's tables).
func pgTablesAt(v int) []pgTable {
	ts := []pgTable{
		{"meta", "k, v"},
		{"records", pgRecCols},
		{"replicas", pgRepCols},
		{"listing", pgListCols},
		{"stages", pgStageCols},
		{"lock", pgLockCols},
		{"workers", pgWorkerCols},
		{"claims", pgClaimCols},
		{"journal", "stream, first_seq, last_seq, lines"},
	}
	if v >= pgOneRowVersion {
		ts[1].cols += ", replicas"
		ts = slices.Delete(ts, 2, 3)
	}
	return ts
}

// pgTableNames is every table name of any version.
func pgTableNames() []string {
	var names []string
	for _, t := range pgTablesAt(0) {
		names = append(names, t.name)
	}
	return names
}

// hasTables reports whether have holds every table of version v.
func hasTables(have map[string]bool, v int) bool {
	for _, t := range pgTablesAt(v) {
		if !have[t.name] {
			return false
		}
	}
	return true
}
