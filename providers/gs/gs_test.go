package gs_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/gs"
	"github.com/ferrymigrate/ferry/providers/gs/gstest"
	"github.com/ferrymigrate/ferry/providers/providertest"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

func TestMain(m *testing.M) { gstest.Main(m) }

// fastRetries keeps injected faults cheap: the same policy, shorter waits.
var fastRetries = gs.Options{MaxAttempts: 6, RetryBaseDelay: 5 * time.Millisecond, RetryMaxDelay: 50 * time.Millisecond}

func open(t *testing.T, srv *gstest.Server, cfg providers.Config) *gs.Store {
	t.Helper()
	s, err := gs.New(t.Context(), cfg, fastRetries)
	if err != nil {
		t.Fatalf("gs.New(%s): %v", cfg.URL, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func fresh(t *testing.T, versioned bool, prefix string) (*gstest.Server, *gs.Store, string) {
	srv := gstest.Shared(t)
	bucket := srv.Bucket(t, versioned)
	return srv, open(t, srv, srv.Config(bucket, prefix)), bucket
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providers.Store {
		_, s, _ := fresh(t, false, "users/")
		return s
	})
}

func TestConformanceBucketRoot(t *testing.T) {
	// A site at the bucket root: the quarantine prefix lies inside it and its keys
	// are reserved.
	srv := gstest.Shared(t)
	s := open(t, srv, srv.Config(srv.Bucket(t, false), ""))
	ctx := t.Context()
	data := []byte("root object")
	if _, err := s.Put(ctx, "a", bytes.NewReader(data), int64(len(data)), providers.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, ".ferry-quarantine/test/x", bytes.NewReader(data), int64(len(data)), providers.PutOptions{}); !errors.Is(err, providers.ErrInvalidKey) {
		t.Fatalf("a put under the quarantine prefix: %v, want ErrInvalidKey", err)
	}
	st, _ := s.Stat(ctx, "a")
	h, err := s.SoftDelete(ctx, "a", st)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := s.List(ctx, func(o providers.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("List after a soft delete at the root = %q; the quarantine must not be listed", keys)
	}
	if err := s.Restore(ctx, "a", h); err != nil {
		t.Fatal(err)
	}
}

func put(t *testing.T, s providers.Store, key string, data []byte) providers.Object {
	t.Helper()
	o, err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), providers.PutOptions{})
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return o
}

func content(t *testing.T, s providers.Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b
}

// writeDirect writes bucket/name straight to fake-gcs-server, behind every proxy:
// another writer rewriting the object.
func writeDirect(t *testing.T, srv *gstest.Server, bucket, name string, data []byte) {
	t.Helper()
	u := srv.Direct + "/upload/storage/v1/b/" + bucket + "/o?uploadType=media&name=" + url.QueryEscape(name)
	resp, err := http.Post(u, "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		t.Errorf("direct write: %v", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("direct write: %s", resp.Status)
	}
}

// TestChangedObjectNotDeleted: the object is rewritten after DeleteIf has read its
// metadata and before its delete reaches the server. GCS (here the precondition
// proxy, since fake-gcs-server ignores ifGenerationMatch on deletes) refuses the
// delete, and the new bytes survive.
func TestChangedObjectNotDeleted(t *testing.T) {
	for _, mode := range []string{"hard", "soft"} {
		t.Run(mode, func(t *testing.T) {
			srv, s, bucket := fresh(t, false, "p/")
			verified := put(t, s, "u/k", []byte("the verified bytes"))
			refusedBefore := srv.Preconditions.Refused.Load()
			var once sync.Once
			remove := srv.Faults.Inject(&s3test.Rule{Match: func(r *http.Request) bool {
				if op, b := gstest.Classify(r); op == gstest.OpDelete && b == bucket {
					once.Do(func() { writeDirect(t, srv, bucket, "p/u/k", []byte("rewritten since verify")) })
				}
				return false
			}})
			defer remove()
			var err error
			if mode == "hard" {
				err = s.DeleteIf(t.Context(), "u/k", verified)
			} else {
				_, err = s.SoftDelete(t.Context(), "u/k", verified)
			}
			if !errors.Is(err, providers.ErrPrecondition) {
				t.Fatalf("%s delete of an object rewritten since verify: %v, want ErrPrecondition", mode, err)
			}
			if got := srv.Preconditions.Refused.Load() - refusedBefore; got != 1 {
				t.Errorf("the precondition proxy refused %d deletes, want 1", got)
			}
			if got := content(t, s, "u/k"); string(got) != "rewritten since verify" {
				t.Errorf("after the refused delete the key holds %q", got)
			}
			if mode == "soft" {
				// The quarantined copy of the verified bytes is removed again.
				if ok, err := s.SoftExists(t.Context(), "u/k", s.SoftHandle("u/k", verified)); err != nil || ok {
					t.Errorf("SoftExists after a refused soft delete = %v, %v; want false", ok, err)
				}
			}
		})
	}
}

func TestGenerationIsVersion(t *testing.T) {
	_, s, _ := fresh(t, false, "")
	a := put(t, s, "k", []byte("one"))
	b := put(t, s, "k", []byte("one")) // same bytes, new generation
	if a.ETag == "" || a.ETag == b.ETag {
		t.Fatalf("two writes of the same bytes: etags %q and %q, want two generations", a.ETag, b.ETag)
	}
	if a.Version != "" {
		t.Errorf("unversioned bucket reports Version %q", a.Version)
	}
	if err := s.DeleteIf(t.Context(), "k", a); !errors.Is(err, providers.ErrPrecondition) {
		t.Fatalf("DeleteIf of the older generation: %v, want ErrPrecondition", err)
	}
	if a.Checksums.CRC32C == "" || a.Checksums.MD5 == "" {
		t.Errorf("Put reports checksums %+v, want crc32c and md5", a.Checksums)
	}
	if a.Checksums.SHA256 != "" {
		t.Errorf("GCS reports no sha256, but Put says %q", a.Checksums.SHA256)
	}
}

func TestPutCRC32CMismatchStoresNothing(t *testing.T) {
	_, s, _ := fresh(t, false, "")
	data := []byte("bytes whose crc32c the caller got wrong")
	_, err := s.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data)), providers.PutOptions{CRC32C: "00000001"})
	if !errors.Is(err, providers.ErrChecksum) {
		t.Fatalf("Put with a wrong crc32c: %v, want ErrChecksum", err)
	}
	if _, err := s.Stat(t.Context(), "k"); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("after a refused put: Stat = %v, want ErrNotFound", err)
	}
}

// TestUploadStoredSumsCompared: GCS stores other bytes than were sent (here the
// upload's response says so: the fault proxy rewrites the stored MD5 it reports).
// Put fails with ErrChecksum and removes exactly that generation.
func TestUploadStoredSumsCompared(t *testing.T) {
	srv, s, bucket := fresh(t, false, "")
	for _, field := range []string{"md5Hash", "crc32c"} {
		t.Run(field, func(t *testing.T) {
			remove := srv.Faults.Inject(gstest.Rule(gstest.OpPut, bucket, s3test.Fault{Rewrite: func(status int, h http.Header, body []byte) []byte {
				var m map[string]any
				if status != http.StatusOK || json.Unmarshal(body, &m) != nil {
					return body
				}
				m[field] = base64.StdEncoding.EncodeToString(make([]byte, map[string]int{"md5Hash": 16, "crc32c": 4}[field]))
				out, _ := json.Marshal(m)
				return out
			}}))
			defer remove()
			data := providertest.Bytes(7, 64<<10)
			_, err := s.Put(t.Context(), "k-"+field, bytes.NewReader(data), int64(len(data)), providers.PutOptions{})
			if !errors.Is(err, providers.ErrChecksum) {
				t.Fatalf("an upload stored with another %s: %v, want ErrChecksum", field, err)
			}
			remove()
			if _, err := s.Stat(t.Context(), "k-"+field); !errors.Is(err, providers.ErrNotFound) {
				t.Fatalf("after a mismatched upload: Stat = %v, want ErrNotFound (the generation removed)", err)
			}
		})
	}
}

func TestCorruptReadRefused(t *testing.T) {
	srv, s, bucket := fresh(t, false, "")
	data := providertest.Bytes(8, 32<<10)
	put(t, s, "k", data)
	remove := srv.Faults.Inject(gstest.Rule(gstest.OpRead, bucket, s3test.Fault{CorruptBody: true}))
	defer remove()
	rc, _, err := s.Open(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, providers.ErrChecksum) {
		t.Fatalf("a corrupted read: %v, want ErrChecksum", err)
	}
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func crc(b []byte) string {
	return fmt.Sprintf("%08x", crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func readAll(t *testing.T, s providers.Store, key string) ([]byte, error) {
	rc, _, err := s.Open(t.Context(), key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
