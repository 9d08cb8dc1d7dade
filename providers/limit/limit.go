// Package limit caps the requests per second and the bytes per second that go to a
// providers.Store: a decorator (Wrap) around the store that takes tokens from a
// Limiter (two token buckets from golang.org/x/time/rate) before each request and
// for every body byte read or written, and counts the time spent waiting for them.
//
// The caps can change at any time (Limiter.Set): the pipeline re-reads the spec's
// schedule, the operator's override and the number of workers sharing the limit
// every few seconds and sets each process's share.
//
// What counts as a request: every call that reaches the store is one, except a
// listing, which is one per page (PageSize objects), and an upload larger than the
// part size, which is one per part plus two (create and complete). Retries the
// store makes by itself (adaptive backoff on 429/503/SlowDown) happen inside one
// call and take no further token: backoff only ever slows ferry down further.
// Calls that only read what the store knows of itself, once per run (Region,
// Recoverability, Identity, Retries), are not decorated: providers.As finds them through
// Unwrap.
//
// Capabilities pass through honestly: the decorated store implements exactly the
// optional interfaces (ConditionalDeleter, SoftDeleter, RangeLister,
// UncheckedOpener, Versioner) the inner store implements, each limited like the
// core methods, so a caller's type assertion answers as it would without the
// decorator; providers.CapsOf of the decorated store equals the inner store's
// (providers/caps_test.go checks every decorator).
package limit

//go:generate go run ../internal/capgen -pkg limit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferrymigrate/ferry/providers"
)

// Rate is a pair of caps; zero (or less) means unlimited.
type Rate struct {
	RequestsPerSecond float64 `json:"requests_per_second,omitempty"`
	BytesPerSecond    float64 `json:"bytes_per_second,omitempty"`
}

// Unlimited reports whether neither dimension is capped.
func (r Rate) Unlimited() bool { return r.RequestsPerSecond <= 0 && r.BytesPerSecond <= 0 }

// Div is the rate shared by n takers: each takes 1/n of each cap.
func (r Rate) Div(n int) Rate {
	if n <= 1 {
		return r
	}
	return Rate{RequestsPerSecond: r.RequestsPerSecond / float64(n), BytesPerSecond: r.BytesPerSecond / float64(n)}
}

// Clock is the time a Limiter waits by; tests inject one.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx is done (returning its error).
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Dimension names what a wait was for.
type Dimension int

// The dimensions.
const (
	Requests Dimension = iota
	Bytes
)

// Stats are a Limiter's counters since it was made.
type Stats struct {
	Rate Rate `json:"rate"` // the caps in force in this process now
	// Waited is the time callers spent waiting for tokens, summed over callers (ten
	// requests waiting one second each count ten seconds), by dimension.
	WaitedRequests time.Duration `json:"waited_requests_ns"`
	WaitedBytes    time.Duration `json:"waited_bytes_ns"`
	// Waiting is the number of callers waiting now.
	Waiting int64 `json:"waiting"`
	// Throttled is the wall time during which at least one caller was waiting:
	// how much the caps held this process back.
	Throttled time.Duration `json:"throttled_ns"`
}

// Waited is the total time spent waiting.
func (s Stats) Waited() time.Duration { return s.WaitedRequests + s.WaitedBytes }

// Limiter holds the two token buckets of one store in one process. Safe for
// concurrent use; Set may be called at any time.
type Limiter struct {
	clock Clock

	mu    sync.Mutex // serialises Set
	rate  atomic.Pointer[Rate]
	req   atomic.Pointer[rate.Limiter] // nil: unlimited
	bytes atomic.Pointer[rate.Limiter] // nil: unlimited
	chunk atomic.Int64                 // largest byte charge at once (the bytes bucket's burst); 0: unlimited

	waited  [2]atomic.Int64 // ns, by Dimension
	waiting atomic.Int64

	wmu       sync.Mutex
	waiters   int       // callers waiting now
	since     time.Time // when waiters last went from 0 to 1
	throttled time.Duration
}

// NewLimiter returns an unlimited Limiter; clock nil is the real clock.
func NewLimiter(clock Clock) *Limiter {
	if clock == nil {
		clock = realClock{}
	}
	return &Limiter{clock: clock}
}

// Bursts: a tenth of a second of tokens, so that a cap holds over any second, but at
// least one request and 32 KiB (a read's chunk), so that slow caps still move.
const (
	minByteBurst = 32 << 10
	burstShare   = 10
)

func reqBurst(rps float64) int { return max(1, int(rps/burstShare)) }
func byteBurst(bps float64) int {
	return int(min(max(bps/burstShare, minByteBurst), math.MaxInt32))
}

// Set changes the caps. Callers already waiting keep their place; the new caps
// apply from now on.
func (l *Limiter) Set(r Rate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur := l.rate.Load(); cur != nil && *cur == r || cur == nil && r == (Rate{}) {
		return
	}
	now := l.clock.Now()
	l.rate.Store(&r)
	l.req.Store(adjust(l.req.Load(), r.RequestsPerSecond, reqBurst(r.RequestsPerSecond), now))
	b := adjust(l.bytes.Load(), r.BytesPerSecond, byteBurst(r.BytesPerSecond), now)
	l.bytes.Store(b)
	if b == nil {
		l.chunk.Store(0)
	} else {
		l.chunk.Store(int64(byteBurst(r.BytesPerSecond)))
	}
}

func adjust(lim *rate.Limiter, perSecond float64, burst int, now time.Time) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(perSecond), burst)
		// Start empty rather than with a full burst: a cap that comes into force
		// (a schedule window opening, an override) holds from its first second.
		lim.ReserveN(now, burst)
		return lim
	}
	lim.SetLimitAt(now, rate.Limit(perSecond))
	lim.SetBurstAt(now, burst)
	return lim
}

// Rate returns the caps in force.
func (l *Limiter) Rate() Rate {
	if r := l.rate.Load(); r != nil {
		return *r
	}
	return Rate{}
}

// Stats returns the counters.
func (l *Limiter) Stats() Stats {
	st := Stats{Rate: l.Rate(), WaitedRequests: time.Duration(l.waited[Requests].Load()),
		WaitedBytes: time.Duration(l.waited[Bytes].Load()), Waiting: l.waiting.Load()}
	l.wmu.Lock()
	st.Throttled = l.throttled
	if l.waiters > 0 {
		st.Throttled += l.clock.Now().Sub(l.since)
	}
	l.wmu.Unlock()
	return st
}

// waitBegins and waitEnds keep the wall time during which anyone waited.
func (l *Limiter) waitBegins() {
	l.waiting.Add(1)
	l.wmu.Lock()
	if l.waiters == 0 {
		l.since = l.clock.Now()
	}
	l.waiters++
	l.wmu.Unlock()
}

func (l *Limiter) waitEnds() {
	l.waiting.Add(-1)
	l.wmu.Lock()
	l.waiters--
	if l.waiters == 0 {
		l.throttled += l.clock.Now().Sub(l.since)
	}
	l.wmu.Unlock()
}

// Wait takes n request tokens, waiting as long as the cap asks.
func (l *Limiter) Wait(ctx context.Context, n int) error {
	for n > 0 {
		lim := l.req.Load()
		if lim == nil {
			return nil
		}
		k := min(n, lim.Burst())
		if err := l.take(ctx, lim, k, Requests); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// WaitBytes takes n byte tokens, waiting as long as the cap asks.
func (l *Limiter) WaitBytes(ctx context.Context, n int64) error {
	for n > 0 {
		lim := l.bytes.Load()
		if lim == nil {
			return nil
		}
		k := int(min(n, int64(lim.Burst())))
		if err := l.take(ctx, lim, k, Bytes); err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

// chunkSize is the largest read worth charging at once (0: unlimited).
func (l *Limiter) chunkSize() int { return int(l.chunk.Load()) }

func (l *Limiter) take(ctx context.Context, lim *rate.Limiter, n int, d Dimension) error {
	now := l.clock.Now()
	r := lim.ReserveN(now, n)
	if !r.OK() {
		return fmt.Errorf("limit: %d tokens exceed the burst %d", n, lim.Burst())
	}
	delay := r.DelayFrom(now)
	if delay <= 0 {
		return nil
	}
	l.waitBegins()
	err := l.clock.Sleep(ctx, delay)
	l.waitEnds()
	if err != nil {
		r.CancelAt(l.clock.Now())
		l.waited[d].Add(int64(l.clock.Now().Sub(now)))
		return err
	}
	l.waited[d].Add(int64(delay))
	return nil
}

// Options tune the decorator.
type Options struct {
	// PartSize is the store's multipart part size: a Put larger than it counts one
	// request per part plus two. 0: every Put is one request.
	PartSize int64
	// PageSize is how many objects one listing request returns (default 1000, the
	// S3 and OCI maximum).
	PageSize int
}

// Store is the limiting decorator. Wrap returns it inside a type that has exactly
// the inner store's optional capabilities.
type Store struct {
	inner providers.Store
	lim   *Limiter
	opts  Options
}

// Wrap returns inner limited by lim.
func Wrap(inner providers.Store, lim *Limiter, opts Options) providers.Store {
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	return withCaps(&Store{inner: inner, lim: lim, opts: opts}, capsOf(inner))
}

// Limiter returns the limiter of a store Wrap made, found through other decorators.
func LimiterOf(s providers.Store) (*Limiter, bool) {
	ls, ok := providers.As[interface{ limiter() *Limiter }](s)
	if !ok {
		return nil, false
	}
	return ls.limiter(), true
}

func (s *Store) limiter() *Limiter { return s.lim }

// The decorator's own methods; caps.go checks each type Wrap can return.
var (
	_ providers.Store    = (*Store)(nil)
	_ providers.Featurer = (*Store)(nil)
)

// Unwrap returns the inner store.
func (s *Store) Unwrap() providers.Store { return s.inner }

// URI forwards (no request).
func (s *Store) URI(key string) string { return s.inner.URI(key) }

// Close forwards.
func (s *Store) Close() error { return s.inner.Close() }

// Features forwards the inner chain's features (the zero value when it declares none).
func (s *Store) Features() providers.Features { return providers.FeaturesOf(s.inner) }

// List takes a request token per page of the listing.
func (s *Store) List(ctx context.Context, fn func(providers.Object) error) error {
	if err := s.lim.Wait(ctx, 1); err != nil {
		return err
	}
	return s.inner.List(ctx, s.paged(ctx, fn))
}

// paged takes a request token for every page after the first.
func (s *Store) paged(ctx context.Context, fn func(providers.Object) error) func(providers.Object) error {
	n := 0
	return func(o providers.Object) error {
		n++
		if n > s.opts.PageSize && n%s.opts.PageSize == 1 {
			if err := s.lim.Wait(ctx, 1); err != nil {
				return err
			}
		}
		return fn(o)
	}
}

// Stat takes a request token.
func (s *Store) Stat(ctx context.Context, key string) (providers.Object, error) {
	if err := s.lim.Wait(ctx, 1); err != nil {
		return providers.Object{}, err
	}
	return s.inner.Stat(ctx, key)
}

// Open takes a request token, and byte tokens as the body is read.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	return s.open(ctx, func() (io.ReadCloser, providers.Object, error) { return s.inner.Open(ctx, key) })
}

func (s *Store) open(ctx context.Context, call func() (io.ReadCloser, providers.Object, error)) (io.ReadCloser, providers.Object, error) {
	if err := s.lim.Wait(ctx, 1); err != nil {
		return nil, providers.Object{}, err
	}
	rc, o, err := call()
	if err != nil {
		return rc, o, err
	}
	return &readCloser{ReadCloser: rc, ctx: ctx, lim: s.lim}, o, nil
}

// readCloser charges the bytes read. A read is cut to the bytes bucket's burst, so
// that the bytes arrive at the cap rather than in bursts.
type readCloser struct {
	io.ReadCloser
	ctx context.Context
	lim *Limiter
}

func (r *readCloser) Read(p []byte) (int, error) {
	if c := r.lim.chunkSize(); c > 0 && len(p) > c {
		p = p[:c]
	}
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		if werr := r.lim.WaitBytes(r.ctx, int64(n)); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// Put takes request tokens (one per part for a multipart upload, plus two), and
// byte tokens as the store reads the body.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	n := 1
	if ps := s.opts.PartSize; ps > 0 && size > ps {
		n = int((size+ps-1)/ps) + 2
	}
	if err := s.lim.Wait(ctx, n); err != nil {
		return providers.Object{}, err
	}
	return s.inner.Put(ctx, key, body(ctx, s.lim, r), size, opts)
}

// body charges the bytes the store reads from r, keeping r's io.Seeker and
// io.ReaderAt (a store reads a seekable body in place, and rewinds it to retry).
func body(ctx context.Context, lim *Limiter, r io.Reader) io.Reader {
	b := bodyReader{r: r, ctx: ctx, lim: lim}
	sk, seek := r.(io.Seeker)
	ra, readAt := r.(io.ReaderAt)
	switch {
	case seek && readAt:
		return &seekReaderAt{bodyReader: b, sk: sk, ra: ra}
	case seek:
		return &seekReader{bodyReader: b, sk: sk}
	case readAt:
		return &readerAt{bodyReader: b, ra: ra}
	}
	return &b
}

type bodyReader struct {
	r   io.Reader
	ctx context.Context
	lim *Limiter
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if c := b.lim.chunkSize(); c > 0 && len(p) > c {
		p = p[:c]
	}
	n, err := b.r.Read(p)
	return n, b.charge(n, err)
}

func (b *bodyReader) charge(n int, err error) error {
	if n > 0 {
		if werr := b.lim.WaitBytes(b.ctx, int64(n)); werr != nil && (err == nil || errors.Is(err, io.EOF)) {
			return werr
		}
	}
	return err
}

type seekReader struct {
	bodyReader
	sk io.Seeker
}

func (s *seekReader) Seek(off int64, whence int) (int64, error) { return s.sk.Seek(off, whence) }

type readerAt struct {
	bodyReader
	ra io.ReaderAt
}

func (r *readerAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.ra.ReadAt(p, off)
	return n, r.charge(n, err)
}

type seekReaderAt struct {
	bodyReader
	sk io.Seeker
	ra io.ReaderAt
}

func (s *seekReaderAt) Seek(off int64, whence int) (int64, error) { return s.sk.Seek(off, whence) }

func (s *seekReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.ra.ReadAt(p, off)
	return n, s.charge(n, err)
}

// Delete takes a request token.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.lim.Wait(ctx, 1); err != nil {
		return err
	}
	return s.inner.Delete(ctx, key)
}

// ---- optional capabilities, present exactly when the inner store has them ----

type conditionalDeleter struct{ s *Store }

func (c conditionalDeleter) DeleteIf(ctx context.Context, key string, expect providers.Object) error {
	if err := c.s.lim.Wait(ctx, 1); err != nil {
		return err
	}
	return c.s.inner.(providers.ConditionalDeleter).DeleteIf(ctx, key, expect)
}

type softDeleter struct{ s *Store }

func (d softDeleter) sd() providers.SoftDeleter { return d.s.inner.(providers.SoftDeleter) }

// SoftHandle touches no store: no token.
func (d softDeleter) SoftHandle(key string, expect providers.Object) string {
	return d.sd().SoftHandle(key, expect)
}

func (d softDeleter) SoftDelete(ctx context.Context, key string, expect providers.Object) (string, error) {
	if err := d.s.lim.Wait(ctx, 1); err != nil {
		return "", err
	}
	return d.sd().SoftDelete(ctx, key, expect)
}

func (d softDeleter) Restore(ctx context.Context, key, handle string) error {
	if err := d.s.lim.Wait(ctx, 1); err != nil {
		return err
	}
	return d.sd().Restore(ctx, key, handle)
}

func (d softDeleter) Purge(ctx context.Context, key, handle string) error {
	if err := d.s.lim.Wait(ctx, 1); err != nil {
		return err
	}
	return d.sd().Purge(ctx, key, handle)
}

func (d softDeleter) SoftExists(ctx context.Context, key, handle string) (bool, error) {
	if err := d.s.lim.Wait(ctx, 1); err != nil {
		return false, err
	}
	return d.sd().SoftExists(ctx, key, handle)
}

type rangeLister struct{ s *Store }

func (r rangeLister) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	if err := r.s.lim.Wait(ctx, 1); err != nil {
		return err
	}
	return r.s.inner.(providers.RangeLister).ListRange(ctx, after, through, r.s.paged(ctx, fn))
}

func (r rangeLister) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	if err := r.s.lim.Wait(ctx, 1); err != nil {
		return nil, err
	}
	return r.s.inner.(providers.RangeLister).SplitKeys(ctx, parts)
}

type uncheckedOpener struct{ s *Store }

func (u uncheckedOpener) OpenUnchecked(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	return u.s.open(ctx, func() (io.ReadCloser, providers.Object, error) {
		return u.s.inner.(providers.UncheckedOpener).OpenUnchecked(ctx, key)
	})
}

type versioner struct{ s *Store }

func (v versioner) Versioning(ctx context.Context) (bool, error) {
	if err := v.s.lim.Wait(ctx, 1); err != nil {
		return false, err
	}
	return v.s.inner.(providers.Versioner).Versioning(ctx)
}

func (v versioner) Versions(ctx context.Context, key string) ([]providers.Object, error) {
	if err := v.s.lim.Wait(ctx, 1); err != nil {
		return nil, err
	}
	return v.s.inner.(providers.Versioner).Versions(ctx, key)
}
