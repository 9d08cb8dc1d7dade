// Package ocitest is an emulator of the Oracle Cloud Infrastructure Object Storage
// REST API, as the oci-go-sdk objectstorage client speaks it. Tests start it
// in-process with Start; cmd/ociemu runs it standalone with New.
//
// It is meant to be strict where OCI is strict, so that passing against it means
// passing against OCI:
//
//   - Every request must carry a valid OCI HTTP signature (draft-cavage-08,
//     "Signature version=\"1\",keyId=...,algorithm=\"rsa-sha256\",headers=...") made
//     with a key it was given; otherwise 401 NotAuthenticated. PUT and POST requests
//     with a JSON body must sign content-length, content-type and x-content-sha256,
//     and the body must hash to x-content-sha256; PutObject and UploadPart may leave
//     the body out of the signature, as the SDK does.
//   - Checksums are computed from the bytes it stored: Content-MD5 for single puts,
//     opc-multipart-md5 (MD5 of the parts' MD5s, "-N") for multipart objects, a
//     whole-object opc-content-crc32c for every object, opc-content-sha256 when the
//     put asked for opc-checksum-algorithm SHA256. A put whose Content-MD5,
//     opc-content-sha256 or opc-content-crc32c does not match its body is refused
//     with 400 and nothing is stored.
//   - Errors have OCI's JSON shape {"code":...,"message":...} and OCI's codes.
//
// Covered: GetNamespace; ListBuckets, CreateBucket, GetBucket, HeadBucket,
// UpdateBucket (versioning), DeleteBucket; PutObject, GetObject (Range), HeadObject,
// DeleteObject (versionId, delete markers), ListObjects (prefix, start, end,
// startAfter, limit, delimiter, fields, nextStartWith), ListObjectVersions (page
// tokens); CreateMultipartUpload, UploadPart, CommitMultipartUpload,
// AbortMultipartUpload, ListMultipartUploadParts, ListMultipartUploads; If-Match and
// If-None-Match on put, get, head, delete and commit. Not covered: CopyObject,
// RenameObject, batch delete, pre-authenticated requests, lifecycle, retention,
// replication, archive tier, SSE-C, work requests.
//
// Faults are injected per request with Rules (or Options.Hook): an error status for
// the Nth matching request or a fraction of them, latency, a truncated or corrupted
// response body, a corrupted request body, a dropped connection before or after the
// request takes effect, or an arbitrary rewrite of the response.
package ocitest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers/fault"
)

// DefaultNamespace is the namespace used when Options.Namespace is empty.
const DefaultNamespace = "ferryemu"

// DefaultMinPartSize is the smallest size of a multipart part other than the last
// that CommitMultipartUpload accepts, as on OCI. Tests lower it with
// Options.MinPartSize.
const DefaultMinPartSize = 10 << 20

// Options configure an emulator.
type Options struct {
	// Namespace is the Object Storage namespace served; default DefaultNamespace.
	Namespace string
	// Dir keeps buckets and objects in this directory across restarts; empty keeps
	// everything in memory. In-progress multipart uploads are not kept across restarts.
	Dir string
	// PublicKeys are the keys whose signatures are accepted, by keyId
	// ("ocid1.tenancy.../ocid1.user.../aa:bb:..."), each a PEM public key (PKIX or
	// PKCS#1; a PEM private key is accepted too and only its public half is used).
	// The keyId "*" accepts the key for any keyId whose fingerprint part (after the
	// last "/") is the key's fingerprint, whatever its tenancy and user.
	// With no keys at all every request is rejected.
	PublicKeys map[string][]byte
	// MinPartSize overrides DefaultMinPartSize (tests use small parts).
	MinPartSize int64
	// MaxClockSkew is how far a request's date may be from the emulator's clock;
	// default 5 minutes, as OCI. Negative disables the check.
	MaxClockSkew time.Duration
	// Faults are installed at start; more can be added with Server.Inject.
	Faults []*Rule
	// Hook, when set, is called for every request (after the rules) with the
	// operation name; a non-nil Fault is applied to that request.
	Hook func(r *http.Request, op string) *Fault
	// Seed seeds the random choices of fractional fault rules (0: random).
	Seed uint64
	// Logf receives one line per request when set.
	Logf func(format string, args ...any)
}

// Server is an emulator. It is an http.Handler; Start also serves it.
type Server struct {
	// URL is the base URL when served by Start (http://127.0.0.1:port).
	URL string

	ns      string
	minPart int64
	skew    time.Duration
	hook    func(*http.Request, string) *Fault
	logf    func(string, ...any)
	blobs   blobStore
	journal *journal
	reqSeq  atomic.Int64
	hs      *httptest.Server

	mu      sync.Mutex
	buckets map[string]*bucket
	uploads map[string]*upload
	stats   map[string]int

	keyMu   sync.RWMutex
	keys    map[string]*publicKey // by keyId
	anyKeys map[string]*publicKey // by fingerprint

	faultMu sync.Mutex
	rules   []*Rule
	rng     *fault.Rand
}

// New returns an emulator for opts. Close it when done (it closes the journal of a
// data directory).
func New(opts Options) (*Server, error) {
	s := &Server{
		ns:      opts.Namespace,
		minPart: opts.MinPartSize,
		skew:    opts.MaxClockSkew,
		hook:    opts.Hook,
		logf:    opts.Logf,
		buckets: map[string]*bucket{},
		uploads: map[string]*upload{},
		stats:   map[string]int{},
		keys:    map[string]*publicKey{},
		anyKeys: map[string]*publicKey{},
	}
	if s.ns == "" {
		s.ns = DefaultNamespace
	}
	if s.minPart <= 0 {
		s.minPart = DefaultMinPartSize
	}
	if s.skew == 0 {
		s.skew = 5 * time.Minute
	}
	s.rng = fault.NewRand(opts.Seed)
	for id, pemBytes := range opts.PublicKeys {
		if err := s.AddPublicKey(id, pemBytes); err != nil {
			return nil, err
		}
	}
	for _, r := range opts.Faults {
		s.Inject(r)
	}
	if opts.Dir == "" {
		s.blobs = memBlobs{}
	} else {
		db, err := newDirBlobs(opts.Dir)
		if err != nil {
			return nil, err
		}
		s.blobs = db
		if err := s.load(opts.Dir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Start serves a new emulator on 127.0.0.1 for the duration of the test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("ocitest: %v", err)
	}
	hs := httptest.NewUnstartedServer(s)
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // aborted handlers are faults, not news
	hs.Start()
	s.hs = hs
	s.URL = hs.URL
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		s.Close()
	})
	return s
}

// Namespace returns the namespace served.
func (s *Server) Namespace() string { return s.ns }

// Close releases the data directory's journal. It does not stop a listener.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.journal != nil {
		err := s.journal.close()
		s.journal = nil
		return err
	}
	return nil
}

// Stats returns how many requests each operation has received (faulted ones
// included), by operation name ("PutObject", "ListObjects", ...).
func (s *Server) Stats() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.stats))
	for k, v := range s.stats {
		m[k] = v
	}
	return m
}

// ociError is OCI's error body.
type ociError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// apiError is a failure a handler returns.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// defaultCode names the OCI error code for a status.
func defaultCode(status int) string {
	switch status {
	case 400:
		return "InvalidParameter"
	case 401:
		return "NotAuthenticated"
	case 403:
		return "NotAuthorized"
	case 404:
		return "NotFound"
	case 409:
		return "Conflict"
	case 412:
		return "IfMatchFailed"
	case 416:
		return "InvalidRange"
	case 429:
		return "TooManyRequests"
	case 500:
		return "InternalServerError"
	case 502:
		return "BadGateway"
	case 503:
		return "ServiceUnavailable"
	case 504:
		return "GatewayTimeout"
	}
	return http.StatusText(status)
}

func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if r.Method == http.MethodHead || e.status == http.StatusNotModified {
		w.WriteHeader(e.status)
		return
	}
	body, _ := json.Marshal(ociError{Code: e.code, Message: e.message})
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(e.status)
	w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// route is a parsed request path.
type route struct {
	op     string
	ns     string
	bucket string
	object string
}

// parseRoute maps method and path to an operation, following the SDK's paths.
func parseRoute(method, p string) (route, bool) {
	if p == "/n" || p == "/n/" {
		if method == http.MethodGet {
			return route{op: "GetNamespace"}, true
		}
		return route{}, false
	}
	rest, ok := strings.CutPrefix(p, "/n/")
	if !ok {
		return route{}, false
	}
	ns, rest, hasRest := strings.Cut(rest, "/")
	if ns == "" {
		return route{}, false
	}
	rt := route{ns: ns}
	if !hasRest {
		switch method {
		case http.MethodGet:
			rt.op = "GetNamespaceMetadata"
		default:
			return route{}, false
		}
		return rt, true
	}
	b, rest, hasRest := strings.Cut(rest, "/")
	if b != "b" {
		return route{}, false
	}
	if !hasRest || rest == "" {
		switch method {
		case http.MethodGet:
			rt.op = "ListBuckets"
		case http.MethodPost:
			rt.op = "CreateBucket"
		default:
			return route{}, false
		}
		return rt, true
	}
	bucket, rest, hasRest := strings.Cut(rest, "/")
	rt.bucket = bucket
	if !hasRest {
		switch method {
		case http.MethodGet:
			rt.op = "GetBucket"
		case http.MethodHead:
			rt.op = "HeadBucket"
		case http.MethodPost:
			rt.op = "UpdateBucket"
		case http.MethodDelete:
			rt.op = "DeleteBucket"
		default:
			return route{}, false
		}
		return rt, true
	}
	kind, obj, hasObj := strings.Cut(rest, "/")
	switch {
	case kind == "o" && !hasObj:
		if method == http.MethodGet {
			rt.op = "ListObjects"
			return rt, true
		}
	case kind == "o" && obj != "":
		rt.object = obj
		switch method {
		case http.MethodPut:
			rt.op = "PutObject"
		case http.MethodGet:
			rt.op = "GetObject"
		case http.MethodHead:
			rt.op = "HeadObject"
		case http.MethodDelete:
			rt.op = "DeleteObject"
		default:
			return route{}, false
		}
		return rt, true
	case kind == "objectversions" && !hasObj:
		if method == http.MethodGet {
			rt.op = "ListObjectVersions"
			return rt, true
		}
	case kind == "u" && !hasObj:
		switch method {
		case http.MethodPost:
			rt.op = "CreateMultipartUpload"
			return rt, true
		case http.MethodGet:
			rt.op = "ListMultipartUploads"
			return rt, true
		}
	case kind == "u" && obj != "":
		rt.object = obj
		switch method {
		case http.MethodPut:
			rt.op = "UploadPart"
		case http.MethodPost:
			rt.op = "CommitMultipartUpload"
		case http.MethodDelete:
			rt.op = "AbortMultipartUpload"
		case http.MethodGet:
			rt.op = "ListMultipartUploadParts"
		default:
			return route{}, false
		}
		return rt, true
	}
	return route{}, false
}

// ServeHTTP handles one Object Storage API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := fmt.Sprintf("emu-%06d-%s", s.reqSeq.Add(1), randomHex(4))
	w.Header().Set("opc-request-id", reqID)
	if id := r.Header.Get("opc-client-request-id"); id != "" {
		w.Header().Set("opc-client-request-id", id)
	}
	rt, ok := parseRoute(r.Method, r.URL.Path)
	op := rt.op
	if !ok {
		op = "Unknown"
	}
	s.mu.Lock()
	s.stats[op]++
	s.mu.Unlock()

	rec := &statusRecorder{ResponseWriter: w}
	if s.logf != nil {
		start := time.Now()
		defer func() {
			s.logf("%s %s %s -> %d (%s, %s)", reqID, op, r.URL.RequestURI(), rec.status, time.Since(start).Round(time.Microsecond), rec.note)
		}()
	}
	var out http.ResponseWriter = rec

	f := s.faultFor(r, op)
	if f != nil {
		var done bool
		out, done = s.applyFault(out, r, f, rec)
		if done {
			return
		}
		if fw, ok := out.(*faultWriter); ok {
			defer fw.finish()
		}
	}

	if err := s.authenticate(r, op); err != nil {
		rec.note = "auth: " + err.message
		writeError(out, r, err)
		return
	}
	if !ok {
		writeError(out, r, errorf(404, "NotFound", "no such operation: %s %s", r.Method, r.URL.Path))
		return
	}
	if op != "GetNamespace" && rt.ns != s.ns {
		writeError(out, r, errorf(404, "NamespaceNotFound", "You do not have authorization to perform this request, or the requested resource could not be found."))
		return
	}
	var err *apiError
	switch op {
	case "GetNamespace":
		writeJSON(out, 200, s.ns)
	case "GetNamespaceMetadata":
		writeJSON(out, 200, map[string]any{"namespace": s.ns})
	case "ListBuckets":
		err = s.listBuckets(out, r)
	case "CreateBucket":
		err = s.createBucket(out, r)
	case "GetBucket", "HeadBucket":
		err = s.getBucket(out, r, rt.bucket)
	case "UpdateBucket":
		err = s.updateBucket(out, r, rt.bucket)
	case "DeleteBucket":
		err = s.deleteBucket(out, r, rt.bucket)
	case "PutObject":
		err = s.putObject(out, r, rt.bucket, rt.object)
	case "GetObject", "HeadObject":
		err = s.getObject(out, r, rt.bucket, rt.object)
	case "DeleteObject":
		err = s.deleteObject(out, r, rt.bucket, rt.object)
	case "ListObjects":
		err = s.listObjects(out, r, rt.bucket)
	case "ListObjectVersions":
		err = s.listObjectVersions(out, r, rt.bucket)
	case "CreateMultipartUpload":
		err = s.createMultipart(out, r, rt.bucket)
	case "ListMultipartUploads":
		err = s.listMultipartUploads(out, r, rt.bucket)
	case "UploadPart":
		err = s.uploadPart(out, r, rt.bucket, rt.object)
	case "CommitMultipartUpload":
		err = s.commitMultipart(out, r, rt.bucket, rt.object)
	case "AbortMultipartUpload":
		err = s.abortMultipart(out, r, rt.bucket, rt.object)
	case "ListMultipartUploadParts":
		err = s.listParts(out, r, rt.bucket, rt.object)
	}
	if err != nil {
		rec.note = err.code
		writeError(out, r, err)
	}
}

// statusRecorder remembers the status for the log line.
type statusRecorder struct {
	http.ResponseWriter
	status int
	note   string
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newID returns a UUID-shaped random identifier, the shape of OCI ETags, version
// ids and upload ids.
func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
