package checkpoints_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
)

// countingStore records every Save call and can fail the Nth one (kopia's fault
// injection habit).
type countingStore struct {
	checkpoints.Store
	mu     sync.Mutex
	saves  [][]string // keys of each Save call, in call order
	failAt int        // 1-based Save call that fails; 0: none
	err    error
}

func (c *countingStore) Save(ctx context.Context, recs []checkpoints.Record) error {
	keys := make([]string, len(recs))
	for i, r := range recs {
		keys[i] = r.Key
	}
	c.mu.Lock()
	c.saves = append(c.saves, keys)
	n := len(c.saves)
	c.mu.Unlock()
	if n == c.failAt {
		return c.err
	}
	return c.Store.Save(ctx, recs)
}

func (c *countingStore) calls() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.saves)
}

func stored(t *testing.T, s checkpoints.Store) []string {
	t.Helper()
	var keys []string
	if err := s.Records(context.Background(), checkpoints.Query{}, func(r checkpoints.Record) error {
		keys = append(keys, r.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

const never = time.Hour // an interval that does not fire during a test

func TestBatcherGroupCommit(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ n, size int }{{95, 10}, {100, 10}, {1, 10}, {0, 10}, {300, 128}, {7, 1}} {
		t.Run(fmt.Sprintf("%d by %d", tc.n, tc.size), func(t *testing.T) {
			cs := &countingStore{Store: openTemp(t)}
			defer cs.Store.Close()
			b := checkpoints.NewBatcher(cs, tc.size, never)
			var order []string
			for i := range tc.n {
				k := fmt.Sprintf("k%05d", i)
				order = append(order, k)
				if err := b.Add(ctx, rec(k, i)); err != nil {
					t.Fatalf("Add %d: %v", i, err)
				}
				// A full batch is saved by the Add that fills it, before Add returns.
				if got, want := len(cs.calls()), (i+1)/tc.size; got != want {
					t.Fatalf("after %d adds: %d Save calls, want %d", i+1, got, want)
				}
			}
			if err := b.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			calls := cs.calls()
			if want := (tc.n + tc.size - 1) / tc.size; len(calls) != want {
				t.Errorf("%d adds in batches of %d: %d Save calls, want %d", tc.n, tc.size, len(calls), want)
			}
			// Batches are full but the last, and together they are the adds in order.
			var all []string
			for i, c := range calls {
				if len(c) == 0 || len(c) > tc.size || (i < len(calls)-1 && len(c) != tc.size) {
					t.Errorf("Save call %d saved %d records (size %d)", i, len(c), tc.size)
				}
				all = append(all, c...)
			}
			if !slices.Equal(all, order) {
				t.Errorf("saved keys differ from added keys in order")
			}
			if got := stored(t, cs.Store); !slices.Equal(got, order) {
				t.Errorf("store holds %d records, want %d", len(got), len(order))
			}
		})
	}
}

func TestBatcherFlush(t *testing.T) {
	ctx := context.Background()
	cs := &countingStore{Store: openTemp(t)}
	defer cs.Store.Close()
	b := checkpoints.NewBatcher(cs, 100, never)
	if err := b.Flush(ctx); err != nil || len(cs.calls()) != 0 {
		t.Fatalf("Flush of an empty queue: %v, %d Save calls; want nil and none", err, len(cs.calls()))
	}
	for i := range 3 {
		if err := b.Add(ctx, rec(fmt.Sprintf("k%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(stored(t, cs.Store)); n != 0 {
		t.Fatalf("%d records stored before Flush; a queue of 3 in batches of 100 must wait", n)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Flush returns once the queue is stored.
	if got := stored(t, cs.Store); len(got) != 3 || len(cs.calls()) != 1 {
		t.Fatalf("after Flush: stored %v in %d Save calls; want 3 in 1", got, len(cs.calls()))
	}
	// The same record added twice in one batch: the later version is stored.
	r := rec("k0", 10)
	r.State = checkpoints.Verified
	if err := b.Add(ctx, rec("k0", 9)); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := cs.Store.Get(ctx, "k0"); got.State != checkpoints.Verified || got.Attempts != 10 {
		t.Errorf("record added twice: stored %s attempts %d, want the later (verified, 10)", got.State, got.Attempts)
	}
	// Close again is harmless and saves nothing.
	n := len(cs.calls())
	if err := b.Close(ctx); err != nil || len(cs.calls()) != n {
		t.Errorf("second Close: %v, %d more Save calls", err, len(cs.calls())-n)
	}
}

func TestBatcherInterval(t *testing.T) {
	ctx := context.Background()
	cs := &countingStore{Store: openTemp(t)}
	defer cs.Store.Close()
	b := checkpoints.NewBatcher(cs, 1000, 30*time.Millisecond)
	defer b.Close(ctx)
	if err := b.Add(ctx, rec("lonely", 1)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(stored(t, cs.Store)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a queued record was not saved by the interval timer within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if calls := cs.calls(); len(calls) != 1 || !slices.Equal(calls[0], []string{"lonely"}) {
		t.Errorf("timer flush: Save calls %v, want one with the queued record", calls)
	}
}

func TestBatcherStickyError(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("disk full")
	cs := &countingStore{Store: openTemp(t), failAt: 2, err: boom}
	defer cs.Store.Close()
	b := checkpoints.NewBatcher(cs, 2, never)
	add := func(k string) error { return b.Add(ctx, rec(k, 1)) }
	if err := add("r1"); err != nil {
		t.Fatal(err)
	}
	if err := add("r2"); err != nil { // first batch: saved
		t.Fatal(err)
	}
	if err := add("r3"); err != nil {
		t.Fatal(err)
	}
	if err := add("r4"); !errors.Is(err, boom) { // second batch: the store fails
		t.Fatalf("Add that fills the failing batch = %v, want %v", err, boom)
	}
	// From now on every call reports the first error, and nothing more is saved.
	if err := add("r5"); !errors.Is(err, boom) {
		t.Errorf("Add after a failed write = %v, want %v", err, boom)
	}
	if err := add("r6"); !errors.Is(err, boom) {
		t.Errorf("Add after a failed write = %v, want %v", err, boom)
	}
	if err := b.Flush(ctx); !errors.Is(err, boom) {
		t.Errorf("Flush after a failed write = %v, want %v", err, boom)
	}
	if err := b.Close(ctx); !errors.Is(err, boom) {
		t.Errorf("Close after a failed write = %v, want %v", err, boom)
	}
	if n := len(cs.calls()); n != 2 {
		t.Errorf("%d Save calls; want 2 (none after the failure)", n)
	}
	if got := stored(t, cs.Store); !slices.Equal(got, []string{"r1", "r2"}) {
		t.Errorf("stored %v, want only the first batch", got)
	}
}

// TestBatcherStickyTimerError: a failure in a background (timer) flush is reported to
// the next caller.
func TestBatcherStickyTimerError(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("I/O error")
	cs := &countingStore{Store: openTemp(t), failAt: 1, err: boom}
	defer cs.Store.Close()
	b := checkpoints.NewBatcher(cs, 1000, 20*time.Millisecond)
	if err := b.Add(ctx, rec("a", 1)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(cs.calls()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the timer did not flush within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := b.Add(ctx, rec("b", 1)); !errors.Is(err, boom) {
		t.Errorf("Add after a failed timer flush = %v, want %v", err, boom)
	}
	if err := b.Close(ctx); !errors.Is(err, boom) {
		t.Errorf("Close after a failed timer flush = %v, want %v", err, boom)
	}
	if got := stored(t, cs.Store); len(got) != 0 {
		t.Errorf("stored %v after the only write failed", got)
	}
}

// TestBatcherConcurrentAdds: workers add at once (as copy does); nothing is lost or
// saved twice.
func TestBatcherConcurrentAdds(t *testing.T) {
	ctx := context.Background()
	cs := &countingStore{Store: openTemp(t)}
	defer cs.Store.Close()
	b := checkpoints.NewBatcher(cs, 32, 5*time.Millisecond)
	const workers, each = 4, 100
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := b.Add(ctx, rec(fmt.Sprintf("w%d/%04d", w, i), i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, c := range cs.calls() {
		if len(c) == 0 {
			t.Error("an empty Save call")
		}
		for _, k := range c {
			seen[k]++
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s saved %d times", k, n)
		}
	}
	if got := len(stored(t, cs.Store)); got != workers*each || len(seen) != workers*each {
		t.Errorf("stored %d records (%d saved), want %d", got, len(seen), workers*each)
	}
}
