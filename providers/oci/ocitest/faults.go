package ocitest

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"

	"github.com/ferrymigrate/ferry/providers/fault"
)

// Fault is what happens to one request: the shared vocabulary of fault.Effect,
// HTTP fields only (Err has no meaning here). A Status answer has an OCI error
// body; Code overrides its code.
type Fault = fault.Effect

// Rule applies a Fault to the requests it matches, when its fault.When selects
// them (Skip, Nth, Times, Fraction).
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

	fault.When
	Fault

	n fault.Counter
}

// Fired returns how many requests the rule has faulted.
func (r *Rule) Fired() int { return r.n.Fired() }

// Matched returns how many requests the rule has matched.
func (r *Rule) Matched() int { return r.n.Matched() }

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
		if f.Err != nil {
			panic("ocitest: a fault has an Err; answer with a Status instead")
		}
		if out == nil {
			out = &Fault{}
		}
		out.Merge(f)
	}
	for _, rule := range rules {
		if rule.Op != "" && rule.Op != op || rule.Method != "" && !strings.EqualFold(rule.Method, r.Method) ||
			rule.Path != "" && !strings.Contains(r.URL.Path, rule.Path) || rule.Match != nil && !rule.Match(r) {
			continue
		}
		if rule.n.Fire(rule.When, s.rng) {
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
	if !f.Wait(r.Context()) {
		rec.note = "fault: client gone during latency"
		return w, true
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
	if r.Body != nil && r.ContentLength != 0 {
		switch {
		case f.TruncateRequest && r.ContentLength > 0:
			// The handler sees the body end early; finish then drops the connection.
			r.Body = fault.CutReader(r.Body, r.ContentLength/2)
		case f.CorruptRequest:
			r.Body = fault.FlipReader(r.Body, max(r.ContentLength/2, 0))
		}
	}
	if f.Lost || f.TruncateRequest || f.Truncate || f.ShortBody || f.CorruptBody || f.Rewrite != nil {
		return &faultWriter{w: w, f: f, rec: rec, header: http.Header{}}, false
	}
	return w, false
}

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
	if f.TruncateRequest {
		fw.rec.note = "fault: request body cut, connection dropped"
		panic(http.ErrAbortHandler)
	}
	if f.Lost {
		fw.rec.note = "fault: response lost after the request took effect"
		panic(http.ErrAbortHandler)
	}
	body := fw.body.Bytes()
	if f.Rewrite != nil {
		body = f.Rewrite(fw.status, fw.header, append([]byte(nil), body...))
		fw.header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	if f.CorruptBody && len(body) > 0 {
		body = append([]byte(nil), body...)
		body[fault.Offset(f.CorruptAt, int64(len(body)))] ^= 0x5a
		fw.rec.note = "fault: body corrupted"
	}
	h := fw.w.Header()
	for k, v := range fw.header {
		h[k] = v
	}
	if f.Truncate && len(body) > 0 {
		fw.w.WriteHeader(fw.status)
		fw.w.Write(body[:fault.Offset(f.TruncateAt, int64(len(body)))])
		http.NewResponseController(fw.w).Flush()
		fw.rec.note = "fault: body truncated"
		panic(http.ErrAbortHandler)
	}
	if f.ShortBody && len(body) > 0 {
		body = body[:len(body)/2]
		h.Set("Content-Length", strconv.Itoa(len(body)))
		fw.rec.note = "fault: body cut short"
	}
	fw.w.WriteHeader(fw.status)
	fw.w.Write(body)
}
