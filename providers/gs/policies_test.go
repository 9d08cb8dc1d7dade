package gs_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/gs"
	"github.com/ferrymigrate/ferry/providers/gs/gstest"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// rewriteJSON returns a fault that adds fields to a JSON response.
func rewriteJSON(add map[string]any) s3test.Fault {
	return s3test.Fault{Rewrite: func(status int, h http.Header, body []byte) []byte {
		var m map[string]any
		if status != http.StatusOK || json.Unmarshal(body, &m) != nil {
			return body
		}
		for k, v := range add {
			m[k] = v
		}
		out, _ := json.Marshal(m)
		return out
	}}
}

// isBucketGet matches a GET of the bucket resource itself.
func isBucketGet(bucket string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.EscapedPath() == "/storage/v1/b/"+bucket
	}
}

// isObjectGet matches a metadata GET of an object of bucket.
func isObjectGet(bucket string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		op, b := gstest.Classify(r)
		return op == gstest.OpStat && b == bucket && strings.Contains(r.URL.Path, "/o/")
	}
}

// TestBucketPolicies: the bucket's soft-delete and retention policies, read from the
// bucket resource (fake-gcs-server keeps neither; the fault proxy adds them to its
// answer as GCS would send them).
func TestBucketPolicies(t *testing.T) {
	srv, s, bucket := fresh(t, false, "")
	r, err := s.Recoverability(t.Context())
	if err != nil || r.Recoverable {
		t.Fatalf("without a soft-delete policy: %+v, %v; want not recoverable", r, err)
	}
	if region, err := s.Region(t.Context()); err != nil || region != strings.ToLower(gstest.Location) {
		t.Errorf("Region = %q, %v; want %q", region, err, strings.ToLower(gstest.Location))
	}
	defer srv.Faults.Inject(&s3test.Rule{Match: isBucketGet(bucket), Fault: rewriteJSON(map[string]any{
		"softDeletePolicy": map[string]string{"retentionDurationSeconds": "604800", "effectiveTime": "2024-03-01T00:00:00Z"},
		"retentionPolicy":  map[string]any{"retentionPeriod": "86400", "isLocked": true, "effectiveTime": "2024-03-01T00:00:00Z"},
		"versioning":       map[string]bool{"enabled": true},
	})})()
	r, err = s.Recoverability(t.Context())
	if err != nil || !r.Recoverable || r.Retention != 7*24*time.Hour || r.Mechanism != "soft delete policy" {
		t.Fatalf("with GCS's default soft-delete policy: %+v, %v; want recoverable for 7 days", r, err)
	}
	p, err := s.Policies(t.Context())
	if err != nil || !strings.Contains(p, "soft delete keeps deleted objects 168h0m0s") || !strings.Contains(p, "retention policy 24h0m0s (locked)") ||
		!strings.Contains(p, "object versioning on") {
		t.Errorf("Policies = %q, %v", p, err)
	}
	if on, err := s.Versioning(t.Context()); err != nil || !on {
		t.Errorf("Versioning after the bucket reports it on = %v, %v", on, err)
	}
}

// TestHeldObjectUndeletable: an object under a hold or an unexpired retention is
// refused with ErrRetained and its reason, before any delete call, and is not fatal
// for the store (other objects go on).
func TestHeldObjectUndeletable(t *testing.T) {
	for name, add := range map[string]map[string]any{
		"temporary hold":   {"temporaryHold": true},
		"event-based hold": {"eventBasedHold": true},
		"retention policy": {"retentionExpirationTime": time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)},
		"object retention": {"retention": map[string]string{"mode": "Locked", "retainUntilTime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}},
	} {
		t.Run(name, func(t *testing.T) {
			srv, s, bucket := fresh(t, false, "")
			o := put(t, s, "k", []byte("held"))
			remove := srv.Faults.Inject(&s3test.Rule{Match: isObjectGet(bucket), Fault: rewriteJSON(add)})
			defer remove()
			var deletes sync.Mutex
			n := 0
			defer srv.Faults.Inject(&s3test.Rule{Match: func(r *http.Request) bool {
				if op, b := gstest.Classify(r); op == gstest.OpDelete && b == bucket {
					deletes.Lock()
					n++
					deletes.Unlock()
				}
				return false
			}})()
			err := s.DeleteIf(t.Context(), "k", o)
			if !errors.Is(err, providers.ErrRetained) || providers.Fatal(err) || !strings.Contains(err.Error(), name) {
				t.Fatalf("DeleteIf of an object under %s: %v; want ErrRetained naming it, not fatal", name, err)
			}
			if _, err := s.SoftDelete(t.Context(), "k", o); !errors.Is(err, providers.ErrRetained) {
				t.Fatalf("SoftDelete of an object under %s: %v; want ErrRetained", name, err)
			}
			if n != 0 {
				t.Errorf("%d delete calls were made for a held object", n)
			}
			remove()
			if got := content(t, s, "k"); string(got) != "held" {
				t.Fatalf("the held object now holds %q", got)
			}
		})
	}
}

// TestRetainedByServer: GCS itself refuses a delete (403 retentionPolicyNotMet, a
// policy the metadata did not show yet): ErrRetained, not access denied (which
// would stop the whole phase).
func TestRetainedByServer(t *testing.T) {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/storage/v1/b/locked":
			w.Write([]byte(`{"name":"locked","location":"EU","versioning":{"enabled":false}}`))
		case r.Method == http.MethodGet && r.URL.Path == "/storage/v1/b/locked/o/k":
			w.Write([]byte(`{"name":"k","bucket":"locked","generation":"7","size":"4","crc32c":"AAAAAA=="}`))
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":{"code":403,"message":"Object 'locked/k' is subject to bucket's retention policy or object retention and cannot be deleted or overwritten until 2031-01-01T00:00:00Z","errors":[{"domain":"global","reason":"retentionPolicyNotMet","message":"retention"}]}}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer fake.Close()
	s, err := gs.New(t.Context(), providers.Config{Name: "eu", URL: "gs://locked/", Endpoint: fake.URL, Credentials: map[string]string{"auth": "none"}}, fastRetries)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.DeleteIf(t.Context(), "k", providers.Object{Key: "k", Size: 4, ETag: "7"})
	if !errors.Is(err, providers.ErrRetained) || providers.Fatal(err) || !strings.Contains(err.Error(), "retention") {
		t.Fatalf("DeleteIf refused by a retention policy: %v; want ErrRetained, not fatal", err)
	}
	if region, _ := s.Region(t.Context()); region != "eu" {
		t.Errorf("Region = %q, want eu", region)
	}
}

// TestCMEKNamedOnWrites: with a Cloud KMS key configured, every upload and copy names
// it (kmsKeyName / destinationKmsKeyName); fake-gcs-server does not encrypt, so what
// is shown is that the request asks for the key.
func TestCMEKNamedOnWrites(t *testing.T) {
	srv := gstest.Shared(t)
	bucket := srv.Bucket(t, false)
	const key = "projects/p/locations/us-east1/keyRings/ferry/cryptoKeys/target"
	cfg := srv.Config(bucket, "t/")
	cfg.KMSKeyID = key
	s := open(t, srv, cfg)
	var mu sync.Mutex
	seen := map[gstest.Op][]string{}
	defer srv.Faults.Inject(&s3test.Rule{Match: func(r *http.Request) bool {
		op, b := gstest.Classify(r)
		if b == bucket && (op == gstest.OpPut || op == gstest.OpCopy) {
			q := r.URL.Query()
			mu.Lock()
			seen[op] = append(seen[op], q.Get("kmsKeyName")+q.Get("destinationKmsKeyName"))
			mu.Unlock()
		}
		return false
	}})()
	o := put(t, s, "k", []byte("encrypted with the target's key"))
	if _, err := s.SoftDelete(t.Context(), "k", o); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen[gstest.OpPut]) == 0 || len(seen[gstest.OpCopy]) == 0 {
		t.Fatalf("requests seen: %v", seen)
	}
	for op, keys := range seen {
		for _, k := range keys {
			if k != key {
				t.Errorf("a %s request names key %q, want %q", op, k, key)
			}
		}
	}
}

func TestIdentity(t *testing.T) {
	srv := gstest.Shared(t)
	bucket := srv.Bucket(t, false)
	a := open(t, srv, srv.Config(bucket, "users/"))
	b := open(t, srv, srv.Config(bucket, ""))
	c := open(t, srv, srv.Config(srv.Bucket(t, false), "users/"))
	ia, _ := a.Identity(t.Context())
	ib, _ := b.Identity(t.Context())
	ic, _ := c.Identity(t.Context())
	if ia.Kind != "gs" || ia.Container != bucket || ia.Prefix != "users/" || len(ia.Servers) == 0 {
		t.Fatalf("Identity = %+v", ia)
	}
	if !ia.Overlaps(ib) {
		t.Errorf("a prefix and its bucket's root do not overlap: %v, %v", ia, ib)
	}
	if ia.Overlaps(ic) {
		t.Errorf("two buckets overlap: %v, %v", ia, ic)
	}
	if bk, prefix, err := gs.ParseURL("gs://" + bucket + "/users"); err != nil || bk != bucket || prefix != "users/" {
		t.Fatalf("ParseURL = %q, %q, %v", bk, prefix, err)
	}
}
