package migrate

import (
	"context"
	"errors"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/metrics"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/limit"
	"github.com/ferrymigrate/ferry/providers/metered"
)

// Metrics (docs/metrics.md). With Options.Metrics set, every store is timed by a
// providers/metered decorator inside its limiter (so a request's latency leaves out
// the time it waited on a limit), the limiters and the checkpoint state are read when
// scraped, and the phases count records where they count them for their results:
// one call per place, below. Without it every call here does nothing.

// meter wraps a freshly opened store in the request timer.
func (m *Migration) meter(name string, s providers.Store) providers.Store {
	if m.Opts.Metrics == nil {
		return s
	}
	return metered.Wrap(s, name, m.Opts.Metrics)
}

// watchMetrics registers the opened stores' limiters and retry counts, and makes
// scrapes read the checkpoint state.
func (m *Migration) watchMetrics() {
	met := m.Opts.Metrics
	if met == nil {
		return
	}
	met.Info(m.Spec.Migration)
	if !m.Opts.Offline {
		for _, s := range m.Spec.Sources {
			m.registerStore(met, s.Name, m.Sites[s.Name])
		}
		m.registerStore(met, spec.TargetName, m.Target)
	}
	if m.State != nil {
		m.unwatchState = met.WatchState(m.metricsState)
	}
}

func (m *Migration) registerStore(met *metrics.Metrics, name string, s providers.Store) {
	if s == nil {
		return
	}
	lim, _ := limit.LimiterOf(s)
	met.Store(name, s, lim)
}

// unwatchMetrics reads the state one last time and stops reading it (it is closing).
func (m *Migration) unwatchMetrics() {
	if m.unwatchState != nil {
		m.unwatchState()
	}
}

// metricsState is what the state says of the whole migration, for the scrapes.
func (m *Migration) metricsState(ctx context.Context) (metrics.State, error) {
	now := m.now()
	st, err := m.State.Stats(ctx, now)
	if err != nil {
		return metrics.State{}, err
	}
	out := metrics.State{Records: map[string]checkpoints.Count{}, Workers: map[string]int{},
		Sites: map[string]map[string]checkpoints.Count{}}
	for s, c := range st.Records {
		out.Records[string(s)] = c
	}
	for site, by := range st.ReplicasSite {
		out.Sites[site] = map[string]checkpoints.Count{}
		for s, c := range by {
			out.Sites[site][string(s)] = c
		}
	}
	if !m.Opts.DryRun {
		states, err := m.stageStates(ctx)
		if err != nil {
			return metrics.State{}, err
		}
		for _, stage := range m.Spec.Delete.Stages {
			s := metrics.Stage{Name: stage.Name, Status: states[stage.Name].State, Replicas: map[string]checkpoints.Count{}}
			for rs, c := range st.StageCounts[stage.Name] {
				s.Replicas[string(rs)] = c
			}
			out.Stages = append(out.Stages, s)
		}
	}
	ws, err := m.State.Workers(ctx)
	if err != nil {
		return metrics.State{}, err
	}
	for _, w := range ws {
		if w.Alive(now) {
			out.Workers[w.Phase]++
		}
	}
	return out, nil
}

// meterTracker keeps a phase's progress figures in the metrics beside its tracker.
type meterTracker struct {
	Tracker
	met   *metrics.Metrics
	phase string
}

func (m *Migration) meterProgress(phase string, records, bytes int64, t Tracker) Tracker {
	if m.Opts.Metrics == nil {
		return t
	}
	m.Opts.Metrics.PhaseStarted(phase, records, bytes)
	return &meterTracker{Tracker: t, met: m.Opts.Metrics, phase: phase}
}

func (t *meterTracker) Add(records, bytes int64) {
	t.met.PhaseProgress(t.phase, records, bytes)
	t.Tracker.Add(records, bytes)
}

func (t *meterTracker) Finish() {
	t.met.PhaseFinished(t.phase)
	t.Tracker.Finish()
}

// LimitWait passes on to the tracker it wraps, if that one shows limits.
func (t *meterTracker) LimitWait(desc string) {
	if n, ok := t.Tracker.(limitNoter); ok {
		n.LimitWait(desc)
	}
}

// countCopy counts one copied (or skipped, or failed) record at the site it was
// read from, and its attempts beyond the first.
func (m *Migration) countCopy(r checkpoints.Record, skipped bool, tries int, err error) {
	met := m.Opts.Metrics
	if met == nil {
		return
	}
	site := r.Source
	if site == "" {
		if srcs := m.sources(&r); len(srcs) > 0 {
			site = srcs[0].Site
		}
	}
	met.Retries("copy", site, tries-1)
	met.Record("copy", site, outcome(skipped, err), r.Size, err)
}

// countVerify counts one record's target verification, with the bytes read back.
func (m *Migration) countVerify(read int64, err error) {
	m.Opts.Metrics.Record("verify", spec.TargetName, outcome(false, err), read, err)
}

// countProof counts one replica's proof at its site (phase "prove"): done when proven
// identical, else divergent, missing or failed.
func (m *Migration) countProof(p *checkpoints.Replica, read int64, err error) {
	met := m.Opts.Metrics
	if met == nil {
		return
	}
	switch {
	case err != nil:
		met.Record("prove", p.Site, metrics.OutcomeFailed, 0, err)
	case p.State == checkpoints.Identical:
		met.Record("prove", p.Site, metrics.OutcomeDone, read, nil)
	case p.State == checkpoints.Divergent || p.State == checkpoints.Missing:
		met.Record("prove", p.Site, string(p.State), 0, nil)
	}
}

// countDelete counts one replica's delete call: done (with its bytes), retained (other
// versions remain), changed (ErrPrecondition), missing (already gone) or failed.
func (m *Migration) countDelete(p *checkpoints.Replica, err error) {
	met := m.Opts.Metrics
	if met == nil {
		return
	}
	switch {
	case err == nil && p.State == checkpoints.Retained:
		met.Record("delete", p.Site, string(checkpoints.Retained), 0, nil)
	case err == nil:
		met.Record("delete", p.Site, metrics.OutcomeDone, p.Size, nil)
	case errors.Is(err, providers.ErrPrecondition):
		met.Record("delete", p.Site, "changed", 0, nil)
	case errors.Is(err, providers.ErrRetained):
		met.Record("delete", p.Site, string(checkpoints.Undeletable), 0, nil)
	case errors.Is(err, providers.ErrNotFound):
		met.Record("delete", p.Site, string(checkpoints.Missing), 0, nil)
	default:
		met.Record("delete", p.Site, metrics.OutcomeFailed, 0, err)
	}
}

// countDeleteSkipped counts the replicas of u left for verify because the target
// re-check failed.
func (m *Migration) countDeleteSkipped(r checkpoints.Record, idx []int) {
	met := m.Opts.Metrics
	if met == nil {
		return
	}
	for _, i := range idx {
		met.Record("delete", r.Replicas[i].Site, metrics.OutcomeSkipped, 0, nil)
	}
}

// meterListed counts a page of a site's listing (phase "plan").
func (m *Migration) meterListed(site string, page []checkpoints.Listed) {
	met := m.Opts.Metrics
	if met == nil {
		return
	}
	var bytes int64
	for _, o := range page {
		bytes += o.Size
	}
	met.Records("plan", site, int64(len(page)), bytes)
}

func outcome(skipped bool, err error) string {
	switch {
	case err != nil:
		return metrics.OutcomeFailed
	case skipped:
		return metrics.OutcomeSkipped
	}
	return metrics.OutcomeDone
}
