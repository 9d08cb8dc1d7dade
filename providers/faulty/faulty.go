// Package faulty wraps a providers.Store to inject faults in tests: failed calls,
// calls that fail after taking effect, corrupted reads, listings cut short, and
// hooks that run before a call (to change the inner store between calls).
package faulty

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
	Region     Method = "Region"
)

// Call is what a hook sees.
type Call struct {
	Method Method
	Key    string // empty for List and Region
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

// Store is the fault-injecting decorator. Safe for concurrent use.
type Store struct {
	inner providers.Store

	mu       sync.Mutex
	rules    []*Rule
	rng      *fault.Rand // for Fraction; seeded by Seed
	calls    map[Method]int
	corrupt  map[string]bool // keys whose Open bytes are corrupted; "" = all
	listCut  int             // stop listings after this many objects; -1 = off
	listErr  error           // returned by a cut listing (nil: lie and claim success)
	hooks    []func(context.Context, Call) error
	corruptN int
}

var (
	_ providers.Store              = (*Store)(nil)
	_ providers.ConditionalDeleter = (*Store)(nil)
	_ providers.SoftDeleter        = (*Store)(nil)
	_ providers.Featurer           = (*Store)(nil)
	_ providers.Regioner           = (*Store)(nil)
)

// Wrap returns a decorator around inner with no faults configured.
func Wrap(inner providers.Store) *Store {
	return &Store{inner: inner, calls: map[Method]int{}, corrupt: map[string]bool{}, listCut: -1}
}

// Unwrap returns the inner store.
func (s *Store) Unwrap() providers.Store { return s.inner }

// AddRule adds a fault rule, its counts at zero.
func (s *Store) AddRule(r Rule) *Store {
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
	return s
}

// Seed restarts the random source that rules' Fraction draws from (0: a random
// seed), so that a run can be repeated.
func (s *Store) Seed(seed uint64) *Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rng = fault.NewRand(seed)
	return s
}

// FailNth fails the nth call (1-based) of m with err.
func (s *Store) FailNth(m Method, n int, err error) *Store {
	return s.AddRule(Rule{Method: m, When: fault.When{Nth: n}, Effect: fault.Effect{Err: err}})
}

// FailKey fails every call of m on key with err.
func (s *Store) FailKey(m Method, key string, err error) *Store {
	return s.AddRule(Rule{Method: m, Key: key, Effect: fault.Effect{Err: err}})
}

// CorruptOpen flips the first byte Open returns for key ("" for every key); an
// empty object reads as one byte. The Object Open returns is left as the store
// reported it: the bytes lie, not the description.
func (s *Store) CorruptOpen(key string) *Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt[key] = true
	return s
}

// TruncateList makes List stop after n objects and return nil: a lying store whose
// listing claims to be complete.
func (s *Store) TruncateList(n int) *Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listCut, s.listErr = n, nil
	return s
}

// FailListAfter makes List stop after n objects and return err: a page that fails
// midway.
func (s *Store) FailListAfter(n int, err error) *Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listCut, s.listErr = n, err
	return s
}

// Before runs hook before every call, outside any lock, so it may use the inner
// store. A non-nil error fails the call without reaching the inner store.
func (s *Store) Before(hook func(ctx context.Context, c Call) error) *Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, hook)
	return s
}

// Clear removes every rule, corruption, listing cut and hook. Call counts remain.
func (s *Store) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = nil
	s.corrupt = map[string]bool{}
	s.listCut, s.listErr = -1, nil
	s.hooks = nil
}

// Calls returns how many times m was called.
func (s *Store) Calls(m Method) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[m]
}

// Corrupted returns how many Open calls returned corrupted bytes.
func (s *Store) Corrupted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.corruptN
}

// begin counts the call, runs hooks and returns the error to fail it with before
// (pre) or after (post) the inner call.
func (s *Store) begin(ctx context.Context, m Method, key string) (pre, post error) {
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
func (s *Store) URI(key string) string { return s.inner.URI(key) }

// Close forwards.
func (s *Store) Close() error { return s.inner.Close() }

// Features forwards (unwrapping further decorators).
func (s *Store) Features() providers.Features { return providers.FeaturesOf(s.inner) }

// List forwards, applying a configured cut.
func (s *Store) List(ctx context.Context, fn func(providers.Object) error) error {
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
func (s *Store) Stat(ctx context.Context, key string) (providers.Object, error) {
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
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	pre, post := s.begin(ctx, Open, key)
	if pre != nil {
		return nil, providers.Object{}, pre
	}
	rc, o, err := s.inner.Open(ctx, key)
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
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts providers.PutOptions) (providers.Object, error) {
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
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.do(ctx, Delete, key, func() error { return s.inner.Delete(ctx, key) })
}

// do runs an error-only call between the rules.
func (s *Store) do(ctx context.Context, m Method, key string, call func() error) error {
	pre, post := s.begin(ctx, m, key)
	if pre != nil {
		return pre
	}
	if err := call(); err != nil {
		return err
	}
	return post
}

func unsupported(m Method, inner providers.Store) error {
	return fmt.Errorf("faulty: %s: inner store %T: %w", m, inner, providers.ErrNotSupported)
}

// DeleteIf forwards to the inner ConditionalDeleter, or returns ErrNotSupported.
func (s *Store) DeleteIf(ctx context.Context, key string, expect providers.Object) error {
	cd, ok := s.inner.(providers.ConditionalDeleter)
	if !ok {
		return unsupported(DeleteIf, s.inner)
	}
	return s.do(ctx, DeleteIf, key, func() error { return cd.DeleteIf(ctx, key, expect) })
}

// SoftHandle forwards to the inner SoftDeleter; "" when it has none. It touches no
// store, so no rule applies to it.
func (s *Store) SoftHandle(key string, expect providers.Object) string {
	if sd, ok := s.inner.(providers.SoftDeleter); ok {
		return sd.SoftHandle(key, expect)
	}
	return ""
}

// SoftDelete forwards to the inner SoftDeleter, or returns ErrNotSupported.
func (s *Store) SoftDelete(ctx context.Context, key string, expect providers.Object) (string, error) {
	sd, ok := s.inner.(providers.SoftDeleter)
	if !ok {
		return "", unsupported(SoftDelete, s.inner)
	}
	var h string
	err := s.do(ctx, SoftDelete, key, func() error {
		var err error
		h, err = sd.SoftDelete(ctx, key, expect)
		return err
	})
	if err != nil {
		return "", err
	}
	return h, nil
}

// Restore forwards to the inner SoftDeleter, or returns ErrNotSupported.
func (s *Store) Restore(ctx context.Context, key, handle string) error {
	sd, ok := s.inner.(providers.SoftDeleter)
	if !ok {
		return unsupported(Restore, s.inner)
	}
	return s.do(ctx, Restore, key, func() error { return sd.Restore(ctx, key, handle) })
}

// Purge forwards to the inner SoftDeleter, or returns ErrNotSupported.
func (s *Store) Purge(ctx context.Context, key, handle string) error {
	sd, ok := s.inner.(providers.SoftDeleter)
	if !ok {
		return unsupported(Purge, s.inner)
	}
	return s.do(ctx, Purge, key, func() error { return sd.Purge(ctx, key, handle) })
}

// SoftExists forwards to the inner SoftDeleter, or returns ErrNotSupported.
func (s *Store) SoftExists(ctx context.Context, key, handle string) (bool, error) {
	sd, ok := s.inner.(providers.SoftDeleter)
	if !ok {
		return false, unsupported(SoftExists, s.inner)
	}
	var exists bool
	err := s.do(ctx, SoftExists, key, func() error {
		var err error
		exists, err = sd.SoftExists(ctx, key, handle)
		return err
	})
	if err != nil {
		return false, err
	}
	return exists, nil
}

// Region forwards to the inner Regioner (found through further decorators), or
// returns ErrNotSupported.
func (s *Store) Region(ctx context.Context) (string, error) {
	rg, ok := providers.As[providers.Regioner](s.inner)
	if !ok {
		return "", unsupported(Region, s.inner)
	}
	var region string
	err := s.do(ctx, Region, "", func() error {
		var err error
		region, err = rg.Region(ctx)
		return err
	})
	if err != nil {
		return "", err
	}
	return region, nil
}
