package checkpoints_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/storetest"
)

func openTemp(t *testing.T) checkpoints.Store {
	t.Helper()
	return openTempWith(t, checkpoints.Options{})
}

func openTempWith(t *testing.T, opts checkpoints.Options) checkpoints.Store {
	t.Helper()
	s, err := checkpoints.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "state.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, openTempWith)
}

// ---- helpers ----

func openPath(t *testing.T, path string, opts checkpoints.Options) *checkpoints.SQLite {
	t.Helper()
	s, err := checkpoints.OpenSQLite(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("OpenSQLite(%s, %+v): %v", path, opts, err)
	}
	return s
}

func closeStore(t *testing.T, s checkpoints.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// rec is a record whose content follows from its key and n, so that a reader can
// check what it finds.
func rec(key string, n int) checkpoints.Record {
	r := checkpoints.Record{Key: key, User: strings.SplitN(key, "/", 2)[0], Size: int64(len(key) + n), State: checkpoints.Copied,
		SHA256: fmt.Sprintf("%064x", n), Attempts: n, CopiedAt: time.Unix(1700000000, int64(n)).UTC()}
	for i, site := range []string{"virginia", "singapore", "archive"} {
		r.Replicas = append(r.Replicas, checkpoints.Replica{Site: site, SiteKey: key, Primary: i == 0, Size: int64(len(key) + n),
			ETag: fmt.Sprintf("e%d", n), State: checkpoints.Identical, Stage: []string{"primary", "canary", "backups"}[i]})
	}
	return r
}

// consistent reports what is wrong with r, if it is not what rec(r.Key, r.Attempts) saved.
func consistent(r checkpoints.Record) error {
	w := rec(r.Key, r.Attempts)
	if r.Size != w.Size || r.SHA256 != w.SHA256 || !r.CopiedAt.Equal(w.CopiedAt) || len(r.Replicas) != 3 {
		return fmt.Errorf("record %q (attempts %d) is not what was saved: %+v", r.Key, r.Attempts, r)
	}
	for _, p := range r.Replicas {
		if p.Size != w.Size || p.ETag != w.Replicas[0].ETag {
			return fmt.Errorf("record %q (attempts %d) has a replica of another write: %+v", r.Key, r.Attempts, p)
		}
	}
	return nil
}

type fileState struct {
	data  []byte
	mtime time.Time
	names []string // the directory's entries
}

func snapshot(t *testing.T, path string) fileState {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		// A read-only connection leaves an empty WAL and its index behind when it
		// closes (SQLite cannot checkpoint and remove them without writing); they
		// carry no data, which sameFile checks.
		if n := e.Name(); n != filepath.Base(path)+"-wal" && n != filepath.Base(path)+"-shm" {
			names = append(names, n)
		}
	}
	return fileState{data: data, mtime: fi.ModTime(), names: names}
}

func sameFile(t *testing.T, what string, path string, before fileState) {
	t.Helper()
	after := snapshot(t, path)
	if !bytes.Equal(before.data, after.data) {
		t.Errorf("%s: the state file's bytes changed", what)
	}
	if !before.mtime.Equal(after.mtime) {
		t.Errorf("%s: the state file's mtime changed: %v -> %v", what, before.mtime, after.mtime)
	}
	if !slices.Equal(before.names, after.names) {
		t.Errorf("%s: the state directory changed: %v -> %v", what, before.names, after.names)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("%s: the state's WAL holds %d bytes: something was written", what, fi.Size())
	}
}

// seed writes one of everything the store holds.
func seed(t *testing.T, s checkpoints.Store) {
	t.Helper()
	ctx := context.Background()
	var recs []checkpoints.Record
	for i := range 50 {
		recs = append(recs, rec(fmt.Sprintf("alice/%03d", i), i))
	}
	if err := s.Save(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(ctx, "plan_digest", "real"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveStage(ctx, checkpoints.StageState{Name: "canary", State: "pending"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListed(ctx, []checkpoints.Listed{{Site: "virginia", Key: "alice/000", SiteKey: "alice/000", Size: 9}}); err != nil {
		t.Fatal(err)
	}
}

// checkSeed asserts that s holds exactly what seed wrote.
func checkSeed(t *testing.T, what string, s checkpoints.Store) {
	t.Helper()
	ctx := context.Background()
	n := 0
	if err := s.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
		n++
		if err := consistent(r); err != nil {
			return err
		}
		if r.State != checkpoints.Copied {
			return fmt.Errorf("record %q is %s", r.Key, r.State)
		}
		return nil
	}); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if n != 50 {
		t.Errorf("%s: %d records, want 50", what, n)
	}
	if v, _, err := s.Meta(ctx, "plan_digest"); err != nil || v != "real" {
		t.Errorf("%s: meta plan_digest = %q, %v", what, v, err)
	}
	if st, err := s.Stages(ctx); err != nil || len(st) != 1 || st[0].State != "pending" {
		t.Errorf("%s: stages = %+v, %v", what, st, err)
	}
	if n, err := s.ListedCount(ctx, "virginia"); err != nil || n != 1 {
		t.Errorf("%s: listed = %d, %v", what, n, err)
	}
	if _, ok, err := s.LockHolder(ctx); ok || err != nil {
		t.Errorf("%s: a lock is held (%v, %v)", what, ok, err)
	}
}

// scribble writes to every part of s.
func scribble(t *testing.T, s checkpoints.Store) {
	t.Helper()
	ctx := context.Background()
	changed := rec("alice/000", 0)
	changed.State = checkpoints.Verified
	changed.Replicas = changed.Replicas[:1]
	if err := s.Save(ctx, []checkpoints.Record{changed, rec("bob/new", 1)}); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := s.SetMeta(ctx, "plan_digest", "dry"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveStage(ctx, checkpoints.StageState{Name: "canary", State: "finished"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ResetListing(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(ctx, checkpoints.Self("delete"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// The writes are visible through the same store.
	if r, ok, err := s.Get(ctx, "alice/000"); err != nil || !ok || r.State != checkpoints.Verified || len(r.Replicas) != 1 {
		t.Fatalf("Get after writing: %+v, %v, %v", r, ok, err)
	}
	if v, _, _ := s.Meta(ctx, "plan_digest"); v != "dry" {
		t.Fatalf("Meta after writing: %q", v)
	}
}

// ---- Open options ----

func TestSQLiteScratchLeavesRealStateAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	real := openPath(t, path, checkpoints.Options{})
	seed(t, real)
	closeStore(t, real)
	before := snapshot(t, path)
	time.Sleep(20 * time.Millisecond) // so that a write would show in the mtime

	dry := openPath(t, path, checkpoints.Options{Scratch: true})
	if dry.Path() == path || strings.HasPrefix(dry.Path(), filepath.Dir(path)) {
		t.Fatalf("scratch state %s is not a copy elsewhere", dry.Path())
	}
	checkSeed(t, "scratch copy", dry) // it starts as a copy of the real state
	scribble(t, dry)
	sameFile(t, "while the scratch is open", path, before)
	closeStore(t, dry)
	if _, err := os.Stat(filepath.Dir(dry.Path())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Close left the scratch copy behind: %v", err)
	}
	sameFile(t, "after the dry run", path, before)

	real = openPath(t, path, checkpoints.Options{ReadOnly: true})
	checkSeed(t, "real state after a dry run", real)
	if _, ok, _ := real.Get(context.Background(), "bob/new"); ok {
		t.Error("a record saved in the dry run reached the real state")
	}
	closeStore(t, real)
}

// TestSQLiteScratchWhileWriterOpen: a dry run next to a live process sees its committed
// writes (still in the WAL), and the live process sees none of the dry run's.
func TestSQLiteScratchWhileWriterOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	live := openPath(t, path, checkpoints.Options{})
	defer closeStore(t, live)
	seed(t, live)
	if err := live.Save(ctx, []checkpoints.Record{rec("carol/late", 7)}); err != nil {
		t.Fatal(err)
	}
	dry := openPath(t, path, checkpoints.Options{Scratch: true})
	if r, ok, err := dry.Get(ctx, "carol/late"); err != nil || !ok || consistent(r) != nil {
		t.Errorf("scratch copy misses the live process's last write: %+v, %v, %v", r, ok, err)
	}
	scribble(t, dry)
	closeStore(t, dry)
	if err := live.Save(ctx, []checkpoints.Record{rec("carol/later", 8)}); err != nil {
		t.Fatalf("the live process cannot write after a dry run: %v", err)
	}
	carol := 0
	if err := live.Records(ctx, checkpoints.Query{User: "carol"}, func(r checkpoints.Record) error {
		carol++
		return consistent(r)
	}); err != nil || carol != 2 {
		t.Errorf("the live state after a dry run: %d of its 2 late records, %v", carol, err)
	}
	if _, ok, _ := live.Get(ctx, "bob/new"); ok {
		t.Error("a record saved in the dry run reached the live state")
	}
	if r, _, _ := live.Get(ctx, "alice/000"); r.State != checkpoints.Copied || len(r.Replicas) != 3 {
		t.Errorf("the dry run changed the live state: %+v", r)
	}
	if _, ok, _ := live.LockHolder(ctx); ok {
		t.Error("the dry run's lock reached the live state")
	}
}

func TestSQLiteScratchMissingPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "state.db")
	dry := openPath(t, path, checkpoints.Options{Scratch: true})
	scribble(t, dry)
	if n, err := dry.ListedCount(context.Background(), "virginia"); err != nil || n != 0 {
		t.Errorf("ListedCount = %d, %v", n, err)
	}
	closeStore(t, dry)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("a dry run on a missing state created %v in %s", ents, dir)
	}
}

func TestSQLiteReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope", "state.db")
	_, err := checkpoints.OpenSQLite(ctx, missing, checkpoints.Options{ReadOnly: true})
	if err == nil {
		t.Fatal("ReadOnly open of a missing state succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "ferry plan") {
		t.Errorf("ReadOnly open of a missing state: %q; want a not-exist error naming the path and what to do", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("ReadOnly open of a missing state created %v", ents)
	}

	path := filepath.Join(dir, "state.db")
	w := openPath(t, path, checkpoints.Options{})
	seed(t, w)
	closeStore(t, w)
	before := snapshot(t, path)
	time.Sleep(20 * time.Millisecond)

	ro := openPath(t, path, checkpoints.Options{ReadOnly: true})
	checkSeed(t, "read-only", ro)
	if _, err := ro.Stats(ctx, time.Now()); err != nil {
		t.Errorf("Stats: %v", err)
	}
	for name, write := range map[string]func() error{
		"Save":         func() error { return ro.Save(ctx, []checkpoints.Record{rec("bob/x", 1)}) },
		"SetMeta":      func() error { return ro.SetMeta(ctx, "plan_digest", "x") },
		"SaveStage":    func() error { return ro.SaveStage(ctx, checkpoints.StageState{Name: "x"}) },
		"AddListed":    func() error { return ro.AddListed(ctx, []checkpoints.Listed{{Site: "s", Key: "k"}}) },
		"ResetListing": func() error { return ro.ResetListing(ctx) },
		"Lock":         func() error { _, err := ro.Lock(ctx, checkpoints.Self("copy"), time.Minute); return err },
	} {
		if err := write(); err == nil {
			t.Errorf("%s on a read-only store succeeded", name)
		}
	}
	closeStore(t, ro)
	sameFile(t, "read-only use", path, before)
}

func TestOpenPostgresUnreachableRedactsPassword(t *testing.T) {
	_, err := checkpoints.Open(context.Background(), "postgres://ferry:s3cr3t-pw@db.example:5432/ferry", checkpoints.Options{})
	if err == nil {
		t.Fatal("Open(postgres://) succeeded without a PostgreSQL store")
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") || !strings.Contains(err.Error(), "ferry:xxxxx@db.example") {
		t.Errorf("error %q must name the DSN without its password (I8)", err)
	}
}

// ---- durability ----

func TestSQLiteReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "deep", "dir", "state.db")
	s := openPath(t, path, checkpoints.Options{})
	seed(t, s)
	other := checkpoints.LockInfo{Host: "elsewhere.invalid", PID: 42, Phase: "copy"}
	if _, err := s.Lock(ctx, other, time.Hour); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)

	// sqlite:// names the same file.
	for _, dsn := range []string{path, "sqlite://" + path} {
		s, err := checkpoints.Open(ctx, dsn, checkpoints.Options{})
		if err != nil {
			t.Fatalf("Open(%s): %v", dsn, err)
		}
		if h, ok, err := s.LockHolder(ctx); err != nil || !ok || h.Host != other.Host || h.PID != 42 {
			t.Fatalf("%s: lock holder after reopening = %+v, %v, %v", dsn, h, ok, err)
		}
		if _, err := s.Lock(ctx, checkpoints.Self("copy"), time.Minute); !errors.Is(err, checkpoints.ErrLocked) {
			t.Errorf("%s: Lock after reopening = %v; the other host's lease still runs", dsn, err)
		}
		closeStore(t, s)
	}
	s = openPath(t, path, checkpoints.Options{ReadOnly: true})
	defer closeStore(t, s)
	if v, _, _ := s.Meta(ctx, "plan_digest"); v != "real" {
		t.Errorf("meta after reopening: %q", v)
	}
	if err := s.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error { return consistent(r) }); err != nil {
		t.Error(err)
	}
}

// TestSQLiteAwkwardPaths: the state may live in a folder with spaces, '#', '?', '%' or
// unicode in its name (it sits beside the spec); the file must be that one, not an
// escaped twin.
func TestSQLiteAwkwardPaths(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"my migrations", "run #2", "why?", "100%41", "données"} {
		dir := filepath.Join(t.TempDir(), name)
		path := filepath.Join(dir, "ferry.db")
		s := openPath(t, path, checkpoints.Options{})
		if err := s.SetMeta(ctx, "where", name); err != nil {
			t.Fatal(err)
		}
		closeStore(t, s)
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 1 || ents[0].Name() != "ferry.db" {
			t.Errorf("%q: the folder holds %v (%v); want ferry.db", name, ents, err)
		}
		for _, opts := range []checkpoints.Options{{ReadOnly: true}, {Scratch: true}} {
			s := openPath(t, path, opts)
			if v, ok, err := s.Meta(ctx, "where"); err != nil || !ok || v != name {
				t.Errorf("%q %+v: Meta = %q, %v, %v", name, opts, v, ok, err)
			}
			closeStore(t, s)
		}
	}
}

// TestSQLiteConcurrentReaders: status (another process, read-only) and the pipeline's
// own reads run while a writer saves in a loop: WAL readers never see "database is
// locked", never see a half-written record, and never see progress go backwards.
func TestSQLiteConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	w := openPath(t, path, checkpoints.Options{})
	defer closeStore(t, w)
	if err := w.Save(ctx, []checkpoints.Record{rec("hot/key", 0)}); err != nil {
		t.Fatal(err)
	}
	w2 := openPath(t, path, checkpoints.Options{}) // a second handle, as another process
	defer closeStore(t, w2)
	ro := openPath(t, path, checkpoints.Options{ReadOnly: true})
	defer closeStore(t, ro)

	const rounds = 25
	var stop atomic.Bool
	var wg, writers sync.WaitGroup
	errs := make(chan error, 100)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	// Writers: new records, and the same hot record rewritten with new replicas.
	for wi, s := range []checkpoints.Store{w, w2} {
		writers.Go(func() {
			for i := 1; i <= rounds && !stop.Load(); i++ {
				batch := []checkpoints.Record{rec("hot/key", i*2+wi)}
				for j := range 10 {
					batch = append(batch, rec(fmt.Sprintf("w%d/%04d-%02d", wi, i, j), i))
				}
				if err := s.Save(ctx, batch); err != nil {
					report(fmt.Errorf("writer %d: %w", wi, err))
					return
				}
			}
		})
	}
	for _, s := range []checkpoints.Store{w, ro} {
		wg.Go(func() {
			var last int64
			for !stop.Load() {
				st, err := s.Stats(ctx, time.Now())
				if err != nil {
					report(fmt.Errorf("Stats: %w", err))
					return
				}
				n := st.Records[checkpoints.Copied].N
				if n < last {
					report(fmt.Errorf("Stats went backwards: %d records, then %d", last, n))
				}
				last = n
				if err := s.Records(ctx, checkpoints.Query{After: "hot", Limit: 200}, func(r checkpoints.Record) error {
					return consistent(r)
				}); err != nil {
					report(fmt.Errorf("Records: %w", err))
					return
				}
				time.Sleep(10 * time.Millisecond) // a status poller, not a busy loop
			}
		})
		wg.Go(func() {
			for !stop.Load() {
				r, ok, err := s.Get(ctx, "hot/key")
				if err != nil || !ok {
					report(fmt.Errorf("Get: %v %v", ok, err))
					return
				}
				if err := consistent(r); err != nil {
					report(fmt.Errorf("Get: %w", err))
				}
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	// Stop the readers once both writers are done.
	writersDone := make(chan struct{})
	go func() {
		writers.Wait()
		close(writersDone)
	}()
	select {
	case <-writersDone:
	case <-time.After(50 * time.Second):
		t.Error("writers did not finish in 50s")
	}
	stop.Store(true)
	wg.Wait()
	writers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if r, _, err := w.Get(ctx, "hot/key"); err != nil || (r.Attempts != 2*rounds && r.Attempts != 2*rounds+1) {
		t.Errorf("hot record after the writers: attempts %d, %v", r.Attempts, err)
	}
	st, err := ro.Stats(ctx, time.Now())
	if want := int64(1 + 2*rounds*10); err != nil || st.Records[checkpoints.Copied].N != want {
		t.Errorf("after the writers: %d records, %v; want %d", st.Records[checkpoints.Copied].N, err, want)
	}
}

// ---- integrity ----

func integrityCheck(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check of %s: %q, %v", path, res, err)
	}
}

// A Save writes many records per statement: a key that comes twice in one call is
// saved as its last version (replicas it dropped are gone), records without replicas
// and calls longer than one statement's chunk keep every record exactly as given.
func TestSaveChunksKeepEveryRecord(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	var recs []checkpoints.Record
	for i := range 150 {
		recs = append(recs, rec(fmt.Sprintf("u%d/%03d", i%7, i), i))
	}
	again := rec("u1/001", 1)
	again.State, again.Replicas = checkpoints.Verified, again.Replicas[1:2]
	bare := rec("u2/bare", 2)
	bare.Replicas = nil
	recs = append(recs, again, bare)
	if err := s.Save(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, want := range recs[:150] {
		got, ok, err := s.Get(ctx, want.Key)
		if err != nil || !ok {
			t.Fatalf("Get(%q): %v %v", want.Key, ok, err)
		}
		if want.Key == again.Key {
			if got.State != checkpoints.Verified || len(got.Replicas) != 1 || got.Replicas[0].Site != "singapore" {
				t.Fatalf("the second version of %q in one Save did not win: %+v", want.Key, got)
			}
			continue
		}
		if err := consistent(got); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok, err := s.Get(ctx, bare.Key); err != nil || !ok || len(got.Replicas) != 0 {
		t.Fatalf("a record without replicas: %+v %v %v", got, ok, err)
	}
	// Twice in a row, within one chunk.
	twice := again
	twice.Key = "u3/twice"
	if err := s.Save(ctx, []checkpoints.Record{rec(twice.Key, 1), twice}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Get(ctx, twice.Key); err != nil || got.State != checkpoints.Verified || len(got.Replicas) != 1 {
		t.Fatalf("the second version of %q in one chunk did not win: %+v %v", twice.Key, got, err)
	}
	// Dropping replicas across a chunk: every record loses its archive replica.
	for i := range recs[:150] {
		recs[i].Replicas = recs[i].Replicas[:2]
	}
	if err := s.Save(ctx, recs[:150]); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
		if r.Replica("archive") != nil {
			t.Errorf("%q kept a replica its last Save dropped", r.Key)
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 152 {
		t.Fatalf("%d records, want 152", n)
	}
}
