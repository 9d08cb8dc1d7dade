package migrate

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferrymigrate/ferry/checkpoints/storetest"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
)

// BenchmarkWorkersScaling measures copy records/s with 1, 2, 4, 8 and 16 workers
// sharing one PostgreSQL state, every store call answered after FERRY_SCALE_LATENCY
// (default 20ms) as a remote store would, in ranges of 25, 16 copies at a time per
// worker. FERRY_SCALE_RECORDS records (default 16000: enough that 16 workers spend
// their time in claimed ranges, not starting up); FERRY_SCALE_WORKERS picks the
// counts. Target (issue 15): at least 0.85x linear at 16.
//
//	go test -run '^$' -bench WorkersScaling -benchtime 1x ./migrate/
func BenchmarkWorkersScaling(b *testing.B) {
	n := envInt("FERRY_SCALE_RECORDS", 16000)
	latency := 20 * time.Millisecond
	if v := os.Getenv("FERRY_SCALE_LATENCY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		latency = d
	}
	rates := map[int]float64{}
	counts := []int{1, 2, 4, 8, 16}
	if v := os.Getenv("FERRY_SCALE_WORKERS"); v != "" { // e.g. "1,16"
		counts = counts[:0]
		for _, f := range strings.Split(v, ",") {
			w, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || w < 1 {
				b.Fatalf("FERRY_SCALE_WORKERS=%q: want worker counts like 1,16", v)
			}
			counts = append(counts, w)
		}
	}
	for _, workers := range counts {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var total time.Duration
			for range b.N {
				b.StopTimer()
				e := newBenchEnv(b, n)
				if err := os.WriteFile(e.dir+"/ferry.yaml", []byte(strings.Replace(benchSpec, "concurrency: 32", "concurrency: 16", 1)), 0o644); err != nil {
					b.Fatal(err)
				}
				slow := map[string]providers.Store{}
				for name, s := range e.stores {
					slow[name] = faulty.Wrap(s).Before(func(ctx context.Context, c faulty.Call) error {
						time.Sleep(latency)
						return nil
					})
				}
				dsn := storetest.PostgresState(b, "ferry_scale_")
				opts := func(worker bool) Options {
					return Options{SpecPath: e.dir + "/ferry.yaml", StateDSN: dsn, Worker: worker, RangeSize: 25,
						OpenStore: func(ctx context.Context, cfg providers.Config) (providers.Store, error) {
							return noClose{slow[cfg.Name]}, nil
						}}
				}
				m, err := Open(context.Background(), opts(false))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := m.Plan(context.Background()); err != nil {
					b.Fatal(err)
				}
				m.Close()
				ms := make([]*Migration, workers)
				for i := range ms {
					if ms[i], err = Open(context.Background(), opts(true)); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				start := time.Now()
				var wg sync.WaitGroup
				errs := make([]error, workers)
				for i, m := range ms {
					wg.Go(func() { _, errs[i] = m.Copy(context.Background()) })
				}
				wg.Wait()
				total += time.Since(start)
				b.StopTimer()
				for i, m := range ms {
					m.Close()
					if errs[i] != nil {
						b.Fatalf("worker %d: %v", i, errs[i])
					}
				}
			}
			rate := float64(n*b.N) / total.Seconds()
			rates[workers] = rate
			b.ReportMetric(rate, "records/s")
		})
	}
	if one := rates[1]; one > 0 {
		var sb strings.Builder
		fmt.Fprintf(&sb, "workers  records/s  speed-up  of linear (latency %v, %d records)\n", latency, n)
		for _, w := range counts {
			fmt.Fprintf(&sb, "%7d  %9.0f  %8.2f  %9.2f\n", w, rates[w], rates[w]/one, rates[w]/one/float64(w))
		}
		b.Log("\n" + sb.String())
	}
}

// BenchmarkPipelinePostgres is BenchmarkPipeline (plan, copy, verify, delete with
// in-memory stores, journal off) on a PostgreSQL state: the records/s one PostgreSQL
// state sustains in one process, and the rows ferry writes per record (inserted,
// updated and deleted, from pg_stat_user_tables once the connections closed).
//
//	FERRY_REQUIRE_SERVERS=1 go test -run '^$' -bench PipelinePostgres -benchtime 1x ./migrate/
func BenchmarkPipelinePostgres(b *testing.B) {
	n := benchN()
	var total time.Duration
	var rows int64
	for range b.N {
		dsn := storetest.PostgresState(b, "ferry_pipe_")
		total += pipelineWith(b, n, func(o *Options) { o.NoJournal, o.StateDSN = true, dsn }, nil)
		rows += pgRowsWritten(b, dsn)
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "records/s")
	b.ReportMetric(float64(rows)/float64(n*b.N), "rows-written/record")
}

// pgRowsWritten sums the rows inserted, updated and deleted in the state's schema.
// Backends report their counts when they exit: the state is closed by now.
func pgRowsWritten(b *testing.B, dsn string) int64 {
	u, err := url.Parse(dsn)
	if err != nil {
		b.Fatal(err)
	}
	schema := u.Query().Get("schema")
	ctx := context.Background()
	c, err := pgx.Connect(ctx, storetest.PostgresServer(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	var rows int64
	for range 50 { // the exiting backends' counts land within moments
		var n int64
		if err := c.QueryRow(ctx, `SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables WHERE schemaname = $1`, schema).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n > 0 && n == rows {
			break
		}
		rows = n
		time.Sleep(100 * time.Millisecond)
		if _, err := c.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
			b.Fatal(err)
		}
	}
	return rows
}

type noClose struct{ providers.Store }

func (noClose) Close() error { return nil }

func (n noClose) Unwrap() providers.Store { return n.Store }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
