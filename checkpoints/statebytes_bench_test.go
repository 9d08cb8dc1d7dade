package checkpoints_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/storetest"
)

// stateBytesRecords is how many records BenchmarkStateBytes stores: 100,000, or
// FERRY_STATE_BYTES_RECORDS (the 1e6 and 1e7 points of the extrapolation in
// docs/benchmarks.md).
var stateBytesRecords = func() int {
	if n, err := strconv.Atoi(os.Getenv("FERRY_STATE_BYTES_RECORDS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}()

// verifiedRecord is a record as a finished copy leaves it: verified, with two
// replicas (a primary and a backup site) proven identical, every hash and ETag set.
func verifiedRecord(i int) checkpoints.Record {
	key := fmt.Sprintf("user%04d/photos/2024/IMG_%07d.jpg", i%1000, i)
	sum := sha256.Sum256([]byte(key))
	sha := hex.EncodeToString(sum[:])
	etag := `"` + sha[:32] + `"`
	size := int64(100_000 + i%900_000)
	at := time.Unix(1_760_000_000, int64(i)*1000).UTC()
	r := checkpoints.Record{Key: key, User: fmt.Sprintf("user%04d", i%1000), Size: size, State: checkpoints.Verified,
		SHA256: sha, CRC32C: "yZRlqg==", Source: "primary", TargetKey: key, TargetETag: etag, TargetVersion: "",
		CopiedAt: at, VerifiedAt: at.Add(time.Second), Attempts: 1}
	for j, site := range []string{"primary", "backup"} {
		r.Replicas = append(r.Replicas, checkpoints.Replica{Site: site, SiteKey: key, Primary: j == 0, Size: size, ETag: etag,
			ModTime: at.Add(-time.Hour), SHA256: sha, State: checkpoints.Identical, Stage: []string{"", "backups"}[j]})
	}
	return r
}

func fillVerified(b *testing.B, s checkpoints.Store) {
	b.Helper()
	batch := make([]checkpoints.Record, 0, 1000)
	for i := range stateBytesRecords {
		batch = append(batch, verifiedRecord(i))
		if len(batch) == cap(batch) || i == stateBytesRecords-1 {
			if err := s.Save(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// BenchmarkStateBytes: the size of the state per record, for 100,000 verified
// records (stateBytesRecords) with 2 replicas each (reported as B/record; the time
// is the fill's).
// SQLite: the file after Close (WAL checkpointed), plus any WAL left. PostgreSQL:
// pg_total_relation_size (heap, indexes, TOAST) of the schema's tables after VACUUM.
func BenchmarkStateBytes(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		var perRecord float64
		for b.Loop() {
			path := filepath.Join(b.TempDir(), "state.db")
			s, err := checkpoints.OpenSQLite(context.Background(), path, checkpoints.Options{})
			if err != nil {
				b.Fatal(err)
			}
			fillVerified(b, s)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			var total int64
			for _, f := range []string{path, path + "-wal"} {
				if fi, err := os.Stat(f); err == nil {
					total += fi.Size()
				}
			}
			perRecord = float64(total) / float64(stateBytesRecords)
			logSQLiteBreakdown(b, path)
		}
		b.ReportMetric(perRecord, "B/record")
	})
	b.Run("postgres", func(b *testing.B) {
		var perRecord float64
		for b.Loop() {
			dsn := storetest.PostgresState(b, "ferry_bytes_")
			s, err := checkpoints.Open(context.Background(), dsn, checkpoints.Options{})
			if err != nil {
				b.Fatal(err)
			}
			fillVerified(b, s)
			schema := s.(*checkpoints.Postgres).Schema()
			s.Close()
			ctx := context.Background()
			c, err := pgx.Connect(ctx, storetest.PostgresDSN())
			if err != nil {
				b.Fatal(err)
			}
			var total int64
			rows, err := c.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
			if err != nil {
				b.Fatal(err)
			}
			tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				b.Fatal(err)
			}
			for _, t := range tables {
				if _, err := c.Exec(ctx, "VACUUM ANALYZE "+pgx.Identifier{schema, t}.Sanitize()); err != nil {
					b.Fatal(err)
				}
			}
			err = c.QueryRow(ctx, `SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
				JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`, schema).Scan(&total)
			if err != nil {
				b.Fatal(err)
			}
			rows, err = c.Query(ctx, `SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c
				JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 2 DESC`, schema)
			if err != nil {
				b.Fatal(err)
			}
			var name string
			var size int64
			_, err = pgx.ForEachRow(rows, []any{&name, &size}, func() error {
				if size > 8192*4 {
					b.Logf("postgres %s (with its indexes): %.0f B/record", name, float64(size)/float64(stateBytesRecords))
				}
				return nil
			})
			c.Close(ctx)
			if err != nil {
				b.Fatal(err)
			}
			perRecord = float64(total) / float64(stateBytesRecords)
		}
		b.ReportMetric(perRecord, "B/record")
	})
}

// logSQLiteBreakdown logs the bytes per record of each table and index of the
// state file (SQLite's dbstat: pages in use, with their free space).
func logSQLiteBreakdown(b *testing.B, path string) {
	b.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
	if err != nil {
		b.Logf("no dbstat: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var size int64
		if err := rows.Scan(&name, &size); err != nil {
			b.Fatal(err)
		}
		if size > 4096*4 {
			b.Logf("sqlite %s: %.0f B/record", name, float64(size)/float64(stateBytesRecords))
		}
	}
}
