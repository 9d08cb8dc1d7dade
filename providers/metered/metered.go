// Package metered is a providers.Store decorator that times every request a store
// serves and reports it, with its outcome, to an Observer (ferry's Prometheus metrics:
// migrate/metrics). It changes nothing about the requests themselves.
//
// What is timed: the call into the inner store, from entry to return. Open returns
// once the store answered (headers, not the body); Put includes reading its body, so
// a streamed copy's Put also holds the time its source took to deliver the bytes. A
// listing (List, ListRange) is timed without the time spent in the caller's fn, so
// ferry's own work on each listed object does not count as the store's.
//
// Capabilities pass through honestly, as in providers/limit: the decorated store
// implements exactly the optional interfaces (ConditionalDeleter, SoftDeleter,
// RangeLister, UncheckedOpener, Versioner) the inner store implements, each timed
// like the core methods, and no others. Features are forwarded; calls that only read
// what the store knows of itself (Region, Recoverability, Identity, Retries) are not
// decorated: providers.As finds them through Unwrap.
package metered

//go:generate go run ../internal/capgen -pkg metered

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"github.com/ferrymigrate/ferry/providers"
)

// Operation names, the `op` label of the metrics.
const (
	OpList          = "list"
	OpListRange     = "list_range"
	OpSplitKeys     = "split_keys"
	OpStat          = "stat"
	OpOpen          = "open"
	OpOpenUnchecked = "open_unchecked"
	OpPut           = "put"
	OpDelete        = "delete"
	OpDeleteIf      = "delete_if"
	OpSoftDelete    = "soft_delete"
	OpRestore       = "restore"
	OpPurge         = "purge"
	OpSoftExists    = "soft_exists"
	OpVersioning    = "versioning"
	OpVersions      = "versions"
)

// Observer receives one call per request: the store's name (a site's name or
// "target"), the operation, how long the store took and the error it returned (nil
// on success). It must be safe for concurrent use and quick.
type Observer interface {
	ObserveRequest(store, op string, d time.Duration, err error)
}

// Store is the timing decorator. Wrap returns it inside a type that has exactly the
// inner store's optional capabilities.
type Store struct {
	inner providers.Store
	name  string
	obs   Observer
	now   func() time.Time
}

// Wrap returns inner, its requests reported to obs under name.
func Wrap(inner providers.Store, name string, obs Observer) providers.Store {
	return withCaps(&Store{inner: inner, name: name, obs: obs, now: time.Now}, capsOf(inner))
}

// The decorator's own methods; caps.go checks each type Wrap can return.
var (
	_ providers.Store    = (*Store)(nil)
	_ providers.Featurer = (*Store)(nil)
)

// Unwrap returns the inner store.
func (s *Store) Unwrap() providers.Store { return s.inner }

// URI forwards (no request).
func (s *Store) URI(key string) string { return s.inner.URI(key) }

// Close forwards (no request).
func (s *Store) Close() error { return s.inner.Close() }

// Features forwards the inner chain's features (the zero value when it declares none).
func (s *Store) Features() providers.Features { return providers.FeaturesOf(s.inner) }

// observe reports one request that started at start.
func (s *Store) observe(op string, start time.Time, err error) {
	s.obs.ObserveRequest(s.name, op, s.now().Sub(start), err)
}

// List times the listing, less the time spent in fn.
func (s *Store) List(ctx context.Context, fn func(providers.Object) error) error {
	start := s.now()
	var inFn atomic.Int64
	err := s.inner.List(ctx, s.excluding(fn, &inFn))
	s.observeListing(OpList, start, &inFn, err)
	return err
}

// excluding wraps fn so the time spent in it is added to in.
func (s *Store) excluding(fn func(providers.Object) error, in *atomic.Int64) func(providers.Object) error {
	return func(o providers.Object) error {
		t := s.now()
		err := fn(o)
		in.Add(int64(s.now().Sub(t)))
		return err
	}
}

// observeListing reports a listing's time less the time spent in the caller's fn
// (never below zero: a store may call fn from several goroutines at once).
func (s *Store) observeListing(op string, start time.Time, inFn *atomic.Int64, err error) {
	d := max(s.now().Sub(start)-time.Duration(inFn.Load()), 0)
	s.obs.ObserveRequest(s.name, op, d, err)
}

// Stat is timed.
func (s *Store) Stat(ctx context.Context, key string) (providers.Object, error) {
	start := s.now()
	o, err := s.inner.Stat(ctx, key)
	s.observe(OpStat, start, err)
	return o, err
}

// Open is timed until the store answers.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	start := s.now()
	rc, o, err := s.inner.Open(ctx, key)
	s.observe(OpOpen, start, err)
	return rc, o, err
}

// Put is timed, reading its body included. The body is passed on as it is, so the
// store sees the caller's io.Seeker and io.ReaderAt.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	start := s.now()
	o, err := s.inner.Put(ctx, key, r, size, opts)
	s.observe(OpPut, start, err)
	return o, err
}

// Delete is timed.
func (s *Store) Delete(ctx context.Context, key string) error {
	start := s.now()
	err := s.inner.Delete(ctx, key)
	s.observe(OpDelete, start, err)
	return err
}

// ---- optional capabilities, present exactly when the inner store has them ----

type conditionalDeleter struct{ s *Store }

func (c conditionalDeleter) DeleteIf(ctx context.Context, key string, expect providers.Object) error {
	start := c.s.now()
	err := c.s.inner.(providers.ConditionalDeleter).DeleteIf(ctx, key, expect)
	c.s.observe(OpDeleteIf, start, err)
	return err
}

type softDeleter struct{ s *Store }

func (d softDeleter) sd() providers.SoftDeleter { return d.s.inner.(providers.SoftDeleter) }

// SoftHandle touches no store: not a request.
func (d softDeleter) SoftHandle(key string, expect providers.Object) string {
	return d.sd().SoftHandle(key, expect)
}

func (d softDeleter) SoftDelete(ctx context.Context, key string, expect providers.Object) (string, error) {
	start := d.s.now()
	h, err := d.sd().SoftDelete(ctx, key, expect)
	d.s.observe(OpSoftDelete, start, err)
	return h, err
}

func (d softDeleter) Restore(ctx context.Context, key, handle string) error {
	start := d.s.now()
	err := d.sd().Restore(ctx, key, handle)
	d.s.observe(OpRestore, start, err)
	return err
}

func (d softDeleter) Purge(ctx context.Context, key, handle string) error {
	start := d.s.now()
	err := d.sd().Purge(ctx, key, handle)
	d.s.observe(OpPurge, start, err)
	return err
}

func (d softDeleter) SoftExists(ctx context.Context, key, handle string) (bool, error) {
	start := d.s.now()
	ok, err := d.sd().SoftExists(ctx, key, handle)
	d.s.observe(OpSoftExists, start, err)
	return ok, err
}

type rangeLister struct{ s *Store }

func (r rangeLister) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	start := r.s.now()
	var inFn atomic.Int64
	err := r.s.inner.(providers.RangeLister).ListRange(ctx, after, through, r.s.excluding(fn, &inFn))
	r.s.observeListing(OpListRange, start, &inFn, err)
	return err
}

func (r rangeLister) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	start := r.s.now()
	keys, err := r.s.inner.(providers.RangeLister).SplitKeys(ctx, parts)
	r.s.observe(OpSplitKeys, start, err)
	return keys, err
}

type uncheckedOpener struct{ s *Store }

func (u uncheckedOpener) OpenUnchecked(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	start := u.s.now()
	rc, o, err := u.s.inner.(providers.UncheckedOpener).OpenUnchecked(ctx, key)
	u.s.observe(OpOpenUnchecked, start, err)
	return rc, o, err
}

type versioner struct{ s *Store }

func (v versioner) Versioning(ctx context.Context) (bool, error) {
	start := v.s.now()
	ok, err := v.s.inner.(providers.Versioner).Versioning(ctx)
	v.s.observe(OpVersioning, start, err)
	return ok, err
}

func (v versioner) Versions(ctx context.Context, key string) ([]providers.Object, error) {
	start := v.s.now()
	vs, err := v.s.inner.(providers.Versioner).Versions(ctx, key)
	v.s.observe(OpVersions, start, err)
	return vs, err
}
