package migrate

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// The estimate `ferry plan` prints (README, "Cost and time estimate"): for every site
// and the target, the requests by kind, the bytes read and written and the egress of
// the listing this plan made and of the work left (copy, verify, delete); with price
// tables, the money; with limits, the time. It is counted record by record from the
// plan as stored, with the request pattern of each phase as ferry runs it today:
//
//   - plan: one LIST per 1000 objects of a listed site; for a site planned from an
//     inventory, one GET per file read (manifest and data files) and one HEAD per key.
//   - copy (records planned or failed): the source is the first live replica,
//     primaries first. A HEAD at the source and at the target first where the source
//     vouches for a SHA-256 (a matching target copy is not copied again); one GET of
//     the whole object; a HEAD at the source after the read where the store cannot
//     read a snapshot (file); at the target one PUT, or, above the target's part
//     size, one request per part plus two (create and complete).
//   - verify (records not yet verified): a HEAD of the target copy, plus a GET of the
//     whole copy with verify.reread or where the target reports no SHA-256 (file,
//     gs, azblob; S3 and OCI multipart copies); for each replica due for deletion not
//     yet proven, a HEAD at its site, plus a GET of the whole replica where neither
//     the store nor the plan vouches for its SHA-256 (an S3 object uploaded with a
//     SHA-256 checksum needs only the HEAD, which the plan cannot know: the
//     estimate counts the read).
//   - delete (replicas in a stage's predicted scope, not yet deleted): a HEAD of the
//     target copy (and a GET of it where the target reports neither a SHA-256 nor a
//     whole-object CRC32C: I12), a HEAD
//     at the site, the DELETE, and a HEAD to confirm absence; per record and stage
//     one more HEAD of the target copy once its replicas are done (I9); in soft mode also a
//     server-side copy into the quarantine (a PUT; a versioned bucket needs none) and
//     the DELETE of --purge.
//
// Egress is the bytes read from a store that is not a file:// directory. Retries, the
// marker objects and the few probes of validate are left out: the figures are a
// floor, not a bill.

// Requests counts requests by kind.
type Requests struct {
	List   int64 `json:"list"`
	Get    int64 `json:"get"` // GET and HEAD
	Put    int64 `json:"put"` // PUT, multipart parts with create and complete, server-side COPY
	Delete int64 `json:"delete"`
}

// Total is every request.
func (r Requests) Total() int64 { return r.List + r.Get + r.Put + r.Delete }

// Traffic is what a phase (or all of them) asks of one store.
type Traffic struct {
	Requests     Requests `json:"requests"`
	BytesRead    int64    `json:"bytes_read"`
	BytesWritten int64    `json:"bytes_written"`
	Egress       int64    `json:"egress_bytes"`
}

func (t *Traffic) add(o Traffic) {
	t.Requests.List += o.Requests.List
	t.Requests.Get += o.Requests.Get
	t.Requests.Put += o.Requests.Put
	t.Requests.Delete += o.Requests.Delete
	t.BytesRead += o.BytesRead
	t.BytesWritten += o.BytesWritten
	t.Egress += o.Egress
}

// Money is a traffic priced by a store's price table.
type Money struct {
	Currency string  `json:"currency"`
	Requests float64 `json:"requests"`
	Egress   float64 `json:"egress"`
	// Total is what the migration costs once: requests and egress.
	Total float64 `json:"total"`
	// StoragePerMonth is what keeping the stored bytes costs a month (target).
	StoragePerMonth float64 `json:"storage_per_month,omitempty"`
}

func (m *Money) add(o *Money) {
	m.Requests += o.Requests
	m.Egress += o.Egress
	m.Total += o.Total
	m.StoragePerMonth += o.StoragePerMonth
}

// Estimate phases, in the order they run.
var estimatePhases = []string{"plan", "copy", "verify", "delete"}

// StoreEstimate is one store's share of the estimate.
type StoreEstimate struct {
	Store string `json:"store"` // a site's name, or "target"
	// Traffic is every phase together; Phases each one.
	Traffic
	Phases map[string]Traffic `json:"phases"`
	// Stored is the bytes the target keeps once every record is copied (target only).
	Stored int64  `json:"stored_bytes,omitempty"`
	Cost   *Money `json:"cost,omitempty"` // nil without a price table
	// Limit is the limit in force ("unlimited" when none); Seconds the time the
	// store's traffic takes at it (0 when unlimited).
	Limit   string  `json:"limit"`
	Seconds float64 `json:"seconds"`
	// LimitSource says where the limit comes from: spec, schedule (the window in
	// force now: the estimate does not follow the schedule through time) or override.
	LimitSource string `json:"limit_source,omitempty"`

	rate spec.Rate
}

// Estimate is what the plan's work will ask of every store, and cost, and take.
type Estimate struct {
	Stores []StoreEstimate `json:"stores"` // sites in spec order, then the target
	Total  Traffic         `json:"total"`
	// Cost adds up the stores that have a price table (nil when none has); Unpriced
	// names the stores without one.
	Cost     *Money   `json:"cost,omitempty"`
	Unpriced []string `json:"unpriced,omitempty"`
	// Seconds is the time at the limits in force: each phase as long as its slowest
	// store, the phases one after another. PhaseSeconds breaks it down. Unlimited
	// names the stores that have no limit: their share of the time is not counted.
	Seconds      float64            `json:"seconds"`
	Duration     string             `json:"duration"`
	PhaseSeconds map[string]float64 `json:"phase_seconds"`
	Unlimited    []string           `json:"unlimited,omitempty"`
	// Where a limit follows a schedule, Seconds holds for the window in force now;
	// FastestSeconds and SlowestSeconds bound the time were the fastest or the
	// slowest of each store's rates to hold throughout (nil without schedules).
	FastestSeconds *float64 `json:"fastest_seconds,omitempty"`
	SlowestSeconds *float64 `json:"slowest_seconds,omitempty"`
}

// estimator adds up traffic per store and phase.
type estimator struct {
	m        *Migration
	stores   map[string]*StoreEstimate
	order    []string
	remote   map[string]bool // reads cross the network: egress
	trusted  map[string]bool // Stat reports a SHA-256 the pipeline trusts
	scheme   map[string]string
	snapshot map[string]bool
	partSize int64
	reread   bool
	// scheduled holds, for each store whose limit follows a schedule, every rate it
	// may run at (outside the windows and in each, overrides applied).
	scheduled map[string][]spec.Rate
}

func (m *Migration) newEstimator() *estimator {
	e := &estimator{m: m, stores: map[string]*StoreEstimate{}, remote: map[string]bool{}, trusted: map[string]bool{}, snapshot: map[string]bool{}, scheme: map[string]string{},
		partSize: m.Spec.Target.PartSize, reread: m.Spec.Verify.Reread}
	add := func(name, url string, store providers.Store) {
		e.stores[name] = &StoreEstimate{Store: name, Phases: map[string]Traffic{}}
		e.order = append(e.order, name)
		if store != nil {
			url = store.URI("") // what the store is, whatever the spec calls it
		}
		e.scheme[name], _, _ = strings.Cut(url, ":")
		e.remote[name] = e.scheme[name] != "file"
		f := m.caps(name).Features
		e.trusted[name], e.snapshot[name] = f.TrustedSHA256, f.SnapshotReads
	}
	for _, s := range m.Spec.Sources {
		add(s.Name, s.URL, m.Sites[s.Name])
	}
	add(spec.TargetName, m.Spec.Target.URL, m.Target)
	return e
}

// req adds n requests of a kind (by a Requests with ones) and bytes read or written.
func (e *estimator) req(store, phase string, r Requests, read, written int64) {
	s := e.stores[store]
	if s == nil {
		return
	}
	t := Traffic{Requests: r, BytesRead: read, BytesWritten: written}
	if e.remote[store] {
		t.Egress = read
	}
	pt := s.Phases[phase]
	pt.add(t)
	s.Phases[phase] = pt
}

var oneGet = Requests{Get: 1}

// puts is the PUT-class requests one upload of size bytes makes.
func puts(size, partSize int64) int64 {
	if partSize <= 0 || size <= partSize {
		return 1
	}
	return (size+partSize-1)/partSize + 2
}

// listPages is the LIST requests a listing of n objects makes.
func listPages(n int64) int64 { return max(1, (n+listBatch-1)/listBatch) }

// planned adds the plan's own listing or inventory reads.
func (e *estimator) planned(res *PlanResult) {
	for _, s := range e.m.Spec.Sources {
		if in, ok := res.Inventories[s.Name]; ok {
			e.req(s.Name, "plan", Requests{Get: int64(in.Files) + in.Keys}, 0, 0)
			continue
		}
		e.req(s.Name, "plan", Requests{List: listPages(res.Sites[s.Name].Objects)}, 0, 0)
	}
}

// record adds what copy, verify and delete will do for one record.
func (e *estimator) record(r checkpoints.Record) {
	switch r.State {
	case checkpoints.Excluded, checkpoints.Rejected, checkpoints.Conflict:
		return
	}
	const target = spec.TargetName
	toCopy := r.State == checkpoints.Planned || r.State == checkpoints.Failed
	if toCopy {
		if srcs := e.m.sources(&r); len(srcs) > 0 {
			src := srcs[0]
			if src.SHA256 != "" {
				e.req(src.Site, "copy", oneGet, 0, 0)
				e.req(target, "copy", oneGet, 0, 0)
			}
			e.req(src.Site, "copy", oneGet, src.Size, 0)
			if !e.snapshot[src.Site] {
				e.req(src.Site, "copy", oneGet, 0, 0)
			}
			e.req(target, "copy", Requests{Put: puts(src.Size, e.partSize)}, 0, src.Size)
		}
	}
	if toCopy || r.State == checkpoints.Copied {
		e.req(target, "verify", oneGet, 0, 0)
		if e.reread || !e.targetSHA256(r.Size) {
			e.req(target, "verify", oneGet, r.Size, 0)
		}
	}
	soft := map[string]bool{}
	stages := map[string]bool{}
	for _, p := range r.Replicas {
		if p.Stage == "" || gone(p.State) {
			continue
		}
		if p.State == checkpoints.Present || p.State == checkpoints.Restored {
			e.req(p.Site, "verify", oneGet, 0, 0)
			if !e.trusted[p.Site] && p.SHA256 == "" {
				e.req(p.Site, "verify", oneGet, p.Size, 0)
			}
		}
		if !inScope(r, p, true) {
			continue
		}
		if !stages[p.Stage] {
			stages[p.Stage] = true
			e.req(target, "delete", oneGet, 0, 0) // the record's target copy, after its replicas in the stage
		}
		e.req(target, "delete", oneGet, 0, 0)
		if !e.targetSHA256(r.Size) && !e.targetCRC32C() {
			e.req(target, "delete", oneGet, r.Size, 0)
		}
		e.req(p.Site, "delete", Requests{Get: 2, Delete: 1}, 0, 0)
		mode, ok := soft[p.Stage]
		if !ok {
			mode = e.m.stageMode(p.Stage) == string(spec.ModeSoft)
			soft[p.Stage] = mode
		}
		if mode {
			e.req(p.Site, "delete", Requests{Put: 1, Delete: 1}, 0, 0)
		}
	}
}

// targetSHA256 reports whether the target reports a SHA-256 of a copy of size bytes
// (S3 and OCI keep the one ferry sends with a single-part upload; a multipart copy
// has a whole-object CRC32C instead).
func (e *estimator) targetSHA256(size int64) bool {
	t := spec.TargetName
	return e.trusted[t] || (e.scheme[t] == "s3" || e.scheme[t] == "oci") && size <= max(e.partSize, 1)
}

// targetCRC32C reports whether the target reports a whole-object CRC32C of every copy.
func (e *estimator) targetCRC32C() bool {
	switch e.scheme[spec.TargetName] {
	case "s3", "oci", "gs":
		return true
	}
	return false
}

// finish totals the traffic, prices it and times it.
func (e *estimator) finish(stored int64, limits map[string]StoreLimit) *Estimate {
	out := &Estimate{PhaseSeconds: map[string]float64{}}
	var cost *Money
	for _, name := range e.order {
		s := e.stores[name]
		var pr *spec.Prices
		if name == spec.TargetName {
			s.Stored = stored
			pr = e.m.Spec.Target.Prices
		} else if site := e.m.siteSpec(name); site != nil {
			pr = site.Prices
		}
		for _, ph := range estimatePhases {
			t, ok := s.Phases[ph]
			if !ok {
				s.Phases[ph] = Traffic{}
			}
			s.Traffic.add(t)
		}
		out.Total.add(s.Traffic)
		if pr != nil {
			s.Cost = priceTraffic(s.Traffic, s.Stored, pr)
			if cost == nil {
				cost = &Money{Currency: pr.Currency}
			}
			cost.add(s.Cost)
		} else {
			out.Unpriced = append(out.Unpriced, name)
		}
		l := limits[name]
		s.rate = spec.Rate{RequestsPerSecond: l.RequestsPerSecond, BytesPerSecond: l.BytesPerSecond}
		s.Limit, s.LimitSource = s.rate.String(), l.Source
		if l.Window != "" {
			s.LimitSource += " " + l.Window
		}
		if s.rate.Unlimited() {
			out.Unlimited = append(out.Unlimited, name)
		}
		for _, ph := range estimatePhases {
			sec := trafficSeconds(s.Phases[ph], s.rate)
			s.Seconds += sec
			out.PhaseSeconds[ph] = math.Max(out.PhaseSeconds[ph], sec)
		}
		out.Stores = append(out.Stores, *s)
	}
	for _, ph := range estimatePhases {
		out.Seconds += out.PhaseSeconds[ph]
	}
	out.Duration = FormatSeconds(out.Seconds)
	if len(e.scheduled) > 0 {
		var lo, hi float64
		for _, ph := range estimatePhases {
			var plo, phi float64
			for _, s := range out.Stores {
				rates := e.scheduled[s.Store]
				if len(rates) == 0 {
					rates = []spec.Rate{s.rate}
				}
				slo, shi := math.Inf(1), 0.0
				for _, r := range rates {
					sec := trafficSeconds(s.Phases[ph], r)
					slo, shi = math.Min(slo, sec), math.Max(shi, sec)
				}
				plo, phi = math.Max(plo, slo), math.Max(phi, shi)
			}
			lo, hi = lo+plo, hi+phi
		}
		out.FastestSeconds, out.SlowestSeconds = &lo, &hi
	}
	out.Cost = cost
	return out
}

// priceTraffic prices one store's traffic (and, at the target, the bytes it keeps).
func priceTraffic(t Traffic, stored int64, p *spec.Prices) *Money {
	const gib = 1 << 30
	m := &Money{Currency: p.Currency}
	m.Requests = float64(t.Requests.List)/1000*p.ListPer1000 + float64(t.Requests.Get)/1000*p.GetPer1000 +
		float64(t.Requests.Put)/1000*p.PutPer1000 + float64(t.Requests.Delete)/1000*p.DeletePer1000
	m.Egress = float64(t.Egress) / gib * p.EgressPerGiB
	m.Total = m.Requests + m.Egress
	m.StoragePerMonth = float64(stored) / gib * p.StoragePerGiBMonth
	return m
}

// trafficSeconds is how long a store's traffic takes at its caps: the longer of its
// requests at requests_per_second and its bytes (read and written) at
// bytes_per_second; 0 for a dimension without a cap.
func trafficSeconds(t Traffic, r spec.Rate) float64 {
	var s float64
	if r.RequestsPerSecond > 0 {
		s = float64(t.Requests.Total()) / r.RequestsPerSecond
	}
	if r.BytesPerSecond > 0 {
		s = math.Max(s, float64(t.BytesRead+t.BytesWritten)/float64(r.BytesPerSecond))
	}
	return s
}

// FormatSeconds says a duration for people: "3d4h", "2h13m", "4m1s", "41s", "<1s",
// "0s" (whole seconds rounded up, then to the unit shown).
func FormatSeconds(sec float64) string {
	if sec > 0 && sec < 1 {
		return "<1s"
	}
	d := time.Duration(math.Ceil(sec)) * time.Second
	switch {
	case d >= 24*time.Hour:
		days := d / (24 * time.Hour)
		return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour+30*time.Minute)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, (d%time.Hour+30*time.Second)/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// estimate counts the estimate from the stored plan (one pass over the records).
func (m *Migration) estimate(ctx context.Context, res *PlanResult) (*Estimate, error) {
	e := m.newEstimator()
	e.planned(res)
	var stored int64
	err := m.State.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
		e.record(r)
		switch r.State {
		case checkpoints.Excluded, checkpoints.Rejected, checkpoints.Conflict:
		default:
			stored += r.Size
		}
		return nil
	})
	if err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}
	limits, err := m.Limits(ctx)
	if err != nil {
		return nil, err
	}
	byStore := map[string]StoreLimit{}
	for _, l := range limits {
		byStore[l.Store] = l
	}
	e.scheduled = map[string][]spec.Rate{}
	scheduled := func(name string, l spec.Limits) {
		if len(l.Schedule) == 0 {
			return
		}
		o := byStore[name].Override
		apply := func(r spec.Rate) spec.Rate {
			if o != nil && o.RequestsPerSecond != nil {
				r.RequestsPerSecond = *o.RequestsPerSecond
			}
			if o != nil && o.BytesPerSecond != nil {
				r.BytesPerSecond = *o.BytesPerSecond
			}
			return r
		}
		rates := []spec.Rate{apply(l.Rate)}
		for _, w := range l.Schedule {
			rates = append(rates, apply(w.Rate))
		}
		e.scheduled[name] = rates
	}
	for _, s := range m.Spec.Sources {
		scheduled(s.Name, s.Limits)
	}
	scheduled(spec.TargetName, m.Spec.Target.Limits)
	return e.finish(stored, byStore), nil
}
