package s3

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/providertest"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// flipReader flips one byte of a body in flight.
type flipReader struct {
	r    io.ReadCloser
	at   int64
	seen int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.at >= f.seen && f.at < f.seen+int64(n) {
		p[f.at-f.seen] ^= 0xff
	}
	f.seen += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

// Bodies go as UNSIGNED-PAYLOAD, hashed by nobody but the server: the signed
// checksum header still makes the server refuse a body changed in flight, for a
// single PutObject (SHA-256 given by the caller or computed here) and for each part.
func TestUnsignedPayloadChecked(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *s3test.Server) {
		var corrupt atomic.Bool
		var mu sync.Mutex
		payloads := map[string]int{}
		proxy := newProxy(t, srv.Endpoint, func(r *reqInfo) {
			if r.req.Method != http.MethodPut || r.req.ContentLength <= 0 {
				return
			}
			mu.Lock()
			payloads[r.req.Header.Get("X-Amz-Content-Sha256")]++
			mu.Unlock()
			if corrupt.Load() {
				r.req.Body = &flipReader{r: r.req.Body, at: r.req.ContentLength / 2}
			}
		})
		bucket := srv.Bucket(t, false)
		s := open(t, srv, bucket, false, func(c *providers.Config) {
			c.Endpoint, c.PartSize = proxy, MinPartSize
		})
		small := providertest.Bytes(1, 100<<10)
		large := providertest.Bytes(2, 2*MinPartSize+1000) // three parts
		cases := []struct {
			name string
			data []byte
			r    func([]byte) io.Reader
			opts func([]byte) providers.PutOptions
		}{
			{"single, sha256 given", small, func(b []byte) io.Reader { return bytes.NewReader(b) },
				func(b []byte) providers.PutOptions { return providers.PutOptions{SHA256: shaHex(b)} }},
			{"single, streamed", small, func(b []byte) io.Reader { return onlyReader{bytes.NewReader(b)} },
				func([]byte) providers.PutOptions { return providers.PutOptions{} }},
			{"multipart, streamed", large, func(b []byte) io.Reader { return onlyReader{bytes.NewReader(b)} },
				func([]byte) providers.PutOptions { return providers.PutOptions{} }},
		}
		for _, c := range cases {
			corrupt.Store(true)
			_, err := s.Put(t.Context(), "k", c.r(c.data), int64(len(c.data)), c.opts(c.data))
			if !errors.Is(err, providers.ErrChecksum) {
				t.Errorf("%s: Put with a body corrupted in flight = %v, want ErrChecksum", c.name, err)
			}
			if _, err := s.Stat(t.Context(), "k"); !errors.Is(err, providers.ErrNotFound) {
				t.Errorf("%s: after the refused Put, Stat = %v, want ErrNotFound", c.name, err)
			}
			corrupt.Store(false)
			put(t, s, "k", c.data)
			if got := content(t, s, "k"); !bytes.Equal(got, c.data) {
				t.Errorf("%s: content differs", c.name)
			}
			if err := s.Delete(t.Context(), "k"); err != nil {
				t.Fatal(err)
			}
		}
		noUploads(t, srv, bucket)
		mu.Lock()
		defer mu.Unlock()
		if len(payloads) != 1 || payloads["UNSIGNED-PAYLOAD"] == 0 {
			t.Errorf("payload hashes sent with bodies: %v, want only UNSIGNED-PAYLOAD", payloads)
		}
	})
}
