package migrate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/mem"
)

const benchSpec = `migration: bench
sources:
  - {name: virginia, role: primary, url: file://./stores/virginia}
  - {name: singapore, role: backup, url: file://./stores/singapore}
target:
  url: file://./stores/target
records:
  user: '^(?P<user>[^/]+)/'
copy:
  concurrency: 32
delete:
  mode: hard
  stages:
    - {name: all, sites: [virginia, singapore]}
`

// BenchmarkPipeline measures records/s through plan, copy, verify and delete state
// changes on SQLite with in-memory stores (target: 50,000/s). Each iteration migrates
// benchRecords records held at two sites.
func BenchmarkPipeline(b *testing.B) {
	for _, c := range []struct {
		name      string
		noJournal bool
	}{{"journal=on", false}, {"journal=off", true}} {
		b.Run(c.name, func(b *testing.B) {
			benchRecords := benchN()
			var total time.Duration
			phases := map[string]time.Duration{}
			for i := 0; i < b.N; i++ {
				total += pipelineOnce(b, benchRecords, c.noJournal, phases)
			}
			n := float64(benchRecords * b.N)
			b.ReportMetric(n/total.Seconds(), "records/s")
			b.ReportMetric(float64(phases[cpuSpent].Microseconds())/n, "CPU-µs/record")
			delete(phases, cpuSpent)
			for name, d := range phases {
				b.ReportMetric(n/d.Seconds(), name+"-rec/s")
			}
		})
	}
}

// BenchmarkPipelineJournalCost measures what the journal costs: each iteration runs
// the pipeline once with the journal and once without, alternating which goes first,
// so both see the same machine; it reports both rates and their ratio (with/without).
func BenchmarkPipelineJournalCost(b *testing.B) {
	benchRecords := benchN()
	var on, off time.Duration
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			on += pipelineOnce(b, benchRecords, false, nil)
			off += pipelineOnce(b, benchRecords, true, nil)
		} else {
			off += pipelineOnce(b, benchRecords, true, nil)
			on += pipelineOnce(b, benchRecords, false, nil)
		}
	}
	n := float64(benchRecords * b.N)
	b.ReportMetric(n/on.Seconds(), "journal-on-rec/s")
	b.ReportMetric(n/off.Seconds(), "journal-off-rec/s")
	b.ReportMetric(off.Seconds()/on.Seconds(), "on/off-ratio")
}

// pipelineOnce migrates n fresh records through plan, copy, verify and delete and
// returns the time it took (setup excluded), adding each phase's time to phases.
func pipelineOnce(b *testing.B, n int, noJournal bool, phases map[string]time.Duration) time.Duration {
	return pipelineWith(b, n, func(o *Options) { o.NoJournal = noJournal }, phases)
}

// pipelineWith is pipelineOnce with options of the caller's (another state, say).
func pipelineWith(b *testing.B, n int, with func(*Options), phases map[string]time.Duration) time.Duration {
	b.StopTimer()
	e := newBenchEnv(b, n)
	o := e.options()
	with(&o)
	m, err := Open(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.StartTimer()
	start, cpu0 := time.Now(), processCPU()
	step := func(name string, f func() error) {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		if phases != nil {
			phases[name] += time.Since(t0)
		}
	}
	step("plan", func() error { _, err := m.Plan(ctx); return err })
	step("copy", func() error { _, err := m.Copy(ctx); return err })
	step("verify", func() error { _, err := m.Verify(ctx, false); return err })
	step("delete", func() error {
		sc, err := m.stageScope(ctx, "all", false)
		if err != nil {
			return err
		}
		_, err = m.Delete(ctx, "all", sc.Digest)
		return err
	})
	// The journal's last entries are written at Close: part of the cost.
	step("close", m.Close)
	d := time.Since(start)
	if phases != nil {
		phases[cpuSpent] += processCPU() - cpu0
	}
	b.StopTimer()
	return d
}

// cpuSpent is the key under which pipelineWith adds up, in phases, the CPU time the
// process spent (on all its threads) while the phases ran.
const cpuSpent = "cpu"

// benchEnv is a spec on disk and in-memory stores holding n records at two sites.
type benchEnv struct {
	dir    string
	stores map[string]*mem.Store
}

func newBenchEnv(b *testing.B, n int) *benchEnv {
	e := &benchEnv{dir: b.TempDir(), stores: map[string]*mem.Store{}}
	if err := os.WriteFile(e.dir+"/ferry.yaml", []byte(benchSpec), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"virginia", "singapore", "target"} {
		id := fmt.Sprintf("bench-%d-%s", time.Now().UnixNano(), name)
		mem.Reset(id)
		b.Cleanup(func() { mem.Reset(id) })
		e.stores[name] = mem.New(id)
	}
	data := bytes.Repeat([]byte("x"), 64)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("user-%05d/rec-%06d", i%1000, i)
		for _, s := range []string{"virginia", "singapore"} {
			if _, err := e.stores[s].Put(context.Background(), key, bytes.NewReader(data), 64, providers.PutOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	return e
}

func (e *benchEnv) options() Options {
	return Options{
		SpecPath: e.dir + "/ferry.yaml",
		OpenStore: func(ctx context.Context, cfg providers.Config) (providers.Store, error) {
			return memNoClose{e.stores[cfg.Name]}, nil
		},
	}
}

type memNoClose struct{ *mem.Store }

func (memNoClose) Close() error { return nil }

// genStore lists n synthetic objects without holding them: the plan-memory benchmark
// measures ferry, not the store.
type genStore struct {
	providers.Store
	n int
}

func (g genStore) List(ctx context.Context, fn func(providers.Object) error) error {
	mt := time.Unix(1700000000, 0)
	for i := 0; i < g.n; i++ {
		key := "user-" + strconv.Itoa(i%50000) + "/record-" + strconv.Itoa(i)
		if err := fn(providers.Object{Key: key, Size: int64(512 + i%4096), ETag: strconv.Itoa(i), ModTime: mt}); err != nil {
			return err
		}
	}
	return nil
}

func (g genStore) Close() error { return nil }

func (g genStore) Open(context.Context, string) (io.ReadCloser, providers.Object, error) {
	return nil, providers.Object{}, providers.ErrNotSupported
}

// BenchmarkPlanMemory plans FERRY_BIG_PLAN records (default 1,000,000) listed by a
// generating store and reports ferry's peak RSS (target: under 300 MB).
func BenchmarkPlanMemory(b *testing.B) {
	n := 1000000
	if v := os.Getenv("FERRY_BIG_PLAN"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dir := b.TempDir()
	spec := strings.Replace(benchSpec, "  - {name: singapore, role: backup, url: file://./stores/singapore}\n", "", 1)
	spec = strings.Replace(spec, "[virginia, singapore]", "[virginia]", 1)
	os.WriteFile(dir+"/ferry.yaml", []byte(spec), 0o644)
	target := mem.New(fmt.Sprintf("planmem-%d", time.Now().UnixNano()))
	opts := Options{SpecPath: dir + "/ferry.yaml", OpenStore: func(ctx context.Context, cfg providers.Config) (providers.Store, error) {
		if cfg.Name == "target" {
			return memNoClose{target}, nil
		}
		return genStore{Store: target, n: n}, nil
	}}
	for i := 0; i < b.N; i++ {
		m, err := Open(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		start, cpu0 := time.Now(), processCPU()
		p, err := m.Plan(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		cpu := processCPU() - cpu0
		m.Close()
		if p.Records["planned"] != int64(n) {
			b.Fatalf("planned %d of %d", p.Records["planned"], n)
		}
		b.ReportMetric(float64(n)/el.Seconds(), "records/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "CPU-µs/record")
		if fi, err := os.Stat(dir + "/ferry.db"); err == nil {
			b.ReportMetric(float64(fi.Size())/float64(n), "state-B/record")
		}
	}
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MB")
}

// processCPU is the CPU time this process has used (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS reads VmHWM (the process's peak resident set) from /proc.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

func benchN() int {
	if v := os.Getenv("FERRY_BENCH_RECORDS"); v != "" {
		n, _ := strconv.Atoi(v)
		return n
	}
	return 20000
}
