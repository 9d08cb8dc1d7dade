package migrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/limit"
)

// Limits on a running migration (README, "Limits").
//
// Every store (each site, the target) is wrapped in a providers/limit decorator.
// Every few seconds (DefaultLimitsInterval) each process works out, for each store:
//
//   - the caps in force: the operator's override in the state (`ferry limits set`,
//     meta "limits.override"), else the spec's schedule window at this moment, else
//     the spec's caps outside the windows;
//   - its share: with --worker, the caps divided by the live workers of its phase
//     (the state's worker table); a process holding the migration lock is alone;
//
// and sets its limiter to that share. So the caps hold across every process of the
// migration, a changed override or a window that opens takes effect within one
// interval, and a worker that joins or leaves changes everyone's share.
//
// Each process also publishes what it waited, under its own meta key
// ("limits.proc/<id>", listed in "limits.procs"), so that status sums the time
// spent waiting on each store over every process, live or finished, without two
// processes ever writing the same key (except the list, which each process checks
// and repairs every interval).

// DefaultLimitsInterval is how often a process re-reads limits and shares.
const DefaultLimitsInterval = 2 * time.Second

// Meta keys of the limits.
const (
	metaLimitOverride = "limits.override"
	metaLimitProcs    = "limits.procs"
	metaLimitProc     = "limits.proc/"
)

// LimitOverride is an operator's change to a store's caps on a running migration.
// A nil field keeps the spec's value (schedule included); 0 lifts the cap.
type LimitOverride struct {
	RequestsPerSecond *float64  `json:"requests_per_second,omitempty"`
	BytesPerSecond    *int64    `json:"bytes_per_second,omitempty"`
	SetAt             time.Time `json:"set_at"`
}

// procLimits is what one process publishes.
type procLimits struct {
	At     time.Time                 `json:"at"`
	Final  bool                      `json:"final,omitempty"` // the process has finished
	Stores map[string]procStoreLimit `json:"stores"`
}

type procStoreLimit struct {
	Share    int     `json:"share"`               // processes sharing the caps, this one included
	RPS      float64 `json:"requests_per_second"` // this process's share
	BPS      float64 `json:"bytes_per_second"`
	WaitedNS int64   `json:"waited_ns"`         // summed over callers
	HeldNS   int64   `json:"throttled_ns"`      // wall time with someone waiting
	Waiting  bool    `json:"waiting,omitempty"` // waited during the last interval
}

// limitedStore is one store's limiter and what sets it.
type limitedStore struct {
	name   string
	limits spec.Limits
	lim    *limit.Limiter
	last   limit.Stats
	// waiting: the store's limiter made someone wait during the last interval.
	waiting bool
}

// limiter runs the interval loop of one process.
type limiter struct {
	m        *Migration
	stores   []*limitedStore
	interval time.Duration
	id       string
	publish  bool

	refreshMu sync.Mutex // one refresh at a time
	mu        sync.Mutex
	trackers  map[limitNoter]bool
	desc      string // what progress shows while waiting ("" when not waiting)
	listed    bool   // this process's key is in metaLimitProcs
	closed    bool   // under refreshMu: the final figures are out

	stop, done chan struct{}
	once       sync.Once
}

// limitNoter is a progress tracker that can say which limit ferry is waiting on.
type limitNoter interface {
	LimitWait(desc string)
}

// limitStore wraps a freshly opened store in its limiter.
func (m *Migration) limitStore(name string, s providers.Store, l spec.Limits, partSize int64) providers.Store {
	if m.limiter == nil {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		self := checkpoints.Self("")
		interval := m.Opts.LimitsInterval
		if interval <= 0 {
			interval = DefaultLimitsInterval
		}
		m.limiter = &limiter{m: m, interval: interval, trackers: map[limitNoter]bool{},
			id:      fmt.Sprintf("%s-%d-%s", self.Host, self.PID, hex.EncodeToString(b)),
			publish: m.State != nil && !m.Opts.DryRun && !m.Opts.ReadOnlyState}
	}
	ls := &limitedStore{name: name, limits: l, lim: limit.NewLimiter(nil)}
	m.limiter.stores = append(m.limiter.stores, ls)
	return limit.Wrap(s, ls.lim, limit.Options{PartSize: partSize})
}

// start sets the first limits and starts the loop.
func (l *limiter) start(ctx context.Context) {
	l.refresh(ctx)
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		t := time.NewTicker(l.interval)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), 4*l.interval)
				l.refresh(ctx)
				cancel()
			}
		}
	}()
}

// close stops the loop and publishes the final figures.
func (l *limiter) close(ctx context.Context) {
	l.once.Do(func() {
		if l.stop != nil {
			close(l.stop)
			<-l.done
		}
		l.refreshMu.Lock()
		defer l.refreshMu.Unlock()
		l.closed = true
		l.publishStats(ctx, true)
	})
}

// refresh re-reads overrides and shares, sets every limiter, publishes what this
// process waited and tells progress.
func (l *limiter) refresh(ctx context.Context) {
	l.refreshMu.Lock()
	defer l.refreshMu.Unlock()
	if l.closed {
		return
	}
	m := l.m
	now := m.now()
	overrides := map[string]LimitOverride{}
	if m.State != nil {
		overrides = m.limitOverrides(ctx)
	}
	share := l.share(ctx, now)
	var waitingOn []string
	for _, s := range l.stores {
		o, has := overrides[s.name]
		total, _, _ := effectiveLimit(s.limits, o, has, now)
		s.lim.Set(limitRate(total).Div(share))
		st := s.lim.Stats()
		onReq, onBytes := st.WaitedRequests > s.last.WaitedRequests, st.WaitedBytes > s.last.WaitedBytes
		s.waiting = onReq || onBytes || st.Waiting > 0
		s.last = st
		if s.waiting {
			waitingOn = append(waitingOn, s.name+" "+waitDesc(total, onReq, onBytes, share))
		}
	}
	l.publishStats(ctx, false)
	desc := strings.Join(waitingOn, "; ")
	l.mu.Lock()
	changed := desc != l.desc
	l.desc = desc
	trackers := make([]limitNoter, 0, len(l.trackers))
	for t := range l.trackers {
		trackers = append(trackers, t)
	}
	l.mu.Unlock()
	if !changed {
		return
	}
	if desc != "" {
		m.log.Info("waiting on a limit", "limits", desc, "share", share)
	} else {
		m.log.Info("no longer waiting on a limit")
	}
	for _, t := range trackers {
		t.LimitWait(desc)
	}
}

// waitDesc names the cap being waited on: "limit 20 req/s" (the whole migration's
// cap; this process's share in parentheses when shared).
func waitDesc(total spec.Rate, onReq, onBytes bool, share int) string {
	var parts []string
	if onReq && total.RequestsPerSecond > 0 {
		parts = append(parts, spec.Rate{RequestsPerSecond: total.RequestsPerSecond}.String())
	}
	if onBytes && total.BytesPerSecond > 0 {
		parts = append(parts, spec.Rate{BytesPerSecond: total.BytesPerSecond}.String())
	}
	if len(parts) == 0 {
		parts = append(parts, total.String())
	}
	s := "limit " + strings.Join(parts, ", ")
	if share > 1 {
		s += fmt.Sprintf(" (1/%d each)", share)
	}
	return s
}

func limitRate(r spec.Rate) limit.Rate {
	return limit.Rate{RequestsPerSecond: r.RequestsPerSecond, BytesPerSecond: float64(r.BytesPerSecond)}
}

// share is how many processes share the caps: the live workers of this process's
// phase (itself included), or 1.
func (l *limiter) share(ctx context.Context, now time.Time) int {
	m := l.m
	phase, ok := m.workerPhase()
	if !ok || m.State == nil {
		return 1
	}
	ws, err := m.State.Workers(ctx)
	if err != nil {
		m.log.Warn("reading the workers to share limits", "err", err)
		return 1
	}
	n := 0
	for _, w := range ws {
		if w.Phase == phase && w.Alive(now) {
			n++
		}
	}
	return max(n, 1)
}

// workerPhase is the shared phase this process works as a worker, if any.
func (m *Migration) workerPhase() (string, bool) {
	m.lockMu.Lock()
	defer m.lockMu.Unlock()
	if m.worker == nil {
		return "", false
	}
	return m.worker.phase, true
}

// publishStats writes this process's figures under its own key.
func (l *limiter) publishStats(ctx context.Context, final bool) {
	if !l.publish {
		return
	}
	m := l.m
	p := procLimits{At: m.now().UTC(), Final: final, Stores: map[string]procStoreLimit{}}
	some := false
	for _, s := range l.stores {
		st := s.lim.Stats()
		if st.Rate.Unlimited() && st.Waited() == 0 {
			continue
		}
		some = true
		p.Stores[s.name] = procStoreLimit{RPS: st.Rate.RequestsPerSecond, BPS: st.Rate.BytesPerSecond,
			WaitedNS: int64(st.Waited()), HeldNS: int64(st.Throttled), Waiting: s.waiting && !final}
	}
	if !some && !l.listed {
		return // nothing to say, and nothing said before
	}
	b, _ := json.Marshal(p)
	if err := m.State.SetMeta(ctx, metaLimitProc+l.id, string(b)); err != nil {
		m.log.Warn("recording limit waits", "err", err)
		return
	}
	// List this process's key. Two processes adding themselves at once may lose one
	// of the two writes: each looks again every interval and adds itself back.
	procs := m.limitProcs(ctx)
	if slices.Contains(procs, l.id) {
		l.listed = true
		return
	}
	b, _ = json.Marshal(append(procs, l.id))
	if err := m.State.SetMeta(ctx, metaLimitProcs, string(b)); err != nil {
		m.log.Warn("recording limit waits", "err", err)
		return
	}
	l.listed = true
}

func (m *Migration) limitProcs(ctx context.Context) []string {
	var procs []string
	if v, ok, err := m.State.Meta(ctx, metaLimitProcs); err == nil && ok {
		_ = json.Unmarshal([]byte(v), &procs)
	}
	return procs
}

// limitOverrides reads the operator's overrides by store name.
func (m *Migration) limitOverrides(ctx context.Context) map[string]LimitOverride {
	out := map[string]LimitOverride{}
	v, ok, err := m.State.Meta(ctx, metaLimitOverride)
	if err != nil {
		m.log.Warn("reading limit overrides", "err", err)
		return out
	}
	if ok {
		if err := json.Unmarshal([]byte(v), &out); err != nil {
			m.log.Warn("reading limit overrides", "err", err)
		}
	}
	return out
}

// effectiveLimit is the caps in force at now and where they come from: "override",
// "schedule" (with the window) or "spec".
func effectiveLimit(l spec.Limits, o LimitOverride, has bool, now time.Time) (spec.Rate, string, string) {
	r, i := l.At(now)
	source, window := "spec", ""
	if i >= 0 {
		source, window = "schedule", l.Schedule[i].String()
	}
	if has {
		if o.RequestsPerSecond != nil {
			r.RequestsPerSecond = *o.RequestsPerSecond
			source = "override"
		}
		if o.BytesPerSecond != nil {
			r.BytesPerSecond = *o.BytesPerSecond
			source = "override"
		}
		if o.RequestsPerSecond != nil && o.BytesPerSecond != nil {
			window = "" // the window sets nothing now
		}
	}
	return r, source, window
}

// trackProgress lets a tracker name the limit ferry waits on; the returned tracker
// stops that when the phase finishes.
func (m *Migration) trackLimits(t Tracker) Tracker {
	n, ok := t.(limitNoter)
	if !ok || m.limiter == nil {
		return t
	}
	l := m.limiter
	l.mu.Lock()
	l.trackers[n] = true
	desc := l.desc
	l.mu.Unlock()
	if desc != "" {
		n.LimitWait(desc)
	}
	return &limitTracker{Tracker: t, done: func() {
		l.mu.Lock()
		delete(l.trackers, n)
		l.mu.Unlock()
	}}
}

type limitTracker struct {
	Tracker
	done func()
}

func (t *limitTracker) Finish() {
	t.done()
	t.Tracker.Finish()
}

// StoreLimit is one store's limit in `ferry status` and `ferry limits`.
type StoreLimit struct {
	Store string `json:"store"`
	// The caps in force now for the whole migration (every worker together); 0 is
	// unlimited.
	RequestsPerSecond float64 `json:"requests_per_second"`
	BytesPerSecond    int64   `json:"bytes_per_second"`
	// Source is where they come from: spec, schedule (Window names it) or override
	// (with Window set when the override names one dimension only and a window sets
	// the other).
	Source   string         `json:"source"`
	Window   string         `json:"window,omitempty"`
	Override *LimitOverride `json:"override,omitempty"`
	// WaitedSeconds is the time during which a process had a request waiting on the
	// caps, summed over every process and run so far; RequestWaitSeconds sums the
	// waits of every request instead (ten requests waiting one second count ten).
	WaitedSeconds      float64 `json:"waited_seconds"`
	RequestWaitSeconds float64 `json:"request_wait_seconds"`
	// Processes counts the running processes sharing the caps now; Waiting those of
	// them that waited on it in their last interval.
	Processes int `json:"processes"`
	Waiting   int `json:"waiting"`
}

// Limit is the caps as text: "200 req/s, 50MiB/s" or "unlimited".
func (s StoreLimit) Limit() string {
	return spec.Rate{RequestsPerSecond: s.RequestsPerSecond, BytesPerSecond: s.BytesPerSecond}.String()
}

// Limits reports every store's limit in force now and the time spent waiting on it.
// Stores without any limit, override or wait are left out.
func (m *Migration) Limits(ctx context.Context) ([]StoreLimit, error) {
	now := m.now()
	overrides := m.limitOverrides(ctx)
	type figures struct {
		waited, held       time.Duration
		processes, waiting int
	}
	fig := map[string]*figures{}
	stale := 3*m.limitsInterval() + 5*time.Second
	for _, id := range m.limitProcs(ctx) {
		v, ok, err := m.State.Meta(ctx, metaLimitProc+id)
		if err != nil {
			return nil, Errorf(ExitRuntime, "%w", err)
		}
		var p procLimits
		if !ok || json.Unmarshal([]byte(v), &p) != nil {
			continue
		}
		live := !p.Final && now.Sub(p.At) < stale
		for name, s := range p.Stores {
			f := fig[name]
			if f == nil {
				f = &figures{}
				fig[name] = f
			}
			f.waited += time.Duration(s.WaitedNS)
			f.held += time.Duration(s.HeldNS)
			if live {
				f.processes++
				if s.Waiting {
					f.waiting++
				}
			}
		}
	}
	var out []StoreLimit
	add := func(name string, l spec.Limits) {
		o, has := overrides[name]
		r, source, window := effectiveLimit(l, o, has, now)
		f := fig[name]
		if f == nil {
			f = &figures{}
		}
		if l.IsZero() && !has && f.waited == 0 {
			return
		}
		sl := StoreLimit{Store: name, RequestsPerSecond: r.RequestsPerSecond, BytesPerSecond: r.BytesPerSecond,
			Source: source, Window: window, WaitedSeconds: f.held.Seconds(), RequestWaitSeconds: f.waited.Seconds(),
			Processes: f.processes, Waiting: f.waiting}
		if has {
			sl.Override = &o
		}
		out = append(out, sl)
	}
	for _, s := range m.Spec.Sources {
		add(s.Name, s.Limits)
	}
	add(spec.TargetName, m.Spec.Target.Limits)
	return out, nil
}

func (m *Migration) limitsInterval() time.Duration {
	if m.Opts.LimitsInterval > 0 {
		return m.Opts.LimitsInterval
	}
	return DefaultLimitsInterval
}

// LimitsResult is what `ferry limits set` and `ferry limits clear` report.
type LimitsResult struct {
	Changed string       `json:"changed"`
	Limits  []StoreLimit `json:"limits"`
}

// SetLimit records an override of a store's caps (a site's name or "target") in the
// state; running processes apply it within an interval. A nil value keeps what the
// spec says for that dimension; 0 lifts the cap.
func (m *Migration) SetLimit(ctx context.Context, store string, rps *float64, bps *int64) (*LimitsResult, error) {
	if err := m.checkLimitStore(store); err != nil {
		return nil, err
	}
	if rps == nil && bps == nil {
		return nil, Errorf(ExitUsage, "say which limit to set: --rps, --bps or both (unlimited lifts one)")
	}
	ov := m.limitOverrides(ctx)
	o := ov[store]
	if rps != nil {
		o.RequestsPerSecond = rps
	}
	if bps != nil {
		o.BytesPerSecond = bps
	}
	o.SetAt = m.now().UTC()
	ov[store] = o
	return m.saveOverrides(ctx, ov, "override for "+store)
}

// ClearLimit removes a store's override (every store's when store is ""): the spec's
// limits apply again.
func (m *Migration) ClearLimit(ctx context.Context, store string) (*LimitsResult, error) {
	ov := m.limitOverrides(ctx)
	what := "every override"
	if store != "" {
		if err := m.checkLimitStore(store); err != nil {
			return nil, err
		}
		delete(ov, store)
		what = "override for " + store
	} else {
		ov = map[string]LimitOverride{}
	}
	return m.saveOverrides(ctx, ov, what+" cleared")
}

func (m *Migration) checkLimitStore(store string) error {
	if store == spec.TargetName {
		return nil
	}
	if _, ok := m.Spec.Site(store); ok {
		return nil
	}
	var names []string
	for _, s := range m.Spec.Sources {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return Errorf(ExitUsage, "no site named %q (sites: %s; or --target)", store, strings.Join(names, ", "))
}

func (m *Migration) saveOverrides(ctx context.Context, ov map[string]LimitOverride, what string) (*LimitsResult, error) {
	b, err := json.Marshal(ov)
	if err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}
	if err := m.State.SetMeta(ctx, metaLimitOverride, string(b)); err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}
	ls, err := m.Limits(ctx)
	if err != nil {
		return nil, err
	}
	return &LimitsResult{Changed: what, Limits: ls}, nil
}
