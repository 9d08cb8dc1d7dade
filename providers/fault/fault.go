// Package fault is the fault engine shared by ferry's fault-injecting test tools:
// the faulty Store decorator (providers/faulty), the S3 fault proxy
// (providers/s3/s3test) and the OCI emulator (providers/oci/ocitest).
//
// A fault rule has three parts:
//
//   - what calls it matches: specific to each tool (a Store method and key; an S3
//     op and bucket; an OCI operation, method and path; a Match func);
//   - When it fires among the calls it matches: Skip, Nth, Times and Fraction,
//     counted by a Counter; the same for every tool;
//   - the Effect of firing: an error or an HTTP status, latency, a call dropped
//     before it takes effect, a response lost after it took effect, a body cut
//     short or corrupted; one vocabulary, each field with one meaning everywhere.
package fault

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// When selects, among the calls a rule matches, the ones it fires on. The zero
// When fires on every matching call. Matches are counted from 1, in the order the
// rule sees them; a condition that is zero does not restrict.
type When struct {
	// Skip ignores the first Skip matching calls: Skip: 2 can fire on the third
	// match and later ones.
	Skip int
	// Nth, when > 0, fires only on the Nth matching call (1-based, counting every
	// match, skipped ones included): at most once.
	Nth int
	// Times, when > 0, bounds how many calls the rule fires on: a transient fault.
	Times int
	// Fraction, when > 0, fires on only this share of the calls the other
	// conditions allow, drawn from the tool's seeded Rand; 1 or more fires on all.
	Fraction float64
}

// Counter counts the calls one rule matched and fired on, and decides whether it
// fires. The zero Counter is ready; it is safe for concurrent use. Do not copy a
// Counter after first use.
type Counter struct {
	mu      sync.Mutex
	matched int
	fired   int
}

// Fire records one matching call and reports whether the rule fires on it under
// w. rnd decides Fraction (nil: an unseeded source); it is drawn from only when
// every other condition allows the call, so a seeded run is reproducible.
func (c *Counter) Fire(w When, rnd *Rand) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.matched++
	fire := c.matched > w.Skip &&
		(w.Nth <= 0 || c.matched == w.Nth) &&
		(w.Times <= 0 || c.fired < w.Times)
	if fire && w.Fraction > 0 && w.Fraction < 1 {
		fire = rnd.Float64() < w.Fraction
	}
	if fire {
		c.fired++
	}
	return fire
}

// Matched returns how many calls the rule matched.
func (c *Counter) Matched() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.matched
}

// Fired returns how many calls the rule fired on.
func (c *Counter) Fired() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired
}

// Reset zeroes the counts.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.matched, c.fired = 0, 0
}

// Rand is a seeded random source for Fraction, safe for concurrent use. A nil
// *Rand draws from an unseeded source.
type Rand struct {
	mu sync.Mutex
	r  *rand.Rand
}

// NewRand returns a source seeded with seed; 0 picks a random seed.
func NewRand(seed uint64) *Rand {
	r := &Rand{}
	r.Seed(seed)
	return r
}

// Seed restarts the source from seed; 0 picks a random seed.
func (r *Rand) Seed(seed uint64) {
	if seed == 0 {
		seed = rand.Uint64()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.r = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// Float64 returns a number in [0, 1).
func (r *Rand) Float64() float64 {
	if r == nil {
		return rand.Float64()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.r.Float64()
}

// Errors an Effect with no Err fails a Go call with (the faulty decorator).
var (
	// ErrDropped: the call failed before it took effect (Drop).
	ErrDropped = errors.New("fault: call dropped before it took effect")
	// ErrLost: the call took effect but its response was lost (Lost).
	ErrLost = errors.New("fault: call took effect, response lost")
)

// Effect is what a rule does to a call it fires on. Effects of several rules
// firing on one call combine with Merge. In order, a faulted call: waits Latency;
// is dropped (Drop), or answered with Err or Status without taking effect; has
// its request body corrupted or cut; takes effect; then has its response lost
// (Lost), rewritten, corrupted, or cut short (Truncate, ShortBody).
//
// Err applies to Go calls (the faulty decorator) only; Status, Code and the body
// faults apply to HTTP only. A tool given a field it cannot honour says so rather
// than ignore it.
type Effect struct {
	// Err fails a Go call with this error: before the call takes effect, or after
	// it when Lost is set.
	Err error
	// Status answers an HTTP request with this status and the service's error body,
	// without handling it (429, 500, 503, ...). Code overrides the error code (the
	// default depends on the service and status).
	Status int
	Code   string
	// Latency delays the call before anything else happens (a latency spike); it
	// ends early when the caller gives up.
	Latency time.Duration
	// Drop fails the call before it takes effect, with no answer: an HTTP
	// connection is closed without a response; a Go call fails with Err (default
	// ErrDropped).
	Drop bool
	// Lost performs the call (it takes effect) and then loses the response: an HTTP
	// connection is closed without a response; a Go call fails with Err (default
	// ErrLost).
	Lost bool
	// Truncate sends the response's headers and its body up to TruncateAt bytes (0,
	// or beyond the end: half of it), then closes the connection: the length
	// promised is not met.
	Truncate   bool
	TruncateAt int64
	// ShortBody sends the first half of the response body as if it were all of it
	// (Content-Length fixed up): a clean-looking short body.
	ShortBody bool
	// CorruptBody flips one byte of the response body, the one at CorruptAt (0, or
	// beyond the end: the middle one); the length and headers are unchanged.
	CorruptBody bool
	CorruptAt   int64
	// CorruptRequest flips the middle byte of the request body on its way to the
	// server (corruption in flight on an upload).
	CorruptRequest bool
	// TruncateRequest lets only the first half of the request body reach the
	// server, then closes the client's connection.
	TruncateRequest bool
	// Rewrite receives the complete response (status, headers, body) and returns the
	// body to send instead (headers may be changed in place; Content-Length is fixed
	// up).
	Rewrite func(status int, h http.Header, body []byte) []byte
}

// Merge adds the effect of another rule firing on the same call: latencies add;
// the first Err, the first Status (with its Code), the first Truncate and
// CorruptBody offsets and the first Rewrite win; the flags combine.
func (e *Effect) Merge(f Effect) {
	e.Latency += f.Latency
	if e.Err == nil {
		e.Err = f.Err
	}
	if e.Status == 0 {
		e.Status, e.Code = f.Status, f.Code
	}
	e.Drop = e.Drop || f.Drop
	e.Lost = e.Lost || f.Lost
	if f.Truncate && !e.Truncate {
		e.Truncate, e.TruncateAt = true, f.TruncateAt
	}
	e.ShortBody = e.ShortBody || f.ShortBody
	if f.CorruptBody && !e.CorruptBody {
		e.CorruptBody, e.CorruptAt = true, f.CorruptAt
	}
	e.CorruptRequest = e.CorruptRequest || f.CorruptRequest
	e.TruncateRequest = e.TruncateRequest || f.TruncateRequest
	if e.Rewrite == nil {
		e.Rewrite = f.Rewrite
	}
}

// HTTPOnly names a field set in e that only HTTP tools honour ("" when none).
func (e *Effect) HTTPOnly() string {
	switch {
	case e.Status != 0 || e.Code != "":
		return "Status"
	case e.Truncate || e.TruncateAt != 0:
		return "Truncate"
	case e.ShortBody:
		return "ShortBody"
	case e.CorruptBody || e.CorruptAt != 0:
		return "CorruptBody"
	case e.CorruptRequest:
		return "CorruptRequest"
	case e.TruncateRequest:
		return "TruncateRequest"
	case e.Rewrite != nil:
		return "Rewrite"
	}
	return ""
}

// Wait sleeps for e.Latency; false when ctx ended first.
func (e *Effect) Wait(ctx context.Context) bool {
	if e.Latency <= 0 {
		return true
	}
	t := time.NewTimer(e.Latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Offset returns where in a body of n bytes a fault set at at applies: at itself
// when 0 < at < n, else the middle.
func Offset(at, n int64) int64 {
	if at <= 0 || at >= n {
		return n / 2
	}
	return at
}

// FlipReader flips the byte at offset at of rc's stream.
func FlipReader(rc io.ReadCloser, at int64) io.ReadCloser {
	return &flipReader{rc: rc, at: at}
}

type flipReader struct {
	rc  io.ReadCloser
	at  int64
	off int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.rc.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0x5a
	}
	f.off += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.rc.Close() }

// CutReader yields the first n bytes of rc, then fails with io.ErrUnexpectedEOF as
// a connection cut mid-body would.
func CutReader(rc io.ReadCloser, n int64) io.ReadCloser {
	return &cutReader{rc: rc, left: n}
}

type cutReader struct {
	rc   io.ReadCloser
	left int64
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutReader) Close() error { return c.rc.Close() }
