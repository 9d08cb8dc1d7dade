package checkpoints

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// keysetDialect is what differs between the stores' SQL for listing records: table
// and column names, placeholders, a set of values, and how keys are bounded. Both
// stores page through records with the same query (recordsQuery) and the same loop
// (keysetRecords).
type keysetDialect struct {
	records, listing string // table names as the store writes them
	cols             string // the record columns, each prefixed with "r."
	user             string // the user column
	// placeholder is the n-th (from 1) argument's placeholder.
	placeholder func(n int) string
	// anyOf is "col is one of vals" (vals is placed with arg).
	anyOf func(arg func(any) string, col string, vals []string) string
	// after bounds the key column col from below on a page: above after, or from
	// after on the first page of a query without After (after is then "").
	after func(arg func(any) string, col, after string, first bool) []string
	// through bounds the key column col from above (through is not "").
	through func(arg func(any) string, col, through string) []string
	// stage is the filter for a Query's Stage and ReplicaStates. It may keep more
	// records than match (SQLite's keeps the rows whose stages column names the
	// stage); keysetRecords checks every record read with Query.matches.
	stage func(arg func(any) string, q Query) string
}

var sqliteKeyset = &keysetDialect{
	records: "records", listing: "listing", cols: prefixed("r.", readCols), user: "r.user",
	placeholder: func(int) string { return "?" },
	anyOf: func(arg func(any) string, col string, vals []string) string {
		ph := make([]string, len(vals))
		for i, v := range vals {
			ph[i] = arg(v)
		}
		return col + " IN (" + strings.Join(ph, ",") + ")"
	},
	after: func(arg func(any) string, col, after string, first bool) []string {
		// Always a bound (>= '' on a first page): it keeps SQLite on the primary key.
		if first && after == "" {
			return []string{col + " >= " + arg(after)}
		}
		return []string{col + " > " + arg(after)}
	},
	through: func(arg func(any) string, col, through string) []string {
		return []string{col + " <= " + arg(through)}
	},
	// The replicas are inside the row's data: the stages column narrows the rows to
	// those with a replica in the stage, the decoded replicas decide.
	stage: func(arg func(any) string, q Query) string {
		return "instr(r.stages, " + arg(stageNeedle(q.Stage)) + ") > 0"
	},
}

var pgKeyset = &keysetDialect{
	records: "@.records", listing: "@.listing", cols: prefixed("r.", pgReadCols), user: "r.user_name",
	placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
	anyOf: func(arg func(any) string, col string, vals []string) string {
		return col + " = ANY(" + arg(vals) + "::text[])"
	},
	after: func(arg func(any) string, col, after string, first bool) []string {
		switch {
		case !first:
			return []string{col + " > " + arg(after)}
		case after == "":
			return nil
		case pgText(after):
			return []string{col + " > " + arg(after)}
		default:
			// An After no stored key can equal (a NUL, invalid UTF-8): compare bytes,
			// from the longest prefix of it that is text (for the index).
			var w []string
			if p := pgTextPrefix(after); p != "" {
				w = append(w, col+" >= "+arg(p))
			}
			return append(w, "convert_to("+col+", 'UTF8') > "+arg([]byte(after)))
		}
	},
	through: func(arg func(any) string, col, through string) []string {
		if pgText(through) {
			return []string{col + " <= " + arg(through)}
		}
		return []string{"convert_to(" + col + ", 'UTF8') <= " + arg([]byte(through))}
	},
	stage: func(arg func(any) string, q Query) string {
		// Exact, by jsonb containment: the row's replicas hold an object with this
		// stage (and one of the states). No replica is taken out of the row.
		var alts []string
		for _, st := range q.ReplicaStates {
			alts = append(alts, pgContains(map[string]string{"stage": q.Stage, "state": string(st)}))
		}
		if len(alts) == 0 {
			alts = []string{pgContains(map[string]string{"stage": q.Stage})}
		}
		return "r.replicas @> ANY(" + arg(alts) + "::text[]::jsonb[])"
	},
}

// binder returns arg, which adds a query argument and returns its placeholder, and
// the arguments added so far.
func (d *keysetDialect) binder() (func(any) string, *[]any) {
	args := new([]any)
	return func(v any) string {
		*args = append(*args, v)
		return d.placeholder(len(*args))
	}, args
}

// recordsQuery is the query for one page of records matching q: keys above after
// (from after on, on the first page), at most limit of them, in key order.
func (d *keysetDialect) recordsQuery(q Query, after string, first bool, limit int) (string, []any) {
	var where []string
	arg, args := d.binder()
	where = append(where, d.after(arg, "r.key", after, first)...)
	if q.Through != "" {
		where = append(where, d.through(arg, "r.key", q.Through)...)
	}
	if len(q.States) > 0 {
		where = append(where, d.anyOf(arg, "r.state", strs(q.States)))
	}
	if q.User != "" {
		where = append(where, d.user+" = "+arg(q.User))
	}
	if q.Stage != "" {
		where = append(where, d.stage(arg, q))
	}
	query := "SELECT " + d.cols + " FROM " + d.records + " r"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY r.key LIMIT " + arg(limit)
	return query, *args
}

func strs[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}

// matches reports whether r has a replica in q's Stage (in one of q's
// ReplicaStates, if any): the part of q a store may not filter exactly in SQL. A
// query without a Stage matches every record.
func (q Query) matches(r *Record) bool {
	if q.Stage == "" {
		return true
	}
	for _, p := range r.Replicas {
		if p.Stage == q.Stage && (len(q.ReplicaStates) == 0 || slices.Contains(q.ReplicaStates, p.State)) {
			return true
		}
	}
	return false
}

// keysetRecords calls fn for each record matching q, in key order, reading pages of
// at most page records with read (one read transaction per page, ended before fn
// runs: fn may write). Each page starts after the last key of the one before.
func keysetRecords(ctx context.Context, d *keysetDialect, q Query, page int,
	read func(ctx context.Context, query string, args []any) ([]Record, error), fn func(Record) error) error {
	after, first := q.After, true
	total := 0
	for {
		limit := page
		if q.Limit > 0 && q.Stage == "" && q.Limit-total < limit {
			// (With a Stage a page may hold records that do not match.)
			limit = q.Limit - total
		}
		query, args := d.recordsQuery(q, after, first, limit)
		recs, err := read(ctx, query, args)
		if err != nil {
			return err
		}
		for i := range recs {
			if !q.matches(&recs[i]) {
				continue
			}
			if err := fn(recs[i]); err != nil {
				return err
			}
			if total++; q.Limit > 0 && total >= q.Limit {
				return nil
			}
		}
		if len(recs) < limit {
			return nil
		}
		after, first = recs[len(recs)-1].Key, false
	}
}

// ---- the staged listing ----

// listedQuery is the query for one page of the staged listing: rows with keys above
// after (from after on, on the first page), in (key, site) order.
func (d *keysetDialect) listedQuery(after string, first bool, limit int) (string, []any) {
	arg, args := d.binder()
	where := d.after(arg, "l.key", after, first)
	q := "SELECT l.key, l.site, l.site_key, l.size, l.etag, l.version, l.mtime, l.sha256 FROM " + d.listing + " l"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY l.key, l.site LIMIT " + arg(limit)
	return q, *args
}

// keysetListed calls fn with each key of the staged listing and its rows (one per
// site), in key order, reading pages of at most page rows with read (each page one
// statement, so one snapshot, and a key's rows are never split between pages).
func keysetListed(ctx context.Context, d *keysetDialect, page int,
	read func(ctx context.Context, query string, args []any) ([]Listed, error), fn func(key string, objs []Listed) error) error {
	after, first := "", true
	for {
		query, args := d.listedQuery(after, first, page)
		rows, err := read(ctx, query, args)
		if err != nil {
			return err
		}
		next, more, err := groupListed(rows, page, fn)
		if err != nil || !more {
			return err
		}
		after, first = next, false
	}
}

// unlistedStates are the replica states that say "still at the site": a replica in
// one of them that the staged listing lacks has vanished.
var unlistedStates = []string{string(Present), string(Identical), string(Divergent), string(Restored)}

// unlistedQuery is the query for one page of the replicas at sites, in a state that
// says they are there, that the staged listing lacks: (key, site) in that order.
// PostgreSQL's: it reads the replicas out of each row's jsonb. SQLite's replicas are
// encoded in their record's row, and it finds the unlisted ones in Go
// (SQLite.Unlisted).
func (d *keysetDialect) unlistedQuery(sites []string, after string, first bool, limit int) (string, []any) {
	arg, args := d.binder()
	where := []string{d.anyOf(arg, "p->>'site'", sites), d.anyOf(arg, "p->>'state'", unlistedStates)}
	where = append(where, d.after(arg, "r.key", after, first)...)
	where = append(where, "NOT EXISTS (SELECT 1 FROM "+d.listing+" l WHERE l.key = COALESCE(p->>'site_key', '') AND l.site = p->>'site')")
	q := "SELECT r.key, p->>'site' FROM " + d.records + " r CROSS JOIN LATERAL jsonb_array_elements(r.replicas) p WHERE " +
		strings.Join(where, " AND ") + " ORDER BY r.key, p->>'site' LIMIT " + arg(limit)
	return q, *args
}

// recordsByKeyQuery is the query for the records with the given keys, in key order.
func (d *keysetDialect) recordsByKeyQuery(keys []string) (string, []any) {
	arg, args := d.binder()
	q := "SELECT " + d.cols + " FROM " + d.records + " r WHERE " + d.anyOf(arg, "r.key", keys) + " ORDER BY r.key"
	return q, *args
}

// keySite is one replica named by its record's key and its site.
type keySite struct{ key, site string }

// pageReader reads within one read-only snapshot of a store.
type pageReader interface {
	keySites(ctx context.Context, query string, args []any) ([]keySite, error)
	records(ctx context.Context, query string, args []any) ([]Record, error)
}

// keysetUnlisted calls fn with each record that has a replica at one of sites the
// staged listing lacks (in a state that says it is there), and those sites, in key
// order. Each page of at most page replicas is read with its records in one snapshot
// (view); fn runs after it ended (fn may write). Memory is bounded by the page.
func keysetUnlisted(ctx context.Context, d *keysetDialect, sites []string, page int,
	view func(ctx context.Context, f func(pageReader) error) error, fn func(Record, []string) error) error {
	if len(sites) == 0 {
		return nil
	}
	after, first := "", true
	for {
		var recs []Record
		bySite := map[string][]string{}
		var last string
		full := false
		err := view(ctx, func(r pageReader) error {
			query, args := d.unlistedQuery(sites, after, first, page)
			pairs, err := r.keySites(ctx, query, args)
			if err != nil {
				return err
			}
			var keys []string
			for _, p := range pairs {
				if len(bySite[p.key]) == 0 {
					keys = append(keys, p.key)
				}
				bySite[p.key] = append(bySite[p.key], p.site)
			}
			if full = len(pairs) == page; full {
				// The last key's group may go on on the next page: it starts there.
				cut := keys[len(keys)-1]
				if len(keys) == 1 {
					return fmt.Errorf("state: unlisted: key %q has more than %d replicas", cut, page)
				}
				keys = keys[:len(keys)-1]
				delete(bySite, cut)
				last = keys[len(keys)-1]
			}
			if len(keys) == 0 {
				return nil
			}
			query, args = d.recordsByKeyQuery(keys)
			recs, err = r.records(ctx, query, args)
			return err
		})
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := fn(rec, bySite[rec.Key]); err != nil {
				return err
			}
		}
		if !full {
			return nil
		}
		after, first = last, false
	}
}
