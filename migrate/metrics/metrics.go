// Package metrics holds ferry's Prometheus metrics (docs/metrics.md): one private
// registry per process, the collectors the pipeline updates where it counts records,
// and collectors that read the limiters and the checkpoint state when scraped.
//
// Every method is safe on a nil *Metrics and then does nothing, so the pipeline calls
// them unconditionally and a run without --metrics-addr pays one nil check.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/limit"
)

// Outcomes of a record or a replica (the `outcome` label of ferry_records_total).
const (
	OutcomeDone    = "done"    // copied, verified, deleted, listed
	OutcomeSkipped = "skipped" // copy: the target copy already matched; delete: left for verify
	OutcomeFailed  = "failed"  // see ferry_failures_total for why
)

// Metrics is one process's metrics.
type Metrics struct {
	reg *prometheus.Registry

	records    *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	failures   *prometheus.CounterVec
	retries    *prometheus.CounterVec
	takeovers  *prometheus.CounterVec
	rangesLost *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	reqErrors  *prometheus.CounterVec

	phaseRunning *prometheus.GaugeVec
	phaseRecords *prometheus.GaugeVec
	phaseBytes   *prometheus.GaugeVec
	phaseScope   *prometheus.GaugeVec
	phaseScopeB  *prometheus.GaugeVec
	info         *prometheus.GaugeVec

	stores *storeCollector
	state  *stateCollector

	infoMu  sync.Mutex
	version string
}

// LatencyBuckets are the request latency histogram's buckets, in seconds: from a
// millisecond (a local disk, an in-memory store) to two minutes (a large part
// upload over a slow link).
var LatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// New returns metrics registered on a fresh private registry (never the global
// one), with the Go runtime and process collectors beside ferry's own.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_records_total",
			Help: "Records (replicas for delete) this process finished, by phase, site and outcome (done, skipped, failed)."},
			[]string{"phase", "site", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_bytes_total",
			Help: "Bytes of the records counted done by ferry_records_total: copied, listed, read back by verify, deleted."},
			[]string{"phase", "site"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_failures_total",
			Help: "Failed records, replicas and fatal store errors, by phase, site and kind of error."},
			[]string{"phase", "site", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_retries_total",
			Help: "Attempts ferry made at a record beyond the first, by phase and site."},
			[]string{"phase", "site"}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_lease_takeovers_total",
			Help: "Ranges this worker took over from a worker whose lease ran out, by phase."},
			[]string{"phase"}),
		rangesLost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_ranges_lost_total",
			Help: "Ranges this worker lost to another worker (its lease ran out first), by phase."},
			[]string{"phase"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_request_duration_seconds",
			Help:    "Time a store took to serve one request, by store (a site or target) and operation; limits' waits excluded.",
			Buckets: LatencyBuckets},
			[]string{"store", "op"}),
		reqErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_request_errors_total",
			Help: "Store requests that returned an error, by store, operation and kind (not_found is often an expected answer)."},
			[]string{"store", "op", "kind"}),
		phaseRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_phase_running",
			Help: "1 while this process runs the phase, else 0."}, []string{"phase"}),
		phaseRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_phase_progress_records",
			Help: "Records this process has gone through in the current (or last) run of the phase."}, []string{"phase"}),
		phaseBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_phase_progress_bytes",
			Help: "Bytes this process has gone through in the current (or last) run of the phase."}, []string{"phase"}),
		phaseScope: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_phase_scope_records",
			Help: "Records the current (or last) run of the phase set out to go through (0: not known in advance)."}, []string{"phase"}),
		phaseScopeB: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_phase_scope_bytes",
			Help: "Bytes the current (or last) run of the phase set out to go through (0: not known in advance)."}, []string{"phase"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_info",
			Help: "1, labelled with the migration id and ferry's version."}, []string{"migration", "version"}),
		stores: &storeCollector{stores: map[string]storeFuncs{}},
		state:  newStateCollector(),
	}
	reg.MustRegister(m.records, m.bytes, m.failures, m.retries, m.takeovers, m.rangesLost, m.latency, m.reqErrors,
		m.phaseRunning, m.phaseRecords, m.phaseBytes, m.phaseScope, m.phaseScopeB, m.info, m.stores, m.state,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the private registry.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: true})
}

// SetVersion sets the version ferry_info shows.
func (m *Metrics) SetVersion(v string) {
	if m == nil {
		return
	}
	m.infoMu.Lock()
	m.version = v
	m.infoMu.Unlock()
}

// Info sets ferry_info's migration label.
func (m *Metrics) Info(migration string) {
	if m == nil {
		return
	}
	m.infoMu.Lock()
	defer m.infoMu.Unlock()
	m.info.Reset()
	m.info.WithLabelValues(migration, m.version).Set(1)
}

// Record counts one record (or replica) of phase at site with its outcome, and its
// bytes when it is done. A failed one is also counted in ferry_failures_total under
// the kind of err.
func (m *Metrics) Record(phase, site, outcome string, bytes int64, err error) {
	if m == nil {
		return
	}
	m.records.WithLabelValues(phase, site, outcome).Inc()
	switch outcome {
	case OutcomeDone:
		if bytes > 0 {
			m.bytes.WithLabelValues(phase, site).Add(float64(bytes))
		}
	case OutcomeFailed:
		m.failures.WithLabelValues(phase, site, Kind(err)).Inc()
	}
}

// Records counts n records of phase at site done at once (a listing's page).
func (m *Metrics) Records(phase, site string, n, bytes int64) {
	if m == nil || n <= 0 {
		return
	}
	m.records.WithLabelValues(phase, site, OutcomeDone).Add(float64(n))
	if bytes > 0 {
		m.bytes.WithLabelValues(phase, site).Add(float64(bytes))
	}
}

// Failure counts a failure that is not one record's (a fatal store error that stops
// a phase, a listing that failed).
func (m *Metrics) Failure(phase, site string, err error) {
	if m == nil {
		return
	}
	m.failures.WithLabelValues(phase, site, Kind(err)).Inc()
}

// Retries counts n attempts beyond the first.
func (m *Metrics) Retries(phase, site string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.retries.WithLabelValues(phase, site).Add(float64(n))
}

// Takeover counts a range taken over from a worker whose lease ran out.
func (m *Metrics) Takeover(phase string) {
	if m == nil {
		return
	}
	m.takeovers.WithLabelValues(phase).Inc()
}

// RangeLost counts a range lost to another worker.
func (m *Metrics) RangeLost(phase string) {
	if m == nil {
		return
	}
	m.rangesLost.WithLabelValues(phase).Inc()
}

// ObserveRequest records one store request (providers/metered.Observer).
func (m *Metrics) ObserveRequest(store, op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.latency.WithLabelValues(store, op).Observe(d.Seconds())
	if err != nil {
		m.reqErrors.WithLabelValues(store, op, Kind(err)).Inc()
	}
}

// PhaseStarted marks phase running with its scope (0: unknown) and zero progress.
func (m *Metrics) PhaseStarted(phase string, records, bytes int64) {
	if m == nil {
		return
	}
	m.phaseRunning.WithLabelValues(phase).Set(1)
	m.phaseScope.WithLabelValues(phase).Set(float64(records))
	m.phaseScopeB.WithLabelValues(phase).Set(float64(bytes))
	m.phaseRecords.WithLabelValues(phase).Set(0)
	m.phaseBytes.WithLabelValues(phase).Set(0)
}

// PhaseProgress adds to phase's progress.
func (m *Metrics) PhaseProgress(phase string, records, bytes int64) {
	if m == nil {
		return
	}
	m.phaseRecords.WithLabelValues(phase).Add(float64(records))
	m.phaseBytes.WithLabelValues(phase).Add(float64(bytes))
}

// PhaseFinished marks phase no longer running (its progress stays as it ended).
func (m *Metrics) PhaseFinished(phase string) {
	if m == nil {
		return
	}
	m.phaseRunning.WithLabelValues(phase).Set(0)
}

// Kind names the kind of a failure, for the `kind` labels: one of the portable
// store errors (credentials, access_denied, no_bucket, no_space, read_only,
// permission, retained, checksum, not_found, changed, invalid_key, incomplete_list,
// not_supported), fenced (a worker's claim was lost), interrupted, timeout, or other.
func Kind(err error) string {
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, providers.ErrCredentials):
		return "credentials"
	case errors.Is(err, providers.ErrAccessDenied):
		return "access_denied"
	case errors.Is(err, providers.ErrNoBucket):
		return "no_bucket"
	case errors.Is(err, providers.ErrNoSpace):
		return "no_space"
	case errors.Is(err, providers.ErrReadOnly):
		return "read_only"
	case errors.Is(err, providers.ErrPermission):
		return "permission"
	case errors.Is(err, providers.ErrRetained):
		return "retained"
	case errors.Is(err, providers.ErrChecksum):
		return "checksum"
	case errors.Is(err, providers.ErrNotFound):
		return "not_found"
	case errors.Is(err, providers.ErrPrecondition):
		return "changed"
	case errors.Is(err, providers.ErrInvalidKey):
		return "invalid_key"
	case errors.Is(err, providers.ErrIncompleteList):
		return "incomplete_list"
	case errors.Is(err, providers.ErrNotSupported):
		return "not_supported"
	case errors.Is(err, checkpoints.ErrFenced):
		return "fenced"
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

// ---- stores: limiters and the stores' own retries, read when scraped ----

type storeFuncs struct {
	limiter *limit.Limiter    // nil: none
	retrier providers.Retrier // nil: the store does not count its retries
}

type storeCollector struct {
	mu     sync.Mutex
	stores map[string]storeFuncs
}

var (
	descLimitWait = prometheus.NewDesc("ferry_limit_wait_seconds_total",
		"Time callers spent waiting for a limit's tokens (summed over callers), by store and dimension (requests, bytes).",
		[]string{"store", "dimension"}, nil)
	descThrottled = prometheus.NewDesc("ferry_limit_throttled_seconds_total",
		"Wall time during which at least one caller waited on the store's limit in this process.",
		[]string{"store"}, nil)
	descWaiting = prometheus.NewDesc("ferry_limit_waiting",
		"Callers waiting on the store's limit now.", []string{"store"}, nil)
	descLimitRPS = prometheus.NewDesc("ferry_limit_requests_per_second",
		"This process's share of the store's request cap in force (0: unlimited).", []string{"store"}, nil)
	descLimitBPS = prometheus.NewDesc("ferry_limit_bytes_per_second",
		"This process's share of the store's byte cap in force (0: unlimited).", []string{"store"}, nil)
	descStoreRetries = prometheus.NewDesc("ferry_store_retries_total",
		"Requests the store's client retried by itself (throttling, 5xx, dropped connections).", []string{"store"}, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLimitWait, descThrottled, descWaiting, descLimitRPS, descLimitBPS, descStoreRetries} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	names := make([]string, 0, len(c.stores))
	for n := range c.stores {
		names = append(names, n)
	}
	sort.Strings(names)
	stores := make([]storeFuncs, len(names))
	for i, n := range names {
		stores[i] = c.stores[n]
	}
	c.mu.Unlock()
	for i, name := range names {
		s := stores[i]
		if s.limiter != nil {
			st := s.limiter.Stats()
			ch <- prometheus.MustNewConstMetric(descLimitWait, prometheus.CounterValue, st.WaitedRequests.Seconds(), name, "requests")
			ch <- prometheus.MustNewConstMetric(descLimitWait, prometheus.CounterValue, st.WaitedBytes.Seconds(), name, "bytes")
			ch <- prometheus.MustNewConstMetric(descThrottled, prometheus.CounterValue, st.Throttled.Seconds(), name)
			ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(st.Waiting), name)
			ch <- prometheus.MustNewConstMetric(descLimitRPS, prometheus.GaugeValue, max(st.Rate.RequestsPerSecond, 0), name)
			ch <- prometheus.MustNewConstMetric(descLimitBPS, prometheus.GaugeValue, max(st.Rate.BytesPerSecond, 0), name)
		}
		if s.retrier != nil {
			ch <- prometheus.MustNewConstMetric(descStoreRetries, prometheus.CounterValue, float64(s.retrier.Retries()), name)
		}
	}
}

// Store registers a store (a site's name or "target"): its limiter's waits and caps
// (lim nil: none), and the retries its client makes by itself when it counts them
// (found through the store's decorators). A store registered again under the same
// name replaces the earlier one.
func (m *Metrics) Store(name string, s providers.Store, lim *limit.Limiter) {
	if m == nil {
		return
	}
	f := storeFuncs{limiter: lim}
	if r, ok := providers.As[providers.Retrier](s); ok {
		f.retrier = r
	}
	m.stores.mu.Lock()
	m.stores.stores[name] = f
	m.stores.mu.Unlock()
}

// ---- the checkpoint state: the whole migration, read when scraped ----

// State is what the checkpoint state says of the whole migration, across every
// process working it.
type State struct {
	Records map[string]checkpoints.Count            // by record state
	Stages  []Stage                                 // in spec order
	Workers map[string]int                          // live workers by phase
	Sites   map[string]map[string]checkpoints.Count // replicas by site and replica state
}

// Stage is one deletion stage's status and its replicas by state.
type Stage struct {
	Name     string
	Status   string                       // pending, running, finished, restored, purged
	Replicas map[string]checkpoints.Count // by replica state
}

// StateFunc reads the state; it is called at most once per StateMaxAge, with a
// deadline.
type StateFunc func(ctx context.Context) (State, error)

// StateMaxAge is how long one reading of the state serves scrapes: several
// Prometheus servers (or a short scrape interval) never make ferry read a large
// state more often than this.
const StateMaxAge = 5 * time.Second

// stateTimeout bounds one reading of the state during a scrape.
const stateTimeout = 10 * time.Second

type stateCollector struct {
	mu      sync.Mutex
	readers map[int]StateFunc // by WatchState call: the latest one reads
	gen     int               // WatchState calls so far
	last    State
	at      time.Time
	has     bool
	errors  int64
}

var (
	descStateRecords = prometheus.NewDesc("ferry_state_records",
		"Records in the checkpoint state by state (planned, copied, verified, failed, conflict, ...): the whole migration, every process.",
		[]string{"state"}, nil)
	descStateBytes = prometheus.NewDesc("ferry_state_bytes",
		"Bytes of the records in the checkpoint state by state.", []string{"state"}, nil)
	descSiteReplicas = prometheus.NewDesc("ferry_site_replicas",
		"Replicas in the checkpoint state by site and replica state (present, identical, deleted, ...).",
		[]string{"site", "state"}, nil)
	descStageReplicas = prometheus.NewDesc("ferry_stage_replicas",
		"A deletion stage's replicas by replica state (identical, delete-intent, deleted, purged, ...): stage progress.",
		[]string{"stage", "state"}, nil)
	descStageStatus = prometheus.NewDesc("ferry_stage_status",
		"1 for a deletion stage's current status (pending, running, finished, restored, purged).",
		[]string{"stage", "status"}, nil)
	descWorkersAlive = prometheus.NewDesc("ferry_workers_alive",
		"Live workers sharing the migration's state, by phase (every process's view of the same state).",
		[]string{"phase"}, nil)
	descStateErrors = prometheus.NewDesc("ferry_state_read_errors_total",
		"Readings of the checkpoint state for these metrics that failed (the last good reading is served).", nil, nil)
)

func newStateCollector() *stateCollector { return &stateCollector{readers: map[int]StateFunc{}} }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStateRecords, descStateBytes, descSiteReplicas, descStageReplicas, descStageStatus, descWorkersAlive, descStateErrors} {
		ch <- d
	}
}

// snapshot returns the state, read again through the latest reader when the last
// reading is older than StateMaxAge.
func (c *stateCollector) snapshot() (State, bool, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if read := c.latest(); read != nil && (!c.has || time.Since(c.at) >= StateMaxAge) {
		c.readLocked(read)
	}
	return c.last, c.has, c.errors
}

func (c *stateCollector) latest() StateFunc {
	top := -1
	for g := range c.readers {
		top = max(top, g)
	}
	return c.readers[top]
}

func (c *stateCollector) readLocked(read StateFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	st, err := read(ctx)
	cancel()
	if err != nil {
		c.errors++
		return
	}
	c.last, c.at, c.has = st, time.Now(), true
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok, nerr := c.snapshot()
	ch <- prometheus.MustNewConstMetric(descStateErrors, prometheus.CounterValue, float64(nerr))
	if !ok {
		return
	}
	for state, n := range st.Records {
		ch <- prometheus.MustNewConstMetric(descStateRecords, prometheus.GaugeValue, float64(n.N), state)
		ch <- prometheus.MustNewConstMetric(descStateBytes, prometheus.GaugeValue, float64(n.Bytes), state)
	}
	for site, by := range st.Sites {
		for state, n := range by {
			ch <- prometheus.MustNewConstMetric(descSiteReplicas, prometheus.GaugeValue, float64(n.N), site, state)
		}
	}
	for _, s := range st.Stages {
		ch <- prometheus.MustNewConstMetric(descStageStatus, prometheus.GaugeValue, 1, s.Name, s.Status)
		for state, n := range s.Replicas {
			ch <- prometheus.MustNewConstMetric(descStageReplicas, prometheus.GaugeValue, float64(n.N), s.Name, state)
		}
	}
	for phase, n := range st.Workers {
		ch <- prometheus.MustNewConstMetric(descWorkersAlive, prometheus.GaugeValue, float64(n), phase)
	}
}

// WatchState makes scrapes read the state through read, until the returned stop,
// which reads it one last time (while it is still open) and stops reading it. The
// last reading is served from then on, so the figures a finished phase left stay
// visible. Several migrations may watch at once (workers in one process, in tests):
// the latest one still watching is read.
func (m *Metrics) WatchState(read StateFunc) (stop func()) {
	if m == nil {
		return func() {}
	}
	c := m.state
	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.readers[gen] = read
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.readLocked(read)
			delete(c.readers, gen)
		})
	}
}

// ---- serving ----

// Server serves /metrics.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Listen binds addr (HOST:PORT; port 0 picks one) and serves the metrics at
// /metrics until Close.
func (m *Metrics) Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("ferry: metrics at /metrics\n"))
	})
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, letting a scrape in progress finish (for up to a few
// seconds): the final figures of a phase can be collected just before exit.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
