package migrate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// flipBody flips one byte of a response body.
type flipBody struct {
	io.ReadCloser
	at, seen int64
}

func (f *flipBody) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if f.at >= f.seen && f.at < f.seen+int64(n) {
		p[f.at-f.seen] ^= 0xff
	}
	f.seen += int64(n)
	return n, err
}

// Copy opens an S3 source without the SDK's own check of the body and checks the
// bytes against the source's checksum itself: a body corrupted in flight, small
// (read whole) or streamed, is never copied or recorded, and the retry copies the
// real bytes.
func TestCopyChecksSourceSums(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	bucket := srv.Bucket(t, false)
	src, err := s3.New(context.Background(), srv.Config(bucket, "users/"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	data := map[string][]byte{
		"u1/small":    bytes.Repeat([]byte("small record "), 100),
		"u2/streamed": bytes.Repeat([]byte("a streamed record "), (bufferMax+1000)/18),
	}
	for k, b := range data {
		if _, err := src.Put(context.Background(), k, bytes.NewReader(b), int64(len(b)), providers.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := providers.Store(src).(providers.UncheckedOpener); !ok {
		t.Fatal("the S3 store does not offer OpenUnchecked: this test would not test it")
	}

	target, _ := url.Parse(srv.Endpoint)
	var corrupt atomic.Int64 // object bodies left to corrupt
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // the Host the client signed
		},
		ModifyResponse: func(resp *http.Response) error {
			q := resp.Request.URL.Query()
			if resp.Request.Method == http.MethodGet && resp.StatusCode == http.StatusOK && !q.Has("list-type") &&
				!q.Has("versioning") && corrupt.Add(-1) >= 0 {
				resp.Body = &flipBody{ReadCloser: resp.Body, at: 100}
			}
			return nil
		},
	})
	defer proxy.Close()

	dir := t.TempDir()
	spec := fmt.Sprintf(`migration: sums
sources:
  - {name: src, role: primary, url: "s3://%s/users/", endpoint: "%s", region: %s, path_style: true,
     credentials: {access_key_env: %s, secret_key_env: %s}}
target:
  url: file://./target
records:
  user: '^(?P<user>[^/]+)/'
copy:
  concurrency: 1
`, bucket, proxy.URL, s3test.Region, srv.AccessKeyEnv, srv.SecretKeyEnv)
	if err := os.Mkdir(filepath.Join(dir, "target"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := Open(ctx, Options{SpecPath: filepath.Join(dir, "ferry.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	corrupt.Store(2) // the first read of each record
	res, err := m.Copy(ctx)
	if err != nil {
		t.Fatalf("copy: %v (%+v)", err, res)
	}
	if res.Copied != 2 || res.Retries < 2 || corrupt.Load() >= 0 {
		t.Errorf("copied %d with %d retries, %d corruptions left; want 2 copied after a retry each", res.Copied, res.Retries, corrupt.Load())
	}
	for k, b := range data {
		got, err := os.ReadFile(filepath.Join(dir, "target", k))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("target %s: %d bytes, %v; want the source's %d", k, len(got), err, len(b))
		}
	}
	if _, err := m.Verify(ctx, true); err != nil {
		t.Errorf("verify --reread: %v", err)
	}
}
