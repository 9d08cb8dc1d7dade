package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

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

// planAsItStands fills res from the state, for a worker whose plan another worker merged.
func (m *Migration) planAsItStands(ctx context.Context, res *PlanResult) error {
	if err := m.countListed(ctx, res); err != nil {
		return err
	}
	var err error
	res.Digest, _, _ = m.State.Meta(ctx, "plan_digest")
	if res.Inventories, err = m.Inventories(ctx); err != nil {
		return err
	}
	if err := m.fillPlanCounts(ctx, res); err != nil {
		return err
	}
	if res.Stages, err = m.StageScopes(ctx, true); err != nil {
		return err
	}
	if res.Estimate, err = m.estimate(ctx, res); err != nil {
		return err
	}
	return heldError(res)
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

// listRange lists one claimed range into the staged listing, page by page, each page
// saved with the key it reached (fenced), so that a successor resumes there.
func (m *Migration) listRange(ctx context.Context, pr *run, c checkpoints.Claim) error {
	ctx = m.listContext(ctx)
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
		err := m.State.Checkpoint(ctx, c, cursor, nil, page)
		if err == nil {
			m.meterListed(c.Site, page)
		}
		pr.tick(int64(len(page)), 0)
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
		err = m.listFromInventory(ctx, inv, store, c.Contains, add)
	} else if ranged {
		err = rl.ListRange(ctx, after, c.Hi, add)
	}
	if (inv == nil || inv.Inventory == nil) && (!ranged || errors.Is(err, providers.ErrNotSupported)) {
		// The whole listing, keeping this range's keys (and no cursor: List has no order).
		ranged = false
		page, last = page[:0], ""
		err = store.List(ctx, func(o providers.Object) error {
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
	switch {
	case err == nil:
		m.debug("listed range", "claim", c.String())
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %w", ctx.Err(), err) // interrupted, or the range was lost
	default:
		return Errorf(ExitRuntime, "site %s: listing %s failed, plan not changed: %w", c.Site, fmt.Sprint(c.Range), err)
	}
}
