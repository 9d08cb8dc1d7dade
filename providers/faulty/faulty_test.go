package faulty_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/fault"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/mem"
	"github.com/ferrymigrate/ferry/providers/providertest"
)

var n atomic.Int64

func newMem(t *testing.T) *mem.Store {
	name := fmt.Sprintf("faulty-%d", n.Add(1))
	t.Cleanup(func() { mem.Reset(name) })
	return mem.New(name, mem.WithRegion("us-phoenix-1"))
}

func put(t *testing.T, s providers.Store, key, data string) providers.Object {
	t.Helper()
	o, err := s.Put(t.Context(), key, strings.NewReader(data), int64(len(data)), providers.PutOptions{})
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return o
}

func count(t *testing.T, s providers.Store) (int, error) {
	t.Helper()
	n := 0
	err := s.List(t.Context(), func(providers.Object) error { n++; return nil })
	return n, err
}

// With no faults configured the decorator is transparent: it passes the suite.
func TestConformanceWithoutFaults(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providers.Store { return faulty.Wrap(newMem(t)) })
}

var errBoom = errors.New("boom")

func TestFailNth(t *testing.T) {
	f := faulty.Wrap(newMem(t)).FailNth(faulty.Put, 2, errBoom)
	put(t, f, "a", "1")
	if _, err := f.Put(t.Context(), "b", strings.NewReader("2"), 1, providers.PutOptions{}); !errors.Is(err, errBoom) {
		t.Errorf("2nd Put: %v, want boom", err)
	}
	put(t, f, "c", "3")
	if _, err := f.Unwrap().Stat(t.Context(), "b"); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("failed Put reached the inner store: %v", err)
	}
	if got := f.Calls(faulty.Put); got != 3 {
		t.Errorf("Calls(Put) = %d, want 3", got)
	}
}

func TestFailKeyAndTimes(t *testing.T) {
	f := faulty.Wrap(newMem(t))
	put(t, f, "bad", "x")
	put(t, f, "good", "y")
	f.FailKey(faulty.Stat, "bad", providers.ErrPermission)
	for range 3 {
		if _, err := f.Stat(t.Context(), "bad"); !errors.Is(err, providers.ErrPermission) {
			t.Errorf("Stat(bad): %v", err)
		}
	}
	if _, err := f.Stat(t.Context(), "good"); err != nil {
		t.Errorf("Stat(good): %v", err)
	}

	f.Clear()
	f.AddRule(faulty.Rule{Method: faulty.Open, When: fault.When{Times: 2}, Effect: fault.Effect{Err: errBoom}})
	for i := 1; i <= 3; i++ {
		rc, _, err := f.Open(t.Context(), "good")
		if i <= 2 && !errors.Is(err, errBoom) {
			t.Errorf("Open #%d: %v, want boom", i, err)
		}
		if i == 3 {
			if err != nil {
				t.Errorf("Open #3 after a transient fault: %v", err)
			} else {
				rc.Close()
			}
		}
	}
}

func TestFailAfterTakesEffect(t *testing.T) {
	f := faulty.Wrap(newMem(t))
	o := put(t, f, "k", "v")
	f.AddRule(faulty.Rule{Method: faulty.DeleteIf, Effect: fault.Effect{Err: errBoom, Lost: true}})
	if err := f.(providers.ConditionalDeleter).DeleteIf(t.Context(), "k", o); !errors.Is(err, errBoom) {
		t.Fatalf("DeleteIf: %v, want boom", err)
	}
	// The delete happened even though the caller was told it failed.
	if _, err := f.Stat(t.Context(), "k"); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Stat after a lost response: %v, want ErrNotFound", err)
	}
}

func TestCorruptOpen(t *testing.T) {
	f := faulty.Wrap(newMem(t))
	o := put(t, f, "k", "hello")
	put(t, f, "empty", "")
	put(t, f, "other", "fine")
	f.CorruptOpen("k").CorruptOpen("empty")
	for key, orig := range map[string]string{"k": "hello", "empty": ""} {
		rc, got, err := f.Open(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) == orig {
			t.Errorf("Open(%q) returned the true bytes", key)
		}
		if key == "k" && (len(b) != len(orig) || !got.SameVersion(o)) {
			t.Errorf("corrupt Open(k): %q described %+v; want same length and description", b, got)
		}
	}
	rc, _, _ := f.Open(t.Context(), "other")
	if b, _ := io.ReadAll(rc); string(b) != "fine" {
		t.Errorf("uncorrupted key read %q", b)
	}
	if f.Corrupted() != 2 {
		t.Errorf("Corrupted() = %d, want 2", f.Corrupted())
	}
}

func TestTruncatedListingLies(t *testing.T) {
	f := faulty.Wrap(newMem(t))
	for i := range 10 {
		put(t, f, fmt.Sprint(i), "x")
	}
	f.TruncateList(4)
	got, err := count(t, f)
	if err != nil || got != 4 {
		t.Errorf("truncated List = %d objects, %v; want 4 and a lying nil", got, err)
	}
	f.FailListAfter(3, errBoom)
	got, err = count(t, f)
	if !errors.Is(err, errBoom) || got != 3 {
		t.Errorf("failing List = %d objects, %v; want 3 and boom", got, err)
	}
	f.Clear()
	if got, err := count(t, f); err != nil || got != 10 {
		t.Errorf("List after Clear = %d, %v", got, err)
	}
}

func TestBeforeHookMutatesInner(t *testing.T) {
	inner := newMem(t)
	f := faulty.Wrap(inner)
	o := put(t, f, "k", "v1")
	var seen []faulty.Call
	f.Before(func(ctx context.Context, c faulty.Call) error {
		seen = append(seen, c)
		if c.Method == faulty.DeleteIf {
			// Someone rewrites the object between our check and our delete.
			_, err := inner.Put(ctx, c.Key, strings.NewReader("v2"), 2, providers.PutOptions{})
			return err
		}
		return nil
	})
	if err := f.(providers.ConditionalDeleter).DeleteIf(t.Context(), "k", o); !errors.Is(err, providers.ErrPrecondition) {
		t.Errorf("DeleteIf after a concurrent rewrite: %v, want ErrPrecondition", err)
	}
	if len(seen) != 1 || seen[0] != (faulty.Call{Method: faulty.DeleteIf, Key: "k", N: 1}) {
		t.Errorf("hook saw %+v", seen)
	}
	f.Before(func(context.Context, faulty.Call) error { return errBoom })
	if _, err := f.Stat(t.Context(), "k"); !errors.Is(err, errBoom) {
		t.Errorf("hook error not returned: %v", err)
	}
}

// bare implements only providers.Store.
type bare struct{ providers.Store }

func TestCapabilities(t *testing.T) {
	ctx := t.Context()
	m := newMem(t)
	f := faulty.Wrap(m)
	if f.Unwrap() != providers.Store(m) {
		t.Error("Unwrap does not return the inner store")
	}
	if got := providers.FeaturesOf(f); got != m.Features() {
		t.Errorf("Features = %+v, want the inner store's %+v", got, m.Features())
	}
	if got, want := providers.CapsOf(f).Has(), providers.CapsOf(m).Has(); got != want {
		t.Errorf("capabilities %v, want the inner store's %v", got, want)
	}
	// Region is not decorated: it is found through Unwrap.
	if rg, ok := providers.As[providers.Regioner](f); !ok {
		t.Error("Region not found through the decorator")
	} else if r, err := rg.Region(ctx); err != nil || r != "us-phoenix-1" {
		t.Errorf("Region = %q, %v", r, err)
	}
	o := put(t, f, "k", "v")
	sd := f.(providers.SoftDeleter)
	if h := sd.SoftHandle("k", o); h != m.SoftHandle("k", o) {
		t.Errorf("SoftHandle = %q, inner says %q", h, m.SoftHandle("k", o))
	}
	h, err := sd.SoftDelete(ctx, "k", o)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := m.SoftExists(ctx, "k", h); !ok || err != nil {
		t.Errorf("SoftDelete did not reach the inner store: %v, %v", ok, err)
	}
	f.FailNth(faulty.Restore, 1, errBoom)
	if err := sd.Restore(ctx, "k", h); !errors.Is(err, errBoom) {
		t.Errorf("Restore: %v, want boom", err)
	}

	// Over a store without the capabilities, the decorator has none either: it
	// invents nothing.
	b := faulty.Wrap(bare{m})
	if got := providers.CapsOf(b).Has(); got != 0 {
		t.Errorf("capabilities over a bare store: %v, want none", got)
	}
	if _, ok := providers.Store(b).(providers.ConditionalDeleter); ok {
		t.Error("the decorator over a bare store claims ConditionalDeleter")
	}
	if _, ok := providers.Store(b).(providers.SoftDeleter); ok {
		t.Error("the decorator over a bare store claims SoftDeleter")
	}
	if got := providers.FeaturesOf(b); got != (providers.Features{}) {
		t.Errorf("Features over a bare store = %+v, want none", got)
	}
	if ok, _ := m.SoftExists(ctx, "k", h); !ok {
		t.Error("a call over the bare store reached the inner store")
	}
}

// The engine's fields mean for a Store what they mean for the HTTP tools: Drop
// fails before the call, Lost after it, Skip and Match narrow the calls.
func TestEngineFields(t *testing.T) {
	f := faulty.Wrap(newMem(t))
	f.AddRule(faulty.Rule{Method: faulty.Put, When: fault.When{Skip: 1, Times: 1}, Effect: fault.Effect{Drop: true}})
	put(t, f, "a", "1") // skipped
	if _, err := f.Put(t.Context(), "b", strings.NewReader("2"), 1, providers.PutOptions{}); !errors.Is(err, fault.ErrDropped) {
		t.Errorf("2nd Put: %v, want ErrDropped", err)
	}
	if _, err := f.Unwrap().Stat(t.Context(), "b"); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("dropped Put reached the inner store: %v", err)
	}
	put(t, f, "c", "3") // Times spent

	f.Clear()
	f.AddRule(faulty.Rule{Method: faulty.Put, Match: func(c faulty.Call) bool { return strings.HasPrefix(c.Key, "lost/") },
		Effect: fault.Effect{Lost: true}})
	put(t, f, "kept", "x")
	if _, err := f.Put(t.Context(), "lost/k", strings.NewReader("y"), 1, providers.PutOptions{}); !errors.Is(err, fault.ErrLost) {
		t.Errorf("Put(lost/k): %v, want ErrLost", err)
	}
	if _, err := f.Unwrap().Stat(t.Context(), "lost/k"); err != nil {
		t.Errorf("a lost Put did not take effect: %v", err)
	}

	// Fraction draws from the Store's seeded source: the same seed fails the same calls.
	pattern := func() string {
		g := faulty.Wrap(newMem(t)).Seed(9)
		g.AddRule(faulty.Rule{Method: faulty.Stat, When: fault.When{Fraction: 0.5}, Effect: fault.Effect{Err: errBoom}})
		var b strings.Builder
		for range 64 {
			if _, err := g.Stat(t.Context(), "x"); errors.Is(err, errBoom) {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	p1, p2 := pattern(), pattern()
	if p1 != p2 || !strings.Contains(p1, "x") || !strings.Contains(p1, ".") {
		t.Errorf("Fraction 0.5 with one seed: %s then %s", p1, p2)
	}

	defer func() {
		if recover() == nil {
			t.Error("AddRule accepted an HTTP status, which a Store cannot honour")
		}
	}()
	f.AddRule(faulty.Rule{Effect: fault.Effect{Status: 503}})
}

// Ranges pass through with the rules; a listing cut refuses them so that the cut
// applies to the whole listing the caller makes instead.
func TestListRange(t *testing.T) {
	ctx := t.Context()
	f := faulty.Wrap(newMem(t))
	for _, k := range []string{"a/1", "a/2", "b/1", "c/1"} {
		put(t, f, k, "x")
	}
	rl, ok := f.(providers.RangeLister)
	if !ok {
		t.Fatal("the decorator hides the inner store's RangeLister")
	}
	var got []string
	if err := rl.ListRange(ctx, "a/2", "c/1", func(o providers.Object) error { got = append(got, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[b/1 c/1]" {
		t.Errorf("ListRange(a/2, c/1] = %v", got)
	}
	f.FailNth(faulty.ListRange, 1, errBoom)
	if err := rl.ListRange(ctx, "", "", func(providers.Object) error { return nil }); !errors.Is(err, errBoom) {
		t.Errorf("failing ListRange: %v, want boom", err)
	}
	if n := f.Calls(faulty.ListRange); n != 2 {
		t.Errorf("Calls(ListRange) = %d, want 2", n)
	}
	f.Clear()
	f.RefuseRanges()
	if _, err := rl.SplitKeys(ctx, 4); !errors.Is(err, providers.ErrNotSupported) {
		t.Errorf("SplitKeys after RefuseRanges: %v, want ErrNotSupported", err)
	}
	f.Clear()
	if _, err := rl.SplitKeys(ctx, 4); err != nil {
		t.Errorf("SplitKeys after Clear: %v", err)
	}
	f.TruncateList(1)
	if _, err := rl.SplitKeys(ctx, 4); !errors.Is(err, providers.ErrNotSupported) {
		t.Errorf("SplitKeys with a listing cut: %v, want ErrNotSupported", err)
	}
	if err := rl.ListRange(ctx, "", "", func(providers.Object) error { t.Error("listed under a cut"); return nil }); !errors.Is(err, providers.ErrNotSupported) {
		t.Errorf("ListRange with a listing cut: %v, want ErrNotSupported", err)
	}
}
