package migrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
)

// Many workers, one migration. With Options.Worker a phase does not take the
// migration lock: the process joins the phase as one of any number of workers that
// share the state (PostgreSQL across machines), and works it range by range under
// leased, fenced claims (see package checkpoints, "Shared work"). Without it, nothing
// changes: one process, the lock, group-committed saves.

// Worker defaults.
const (
	DefaultWorkerLease = 30 * time.Second
	DefaultRangeSize   = 512
)

// worker is this process's membership in a shared phase.
type worker struct {
	m     *Migration
	id    string
	phase string
	lease time.Duration

	records, bytes atomic.Int64

	mu   sync.Mutex
	held map[string]context.CancelFunc // claim key -> cancel of its work

	stop, done chan struct{}
}

func claimKey(c checkpoints.Claim) string {
	return fmt.Sprintf("%s/%d/%d@%d", c.Scope, c.Round, c.Seq, c.Epoch)
}

func (m *Migration) lease() time.Duration {
	if m.Opts.WorkerLease > 0 {
		return m.Opts.WorkerLease
	}
	return DefaultWorkerLease
}

func (m *Migration) rangeSize() int {
	if m.Opts.RangeSize > 0 {
		return m.Opts.RangeSize
	}
	return DefaultRangeSize
}

// join makes this process one of the phase's workers, leaving the phase it worked
// before, if any.
func (m *Migration) join(ctx context.Context, phase string) error {
	m.lockMu.Lock()
	defer m.lockMu.Unlock()
	if m.worker != nil {
		if m.worker.phase == phase {
			return nil
		}
		// The previous phase is over for this process: leave it, join the next.
		if err := m.worker.leave(ctx); err != nil {
			return Errorf(ExitRuntime, "%w", err)
		}
		m.worker = nil
	}
	self := checkpoints.Self(phase)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	w := &worker{m: m, id: fmt.Sprintf("%s-%d-%s", self.Host, self.PID, hex.EncodeToString(b)), phase: phase, lease: m.lease(),
		held: map[string]context.CancelFunc{}, stop: make(chan struct{}), done: make(chan struct{})}
	err := m.State.Join(ctx, checkpoints.Worker{ID: w.id, Host: self.Host, PID: self.PID, Start: self.Start, Phase: phase}, w.lease)
	if err != nil {
		var le *checkpoints.LockedError
		if errors.As(err, &le) {
			return Refused("cannot join as a %s worker: %s", phase, le.Holder)
		}
		return Errorf(ExitRuntime, "%w", err)
	}
	m.worker = w
	go w.heartbeat()
	if l := m.limiter; l != nil {
		// Take this worker's share now, not at the next interval.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 4*l.interval)
			defer cancel()
			l.refresh(ctx)
		}()
	}
	m.log.Info("joined as a worker", "worker", w.id, "phase", phase, "lease", w.lease)
	return nil
}

// heartbeat extends the worker's leases every third of a lease, and cancels the work
// on any range that was taken over meanwhile.
func (w *worker) heartbeat() {
	defer close(w.done)
	t := time.NewTicker(w.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		// Only claims registered before the heartbeat read the state can be judged
		// by it: one claimed meanwhile is not in its answer yet.
		w.mu.Lock()
		before := make(map[string]bool, len(w.held))
		for k := range w.held {
			before[k] = true
		}
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), w.lease/2)
		held, err := w.m.State.Heartbeat(ctx, w.id, w.lease, w.records.Load(), w.bytes.Load())
		cancel()
		if err != nil {
			w.m.log.Warn("worker heartbeat failed", "worker", w.id, "err", err)
			continue
		}
		still := map[string]bool{}
		for _, c := range held {
			still[claimKey(c)] = true
		}
		w.mu.Lock()
		for k, cancel := range w.held {
			if before[k] && !still[k] {
				w.m.log.Warn("range taken over by another worker: abandoning it", "claim", k)
				cancel()
				delete(w.held, k)
			}
		}
		w.mu.Unlock()
	}
}

// nextIdle is how long a worker with nothing to claim waits before it looks again:
// a little longer each time, never more than a second (or a quarter lease), so a
// round's end or a lapsed lease is noticed soon without hammering the state.
func (w *worker) nextIdle(prev time.Duration) time.Duration {
	return min(prev+100*time.Millisecond, time.Second, w.lease/4)
}

// leave stops the heartbeat and says goodbye (opening anything still held).
func (w *worker) leave(ctx context.Context) error {
	close(w.stop)
	<-w.done
	// The last counters, for status; then goodbye.
	if _, err := w.m.State.Heartbeat(ctx, w.id, w.lease, w.records.Load(), w.bytes.Load()); err != nil {
		w.m.log.Warn("worker heartbeat failed", "worker", w.id, "err", err)
	}
	return w.m.State.Leave(ctx, w.id)
}

// hold runs work for a claim under a context cancelled if the claim is lost.
func (w *worker) hold(ctx context.Context, c checkpoints.Claim) (context.Context, func()) {
	cctx, cancel := context.WithCancel(ctx)
	k := claimKey(c)
	w.mu.Lock()
	w.held[k] = cancel
	w.mu.Unlock()
	return cctx, func() {
		w.mu.Lock()
		delete(w.held, k)
		w.mu.Unlock()
		cancel()
	}
}

// cut divides the records matching q into ranges of about RangeSize records. The
// last range is open above, so it also holds keys added later.
func (m *Migration) cut(ctx context.Context, q checkpoints.Query) ([]checkpoints.Range, error) {
	var out []checkpoints.Range
	lo, n, size := "", 0, m.rangeSize()
	err := m.State.Records(ctx, q, func(r checkpoints.Record) error {
		if n++; n == size {
			out = append(out, checkpoints.Range{Lo: lo, Hi: r.Key})
			lo, n = r.Key, 0
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case n > 0:
		out = append(out, checkpoints.Range{Lo: lo})
	case len(out) > 0:
		out[len(out)-1].Hi = ""
	}
	return out, nil
}

// shared works scope range by range until every range of the current round is done:
// cut the round if needed, claim a range, run work on it, finish it (fenced). A range
// lost to another worker is abandoned; its successor redoes it (every write is
// idempotent). Ranges held by others are waited for, and taken over if their lease
// runs out.
//
// reset: a new round starts from an empty staged listing (the plan). work may answer errNotYet: the range is
// handed back and claimed again later, other ranges first.
//
// done, when not nil, hears of each range this worker finished (its results saved
// with the range, not lost to another worker).
func (m *Migration) shared(ctx context.Context, scope string, reset bool, cut func() ([]checkpoints.Range, error),
	work func(ctx context.Context, c checkpoints.Claim) ([]checkpoints.Record, error), done func(checkpoints.Claim)) error {
	w := m.worker
	rs, err := m.State.Partition(ctx, scope, reset, cut)
	if err != nil {
		return err
	}
	if rs.Round == 0 {
		return nil // nothing to do
	}
	idle := time.Duration(0)
	for {
		c, ok, err := m.State.Claim(ctx, scope, rs.Round, w.id, w.lease)
		if err != nil {
			return err
		}
		if !ok {
			st, err := m.State.Round(ctx, scope, rs.Round)
			if err != nil {
				return err
			}
			if st.Finished() {
				return nil
			}
			// Others hold the rest: wait, and take over whatever they let lapse.
			idle = w.nextIdle(idle)
			if !sleep(ctx, idle) {
				return ctx.Err()
			}
			continue
		}
		idle = 0
		if c.Takeover {
			m.Opts.Metrics.Takeover(scope)
			m.log.Warn("taking over a range whose lease ran out", "claim", c.String())
		}
		cctx, release := w.hold(ctx, c)
		recs, err := work(cctx, c)
		if errors.Is(err, errNotYet) {
			err = m.State.Release(context.WithoutCancel(ctx), c)
			release()
			if err != nil {
				return err
			}
			idle = w.nextIdle(idle)
			if !sleep(ctx, idle) {
				return ctx.Err()
			}
			continue
		}
		finished := false
		if err == nil {
			err = m.State.Finish(ctx, c, recs)
			finished = err == nil
		}
		// Settle before release: release cancels cctx, which would make every
		// failed range look lost to another worker and its error vanish.
		err = m.settleClaim(ctx, cctx, c, err)
		release()
		if err != nil {
			return err
		}
		if finished && done != nil {
			done(c)
		}
	}
}

// settleClaim decides what an attempt at a claimed range came to: done (err nil);
// lost to another worker (logged, handed back if it is somehow still ours, and nil:
// the successor redoes the range); or failed (handed back at once rather than at the
// end of its lease, and the error returned).
func (m *Migration) settleClaim(ctx, cctx context.Context, c checkpoints.Claim, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, checkpoints.ErrFenced) || (cctx.Err() != nil && ctx.Err() == nil):
		m.Opts.Metrics.RangeLost(c.Scope)
		m.log.Warn("range lost to another worker: its results were rejected", "claim", c.String(), "err", err)
		return m.State.Release(ctx, c) // a no-op unless it is still ours
	default:
		if rerr := m.State.Release(context.WithoutCancel(ctx), c); rerr != nil {
			m.log.Warn("releasing a range", "claim", c.String(), "err", rerr)
		}
		return err
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
