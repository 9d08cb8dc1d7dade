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
func randomWork(t *testing.T, s *SQLite, seed uint64, rounds int, now time.Time) {
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
		if err := s.Save(context.Background(), batch); err != nil {
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

// sameStats compares what Stats returns (from the tallies) with a scan of the rows.
func sameStats(t *testing.T, s *SQLite, now time.Time) {
	t.Helper()
	got, err := s.Stats(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	want := newStats()
	if err := s.statsByScan(context.Background(), &want, now); err != nil {
		t.Fatal(err)
	}
	// The tallies count the window in whole seconds: now is on a second here, so
	// both agree exactly.
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Stats from the tallies differ from a scan of the rows:\n got %+v\nwant %+v", got, want)
	}
	if len(want.Records) == 0 || len(want.StageCounts) == 0 || want.Recent["copied"] == 0 || want.Recent["deleted"] == 0 {
		t.Fatalf("the work left too little to compare: %+v", want)
	}
}

// TestTalliesMatchRows: after random saves (inserts, updates, replicas dropped), the
// counts version 2 keeps are exactly what scanning the rows gives, and so they are
// after an upgrade from a version 1 state that already held rows.
func TestTalliesMatchRows(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !s.tallied {
				t.Fatal("a new state keeps no tallies")
			}
			randomWork(t, s, seed, 60, now)
			sameStats(t, s, now)
		})
	}

	t.Run("upgrade", func(t *testing.T) {
		ctx := context.Background()
		path := filepath.Join(t.TempDir(), "state.db")
		v1, err := openSQLite(ctx, path, Options{}, sqliteSteps[:1])
		if err != nil {
			t.Fatal(err)
		}
		randomWork(t, v1, 99, 60, now)
		v1.Close()

		// Read-only, a version 1 state is read as it is, counting by scanning.
		ro, err := OpenSQLite(ctx, path, Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("read-only open of a version 1 state: %v", err)
		}
		if ro.tallied {
			t.Fatal("a read-only open upgraded the state")
		}
		byScan, err := ro.Stats(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		ro.Close()

		s, err := OpenSQLite(ctx, path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if v, _ := sqliteVersion(ctx, s.db); v != SchemaVersion {
			t.Fatalf("version %d after the upgrade, want %d", v, SchemaVersion)
		}
		sameStats(t, s, now)
		if got, _ := s.Stats(ctx, now); !reflect.DeepEqual(got, byScan) {
			t.Fatalf("the upgraded state's stats differ from the version 1 state's:\n got %+v\nwant %+v", got, byScan)
		}
		// And they stay right as the work goes on.
		randomWork(t, s, 100, 30, now)
		sameStats(t, s, now)
	})
}
