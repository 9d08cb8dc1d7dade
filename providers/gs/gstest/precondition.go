package gstest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// PreconditionProxy enforces the generation preconditions fake-gcs-server ignores:
// ifGenerationMatch (0: the object must not exist) on a delete, a patch or update,
// and on a copy's (rewrite's) destination; and a delete naming a generation that is
// not the live one, which the server cannot do (it would delete the live object).
// Checks and the request they guard run under one lock, so no request of this
// proxy slips between them.
type PreconditionProxy struct {
	URL string

	direct string
	srv    *httptest.Server
	rp     *httputil.ReverseProxy
	tr     *http.Transport
	mu     sync.Mutex

	// Refused counts requests answered 412 by the proxy.
	Refused atomic.Int64
}

func newPreconditionProxy(direct string) *PreconditionProxy {
	u, _ := url.Parse(direct)
	p := &PreconditionProxy{direct: direct}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.tr = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true}
	p.rp.Transport = p.tr
	p.rp.ErrorLog = log.New(io.Discard, "", 0)
	p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { panic(http.ErrAbortHandler) }
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.Start()
	p.URL = p.srv.URL
	return p
}

// Close stops the proxy.
func (p *PreconditionProxy) Close() { p.srv.Close() }

// target finds the object a request's preconditions apply to: bucket and escaped
// object name, "" when the request has none.
func target(r *http.Request) (bucket, object string) {
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	// storage/v1/b/{b}/o/{o}[/rewriteTo|copyTo/b/{db}/o/{do}]
	if len(segs) < 6 || segs[0] != "storage" || segs[1] != "v1" || segs[2] != "b" || segs[4] != "o" {
		return "", ""
	}
	if len(segs) == 11 && (segs[6] == "rewriteTo" || segs[6] == "copyTo") && segs[7] == "b" && segs[9] == "o" {
		return segs[8], segs[10]
	}
	if len(segs) == 6 {
		return segs[3], segs[5]
	}
	return "", ""
}

func (p *PreconditionProxy) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bucket, object := target(r)
	guarded := object != "" && r.Method != http.MethodGet && r.Method != http.MethodHead &&
		(q.Has("ifGenerationMatch") || r.Method == http.MethodDelete && q.Has("generation"))
	if !guarded {
		p.rp.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	live, err := p.generation(r.Context(), bucket, object, "")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	// With a generation named, a precondition is about that generation (live or
	// noncurrent), not the live one.
	subject := live
	if q.Has("generation") {
		if gen, err := strconv.ParseInt(q.Get("generation"), 10, 64); err == nil && gen != live {
			subject = 0
			if g, err := p.generation(r.Context(), bucket, object, q.Get("generation")); err == nil && g == gen {
				subject = gen
			}
		}
	}
	if v := q.Get("ifGenerationMatch"); q.Has("ifGenerationMatch") {
		want, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			gcsError(w, http.StatusBadRequest, "invalid", "invalid ifGenerationMatch "+v)
			return
		}
		switch {
		case want == 0 && subject != 0:
			p.Refused.Add(1)
			gcsError(w, http.StatusPreconditionFailed, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.")
			return
		case want != 0 && subject == 0 && r.Method == http.MethodDelete:
			gcsError(w, http.StatusNotFound, "notFound", "No such object: "+bucket+"/"+object)
			return
		case want != 0 && subject != want:
			p.Refused.Add(1)
			gcsError(w, http.StatusPreconditionFailed, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.")
			return
		}
	}
	if r.Method == http.MethodDelete && q.Has("generation") {
		gen, err := strconv.ParseInt(q.Get("generation"), 10, 64)
		if err != nil {
			gcsError(w, http.StatusBadRequest, "invalid", "invalid generation")
			return
		}
		if gen != live {
			if g, err := p.generation(r.Context(), bucket, object, q.Get("generation")); err == nil && g == gen {
				gcsError(w, http.StatusNotImplemented, "notImplemented",
					"fake-gcs-server cannot delete a noncurrent generation (it would delete the live object instead)")
				return
			}
			gcsError(w, http.StatusNotFound, "notFound", "No such object: "+bucket+"/"+object+"#"+q.Get("generation"))
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// generation reads the live generation (or checks generation gen) of bucket/object
// (escaped) from the server: 0 when absent.
func (p *PreconditionProxy) generation(ctx context.Context, bucket, object, gen string) (int64, error) {
	u := p.direct + "/storage/v1/b/" + bucket + "/o/" + object
	if gen != "" {
		u += "?generation=" + url.QueryEscape(gen)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotFound:
		return 0, nil
	case http.StatusOK:
	default:
		return 0, fmt.Errorf("gstest: reading %s/%s: %s", bucket, object, resp.Status)
	}
	var o struct {
		Generation string `json:"generation"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		return 0, err
	}
	return strconv.ParseInt(o.Generation, 10, 64)
}

// gcsError answers as GCS's JSON API does.
func gcsError(w http.ResponseWriter, status int, reason, msg string) {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": status, "message": msg,
		"errors": []map[string]string{{"domain": "global", "reason": reason, "message": msg}},
	}})
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// escapePath escapes an object name as the client puts it in a URL path.
func escapePath(name string) string { return url.PathEscape(name) }
