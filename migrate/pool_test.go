package migrate

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestPoolRunEveryFunctionWithinTheLimit(t *testing.T) {
	w, _ := newPool(context.Background(), 4)
	var running, peak, done atomic.Int64
	var mu sync.Mutex
	release := make(chan struct{})
	for i := range 100 {
		w.Go(func() error {
			n := running.Add(1)
			mu.Lock()
			peak.Store(max(peak.Load(), n))
			mu.Unlock()
			if i < 4 {
				<-release // the first four hold all the workers for a while
			}
			running.Add(-1)
			done.Add(1)
			return nil
		})
		if i == 3 {
			close(release) // else the next Go waits for a free worker forever
		}
	}
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	if done.Load() != 100 || peak.Load() > 4 || w.started > 4 {
		t.Errorf("ran %d of 100, at most %d at once on %d goroutines; want all, at most 4", done.Load(), peak.Load(), w.started)
	}
}

func TestPoolFirstErrorCancels(t *testing.T) {
	w, ctx := newPool(context.Background(), 3)
	boom := errors.New("boom")
	w.Go(func() error { return boom })
	w.Go(func() error { <-ctx.Done(); return ctx.Err() })
	if err := w.Wait(); !errors.Is(err, boom) {
		t.Fatalf("Wait = %v, want the first error", err)
	}
	if !errors.Is(context.Cause(ctx), boom) {
		t.Errorf("context cause = %v", context.Cause(ctx))
	}
	// Wait cancels the context even without an error, as errgroup does.
	w2, ctx2 := newPool(context.Background(), 2)
	w2.Go(func() error { return nil })
	if err := w2.Wait(); err != nil || ctx2.Err() == nil {
		t.Errorf("Wait = %v, ctx.Err = %v", err, ctx2.Err())
	}
}
