package migrate

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
)

// The phase runner. A phase says what it does: the checks that may refuse it, the
// records it works on and what it does to one record (or to a batch of them), and
// what its counts come to at the end. The runner alone decides how it runs:
//
//   - one process, under the migration lock, its results group-committed;
//   - one of many workers (Options.Worker) on leased key ranges, each range's results
//     saved fenced with the range (see shared);
//   - a dry run, which stops after the checks having written nothing (the plan, which
//     a dry run of any phase needs, works on the scratch state instead).
//
// It also owns the progress bar, the capped problem list and how a stopped phase
// maps to its exit code. No phase looks at the mode it runs in.

// A phase is one phase as the runner drives it. Its work is one of: each (per
// record, conc at a time), batch (the records in batches, with the save to use before
// any irreversible call), or whole and claimed (the phase works its own ranges: plan).
type phase struct {
	name     string // the lock's or the workers' phase name; its scope when shared
	bar      string // the progress bar's label; "" for none
	lockOnly bool   // never shared between workers: it runs under the lock
	needPlan bool   // refused without a plan (a dry run plans on the scratch state)
	dryWork  bool   // the work runs in a dry run too, on the scratch state (plan)

	// guard runs first, in every mode: refusals that hold with or without a plan.
	guard func(ctx context.Context) error
	// check runs in every mode before any work: the refusals, and the size of the
	// work for the progress bar. A phase with nothing to do returns errNoWork.
	check func(ctx context.Context) (size, error)
	// confirm is what the operator passed to --confirm; size.digest what it must
	// match. A real run needs it; a dry run checks it when given.
	confirm string
	// ready runs in every mode after the confirmation (the canary).
	ready func(ctx context.Context) error
	// start runs once the phase will write, never in a dry run.
	start func(ctx context.Context) error

	query checkpoints.Query
	conc  int
	each  func(ctx context.Context, pr *run, r checkpoints.Record) ([]checkpoints.Record, error)
	batch func(ctx context.Context, pr *run, recs []checkpoints.Record, save saveFunc) error

	whole   func(ctx context.Context, pr *run) error
	cut     func(ctx context.Context) ([]checkpoints.Range, error)
	claimed func(ctx context.Context, pr *run, c checkpoints.Claim) ([]checkpoints.Record, error)
	// finished hears of each claimed range whose results were saved with it.
	finished func(pr *run, c checkpoints.Claim)

	// tally runs once the work has run (or stopped): the counts into the result.
	tally func(pr *run)
	// end runs after work that did not stop: what the counts mean (exit 3, say).
	end func(ctx context.Context, pr *run) error
}

// size is how much work a phase's checks found: records (or replicas) and bytes for
// the progress bar, and the digest a --confirm must match (none: no confirmation).
type size struct {
	n, bytes int64
	digest   string
}

// errNoWork is a check's answer when the phase is already done: no error, no work.
var errNoWork = errors.New("nothing to do")

// errNotYet is a claimed range's answer when it cannot be worked yet (the plan's
// merge, while listing ranges are still open): handed back and claimed again later.
var errNotYet = errors.New("not yet")

// batchSize is how many records a batch phase is handed at a time.
const batchSize = 256

// maxProblems caps the problem list a phase reports (the journal has them all).
const maxProblems = 100

// run is one run of a phase: what its steps report through.
type run struct {
	m       *Migration
	dry     bool
	checked bool // the phase got through its checks: it has something to report
	tr      Tracker

	mu       sync.Mutex
	problems []ConflictInfo
}

// problem notes one record's problem for the phase's report (the first maxProblems).
func (pr *run) problem(key, reason string) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if len(pr.problems) < maxProblems {
		pr.problems = append(pr.problems, ConflictInfo{Key: key, Reason: reason})
	}
}

// Problems returns the problems noted so far.
func (pr *run) Problems() []ConflictInfo {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return slices.Clone(pr.problems)
}

// tick advances the progress (and a worker's counters, for status).
func (pr *run) tick(n, bytes int64) {
	pr.tr.Add(n, bytes)
	if w := pr.m.worker; w != nil {
		w.records.Add(n)
		w.bytes.Add(bytes)
	}
}

// runPhase runs ph: enter (lock or worker), the plan, the checks; in a dry run that is
// all; else start, the work in the mode this process runs in, the tally and the end.
func (m *Migration) runPhase(ctx context.Context, ph *phase) (*run, error) {
	pr := &run{m: m, dry: m.Opts.DryRun, tr: nopTracker{}}
	shared := m.Opts.Worker && !pr.dry && !ph.lockOnly
	if err := m.enter(ctx, ph.name, shared); err != nil {
		return pr, err
	}
	if ph.guard != nil {
		if err := ph.guard(ctx); err != nil {
			return pr, err
		}
	}
	if ph.needPlan {
		if err := m.needPlan(ctx); err != nil {
			return pr, err
		}
	}
	var sz size
	if ph.check != nil {
		var err error
		if sz, err = ph.check(ctx); errors.Is(err, errNoWork) {
			pr.checked = true
			return pr, nil
		} else if err != nil {
			return pr, err
		}
	}
	pr.checked = true
	if sz.digest != "" && (!pr.dry || ph.confirm != "") {
		if err := ValidConfirm(ph.confirm, sz.digest); err != nil {
			return pr, err
		}
	}
	if ph.ready != nil {
		if err := ph.ready(ctx); err != nil {
			return pr, err
		}
	}
	if pr.dry && !ph.dryWork {
		return pr, nil
	}
	if ph.start != nil {
		if err := ph.start(ctx); err != nil {
			return pr, err
		}
	}
	if ph.bar != "" {
		pr.tr = m.progress(ph.bar, sz.n, sz.bytes)
		defer pr.tr.Finish()
	}
	err := m.work(ctx, ph, pr, shared)
	if ph.tally != nil {
		ph.tally(pr)
	}
	if err != nil {
		name, _, _ := strings.Cut(ph.name, "/")
		return pr, phaseErr(name, err)
	}
	if ph.end != nil {
		return pr, ph.end(ctx, pr)
	}
	return pr, nil
}

// work runs ph's work: in one process, or as a worker through the shared claim loop.
func (m *Migration) work(ctx context.Context, ph *phase, pr *run, shared bool) error {
	switch {
	case ph.whole != nil && !shared:
		return ph.whole(ctx, pr)
	case ph.claimed != nil && shared:
		return m.shared(ctx, ph.name, true, func() ([]checkpoints.Range, error) { return ph.cut(ctx) },
			func(cctx context.Context, c checkpoints.Claim) ([]checkpoints.Record, error) {
				return ph.claimed(cctx, pr, c)
			}, func(c checkpoints.Claim) {
				if ph.finished != nil {
					ph.finished(pr, c)
				}
			})
	case !shared:
		return m.local(ctx, ph, pr)
	}
	return m.shared(ctx, ph.name, false, func() ([]checkpoints.Range, error) { return m.cut(ctx, ph.query) },
		func(cctx context.Context, c checkpoints.Claim) ([]checkpoints.Record, error) {
			q := ph.query
			q.After, q.Through = c.Lo, c.Hi
			if ph.batch != nil {
				// Intents and outcomes are saved only while this worker holds the range,
				// so a worker that lost it changes nothing more; its successor settles
				// what it left by looking at the sites.
				return nil, m.batches(cctx, ph, pr, q, func(ctx context.Context, recs []checkpoints.Record) error {
					return m.State.Checkpoint(ctx, c, c.Hi, recs, nil)
				})
			}
			var mu sync.Mutex
			var saved []checkpoints.Record
			err := m.runRecords(cctx, q, ph.conc, pr, ph.each, func(_ context.Context, out []checkpoints.Record) error {
				mu.Lock()
				saved = append(saved, out...)
				mu.Unlock()
				return nil
			})
			return saved, err // saved with the range's fenced Finish
		}, nil)
}

// local runs a record phase in one process: batch phases save through the state's
// Save; record phases are group-committed, durable before the phase reports (I4).
func (m *Migration) local(ctx context.Context, ph *phase, pr *run) error {
	if ph.batch != nil {
		return m.batches(ctx, ph, pr, ph.query, m.State.Save)
	}
	batch := checkpoints.NewBatcher(m.State, 256, 500*time.Millisecond)
	err := m.runRecords(ctx, ph.query, ph.conc, pr, ph.each, func(ctx context.Context, out []checkpoints.Record) error {
		for _, o := range out {
			if err := batch.Add(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := batch.Close(context.WithoutCancel(ctx)); err == nil {
		err = cerr
	}
	return err
}

// batches hands the records q selects to ph.batch, batchSize at a time.
func (m *Migration) batches(ctx context.Context, ph *phase, pr *run, q checkpoints.Query, save saveFunc) error {
	recs := make([]checkpoints.Record, 0, batchSize)
	err := m.State.Records(ctx, q, func(r checkpoints.Record) error {
		r.Replicas = slices.Clone(r.Replicas)
		if recs = append(recs, r); len(recs) < batchSize {
			return nil
		}
		err := ph.batch(ctx, pr, recs, save)
		recs = make([]checkpoints.Record, 0, batchSize)
		return err
	})
	if err == nil && len(recs) > 0 {
		err = ph.batch(ctx, pr, recs, save)
	}
	return err
}

// runRecords runs fn over the records q selects on a pool of conc goroutines and
// hands what each call returns to keep, even when the call stopped the phase (what
// the record came to before the stop is kept). The first error stops the rest and is
// returned (the real one, not the cancellation it caused).
func (m *Migration) runRecords(ctx context.Context, q checkpoints.Query, conc int, pr *run,
	fn func(ctx context.Context, pr *run, r checkpoints.Record) ([]checkpoints.Record, error),
	keep func(ctx context.Context, out []checkpoints.Record) error) error {
	g, gctx := newPool(ctx, max(conc, 1))
	err := m.State.Records(ctx, q, func(r checkpoints.Record) error {
		if gctx.Err() != nil {
			return gctx.Err()
		}
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err() // the phase is stopping: start no more records
			}
			out, err := fn(gctx, pr, r)
			if len(out) > 0 {
				if kerr := keep(context.WithoutCancel(gctx), out); err == nil {
					err = kerr
				}
			}
			return err
		})
		return nil
	})
	if werr := g.Wait(); err == nil || werr != nil && errors.Is(err, context.Canceled) {
		err = werr
	}
	return err
}

// enter starts a phase: the migration lock for one process (or a dry run), or
// membership of the phase's workers.
func (m *Migration) enter(ctx context.Context, phase string, shared bool) error {
	if !shared {
		return m.Lock(ctx, phase)
	}
	return m.join(ctx, phase)
}

// LockLease is how long a lock outlives its holder's last refresh (for holders on
// other hosts; a holder on this host is gone as soon as its process is).
const LockLease = 60 * time.Second

// Lock takes the migration lock for phase and keeps refreshing it. A dry run works on
// a scratch copy and takes no lock.
func (m *Migration) Lock(ctx context.Context, phase string) error {
	if m.Opts.DryRun {
		return nil
	}
	m.lockMu.Lock()
	defer m.lockMu.Unlock()
	if m.lock != nil {
		return nil
	}
	l, err := m.State.Lock(ctx, checkpoints.Self(phase), LockLease)
	if err != nil {
		var le *checkpoints.LockedError
		if errors.As(err, &le) {
			return Refused("another ferry holds this migration: %s", le.Holder)
		}
		return Errorf(ExitRuntime, "%w", err)
	}
	m.lock = l
	m.lockStop, m.lockDone = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		t := time.NewTicker(LockLease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := l.Refresh(context.Background()); err != nil {
					m.log.Error("lock refresh failed", "err", err)
				}
			}
		}
	}(m.lockStop, m.lockDone)
	return nil
}

// Unlock releases the lock if held, or leaves the shared phase.
func (m *Migration) Unlock(ctx context.Context) error {
	m.lockMu.Lock()
	defer m.lockMu.Unlock()
	if w := m.worker; w != nil {
		m.worker = nil
		return w.leave(ctx)
	}
	if m.lock == nil {
		return nil
	}
	close(m.lockStop)
	<-m.lockDone
	err := m.lock.Release(ctx)
	m.lock = nil
	return err
}

// needPlan refuses a phase when no plan exists; in a dry run it plans on the scratch
// state first, so a CI dry run of any phase on a fresh checkout still says exactly
// what would happen.
func (m *Migration) needPlan(ctx context.Context) error {
	if _, ok, err := m.State.Meta(ctx, "plan_digest"); err != nil {
		return Errorf(ExitRuntime, "%w", err)
	} else if ok {
		return nil
	}
	if m.Opts.DryRun {
		_, err := m.Plan(ctx)
		return err
	}
	return Errorf(ExitUsage, "no plan in the state: run `ferry plan` first")
}

// phaseErr maps an interrupted context to exit 130 and anything else to a runtime error.
func phaseErr(phase string, err error) error {
	if errors.Is(err, context.Canceled) {
		return Errorf(ExitInterrupted, "%s interrupted: state saved, rerun resumes", phase)
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return Errorf(ExitRuntime, "%s: %w", phase, err)
}

// saveFunc saves records: the state's Save in one process, a fenced Checkpoint of the
// claimed range in a worker.
type saveFunc func(ctx context.Context, recs []checkpoints.Record) error
