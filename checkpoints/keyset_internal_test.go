package checkpoints

import (
	"fmt"
	"testing"
)

// TestRecordsQuery pins the SQL both stores page records with: the storetest suite
// proves the results, this the shape the planners were tuned for (SQLite kept on the
// primary key by a bound on every page; its stage filter a prefilter on the stages
// column, Query.matches deciding; PostgreSQL's exact, by containment in the replicas' jsonb).
func TestRecordsQuery(t *testing.T) {
	q := Query{States: []RecordState{Copied, Failed}, User: "u", Through: "z", Stage: "s", ReplicaStates: []ReplicaState{Identical}}
	for _, c := range []struct {
		name        string
		d           *keysetDialect
		after       string
		first       bool
		query, args string
	}{
		{"sqlite first", sqliteKeyset, "", true,
			"SELECT " + prefixed("r.", readCols) + " FROM records r WHERE r.key >= ? AND r.key <= ? AND r.state IN (?,?) AND r.user = ? AND " +
				"instr(r.stages, ?) > 0 ORDER BY r.key LIMIT ?",
			"[ z copied failed u |s| 10]"},
		{"sqlite next", sqliteKeyset, "k", false,
			"SELECT " + prefixed("r.", readCols) + " FROM records r WHERE r.key > ? AND r.key <= ? AND r.state IN (?,?) AND r.user = ? AND " +
				"instr(r.stages, ?) > 0 ORDER BY r.key LIMIT ?",
			"[k z copied failed u |s| 10]"},
		{"postgres first", pgKeyset, "", true,
			"SELECT " + prefixed("r.", pgReadCols) + " FROM @.records r WHERE r.key <= $1 AND r.state = ANY($2::text[]) AND r.user_name = $3 AND " +
				"r.replicas @> ANY($4::text[]::jsonb[]) ORDER BY r.key LIMIT $5",
			`[z [copied failed] u [[{"stage":"s","state":"identical"}]] 10]`},
		{"postgres after a non-text key", pgKeyset, "a\x00b", true,
			"SELECT " + prefixed("r.", pgReadCols) + " FROM @.records r WHERE r.key >= $1 AND convert_to(r.key, 'UTF8') > $2 AND r.key <= $3 AND " +
				"r.state = ANY($4::text[]) AND r.user_name = $5 AND " +
				"r.replicas @> ANY($6::text[]::jsonb[]) ORDER BY r.key LIMIT $7",
			`[a [97 0 98] z [copied failed] u [[{"stage":"s","state":"identical"}]] 10]`},
	} {
		query, args := c.d.recordsQuery(q, c.after, c.first, 10)
		if query != c.query {
			t.Errorf("%s:\n got %s\nwant %s", c.name, query, c.query)
		}
		if got := fmt.Sprint(args); got != c.args {
			t.Errorf("%s: args %s, want %s", c.name, got, c.args)
		}
	}
	if query, args := pgKeyset.recordsQuery(Query{}, "", true, 5); query != "SELECT "+prefixed("r.", pgReadCols)+" FROM @.records r ORDER BY r.key LIMIT $1" || len(args) != 1 {
		t.Errorf("postgres, no filter: %s %v", query, args)
	}
}
