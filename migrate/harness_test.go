package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/file"
	"github.com/ferrymigrate/ferry/providers/mem"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// StoreKind names a provider the pipeline tests run against. Other providers (s3 on
// MinIO, oci on the emulator) register themselves in their own test files.
type storeKind struct {
	name string
	// open returns a fresh, empty store for site name.
	open func(t *testing.T, h *harness, name string) providers.Store
}

var storeKinds = []storeKind{
	{"file", func(t *testing.T, h *harness, name string) providers.Store {
		dir := filepath.Join(h.dir, "stores", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s, err := file.New(dir, file.Options{Migration: "test-migration"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"mem", func(t *testing.T, h *harness, name string) providers.Store {
		n := fmt.Sprintf("%s-%s", strings.ReplaceAll(t.Name(), "/", "_"), name)
		mem.Reset(n)
		t.Cleanup(func() { mem.Reset(n) })
		return mem.New(n)
	}},
}

// eachKind runs f against every store kind.
func eachKind(t *testing.T, f func(t *testing.T, k storeKind)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) { f(t, k) })
	}
}

// harness is one migration under test: a spec on disk, stores opened through faulty
// decorators (so a test can inject faults), a SQLite state and a settable clock.
type harness struct {
	t      *testing.T
	dir    string
	kind   storeKind
	raw    map[string]providers.Store
	faults map[string]faulty.Store
	// buckets names each store's bucket, for kinds that record it (identity_test.go).
	buckets map[string]string
	spec    string
	logs    *bytes.Buffer
	logMu   sync.Mutex // several migrations (workers) may log into logs at once
	mu      sync.Mutex
	now     time.Time
}

// logWriter serialises writes to the harness's log buffer.
type logWriter struct{ h *harness }

func (w logWriter) Write(p []byte) (int, error) {
	w.h.logMu.Lock()
	defer w.h.logMu.Unlock()
	return w.h.logs.Write(p)
}

const sitesYAML = `migration: test-migration
sources:
  - {name: virginia, role: primary, url: file://./stores/virginia}
  - {name: singapore, role: backup, url: file://./stores/singapore}
  - {name: archive, role: backup, url: file://./stores/archive}
target:
  url: file://./stores/target
records:
  user: '^(?P<user>[^/]+)/'
  conflicts: %s
copy:
  concurrency: 8
  retries: 3
delete:
  mode: soft
  grace: 24h
  stages:
    - {name: canary, sites: [singapore], sample: 20%%}
    - {name: backups, sites: [singapore, archive]}
    - {name: primary, sites: [virginia], mode: hard}
report:
  signing_key: keys/ferry.key
  signer: Test Data Protection Office
`

func newHarness(t *testing.T, k storeKind, specYAML string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), kind: k, raw: map[string]providers.Store{}, faults: map[string]faulty.Store{}, buckets: map[string]string{},
		spec: specYAML, logs: &bytes.Buffer{}, now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	if err := os.WriteFile(filepath.Join(h.dir, "ferry.yaml"), []byte(specYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(h.dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := certificate.GenerateKeyPair(filepath.Join(h.dir, "keys")); err != nil {
		t.Fatal(err)
	}
	sp, err := spec.Load(filepath.Join(h.dir, "ferry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sp.Sources {
		h.addStore(s.Name)
	}
	h.addStore(spec.TargetName)
	return h
}

func (h *harness) addStore(name string) {
	s := h.kind.open(h.t, h, name)
	h.raw[name] = s
	h.faults[name] = faulty.Wrap(s)
}

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = h.now.Add(d)
}

func (h *harness) options(dry bool) Options {
	return Options{
		SpecPath: filepath.Join(h.dir, "ferry.yaml"),
		DryRun:   dry,
		Logger:   slog.New(slog.NewTextHandler(logWriter{h}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:      h.clock,
		OpenStore: func(ctx context.Context, cfg providers.Config) (providers.Store, error) {
			f, ok := h.faults[cfg.Name]
			if !ok {
				return nil, fmt.Errorf("no test store %q", cfg.Name)
			}
			return f.KeepOpen(), nil // the harness's stores outlive Migration.Close
		},
	}
}

// nopClose keeps a harness store open across Migration.Close. It has only the
// faulty store's core methods: a test that embeds it adds the capabilities it wants.
type nopClose struct{ faulty.Store }

func (nopClose) Close() error { return nil }

func (n nopClose) Unwrap() providers.Store { return n.Store }

// open opens the migration (the real Open path, with the harness's stores).
func (h *harness) open() *Migration {
	h.t.Helper()
	m, err := Open(context.Background(), h.options(false))
	if err != nil {
		h.t.Fatalf("open: %v", err)
	}
	h.t.Cleanup(func() { m.Close() })
	return m
}

func (h *harness) openDry() *Migration {
	h.t.Helper()
	m, err := Open(context.Background(), h.options(true))
	if err != nil {
		h.t.Fatalf("open dry: %v", err)
	}
	h.t.Cleanup(func() { m.Close() })
	return m
}

// populate writes records into a site (bypassing faults).
func (h *harness) populate(site string, recs []synth.Record) {
	h.t.Helper()
	if err := synth.Populate(context.Background(), h.raw[site], recs, 8); err != nil {
		h.t.Fatal(err)
	}
}

// put writes one object with the given bytes into a store.
func (h *harness) put(store, key string, data []byte) {
	h.t.Helper()
	if _, err := h.raw[store].Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), providers.PutOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// listing is the oracle: it lists a store directly, not asking ferry. It leaves out
// ferry's marker objects (MarkerDir), which are never data.
func (h *harness) listing(store string) map[string]providers.Object {
	h.t.Helper()
	out := map[string]providers.Object{}
	err := h.raw[store].List(context.Background(), func(o providers.Object) error {
		if !isMarkerKey(o.Key) { // ferry's marker at the target is not data
			out[o.Key] = o
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) read(store, key string) []byte {
	h.t.Helper()
	rc, _, err := h.raw[store].Open(context.Background(), key)
	if err != nil {
		h.t.Fatalf("read %s %q: %v", store, key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// standardData writes a data set: every record at virginia, 80% at singapore, 30% at
// archive. It returns the records.
func (h *harness) standardData(users int) []synth.Record {
	recs := synth.Records(synth.Options{Users: users, RecordsPerUser: 4, Tricky: true, DirMarkers: providers.FeaturesOf(h.raw["virginia"]).DirMarkers, Seed: 7})
	h.populate("virginia", recs)
	h.populate("singapore", synth.Subset(recs, 0.8, 1))
	h.populate("archive", synth.Subset(recs, 0.3, 2))
	return recs
}

func mustCode(t *testing.T, err error, code int) {
	t.Helper()
	if got := ExitCode(err); got != code {
		t.Fatalf("exit code %d, want %d (err: %v)", got, code, err)
	}
}

func record(t *testing.T, m *Migration, key string) checkpoints.Record {
	t.Helper()
	r, ok, err := m.State.Get(context.Background(), key)
	if err != nil || !ok {
		t.Fatalf("record %q: ok=%v err=%v", key, ok, err)
	}
	return r
}

func replicaState(t *testing.T, m *Migration, key, site string) checkpoints.ReplicaState {
	t.Helper()
	r := record(t, m, key)
	p := r.Replica(site)
	if p == nil {
		t.Fatalf("record %q has no replica at %s", key, site)
	}
	return p.State
}

// runAll runs plan, copy and verify and fails the test on any error.
func runThroughVerify(t *testing.T, m *Migration) *PlanResult {
	t.Helper()
	ctx := context.Background()
	p, err := m.Plan(ctx)
	if err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatalf("plan: %v", err)
	}
	if _, err := m.Copy(ctx); err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatalf("copy: %v", err)
	}
	if _, err := m.Verify(ctx, false); err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatalf("verify: %v", err)
	}
	return p
}

// mustPlanCopy plans and copies, failing the test on any error (exit 3 included).
func mustPlanCopy(t *testing.T, m *Migration) {
	t.Helper()
	ctx := context.Background()
	if _, err := m.Plan(ctx); err != nil {
		t.Fatalf("plan: %v", err)
	}
	if _, err := m.Copy(ctx); err != nil {
		t.Fatalf("copy: %v", err)
	}
}

// deleteStage previews a stage (dry run on the same migration) and confirms it.
func deleteStage(t *testing.T, m *Migration, stage string) (*DeleteResult, error) {
	t.Helper()
	sc, err := m.stageScope(context.Background(), stage, false)
	if err != nil {
		t.Fatal(err)
	}
	return m.Delete(context.Background(), stage, sc.Digest[:16])
}

var errInjected = errors.New("injected fault")

// TestMain stops the shared S3 test servers and removes the built ferry binary when
// the tests end. The S3 stores retry
// after a short fixed delay: the fault suite throws hundreds of 503s and dropped
// connections, and the SDK's backoff (up to 20s) would only add waiting.
func TestMain(m *testing.M) {
	if limit := os.Getenv("FERRY_TEST_FSIZE_EXEC"); limit != "" {
		execWithFileSizeLimit(limit)
	}
	s3.SetTestBackoff(20 * time.Millisecond)
	code := m.Run()
	s3test.StopShared()
	removeFerryBin()
	os.Exit(code)
}

// execWithFileSizeLimit replaces this test binary with the command in its arguments
// after "--", under RLIMIT_FSIZE = limit bytes and with SIGXFSZ ignored (inherited
// across exec; Go leaves it so), so writes past the limit fail with EFBIG as on a
// full disk. The disk-full tests run ferry this way: no privileges needed.
func execWithFileSizeLimit(limit string) {
	n, err := strconv.ParseUint(limit, 10, 64)
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if err != nil || len(args) == 0 {
		fmt.Fprintln(os.Stderr, "FERRY_TEST_FSIZE_EXEC: bad use")
		os.Exit(2)
	}
	signal.Ignore(syscall.SIGXFSZ)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		os.Exit(2)
	}
	env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "FERRY_TEST_FSIZE_EXEC=") })
	err = syscall.Exec(args[0], args, env)
	fmt.Fprintln(os.Stderr, "exec:", err)
	os.Exit(2)
}

func statFile(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

type synthRecord = synth.Record

func replaceOnce(s, old, new string) string {
	i := strings.Index(s, old)
	if i < 0 {
		panic("replaceOnce: " + old)
	}
	return s[:i] + new + s[i+len(old):]
}

// ferryBin is the real binary, built once per test process for every test that runs
// it (the kill, worker, disk-full and privilege tests); TestMain removes it.
var ferryBin struct {
	once      sync.Once
	dir, path string
	err       error
}

// BuildFerry returns the path of the real ferry binary, building it on first use.
func BuildFerry(t *testing.T) string {
	t.Helper()
	ferryBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-test-bin-")
		if err != nil {
			ferryBin.err = err
			return
		}
		ferryBin.dir, ferryBin.path = dir, filepath.Join(dir, "ferry")
		cmd := exec.Command("go", "build", "-o", ferryBin.path, "github.com/ferrymigrate/ferry/cmd/ferry")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			ferryBin.err = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if ferryBin.err != nil {
		t.Fatalf("building ferry: %v", ferryBin.err)
	}
	return ferryBin.path
}

// removeFerryBin removes the binary BuildFerry built, if it did.
func removeFerryBin() {
	if ferryBin.dir != "" {
		os.RemoveAll(ferryBin.dir)
	}
}
