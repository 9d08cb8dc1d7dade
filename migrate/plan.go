package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
)

var zeroTime time.Time

// SiteListing is what one site's listing found.
type SiteListing struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// ConflictInfo names one record in conflict.
type ConflictInfo struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// PlanResult is what `ferry plan` reports.
type PlanResult struct {
	Migration  string                 `json:"migration"`
	DryRun     bool                   `json:"dry_run"`
	Digest     string                 `json:"plan_digest"`
	SpecDigest string                 `json:"spec_digest"`
	Sites      map[string]SiteListing `json:"sites"`
	Records    map[string]int64       `json:"records"` // by state, after the plan
	Bytes      int64                  `json:"bytes"`   // of records to migrate
	New        int64                  `json:"new"`
	Changed    int64                  `json:"changed"`
	Vanished   int64                  `json:"vanished"`
	Conflicts  []ConflictInfo         `json:"conflicts,omitempty"` // the first 100
	Stages     []StageScope           `json:"stages"`
	// Failed and Rejected list records that are never copied nor deleted as they
	// stand (copy failures; records the plan refused), the first 100 of each.
	Failed   []ConflictInfo `json:"failed,omitempty"`
	Rejected []ConflictInfo `json:"rejected,omitempty"`
	// Inventories names, by site, the inventory read in place of a listing
	// (inventory.go); Missed counts, by site, the keys this plan's listing (or later
	// inventory) found that the inventory the previous plan read did not name.
	Inventories map[string]InventoryInfo `json:"inventories,omitempty"`
	Missed      map[string]MissedKeys    `json:"missed,omitempty"`
	// Estimate is what the listing cost and the work left will ask of every store,
	// cost (with price tables) and take (at the limits) (estimate.go).
	Estimate *Estimate `json:"estimate,omitempty"`
}

const listBatch = 1000

// Plan lists every site at once, reconciles the listings with the state and stores
// the inventory. A listing that fails fails the plan (I6); nothing is reconciled from
// a partial listing.
func (m *Migration) Plan(ctx context.Context) (*PlanResult, error) {
	res := &PlanResult{Migration: m.Spec.Migration, SpecDigest: m.Spec.Digest(), Sites: map[string]SiteListing{}, Records: map[string]int64{}}
	var out *PlanResult // the reconciled plan; nil for a worker that did not merge
	var verdict error   // held records (exit 3) are a verdict, not a stop
	reconciled := func(ctx context.Context, into **PlanResult) error {
		var err error
		*into, err = m.reconcilePlan(ctx, res)
		var code *Error
		if errors.As(err, &code) && code.Code == ExitIncomplete {
			verdict, err = err, nil
		}
		return err
	}
	// A worker's merge counts only once its range finished: one whose merge was
	// taken over reports the plan the other worker merged.
	var merged *PlanResult
	pr, err := m.runPhase(ctx, &phase{
		name: planScope, dryWork: true,
		check: func(ctx context.Context) (size, error) {
			if err := m.checkResidency(ctx); err != nil {
				return size{}, err
			}
			return size{}, m.checkStoreIdentities(ctx, "plan") // a site that is the target under another name (identity.go)
		},
		whole: func(ctx context.Context, pr *run) error {
			if err := m.State.ResetListing(ctx); err != nil {
				return Errorf(ExitRuntime, "%w", err)
			}
			if err := m.listSites(ctx, res); err != nil {
				return err
			}
			if err := m.refuseMarkers(); err != nil {
				return err
			}
			return reconciled(ctx, &out)
		},
		cut: m.cutListing,
		claimed: func(ctx context.Context, pr *run, c checkpoints.Claim) ([]checkpoints.Record, error) {
			if c.Site != "" {
				return nil, m.listRange(ctx, pr, c)
			}
			// The merge: once every listing range is done, the staged listing is
			// complete and this worker reconciles it exactly as a single process does.
			if st, err := m.State.Round(ctx, planScope, c.Round); err != nil {
				return nil, err
			} else if st.Open > 0 || st.Held > 1 {
				return nil, errNotYet
			}
			if err := m.countListed(ctx, res); err != nil {
				return nil, err
			}
			return nil, reconciled(ctx, &merged)
		},
		finished: func(_ *run, c checkpoints.Claim) {
			if c.Site == "" {
				out = merged
			}
		},
		end: func(ctx context.Context, _ *run) error {
			if out != nil {
				return verdict
			}
			// Another worker merged: report the plan as it stands.
			verdict = nil
			return m.planAsItStands(ctx, res)
		},
	})
	if out != nil {
		res = out
	}
	res.DryRun = pr.dry
	if err == nil {
		err = verdict
	}
	if err != nil && ExitCode(err) != ExitIncomplete {
		return nil, err // no plan to report: nothing was reconciled, or it failed
	}
	return res, err
}

// listContext lets a store leave out an entry it cannot list as an object (a symlink
// in a file tree) when records.exclude drops its key anyway.
func (m *Migration) listContext(ctx context.Context) context.Context {
	return providers.WithListSkip(ctx, func(key string) bool { return !m.Spec.Match(key) })
}

// listParts is how many ranges of one site plan lists at once, where the store can
// list by range (providers.RangeLister): a listing is a chain of page requests, and
// one chain leaves the server and ferry mostly waiting on each other.
const listParts = 4

// listSites lists every site at once into the state's staged listing; a site that
// can be listed by range is listed in listParts ranges at once.
func (m *Migration) listSites(ctx context.Context, res *PlanResult) error {
	ctx = m.listContext(ctx)
	tr := m.progress("list", 0, 0)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for _, site := range m.Spec.Sources {
		name := site.Name
		store := m.Sites[name]
		g.Go(func() error {
			var n, bytes atomic.Int64
			// each stages one part's listing a batch at a time.
			each := func(list func(fn func(providers.Object) error) error) error {
				var batch []checkpoints.Listed
				flush := func() error {
					if err := m.State.AddListed(gctx, batch); err != nil {
						return err
					}
					m.meterListed(name, batch)
					tr.Add(int64(len(batch)), 0)
					batch = batch[:0]
					return nil
				}
				err := list(func(o providers.Object) error {
					if m.skipMarker(name, o.Key) {
						return nil // ferry's marker objects are never records
					}
					n.Add(1)
					bytes.Add(o.Size)
					batch = append(batch, listed(name, o))
					if len(batch) >= listBatch {
						return flush()
					}
					return nil
				})
				if err == nil {
					err = flush()
				}
				return err
			}
			var err error
			if site.Inventory != nil {
				err = each(func(fn func(providers.Object) error) error { return m.listFromInventory(gctx, &site, store, nil, fn) })
			} else {
				err = listByRanges(gctx, m.caps(name).RangeLister, &n, each)
				if errors.Is(err, providers.ErrNotSupported) {
					err = each(func(fn func(providers.Object) error) error { return store.List(gctx, fn) })
				}
			}
			if err != nil {
				if ferr := m.stopFatal("plan", blame(name, err)); ferr != nil {
					return ferr
				}
				return Errorf(ExitRuntime, "site %s: listing failed, plan not changed: %w", name, err)
			}
			mu.Lock()
			res.Sites[name] = SiteListing{Objects: n.Load(), Bytes: bytes.Load()}
			mu.Unlock()
			m.log.Info("listed", "site", name, "objects", n.Load(), "bytes", bytes.Load())
			return nil
		})
	}
	err := g.Wait()
	tr.Finish()
	return err
}

// listByRanges lists store in listParts ranges at once, cut at its own first-level
// keys, through each. The ranges (-inf, k1], (k1, k2], ..., (kn, +inf) cover every key
// exactly once, and any range's failure fails the whole listing (I6). It returns
// ErrNotSupported, having listed nothing (n still 0), when the store cannot list by
// range (rl nil), has no cuts to offer or fails to cut; the caller then lists the
// store whole.
//
// rl is the store's resolved RangeLister (Migration.caps): the outermost decorator's,
// so that one that must see every listing (fault injection) is never looked through.
func listByRanges(ctx context.Context, rl providers.RangeLister, n *atomic.Int64, each func(func(func(providers.Object) error) error) error) error {
	if rl == nil {
		return providers.ErrNotSupported
	}
	cuts, err := rl.SplitKeys(ctx, listParts)
	if err != nil || len(cuts) == 0 || !ascending(cuts) {
		return providers.ErrNotSupported // the whole listing tells the real trouble, if any
	}
	g, gctx := errgroup.WithContext(ctx)
	bounds := append([]string{""}, cuts...)
	for i, after := range bounds {
		through := ""
		if i+1 < len(bounds) {
			through = bounds[i+1]
		}
		g.Go(func() error {
			return each(func(fn func(providers.Object) error) error { return rl.ListRange(gctx, after, through, fn) })
		})
	}
	err = g.Wait()
	if errors.Is(err, providers.ErrNotSupported) && n.Load() > 0 {
		// Some range listed objects before another refused: never mix the two ways.
		return fmt.Errorf("listing by range refused part way (%v)", err)
	}
	return err
}

// ascending reports whether cuts are non-empty keys in strictly ascending order, so
// that the ranges they bound are disjoint.
func ascending(cuts []string) bool {
	for i, c := range cuts {
		if c == "" || (i > 0 && cuts[i-1] >= c) {
			return false
		}
	}
	return true
}

func listed(site string, o providers.Object) checkpoints.Listed {
	return checkpoints.Listed{Site: site, Key: o.Key, SiteKey: o.Key, Size: o.Size, ETag: o.ETag,
		Version: o.Version, ModTime: o.ModTime, SHA256: o.Checksums.SHA256}
}

// reconcilePlan turns the staged listing into the stored inventory: records and their
// replicas, vanished replicas, the plan digest and the stages' scopes.
func (m *Migration) reconcilePlan(ctx context.Context, res *PlanResult) (*PlanResult, error) {
	// An empty listing of a site that still holds replicas in the state is far more
	// likely a wrong prefix or an outage than a site emptied by hand: refuse.
	st, err := m.State.Stats(ctx, m.now())
	if err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}
	for name, l := range res.Sites {
		var liveN int64
		for state, c := range st.ReplicasSite[name] {
			if live(state) {
				liveN += c.N
			}
		}
		if l.Objects == 0 && liveN > 0 {
			return nil, Refused("site %s listed no objects, but the state holds %d of its replicas: refusing to re-plan (check the URL and the site)", name, liveN)
		}
	}

	prevSources, err := m.planSources(ctx)
	if err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}
	sources, err := m.currentSources(ctx, res)
	if err != nil {
		return nil, err
	}
	missed := m.newMissedCounter(prevSources)

	// Reconcile in key order, hashing the inventory as it goes.
	dig := sha256.New()
	fmt.Fprintf(dig, "ferry-plan-v1\nspec %s\n", res.SpecDigest)
	batch := checkpoints.NewBatcher(m.State, 1000, time.Second)
	get := func(k string) (*checkpoints.Record, error) {
		r, ok, err := m.State.Get(ctx, k)
		if err != nil || !ok {
			return nil, err
		}
		return &r, nil
	}
	tr := m.progress("plan", 0, 0)
	prev := &recordCursor{store: m.State}
	err = m.State.Listed(ctx, func(key string, objs []checkpoints.Listed) error {
		for _, o := range objs {
			writeInventory(dig, o)
		}
		old, err := prev.find(ctx, key)
		if err != nil {
			return err
		}
		missed.observe(key, objs, old)
		recs, err := m.reconcile(key, objs, func(k string) (*checkpoints.Record, error) {
			if k == key {
				return old, nil
			}
			return get(k)
		})
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Key == key {
				if old == nil {
					res.New++
				} else if !sameReplicaVersions(old, &r) {
					res.Changed++
				} else if reflect.DeepEqual(*old, r) {
					continue // unchanged: nothing to write
				}
			}
			if err := batch.Add(ctx, r); err != nil {
				return err
			}
		}
		tr.Add(1, 0)
		return nil
	})
	if cerr := batch.Close(ctx); err == nil {
		err = cerr
	}
	tr.Finish()
	if err != nil {
		return nil, Errorf(ExitRuntime, "reconcile: %w", err)
	}

	// Replicas the listings no longer show: vanished without ferry deleting them.
	// A site planned from an inventory is left out: an inventory is a snapshot, and
	// a key it does not name may well have been written after it.
	var sites []string
	for _, s := range m.Spec.Sources {
		if s.Inventory == nil {
			sites = append(sites, s.Name)
		}
	}
	var vanished []checkpoints.Record
	err = m.State.Unlisted(ctx, sites, func(r checkpoints.Record, unlisted []string) error {
		for i := range r.Replicas {
			p := &r.Replicas[i]
			if live(p.State) && contains(unlisted, p.Site) {
				p.State = checkpoints.Missing
				p.LastError = "no longer listed at the site, and ferry did not delete it"
			}
		}
		if r.State == checkpoints.Planned || r.State == checkpoints.Conflict {
			m.evalConflict(&r)
		}
		vanished = append(vanished, r)
		return nil
	})
	if err == nil {
		res.Vanished = int64(len(vanished))
		err = m.State.Save(ctx, vanished)
	}
	if err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}

	res.Digest = hex.EncodeToString(dig.Sum(nil))
	now := m.now().UTC()
	for k, v := range map[string]string{"plan_digest": res.Digest, "spec_digest": res.SpecDigest, "planned_at": now.Format(time.RFC3339Nano)} {
		if err := m.State.SetMeta(ctx, k, v); err != nil {
			return nil, Errorf(ExitRuntime, "%w", err)
		}
	}
	if err := m.recordPlanContext(ctx); err != nil {
		return nil, err
	}
	if err := m.recordSources(ctx, sources); err != nil {
		return nil, err
	}
	res.Missed = missed.result()
	if err := m.roundUpSamples(ctx); err != nil {
		return nil, err
	}
	if err := m.fillPlanCounts(ctx, res); err != nil {
		return nil, err
	}
	if res.Stages, err = m.StageScopes(ctx, true); err != nil {
		return nil, err
	}
	if res.Estimate, err = m.estimate(ctx, res); err != nil {
		return nil, err
	}
	if err := heldError(res); err != nil {
		return res, err
	}
	return res, nil
}

// recordCursor finds the stored records for keys asked in increasing order, reading
// the state a page at a time (a merge join of the listing and the state) instead of
// one lookup per key.
type recordCursor struct {
	store checkpoints.Store
	page  []checkpoints.Record
	i     int
	after string
	done  bool
}

func (c *recordCursor) find(ctx context.Context, key string) (*checkpoints.Record, error) {
	for {
		for c.i < len(c.page) && c.page[c.i].Key < key {
			c.i++
		}
		if c.i < len(c.page) {
			if c.page[c.i].Key == key {
				r := c.page[c.i]
				return &r, nil
			}
			return nil, nil
		}
		if c.done {
			return nil, nil
		}
		c.page, c.i = c.page[:0], 0
		q := checkpoints.Query{After: c.after, Limit: 2048}
		err := c.store.Records(ctx, q, func(r checkpoints.Record) error {
			c.page = append(c.page, r)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(c.page) < q.Limit {
			c.done = true
		}
		if len(c.page) > 0 {
			c.after = c.page[len(c.page)-1].Key
		}
	}
}

func (m *Migration) fillPlanCounts(ctx context.Context, res *PlanResult) error {
	st, err := m.State.Stats(ctx, m.now())
	if err != nil {
		return Errorf(ExitRuntime, "%w", err)
	}
	for s, c := range st.Records {
		res.Records[string(s)] = c.N
		if s != checkpoints.Excluded && s != checkpoints.Conflict && s != checkpoints.Rejected {
			res.Bytes += c.Bytes
		}
	}
	if res.Failed, res.Rejected, err = m.listHeld(ctx); err != nil {
		return err
	}
	return m.State.Records(ctx, checkpoints.Query{States: []checkpoints.RecordState{checkpoints.Conflict}, Limit: 100}, func(r checkpoints.Record) error {
		res.Conflicts = append(res.Conflicts, ConflictInfo{Key: r.Key, Reason: r.Conflict})
		return nil
	})
}

func writeInventory(h hash.Hash, o checkpoints.Listed) {
	// Length-prefixed fields: no key can forge a line boundary.
	for _, f := range []string{o.Key, o.Site, strconv.FormatInt(o.Size, 10), o.ETag, o.Version, o.SHA256} {
		fmt.Fprintf(h, "%d:%s", len(f), f)
	}
	h.Write([]byte{'\n'})
}

func sameReplicaVersions(a, b *checkpoints.Record) bool {
	if len(a.Replicas) != len(b.Replicas) {
		return false
	}
	for i := range a.Replicas {
		if !replicaObject(a.Replicas[i]).SameVersion(replicaObject(b.Replicas[i])) {
			return false
		}
	}
	return true
}
