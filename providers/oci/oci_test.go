package oci_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oracle/oci-go-sdk/v65/common"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/fault"
	"github.com/ferrymigrate/ferry/providers/oci"
	"github.com/ferrymigrate/ferry/providers/oci/ocitest"
	"github.com/ferrymigrate/ferry/providers/providertest"
)

// testPart is the part size the tests use: small, so multipart paths run on
// small objects (the emulator is told to accept such parts).
const testPart = 1 << 20

var (
	idOnce   sync.Once
	sharedID *ocitest.Identity
	testDir  string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-oci-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// identity returns one API key shared by the package's tests (RSA key generation
// is slow under the race detector).
func identity(t *testing.T) *ocitest.Identity {
	t.Helper()
	idOnce.Do(func() {
		var err error
		if sharedID, err = ocitest.GenerateIdentity(testDir, "FERRY"); err != nil {
			t.Fatal(err)
		}
	})
	if sharedID == nil {
		t.Fatal("no identity")
	}
	return sharedID
}

// fastOptions retry quickly and keep the breaker out of request counting.
func fastOptions() oci.Options {
	return oci.Options{RetryBaseDelay: 2 * time.Millisecond, RetryMaxDelay: 40 * time.Millisecond,
		MinPartSize: 64 << 10, DisableCircuitBreaker: true}
}

// emulator starts an emulator that trusts the shared identity.
func emulator(t *testing.T, opts ocitest.Options) *ocitest.Server {
	t.Helper()
	if opts.MinPartSize == 0 {
		opts.MinPartSize = 64 << 10
	}
	srv := ocitest.Start(t, opts)
	srv.Trust(identity(t))
	return srv
}

var bucketSeq atomic.Int64

// newBucket creates a fresh bucket on srv.
func newBucket(t *testing.T, srv *ocitest.Server, versioned bool) string {
	t.Helper()
	name := fmt.Sprintf("b%04d", bucketSeq.Add(1))
	if err := srv.CreateBucket(name, versioned); err != nil {
		t.Fatal(err)
	}
	return name
}

// open opens prefix of bucket on srv as the shared identity.
func open(t *testing.T, srv *ocitest.Server, bucket, prefix string, o oci.Options, edit ...func(*providers.Config)) *oci.Store {
	t.Helper()
	cfg := srv.StoreConfig(identity(t), bucket, prefix)
	cfg.PartSize = testPart
	cfg.Migration = "m1"
	for _, e := range edit {
		e(&cfg)
	}
	s, err := oci.New(t.Context(), cfg, o)
	if err != nil {
		t.Fatalf("oci.New(%s): %v", cfg.URL, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func crc(b []byte) string {
	return fmt.Sprintf("%08x", crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func put(t *testing.T, s providers.Store, key string, data []byte) providers.Object {
	t.Helper()
	o, err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), providers.PutOptions{SHA256: sha(data)})
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return o
}

func read(t *testing.T, s providers.Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Open(%q): read: %v", key, err)
	}
	return b
}

func listKeys(t *testing.T, s providers.Store) ([]string, error) {
	t.Helper()
	var keys []string
	err := s.List(t.Context(), func(o providers.Object) error {
		keys = append(keys, o.Key)
		return nil
	})
	return keys, err
}

// TestConformance runs the provider suite against the emulator, unversioned and
// versioned, with 10% of all requests failing with 429 or 503: every operation must
// still succeed, through retries.
func TestConformance(t *testing.T) {
	throttle := &ocitest.Rule{When: fault.When{Fraction: 0.05}, Fault: ocitest.Fault{Status: 429}}
	unavailable := &ocitest.Rule{When: fault.When{Fraction: 0.05}, Fault: ocitest.Fault{Status: 503}}
	srv := emulator(t, ocitest.Options{Faults: []*ocitest.Rule{throttle, unavailable}, Seed: 42})
	o := fastOptions()
	o.MaxAttempts = 12
	t.Run("suite", func(t *testing.T) {
		for _, versioned := range []bool{false, true} {
			name := "Unversioned"
			if versioned {
				name = "Versioned"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				providertest.Run(t, func(t *testing.T) providers.Store {
					return open(t, srv, newBucket(t, srv, versioned), "site/", o)
				})
			})
		}
	})
	if throttle.Fired() == 0 || unavailable.Fired() == 0 {
		t.Errorf("faults fired: 429 %d times, 503 %d times; want both", throttle.Fired(), unavailable.Fired())
	}
	t.Logf("the suite passed through %d injected 429s and %d injected 503s (%d requests)",
		throttle.Fired(), unavailable.Fired(), total(srv.Stats()))
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestWholeBucket: a site that is the whole bucket holds the default quarantine
// inside its root, so the store reserves it: never listed, never a key.
func TestWholeBucket(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	bucket := newBucket(t, srv, false)
	s := open(t, srv, bucket, "", fastOptions())
	ctx := t.Context()
	o := put(t, s, "u/k", []byte("kept"))
	put(t, s, "other", []byte("x"))
	h, err := s.SoftDelete(ctx, "u/k", o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, ".ferry-quarantine/m1/") {
		t.Errorf("handle %q", h)
	}
	if keys, err := listKeys(t, s); err != nil || len(keys) != 1 || keys[0] != "other" {
		t.Errorf("List = %q, %v; want only other (the quarantine is not listed)", keys, err)
	}
	if _, err := s.Put(ctx, ".ferry-quarantine/m1/x", bytes.NewReader(nil), 0, providers.PutOptions{}); !errors.Is(err, providers.ErrInvalidKey) {
		t.Errorf("Put into the quarantine: %v, want ErrInvalidKey", err)
	}
	if ok, err := s.SoftExists(ctx, "u/k", h); !ok || err != nil {
		t.Errorf("SoftExists = %v, %v", ok, err)
	}
	if err := s.Purge(ctx, "u/k", h); err != nil {
		t.Fatal(err)
	}
	if names := srv.ObjectNames(bucket); len(names) != 1 || names[0] != "other" {
		t.Errorf("bucket holds %q after purge", names)
	}
}

func TestWrongKeyRejected(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	bucket := newBucket(t, srv, false)

	// A second key, never registered with the emulator.
	stranger := ocitest.NewIdentity(t)
	cfg := srv.StoreConfig(stranger, bucket, "site/")
	_, authErr := oci.New(t.Context(), cfg, fastOptions())
	if !errors.Is(authErr, providers.ErrPermission) {
		t.Fatalf("New with an unregistered key: %v, want ErrPermission", authErr)
	}
	if !strings.Contains(authErr.Error(), "401") || !strings.Contains(authErr.Error(), "NotAuthenticated") {
		t.Errorf("error does not say the request was not authenticated: %v", authErr)
	}
	t.Logf("unregistered key: %v", authErr)

	// The registered tenancy and user, but a key whose fingerprint is not theirs.
	id := identity(t)
	forged := *stranger
	forged.Tenancy, forged.User, forged.Fingerprint = id.Tenancy, id.User, id.Fingerprint
	forged.Profile = "FORGED"
	path := stranger.ConfigFile + ".forged"
	writeFile(t, path, forged.ConfigText())
	cfg = srv.StoreConfig(&forged, bucket, "site/")
	cfg.Credentials["oci_config_file"] = path
	if _, err := oci.New(t.Context(), cfg, fastOptions()); !errors.Is(err, providers.ErrPermission) {
		t.Fatalf("New signing with the wrong private key for a known keyId: %v, want ErrPermission", err)
	}

	// Unsigned requests get OCI's error shape.
	resp, err := http.Get(srv.URL + "/n/" + srv.Namespace() + "/b/" + bucket + "/o")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Code, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 || body.Code != "NotAuthenticated" || body.Message == "" {
		t.Errorf("unsigned request: %d %+v, want 401 NotAuthenticated", resp.StatusCode, body)
	}
	// And key material never shows up in errors.
	if strings.Contains(authErr.Error(), "PRIVATE KEY") || strings.Contains(authErr.Error(), "signature=") {
		t.Errorf("error leaks key material: %v", authErr)
	}
}

func TestCorruptUploadCaught(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	bucket := newBucket(t, srv, false)
	s := open(t, srv, bucket, "site/", fastOptions())
	ctx := t.Context()

	t.Run("SinglePutCorruptedInFlight", func(t *testing.T) {
		remove := srv.Inject(&ocitest.Rule{Op: "PutObject", When: fault.When{Times: 1}, Fault: ocitest.Fault{CorruptRequest: true}})
		defer remove()
		data := providertest.Bytes(10, 200<<10)
		_, err := s.Put(ctx, "single", bytes.NewReader(data), int64(len(data)), providers.PutOptions{SHA256: sha(data)})
		if !errors.Is(err, providers.ErrChecksum) {
			t.Fatalf("Put corrupted in flight: %v, want ErrChecksum", err)
		}
		if _, err := s.Stat(ctx, "single"); !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("Stat after a refused put: %v, want ErrNotFound", err)
		}
	})
	t.Run("PartCorruptedInFlight", func(t *testing.T) {
		remove := srv.Inject(&ocitest.Rule{Op: "UploadPart", When: fault.When{Skip: 1, Times: 1}, Fault: ocitest.Fault{CorruptRequest: true}})
		defer remove()
		data := providertest.Bytes(11, 3*testPart+100)
		_, err := s.Put(ctx, "multi", bytes.NewReader(data), int64(len(data)), providers.PutOptions{SHA256: sha(data), CRC32C: crc(data)})
		if !errors.Is(err, providers.ErrChecksum) {
			t.Fatalf("multipart Put with a part corrupted in flight: %v, want ErrChecksum", err)
		}
		if _, err := s.Stat(ctx, "multi"); !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("Stat after a refused multipart put: %v, want ErrNotFound", err)
		}
		if u := srv.Uploads(bucket); len(u) != 0 {
			t.Errorf("uploads left in progress: %v", u)
		}
	})
	t.Run("SourceNotWhatTheCallerHashed", func(t *testing.T) {
		data := providertest.Bytes(12, 3*testPart+5)
		other := append([]byte(nil), data...)
		other[len(other)/2] ^= 1
		_, err := s.Put(ctx, "multi2", bytes.NewReader(other), int64(len(other)), providers.PutOptions{SHA256: sha(data)})
		if !errors.Is(err, providers.ErrChecksum) {
			t.Fatalf("multipart Put with a wrong sha256: %v, want ErrChecksum", err)
		}
		_, err = s.Put(ctx, "multi2", bytes.NewReader(other), int64(len(other)), providers.PutOptions{CRC32C: crc(data)})
		if !errors.Is(err, providers.ErrChecksum) {
			t.Fatalf("multipart Put with a wrong crc32c: %v, want ErrChecksum", err)
		}
		mid := len(data) / 2
		_, err = s.Put(ctx, "single2", bytes.NewReader(other[mid-50:mid+50]), 100, providers.PutOptions{CRC32C: crc(data[mid-50 : mid+50])})
		if !errors.Is(err, providers.ErrChecksum) {
			t.Fatalf("single Put with a wrong crc32c: %v, want ErrChecksum", err)
		}
		if names := srv.ObjectNames(bucket); len(names) != 0 {
			t.Errorf("objects stored after refused puts: %q", names)
		}
		if u := srv.Uploads(bucket); len(u) != 0 {
			t.Errorf("uploads left in progress: %v", u)
		}
	})
	t.Run("CorruptedDownload", func(t *testing.T) {
		for _, size := range []int{50 << 10, 2*testPart + 7} {
			data := providertest.Bytes(13, size)
			put(t, s, "dl", data)
			remove := srv.Inject(&ocitest.Rule{Op: "GetObject", When: fault.When{Times: 1}, Fault: ocitest.Fault{CorruptBody: true}})
			rc, _, err := s.Open(ctx, "dl")
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(rc)
			rc.Close()
			remove()
			if !errors.Is(err, providers.ErrChecksum) {
				t.Errorf("reading a corrupted %d-byte download: %v, want ErrChecksum", size, err)
			}
		}
	})
	t.Run("TruncatedDownload", func(t *testing.T) {
		data := providertest.Bytes(14, 300<<10)
		put(t, s, "tr", data)
		defer srv.Inject(&ocitest.Rule{Op: "GetObject", When: fault.When{Times: 1}, Fault: ocitest.Fault{Truncate: true}})()
		rc, _, err := s.Open(ctx, "tr")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if b, err := io.ReadAll(rc); err == nil {
			t.Errorf("reading a truncated download: %d of %d bytes and no error", len(b), len(data))
		}
	})
}

func TestMultipart(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	for _, versioned := range []bool{false, true} {
		t.Run(fmt.Sprintf("versioned=%v", versioned), func(t *testing.T) {
			bucket := newBucket(t, srv, versioned)
			s := open(t, srv, bucket, "site/", fastOptions(), func(c *providers.Config) { c.KMSKeyID = "ocid1.key.oc1..test" })
			data := providertest.Bytes(20, 5*testPart+12345) // 6 parts
			meta := map[string]string{"source-site": "virginia", "source-key": "users/é/x", "sha256": sha(data)}
			// A non-seekable source: parts are buffered, so each is retryable.
			defer srv.Inject(&ocitest.Rule{Op: "UploadPart", When: fault.When{Skip: 2, Times: 2}, Fault: ocitest.Fault{Status: 503}})()
			p, err := s.Put(t.Context(), "big", io.MultiReader(bytes.NewReader(data)), int64(len(data)),
				providers.PutOptions{SHA256: sha(data), CRC32C: crc(data), Metadata: meta})
			if err != nil {
				t.Fatalf("multipart Put: %v", err)
			}
			if p.Checksums.CRC32C != crc(data) || p.Checksums.MD5 != "" {
				t.Errorf("Put reports %+v, want crc32c %s and no md5", p.Checksums, crc(data))
			}
			st, err := s.Stat(t.Context(), "big")
			if err != nil {
				t.Fatal(err)
			}
			if st.Checksums.CRC32C != crc(data) {
				t.Errorf("Stat crc32c %q, want %s", st.Checksums.CRC32C, crc(data))
			}
			if st.Checksums.MD5 != "" || st.Checksums.SHA256 != "" {
				t.Errorf("Stat of a multipart object reports md5 %q sha256 %q: the multipart MD5 is not a content MD5", st.Checksums.MD5, st.Checksums.SHA256)
			}
			if !st.SameVersion(p) || st.Size != int64(len(data)) {
				t.Errorf("Stat %+v is not the version Put returned %+v", st, p)
			}
			if versioned && st.Version == "" {
				t.Errorf("no version id in a versioned bucket")
			}
			for k, v := range meta {
				if st.Metadata[k] != v {
					t.Errorf("metadata %s = %q, want %q", k, st.Metadata[k], v)
				}
			}
			vs := srv.Versions(bucket, "site/big")
			if len(vs) != 1 || !vs[0].Multipart || vs[0].KMSKeyID != "ocid1.key.oc1..test" {
				t.Errorf("emulator holds %+v, want one multipart version with the KMS key", vs)
			}
			if got := read(t, s, "big"); !bytes.Equal(got, data) {
				t.Errorf("read back %d bytes, differ", len(got))
			}
			if u := srv.Uploads(bucket); len(u) != 0 {
				t.Errorf("uploads left in progress: %v", u)
			}
		})
	}
}

func TestLostResponses(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	bucket := newBucket(t, srv, false)
	s := open(t, srv, bucket, "site/", fastOptions())
	ctx := t.Context()

	// A dropped connection before the request is handled, and a response lost after
	// it took effect: both retried.
	defer srv.Inject(&ocitest.Rule{Op: "PutObject", When: fault.When{Times: 1}, Fault: ocitest.Fault{Drop: true}})()
	defer srv.Inject(&ocitest.Rule{Op: "HeadObject", When: fault.When{Times: 1}, Fault: ocitest.Fault{Lost: true}})()
	small := []byte("small object")
	put(t, s, "small", small)
	if _, err := s.Stat(ctx, "small"); err != nil {
		t.Fatalf("Stat after a lost response: %v", err)
	}

	// The commit of a multipart upload takes effect but its response is lost: the
	// retry finds no upload, and the store recognises its own object.
	defer srv.Inject(&ocitest.Rule{Op: "CommitMultipartUpload", When: fault.When{Times: 1}, Fault: ocitest.Fault{Lost: true}})()
	data := providertest.Bytes(30, 2*testPart+1)
	p := put(t, s, "big", data)
	if p.Checksums.CRC32C != crc(data) {
		t.Errorf("Put after a lost commit response reports %+v", p.Checksums)
	}
	if got := read(t, s, "big"); !bytes.Equal(got, data) {
		t.Errorf("content differs after a lost commit response")
	}
}

func TestListFailures(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	for _, versioned := range []bool{false, true} {
		t.Run(fmt.Sprintf("versioned=%v", versioned), func(t *testing.T) {
			bucket := newBucket(t, srv, versioned)
			o := fastOptions()
			o.ListLimit = 10
			o.MaxAttempts = 3
			s := open(t, srv, bucket, "site/", o)
			for i := range 35 {
				put(t, s, fmt.Sprintf("k%03d", i), []byte{byte(i)})
			}
			if keys, err := listKeys(t, s); err != nil || len(keys) != 35 {
				t.Fatalf("List = %d keys, %v; want 35", len(keys), err)
			}
			op := "ListObjects"
			if versioned {
				op = "ListObjectVersions"
			}

			// Page 3 fails, and keeps failing through the retries.
			remove := srv.Inject(&ocitest.Rule{Op: op, When: fault.When{Skip: 2}, Fault: ocitest.Fault{Status: 500}})
			keys, err := listKeys(t, s)
			remove()
			if !errors.Is(err, providers.ErrIncompleteList) {
				t.Errorf("List with page 3 failing: %d keys, %v; want ErrIncompleteList", len(keys), err)
			}

			// Page 2 repeats the continuation of page 1.
			var first string
			remove = srv.Inject(&ocitest.Rule{Op: op, Fault: ocitest.Fault{Rewrite: func(status int, h http.Header, body []byte) []byte {
				if versioned {
					if first == "" {
						first = h.Get("opc-next-page")
					} else if first != "" {
						h.Set("opc-next-page", first)
					}
					return body
				}
				var m map[string]any
				if json.Unmarshal(body, &m) != nil {
					return body
				}
				if first == "" {
					first, _ = m["nextStartWith"].(string)
				} else {
					m["nextStartWith"] = first
				}
				b, _ := json.Marshal(m)
				return b
			}}})
			keys, err = listKeys(t, s)
			remove()
			if !errors.Is(err, providers.ErrIncompleteList) {
				t.Errorf("List with a repeated continuation: %d keys, %v; want ErrIncompleteList", len(keys), err)
			}

			if !versioned {
				// A continuation that goes backwards.
				remove = srv.Inject(&ocitest.Rule{Op: op, When: fault.When{Skip: 1, Times: 1}, Fault: ocitest.Fault{Rewrite: func(_ int, _ http.Header, body []byte) []byte {
					var m map[string]any
					json.Unmarshal(body, &m)
					m["nextStartWith"] = "site/k000"
					b, _ := json.Marshal(m)
					return b
				}}})
				keys, err = listKeys(t, s)
				remove()
				if !errors.Is(err, providers.ErrIncompleteList) {
					t.Errorf("List with a backwards continuation: %d keys, %v; want ErrIncompleteList", len(keys), err)
				}

				// A full page that leaves nextStartWith out: the store looks further
				// rather than stopping short.
				remove = srv.Inject(&ocitest.Rule{Op: op, When: fault.When{Times: 1}, Fault: ocitest.Fault{Rewrite: func(_ int, _ http.Header, body []byte) []byte {
					var m map[string]any
					json.Unmarshal(body, &m)
					delete(m, "nextStartWith")
					b, _ := json.Marshal(m)
					return b
				}}})
				keys, err = listKeys(t, s)
				remove()
				if err != nil || len(keys) != 35 {
					t.Errorf("List with a full page claiming to be the last: %d keys, %v; want all 35", len(keys), err)
				}
			}
		})
	}
}

func TestRetriesAndBreaker(t *testing.T) {
	// 10% of all requests answered 429 or 503, with the per-store circuit breaker on.
	rule := &ocitest.Rule{When: fault.When{Fraction: 0.1}, Fault: ocitest.Fault{Status: 503}}
	srv := emulator(t, ocitest.Options{Faults: []*ocitest.Rule{rule, {Op: "PutObject", When: fault.When{Fraction: 0.1}, Fault: ocitest.Fault{Status: 429}}}, Seed: 7})
	bucket := newBucket(t, srv, false)
	o := fastOptions()
	o.DisableCircuitBreaker = false
	o.MaxAttempts = 10
	s := open(t, srv, bucket, "site/", o)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				key := fmt.Sprintf("w%d/%02d", w, i)
				data := providertest.Bytes(uint64(w*100+i), 1000+i)
				r := io.MultiReader(bytes.NewReader(data)) // not seekable: must be buffered to be retried
				if _, err := s.Put(ctx, key, r, int64(len(data)), providers.PutOptions{SHA256: sha(data)}); err != nil {
					errs <- err
					continue
				}
				st, err := s.Stat(ctx, key)
				if err != nil || st.Checksums.SHA256 != sha(data) {
					errs <- fmt.Errorf("Stat %s: %+v %v", key, st.Checksums, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if keys, err := listKeys(t, s); err != nil || len(keys) != 200 {
		t.Errorf("List: %d keys, %v", len(keys), err)
	}
	if rule.Fired() == 0 {
		t.Error("no fault fired")
	}

	// A store that fails every request gives up, with a clear error, in bounded time.
	srv2 := emulator(t, ocitest.Options{})
	s2 := open(t, srv2, newBucket(t, srv2, false), "", o)
	defer srv2.Inject(&ocitest.Rule{Fault: ocitest.Fault{Status: 503}})()
	start := time.Now()
	_, err := s2.Stat(ctx, "x")
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Stat against a dead store: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("giving up took %s", d)
	}
}

func TestCircuitBreakerPerStore(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	o := fastOptions()
	o.DisableCircuitBreaker = false
	o.MaxAttempts = 3
	o.CircuitBreaker = common.NewCircuitBreakerSettingWithOptions(common.WithMinimumRequests(6),
		common.WithFailureRateThreshold(0.8), common.WithOpenStateWindow(300*time.Millisecond), common.WithCloseStateWindow(time.Minute))
	sick := open(t, srv, newBucket(t, srv, false), "", o)
	healthy := open(t, srv, newBucket(t, srv, false), "", o)
	_, healthyBucket, _ := healthy.Bucket()
	remove := srv.Inject(&ocitest.Rule{Match: func(r *http.Request) bool { return !strings.Contains(r.URL.Path, "/b/"+healthyBucket+"/") },
		Fault: ocitest.Fault{Status: 503}})
	var err error
	for range 4 {
		if _, err = sick.Stat(t.Context(), "x"); err != nil && strings.Contains(err.Error(), "circuit breaker") {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "circuit breaker is open") {
		t.Fatalf("Stat against a failing store: %v; want the breaker open", err)
	}
	before := total(srv.Stats())
	if _, err := sick.Stat(t.Context(), "x"); err == nil {
		t.Fatal("Stat succeeded with the breaker open")
	}
	if after := total(srv.Stats()); after != before {
		t.Errorf("%d requests sent while the breaker was open", after-before)
	}
	// Another store's breaker is its own.
	put(t, healthy, "k", []byte("fine"))
	// Once the service recovers and the open window passes, requests flow again.
	remove()
	time.Sleep(350 * time.Millisecond)
	if _, err := sick.Stat(t.Context(), "x"); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Stat after recovery: %v, want ErrNotFound", err)
	}
}

func TestConditionalDelete(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	for _, versioned := range []bool{false, true} {
		t.Run(fmt.Sprintf("versioned=%v", versioned), func(t *testing.T) {
			bucket := newBucket(t, srv, versioned)
			s := open(t, srv, bucket, "site/", fastOptions())
			ctx := t.Context()
			old := put(t, s, "k", []byte("v1"))
			cur := put(t, s, "k", []byte("v2"))
			if err := s.DeleteIf(ctx, "k", old); !errors.Is(err, providers.ErrPrecondition) {
				t.Errorf("DeleteIf with a stale etag: %v, want ErrPrecondition", err)
			}
			if got := read(t, s, "k"); string(got) != "v2" {
				t.Errorf("content after a refused delete: %q", got)
			}
			// The check is the service's too: a stale etag that slips past the HEAD is
			// refused by If-Match.
			defer srv.Inject(&ocitest.Rule{Op: "HeadObject", When: fault.When{Times: 1}, Fault: ocitest.Fault{Rewrite: func(_ int, h http.Header, b []byte) []byte {
				h.Set("ETag", old.ETag)
				if old.Version != "" {
					h.Set("version-id", old.Version)
				}
				return b
			}}})()
			err := s.DeleteIf(ctx, "k", old)
			if versioned {
				// The delete names exactly the old version: it goes (its bytes were
				// the ones verified), the newer current one stays.
				if err != nil {
					t.Errorf("DeleteIf of the old version by id: %v", err)
				}
				if vs := srv.Versions(bucket, "site/k"); len(vs) != 1 || vs[0].VersionID != cur.Version {
					t.Errorf("versions after deleting the old one: %+v, want only %s", vs, cur.Version)
				}
			} else if !errors.Is(err, providers.ErrPrecondition) {
				t.Errorf("DeleteIf with a stale etag past the HEAD: %v, want ErrPrecondition", err)
			}
			if got := read(t, s, "k"); string(got) != "v2" {
				t.Errorf("content after a stale delete: %q", got)
			}
			if err := s.DeleteIf(ctx, "k", cur); err != nil {
				t.Fatalf("DeleteIf current: %v", err)
			}
			if _, err := s.Stat(ctx, "k"); !errors.Is(err, providers.ErrNotFound) {
				t.Errorf("Stat after DeleteIf: %v", err)
			}
			if vs := srv.Versions(bucket, "site/k"); len(vs) != 0 {
				t.Errorf("versions left after deleting both: %+v", vs)
			}
		})
	}
}

func TestSoftDeleteQuarantine(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	bucket := newBucket(t, srv, false)
	s := open(t, srv, bucket, "users/", fastOptions())
	ctx := t.Context()
	data := providertest.Bytes(40, 3*testPart+3) // multipart copy into the quarantine
	o := put(t, s, "alice/photo", data)
	h, err := s.SoftDelete(ctx, "alice/photo", o)
	if err != nil {
		t.Fatal(err)
	}
	if want := ".ferry-quarantine/m1/users/alice/photo@" + o.ETag; h != want {
		t.Errorf("handle %q, want %q", h, want)
	}
	names := srv.ObjectNames(bucket)
	if len(names) != 1 || names[0] != h {
		t.Errorf("bucket holds %q, want only the quarantined copy %q", names, h)
	}
	got, info, ok := srv.ReadObject(bucket, h)
	if !ok || !bytes.Equal(got, data) || info.Metadata["ferry-quarantined-from"] != "users/alice/photo" {
		t.Errorf("quarantined copy: ok=%v same=%v meta=%v", ok, bytes.Equal(got, data), info.Metadata)
	}
	// A second SoftDelete of the same version (a crashed caller retrying) finds the
	// original gone.
	if _, err := s.SoftDelete(ctx, "alice/photo", o); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("repeated SoftDelete: %v, want ErrNotFound", err)
	}
	if err := s.Restore(ctx, "alice/photo", h); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, "alice/photo"); !bytes.Equal(got, data) {
		t.Errorf("restored content differs")
	}
	if names := srv.ObjectNames(bucket); len(names) != 1 || names[0] != "users/alice/photo" {
		t.Errorf("after restore the bucket holds %q", names)
	}
	// A handle of another key is refused.
	if err := s.Restore(ctx, "bob/photo", h); !errors.Is(err, providers.ErrInvalidKey) {
		t.Errorf("Restore with another key's handle: %v, want ErrInvalidKey", err)
	}
}

func TestRegionAndOpen(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	bucket := newBucket(t, srv, false)
	s := open(t, srv, bucket, "p", fastOptions(), func(c *providers.Config) { c.Region = "us-phoenix-1" })
	if r, err := s.Region(t.Context()); err != nil || r != "us-phoenix-1" {
		t.Errorf("Region = %q, %v", r, err)
	}
	if got := s.URI("a b"); got != "oci://"+srv.Namespace()+"/"+bucket+"/p/a b" {
		t.Errorf("URI = %q", got)
	}
	// Through the registry, as the pipeline opens it.
	cfg := srv.StoreConfig(identity(t), bucket, "p/")
	st, err := providers.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	// A bucket that does not exist is never "not found" objects.
	cfg.URL = "oci://" + srv.Namespace() + "/nosuchbucket/"
	if _, err := providers.Open(t.Context(), cfg); !errors.Is(err, providers.ErrPermission) || errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Open of a missing bucket: %v, want ErrPermission (not ErrNotFound)", err)
	}
	for _, bad := range []string{"oci://ns", "oci://ns/", "oci:///b", "s3://ns/b", "oci://ns/b?x=1", "oci://ns/b/../x"} {
		cfg.URL = bad
		if _, err := providers.Open(t.Context(), cfg); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	// A profile without a region takes the spec's; with neither there is no store.
	id := identity(t)
	noRegion := strings.Replace(id.ConfigText(), "region="+id.Region+"\n", "", 1)
	path := id.ConfigFile + ".noregion"
	writeFile(t, path, noRegion)
	cfg = srv.StoreConfig(id, bucket, "p/")
	cfg.Credentials["oci_config_file"] = path
	cfg.Region = "eu-frankfurt-1"
	if st, err := oci.New(t.Context(), cfg, fastOptions()); err != nil {
		t.Errorf("profile without a region, region in the spec: %v", err)
	} else if r, _ := st.Region(t.Context()); r != "eu-frankfurt-1" {
		t.Errorf("Region = %q", r)
	}
	cfg.Region = ""
	if _, err := oci.New(t.Context(), cfg, fastOptions()); err == nil {
		t.Errorf("no region anywhere: opened")
	}

	cfg.URL = "oci://" + srv.Namespace() + "/" + bucket + "/"
	cfg.Credentials = map[string]string{"profile": "x"}
	if _, err := providers.Open(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "unknown credentials key") {
		t.Errorf("Open with S3 credentials: %v", err)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct{ url, ns, bucket, prefix string }{
		{"oci://ns/bucket", "ns", "bucket", ""},
		{"oci://ns/bucket/", "ns", "bucket", ""},
		{"oci://ns/bucket/users", "ns", "bucket", "users/"},
		{"oci://ns/bucket/users/2022/", "ns", "bucket", "users/2022/"},
		{"oci://ns/bucket/a%20b/", "ns", "bucket", "a b/"},
	} {
		ns, b, p, err := oci.ParseURL(tc.url)
		if err != nil || ns != tc.ns || b != tc.bucket || p != tc.prefix {
			t.Errorf("ParseURL(%q) = %q %q %q %v", tc.url, ns, b, p, err)
		}
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	s := open(t, srv, newBucket(t, srv, false), "", fastOptions())
	meta := map[string]string{"source-key": "日本/文字 é", "plain": "abc", "edge": " padded ", "looks": "=?UTF-8?B?eA==?="}
	data := []byte("x")
	if _, err := s.Put(t.Context(), "m", bytes.NewReader(data), 1, providers.PutOptions{Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stat(t.Context(), "m")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range meta {
		if st.Metadata[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, st.Metadata[k], v)
		}
	}
	if _, err := s.Put(t.Context(), "m", bytes.NewReader(data), 1, providers.PutOptions{Metadata: map[string]string{"bad key": "x"}}); err == nil {
		t.Errorf("a metadata key with a space was accepted")
	}
}

func TestCanceledPutAbortsUpload(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	bucket := newBucket(t, srv, false)
	s := open(t, srv, bucket, "", fastOptions())
	ctx, cancel := context.WithCancel(t.Context())
	data := providertest.Bytes(50, 4*testPart)
	r := &cancelAfter{r: bytes.NewReader(data), n: 2 * testPart, cancel: cancel}
	if _, err := s.Put(ctx, "big", r, int64(len(data)), providers.PutOptions{}); err == nil {
		t.Fatal("Put survived its context")
	}
	if u := srv.Uploads(bucket); len(u) != 0 {
		t.Errorf("uploads left in progress after a cancelled put: %v", u)
	}
}

type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
		return 0, context.Canceled
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// TestVersionedConformance: Versions and Versioning against the emulator's versioned
// buckets; an unversioned bucket reports Versioning false.
func TestVersionedConformance(t *testing.T) {
	srv := emulator(t, ocitest.Options{})
	providertest.RunVersioned(t, func(t *testing.T) providers.Store {
		return open(t, srv, newBucket(t, srv, true), "site/", fastOptions())
	})
	plain := open(t, srv, newBucket(t, srv, false), "site/", fastOptions())
	if on, err := plain.Versioning(t.Context()); err != nil || on {
		t.Fatalf("Versioning() of an unversioned bucket = %v, %v; want false", on, err)
	}
}
