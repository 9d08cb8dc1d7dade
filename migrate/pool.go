package migrate

import (
	"context"
	"sync"
)

// pool runs functions on at most n long-lived goroutines: what errgroup.Group
// with SetLimit(n) does (the first error cancels the context and is what Wait
// returns), but without a fresh goroutine per call. A goroutine per record grew
// its stack through the S3 SDK's deep middleware stack every time (runtime.newstack
// was about a tenth of the copy's CPU); a worker keeps its grown stack.
//
// Go is called from one goroutine (the loop over the records), like errgroup's
// Go with a limit it blocks while all n workers are busy.
type pool struct {
	cancel  context.CancelCauseFunc
	work    chan func() error
	wg      sync.WaitGroup
	once    sync.Once
	err     error
	n       int
	started int
}

func newPool(ctx context.Context, n int) (*pool, context.Context) {
	ctx, cancel := context.WithCancelCause(ctx)
	return &pool{cancel: cancel, work: make(chan func() error), n: max(n, 1)}, ctx
}

// Go runs f on an idle worker, a new one while there are fewer than n, or else
// the first to become free.
func (w *pool) Go(f func() error) {
	select {
	case w.work <- f:
		return
	default:
	}
	if w.started < w.n {
		w.started++
		w.wg.Add(1)
		go w.run(f)
		return
	}
	w.work <- f
}

func (w *pool) run(f func() error) {
	defer w.wg.Done()
	for ok := true; ok; f, ok = <-w.work {
		if err := f(); err != nil {
			w.once.Do(func() {
				w.err = err
				w.cancel(err)
			})
		}
	}
}

// Wait waits for every function given to Go and returns the first error.
func (w *pool) Wait() error {
	close(w.work)
	w.wg.Wait()
	w.cancel(w.err)
	return w.err
}
