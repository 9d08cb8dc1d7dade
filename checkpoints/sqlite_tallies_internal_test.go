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
// dropped, copy and verify times inside and outside the recent window. A batch may
// span several of Save's chunks and hold a key more than once (the last wins), and a
// record may name a site twice (its last replica there wins). It returns what the
// store should hold: each key's last record, its replicas one per site.
func randomWork(t *testing.T, save func([]Record), seed uint64, rounds int, now time.Time) map[string]Record {
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
		for range 1 + r.IntN(200) {
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
			if len(reps) > 0 && r.IntN(8) == 0 {
				// The same site twice: the first one is overridden.
				d := reps[0]
				d.State, d.Stage = repStates[r.IntN(len(repStates))], stages[r.IntN(len(stages))]
				reps = append([]Replica{d}, reps...)
			}
			rec.Replicas = reps
			batch = append(batch, rec)
			rec.Replicas = canonicalReplicas(reps)
			recs[k] = rec
		}
		slices.SortStableFunc(batch, func(a, b Record) int { return cmpString(a.Key, b.Key) })
		save(batch)
	}
	return recs
}

// sameAs checks the stats of a store (cleaned of empty groups by statsMatch)
// against those of what it should hold, counted independently of the store.
func sameAs(t *testing.T, got Stats, want map[string]Record, now time.Time) {
	t.Helper()
	if w := statsOfMap(want, now); !reflect.DeepEqual(got, w) {
		t.Fatalf("stats differ from those of the records saved:\n got %+v\nwant %+v", got, w)
	}
}

// inUTC is r with every time in UTC, as the store reads them back.
func inUTC(r Record) Record {
	r.CopiedAt, r.VerifiedAt, r.UpdatedAt = r.CopiedAt.UTC(), r.VerifiedAt.UTC(), r.UpdatedAt.UTC()
	r.Replicas = slices.Clone(r.Replicas)
	for i := range r.Replicas {
		p := &r.Replicas[i]
		p.ModTime, p.IntentAt, p.DeletedAt, p.PurgedAt = p.ModTime.UTC(), p.IntentAt.UTC(), p.DeletedAt.UTC(), p.PurgedAt.UTC()
	}
	return r
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

// statsOfRecords is what Stats should say of s: counted from every record read
// back, in Go (the oracle the tallies are checked against).
func statsOfRecords(t *testing.T, s Store, now time.Time) Stats {
	t.Helper()
	st, err := countStats(now, func(fn func(Record) error) error {
		return s.Records(context.Background(), Query{}, fn)
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// statsOfMap is what Stats should say of a store holding recs.
func statsOfMap(recs map[string]Record, now time.Time) Stats {
	st, _ := countStats(now, func(fn func(Record) error) error {
		for _, r := range recs {
			_ = fn(r)
		}
		return nil
	})
	return st
}

// countStats counts the records each yields, in Go.
func countStats(now time.Time, each func(func(Record) error) error) (Stats, error) {
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
	err := each(func(r Record) error {
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
	return st, err
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
			want := randomWork(t, saver(t, s), seed, 60, now)
			sameAs(t, sameStats(t, s, now), want, now)
			n := 0
			err = s.Records(context.Background(), Query{}, func(r Record) error {
				n++
				w := inUTC(want[r.Key])
				w.UpdatedAt = r.UpdatedAt
				if !reflect.DeepEqual(r, w) {
					return fmt.Errorf("record %s read back as\n%+v\nwant\n%+v", r.Key, r, w)
				}
				return nil
			})
			if err != nil || n != len(want) {
				t.Fatalf("%d records read back, want %d: %v", n, len(want), err)
			}
		})
	}

	for _, from := range []int{1, 2} {
		t.Run(fmt.Sprint("upgrade from ", from), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "state.db")
			db := legacyState(t, path, from)
			want := randomWork(t, func(recs []Record) { legacySave(t, db, recs) }, 99, 60, now)
			db.Close()

			// Read-only, an older state is read through an upgraded copy and left as
			// it is.
			ro, err := OpenSQLite(ctx, path, Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("read-only open of a version %d state: %v", from, err)
			}
			fromCopy := sameStats(t, ro, now)
			sameAs(t, fromCopy, want, now)
			if err := ro.Save(ctx, []Record{{Key: "new", User: "u", State: Planned}}); err == nil {
				t.Fatal("a read-only store took a Save")
			}
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
