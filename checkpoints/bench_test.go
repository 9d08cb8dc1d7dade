package checkpoints_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
)

func benchStore(b *testing.B) *checkpoints.SQLite {
	b.Helper()
	s, err := checkpoints.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "state.db"), checkpoints.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// fill saves n records (3 replicas each) in batches of 1000.
func fill(b *testing.B, s checkpoints.Store, n int) {
	b.Helper()
	var batch []checkpoints.Record
	for i := range n {
		batch = append(batch, rec(fmt.Sprintf("u%03d/%07d", i%100, i), i))
		if len(batch) == 1000 || i == n-1 {
			if err := s.Save(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

func perSecond(b *testing.B, items int) {
	b.ReportMetric(float64(items)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkSave: one durable Save (synchronous=FULL) of a batch of 256 new records with
// 3 replicas each, the Batcher's unit of work.
func BenchmarkSave(b *testing.B) { benchSave(b, benchStore(b)) }

func benchSave(b *testing.B, s checkpoints.Store) {
	const batch = 256
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		b.StopTimer()
		recs := make([]checkpoints.Record, batch)
		for j := range recs {
			recs[j] = rec(fmt.Sprintf("u%03d/%07d", n%100, n), n)
			n++
		}
		b.StartTimer()
		if err := s.Save(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	perSecond(b, n)
}

// BenchmarkSaveUpdate: one durable Save of 256 records already stored, as copy and
// verify write them: the record's state and one replica change, the others do not.
func BenchmarkSaveUpdate(b *testing.B) { benchSaveUpdate(b, benchStore(b)) }

func benchSaveUpdate(b *testing.B, s checkpoints.Store) {
	const n, batch = 20000, 256
	fill(b, s, n)
	ctx := context.Background()
	b.ReportAllocs()
	done, i := 0, 0
	for b.Loop() {
		b.StopTimer()
		recs := make([]checkpoints.Record, batch)
		for j := range recs {
			k := i % n
			r := rec(fmt.Sprintf("u%03d/%07d", k%100, k), k)
			r.State = checkpoints.Verified
			r.VerifiedAt = time.Unix(1700000000, int64(i)).UTC()
			r.Replicas[1].State = checkpoints.Deleted
			recs[j] = r
			i++
		}
		b.StartTimer()
		if err := s.Save(ctx, recs); err != nil {
			b.Fatal(err)
		}
		done += batch
	}
	perSecond(b, done)
}

// BenchmarkStats: Stats over 100,000 records with 3 replicas each, what status and
// every phase's start and end read.
func BenchmarkStats(b *testing.B) { benchStats(b, benchStore(b)) }

func benchStats(b *testing.B, s checkpoints.Store) {
	fill(b, s, 100000)
	b.ReportAllocs()
	for b.Loop() {
		st, err := s.Stats(context.Background(), time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if st.Records[checkpoints.Copied].N != 100000 {
			b.Fatalf("stats %+v", st.Records)
		}
	}
}

// BenchmarkRecordsScan: a full Records scan (with replicas) of 20,000 records, what
// every phase does.
func BenchmarkRecordsScan(b *testing.B) { benchRecordsScan(b, benchStore(b)) }

func benchRecordsScan(b *testing.B, s checkpoints.Store) {
	const n = 20000
	fill(b, s, n)
	ctx := context.Background()
	b.ReportAllocs()
	total := 0
	for b.Loop() {
		seen := 0
		if err := s.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
			seen++
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if seen != n {
			b.Fatalf("scanned %d records, want %d", seen, n)
		}
		total += seen
	}
	perSecond(b, total)
}

// BenchmarkListedReconcileScan: plan's reconcile loop without the pipeline: Listed over
// 10,000 keys staged at 3 sites, with a Get of each key's record from inside fn.
func BenchmarkListedReconcileScan(b *testing.B) { benchListedReconcileScan(b, benchStore(b)) }

func benchListedReconcileScan(b *testing.B, s checkpoints.Store) {
	const n = 10000
	fill(b, s, n)
	ctx := context.Background()
	var objs []checkpoints.Listed
	for i := range n {
		k := fmt.Sprintf("u%03d/%07d", i%100, i)
		for _, site := range []string{"virginia", "singapore", "archive"} {
			objs = append(objs, checkpoints.Listed{Site: site, Key: k, SiteKey: k, Size: int64(i), ETag: "e"})
		}
	}
	if err := s.AddListed(ctx, objs); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	total := 0
	for b.Loop() {
		seen := 0
		if err := s.Listed(ctx, func(key string, objs []checkpoints.Listed) error {
			if _, ok, err := s.Get(ctx, key); err != nil || !ok || len(objs) != 3 {
				return fmt.Errorf("key %s: record %v %v, %d objects", key, ok, err, len(objs))
			}
			seen++
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if seen != n {
			b.Fatalf("reconciled %d keys, want %d", seen, n)
		}
		total += seen
	}
	perSecond(b, total)
}

// BenchmarkStatusBigState: open a SQLite state of FERRY_BIG_STATE records (default
// 1,000,000; the target is 10,000,000 in under 1 s) with 2 replicas each, read-write
// as `ferry status` opens it, and read its Stats. The state is filled through Save
// in batches of 10,000, once, before the timer starts.
func BenchmarkStatusBigState(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("FERRY_BIG_STATE"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("FERRY_BIG_STATE=%q: %v", v, err)
		}
	}
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "state.db")
	s, err := checkpoints.OpenSQLite(ctx, path, checkpoints.Options{})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	batch := make([]checkpoints.Record, 0, 10_000)
	for i := range n {
		states := []checkpoints.RecordState{checkpoints.Planned, checkpoints.Copied, checkpoints.Verified, checkpoints.Verified}
		r := checkpoints.Record{
			Key: fmt.Sprintf("u%03d/%09d", i%1000, i), User: fmt.Sprintf("u%03d", i%1000),
			Size: int64(1000 + i%5000), State: states[i%4], SHA256: fmt.Sprintf("%064x", i),
		}
		primary, backup := checkpoints.Present, checkpoints.Present
		var deletedAt time.Time
		if r.State != checkpoints.Planned {
			r.CopiedAt = t0.Add(time.Duration(i))
		}
		if r.State == checkpoints.Verified {
			r.VerifiedAt = t0.Add(time.Duration(i))
			primary, backup, deletedAt = checkpoints.Identical, checkpoints.Deleted, t0
		}
		r.Replicas = []checkpoints.Replica{
			{Site: "virginia", SiteKey: r.Key, Primary: true, Size: r.Size, State: primary},
			{Site: "singapore", SiteKey: r.Key, Size: r.Size, State: backup, Stage: "backups", DeletedAt: deletedAt},
		}
		batch = append(batch, r)
		if len(batch) == cap(batch) || i == n-1 {
			if err := s.Save(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	s.Close()
	b.ResetTimer()
	for b.Loop() {
		s, err := checkpoints.OpenSQLite(ctx, path, checkpoints.Options{})
		if err != nil {
			b.Fatal(err)
		}
		st, err := s.Stats(ctx, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if got := st.Records[checkpoints.Planned].N + st.Records[checkpoints.Copied].N + st.Records[checkpoints.Verified].N; got != int64(n) {
			b.Fatalf("stats count %d records, want %d", got, n)
		}
		s.Close()
	}
}
