package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	s3store "github.com/ferrymigrate/ferry/providers/s3"
)

// dataset is one data set in its own bucket on the source server.
type dataset struct {
	name   string // "small" or "large"
	bucket string
	recs   []synth.Record
	want   map[string]int64 // key to size: what every destination must hold
	bytes  int64
}

// smallRecords returns exactly n records of 0.5 to 16 KiB (synth's defaults) across
// min(users, n) users, each user holding at least one.
func smallRecords(n, users int) []synth.Record {
	users = max(1, min(users, n))
	per := (n+users-1)/users + 1 // synth draws 1 to 2*per-1 records a user: per on average
	var recs []synth.Record
	for {
		recs = synth.Records(synth.Options{Users: users, RecordsPerUser: per, Seed: 7})
		if len(recs) >= n {
			break
		}
		per++
	}
	// Keep each user's first record, then a deterministic random choice of the rest.
	var keep, rest []synth.Record
	for i, r := range recs {
		if i == 0 || userOf(r.Key) != userOf(recs[i-1].Key) {
			keep = append(keep, r)
		} else {
			rest = append(rest, r)
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	keep = append(keep, rest[:n-len(keep)]...)
	sort.Slice(keep, func(i, j int) bool { return keep[i].Key < keep[j].Key })
	return keep
}

func userOf(key string) string {
	u, _, _ := strings.Cut(key, "/")
	return u
}

// largeRecords returns count records of exactly size bytes, one per user.
func largeRecords(count int, size int64) []synth.Record {
	recs := make([]synth.Record, count)
	for i := range recs {
		recs[i] = synth.Record{Key: fmt.Sprintf("%s/large/%03d.bin", synth.User(i), i), Size: size, Seed: uint64(1000 + i)}
	}
	return recs
}

// generate creates the data set's bucket on the source server and writes its records
// with ferry's generator through ferry's S3 provider. Every object is written with
// one PutObject (the part size is raised above the largest record), as legacy data
// mostly is: its ETag is then a plain MD5, which rclone --checksum can compare.
func (b *bench) generate(ctx context.Context, set *dataset) error {
	start := time.Now()
	if err := b.src.createBucket(ctx, set.bucket); err != nil {
		return err
	}
	var largest int64
	for _, r := range set.recs {
		largest = max(largest, r.Size)
		set.bytes += r.Size
	}
	partSize := max(int64(s3store.DefaultPartSize), largest)
	if partSize > s3store.MaxPartSize {
		return fmt.Errorf("%s: records of %d bytes are larger than one S3 PutObject takes", set.name, largest)
	}
	store, err := s3store.New(ctx, b.src.providerConfig(set.bucket, partSize))
	if err != nil {
		return err
	}
	defer store.Close()
	// Large records are buffered whole before their PutObject: few at a time.
	conc := b.cfg.concurrency
	if largest > 8<<20 {
		conc = max(1, min(conc, int((1<<30)/largest)))
	}
	if err := synth.Populate(ctx, store, set.recs, conc); err != nil {
		return err
	}
	got, err := b.src.list(ctx, set.bucket)
	if err != nil {
		return err
	}
	set.want = map[string]int64{}
	for _, r := range set.recs {
		set.want[r.Key] = r.Size
	}
	if err := sameObjects(set.want, got); err != nil {
		return fmt.Errorf("%s: the source bucket does not hold what was generated: %w", set.name, err)
	}
	logf("generated %s: %d records, %s in %v", set.name, len(set.recs), mib(set.bytes), time.Since(start).Round(time.Millisecond))
	return nil
}

// providerConfig is the providers.Config of a bucket on this server, credentials
// named by environment variable as a spec names them.
func (s *server) providerConfig(bucket string, partSize int64) providers.Config {
	return providers.Config{
		Name:      s.name + "/" + bucket,
		URL:       "s3://" + bucket + "/",
		Endpoint:  s.Endpoint,
		Region:    region,
		PathStyle: true,
		PartSize:  partSize,
		Credentials: map[string]string{
			"access_key_env": s.AccessKeyEnv,
			"secret_key_env": s.SecretKeyEnv,
		},
		Migration: "ferrybench",
	}
}

// sameObjects checks that got holds exactly the keys of want, with the same sizes,
// besides ferry's marker at the target root (migrate/identity.go), which is not a
// record.
func sameObjects(want, got map[string]int64) error {
	markers := 0
	for k := range got {
		if strings.HasPrefix(k, migrate.MarkerDir) {
			markers++
		}
	}
	missing, wrong := 0, 0
	example := ""
	for k, size := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing++
		case g != size:
			wrong++
		default:
			continue
		}
		if example == "" {
			example = fmt.Sprintf(" (e.g. %q: want %d bytes, have %d, present %v)", k, size, g, ok)
		}
	}
	extra := len(got) - markers - (len(want) - missing)
	if missing > 0 || wrong > 0 || extra > 0 {
		return fmt.Errorf("%d objects, want %d: %d missing, %d of another size, %d unexpected%s",
			len(got)-markers, len(want), missing, wrong, extra, example)
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
