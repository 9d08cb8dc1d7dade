// Package migrate is ferry's pipeline: plan, copy, verify, delete, report, status.
// It reads the spec (migrate/spec), talks to stores only through providers.Store and
// keeps all state in a checkpoints.Store.
package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/clock"
	"github.com/ferrymigrate/ferry/migrate/metrics"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// Options are the global flags.
type Options struct {
	SpecPath string
	StateDSN string // overrides the spec's state
	DryRun   bool
	Logger   *slog.Logger
	Progress ProgressFactory // nil: no progress output
	Now      func() time.Time
	// Clock sets and judges the state's leases: the lock's, the workers' and their
	// claims' (checkpoints.Options.Clock); Now is its Now when nil. Nil: the
	// state's own clock (the database's, on PostgreSQL), and time.Now. Tests set a
	// fake one to let leases run out without sleeping.
	Clock clock.Clock
	// NoState opens no checkpoint state (validate: read-only probes only).
	NoState bool
	// ReadOnlyState opens the state read-only and never creates it (status).
	ReadOnlyState bool
	// Worker makes copy, verify and delete join the phase as one of many workers
	// sharing the state, instead of taking the migration lock (runner_work.go).
	Worker bool
	// WorkerLease is how long a worker's claims outlive its last heartbeat
	// (DefaultWorkerLease when zero); RangeSize how many records one claim covers.
	WorkerLease time.Duration
	RangeSize   int
	// Offline: the phase needs no access to the object stores (status, report, a
	// delete dry run). Stores are opened only if something calls them, so these
	// work without the sites' credentials (lazy.go).
	Offline bool
	// LimitsInterval is how often limits, overrides and shares are re-read
	// (DefaultLimitsInterval when zero; limits.go).
	LimitsInterval time.Duration
	// Metrics receives the phases' counters and times every store request
	// (metered.go, docs/metrics.md); nil: no metrics.
	Metrics *metrics.Metrics
	// NoJournal turns off the journal of ferry's own access (journal.go), for
	// benchmarks that measure its cost. Phases journal by default.
	NoJournal bool
	// OpenStore opens providers; tests substitute decorated stores. Nil: providers.Open.
	OpenStore func(ctx context.Context, cfg providers.Config) (providers.Store, error)
}

// Migration is one opened migration: spec, state, stores.
type Migration struct {
	Spec   *spec.Spec
	State  checkpoints.Store
	Sites  map[string]providers.Store // by site name
	Target providers.Store
	Opts   Options
	log    *slog.Logger
	now    func() time.Time

	closeOnce sync.Once
	lockMu    sync.Mutex
	lock      checkpoints.Lock
	lockStop  chan struct{}
	lockDone  chan struct{}
	worker    *worker // set while this process works a shared phase
	markers   markerSightings
	versioned versionedSites
	limiter   *limiter // the stores' limits (limits.go); nil offline
	// unwatchState stops the metrics reading the state (metered.go); nil without metrics.
	unwatchState func()
	// journal records every request to user data (journal.go); nil when off.
	journal *journal
	// resolved holds each store's capabilities by name, resolved once (caps.go).
	capsMu   sync.Mutex
	resolved map[string]providers.Caps
}

// Open loads the spec, opens the checkpoint state and every store. In a dry run the
// state is a scratch copy and every store refuses writes.
func Open(ctx context.Context, opts Options) (*Migration, error) {
	sp, err := spec.Load(opts.SpecPath)
	if err != nil {
		return nil, err
	}
	return OpenSpec(ctx, sp, opts)
}

// OpenSpec is Open with a parsed spec.
func OpenSpec(ctx context.Context, sp *spec.Spec, opts Options) (*Migration, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
		if opts.Clock != nil {
			opts.Now = opts.Clock.Now
		}
	}
	if opts.OpenStore == nil {
		opts.OpenStore = providers.Open
	}
	m := &Migration{Spec: sp, Opts: opts, log: opts.Logger, now: opts.Now, Sites: map[string]providers.Store{}}
	dsn := sp.StatePath()
	if opts.StateDSN != "" {
		dsn = opts.StateDSN
	}
	if !opts.NoState {
		st, err := checkpoints.Open(ctx, dsn, checkpoints.Options{Scratch: opts.DryRun && !opts.ReadOnlyState, ReadOnly: opts.ReadOnlyState, Clock: opts.Clock})
		if err != nil {
			return nil, Errorf(ExitRuntime, "%w", err)
		}
		m.State = st
		if err := m.checkMigrationID(ctx); err != nil {
			st.Close()
			return nil, err
		}
	}
	m.openJournal()
	openStore := opts.OpenStore
	if opts.Offline {
		openStore = func(ctx context.Context, cfg providers.Config) (providers.Store, error) {
			return &lazyStore{cfg: cfg, open: opts.OpenStore}, nil
		}
	}
	for i := range sp.Sources {
		s := &sp.Sources[i]
		store, err := openStore(ctx, s.ProviderConfig(sp.Migration))
		if err != nil {
			m.Close()
			if ferr := m.stopFatal("", blame(s.Name, err)); ferr != nil {
				return nil, ferr
			}
			return nil, Errorf(ExitRuntime, "site %s: %w", s.Name, err)
		}
		if !opts.Offline {
			store = m.limitStore(s.Name, m.journalStore(ctx, s.Name, s.Credentials, s.URL, m.meter(s.Name, store)), s.Limits, s.PartSize)
		}
		m.Sites[s.Name] = m.guard(store)
	}
	target, err := openStore(ctx, sp.Target.ProviderConfig(sp.Migration))
	if err != nil {
		m.Close()
		if ferr := m.stopFatal("", blame(spec.TargetName, err)); ferr != nil {
			return nil, ferr
		}
		return nil, Errorf(ExitRuntime, "target: %w", err)
	}
	if !opts.Offline {
		target = m.limitStore(spec.TargetName, m.journalStore(ctx, spec.TargetName, sp.Target.Credentials, sp.Target.URL, m.meter(spec.TargetName, target)), sp.Target.Limits, sp.Target.PartSize)
	}
	m.Target = m.guard(target)
	m.resolveCaps()
	if m.limiter != nil {
		m.limiter.start(ctx)
	}
	m.watchMetrics()
	return m, nil
}

func (m *Migration) guard(s providers.Store) providers.Store {
	if m.Opts.DryRun {
		return &dryStore{Store: s} // its capabilities: capsOf
	}
	return s
}

// checkMigrationID refuses a state that belongs to another migration.
func (m *Migration) checkMigrationID(ctx context.Context) error {
	id, ok, err := m.State.Meta(ctx, "migration")
	if err != nil {
		return Errorf(ExitRuntime, "%w", err)
	}
	if ok && id != m.Spec.Migration {
		return Errorf(ExitUsage, "state belongs to migration %q, the spec names %q: use another state file", id, m.Spec.Migration)
	}
	if !ok && !m.Opts.ReadOnlyState {
		return m.State.SetMeta(ctx, "migration", m.Spec.Migration)
	}
	return nil
}

// Close releases the lock and closes stores and state; later calls do nothing.
func (m *Migration) Close() error {
	var err error
	m.closeOnce.Do(func() { err = m.close() })
	return err
}

func (m *Migration) close() error {
	var errs []error
	if m.limiter != nil {
		m.limiter.close(context.Background())
	}
	errs = append(errs, m.closeJournal())
	if m.State != nil {
		m.saveRetries(context.Background())
		errs = append(errs, m.Unlock(context.Background()))
		m.unwatchMetrics() // after leaving: the last figures count this process out
	}
	for _, s := range m.Sites {
		errs = append(errs, s.Close())
	}
	if m.Target != nil {
		errs = append(errs, m.Target.Close())
	}
	if m.State != nil {
		errs = append(errs, m.State.Close())
	}
	return errors.Join(errs...)
}

// siteSpec returns the spec of a site.
func (m *Migration) siteSpec(name string) *spec.Site {
	s, _ := m.Spec.Site(name)
	return s
}

func (m *Migration) progress(phase string, records, bytes int64) Tracker {
	if m.Opts.Progress == nil {
		return m.meterProgress(phase, records, bytes, nopTracker{})
	}
	return m.meterProgress(phase, records, bytes, m.trackLimits(m.Opts.Progress(phase, records, bytes)))
}

// checkResidency asks a target that knows its region whether it is allowed (exit 5).
func (m *Migration) checkResidency(ctx context.Context) error {
	allowed := m.Spec.Target.Residency
	if len(allowed) == 0 {
		return nil
	}
	r := m.caps(spec.TargetName).Regioner
	if r == nil {
		return nil
	}
	region, err := r.Region(ctx)
	if errors.Is(err, providers.ErrNotSupported) || (err == nil && region == "") {
		return nil // the store cannot tell: the spec's region was checked at parse time
	}
	if err != nil {
		return Errorf(ExitRuntime, "target region: %w", err)
	}
	for _, a := range allowed {
		if a == region {
			return nil
		}
	}
	return Refused("target region %q is outside the residency policy %v", region, allowed)
}

// saveRetries adds the requests each store retried in this process to the state's
// running totals (meta "retries"), which status reports.
func (m *Migration) saveRetries(ctx context.Context) {
	if m.Opts.DryRun || m.Opts.ReadOnlyState {
		return
	}
	add := map[string]int64{}
	for name := range m.Sites {
		if r := m.caps(name).Retrier; r != nil && r.Retries() > 0 {
			add[name] = r.Retries()
		}
	}
	if r := m.caps(spec.TargetName).Retrier; r != nil && r.Retries() > 0 {
		add["target"] = r.Retries()
	}
	if len(add) == 0 {
		return
	}
	totals := m.retryTotals(ctx)
	for k, v := range add {
		totals[k] += v
	}
	b, _ := json.Marshal(totals)
	if err := m.State.SetMeta(ctx, "retries", string(b)); err != nil {
		m.log.Warn("recording retry counts", "err", err)
	}
}

func (m *Migration) retryTotals(ctx context.Context) map[string]int64 {
	totals := map[string]int64{}
	if v, ok, err := m.State.Meta(ctx, "retries"); err == nil && ok {
		_ = json.Unmarshal([]byte(v), &totals)
	}
	return totals
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 500 {
		s = s[:500] + "..."
	}
	return s
}

func (m *Migration) debug(msg string, args ...any) { m.log.Debug(msg, args...) }
