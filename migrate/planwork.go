package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
)

// A plan shared by many workers. The first worker of a plan round resets the staged
// listing and cuts every site into key ranges (from the previous inventory when there
// is one, else at the site's own first-level folders), plus one last range that
// stands for the merge. Workers list ranges into the staged listing, each page saved
// with the key it reached (fenced), so a range taken over resumes where its holder
// stopped. The worker holding the merge range waits until every listing range is done
// (listing any that lapse meanwhile), then reconciles exactly as a single process
// does. Every worker then reports the same plan digest.

const planScope = "plan"

// listRangeSize is how many keys of a site one listing range should hold.
func (m *Migration) listRangeSize() int { return m.rangeSize() * 16 }

func (m *Migration) planShared(ctx context.Context, res *PlanResult) (*PlanResult, error) {
	w := m.worker
	rs, err := m.State.Partition(ctx, planScope, true, func() ([]checkpoints.Range, error) { return m.cutListing(ctx) })
	if err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}
	var merge *checkpoints.Claim
	var mergeCtx context.Context
	var releaseMerge func()
	defer func() {
		if releaseMerge != nil {
			releaseMerge()
		}
	}()
	idle := time.Duration(0)
	for {
		c, ok, err := m.State.Claim(ctx, planScope, rs.Round, w.id, w.lease)
		if err != nil {
			return nil, Errorf(ExitRuntime, "%w", err)
		}
		if ok && c.Site == "" {
			merge = &c
			mergeCtx, releaseMerge = w.hold(ctx, c)
			continue
		}
		if ok {
			if err := m.listClaimed(ctx, c); err != nil {
				return nil, err
			}
			idle = 0
			continue
		}
		st, err := m.State.Round(ctx, planScope, rs.Round)
		if err != nil {
			return nil, Errorf(ExitRuntime, "%w", err)
		}
		if merge != nil && mergeCtx.Err() != nil && ctx.Err() == nil {
			m.log.Warn("the merge was taken over by another worker", "claim", merge.String())
			merge = nil
			releaseMerge()
			releaseMerge = nil
		}
		if merge != nil && st.Open == 0 && st.Held == 1 {
			// Every listing range is done: the staged listing is complete.
			if err := m.countListed(ctx, res); err != nil {
				return nil, err
			}
			out, perr := m.reconcilePlan(mergeCtx, res)
			var code *Error
			if perr != nil && !(errors.As(perr, &code) && code.Code == ExitIncomplete) {
				_ = m.State.Release(context.WithoutCancel(ctx), *merge)
				return out, perr
			}
			if err := m.State.Finish(ctx, *merge, nil); err != nil {
				return nil, Errorf(ExitRuntime, "the merge's result was rejected (another worker took it over and redoes it): %w", err)
			}
			return out, perr
		}
		if st.Finished() {
			break
		}
		idle = w.nextIdle(idle)
		if !sleep(ctx, idle) {
			return nil, phaseErr("plan", ctx.Err())
		}
	}
	// Another worker merged: report the plan as it stands.
	if err := m.countListed(ctx, res); err != nil {
		return nil, err
	}
	res.Digest, _, _ = m.State.Meta(ctx, "plan_digest")
	if res.Inventories, err = m.Inventories(ctx); err != nil {
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

// countListed fills res.Sites from the staged listing.
func (m *Migration) countListed(ctx context.Context, res *PlanResult) error {
	for _, s := range m.Spec.Sources {
		n, err := m.State.ListedCount(ctx, s.Name)
		if err != nil {
			return Errorf(ExitRuntime, "%w", err)
		}
		res.Sites[s.Name] = SiteListing{Objects: n}
	}
	return nil
}

// cutListing cuts every site into listing ranges and adds the merge range last.
func (m *Migration) cutListing(ctx context.Context) ([]checkpoints.Range, error) {
	var out []checkpoints.Range
	for _, s := range m.Spec.Sources {
		bounds, err := m.listBounds(ctx, s.Name)
		if err != nil {
			return nil, Errorf(ExitRuntime, "site %s: cutting the listing: %w", s.Name, err)
		}
		lo := ""
		for _, b := range bounds {
			out = append(out, checkpoints.Range{Site: s.Name, Lo: lo, Hi: b})
			lo = b
		}
		out = append(out, checkpoints.Range{Site: s.Name, Lo: lo})
	}
	m.log.Info("plan cut into listing ranges", "ranges", len(out))
	return append(out, checkpoints.Range{}), nil // the merge
}

// listBounds chooses where to cut a site's listing: every listRangeSize keys of the
// previous inventory, or, on a first plan, at the site's own first-level folders.
// A store that cannot list by range is listed whole, by one worker.
func (m *Migration) listBounds(ctx context.Context, site string) ([]string, error) {
	if s := m.siteSpec(site); s != nil && s.Inventory != nil {
		return nil, nil // an inventory is read whole, by one worker
	}
	rl := m.caps(site).RangeLister
	if rl == nil {
		return nil, nil
	}
	size := m.listRangeSize()
	var bounds []string
	n := 0
	err := m.State.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
		if p := r.Replica(site); p != nil {
			if n++; n%size == 0 {
				bounds = append(bounds, p.SiteKey)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		cuts, err := rl.SplitKeys(ctx, 16)
		if errors.Is(err, providers.ErrNotSupported) {
			return nil, nil // listed whole, by one worker
		}
		return cuts, err
	}
	sort.Strings(bounds)
	return slices.Compact(bounds), nil
}

// listClaimed lists one claimed range into the staged listing, page by page, each
// page saved with the key it reached (fenced), and finishes the range.
func (m *Migration) listClaimed(ctx context.Context, c checkpoints.Claim) error {
	w := m.worker
	cctx, release := w.hold(ctx, c)
	defer release()
	cctx = m.listContext(cctx)
	store := m.Sites[c.Site]
	if store == nil {
		return Errorf(ExitRuntime, "listing range %s names a site the spec does not have", c)
	}
	rl := m.caps(c.Site).RangeLister
	ranged := rl != nil
	after := c.Lo
	if ranged && c.Cursor != "" {
		after = c.Cursor // resume where the previous holder stopped
		m.log.Info("resuming a listing range", "claim", c.String(), "after", c.Cursor)
	}
	var page []checkpoints.Listed
	last := ""
	flush := func() error {
		if len(page) == 0 {
			return nil
		}
		cursor := ""
		if ranged {
			cursor = last
		}
		err := m.State.Checkpoint(cctx, c, cursor, nil, page)
		if err == nil {
			m.meterListed(c.Site, page)
		}
		w.records.Add(int64(len(page)))
		page = page[:0]
		return err
	}
	add := func(o providers.Object) error {
		if m.skipMarker(c.Site, o.Key) {
			return nil // ferry's marker objects are never records
		}
		page = append(page, listed(c.Site, o))
		last = o.Key
		if len(page) >= listBatch {
			return flush()
		}
		return nil
	}
	var err error
	inv := m.siteSpec(c.Site)
	if inv != nil && inv.Inventory != nil {
		ranged = false
		err = m.listFromInventory(cctx, inv, store, c.Contains, add)
	} else if ranged {
		err = rl.ListRange(cctx, after, c.Hi, add)
	}
	if (inv == nil || inv.Inventory == nil) && (!ranged || errors.Is(err, providers.ErrNotSupported)) {
		// The whole listing, keeping this range's keys (and no cursor: List has no order).
		ranged = false
		page, last = page[:0], ""
		err = store.List(cctx, func(o providers.Object) error {
			if !c.Contains(o.Key) {
				return nil
			}
			return add(o)
		})
	}
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = m.refuseMarkers() // before Finish: the range stays open, the plan unmerged
	}
	if err == nil {
		err = m.State.Finish(cctx, c, nil)
	}
	if err == nil {
		m.debug("listed range", "claim", c.String())
	}
	switch err := m.settleClaim(ctx, cctx, c, err); {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return phaseErr("plan", ctx.Err())
	default:
		return Errorf(ExitRuntime, "site %s: listing %s failed, plan not changed: %w", c.Site, fmt.Sprint(c.Range), err)
	}
}
