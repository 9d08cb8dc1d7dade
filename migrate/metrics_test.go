package migrate

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/clock"
	"github.com/ferrymigrate/ferry/migrate/metrics"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/fault"
	"github.com/ferrymigrate/ferry/providers/faulty"
)

// scrape is one reading of /metrics: every sample by its series (name{labels}).
type scrape map[string]float64

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

func scrapeMetrics(t *testing.T, addr string) scrape {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	out := scrape{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: bad sample %q", line)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sum adds the samples of name whose labels include every pair of want ("k=v").
func (s scrape) sum(name string, want ...string) float64 {
	total, _ := s.match(name, want...)
	return total
}

// has reports whether a sample of name has every pair of want.
func (s scrape) has(name string, want ...string) bool {
	_, n := s.match(name, want...)
	return n > 0
}

func (s scrape) match(name string, want ...string) (total float64, n int) {
	for series, v := range s {
		sn, labels, _ := strings.Cut(series, "{")
		if sn != name {
			continue
		}
		have := map[string]string{}
		for _, m := range labelRE.FindAllStringSubmatch(labels, -1) {
			have[m[1]] = m[2]
		}
		ok := true
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if have[k] != v {
				ok = false
				break
			}
		}
		if ok {
			total += v
			n++
		}
	}
	return total, n
}

// A scrape during a copy finds the counters moving (some records copied, the copy
// still running, requests timed), and once the copy is done every counter agrees
// with what the copy reported and with what the target holds: records copied equal
// the counter, bytes copied equal the sum of the target copies' sizes, failures and
// retries equal the result's, and the state's figures are served.
func TestMetricsScrapedDuringCopy(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	recs := h.standardData(6) // 24 records
	met := metrics.New()
	srv, err := met.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	opts := h.options(false)
	opts.Metrics = met
	m, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	plan, err := m.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := scrapeMetrics(t, srv.Addr())
	for _, site := range []string{"virginia", "singapore", "archive"} {
		if got, want := s.sum("ferry_records_total", "phase=plan", "site="+site, "outcome=done"), float64(plan.Sites[site].Objects); got != want {
			t.Errorf("plan at %s: counter %v, the plan listed %v", site, got, want)
		}
		if got, want := s.sum("ferry_bytes_total", "phase=plan", "site="+site), float64(plan.Sites[site].Bytes); got != want {
			t.Errorf("plan bytes at %s: counter %v, the plan listed %v", site, got, want)
		}
	}
	if s.sum("ferry_request_duration_seconds_count", "store=virginia") == 0 {
		t.Error("no request to virginia was timed during the plan")
	}

	// One record fails for good (permission), one only on its first attempt (retried);
	// after the first few records every other Put waits until released.
	keys := make([]string, 0, len(recs))
	for _, r := range recs {
		keys = append(keys, r.Key)
	}
	failing, flaky := keys[3], keys[5]
	target := h.faults[spec.TargetName]
	target.FailKey(faulty.Put, failing, fmt.Errorf("no writing here: %w", providers.ErrPermission))
	target.AddRule(faulty.Rule{Method: faulty.Put, Key: flaky, When: fault.When{Times: 1}, Effect: fault.Effect{Err: fmt.Errorf("%w: in flight", providers.ErrChecksum)}})
	const before = 6
	release := make(chan struct{})
	var puts atomic.Int64
	target.Before(func(ctx context.Context, c faulty.Call) error {
		if c.Method != faulty.Put || c.Key == failing || c.Key == flaky {
			return nil
		}
		if puts.Add(1) > before {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})

	type copyOut struct {
		res *CopyResult
		err error
	}
	done := make(chan copyOut, 1)
	go func() {
		res, err := m.Copy(context.Background())
		done <- copyOut{res, err}
	}()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	// Until the first records are counted: they are, as the rest wait to be written.
	var during scrape
	deadline := time.Now().Add(60 * time.Second)
	for {
		during = scrapeMetrics(t, srv.Addr())
		if during.sum("ferry_records_total", "phase=copy", "outcome=done") >= before || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	copiedDuring := during.sum("ferry_records_total", "phase=copy", "outcome=done")
	if copiedDuring < before || copiedDuring >= float64(len(recs)-1) {
		t.Fatalf("during the copy: %v records counted copied, want at least %d and fewer than %d", copiedDuring, before, len(recs)-1)
	}
	if got := during.sum("ferry_phase_running", "phase=copy"); got != 1 {
		t.Errorf("ferry_phase_running{phase=copy} = %v during the copy", got)
	}
	if got := during.sum("ferry_phase_scope_records", "phase=copy"); got != float64(len(recs)) {
		t.Errorf("ferry_phase_scope_records{phase=copy} = %v, want %d", got, len(recs))
	}
	if during.sum("ferry_request_duration_seconds_count", "store=target", "op=put") < before {
		t.Error("the target's puts were not timed during the copy")
	}
	if during.sum("ferry_bytes_total", "phase=copy") <= 0 {
		t.Error("no bytes counted during the copy")
	}

	close(release)
	released = true
	out := <-done
	mustCode(t, out.err, ExitIncomplete) // the record that could not be written
	res := out.res
	if res.Copied != int64(len(recs)-1) || res.Failed != 1 || res.Retries < 1 {
		t.Fatalf("copy result %+v", res)
	}
	final := scrapeMetrics(t, srv.Addr())
	if got := final.sum("ferry_records_total", "phase=copy", "outcome=done"); got != float64(res.Copied) || got <= copiedDuring {
		t.Errorf("records copied: counter %v (%v during the copy), the result %d", got, copiedDuring, res.Copied)
	}
	if got := final.sum("ferry_records_total", "phase=copy", "site=virginia", "outcome=done"); got != float64(res.Copied) {
		t.Errorf("records copied from the primary: counter %v, the result %d", got, res.Copied)
	}
	var targetBytes int64
	for _, o := range h.listing(spec.TargetName) {
		targetBytes += o.Size
	}
	if got := final.sum("ferry_bytes_total", "phase=copy"); got != float64(res.Bytes) || got != float64(targetBytes) {
		t.Errorf("bytes copied: counter %v, the result %d, the target holds %d", got, res.Bytes, targetBytes)
	}
	if got := final.sum("ferry_records_total", "phase=copy", "outcome=failed"); got != float64(res.Failed) {
		t.Errorf("records failed: counter %v, the result %d", got, res.Failed)
	}
	if got := final.sum("ferry_failures_total", "phase=copy", "kind=permission"); got != 1 {
		t.Errorf("permission failures: counter %v, want 1", got)
	}
	if got := final.sum("ferry_retries_total", "phase=copy"); got != float64(res.Retries) {
		t.Errorf("retries: counter %v, the result %d", got, res.Retries)
	}
	if got, want := final.sum("ferry_request_duration_seconds_count", "store=target", "op=put"), float64(target.Calls(faulty.Put)); got != want {
		t.Errorf("target puts timed: %v, the target saw %v", got, want)
	}
	if got := final.sum("ferry_request_errors_total", "store=target", "op=put", "kind=checksum"); got != 1 {
		t.Errorf("target put errors of kind checksum: %v, want 1", got)
	}
	if got := final.sum("ferry_phase_running", "phase=copy"); got != 0 {
		t.Errorf("ferry_phase_running{phase=copy} = %v after the copy", got)
	}
	if got := final.sum("ferry_phase_progress_records", "phase=copy"); got != float64(res.Records) {
		t.Errorf("ferry_phase_progress_records{phase=copy} = %v, the copy went through %d", got, res.Records)
	}
	if !final.has("ferry_limit_requests_per_second", "store=target") || !final.has("ferry_info", "migration=test-migration") {
		t.Error("the limiters or ferry_info are not served")
	}

	// Verify the copies; the state's figures are read once more at close.
	target.Clear()
	vres, err := m.Verify(context.Background(), false)
	mustCode(t, err, ExitIncomplete) // the failed record is not verified
	final = scrapeMetrics(t, srv.Addr())
	if got := final.sum("ferry_records_total", "phase=verify", "site=target", "outcome=done"); got != float64(vres.Verified) || got != float64(res.Copied) {
		t.Errorf("records verified: counter %v, the result %d", got, vres.Verified)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	final = scrapeMetrics(t, srv.Addr())
	if got := final.sum("ferry_state_records", "state=verified"); got != float64(vres.Verified) {
		t.Errorf("ferry_state_records{state=verified} = %v, verify verified %d", got, vres.Verified)
	}
	if got := final.sum("ferry_state_records", "state=failed") + final.sum("ferry_state_records", "state=planned"); got != 1 {
		t.Errorf("records not copied in the state: %v, want 1", got)
	}
	if !final.has("ferry_stage_status", "stage=canary", "status=pending") {
		t.Error("ferry_stage_status does not show the canary stage pending")
	}
}

// Workers sharing one state count what each of them did: two copy workers that find
// a range left by a worker whose lease ran out take it over once between them, and
// their records add up to every record copied.
func TestMetricsCountTakeovers(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	recs := h.standardData(10)
	shared := filepath.Join(h.dir, "shared.db")
	ctx := context.Background()
	opts := h.options(false)
	// Every process here shares one fake clock for the state's leases.
	clk := clock.NewFake()
	opts.StateDSN, opts.Clock = shared, clk
	m, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	m.Close()

	// A worker cuts the copy into ranges and claims the first, then is gone.
	opts.Worker, opts.RangeSize = true, 8
	dead, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	q := checkpoints.Query{States: []checkpoints.RecordState{checkpoints.Planned, checkpoints.Failed}}
	rs, err := dead.State.Partition(ctx, "copy", false, func() ([]checkpoints.Range, error) { return dead.cut(ctx, q) })
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := dead.State.Claim(ctx, "copy", rs.Round, "dead-worker", time.Second); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	dead.Close()
	clk.Advance(1200 * time.Millisecond) // its lease runs out

	met := metrics.New()
	var total int64
	var mu sync.Mutex
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range errs {
		o := opts
		o.Metrics = met
		w, err := Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer w.Close()
			res, err := w.Copy(ctx)
			errs[i] = err
			if res != nil {
				mu.Lock()
				total += res.Copied
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	if total != int64(len(recs)) {
		t.Fatalf("the workers copied %d records, want %d", total, len(recs))
	}
	s := gather(t, met)
	if got := s.sum("ferry_lease_takeovers_total", "phase=copy"); got != 1 {
		t.Errorf("ferry_lease_takeovers_total{phase=copy} = %v, want 1", got)
	}
	if got := s.sum("ferry_records_total", "phase=copy", "outcome=done"); got != float64(total) {
		t.Errorf("records copied: counter %v, the workers' results %d", got, total)
	}
	if got := s.sum("ferry_workers_alive", "phase=copy"); got != 0 {
		t.Errorf("ferry_workers_alive{phase=copy} = %v after both left", got)
	}
	if got := s.sum("ferry_state_records", "state=copied"); got != float64(len(recs)) {
		t.Errorf("ferry_state_records{state=copied} = %v, want %d", got, len(recs))
	}
}

// gather reads the metrics through their handler, as a scrape does.
func gather(t *testing.T, met *metrics.Metrics) scrape {
	t.Helper()
	srv := httptest.NewServer(met.Handler())
	defer srv.Close()
	return scrapeMetrics(t, strings.TrimPrefix(srv.URL, "http://"))
}

// Through every phase with metrics on (every store timed inside its limiter), the
// pipeline behaves as without, and each phase's counters agree with its result:
// replicas proven by verify, replicas deleted by a stage, and the stage's progress
// read from the state.
func TestMetricsThroughDelete(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) { metricsThroughDelete(t, k) })
}

func metricsThroughDelete(t *testing.T, k storeKind) {
	h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(8)
	met := metrics.New()
	opts := h.options(false)
	opts.Metrics = met
	m, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if _, err := m.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Copy(ctx); err != nil {
		t.Fatal(err)
	}
	vres, err := m.Verify(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	s := gather(t, met)
	if got := s.sum("ferry_records_total", "phase=prove", "outcome=done"); got != float64(vres.ReplicasProven) || got == 0 {
		t.Errorf("replicas proven: counter %v, verify %d", got, vres.ReplicasProven)
	}
	if got := s.sum("ferry_records_total", "phase=verify", "outcome=done"); got != float64(vres.Verified) {
		t.Errorf("records verified: counter %v, verify %d", got, vres.Verified)
	}
	for _, stage := range []string{"canary", "backups"} {
		dres, err := deleteStage(t, m, stage)
		if err != nil {
			t.Fatalf("delete %s: %v", stage, err)
		}
		if dres.Deleted == 0 {
			t.Fatalf("stage %s deleted nothing", stage)
		}
	}
	st, err := m.State.Stats(ctx, m.now())
	if err != nil {
		t.Fatal(err)
	}
	// The state is read at most every StateMaxAge while the migration is open, and
	// once more as it closes.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	s = gather(t, met)
	gone := 0.0
	for _, stage := range []string{"canary", "backups"} {
		want := float64(st.StageCounts[stage]["deleted"].N)
		if got := s.sum("ferry_stage_replicas", "stage="+stage, "state=deleted"); got != want {
			t.Errorf("stage %s: ferry_stage_replicas{state=deleted} = %v, the state says %v", stage, got, want)
		}
		if !s.has("ferry_stage_status", "stage="+stage, "status=finished") {
			t.Errorf("stage %s is not shown finished", stage)
		}
		gone += want
	}
	if got := s.sum("ferry_records_total", "phase=delete", "outcome=done"); got != gone {
		t.Errorf("replicas deleted: counter %v, the stages deleted %v", got, gone)
	}
	if s.sum("ferry_request_duration_seconds_count", "store=singapore", "op=soft_delete") == 0 {
		t.Error("the soft deletes at singapore were not timed")
	}
	if got := s.sum("ferry_phase_running"); got != 0 {
		t.Errorf("a phase is still shown running: %v", got)
	}
}
