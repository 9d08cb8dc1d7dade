package limit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/mem"
	"github.com/ferrymigrate/ferry/providers/providertest"
)

// fakeClock advances only when someone sleeps: the time a sequence of calls took
// under a cap is exact, whatever the machine's load.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	slept time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.slept += d
	return nil
}

func (c *fakeClock) elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept
}

var n atomic.Int64

func fresh(t *testing.T) *mem.Store {
	name := fmt.Sprintf("limit-test-%d", n.Add(1))
	t.Cleanup(func() { mem.Reset(name) })
	return mem.New(name)
}

// within fails unless got is within 1 % of want.
func within(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if math.Abs(float64(got-want)) > 0.01*float64(want) {
		t.Errorf("%s took %v, want %v", what, got, want)
	}
}

// The decorated store passes the conformance suite, capped and uncapped.
func TestConformance(t *testing.T) {
	t.Run("unlimited", func(t *testing.T) {
		providertest.Run(t, func(t *testing.T) providers.Store { return Wrap(fresh(t), NewLimiter(nil), Options{}) })
	})
	t.Run("capped", func(t *testing.T) {
		providertest.Run(t, func(t *testing.T) providers.Store {
			lim := NewLimiter(newFakeClock())
			lim.Set(Rate{RequestsPerSecond: 50, BytesPerSecond: 1 << 20})
			return Wrap(fresh(t), lim, Options{PartSize: 5 << 20})
		})
	})
}

func TestRequestsPerSecond(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	lim := NewLimiter(clock)
	lim.Set(Rate{RequestsPerSecond: 10})
	inner := fresh(t)
	s := Wrap(inner, lim, Options{})
	if _, err := inner.Put(ctx, "k", strings.NewReader("x"), 1, providers.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := s.Stat(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	// A cap that comes into force starts with an empty bucket: 100 requests at 10/s
	// take ten seconds.
	within(t, "100 requests at 10 req/s", clock.elapsed(), 10*time.Second)
	st := lim.Stats()
	within(t, "the wait reported", st.WaitedRequests, 10*time.Second)
	within(t, "the time held back", st.Throttled, 10*time.Second)
	if st.WaitedBytes != 0 || st.Waiting != 0 {
		t.Errorf("stats %+v", st)
	}

	// A changed cap holds from the next request on.
	lim.Set(Rate{RequestsPerSecond: 40})
	before := clock.elapsed()
	for range 100 {
		if _, err := s.Stat(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	within(t, "100 requests at 40 req/s", clock.elapsed()-before, 2500*time.Millisecond)

	// Unlimited: no waiting at all.
	lim.Set(Rate{})
	before = clock.elapsed()
	for range 1000 {
		if _, err := s.Stat(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if d := clock.elapsed() - before; d != 0 {
		t.Errorf("unlimited requests waited %v", d)
	}
}

func TestBytesPerSecond(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	lim := NewLimiter(clock)
	s := Wrap(fresh(t), lim, Options{})
	data := providertest.Bytes(1, 1<<20)
	if _, err := s.Put(ctx, "k", bytes.NewReader(data), int64(len(data)), providers.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if clock.elapsed() != 0 {
		t.Fatalf("an unlimited put waited %v", clock.elapsed())
	}
	lim.Set(Rate{BytesPerSecond: 256 << 10})
	// Written: 1 MiB at 256 KiB/s is four seconds.
	if _, err := s.Put(ctx, "k2", bytes.NewReader(data), int64(len(data)), providers.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, "writing 1 MiB at 256 KiB/s", clock.elapsed(), 4*time.Second)
	// Read: the same, and the bytes are the bytes.
	before := clock.elapsed()
	rc, _, err := s.Open(ctx, "k2")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	within(t, "reading 1 MiB at 256 KiB/s", clock.elapsed()-before, 4*time.Second)
	within(t, "the wait reported", lim.Stats().WaitedBytes, 8*time.Second)
}

// What counts as a request: a page of a listing, each part of a multipart upload.
func TestRequestAccounting(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	lim := NewLimiter(clock)
	inner := fresh(t)
	for i := range 2500 {
		if _, err := inner.Put(ctx, fmt.Sprintf("k%05d", i), strings.NewReader(""), 0, providers.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s := Wrap(inner, lim, Options{PartSize: 1 << 20})
	lim.Set(Rate{RequestsPerSecond: 1})
	n := 0
	if err := s.List(ctx, func(providers.Object) error { n++; return nil }); err != nil || n != 2500 {
		t.Fatalf("listed %d, %v", n, err)
	}
	within(t, "a listing of three pages at 1 req/s", clock.elapsed(), 3*time.Second)
	before := clock.elapsed()
	data := providertest.Bytes(2, 3<<20+1)
	if _, err := s.Put(ctx, "big", bytes.NewReader(data), int64(len(data)), providers.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// Four parts, plus create and complete.
	within(t, "a four-part upload at 1 req/s", clock.elapsed()-before, 6*time.Second)
}

// Wrap's result has exactly the inner store's optional capabilities.
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
	} {
		s := Wrap(c.inner, NewLimiter(nil), Options{})
		if capsOf(s) != capsOf(c.inner) {
			t.Errorf("%s: capabilities %05b, the inner store has %05b", c.name, capsOf(s), capsOf(c.inner))
		}
		if u, ok := s.(interface{ Unwrap() providers.Store }); !ok || u.Unwrap() != c.inner {
			t.Errorf("%s: Unwrap does not return the inner store", c.name)
		}
		if _, ok := LimiterOf(s); !ok {
			t.Errorf("%s: LimiterOf finds no limiter", c.name)
		}
		if providers.FeaturesOf(s) != providers.FeaturesOf(c.inner) {
			t.Errorf("%s: features %+v, the inner store's %+v", c.name, providers.FeaturesOf(s), providers.FeaturesOf(c.inner))
		}
	}
	if capsOf(everything{memStore}) != 1<<5-1 {
		t.Fatal("the test store lacks a capability")
	}
}

// everything is a store with every optional capability.
type everything struct{ *mem.Store }

func (everything) OpenUnchecked(context.Context, string) (io.ReadCloser, providers.Object, error) {
	return nil, providers.Object{}, providers.ErrNotSupported
}
func (everything) Versioning(context.Context) (bool, error) { return false, nil }
func (everything) Versions(context.Context, string) ([]providers.Object, error) {
	return nil, nil
}

// A body keeps io.Seeker and io.ReaderAt exactly when the caller's had them, and
// bytes read through ReadAt are charged too.
func TestPutBodyKeepsInterfaces(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	lim := NewLimiter(clock)
	lim.Set(Rate{BytesPerSecond: 64 << 10})
	rec := &bodyRecorder{Store: fresh(t)}
	s := Wrap(rec, lim, Options{})
	data := providertest.Bytes(3, 128<<10)
	for _, c := range []struct {
		name         string
		r            io.Reader
		seek, readAt bool
	}{
		{"bytes.Reader", bytes.NewReader(data), true, true},
		{"plain", struct{ io.Reader }{bytes.NewReader(data)}, false, false},
		{"seeker", struct{ io.ReadSeeker }{bytes.NewReader(data)}, true, false},
		{"readerAt", struct {
			io.Reader
			io.ReaderAt
		}{bytes.NewReader(data), bytes.NewReader(data)}, false, true},
	} {
		before := clock.elapsed()
		if _, err := s.Put(ctx, "k", c.r, int64(len(data)), providers.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if rec.seek != c.seek || rec.readAt != c.readAt {
			t.Errorf("%s: the store saw Seeker %v, ReaderAt %v; want %v, %v", c.name, rec.seek, rec.readAt, c.seek, c.readAt)
		}
		within(t, c.name+": 128 KiB at 64 KiB/s", clock.elapsed()-before, 2*time.Second)
	}
}

// bodyRecorder notes what the body given to Put can do, and reads it through
// ReadAt when it can (as the S3 store does).
type bodyRecorder struct {
	*mem.Store
	seek, readAt bool
}

func (b *bodyRecorder) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	_, b.seek = r.(io.Seeker)
	var ra io.ReaderAt
	ra, b.readAt = r.(io.ReaderAt)
	if b.readAt {
		r = io.NewSectionReader(ra, 0, size)
	}
	return b.Store.Put(ctx, key, r, size, opts)
}

func TestWaitCancelled(t *testing.T) {
	lim := NewLimiter(nil) // the real clock: a wait of an hour, cancelled
	lim.Set(Rate{RequestsPerSecond: 1.0 / 3600})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	s := Wrap(fresh(t), lim, Options{})
	_, err := s.Stat(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stat under an exhausted cap and a deadline: %v", err)
	}
	if st := lim.Stats(); st.Waiting != 0 || st.WaitedRequests <= 0 {
		t.Errorf("stats after a cancelled wait: %+v", st)
	}
}

func TestRateDiv(t *testing.T) {
	r := Rate{RequestsPerSecond: 90, BytesPerSecond: 3 << 20}
	if got := r.Div(3); got.RequestsPerSecond != 30 || got.BytesPerSecond != 1<<20 {
		t.Errorf("Div(3) = %+v", got)
	}
	if r.Div(0) != r || r.Div(1) != r {
		t.Error("Div(0 or 1) changed the rate")
	}
}
