// Package journaled is a providers.Store decorator that reports every request that
// touches user data (listing, head, read, write, delete, soft delete, restore, purge)
// to a Recorder, with the key, the version it concerned, the store's request ids (when
// the store notes them: providers.NoteRequestID), the time and the outcome. ferry's
// journal of its own access (migrate/journal.go) is the Recorder. It changes nothing
// about the requests themselves.
//
// Capabilities pass through honestly, as in providers/metered: the decorated store
// implements exactly the optional interfaces the inner store implements, and no others.
// Calls that touch no user data (SoftHandle, Versioning, Region, Identity) are not
// journalled.
package journaled

//go:generate go run ../internal/capgen -pkg journaled

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"github.com/ferrymigrate/ferry/providers"
)

// Operations, the journal's vocabulary (the `op` of an entry).
const (
	OpList       = "list"
	OpHead       = "head"
	OpRead       = "read"
	OpWrite      = "write"
	OpDelete     = "delete"
	OpSoftDelete = "soft_delete"
	OpRestore    = "restore"
	OpPurge      = "purge"
)

// Event is one request.
type Event struct {
	Op   string // one of the Op constants
	Call string // the store method: List, ListRange, SplitKeys, Stat, Open, ...
	Key  string // relative to the store's root; "" for a whole-store listing
	// Version and ETag name the version the request concerned: the one read, written
	// or stat'ed as the store reported it, or the one a conditional delete expected.
	Version, ETag string
	Handle        string // soft delete, restore, purge: where the kept bytes are
	Count         int64  // listings: objects listed
	RequestIDs    []string
	Time          time.Time // when the request started
	Err           error     // nil: the store answered with success
}

// Recorder receives one Event per request. It must be safe for concurrent use and quick.
type Recorder interface {
	Record(Event)
}

// Store is the journalling decorator. Wrap returns it inside a type that has exactly
// the inner store's optional capabilities.
type Store struct {
	inner providers.Store
	rec   Recorder
	now   func() time.Time
}

// Wrap returns inner, its requests reported to rec.
func Wrap(inner providers.Store, rec Recorder) providers.Store {
	return withCaps(&Store{inner: inner, rec: rec, now: time.Now}, capsOf(inner))
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

// Features forwards the inner chain's features.
func (s *Store) Features() providers.Features { return providers.FeaturesOf(s.inner) }

// call is one request in flight.
type call struct {
	s   *Store
	ev  Event
	ids *providers.RequestIDs
}

func (s *Store) begin(ctx context.Context, op, method, key string) (context.Context, *call) {
	ctx, ids := providers.WithRequestIDs(ctx)
	return ctx, &call{s: s, ev: Event{Op: op, Call: method, Key: key, Time: s.now()}, ids: ids}
}

// end reports the request with its outcome; o, when not nil, names the version.
func (c *call) end(o *providers.Object, err error) {
	if o != nil {
		c.ev.Version, c.ev.ETag = o.Version, o.ETag
	}
	c.ev.Err = err
	c.ev.RequestIDs = c.ids.IDs()
	c.s.rec.Record(c.ev)
}

// counting wraps fn to count the objects listed.
func counting(fn func(providers.Object) error, n *atomic.Int64) func(providers.Object) error {
	return func(o providers.Object) error {
		n.Add(1)
		return fn(o)
	}
}

// List is journalled as one request (its pages' request ids all noted).
func (s *Store) List(ctx context.Context, fn func(providers.Object) error) error {
	ctx, c := s.begin(ctx, OpList, "List", "")
	var n atomic.Int64
	err := s.inner.List(ctx, counting(fn, &n))
	c.ev.Count = n.Load()
	c.end(nil, err)
	return err
}

// Stat is a head.
func (s *Store) Stat(ctx context.Context, key string) (providers.Object, error) {
	ctx, c := s.begin(ctx, OpHead, "Stat", key)
	o, err := s.inner.Stat(ctx, key)
	c.end(&o, err)
	return o, err
}

// Open is a read (journalled when the store answered, with the version being read).
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	ctx, c := s.begin(ctx, OpRead, "Open", key)
	rc, o, err := s.inner.Open(ctx, key)
	c.end(&o, err)
	return rc, o, err
}

// Put is a write, with the version the store reports it stored.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	ctx, c := s.begin(ctx, OpWrite, "Put", key)
	o, err := s.inner.Put(ctx, key, r, size, opts)
	c.end(&o, err)
	return o, err
}

// Delete is an unconditional delete.
func (s *Store) Delete(ctx context.Context, key string) error {
	ctx, c := s.begin(ctx, OpDelete, "Delete", key)
	err := s.inner.Delete(ctx, key)
	c.end(nil, err)
	return err
}

// ---- optional capabilities, present exactly when the inner store has them ----

type conditionalDeleter struct{ s *Store }

func (d conditionalDeleter) DeleteIf(ctx context.Context, key string, expect providers.Object) error {
	ctx, c := d.s.begin(ctx, OpDelete, "DeleteIf", key)
	err := d.s.inner.(providers.ConditionalDeleter).DeleteIf(ctx, key, expect)
	c.end(&expect, err)
	return err
}

type softDeleter struct{ s *Store }

func (d softDeleter) sd() providers.SoftDeleter { return d.s.inner.(providers.SoftDeleter) }

// SoftHandle touches no store: not journalled.
func (d softDeleter) SoftHandle(key string, expect providers.Object) string {
	return d.sd().SoftHandle(key, expect)
}

func (d softDeleter) SoftDelete(ctx context.Context, key string, expect providers.Object) (string, error) {
	ctx, c := d.s.begin(ctx, OpSoftDelete, "SoftDelete", key)
	h, err := d.sd().SoftDelete(ctx, key, expect)
	c.ev.Handle = h
	c.end(&expect, err)
	return h, err
}

func (d softDeleter) Restore(ctx context.Context, key, handle string) error {
	ctx, c := d.s.begin(ctx, OpRestore, "Restore", key)
	err := d.sd().Restore(ctx, key, handle)
	c.ev.Handle = handle
	c.end(nil, err)
	return err
}

func (d softDeleter) Purge(ctx context.Context, key, handle string) error {
	ctx, c := d.s.begin(ctx, OpPurge, "Purge", key)
	err := d.sd().Purge(ctx, key, handle)
	c.ev.Handle = handle
	c.end(nil, err)
	return err
}

func (d softDeleter) SoftExists(ctx context.Context, key, handle string) (bool, error) {
	ctx, c := d.s.begin(ctx, OpHead, "SoftExists", key)
	ok, err := d.sd().SoftExists(ctx, key, handle)
	c.ev.Handle = handle
	c.end(nil, err)
	return ok, err
}

type rangeLister struct{ s *Store }

func (r rangeLister) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	// The key names the range listed: "after..through".
	ctx, c := r.s.begin(ctx, OpList, "ListRange", after+".."+through)
	var n atomic.Int64
	err := r.s.inner.(providers.RangeLister).ListRange(ctx, after, through, counting(fn, &n))
	c.ev.Count = n.Load()
	c.end(nil, err)
	return err
}

// SplitKeys lists the store's first level (key names, which name users): a listing.
func (r rangeLister) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	ctx, c := r.s.begin(ctx, OpList, "SplitKeys", "")
	keys, err := r.s.inner.(providers.RangeLister).SplitKeys(ctx, parts)
	c.ev.Count = int64(len(keys))
	c.end(nil, err)
	return keys, err
}

type uncheckedOpener struct{ s *Store }

func (u uncheckedOpener) OpenUnchecked(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	ctx, c := u.s.begin(ctx, OpRead, "OpenUnchecked", key)
	rc, o, err := u.s.inner.(providers.UncheckedOpener).OpenUnchecked(ctx, key)
	c.end(&o, err)
	return rc, o, err
}

type versioner struct{ s *Store }

// Versioning asks about the bucket, not about user data: not journalled.
func (v versioner) Versioning(ctx context.Context) (bool, error) {
	return v.s.inner.(providers.Versioner).Versioning(ctx)
}

// Versions lists one key's versions.
func (v versioner) Versions(ctx context.Context, key string) ([]providers.Object, error) {
	ctx, c := v.s.begin(ctx, OpList, "Versions", key)
	vs, err := v.s.inner.(providers.Versioner).Versions(ctx, key)
	c.ev.Count = int64(len(vs))
	c.end(nil, err)
	return vs, err
}
