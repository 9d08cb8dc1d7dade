package metered

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/mem"
	"github.com/ferrymigrate/ferry/providers/providertest"
)

var n atomic.Int64

func fresh(t *testing.T) *mem.Store {
	name := fmt.Sprintf("metered-test-%d", n.Add(1))
	t.Cleanup(func() { mem.Reset(name) })
	return mem.New(name)
}

// recorder keeps every observation.
type recorder struct {
	mu  sync.Mutex
	obs []observation
}

type observation struct {
	store, op string
	d         time.Duration
	err       error
}

func (r *recorder) ObserveRequest(store, op string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, observation{store, op, d, err})
}

func (r *recorder) ops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, o := range r.obs {
		out = append(out, o.op)
	}
	return out
}

// The decorated store passes the conformance suite: timing changes nothing.
func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providers.Store { return Wrap(fresh(t), "site", &recorder{}) })
}

// Wrap's result implements exactly the optional capabilities of the inner store,
// unwraps to it, and has its features; the read-only capabilities (Regioner) stay
// reachable through providers.As.
func TestCapabilitiesPassedHonestly(t *testing.T) {
	for m := 0; m < 1<<5; m++ {
		if got := capsOf(withCaps(&Store{}, m)); got != m {
			t.Errorf("capability set %05b comes out as %05b", m, got)
		}
	}
	memStore := fresh(t)
	for _, c := range []struct {
		name  string
		inner providers.Store
	}{
		{"mem", memStore},
		{"bare", struct{ providers.Store }{memStore}},
		{"everything", everything{memStore}},
		{"deleter only", deleterOnly{struct{ providers.Store }{memStore}}},
	} {
		s := Wrap(c.inner, "site", &recorder{})
		if capsOf(s) != capsOf(c.inner) {
			t.Errorf("%s: capabilities %05b, the inner store has %05b", c.name, capsOf(s), capsOf(c.inner))
		}
		if u, ok := s.(interface{ Unwrap() providers.Store }); !ok || u.Unwrap() != c.inner {
			t.Errorf("%s: Unwrap does not return the inner store", c.name)
		}
		if providers.FeaturesOf(s) != providers.FeaturesOf(c.inner) {
			t.Errorf("%s: features %+v, the inner store's %+v", c.name, providers.FeaturesOf(s), providers.FeaturesOf(c.inner))
		}
		_, innerRegion := providers.As[providers.Regioner](c.inner)
		_, outerRegion := providers.As[providers.Regioner](s)
		if innerRegion != outerRegion {
			t.Errorf("%s: Regioner through As: %v, the inner store: %v", c.name, outerRegion, innerRegion)
		}
		if _, ok := s.(providers.Regioner); ok {
			t.Errorf("%s: the decorator itself claims Regioner", c.name)
		}
	}
	if capsOf(everything{memStore}) != 1<<5-1 {
		t.Fatal("the test store lacks a capability")
	}
	if capsOf(deleterOnly{struct{ providers.Store }{memStore}}) != 1 {
		t.Fatal("deleterOnly has more than ConditionalDeleter")
	}
}

// everything is a store with every optional capability.
type everything struct{ *mem.Store }

func (everything) OpenUnchecked(context.Context, string) (io.ReadCloser, providers.Object, error) {
	return io.NopCloser(strings.NewReader("")), providers.Object{}, nil
}
func (everything) Versioning(context.Context) (bool, error) { return true, nil }
func (everything) Versions(context.Context, string) ([]providers.Object, error) {
	return nil, nil
}

// deleterOnly has ConditionalDeleter and nothing else optional.
type deleterOnly struct{ providers.Store }

func (deleterOnly) DeleteIf(context.Context, string, providers.Object) error { return nil }

// Every request is reported once, under the store's name and its operation, with the
// error the store returned; capability calls reach the inner store.
func TestObservesEveryRequest(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	s := Wrap(everything{fresh(t)}, "virginia", rec)
	obj, err := s.Put(ctx, "a", strings.NewReader("hello"), 5, providers.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("stat of a missing key: %v", err)
	}
	rc, _, err := s.Open(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if err := s.List(ctx, func(providers.Object) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.(providers.RangeLister).ListRange(ctx, "", "", func(providers.Object) error { return nil }); err != nil {
		t.Fatal(err)
	}
	rc, _, _ = s.(providers.UncheckedOpener).OpenUnchecked(ctx, "a")
	rc.Close()
	if _, err := s.(providers.Versioner).Versioning(ctx); err != nil {
		t.Fatal(err)
	}
	sd := s.(providers.SoftDeleter)
	h, err := sd.SoftDelete(ctx, "a", obj)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := sd.SoftExists(ctx, "a", h); err != nil || !ok {
		t.Fatalf("soft exists: %v %v", ok, err)
	}
	if err := sd.Restore(ctx, "a", h); err != nil {
		t.Fatal(err)
	}
	obj, _ = s.Stat(ctx, "a")
	if err := s.(providers.ConditionalDeleter).DeleteIf(ctx, "a", obj); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a"); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("delete of a deleted key: %v", err)
	}
	want := []string{OpPut, OpStat, OpStat, OpOpen, OpList, OpListRange, OpOpenUnchecked, OpVersioning,
		OpSoftDelete, OpSoftExists, OpRestore, OpStat, OpDeleteIf, OpDelete}
	if got := rec.ops(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("observed %v\nwant     %v", got, want)
	}
	for i, o := range rec.obs {
		if o.store != "virginia" {
			t.Errorf("observation %d names store %q", i, o.store)
		}
		if o.d < 0 {
			t.Errorf("observation %d (%s) took %v", i, o.op, o.d)
		}
		wantErr := i == 2 || i == len(rec.obs)-1
		if (o.err != nil) != wantErr {
			t.Errorf("observation %d (%s): error %v", i, o.op, o.err)
		}
	}
	if !errors.Is(rec.obs[2].err, providers.ErrNotFound) {
		t.Errorf("the failed stat is reported with %v", rec.obs[2].err)
	}
}

// A listing's time leaves out the time the caller spent on each object.
func TestListingExcludesCallerTime(t *testing.T) {
	ctx := context.Background()
	inner := fresh(t)
	for _, k := range []string{"a", "b", "c"} {
		if _, err := inner.Put(ctx, k, strings.NewReader(k), 1, providers.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	// A clock that moves only while the caller's fn runs: the store itself takes no
	// time, so the listing must be reported as taking none.
	var clock time.Time
	ms := withCaps(&Store{inner: inner, name: "site", obs: rec, now: func() time.Time { return clock }}, capsOf(inner))
	err := ms.List(ctx, func(providers.Object) error {
		clock = clock.Add(time.Second)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.obs) != 1 || rec.obs[0].op != OpList || rec.obs[0].d != 0 {
		t.Fatalf("listing reported as %+v, want one list taking 0s (the 3s were the caller's)", rec.obs)
	}
}
