package journaled

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/mem"
	"github.com/ferrymigrate/ferry/providers/providertest"
)

var n atomic.Int64

func fresh(t *testing.T) *mem.Store {
	name := fmt.Sprintf("journaled-test-%d", n.Add(1))
	t.Cleanup(func() { mem.Reset(name) })
	return mem.New(name)
}

type recorder struct {
	mu  sync.Mutex
	evs []Event
}

func (r *recorder) Record(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e)
}

func (r *recorder) events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.evs...)
}

// The decorated store passes the conformance suite: journalling changes nothing.
func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providers.Store { return Wrap(fresh(t), &recorder{}) })
}

// Wrap's result implements exactly the optional capabilities of the inner store.
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
		s := Wrap(c.inner, &recorder{})
		if capsOf(s) != capsOf(c.inner) {
			t.Errorf("%s: capabilities %05b, the inner store has %05b", c.name, capsOf(s), capsOf(c.inner))
		}
		if u, ok := s.(interface{ Unwrap() providers.Store }); !ok || u.Unwrap() != c.inner {
			t.Errorf("%s: Unwrap does not return the inner store", c.name)
		}
		if providers.FeaturesOf(s) != providers.FeaturesOf(c.inner) {
			t.Errorf("%s: features differ", c.name)
		}
	}
	if capsOf(everything{memStore}) != 1<<5-1 {
		t.Fatal("the test store lacks a capability")
	}
}

// everything is a store with every optional capability that notes a request id for
// every request, as S3 and OCI do.
type everything struct{ *mem.Store }

var reqs atomic.Int64

func note(ctx context.Context) { providers.NoteRequestID(ctx, fmt.Sprintf("req-%d", reqs.Add(1))) }

func (e everything) Stat(ctx context.Context, key string) (providers.Object, error) {
	note(ctx)
	return e.Store.Stat(ctx, key)
}
func (e everything) Put(ctx context.Context, key string, r io.Reader, size int64, o providers.PutOptions) (providers.Object, error) {
	note(ctx)
	return e.Store.Put(ctx, key, r, size, o)
}
func (everything) OpenUnchecked(context.Context, string) (io.ReadCloser, providers.Object, error) {
	return io.NopCloser(strings.NewReader("")), providers.Object{}, nil
}
func (everything) Versioning(context.Context) (bool, error) { return true, nil }
func (everything) Versions(context.Context, string) ([]providers.Object, error) {
	return []providers.Object{{Key: "a", Version: "v1"}}, nil
}

// Every request that touches user data is reported once, with its key, the version it
// concerned, the store's request ids and its outcome; Versioning and SoftHandle are not.
func TestJournalsEveryRequest(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	s := Wrap(everything{fresh(t)}, rec)
	put, err := s.Put(ctx, "a", strings.NewReader("hello"), 5, providers.PutOptions{})
	if err != nil {
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
	if _, err := s.(providers.Versioner).Versioning(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.(providers.Versioner).Versions(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	sd := s.(providers.SoftDeleter)
	_ = sd.SoftHandle("a", put)
	h, err := sd.SoftDelete(ctx, "a", put)
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.Restore(ctx, "a", h); err != nil {
		t.Fatal(err)
	}
	if err := s.(providers.ConditionalDeleter).DeleteIf(ctx, "a", providers.Object{Key: "a", Size: 1, ETag: "other"}); !errors.Is(err, providers.ErrPrecondition) {
		t.Fatalf("DeleteIf of another version: %v", err)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	type want struct {
		op, call, key string
		version       bool
		handle        bool
		ids           int
		count         int64
		err           error
	}
	wants := []want{
		{OpWrite, "Put", "a", true, false, 1, 0, nil},
		{OpHead, "Stat", "missing", false, false, 1, 0, providers.ErrNotFound},
		{OpRead, "Open", "a", true, false, 0, 0, nil},
		{OpList, "List", "", false, false, 0, 1, nil},
		{OpList, "Versions", "a", false, false, 0, 1, nil},
		{OpSoftDelete, "SoftDelete", "a", true, true, 0, 0, nil},
		{OpRestore, "Restore", "a", false, true, 0, 0, nil},
		{OpDelete, "DeleteIf", "a", true, false, 0, 0, providers.ErrPrecondition},
		{OpDelete, "Delete", "a", false, false, 0, 0, nil},
	}
	got := rec.events()
	if len(got) != len(wants) {
		t.Fatalf("%d events, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		e := got[i]
		if e.Op != w.op || e.Call != w.call || e.Key != w.key || e.Count != w.count || len(e.RequestIDs) != w.ids {
			t.Errorf("event %d: %+v, want %+v", i, e, w)
		}
		if w.version && e.ETag == "" {
			t.Errorf("event %d (%s): no version named", i, e.Call)
		}
		if w.handle && e.Handle == "" {
			t.Errorf("event %d (%s): no handle", i, e.Call)
		}
		if w.err == nil && e.Err != nil || w.err != nil && !errors.Is(e.Err, w.err) {
			t.Errorf("event %d (%s): outcome %v, want %v", i, e.Call, e.Err, w.err)
		}
		if e.Time.IsZero() {
			t.Errorf("event %d: no time", i)
		}
	}
	if got[0].ETag != put.ETag {
		t.Errorf("the write names etag %q, the store stored %q", got[0].ETag, put.ETag)
	}
}
