package checkpoints

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

// randomWork saves n rounds of random changes to records: new records, state and
// size changes, replicas added, changed (site state, stage, deletion time) and
// dropped, copy and verify times inside and outside the recent window.
func randomWork(t *testing.T, save func([]Record), seed uint64, rounds int, now time.Time) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	states := RecordStates
	repStates := []ReplicaState{Present, Identical, Divergent, Intent, Deleted, Purged, Missing, Restored}
	sites := []string{"virginia", "singapore", "archive"}
	stages := []string{"", "", "canary", "backups", "primary"}
	when := func() time.Time {
		switch r.IntN(3) {
		case 0:
			return time.Time{}
		case 1:
			return now.Add(-time.Duration(r.IntN(50)) * time.Second) // recent
		default:
			return now.Add(-time.Duration(2+r.IntN(100)) * time.Minute) // not
		}
	}
	recs := map[string]Record{}
	for range rounds {
		var batch []Record
		for range 1 + r.IntN(40) {
			k := fmt.Sprintf("u%02d/%04d", r.IntN(10), r.IntN(300))
			rec, ok := recs[k]
			if !ok {
				rec = Record{Key: k, User: k[:3], Size: int64(r.IntN(5000)), State: Planned}
			}
			rec.State = states[r.IntN(len(states))]
			if r.IntN(5) == 0 {
				rec.Size = int64(r.IntN(5000))
			}
			rec.CopiedAt, rec.VerifiedAt = when(), when()
			var reps []Replica
			for _, site := range sites {
				if r.IntN(4) == 0 {
					continue // no replica there (dropped if it had one)
				}
				reps = append(reps, Replica{Site: site, SiteKey: k, Size: rec.Size + int64(r.IntN(2)),
					State: repStates[r.IntN(len(repStates))], Stage: stages[r.IntN(len(stages))], DeletedAt: when()})
			}
			rec.Replicas = reps
			recs[k] = rec
			batch = append(batch, rec)
		}
		slices.SortFunc(batch, func(a, b Record) int { return cmpString(a.Key, b.Key) })
		batch = slices.CompactFunc(batch, func(a, b Record) bool { return a.Key == b.Key })
		save(batch)
	}
}

// saver is s.Save, failing t on an error.
func saver(t *testing.T, s Store) func([]Record) {
	return func(recs []Record) {
		t.Helper()
		if err := s.Save(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func newStats() Stats {
	return Stats{Records: map[RecordState]Count{}, ReplicasSite: map[string]map[ReplicaState]Count{},
		StageCounts: map[string]map[ReplicaState]Count{}, Recent: map[string]int64{}, RecentWindow: RecentWindow}
}

// statsOfRecords is what Stats should say of s: counted from every record read
// back, in Go (the oracle the tallies are checked against).
func statsOfRecords(t *testing.T, s Store, now time.Time) Stats {
	t.Helper()
	st := newStats()
	since := now.Add(-RecentWindow)
	add := func(m map[string]map[ReplicaState]Count, a string, b ReplicaState, size int64) {
		if m[a] == nil {
			m[a] = map[ReplicaState]Count{}
		}
		c := m[a][b]
		c.N, c.Bytes = c.N+1, c.Bytes+size
		m[a][b] = c
	}
	recent := func(kind string, at time.Time) {
		if at.After(since) {
			st.Recent[kind]++
		}
	}
	err := s.Records(context.Background(), Query{}, func(r Record) error {
		c := st.Records[r.State]
		c.N, c.Bytes = c.N+1, c.Bytes+r.Size
		st.Records[r.State] = c
		recent("copied", r.CopiedAt)
		recent("verified", r.VerifiedAt)
		for _, p := range r.Replicas {
			add(st.ReplicasSite, p.Site, p.State, p.Size)
			if p.Stage != "" {
				add(st.StageCounts, p.Stage, p.State, p.Size)
			}
			recent("deleted", p.DeletedAt)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"copied", "verified", "deleted"} {
		st.Recent[k] += 0 // every kind is reported, zero or not
	}
	return st
}

// sameStats compares what Stats returns (from the tallies) with the records, which
// must hold something of each kind.
func sameStats(t *testing.T, s *SQLite, now time.Time) Stats {
	t.Helper()
	st := statsMatch(t, s, now)
	if len(st.Records) == 0 || len(st.StageCounts) == 0 || st.Recent["copied"] == 0 || st.Recent["deleted"] == 0 {
		t.Fatalf("the work left too little to compare: %+v", st)
	}
	return st
}

// statsMatch compares what Stats returns (from the tallies) with the records.
func statsMatch(t *testing.T, s *SQLite, now time.Time) Stats {
	t.Helper()
	got, err := s.Stats(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	want := statsOfRecords(t, s, now)
	// Groups that fell to zero stay in the tallies with nothing in them.
	for _, m := range []map[string]map[ReplicaState]Count{got.ReplicasSite, got.StageCounts} {
		for a, bs := range m {
			for b, c := range bs {
				if c == (Count{}) {
					delete(bs, b)
				}
			}
			if len(bs) == 0 {
				delete(m, a)
			}
		}
	}
	for k, c := range got.Records {
		if c == (Count{}) {
			delete(got.Records, k)
		}
	}
	// The tallies count the window in whole seconds: now is on a second here and no
	// event falls on the window's first second, so both agree exactly.
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Stats from the tallies differ from the records:\n got %+v\nwant %+v", got, want)
	}
	return got
}

// TestTalliesMatchRows: after random saves (inserts, updates, replicas dropped), the
// counts the state keeps are exactly what counting its records gives, and so they
// are after an upgrade from a version 1 or 2 state that already held rows.
func TestTalliesMatchRows(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			randomWork(t, saver(t, s), seed, 60, now)
			sameStats(t, s, now)
		})
	}

	for _, from := range []int{1, 2} {
		t.Run(fmt.Sprint("upgrade from ", from), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "state.db")
			db := legacyState(t, path, from)
			randomWork(t, func(recs []Record) { legacySave(t, db, recs) }, 99, 60, now)
			db.Close()

			// Read-only, an older state is read through an upgraded copy and left as
			// it is.
			ro, err := OpenSQLite(ctx, path, Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("read-only open of a version %d state: %v", from, err)
			}
			fromCopy := sameStats(t, ro, now)
			ro.Close()
			if d := sqliteDump(t, path); d[0] != fmt.Sprint("user_version ", from) {
				t.Fatalf("a read-only open changed the state: %s", d[0])
			}

			s, err := OpenSQLite(ctx, path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if v, _ := sqliteVersion(ctx, s.db); v != SchemaVersion {
				t.Fatalf("version %d after the upgrade, want %d", v, SchemaVersion)
			}
			if got := sameStats(t, s, now); !reflect.DeepEqual(got, fromCopy) {
				t.Fatalf("the upgraded state's stats differ from its read-only copy's:\n got %+v\nwant %+v", got, fromCopy)
			}
			// And they stay right as the work goes on.
			randomWork(t, saver(t, s), 100, 30, now)
			sameStats(t, s, now)
		})
	}
}
