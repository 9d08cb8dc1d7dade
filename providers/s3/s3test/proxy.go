package s3test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/fault"
)

// Op is the kind of S3 request a proxy rule matches.
type Op string

const (
	OpAny    Op = ""
	OpGet    Op = "get"    // GetObject
	OpPut    Op = "put"    // PutObject, UploadPart, and the other multipart calls
	OpHead   Op = "head"   // HeadObject, HeadBucket
	OpList   Op = "list"   // ListObjectsV2, ListObjectVersions
	OpDelete Op = "delete" // DeleteObject(s)
	OpOther  Op = "other"
)

// Fault is what a proxy does to one request: the shared vocabulary of
// fault.Effect, HTTP fields only (Err has no meaning here). A Status answer has an
// S3 error body, with the code SlowDown for 503, TooManyRequests for 429 and
// InternalError otherwise unless Code says.
type Fault = fault.Effect

// Rule applies a Fault to the requests it matches, when its fault.When selects
// them (Skip, Nth, Times, Fraction).
type Rule struct {
	Op     Op     // OpAny matches every request
	Bucket string // when non-empty, only requests to this bucket
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

// Proxy is a fault-injecting HTTP reverse proxy of ours, on 127.0.0.1, in front of
// an S3 server. Requests keep the Host the client signed, so signatures verify.
// Without rules it forwards everything untouched.
type Proxy struct {
	URL string

	srv *httptest.Server
	rp  *httputil.ReverseProxy

	mu    sync.Mutex
	rules []*Rule
	rng   *fault.Rand
	// counts holds requests the server answered, by op, bucket and status class.
	counts map[string]*atomic.Int64
	// observers see every request the proxy forwarded untouched (Observe).
	observers []func(Exchange)
}

// Exchange is one request the proxy forwarded to the server and its answer.
type Exchange struct {
	Op            Op
	Bucket        string
	Status        int
	At            time.Time // when the request reached the proxy
	RequestBytes  int64     // the request body's length (0 when none or unknown)
	ResponseBytes int64     // the response body bytes sent to the client
}

// Observe calls fn after every request the proxy forwards without a fault (from
// the handler's goroutine, so fn must be safe for concurrent use): a server-side
// count of requests and bytes, for tests of rates. It returns a function that
// stops the calls.
func (p *Proxy) Observe(fn func(Exchange)) (remove func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := len(p.observers)
	p.observers = append(p.observers, fn)
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.observers[id] = nil
	}
}

// Proxy starts a fault-injecting proxy in front of s for the duration of t.
func (s *Server) Proxy(t testing.TB) *Proxy {
	t.Helper()
	p, err := NewProxy(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// NewProxy starts a proxy in front of the server at endpoint (http://127.0.0.1:PORT).
func NewProxy(endpoint string) (*Proxy, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return nil, fmt.Errorf("s3test: the proxy only talks to the loopback interface, not %s", h)
	}
	p := &Proxy{rng: fault.NewRand(0), counts: map[string]*atomic.Int64{}}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	// Never through an HTTP proxy from the environment: loopback only.
	p.rp.Transport = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true}
	p.rp.ErrorLog = log.New(io.Discard, "", 0)
	p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		// The server could not be reached, or the request body was cut on purpose:
		// the client sees its connection dropped.
		panic(http.ErrAbortHandler)
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.Start()
	p.URL = p.srv.URL
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() { p.srv.Close() }

// Config returns a providers.Config for s3://bucket/prefix on s, reached through p.
func (p *Proxy) Config(s *Server, bucket, prefix string) providers.Config {
	cfg := s.Config(bucket, prefix)
	cfg.Endpoint = p.URL
	return cfg
}

// Inject adds a rule and returns a function that removes it.
func (p *Proxy) Inject(r *Rule) (remove func()) {
	p.mu.Lock()
	p.rules = append(p.rules, r)
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for i, x := range p.rules {
			if x == r {
				p.rules = append(p.rules[:i], p.rules[i+1:]...)
				return
			}
		}
	}
}

// Seed restarts the random source that Fraction draws from (0: a random seed), so
// that a run can be repeated.
func (p *Proxy) Seed(seed uint64) { p.rng.Seed(seed) }

// Clear removes every rule.
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
}

// Answered returns how many requests of op to bucket ("" for all) the server
// answered with a 2xx status, through this proxy.
func (p *Proxy) Answered(op Op, bucket string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for k, c := range p.counts {
		parts := strings.SplitN(k, "|", 3)
		if (op == OpAny || parts[0] == string(op)) && (bucket == "" || parts[1] == bucket) && parts[2] == "2xx" {
			n += c.Load()
		}
	}
	return n
}

func (p *Proxy) count(op Op, bucket string, status int) {
	k := fmt.Sprintf("%s|%s|%dxx", op, bucket, status/100)
	p.mu.Lock()
	c := p.counts[k]
	if c == nil {
		c = new(atomic.Int64)
		p.counts[k] = c
	}
	p.mu.Unlock()
	c.Add(1)
}

// Classify returns the op and bucket of an S3 request (path-style addressing).
func Classify(r *http.Request) (Op, string) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodHead:
		return OpHead, bucket
	case r.Method == http.MethodGet && key == "" && (q.Has("list-type") || q.Has("versions") || len(q) == 0 || q.Has("prefix")):
		return OpList, bucket
	case r.Method == http.MethodGet && key != "" && !q.Has("uploadId"):
		return OpGet, bucket
	case r.Method == http.MethodPut && key != "":
		return OpPut, bucket
	case r.Method == http.MethodPost && key != "" && (q.Has("uploads") || q.Has("uploadId")):
		return OpPut, bucket
	case r.Method == http.MethodDelete && key != "" && !q.Has("uploadId"):
		return OpDelete, bucket
	case r.Method == http.MethodPost && key == "" && q.Has("delete"):
		return OpDelete, bucket
	}
	return OpOther, bucket
}

// faultFor merges the faults of every rule that fires for the request.
func (p *Proxy) faultFor(r *http.Request, op Op, bucket string) *Fault {
	p.mu.Lock()
	rules := append([]*Rule(nil), p.rules...)
	p.mu.Unlock()
	var out *Fault
	for _, rule := range rules {
		if rule.Op != OpAny && rule.Op != op || rule.Bucket != "" && rule.Bucket != bucket || rule.Match != nil && !rule.Match(r) {
			continue
		}
		if !rule.n.Fire(rule.When, p.rng) {
			continue
		}
		if rule.Err != nil {
			panic("s3test: a proxy rule's Fault has an Err; answer with a Status instead")
		}
		if out == nil {
			out = &Fault{}
		}
		out.Merge(rule.Fault)
	}
	return out
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	op, bucket := Classify(r)
	at := time.Now()
	f := p.faultFor(r, op, bucket)
	if f == nil {
		sw := &statusWriter{ResponseWriter: w}
		p.rp.ServeHTTP(sw, r)
		p.count(op, bucket, sw.code())
		p.mu.Lock()
		obs := slices.Clone(p.observers)
		p.mu.Unlock()
		for _, fn := range obs {
			if fn != nil {
				fn(Exchange{Op: op, Bucket: bucket, Status: sw.code(), At: at, RequestBytes: max(r.ContentLength, 0), ResponseBytes: sw.n})
			}
		}
		return
	}
	if !f.Wait(r.Context()) {
		return
	}
	if f.Drop {
		panic(http.ErrAbortHandler)
	}
	if f.Status != 0 {
		code := f.Code
		if code == "" {
			switch f.Status {
			case http.StatusServiceUnavailable:
				code = "SlowDown"
			case http.StatusTooManyRequests:
				code = "TooManyRequests"
			default:
				code = "InternalError"
			}
		}
		body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Error><Code>%s</Code><Message>injected fault</Message><Resource>%s</Resource><RequestId>s3test-proxy</RequestId></Error>`, code, r.URL.Path)
		w.Header().Set("Content-Type", "application/xml")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Connection", "close")
		if r.Method == http.MethodHead {
			w.WriteHeader(f.Status)
			return
		}
		w.WriteHeader(f.Status)
		io.WriteString(w, body)
		return
	}
	if r.Body != nil && r.ContentLength > 0 {
		switch {
		case f.TruncateRequest:
			r.Body = fault.CutReader(r.Body, r.ContentLength/2)
		case f.CorruptRequest:
			r.Body = fault.FlipReader(r.Body, r.ContentLength/2)
		}
	}
	if !f.Lost && !f.Truncate && !f.ShortBody && !f.CorruptBody && f.Rewrite == nil {
		sw := &statusWriter{ResponseWriter: w}
		p.rp.ServeHTTP(sw, r)
		p.count(op, bucket, sw.code())
		return
	}
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	p.count(op, bucket, rec.Code)
	if f.Lost {
		// The server handled the request; the client never hears of it.
		panic(http.ErrAbortHandler)
	}
	body := rec.Body.Bytes()
	h := w.Header()
	for k, v := range rec.Header() {
		h[k] = v
	}
	h.Set("Connection", "close")
	if f.Rewrite != nil {
		body = f.Rewrite(rec.Code, h, bytes.Clone(body))
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	if f.CorruptBody && len(body) > 0 {
		body = bytes.Clone(body)
		body[fault.Offset(f.CorruptAt, int64(len(body)))] ^= 0x5a
	}
	switch {
	case f.Truncate && len(body) > 0:
		w.WriteHeader(rec.Code)
		w.Write(body[:fault.Offset(f.TruncateAt, int64(len(body)))])
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	case f.ShortBody && len(body) > 0:
		body = body[:len(body)/2]
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(rec.Code)
	w.Write(body)
}

// statusWriter remembers the status the server answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64 // body bytes written
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.n += int64(n)
	return n, err
}

func (s *statusWriter) Flush() { http.NewResponseController(s.ResponseWriter).Flush() }

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusBadGateway
	}
	return s.status
}
