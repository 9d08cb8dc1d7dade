package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
)

// rangedStore offers the harness store's listing by range (the faulty decorator
// hides RangeLister), counting the ranges listed and failing, when asked, the range
// that starts after failAfter once it has listed one object.
type rangedStore struct {
	nopClose
	rl        providers.RangeLister
	ranges    atomic.Int64
	failAfter *string
}

func (s *rangedStore) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	return s.rl.SplitKeys(ctx, parts)
}

func (s *rangedStore) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	s.ranges.Add(1)
	n := 0
	return s.rl.ListRange(ctx, after, through, func(o providers.Object) error {
		if n++; s.failAfter != nil && *s.failAfter == after && n == 2 {
			return errors.New("connection reset by peer")
		}
		return fn(o)
	})
}

// Plan lists a site that can be listed by range in parts at once: the inventory is
// the same as from one whole listing, and one part that fails fails the plan and
// changes nothing (I6).
func TestPlanListsRangesAtOnce(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(40)
	ctx := context.Background()
	m0 := h.open()
	whole, err := m0.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m0.Close()

	stores := map[string]*rangedStore{}
	rangedOpen := func(failAfter *string) *Migration {
		opts := h.options(false)
		opts.OpenStore = func(ctx context.Context, cfg providers.Config) (providers.Store, error) {
			f := h.faults[cfg.Name]
			rl, ok := h.raw[cfg.Name].(providers.RangeLister)
			if !ok {
				return nil, fmt.Errorf("%s cannot list by range", cfg.Name)
			}
			s := &rangedStore{nopClose: nopClose{f}, rl: rl, failAfter: failAfter}
			stores[cfg.Name] = s
			return s, nil
		}
		m, err := Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	inventory := func(m *Migration) (n int) {
		if err := m.State.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
			n++
			for _, p := range r.Replicas {
				if p.State != checkpoints.Present {
					return fmt.Errorf("%s at %s is %s", r.Key, p.Site, p.State)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	m := rangedOpen(nil)
	ranged, err := m.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ranged.Digest != whole.Digest {
		t.Fatalf("plan by ranges has digest %s, by whole listings %s", ranged.Digest, whole.Digest)
	}
	for name, sl := range whole.Sites {
		if got := ranged.Sites[name]; got != sl {
			t.Errorf("site %s: by ranges %+v, whole %+v", name, got, sl)
		}
		if n := stores[name].ranges.Load(); n < 2 {
			t.Errorf("site %s was listed in %d range(s), want several at once", name, n)
		}
	}
	before := inventory(m)
	m.Close()

	// The second range of virginia fails after its first object.
	cuts, err := h.raw["virginia"].(providers.RangeLister).SplitKeys(ctx, listParts)
	if err != nil || len(cuts) == 0 {
		t.Fatalf("no cuts: %v", err)
	}
	m = rangedOpen(&cuts[0])
	_, err = m.Plan(ctx)
	mustCode(t, err, ExitRuntime)
	if after := inventory(m); after != before || before == 0 {
		t.Fatalf("%d records after a failed listing, %d before", after, before)
	}
	if stores["virginia"].ranges.Load() < 2 {
		t.Fatal("the failing plan did not list by range")
	}
	m.Close()
	again, err := rangedOpen(nil).Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != whole.Digest {
		t.Fatalf("after a failed listing the plan's digest is %s, want %s", again.Digest, whole.Digest)
	}
}
