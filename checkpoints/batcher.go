package checkpoints

import (
	"context"
	"sync"
	"time"
)

// Batcher group-commits record writes: Add queues a record, and the queue is saved in
// one transaction when it reaches Size records or every Interval, whichever is first.
// Flush saves what is queued and returns once it is durable. The first write error is
// kept and returned by every later Add and Flush, so a worker never carries on past a
// lost write.
type Batcher struct {
	store    Store
	size     int
	interval time.Duration

	mu      sync.Mutex
	pending []Record
	err     error
	flushMu sync.Mutex // one Save at a time, in queue order
	stop    chan struct{}
	done    chan struct{}
}

// NewBatcher starts a batcher over store.
func NewBatcher(store Store, size int, interval time.Duration) *Batcher {
	if size <= 0 {
		size = 512
	}
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	b := &Batcher{store: store, size: size, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop()
	return b
}

func (b *Batcher) loop() {
	defer close(b.done)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			_ = b.Flush(context.Background())
		}
	}
}

// Add queues rec; it may save the queue when it is full.
func (b *Batcher) Add(ctx context.Context, rec Record) error {
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return err
	}
	b.pending = append(b.pending, rec)
	full := len(b.pending) >= b.size
	b.mu.Unlock()
	if full {
		return b.Flush(ctx)
	}
	return nil
}

// Flush saves everything queued so far; nil means it is durable.
func (b *Batcher) Flush(ctx context.Context) error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	batch := b.pending
	b.pending = nil
	err := b.err
	b.mu.Unlock()
	if err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	if err := b.store.Save(ctx, batch); err != nil {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
		return err
	}
	return nil
}

// Close stops the timer and flushes.
func (b *Batcher) Close(ctx context.Context) error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	return b.Flush(ctx)
}
