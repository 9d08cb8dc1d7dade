package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// rawPut writes key with the server's own client, as another writer would.
func rawPut(t *testing.T, srv *s3test.Server, bucket, key string) {
	t.Helper()
	if _, err := srv.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader([]byte(key))}); err != nil {
		t.Fatalf("raw put %s: %v", key, err)
	}
}

func putErr(s *Store, key string) error {
	_, err := s.Put(context.Background(), key, bytes.NewReader([]byte("x")), 1, providers.PutOptions{})
	return err
}

// The guard sees objects that other writers made before the store's first Put.
func TestShapeGuardOtherWriters(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	bucket := srv.Bucket(t, false)
	for _, k := range []string{"x", "m/n", "deep/er/obj", "site/a/b"} {
		rawPut(t, srv, bucket, k)
	}
	root := open(t, srv, bucket, false, func(c *providers.Config) { c.URL = "s3://" + bucket + "/" })
	for _, k := range []string{"x/y", "m", "deep/er", "deep/er/obj/z", "deep", "site/a"} {
		if err := putErr(root, k); !errors.Is(err, providers.ErrAlreadyExists) {
			t.Errorf("Put(%q) = %v, want ErrAlreadyExists", k, err)
		}
	}
	for _, k := range []string{"deep/other", "m/o", "x2/y", "deep/er/obj2"} {
		if err := putErr(root, k); err != nil {
			t.Errorf("Put(%q) = %v", k, err)
		}
	}
	// A store under a prefix checks the prefix's own segments too.
	sub := open(t, srv, bucket, false, func(c *providers.Config) { c.URL = "s3://" + bucket + "/site/a/b/" })
	if err := putErr(sub, "c"); !errors.Is(err, providers.ErrAlreadyExists) {
		t.Errorf("Put under a prefix that is an object = %v, want ErrAlreadyExists", err)
	}
}

// Deletes and other writes through the store drop what the guard knew.
func TestShapeGuardAfterDelete(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	s := open(t, srv, "", false)
	o := put(t, s, "a", []byte("a"))
	if err := putErr(s, "a/b"); !errors.Is(err, providers.ErrAlreadyExists) {
		t.Fatalf("Put(a/b) next to a = %v", err)
	}
	if err := s.DeleteIf(t.Context(), "a", o); err != nil {
		t.Fatal(err)
	}
	ab := put(t, s, "a/b", []byte("b"))
	if err := putErr(s, "a"); !errors.Is(err, providers.ErrAlreadyExists) {
		t.Fatalf("Put(a) over a/b = %v", err)
	}
	if err := s.DeleteIf(t.Context(), "a/b", ab); err != nil {
		t.Fatal(err)
	}
	put(t, s, "a", []byte("a again"))
	if err := s.Delete(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	put(t, s, "a/c", []byte("c"))
}

// Of "k" and "k/l" written at once through one store, exactly one is stored.
func TestShapeGuardConcurrentPair(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	s := open(t, srv, "", false)
	const pairs = 20
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range pairs {
		for _, k := range []string{fmt.Sprintf("k%d", i), fmt.Sprintf("k%d/l", i)} {
			wg.Go(func() {
				switch err := putErr(s, k); {
				case err == nil:
					ok.Add(1)
				case !errors.Is(err, providers.ErrAlreadyExists):
					t.Errorf("Put(%q) = %v", k, err)
				}
			})
		}
	}
	wg.Wait()
	keys, err := listKeys(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != pairs || len(keys) != pairs {
		t.Errorf("%d Puts succeeded, %d keys listed (%q); want %d of each", ok.Load(), len(keys), keys, pairs)
	}
}

// The guard lists each directory at most once, and not at all the directories a
// parent's listing shows to be empty: no HEAD and no LIST per Put.
func TestShapeGuardRequests(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	bucket := srv.Bucket(t, false)
	rawPut(t, srv, bucket, "pre/a/old")
	var lists, heads atomic.Int64
	proxy := newProxy(t, srv.Endpoint, func(r *reqInfo) {
		switch {
		case r.list:
			lists.Add(1)
		case r.req.Method == http.MethodHead:
			heads.Add(1)
		}
	})
	s := open(t, srv, bucket, false, func(c *providers.Config) {
		c.URL, c.Endpoint = "s3://"+bucket+"/pre/", proxy
	})
	for u := range 10 {
		for r := range 5 {
			if err := putErr(s, fmt.Sprintf("u%d/kind/r%d", u, r)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The bucket root, then pre/: every u*/ is absent there, so known empty.
	if lists.Load() != 2 || heads.Load() != 0 {
		t.Errorf("50 Puts in fresh directories: %d LISTs, %d HEADs; want 2 and 0", lists.Load(), heads.Load())
	}
	for r := range 5 {
		if err := putErr(s, fmt.Sprintf("a/r%d", r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := putErr(s, "a/old/x"); !errors.Is(err, providers.ErrAlreadyExists) {
		t.Errorf("Put(a/old/x) next to a/old = %v", err)
	}
	// pre/a/ holds an object, so it is listed once.
	if lists.Load() != 3 || heads.Load() != 0 {
		t.Errorf("then 6 Puts in an existing directory: %d LISTs, %d HEADs in all; want 3 and 0", lists.Load(), heads.Load())
	}
}
