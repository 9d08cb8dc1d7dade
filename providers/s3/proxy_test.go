package s3

import (
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// reqInfo is one request through a test proxy. The hook may answer it itself
// (status, body), drop its connection, or, for listings, rewrite the server's
// answer (given in status and body).
type reqInfo struct {
	req    *http.Request
	list   bool // ListObjectsV2 or ListObjectVersions
	status int
	body   string
	drop   bool
}

// newProxy starts a reverse proxy on 127.0.0.1 in front of the server at target and
// returns its URL. Requests keep the Host the client signed, so signatures verify.
func newProxy(t *testing.T, target string, hook func(*reqInfo)) string {
	t.Helper()
	return startProxy(t, target, hook, false).URL
}

// newTLSProxy is newProxy speaking HTTPS with a self-signed certificate; it returns
// the URL and a PEM file holding the certificate.
func newTLSProxy(t *testing.T, target string, hook func(*reqInfo)) (string, string) {
	t.Helper()
	srv := startProxy(t, target, hook, true)
	pemFile := filepath.Join(t.TempDir(), "ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(pemFile, block, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, pemFile
}

func startProxy(t *testing.T, target string, hook func(*reqInfo), tls bool) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		info := &reqInfo{req: r, list: r.Method == http.MethodGet && (q.Has("list-type") || q.Has("versions"))}
		if info.list {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			info.status, info.body = rec.Code, rec.Body.String()
			hook(info)
			if info.drop {
				drop(w)
				return
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(info.body)))
			w.WriteHeader(info.status)
			w.Write([]byte(info.body))
			return
		}
		hook(info)
		switch {
		case info.drop:
			drop(w)
		case info.status != 0:
			// A fresh connection for the next request, so a drop is seen by the SDK
			// and not silently retried by net/http on a reused connection.
			w.Header().Set("Connection", "close")
			if info.body != "" {
				w.Header().Set("Content-Type", "application/xml")
			}
			w.WriteHeader(info.status)
			w.Write([]byte(info.body))
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

func drop(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func elemRE(name string) *regexp.Regexp {
	return regexp.MustCompile(`<` + name + `>[^<]*</` + name + `>`)
}

// elem returns the text of the first <name> element in body.
func elem(body, name string) string {
	m := elemRE(name).FindString(body)
	if m == "" {
		return ""
	}
	return m[len(name)+2 : len(m)-len(name)-3]
}

// cut removes every <name> element from body.
func cut(body, name string) string { return elemRE(name).ReplaceAllString(body, "") }

// replaceElem sets the text of every <name> element in body.
func replaceElem(body, name, text string) string {
	return elemRE(name).ReplaceAllLiteralString(body, "<"+name+">"+text+"</"+name+">")
}
