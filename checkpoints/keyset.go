package checkpoints

import (
	"context"
	"strconv"
	"strings"
)

// keysetDialect is what differs between the stores' SQL for listing records: table
// and column names, placeholders, a set of values, and how keys are bounded. Both
// stores page through records with the same query (recordsQuery) and the same loop
// (keysetRecords).
type keysetDialect struct {
	records, replicas string // table names as the store writes them
	cols              string // the record columns, each prefixed with "r."
	user              string // the user column
	// placeholder is the n-th (from 1) argument's placeholder.
	placeholder func(n int) string
	// anyOf is "col is one of vals" (vals is placed with arg).
	anyOf func(arg func(any) string, col string, vals []string) string
	// after bounds keys from below on a page: above after, or from after on the
	// first page of a query without After (after is then "").
	after func(arg func(any) string, after string, first bool) []string
	// through bounds keys from above (through is not "").
	through func(arg func(any) string, through string) []string
	// pinned prefixes a replica column whose index the planner must not use in the
	// stage filter ("+" in SQLite: an index on stage there makes the scan quadratic).
	pinned string
}

var sqliteKeyset = &keysetDialect{
	records: "records", replicas: "replicas", cols: prefixed("r.", recCols), user: "r.user",
	placeholder: func(int) string { return "?" },
	anyOf: func(arg func(any) string, col string, vals []string) string {
		ph := make([]string, len(vals))
		for i, v := range vals {
			ph[i] = arg(v)
		}
		return col + " IN (" + strings.Join(ph, ",") + ")"
	},
	after: func(arg func(any) string, after string, first bool) []string {
		// Always a bound (>= '' on a first page): it keeps SQLite on the primary key.
		if first && after == "" {
			return []string{"r.key >= " + arg(after)}
		}
		return []string{"r.key > " + arg(after)}
	},
	through: func(arg func(any) string, through string) []string {
		return []string{"r.key <= " + arg(through)}
	},
	pinned: "+",
}

var pgKeyset = &keysetDialect{
	records: "@.records", replicas: "@.replicas", cols: prefixed("r.", pgRecCols), user: "r.user_name",
	placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
	anyOf: func(arg func(any) string, col string, vals []string) string {
		return col + " = ANY(" + arg(vals) + "::text[])"
	},
	after: func(arg func(any) string, after string, first bool) []string {
		switch {
		case !first:
			return []string{"r.key > " + arg(after)}
		case after == "":
			return nil
		case pgText(after):
			return []string{"r.key > " + arg(after)}
		default:
			// An After no stored key can equal (a NUL, invalid UTF-8): compare bytes,
			// from the longest prefix of it that is text (for the index).
			var w []string
			if p := pgTextPrefix(after); p != "" {
				w = append(w, "r.key >= "+arg(p))
			}
			return append(w, "convert_to(r.key, 'UTF8') > "+arg([]byte(after)))
		}
	},
	through: func(arg func(any) string, through string) []string {
		if pgText(through) {
			return []string{"r.key <= " + arg(through)}
		}
		return []string{"convert_to(r.key, 'UTF8') <= " + arg([]byte(through))}
	},
}

// recordsQuery is the query for one page of records matching q: keys above after
// (from after on, on the first page), at most limit of them, in key order.
func (d *keysetDialect) recordsQuery(q Query, after string, first bool, limit int) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return d.placeholder(len(args))
	}
	where = append(where, d.after(arg, after, first)...)
	if q.Through != "" {
		where = append(where, d.through(arg, q.Through)...)
	}
	if len(q.States) > 0 {
		where = append(where, d.anyOf(arg, "r.state", strs(q.States)))
	}
	if q.User != "" {
		where = append(where, d.user+" = "+arg(q.User))
	}
	if q.Stage != "" {
		sub := "EXISTS (SELECT 1 FROM " + d.replicas + " p WHERE p.key = r.key AND " + d.pinned + "p.stage = " + arg(q.Stage)
		if len(q.ReplicaStates) > 0 {
			sub += " AND " + d.anyOf(arg, d.pinned+"p.state", strs(q.ReplicaStates))
		}
		where = append(where, sub+")")
	}
	query := "SELECT " + d.cols + " FROM " + d.records + " r"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	return query + " ORDER BY r.key LIMIT " + arg(limit), args
}

func strs[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
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
		if q.Limit > 0 && q.Limit-total < limit {
			limit = q.Limit - total
		}
		query, args := d.recordsQuery(q, after, first, limit)
		recs, err := read(ctx, query, args)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		total += len(recs)
		if len(recs) < limit || (q.Limit > 0 && total >= q.Limit) {
			return nil
		}
		after, first = recs[len(recs)-1].Key, false
	}
}
