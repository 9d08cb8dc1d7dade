package providers_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/file"
	"github.com/ferrymigrate/ferry/providers/journaled"
	"github.com/ferrymigrate/ferry/providers/limit"
	"github.com/ferrymigrate/ferry/providers/mem"
	"github.com/ferrymigrate/ferry/providers/metered"
)

// bare has only the core Store methods (and no Features).
type bare struct{ providers.Store }

// One type per optional capability, each adding exactly that interface's methods.
type (
	conditional struct{}
	soft        struct{}
	ranges      struct{}
	unchecked   struct{}
	versions    struct{}
	region      struct{}
	recoverable struct{}
	retries     struct{}
	identity    struct{}
	principal   struct{}
	features    struct{}
)

func (conditional) DeleteIf(context.Context, string, providers.Object) error { return nil }

func (soft) SoftHandle(string, providers.Object) string { return "" }
func (soft) SoftDelete(context.Context, string, providers.Object) (string, error) {
	return "", nil
}
func (soft) Restore(context.Context, string, string) error            { return nil }
func (soft) Purge(context.Context, string, string) error              { return nil }
func (soft) SoftExists(context.Context, string, string) (bool, error) { return false, nil }

func (ranges) ListRange(context.Context, string, string, func(providers.Object) error) error {
	return nil
}
func (ranges) SplitKeys(context.Context, int) ([]string, error) { return nil, nil }

func (unchecked) OpenUnchecked(context.Context, string) (io.ReadCloser, providers.Object, error) {
	return nil, providers.Object{}, nil
}

func (versions) Versioning(context.Context) (bool, error)                     { return false, nil }
func (versions) Versions(context.Context, string) ([]providers.Object, error) { return nil, nil }

func (region) Region(context.Context) (string, error) { return "", nil }
func (recoverable) Recoverability(context.Context) (providers.Recoverability, error) {
	return providers.Recoverability{}, nil
}
func (retries) Retries() int64 { return 0 }
func (identity) Identity(context.Context) (providers.Identity, error) {
	return providers.Identity{}, nil
}
func (principal) Principal(context.Context) (string, error) { return "", nil }
func (features) Features() providers.Features {
	return providers.Features{DirMarkers: true, SnapshotReads: true}
}

var (
	_ providers.ConditionalDeleter = conditional{}
	_ providers.SoftDeleter        = soft{}
	_ providers.RangeLister        = ranges{}
	_ providers.UncheckedOpener    = unchecked{}
	_ providers.Versioner          = versions{}
	_ providers.Regioner           = region{}
	_ providers.Recoverer          = recoverable{}
	_ providers.Retrier            = retries{}
	_ providers.Identifier         = identity{}
	_ providers.Principal          = principal{}
	_ providers.Featurer           = features{}
)

// inners returns stores with every combination of the request-path capabilities
// (the ones decorators implement themselves), stores with and without each
// capability found through Unwrap, and the real mem and file stores.
func inners(t *testing.T) map[string]providers.Store {
	b := bare{mem.New(fmt.Sprintf("caps-%s", t.Name()))}
	t.Cleanup(func() { mem.Reset(fmt.Sprintf("caps-%s", t.Name())) })
	combos := []providers.Store{
		struct{ bare }{bare: b},
		struct {
			bare
			conditional
		}{bare: b},
		struct {
			bare
			soft
		}{bare: b},
		struct {
			bare
			conditional
			soft
		}{bare: b},
		struct {
			bare
			ranges
		}{bare: b},
		struct {
			bare
			conditional
			ranges
		}{bare: b},
		struct {
			bare
			soft
			ranges
		}{bare: b},
		struct {
			bare
			conditional
			soft
			ranges
		}{bare: b},
		struct {
			bare
			unchecked
		}{bare: b},
		struct {
			bare
			conditional
			unchecked
		}{bare: b},
		struct {
			bare
			soft
			unchecked
		}{bare: b},
		struct {
			bare
			conditional
			soft
			unchecked
		}{bare: b},
		struct {
			bare
			ranges
			unchecked
		}{bare: b},
		struct {
			bare
			conditional
			ranges
			unchecked
		}{bare: b},
		struct {
			bare
			soft
			ranges
			unchecked
		}{bare: b},
		struct {
			bare
			conditional
			soft
			ranges
			unchecked
		}{bare: b},
		struct {
			bare
			versions
		}{bare: b},
		struct {
			bare
			conditional
			versions
		}{bare: b},
		struct {
			bare
			soft
			versions
		}{bare: b},
		struct {
			bare
			conditional
			soft
			versions
		}{bare: b},
		struct {
			bare
			ranges
			versions
		}{bare: b},
		struct {
			bare
			conditional
			ranges
			versions
		}{bare: b},
		struct {
			bare
			soft
			ranges
			versions
		}{bare: b},
		struct {
			bare
			conditional
			soft
			ranges
			versions
		}{bare: b},
		struct {
			bare
			unchecked
			versions
		}{bare: b},
		struct {
			bare
			conditional
			unchecked
			versions
		}{bare: b},
		struct {
			bare
			soft
			unchecked
			versions
		}{bare: b},
		struct {
			bare
			conditional
			soft
			unchecked
			versions
		}{bare: b},
		struct {
			bare
			ranges
			unchecked
			versions
		}{bare: b},
		struct {
			bare
			conditional
			ranges
			unchecked
			versions
		}{bare: b},
		struct {
			bare
			soft
			ranges
			unchecked
			versions
		}{bare: b},
		struct {
			bare
			conditional
			soft
			ranges
			unchecked
			versions
		}{bare: b},
	}
	out := map[string]providers.Store{}
	for _, s := range combos {
		out[fmt.Sprintf("%T", s)] = s
	}
	out["self-described"] = struct {
		bare
		region
		recoverable
		retries
		identity
		principal
		features
	}{bare: b}
	out["everything"] = struct {
		bare
		conditional
		soft
		ranges
		unchecked
		versions
		region
		recoverable
		retries
		identity
		principal
		features
	}{bare: b}
	out["mem"] = mem.New(fmt.Sprintf("caps-%s", t.Name()), mem.WithRegion("r1"))
	fs, err := file.New(t.TempDir(), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out["file"] = fs
	return out
}

type nopObserver struct{}

func (nopObserver) ObserveRequest(string, string, time.Duration, error) {}

type nopRecorder struct{}

func (nopRecorder) Record(journaled.Event) {}

// decorators are every providers decorator, each as a function of the store it wraps.
var decorators = map[string]func(providers.Store) providers.Store{
	"limit": func(s providers.Store) providers.Store {
		return limit.Wrap(s, limit.NewLimiter(nil), limit.Options{})
	},
	"metered":   func(s providers.Store) providers.Store { return metered.Wrap(s, "site", nopObserver{}) },
	"journaled": func(s providers.Store) providers.Store { return journaled.Wrap(s, nopRecorder{}) },
	"faulty":    func(s providers.Store) providers.Store { return faulty.Wrap(s) },
}

// Every decorator, over every inner store, has exactly the inner store's capabilities
// and features: it neither invents a capability nor hides one, whether asked through
// the resolved Caps or by a type assertion on the decorated store itself. Decorators
// are stacked too, as migrate stacks them.
func TestDecoratorsPassCapabilitiesHonestly(t *testing.T) {
	for name, inner := range inners(t) {
		want := providers.CapsOf(inner)
		for dname, wrap := range decorators {
			d := wrap(inner)
			got := providers.CapsOf(d)
			if got.Has() != want.Has() {
				t.Errorf("%s over %s: capabilities %v, want %v", dname, name, got.Has(), want.Has())
			}
			if got.Features != want.Features {
				t.Errorf("%s over %s: features %+v, want %+v", dname, name, got.Features, want.Features)
			}
			if a, b := asserted(d), asserted(inner); a != b {
				t.Errorf("%s over %s: type assertions find %v, on the inner store %v", dname, name, a, b)
			}
		}
		stacked := inner
		for _, dname := range []string{"metered", "journaled", "limit", "faulty"} {
			stacked = decorators[dname](stacked)
		}
		if got := providers.CapsOf(stacked); got.Has() != want.Has() || got.Features != want.Features {
			t.Errorf("stacked decorators over %s: %v %+v, want %v %+v", name, got.Has(), got.Features, want.Has(), want.Features)
		}
	}
}

// A write capability in Caps is the outermost decorator's, never the inner store's:
// a decorator that must see every write is not bypassed.
func TestCapsWritesThroughOutermost(t *testing.T) {
	m := mem.New("caps-outermost")
	t.Cleanup(func() { mem.Reset("caps-outermost") })
	f := faulty.Wrap(m)
	c := providers.CapsOf(limit.Wrap(f, limit.NewLimiter(nil), limit.Options{}))
	o, err := f.Put(t.Context(), "k", strings.NewReader("v"), 1, providers.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConditionalDeleter.DeleteIf(t.Context(), "k", o); err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(faulty.DeleteIf); n != 1 {
		t.Errorf("DeleteIf through Caps reached the fault decorator %d times, want 1", n)
	}
	if c.Regioner == nil || c.Versioner == nil || c.RangeLister == nil {
		t.Errorf("Caps lost capabilities of the inner store: %v", c.Has())
	}
}

func TestCapsMask(t *testing.T) {
	c := providers.CapsOf(mem.New("caps-mask"))
	t.Cleanup(func() { mem.Reset("caps-mask") })
	got := c.Mask(^providers.CapWrites)
	if got.ConditionalDeleter != nil || got.SoftDeleter != nil {
		t.Error("Mask kept a write capability")
	}
	if want := c.Has() &^ providers.CapWrites; got.Has() != want {
		t.Errorf("Mask(^CapWrites) = %v, want %v", got.Has(), want)
	}
	if got.Features != c.Features {
		t.Error("Mask changed the declared features")
	}
	if s := (providers.CapConditionalDelete | providers.CapVersions).String(); s != "ConditionalDeleter|Versioner" {
		t.Errorf("String = %q", s)
	}
	if s := providers.CapAll.String(); s != "ConditionalDeleter|SoftDeleter|RangeLister|UncheckedOpener|Versioner|Regioner|Recoverer|Retrier|Identifier|Principal" {
		t.Errorf("CapAll = %q", s)
	}
}

// asserted is the capability set found by plain type assertions on s itself,
// without Caps or Unwrap (for the capabilities decorators implement themselves).
func asserted(s providers.Store) providers.Cap {
	var c providers.Cap
	if _, ok := s.(providers.ConditionalDeleter); ok {
		c |= providers.CapConditionalDelete
	}
	if _, ok := s.(providers.SoftDeleter); ok {
		c |= providers.CapSoftDelete
	}
	if _, ok := s.(providers.RangeLister); ok {
		c |= providers.CapRangeList
	}
	if _, ok := s.(providers.UncheckedOpener); ok {
		c |= providers.CapUncheckedOpen
	}
	if _, ok := s.(providers.Versioner); ok {
		c |= providers.CapVersions
	}
	return c
}
