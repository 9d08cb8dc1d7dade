// Package faulty wraps a providers.Store to inject faults in tests: failed calls,
// calls that fail after taking effect, corrupted reads, listings cut short, and
// hooks that run before a call (to change the inner store between calls).
//
// Capabilities pass through honestly, as in providers/limit: Wrap's result implements
// exactly the optional interfaces (ConditionalDeleter, SoftDeleter, RangeLister,
// UncheckedOpener, Versioner) the inner store implements, each subject to the rules
// like the core methods, and no others. What a store reports about itself (Region,
// Recoverability, Identity, Retries, Features) is not decorated: providers.As finds
// it through Unwrap.
package faulty

//go:generate go run ../internal/capgen -pkg faulty -base faults -result Store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/fault"
)

// Method names a Store method (or capability method) that rules match.
type Method string

// The methods a rule can match.
const (
	List       Method = "List"
	Stat       Method = "Stat"
	Open       Method = "Open"
	Put        Method = "Put"
	Delete     Method = "Delete"
	DeleteIf   Method = "DeleteIf"
	SoftDelete Method = "SoftDelete"
	Restore    Method = "Restore"
	Purge      Method = "Purge"
	SoftExists Method = "SoftExists"
	ListRange  Method = "ListRange"
	SplitKeys  Method = "SplitKeys"
	// The Versioner calls. (An OpenUnchecked is an Open to the rules.)
	Versioning Method = "Versioning"
	Versions   Method = "Versions"
	// Region is no longer decorated (Regioner is found through Unwrap); a hook never
	// sees it. Kept so that callers filtering on it still compile.
	Region Method = "Region"
)

// Call is what a hook sees.
type Call struct {
	Method Method
	Key    string // empty for List, ListRange, SplitKeys and Versioning
	N      int    // 1-based count of calls of Method so far, this one included
}

// Rule applies a fault.Effect to the calls it matches, when its fault.When selects
// them (Skip, Nth, Times, Fraction; the zero When: every matching call).
//
// Of the Effect, a Go call honours: Latency (a delay before the call); Err or Drop
// (the call fails with Err, default fault.ErrDropped, without reaching the inner
// store); and Lost (the inner call is made, then the caller gets Err, default
// fault.ErrLost: the effect happened but the response was lost). The HTTP-only
// fields (Status, Truncate, ...) have no meaning here: AddRule panics on them.
type Rule struct {
	Method Method // "" matches every method
	Key    string // "" matches every key; otherwise exact match
	// Match, when set, must also return true. It runs under the Store's lock, so it
	// must not call the Store.
	Match func(Call) bool

	fault.When
	fault.Effect

	n *fault.Counter
}

// Store is what Wrap returns: the decorated store, with exactly the inner store's
// optional capabilities, and the controls that configure its faults. Safe for
// concurrent use. Each control returns the Store, for chaining.
type Store interface {
	providers.Store
	// Unwrap returns the inner store.
	Unwrap() providers.Store
	// AddRule adds a fault rule, its counts at zero.
	AddRule(r Rule) Store
	// Seed restarts the random source that rules' Fraction draws from (0: a random
	// seed), so that a run can be repeated.
	Seed(seed uint64) Store
	// FailNth fails the nth call (1-based) of m with err.
	FailNth(m Method, n int, err error) Store
	// FailKey fails every call of m on key with err.
	FailKey(m Method, key string, err error) Store
	// CorruptOpen flips the first byte Open (and OpenUnchecked) returns for key (""
	// for every key); an empty object reads as one byte. The Object returned is left
	// as the store reported it: the bytes lie, not the description.
	CorruptOpen(key string) Store
	// TruncateList makes List stop after n objects and return nil: a lying store
	// whose listing claims to be complete.
	TruncateList(n int) Store
	// FailListAfter makes List stop after n objects and return err: a page that fails
	// midway.
	FailListAfter(n int, err error) Store
	// Before runs hook before every call, outside any lock, so it may use the inner
	// store. A non-nil error fails the call without reaching the inner store.
	Before(hook func(ctx context.Context, c Call) error) Store
	// RefuseRanges makes ListRange and SplitKeys return ErrNotSupported before
	// listing anything, as a store that cannot list by range in its configuration
	// does (a versioned S3 bucket): callers list it whole.
	RefuseRanges() Store
	// KeepOpen makes Close not close the inner store, for a harness that opens and
	// closes migrations over the same stores.
	KeepOpen() Store
	// Clear removes every rule, corruption, listing cut and hook, and RefuseRanges.
	// Call counts remain.
	Clear()
	// Calls returns how many times m was called.
	Calls(m Method) int
	// Corrupted returns how many Open calls returned corrupted bytes.
	Corrupted() int
}

// faults is the decorator's state and its core methods; Wrap returns it inside a
// generated type (caps.go) with exactly the inner store's optional capabilities.
type faults struct {
	inner providers.Store
	self  Store // what Wrap returned, for the controls to return

	mu       sync.Mutex
	rules    []*Rule
	rng      *fault.Rand // for Fraction; seeded by Seed
	calls    map[Method]int
	corrupt  map[string]bool // keys whose Open bytes are corrupted; "" = all
	listCut  int             // stop listings after this many objects; -1 = off
	listErr  error           // returned by a cut listing (nil: lie and claim success)
	hooks    []func(context.Context, Call) error
	corruptN int
	keepOpen bool
	noRanges bool
}

var (
	_ Store              = (*faults)(nil)
	_ providers.Featurer = (*faults)(nil)
)

// Wrap returns a decorator around inner with no faults configured.
func Wrap(inner providers.Store) Store {
	s := &faults{inner: inner, calls: map[Method]int{}, corrupt: map[string]bool{}, listCut: -1}
	s.self = withCaps(s, capsOf(inner))
	return s.self
}

func (s *faults) Unwrap() providers.Store { return s.inner }

func (s *faults) AddRule(r Rule) Store {
	if f := r.HTTPOnly(); f != "" {
		panic(fmt.Sprintf("faulty: a rule's %s has no meaning for a Store; use Err, Drop, Lost or Latency", f))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rng == nil {
		s.rng = fault.NewRand(0)
	}
	r.n = new(fault.Counter)
	s.rules = append(s.rules, &r)
	return s.self
}

func (s *faults) Seed(seed uint64) Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rng = fault.NewRand(seed)
	return s.self
}

func (s *faults) FailNth(m Method, n int, err error) Store {
	return s.AddRule(Rule{Method: m, When: fault.When{Nth: n}, Effect: fault.Effect{Err: err}})
}

func (s *faults) FailKey(m Method, key string, err error) Store {
	return s.AddRule(Rule{Method: m, Key: key, Effect: fault.Effect{Err: err}})
}

func (s *faults) CorruptOpen(key string) Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt[key] = true
	return s.self
}

func (s *faults) TruncateList(n int) Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listCut, s.listErr = n, nil
	return s.self
}

func (s *faults) FailListAfter(n int, err error) Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listCut, s.listErr = n, err
	return s.self
}

func (s *faults) Before(hook func(ctx context.Context, c Call) error) Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, hook)
	return s.self
}

func (s *faults) RefuseRanges() Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noRanges = true
	return s.self
}

func (s *faults) KeepOpen() Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keepOpen = true
	return s.self
}

func (s *faults) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = nil
	s.corrupt = map[string]bool{}
	s.listCut, s.listErr = -1, nil
	s.noRanges = false
	s.hooks = nil
}

func (s *faults) Calls(m Method) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[m]
}

func (s *faults) Corrupted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.corruptN
}

// begin counts the call, runs hooks and returns the error to fail it with before
// (pre) or after (post) the inner call.
func (s *faults) begin(ctx context.Context, m Method, key string) (pre, post error) {
	s.mu.Lock()
	s.calls[m]++
	c := Call{Method: m, Key: key, N: s.calls[m]}
	hooks := s.hooks
	var delay fault.Effect
	for _, r := range s.rules {
		if (r.Method != "" && r.Method != m) || (r.Key != "" && r.Key != key) || (r.Match != nil && !r.Match(c)) {
			continue
		}
		if !r.n.Fire(r.When, s.rng) {
			continue
		}
		delay.Latency += r.Latency
		switch {
		case r.Lost && !r.Drop:
			if post == nil {
				post = fmt.Errorf("faulty: %s %q: %w", m, key, cmp.Or(r.Err, fault.ErrLost))
			}
		case r.Err != nil || r.Drop:
			if pre == nil {
				pre = fmt.Errorf("faulty: %s %q: %w", m, key, cmp.Or(r.Err, fault.ErrDropped))
			}
		}
	}
	s.mu.Unlock()
	if !delay.Wait(ctx) {
		return ctx.Err(), nil
	}
	for _, h := range hooks {
		if err := h(ctx, c); err != nil {
			return err, nil
		}
	}
	return pre, post
}

// URI forwards.
func (s *faults) URI(key string) string { return s.inner.URI(key) }

// Close forwards, unless KeepOpen.
func (s *faults) Close() error {
	s.mu.Lock()
	keep := s.keepOpen
	s.mu.Unlock()
	if keep {
		return nil
	}
	return s.inner.Close()
}

// Features forwards (unwrapping further decorators).
func (s *faults) Features() providers.Features { return providers.FeaturesOf(s.inner) }

// List forwards, applying a configured cut.
func (s *faults) List(ctx context.Context, fn func(providers.Object) error) error {
	pre, post := s.begin(ctx, List, "")
	if pre != nil {
		return pre
	}
	s.mu.Lock()
	cut, cutErr := s.listCut, s.listErr
	s.mu.Unlock()
	if cut < 0 {
		if err := s.inner.List(ctx, fn); err != nil {
			return err
		}
		return post
	}
	n, stopped := 0, false
	err := s.inner.List(ctx, func(o providers.Object) error {
		if n >= cut {
			stopped = true
			return errStop
		}
		n++
		return fn(o)
	})
	if stopped {
		return cutErr // nil: the lie
	}
	if err != nil {
		return err
	}
	return post
}

var errStop = errors.New("faulty: listing cut")

// Stat forwards.
func (s *faults) Stat(ctx context.Context, key string) (providers.Object, error) {
	pre, post := s.begin(ctx, Stat, key)
	if pre != nil {
		return providers.Object{}, pre
	}
	o, err := s.inner.Stat(ctx, key)
	if err != nil {
		return o, err
	}
	if post != nil {
		return providers.Object{}, post
	}
	return o, nil
}

// Open forwards, corrupting the bytes when configured.
func (s *faults) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	pre, post := s.begin(ctx, Open, key)
	if pre != nil {
		return nil, providers.Object{}, pre
	}
	rc, o, err := s.inner.Open(ctx, key)
	return s.finishOpen(key, post, rc, o, err)
}

// finishOpen ends an Open-like call of key: with the failure post, or with the bytes,
// corrupted when configured.
func (s *faults) finishOpen(key string, post error, rc io.ReadCloser, o providers.Object, err error) (io.ReadCloser, providers.Object, error) {
	if err != nil {
		return rc, o, err
	}
	if post != nil {
		rc.Close()
		return nil, providers.Object{}, post
	}
	s.mu.Lock()
	bad := s.corrupt[key] || s.corrupt[""]
	if bad {
		s.corruptN++
	}
	s.mu.Unlock()
	if bad {
		rc = &corrupter{ReadCloser: rc}
	}
	return rc, o, nil
}

// corrupter flips the first byte, or adds one to an empty stream.
type corrupter struct {
	io.ReadCloser
	done bool
}

func (c *corrupter) Read(p []byte) (int, error) {
	if c.done || len(p) == 0 {
		return c.ReadCloser.Read(p)
	}
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		p[0] ^= 0xff
		c.done = true
		return n, err
	}
	if err == io.EOF {
		p[0] = 'x'
		c.done = true
		return 1, nil
	}
	return n, err
}

// Put forwards.
func (s *faults) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
	pre, post := s.begin(ctx, Put, key)
	if pre != nil {
		return providers.Object{}, pre
	}
	o, err := s.inner.Put(ctx, key, r, size, opts)
	if err != nil {
		return o, err
	}
	if post != nil {
		return providers.Object{}, post
	}
	return o, nil
}

// Delete forwards.
func (s *faults) Delete(ctx context.Context, key string) error {
	return s.do(ctx, Delete, key, func() error { return s.inner.Delete(ctx, key) })
}

// do runs an error-only call between the rules.
func (s *faults) do(ctx context.Context, m Method, key string, call func() error) error {
	pre, post := s.begin(ctx, m, key)
	if pre != nil {
		return pre
	}
	if err := call(); err != nil {
		return err
	}
	return post
}

// ---- optional capabilities, present exactly when the inner store has them ----

type conditionalDeleter struct{ s *faults }

func (c conditionalDeleter) DeleteIf(ctx context.Context, key string, expect providers.Object) error {
	return c.s.do(ctx, DeleteIf, key, func() error {
		return c.s.inner.(providers.ConditionalDeleter).DeleteIf(ctx, key, expect)
	})
}

type softDeleter struct{ s *faults }

func (d softDeleter) sd() providers.SoftDeleter { return d.s.inner.(providers.SoftDeleter) }

// SoftHandle touches no store, so no rule applies to it.
func (d softDeleter) SoftHandle(key string, expect providers.Object) string {
	return d.sd().SoftHandle(key, expect)
}

func (d softDeleter) SoftDelete(ctx context.Context, key string, expect providers.Object) (string, error) {
	var h string
	err := d.s.do(ctx, SoftDelete, key, func() error {
		var err error
		h, err = d.sd().SoftDelete(ctx, key, expect)
		return err
	})
	if err != nil {
		return "", err
	}
	return h, nil
}

func (d softDeleter) Restore(ctx context.Context, key, handle string) error {
	return d.s.do(ctx, Restore, key, func() error { return d.sd().Restore(ctx, key, handle) })
}

func (d softDeleter) Purge(ctx context.Context, key, handle string) error {
	return d.s.do(ctx, Purge, key, func() error { return d.sd().Purge(ctx, key, handle) })
}

func (d softDeleter) SoftExists(ctx context.Context, key, handle string) (bool, error) {
	var exists bool
	err := d.s.do(ctx, SoftExists, key, func() error {
		var err error
		exists, err = d.sd().SoftExists(ctx, key, handle)
		return err
	})
	if err != nil {
		return false, err
	}
	return exists, nil
}

// rangeLister lists by range between the rules. After RefuseRanges, and while a
// listing cut is configured (TruncateList, FailListAfter), it refuses ranges, before
// listing anything, as a store that cannot list by range in its current
// configuration does: the caller then makes the one whole listing a cut applies to.
type rangeLister struct{ s *faults }

func (r rangeLister) refused() error {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	switch {
	case r.s.noRanges:
		return fmt.Errorf("faulty: ranges refused: %w", providers.ErrNotSupported)
	case r.s.listCut >= 0:
		return fmt.Errorf("faulty: listing cut configured: %w", providers.ErrNotSupported)
	}
	return nil
}

func (r rangeLister) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	if err := r.refused(); err != nil {
		return err
	}
	return r.s.do(ctx, ListRange, "", func() error {
		return r.s.inner.(providers.RangeLister).ListRange(ctx, after, through, fn)
	})
}

func (r rangeLister) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	if err := r.refused(); err != nil {
		return nil, err
	}
	var keys []string
	err := r.s.do(ctx, SplitKeys, "", func() error {
		var err error
		keys, err = r.s.inner.(providers.RangeLister).SplitKeys(ctx, parts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// uncheckedOpener: an OpenUnchecked is an Open to the rules, the hooks, the counts
// and CorruptOpen, so that a fault set on reads applies however the caller reads.
type uncheckedOpener struct{ s *faults }

func (u uncheckedOpener) OpenUnchecked(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	pre, post := u.s.begin(ctx, Open, key)
	if pre != nil {
		return nil, providers.Object{}, pre
	}
	rc, o, err := u.s.inner.(providers.UncheckedOpener).OpenUnchecked(ctx, key)
	return u.s.finishOpen(key, post, rc, o, err)
}

type versioner struct{ s *faults }

func (v versioner) Versioning(ctx context.Context) (bool, error) {
	var on bool
	err := v.s.do(ctx, Versioning, "", func() error {
		var err error
		on, err = v.s.inner.(providers.Versioner).Versioning(ctx)
		return err
	})
	if err != nil {
		return false, err
	}
	return on, nil
}

func (v versioner) Versions(ctx context.Context, key string) ([]providers.Object, error) {
	var vs []providers.Object
	err := v.s.do(ctx, Versions, key, func() error {
		var err error
		vs, err = v.s.inner.(providers.Versioner).Versions(ctx, key)
		return err
	})
	if err != nil {
		return nil, err
	}
	return vs, nil
}
