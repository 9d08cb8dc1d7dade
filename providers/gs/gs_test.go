package gs_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/gs"
	"github.com/ferrymigrate/ferry/providers/gs/gstest"
	"github.com/ferrymigrate/ferry/providers/providertest"
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
