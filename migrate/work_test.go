package migrate

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/clock"
	"github.com/ferrymigrate/ferry/providers"
)

// workers runs fn in n migrations that share one state as workers, at once.
func (h *harness) workers(n int, state string, rangeSize int, fn func(m *Migration) error) []error {
	h.t.Helper()
	return h.workersOn(nil, n, state, rangeSize, fn)
}

// workersOn is workers whose state's leases follow clk (nil: the state's own clock).
func (h *harness) workersOn(clk clock.Clock, n int, state string, rangeSize int, fn func(m *Migration) error) []error {
	h.t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		opts := h.options(false)
		opts.StateDSN, opts.Worker, opts.RangeSize, opts.WorkerLease = state, true, rangeSize, 5*time.Second
		opts.Clock = clk
		m, err := Open(context.Background(), opts)
		if err != nil {
			h.t.Fatal(err)
		}
		wg.Go(func() {
			defer m.Close()
			errs[i] = fn(m)
		})
	}
	wg.Wait()
	return errs
}

// phasesByWorkers runs each phase in turn in n workers sharing state; any error fails.
func (h *harness) phasesByWorkers(n int, state string, rangeSize int, phases ...string) {
	h.t.Helper()
	for _, phase := range phases {
		for i, err := range h.workers(n, state, rangeSize, func(m *Migration) error {
			var err error
			switch phase {
			case "plan":
				_, err = m.Plan(context.Background())
			case "copy":
				_, err = m.Copy(context.Background())
			case "verify":
				_, err = m.Verify(context.Background(), false)
			default:
				err = fmt.Errorf("no phase %q", phase)
			}
			return err
		}) {
			if err != nil {
				h.t.Fatalf("%s worker %d: %v", phase, i, err)
			}
		}
	}
}

// planAlone plans in one process on a state of its own, for comparison.
func (h *harness) planAlone() *PlanResult {
	h.t.Helper()
	opts := h.options(false)
	opts.StateDSN = filepath.Join(h.dir, "one.db")
	m, err := Open(context.Background(), opts)
	if err != nil {
		h.t.Fatal(err)
	}
	defer m.Close()
	res, err := m.Plan(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// A plan listed by three workers, range by range, stores the same inventory (the same
// plan digest) as a plan listed by one process; so does the next plan, cut from the
// inventory the first one stored.
func TestSharedPlanMatchesOneProcess(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	recs := h.standardData(60)
	want := h.planAlone()
	shared := filepath.Join(h.dir, "shared.db")
	for round := 1; round <= 2; round++ {
		var mu sync.Mutex
		var digests []string
		errs := h.workers(3, shared, 4, func(m *Migration) error {
			res, err := m.Plan(context.Background())
			if err == nil {
				mu.Lock()
				digests = append(digests, res.Digest)
				mu.Unlock()
				for site, l := range want.Sites {
					if res.Sites[site].Objects != l.Objects {
						return fmt.Errorf("site %s: %d objects listed, want %d", site, res.Sites[site].Objects, l.Objects)
					}
				}
			}
			return err
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("plan round %d, worker %d: %v", round, i, err)
			}
		}
		for _, d := range digests {
			if d != want.Digest {
				t.Fatalf("plan round %d: a worker reports digest %.16s, one process %.16s", round, d, want.Digest)
			}
		}
		st, err := checkpoints.Open(context.Background(), shared, checkpoints.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		rs, err := st.Round(context.Background(), planScope, int64(round))
		st.Close()
		if err != nil || !rs.Finished() || rs.Done < 4 {
			t.Fatalf("plan round %d: %+v, %v; want several listing ranges, all done", round, rs, err)
		}
		t.Logf("plan round %d: %d ranges for %d records", round, rs.Done, len(recs))
	}
}

// Copy and verify by three workers sharing a SQLite state on one machine: every record
// verified, the work spread over ranges, and each worker's ranges counted in status.
func TestSharedCopyVerify(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	recs := h.standardData(40)
	state := filepath.Join(h.dir, "shared.db")
	h.phasesByWorkers(3, state, 16, "plan", "copy", "verify")
	opts := h.options(false)
	opts.StateDSN = state
	m, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st, err := m.Status(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Records[checkpoints.Verified].N != int64(len(recs)) {
		t.Fatalf("records %v; want all %d verified", st.Records, len(recs))
	}
	var ranges int64
	for _, w := range st.Workers {
		if !w.Left || w.Alive {
			t.Errorf("worker %s did not leave: %+v", w.ID, w)
		}
		ranges += w.Ranges
	}
	if len(st.Workers) != 9 || ranges < 3 {
		t.Fatalf("status lists %d workers with %d ranges; want 9 workers, several ranges", len(st.Workers), ranges)
	}
}

// A listing range left half done by a worker that died resumes from the key its last
// page reached, and the plan still stores the one-process inventory.
func TestSharedPlanResumesARange(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(30)
	want := h.planAlone()

	// A worker cuts the plan, claims the first range and lists part of it, then dies.
	// Every process here shares one fake clock for the state's leases.
	clk := clock.NewFake()
	shared := filepath.Join(h.dir, "shared.db")
	opts := h.options(false)
	opts.StateDSN, opts.Worker, opts.RangeSize, opts.Clock = shared, true, 4, clk
	dead, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rs, err := dead.State.Partition(ctx, planScope, true, func() ([]checkpoints.Range, error) { return dead.cutListing(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	c, ok, err := dead.State.Claim(ctx, planScope, rs.Round, "dead-worker", time.Second)
	if err != nil || !ok || c.Site == "" {
		t.Fatalf("claim: %+v %v %v", c, ok, err)
	}
	var part []checkpoints.Listed
	rl, _ := providers.As[providers.RangeLister](dead.Sites[c.Site])
	err = rl.ListRange(ctx, c.Lo, c.Hi, func(o providers.Object) error {
		if len(part) < 5 {
			part = append(part, listed(c.Site, o))
		}
		return nil
	})
	if err != nil || len(part) < 5 {
		t.Fatalf("listing the range: %v (%d keys)", err, len(part))
	}
	if err := dead.State.Checkpoint(ctx, c, part[len(part)-1].Key, nil, part); err != nil {
		t.Fatal(err)
	}
	dead.Close()
	clk.Advance(1200 * time.Millisecond) // its lease runs out

	errs := h.workersOn(clk, 2, shared, 4, func(m *Migration) error {
		res, err := m.Plan(context.Background())
		if err == nil && res.Digest != want.Digest {
			return fmt.Errorf("digest %.16s, one process %.16s", res.Digest, want.Digest)
		}
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	cursor := part[len(part)-1].Key
	if !strings.Contains(h.logs.String(), "msg=\"resuming a listing range\"") || !strings.Contains(h.logs.String(), "after="+cursor) {
		t.Fatalf("no worker resumed the abandoned range after its cursor %q:\n%s", cursor, h.logs.String())
	}
}

// The delete guards hold for workers as for one process: a wrong digest, a stage out
// of order and a scope over max_delete are refused before anything is deleted, and
// workers of one stage exclude workers of another.
func TestSharedDeleteGuards(t *testing.T) {
	h := newHarness(t, storeKinds[1], strings.Replace(fmt.Sprintf(sitesYAML, "fail"), "mode: soft\n", "mode: soft\n  max_delete: 50%\n", 1))
	h.standardData(20)
	state := filepath.Join(h.dir, "shared.db")
	h.phasesByWorkers(2, state, 8, "plan", "copy", "verify")
	before := map[string]int{}
	for _, site := range []string{"virginia", "singapore", "archive"} {
		before[site] = len(h.listing(site))
	}
	scope := func(m *Migration, stage string) string {
		sc, err := m.stageScope(context.Background(), stage, false)
		if err != nil {
			t.Fatal(err)
		}
		return sc.Digest
	}
	check := func(what string, errs []error, want string) {
		t.Helper()
		for i, err := range errs {
			if ExitCode(err) != ExitRefused || !strings.Contains(err.Error(), want) {
				t.Fatalf("%s, worker %d: %v; want exit 5 naming %q", what, i, err, want)
			}
		}
		for site, n := range before {
			if got := len(h.listing(site)); got != n {
				t.Fatalf("%s: %s holds %d replicas, had %d", what, site, got, n)
			}
		}
	}
	check("wrong digest", h.workers(2, state, 8, func(m *Migration) error {
		_, err := m.Delete(context.Background(), "canary", "deadbeefdeadbeef")
		return err
	}), "does not match")
	check("stage out of order", h.workers(2, state, 8, func(m *Migration) error {
		_, err := m.Delete(context.Background(), "primary", scope(m, "primary")[:16])
		return err
	}), "must finish before")
	for i, err := range h.workers(2, state, 8, func(m *Migration) error {
		_, err := m.Delete(context.Background(), "canary", scope(m, "canary")[:16])
		return err
	}) {
		if err != nil {
			t.Fatalf("canary worker %d: %v", i, err)
		}
	}
	for site := range before {
		before[site] = len(h.listing(site))
	}
	check("over max_delete", h.workers(2, state, 8, func(m *Migration) error {
		_, err := m.Delete(context.Background(), "backups", scope(m, "backups")[:16])
		return err
	}), "max_delete")

	// A worker of another stage is refused while one of this stage is alive.
	opts := h.options(false)
	opts.StateDSN, opts.Worker = state, true
	a, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.join(context.Background(), "delete/canary"); err != nil {
		t.Fatal(err)
	}
	b, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Delete(context.Background(), "backups", scope(b, "backups")[:16]); ExitCode(err) != ExitRefused || !strings.Contains(err.Error(), "delete/canary") {
		t.Fatalf("a backups worker beside a live canary worker: %v; want refused", err)
	}
}

// A delete intent left on a record that is no longer in its stage's scope (verify
// later found the target copy wrong and put the record in conflict) cannot be settled
// by the stage's delete, which works only on its scope. It must not keep the stage
// from finishing, in one process or in workers (it did in workers: "rerun the same
// command to resume" forever); the intent stays as it is, not counted as deleted.
func TestStageFinishesPastAnIntentOutOfScope(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
			h.standardData(6)
			state := filepath.Join(h.dir, "shared.db")
			h.phasesByWorkers(workers, state, 8, "plan", "copy", "verify")
			opts := h.options(false)
			opts.StateDSN = state
			m, err := Open(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var r checkpoints.Record
			if err := m.State.Records(ctx, checkpoints.Query{Stage: "backups"}, func(rec checkpoints.Record) error {
				if r.Key == "" && rec.Replica("archive") != nil {
					r = rec
				}
				return nil
			}); err != nil || r.Key == "" {
				t.Fatalf("no record with an archive replica (%v)", err)
			}
			r.Replicas = slices.Clone(r.Replicas)
			p := r.Replica("archive")
			p.State, p.IntentAt, p.Mode = checkpoints.Intent, h.clock(), "soft"
			r.State, r.Conflict = checkpoints.Conflict, "test: the target copy no longer verifies"
			if err := m.State.Save(ctx, []checkpoints.Record{r}); err != nil {
				t.Fatal(err)
			}
			m.Close()
			for _, stage := range []string{"canary", "backups"} {
				for i, err := range h.workers(workers, state, 8, func(m *Migration) error {
					sc, err := m.stageScope(context.Background(), stage, false)
					if err != nil {
						return err
					}
					_, err = m.Delete(context.Background(), stage, sc.Digest)
					return err
				}) {
					if err != nil {
						t.Fatalf("delete %s, worker %d: %v", stage, i, err)
					}
				}
			}
			m, err = Open(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			states, err := m.stageStates(ctx)
			if err != nil || states["backups"].State != StageFinished {
				t.Fatalf("stage backups is %q (%v), want finished", states["backups"].State, err)
			}
			if got := replicaState(t, m, r.Key, "archive"); got != checkpoints.Intent {
				t.Fatalf("the out-of-scope intent became %s; it must stay as it was", got)
			}
			if _, ok := h.listing("archive")[r.Replica("archive").SiteKey]; !ok {
				t.Fatal("the replica with the out-of-scope intent was deleted")
			}
		})
	}
}
