package driverbench

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The variants (issue 15 item 5). All use ferry's DSN (pragmas and _txlock) and
// write the same rows with the same statements; they differ in driver, in how the
// driver is called, and in layout.
var variants = []struct {
	name string
	open func(path string) (store, error)
}{
	// 1: ferry today: modernc through database/sql, up to 4 connections, statements
	// prepared per Save transaction, scan queries not prepared (checkpoints/sqlite.go).
	{"v1_modernc_sql", func(p string) (store, error) { return openSQL("sqlite", p, false, false) }},
	// 2a: the same with one connection and statements prepared once, reused in every
	// transaction (tx.Stmt on the one connection reuses the driver's statement).
	{"v2a_modernc_sql_1conn_prepared", func(p string) (store, error) { return openSQL("sqlite", p, false, true) }},
	// 2b: modernc's driver.Conn reached through sql.Conn.Raw once per transaction:
	// no database/sql locking per call, statements prepared once.
	{"v2b_modernc_raw", func(p string) (store, error) { return openRaw(p, false) }},
	// 3: ncruces/go-sqlite3 through database/sql, ferry's code as in 1.
	{"v3_ncruces_sql", func(p string) (store, error) { return openSQL("sqlite3", p, false, false) }},
	// 4: ncruces' Conn and Stmt, no database/sql, statements prepared once.
	{"v4_ncruces_direct", func(p string) (store, error) { return openNC(p, false) }},
	// 5: one row per record (replicas in an encoded BLOB) with the best driver, and
	// with modernc as ferry calls it today and without database/sql.
	{"v5_onerow_ncruces_direct", func(p string) (store, error) { return openNC(p, true) }},
	{"v5_onerow_modernc_sql", func(p string) (store, error) { return openSQL("sqlite", p, true, false) }},
	{"v5_onerow_modernc_raw", func(p string) (store, error) { return openRaw(p, true) }},
}

// prefill rounds are written before timing so that every variant's B-trees start at
// the same size (8,192 records with 2 replicas each).
const prefill = 8

// round saves one round's records through the four state changes, batchN records
// per transaction, and reads them back with a keyset scan in key order.
func round(s store, ph [4][]Record, fn func(*Record)) (save, scan time.Duration, err error) {
	t0 := time.Now()
	for _, recs := range ph {
		for j := 0; j < len(recs); j += batchN {
			if err := s.save(recs[j:min(j+batchN, len(recs))]); err != nil {
				return 0, 0, err
			}
		}
	}
	t1 := time.Now()
	last := ph[3]
	n, err := s.scan(last[0].Key, last[len(last)-1].Key, fn)
	if err == nil && n != len(last) {
		err = errShort(n)
	}
	return t1.Sub(t0), time.Since(t1), err
}

type errShort int

func (e errShort) Error() string { return "scan: short" }

func openVariant(tb testing.TB, open func(string) (store, error)) store {
	tb.Helper()
	s, err := open(filepath.Join(tb.TempDir(), "state.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// BenchmarkHotPath: one op is one round of roundN (1,024) records with 2 replicas:
// saved as planned, then copied, verified and (one replica) deleted, each state
// change in transactions of batchN (256), then read back by a keyset scan of pages
// of pageN in key order. records/s is roundN per op; cpu-µs/rec is the process's
// CPU time per record (less noisy than wall time on a shared machine); save-µs/write
// is the wall time of one record's Save (of 4 per round); scan-µs/rec the scan's
// wall time per record. With -count, each repetition runs every variant in turn.
func BenchmarkHotPath(b *testing.B) {
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			s := openVariant(b, v.open)
			for r := range prefill {
				if _, _, err := round(s, phases(r), func(*Record) {}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			r := prefill
			var save, scan, cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				ph := phases(r)
				r++
				c0 := cpuTime()
				b.StartTimer()
				sv, sc, err := round(s, ph, func(*Record) {})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += cpuTime() - c0
				save += sv
				scan += sc
				b.StartTimer()
			}
			recs := float64(roundN * b.N)
			b.ReportMetric(recs/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(cpu.Microseconds())/recs, "cpu-µs/rec")
			b.ReportMetric(float64(save.Microseconds())/(4*recs), "save-µs/write")
			b.ReportMetric(float64(scan.Microseconds())/recs, "scan-µs/rec")
		})
	}
}

// TestVariants checks that every variant stores and reads back exactly the records
// of each state change (UpdatedAt aside), over two rounds so that the scan's
// bounds matter.
func TestVariants(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			s := openVariant(t, v.open)
			for r := range 2 {
				ph := phases(r)
				for i, recs := range ph {
					for j := 0; j < len(recs); j += batchN {
						if err := s.save(recs[j : j+batchN]); err != nil {
							t.Fatal(err)
						}
					}
					var got []Record
					n, err := s.scan(recs[0].Key, recs[len(recs)-1].Key, func(r *Record) {
						c := *r
						c.UpdatedAt = time.Time{}
						got = append(got, c)
					})
					if err != nil || n != len(recs) {
						t.Fatalf("round %d phase %d: scan %d records, %v", r, i, n, err)
					}
					if !reflect.DeepEqual(got, recs) {
						for k := range got {
							if !reflect.DeepEqual(got[k], recs[k]) {
								t.Fatalf("round %d phase %d record %d:\n got %+v\nwant %+v", r, i, k, got[k], recs[k])
							}
						}
						t.Fatalf("round %d phase %d: records differ", r, i)
					}
				}
			}
		})
	}
}

func TestCodec(t *testing.T) {
	ph := phases(3)
	for _, recs := range ph {
		for _, r := range recs[:3] {
			var got Record
			got.Key = r.Key
			got.User, got.State = r.User, r.State
			if err := decodeRecord(&got, encodeRecord(nil, &r)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("got %+v\nwant %+v", got, r)
			}
		}
	}
	r := ph[3][0]
	r.Replicas[0].SiteKey = "other"
	var got Record
	got.Key, got.User, got.State = r.Key, r.User, r.State
	if err := decodeRecord(&got, encodeRecord(nil, &r)); err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("site key: %v %+v", err, got)
	}
	if err := decodeRecord(&got, encodeRecord(nil, &r)[:20]); err == nil {
		t.Fatal("truncated data decoded")
	}
}
