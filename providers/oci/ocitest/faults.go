package ocitest

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is what happens to one request.
type Fault struct {
	// Status, when non-zero, answers the request with this status and an OCI error
	// body instead of handling it (429, 500, 503, ...). Code overrides the error code.
	Status int
	Code   string
	// Latency delays the request before anything else happens.
	Latency time.Duration
	// Drop closes the connection without a response, before the request has any
	// effect.
	Drop bool
	// DropAfter handles the request (it takes effect) and then closes the connection
	// without sending the response: a lost response.
	DropAfter bool
	// TruncateBody sends only the first TruncateBody bytes of the response body (0:
	// half of it) and then closes the connection, when Truncate is set.
	Truncate     bool
	TruncateBody int64
	// CorruptBody flips one byte of the response body (the byte at CorruptAt, or the
	// middle one when CorruptAt is 0); the length and headers are unchanged.
	CorruptBody bool
	CorruptAt   int64
	// CorruptRequest flips one byte of the request body as the emulator reads it:
	// corruption in flight on an upload.
	CorruptRequest bool
	// Rewrite, when set, receives the complete response (status, headers, body) and
	// returns the body to send instead (headers may be changed in place; the
	// Content-Length is fixed up).
	Rewrite func(status int, h http.Header, body []byte) []byte
}

// Rule applies a Fault to matching requests.
type Rule struct {
	// Op matches the operation name ("PutObject", "ListObjects", "UploadPart", ...);
	// empty matches all.
	Op string
	// Method matches the HTTP method; empty matches all.
	Method string
	// Path, when non-empty, must occur in the request's (decoded) path.
	Path string
	// Match, when set, must also return true.
	Match func(r *http.Request) bool
	// After skips the first After matching requests: After: 2 faults the third
	// matching request and later ones.
	After int
	// Times bounds how many requests the rule faults (0: no bound).
	Times int
	// Fraction, when > 0, faults only this share of the eligible requests, at random.
	Fraction float64

	Fault

	mu      sync.Mutex
	matched int
	fired   int
}

// Fired returns how many requests the rule has faulted.
func (r *Rule) Fired() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fired
}

// Inject adds a rule and returns a function that removes it.
func (s *Server) Inject(r *Rule) (remove func()) {
	s.faultMu.Lock()
	s.rules = append(s.rules, r)
	s.faultMu.Unlock()
	return func() {
		s.faultMu.Lock()
		defer s.faultMu.Unlock()
		for i, x := range s.rules {
			if x == r {
				s.rules = append(s.rules[:i], s.rules[i+1:]...)
				return
			}
		}
	}
}

// ClearFaults removes every rule.
func (s *Server) ClearFaults() {
	s.faultMu.Lock()
	s.rules = nil
	s.faultMu.Unlock()
}

// faultFor merges the faults of every rule that fires for r, and the hook's.
func (s *Server) faultFor(r *http.Request, op string) *Fault {
	s.faultMu.Lock()
	rules := append([]*Rule(nil), s.rules...)
	s.faultMu.Unlock()
	var out *Fault
	merge := func(f Fault) {
		if out == nil {
			out = &Fault{}
		}
		out.Latency += f.Latency
		if out.Status == 0 && !out.Drop {
			out.Status, out.Code = f.Status, f.Code
		}
		out.Drop = out.Drop || f.Drop
		out.DropAfter = out.DropAfter || f.DropAfter
		if f.Truncate {
			out.Truncate, out.TruncateBody = true, f.TruncateBody
		}
		if f.CorruptBody {
			out.CorruptBody, out.CorruptAt = true, f.CorruptAt
		}
		out.CorruptRequest = out.CorruptRequest || f.CorruptRequest
		if f.Rewrite != nil {
			out.Rewrite = f.Rewrite
		}
	}
	for _, rule := range rules {
		if rule.Op != "" && rule.Op != op || rule.Method != "" && !strings.EqualFold(rule.Method, r.Method) ||
			rule.Path != "" && !strings.Contains(r.URL.Path, rule.Path) || rule.Match != nil && !rule.Match(r) {
			continue
		}
		rule.mu.Lock()
		rule.matched++
		fire := rule.matched > rule.After && (rule.Times == 0 || rule.fired < rule.Times)
		if fire && rule.Fraction > 0 {
			s.faultMu.Lock()
			fire = s.rng.Float64() < rule.Fraction
			s.faultMu.Unlock()
		}
		if fire {
			rule.fired++
		}
		rule.mu.Unlock()
		if fire {
			merge(rule.Fault)
		}
	}
	if s.hook != nil {
		if f := s.hook(r, op); f != nil {
			merge(*f)
		}
	}
	return out
}

// applyFault does the parts of f that happen before the request is handled; done
// reports that the request has been answered (or dropped). Otherwise the returned
// writer carries the response faults.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault, rec *statusRecorder) (http.ResponseWriter, bool) {
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			rec.note = "fault: client gone during latency"
			return w, true
		}
	}
	if f.Drop {
		rec.note = "fault: dropped"
		panic(http.ErrAbortHandler)
	}
	if f.Status != 0 {
		rec.note = "fault: status"
		code := f.Code
		if code == "" {
			code = defaultCode(f.Status)
		}
		writeError(w, r, &apiError{status: f.Status, code: code, message: "injected fault"})
		return w, true
	}
	if f.CorruptRequest && r.Body != nil {
		r.Body = &corruptReader{rc: r.Body}
	}
	if f.DropAfter || f.Truncate || f.CorruptBody || f.Rewrite != nil {
		return &faultWriter{w: w, f: f, rec: rec, header: http.Header{}}, false
	}
	return w, false
}

// corruptReader flips one byte in the first chunk of the body it reads.
type corruptReader struct {
	rc   io.ReadCloser
	done bool
}

func (c *corruptReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	if n > 0 && !c.done {
		p[n/2] ^= 0x5a
		c.done = true
	}
	return n, err
}

func (c *corruptReader) Close() error { return c.rc.Close() }

// faultWriter buffers the response, then sends it faulted.
type faultWriter struct {
	w      http.ResponseWriter
	f      *Fault
	rec    *statusRecorder
	header http.Header
	status int
	body   bytes.Buffer
}

func (fw *faultWriter) Header() http.Header { return fw.header }

func (fw *faultWriter) WriteHeader(code int) {
	if fw.status == 0 {
		fw.status = code
	}
}

func (fw *faultWriter) Write(b []byte) (int, error) {
	if fw.status == 0 {
		fw.status = 200
	}
	return fw.body.Write(b)
}

// finish sends the buffered response with the fault applied.
func (fw *faultWriter) finish() {
	f := fw.f
	if fw.status == 0 {
		fw.status = 200
	}
	if f.DropAfter {
		fw.rec.note = "fault: response dropped after the request took effect"
		panic(http.ErrAbortHandler)
	}
	body := fw.body.Bytes()
	if f.Rewrite != nil {
		body = f.Rewrite(fw.status, fw.header, append([]byte(nil), body...))
		fw.header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	if f.CorruptBody && len(body) > 0 {
		at := f.CorruptAt
		if at <= 0 || at >= int64(len(body)) {
			at = int64(len(body)) / 2
		}
		body = append([]byte(nil), body...)
		body[at] ^= 0x5a
		fw.rec.note = "fault: body corrupted"
	}
	h := fw.w.Header()
	for k, v := range fw.header {
		h[k] = v
	}
	if f.Truncate && len(body) > 0 {
		n := f.TruncateBody
		if n <= 0 || n >= int64(len(body)) {
			n = int64(len(body)) / 2
		}
		fw.w.WriteHeader(fw.status)
		fw.w.Write(body[:n])
		http.NewResponseController(fw.w).Flush()
		fw.rec.note = "fault: body truncated"
		panic(http.ErrAbortHandler)
	}
	fw.w.WriteHeader(fw.status)
	fw.w.Write(body)
}
