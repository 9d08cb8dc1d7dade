package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
)

// rangedStore offers the harness store's listing by range, counting the ranges listed and failing, when asked, the range
// that starts after failAfter once it has listed one object.
type rangedStore struct {
	nopClose
	rl        providers.RangeLister
	ranges    atomic.Int64
	failAfter *string
	failWith  error                                   // what the failing range returns (default: a reset connection)
	split     func([]string, error) ([]string, error) // rewrites SplitKeys' answer
}

func (s *rangedStore) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	cuts, err := s.rl.SplitKeys(ctx, parts)
	if s.split != nil {
		return s.split(cuts, err)
	}
	return cuts, err
}

func (s *rangedStore) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	s.ranges.Add(1)
	n := 0
	return s.rl.ListRange(ctx, after, through, func(o providers.Object) error {
		if n++; s.failAfter != nil && *s.failAfter == after && n == 2 {
			if s.failWith != nil {
				return s.failWith
			}
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
	dry := false
	rangedOpen := func(failAfter *string, tweak ...func(*rangedStore)) *Migration {
		opts := h.options(dry)
		opts.OpenStore = func(ctx context.Context, cfg providers.Config) (providers.Store, error) {
			f := h.faults[cfg.Name]
			rl, ok := h.raw[cfg.Name].(providers.RangeLister)
			if !ok {
				return nil, fmt.Errorf("%s cannot list by range", cfg.Name)
			}
			s := &rangedStore{nopClose: nopClose{f}, rl: rl, failAfter: failAfter}
			for _, t := range tweak {
				t(s)
			}
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
	// samePlan plans by ranges and wants the whole listing's digest.
	samePlan := func(what string) (*Migration, *PlanResult) {
		m := rangedOpen(nil)
		res, err := m.Plan(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.Digest != whole.Digest {
			t.Fatalf("%s: digest %s, by whole listings %s", what, res.Digest, whole.Digest)
		}
		return m, res
	}
	// A dry run lists by range too (a read), and writes nothing.
	dry = true
	m, _ := samePlan("dry-run plan by ranges")
	if n := stores["virginia"].ranges.Load(); n < 2 {
		t.Fatalf("dry-run plan listed %d range(s)", n)
	}
	if _, err := m.Sites["virginia"].Put(ctx, "u1/new", strings.NewReader("x"), 1, providers.PutOptions{}); !errors.Is(err, errDryRun) {
		t.Fatalf("a dry run's ranged store let a Put through: %v", err)
	}
	if _, ok := m.Sites["virginia"].(providers.ConditionalDeleter); ok {
		t.Fatal("a dry run's ranged store offers a conditional delete")
	}
	m.Close()
	dry = false
	m, ranged := samePlan("plan by ranges")
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
	m, _ = samePlan("plan after a failed listing")
	m.Close()

	// A store whose cuts fail or make no sense is listed whole; one that refuses
	// ranges after listing part of one fails the plan rather than mixing the two.
	for _, c := range []struct {
		name   string
		tweak  func(*rangedStore)
		failOK bool
	}{
		{"split fails", func(s *rangedStore) {
			s.split = func([]string, error) ([]string, error) { return nil, errors.New("503 Slow Down") }
		}, true},
		{"cuts out of order", func(s *rangedStore) {
			s.split = func(c []string, err error) ([]string, error) { return []string{"u9", "u1"}, err }
		}, true},
		{"empty cut", func(s *rangedStore) {
			s.split = func(c []string, err error) ([]string, error) { return append([]string{""}, c...), err }
		}, true},
		{"refused part way", func(s *rangedStore) {
			s.failAfter, s.failWith = &cuts[0], fmt.Errorf("no: %w", providers.ErrNotSupported)
		}, false},
	} {
		m := rangedOpen(nil, c.tweak)
		res, err := m.Plan(ctx)
		if c.failOK {
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if res.Digest != whole.Digest || stores["virginia"].ranges.Load() != 0 {
				t.Fatalf("%s: digest %s (want %s), %d ranges listed (want the whole listing)", c.name, res.Digest, whole.Digest, stores["virginia"].ranges.Load())
			}
		} else {
			mustCode(t, err, ExitRuntime)
			if after := inventory(m); after != before {
				t.Fatalf("%s: %d records after a failed listing, %d before", c.name, after, before)
			}
		}
		m.Close()
	}
}
