package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// CopyResult is what `ferry copy` reports.
type CopyResult struct {
	DryRun   bool           `json:"dry_run"`
	Copied   int64          `json:"copied"`
	Skipped  int64          `json:"skipped"` // target copy already matched
	Failed   int64          `json:"failed"`
	Bytes    int64          `json:"bytes"`
	Records  int64          `json:"records"` // in scope of this run
	Failures []ConflictInfo `json:"failures,omitempty"`
	Retries  int64          `json:"retries"`
	// Conflicts counts records in conflict, which copy never copies.
	Conflicts int64 `json:"conflicts"`
}

// bufferMax: objects up to this size are read whole (hashed before the upload, so the
// target can check the SHA-256 itself and the SDK can retry a seekable body); larger
// ones stream, hashed on the way through.
const bufferMax = 4 << 20

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errPermanent marks an error retrying will not fix within this run.
var errPermanent = errors.New("permanent")

// Copy copies every planned record to the target, verifying checksums on the way.
func (m *Migration) Copy(ctx context.Context) (*CopyResult, error) {
	res := &CopyResult{}
	q := checkpoints.Query{States: []checkpoints.RecordState{checkpoints.Planned, checkpoints.Failed}}
	var copied, skipped, failed, nbytes, retries atomic.Int64
	var conflicts int64
	pr, err := m.runPhase(ctx, &phase{
		name: "copy", bar: "copy", needPlan: true,
		guard: m.checkResidency,
		check: func(ctx context.Context) (size, error) {
			if err := m.checkIdentity(ctx, "copy"); err != nil {
				return size{}, err // writing to a site under the target's name (identity.go)
			}
			st, err := m.State.Stats(ctx, m.now())
			if err != nil {
				return size{}, Errorf(ExitRuntime, "%w", err)
			}
			for _, s := range q.States {
				res.Records += st.Records[s].N
				res.Bytes += st.Records[s].Bytes // what a dry run would copy
			}
			conflicts = st.Records[checkpoints.Conflict].N
			return size{n: res.Records, bytes: res.Bytes}, nil
		},
		query: q, conc: m.Spec.Copy.Concurrency,
		each: func(ctx context.Context, pr *run, r checkpoints.Record) ([]checkpoints.Record, error) {
			if st, why := m.specVerdict(recordSiteKey(&r)); st != "" {
				// Planned by a ferry that kept rejected records as failed: never copied.
				r.State, r.LastError = st, why
				pr.tick(1, 0)
				return []checkpoints.Record{r}, nil
			}
			out, skip, tries, err := m.copyRecord(ctx, r)
			retries.Add(int64(tries - 1))
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if ferr := m.stopFatal("copy", err); ferr != nil {
					return nil, ferr // bad credentials, no bucket, a full disk: every record would fail alike
				}
				failed.Add(1)
				pr.problem(r.Key, errString(err))
				m.log.Warn("copy failed", "key", r.Key, "attempts", tries, "err", err)
			} else if skip {
				skipped.Add(1)
			} else {
				copied.Add(1)
				nbytes.Add(out.Size)
			}
			m.countCopy(out, skip, tries, err)
			pr.tick(1, out.Size)
			return []checkpoints.Record{out}, nil
		},
		tally: func(pr *run) {
			res.Copied, res.Skipped, res.Failed, res.Bytes, res.Retries = copied.Load(), skipped.Load(), failed.Load(), nbytes.Load(), retries.Load()
			res.Failures = pr.Problems()
		},
		end: func(context.Context, *run) error {
			if res.Failed > 0 {
				// Name one failure: a cause shared by every record (no permission, a
				// wrong endpoint) should not hide in the per-record warnings.
				first := ""
				if len(res.Failures) > 0 {
					first = fmt.Sprintf("; for example %q: %s", res.Failures[0].Key, res.Failures[0].Reason)
				}
				return Errorf(ExitIncomplete, "copy finished: %d records failed (rerun to retry them)%s", res.Failed, first)
			}
			if res.Conflicts = conflicts; res.Conflicts > 0 {
				return Errorf(ExitIncomplete, "copy finished: %d records in conflict were not copied", res.Conflicts)
			}
			return nil
		},
	})
	res.DryRun = pr.dry
	if !pr.checked {
		return nil, err // stopped before there was anything to report
	}
	return res, err
}

// copyRecord copies one record with bounded retries and returns its new state.
func (m *Migration) copyRecord(ctx context.Context, r checkpoints.Record) (checkpoints.Record, bool, int, error) {
	retries := m.Spec.Copy.Retries
	if retries < 1 {
		retries = 1
	}
	var err error
	tries := 0
	out := r
	for tries < retries {
		tries++
		var skip bool
		out = r
		out.Replicas = slices.Clone(r.Replicas)
		skip, err = m.copyAttempt(ctx, &out)
		if err == nil {
			out.State = checkpoints.Copied
			out.Attempts = r.Attempts + tries
			out.LastError = ""
			out.CopiedAt = m.now().UTC()
			return out, skip, tries, nil
		}
		if ctx.Err() != nil || errors.Is(err, errPermanent) || errors.Is(err, providers.ErrPermission) || providers.Fatal(err) {
			break // retrying cannot fix these
		}
		m.debug("copy attempt failed", "key", r.Key, "attempt", tries, "err", err)
		if !sleep(ctx, backoff(tries)) {
			break
		}
	}
	r.Replicas = out.Replicas // keeps what the attempts learnt (a replica gone missing)
	r.State = checkpoints.Failed
	r.Attempts += tries
	r.LastError = errString(err)
	return r, false, tries, err
}

func backoff(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(attempt, 7)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// sources lists the replicas a copy may read, primary first.
func (m *Migration) sources(r *checkpoints.Record) []*checkpoints.Replica {
	var out []*checkpoints.Replica
	for i := range r.Replicas {
		p := &r.Replicas[i]
		if p.State == checkpoints.Present || p.State == checkpoints.Identical || p.State == checkpoints.Restored || p.State == checkpoints.Undeletable {
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return m.siteOrder(out[i].Site) < m.siteOrder(out[j].Site) })
	return out
}

// copyAttempt reads one replica, writes it to the target and checks the target's own
// checksum against what was read. It fills r's copy fields.
func (m *Migration) copyAttempt(ctx context.Context, r *checkpoints.Record) (skipped bool, err error) {
	srcs := m.sources(r)
	if len(srcs) == 0 {
		return false, fmt.Errorf("%w: no readable replica", errPermanent)
	}
	src := srcs[0]
	store := m.Sites[src.Site]
	if r.TargetKey == "" {
		r.TargetKey = r.Key
	}
	// A target copy that already matches a checksum the source vouches for is not
	// copied again, provided the source still holds exactly the planned version.
	if src.SHA256 != "" {
		cur, serr := store.Stat(ctx, src.SiteKey)
		t, err := m.Target.Stat(ctx, r.TargetKey)
		if serr == nil && err == nil && cur.SameVersion(replicaObject(*src)) && cur.Checksums.SHA256 == src.SHA256 &&
			t.Size == src.Size && t.Checksums.SHA256 == src.SHA256 {
			r.SHA256, r.Source, r.Size = src.SHA256, src.Site, src.Size
			r.TargetETag, r.TargetVersion = t.ETag, t.Version
			r.CRC32C = t.Checksums.CRC32C
			return true, nil
		}
	}
	// Where the store would check the bytes against its own checksum while they are
	// read, copy checks them itself against the hashes it computes anyway (below):
	// the same proof without hashing every byte twice.
	caps := m.caps(src.Site)
	open := store.Open
	if caps.UncheckedOpener != nil {
		open = caps.UncheckedOpener.OpenUnchecked
	}
	snapshot := caps.SnapshotReads
	rc, obj, err := open(ctx, src.SiteKey)
	if err != nil {
		if errors.Is(err, providers.ErrNotFound) {
			src.State = checkpoints.Missing
			src.LastError = "gone from the site before it was copied"
		}
		return false, blame(src.Site, fmt.Errorf("open %s at %s: %w", src.SiteKey, src.Site, err))
	}
	defer rc.Close()
	if !obj.SameVersion(replicaObject(*src)) {
		return false, fmt.Errorf("%w: %s at %s changed since the plan (size/etag/mtime): run `ferry plan` again", errPermanent, src.SiteKey, src.Site)
	}
	sha, crc := sha256.New(), crc32.New(crcTable)
	opts := providers.PutOptions{Metadata: map[string]string{
		"ferry-migration":   url.PathEscape(m.Spec.Migration),
		"ferry-source-site": url.PathEscape(src.Site),
		"ferry-source-key":  url.PathEscape(src.SiteKey),
	}}
	var put providers.Object
	var n int64
	var unchanged chan error // the source's re-check, once the bytes are read
	if obj.Size <= bufferMax {
		buf := bufPool.Get().(*bytes.Buffer)
		defer func() { buf.Reset(); bufPool.Put(buf) }()
		buf.Reset()
		// Read into the buffer's own storage (no 32 KiB copy buffer per record),
		// then hash what was read.
		buf.Grow(int(obj.Size) + bytes.MinRead)
		n, err = buf.ReadFrom(io.LimitReader(rc, obj.Size+1))
		if err != nil {
			return false, blame(src.Site, fmt.Errorf("read %s at %s: %w", src.SiteKey, src.Site, err))
		}
		if n != obj.Size {
			return false, fmt.Errorf("read %s at %s: got %d bytes, expected %d", src.SiteKey, src.Site, n, obj.Size)
		}
		sha.Write(buf.Bytes())
		crc.Write(buf.Bytes())
		if err := sourceSums(src, obj, sha, crc); err != nil {
			return false, err
		}
		opts.SHA256 = hex.EncodeToString(sha.Sum(nil))
		opts.CRC32C = crcHex(crc)
		opts.Metadata["ferry-sha256"] = opts.SHA256
		// Every byte is read: check that the source did not change under the read
		// while the target write runs (a round trip less per record).
		if !snapshot {
			unchanged = make(chan error, 1)
			go func() { unchanged <- sourceUnchanged(ctx, store, src, obj) }()
		}
		put, err = m.Target.Put(ctx, r.TargetKey, bytes.NewReader(buf.Bytes()), n, opts)
	} else {
		// At the end of the stream the sums are checked before the reader reports
		// it, so the Put fails and stores nothing when they do not match.
		cr := &countingReader{r: &sumCheck{r: io.TeeReader(io.LimitReader(rc, obj.Size+1), io.MultiWriter(sha, crc)),
			check: func() error { return sourceSums(src, obj, sha, crc) }}}
		put, err = m.Target.Put(ctx, r.TargetKey, cr, obj.Size, opts)
		n = cr.n
		if err == nil && n != obj.Size {
			err = fmt.Errorf("read %s at %s: got %d bytes, expected %d", src.SiteKey, src.Site, n, obj.Size)
		}
	}
	if err != nil {
		if unchanged != nil {
			<-unchanged // no request outlives the attempt
		}
		return false, blame(spec.TargetName, fmt.Errorf("put %s: %w", r.TargetKey, err))
	}
	failpoint("copy-after-put")
	gotSHA, gotCRC := hex.EncodeToString(sha.Sum(nil)), crcHex(crc)
	// The source must not have changed while it was read. A streamed record is
	// read until the Put ends, so it is checked now. A snapshot read needs no check:
	// its bytes are the version obj names, which matched the plan above.
	if unchanged == nil && !snapshot {
		unchanged = make(chan error, 1)
		unchanged <- sourceUnchanged(ctx, store, src, obj)
	}
	if unchanged != nil {
		if err := <-unchanged; err != nil {
			return false, blame(src.Site, err)
		}
	}
	// The target's own report must agree with what was read.
	if put.Size != n {
		return false, fmt.Errorf("%w: target reports %d bytes, read %d", providers.ErrChecksum, put.Size, n)
	}
	if put.Checksums.SHA256 != "" && put.Checksums.SHA256 != gotSHA {
		return false, fmt.Errorf("%w: target sha256 %s, read %s", providers.ErrChecksum, short(put.Checksums.SHA256), short(gotSHA))
	}
	if put.Checksums.CRC32C != "" && put.Checksums.CRC32C != gotCRC {
		return false, fmt.Errorf("%w: target crc32c %s, read %s", providers.ErrChecksum, put.Checksums.CRC32C, gotCRC)
	}
	r.Size, r.SHA256, r.CRC32C, r.Source = n, gotSHA, gotCRC, src.Site
	r.TargetETag, r.TargetVersion = put.ETag, put.Version
	src.SHA256 = gotSHA
	src.LastError = ""
	return false, nil
}

// sourceSums checks the hashes of the bytes read against the checksums the source
// reported with them (an ErrChecksum is retried: a read corrupted in flight).
func sourceSums(src *checkpoints.Replica, obj providers.Object, sha hash.Hash, crc hash.Hash32) error {
	if want := obj.Checksums.SHA256; want != "" {
		if got := hex.EncodeToString(sha.Sum(nil)); got != want {
			return fmt.Errorf("%w: %s at %s: the bytes read hash to sha256 %s, the site reports %s", providers.ErrChecksum, src.SiteKey, src.Site, short(got), short(want))
		}
	}
	if want := obj.Checksums.CRC32C; want != "" {
		if got := crcHex(crc); got != want {
			return fmt.Errorf("%w: %s at %s: the bytes read have crc32c %s, the site reports %s", providers.ErrChecksum, src.SiteKey, src.Site, got, want)
		}
	}
	return nil
}

// sumCheck runs check when the reader ends, and fails the read instead of ending
// it when check fails.
type sumCheck struct {
	r     io.Reader
	check func() error
}

func (c *sumCheck) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		if cerr := c.check(); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

// sourceUnchanged checks that the source replica is still the version obj that
// was read.
func sourceUnchanged(ctx context.Context, store providers.Store, src *checkpoints.Replica, obj providers.Object) error {
	now, err := store.Stat(ctx, src.SiteKey)
	if err != nil {
		return fmt.Errorf("re-stat %s at %s: %w", src.SiteKey, src.Site, err)
	}
	if !now.SameVersion(obj) {
		return fmt.Errorf("%s at %s changed during the copy; retrying", src.SiteKey, src.Site)
	}
	return nil
}

func crcHex(h hash.Hash32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], h.Sum32())
	return hex.EncodeToString(b[:])
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
