package azblob_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/azblob"
	"github.com/ferrymigrate/ferry/providers/azblob/azbtest"
	"github.com/ferrymigrate/ferry/providers/fault"
	"github.com/ferrymigrate/ferry/providers/providertest"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

func TestMain(m *testing.M) { azbtest.Main(m) }

// testOptions keeps the small part size tests use to exercise block lists.
var testOptions = azblob.Options{MinPartSize: 64 << 10, ListPageSize: 1000, RetryDelay: 50 * time.Millisecond, MaxRetryDelay: 500 * time.Millisecond}

func open(t *testing.T, cfg providers.Config) *azblob.Store {
	t.Helper()
	s, err := azblob.New(t.Context(), cfg, testOptions)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.URL, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := azbtest.Shared(t)
	providertest.Run(t, func(t *testing.T) providers.Store {
		cfg := srv.Config(srv.Container(t), "users/")
		cfg.PartSize = 1 << 20 // the 3 MiB and 8 MiB objects go up as block lists
		return open(t, cfg)
	})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func put(t *testing.T, s providers.Store, key string, data []byte) providers.Object {
	t.Helper()
	o, err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), providers.PutOptions{SHA256: sha(data)})
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
		t.Fatalf("Open(%q): read: %v", key, err)
	}
	return b
}

// overwrite writes key behind the store's back, with the account key.
func overwrite(t *testing.T, srv *azbtest.Server, container, name string, data []byte) {
	t.Helper()
	_, err := srv.Client().NewContainerClient(container).NewBlockBlobClient(name).UploadBuffer(context.Background(), data, nil)
	if err != nil {
		t.Fatalf("overwrite %s: %v", name, err)
	}
}

// TestChangedBlobNotDeleted: a blob rewritten after it was verified is never
// deleted, whether the change is seen by the properties read before the delete or
// lands between that read and the delete itself (then Azure's If-Match refuses).
func TestChangedBlobNotDeleted(t *testing.T) {
	srv := azbtest.Shared(t)
	cont := srv.Container(t)
	p := srv.Proxy(t)
	cfg := srv.Config(cont, "users/")
	cfg.Endpoint = p.Endpoint
	s := open(t, cfg)
	ctx := t.Context()

	t.Run("BeforeTheCheck", func(t *testing.T) {
		verified := put(t, s, "u1/a", []byte("verified bytes"))
		overwrite(t, srv, cont, "users/u1/a", []byte("rewritten since verify"))
		err := s.DeleteIf(ctx, "u1/a", verified)
		if !errors.Is(err, providers.ErrPrecondition) {
			t.Fatalf("DeleteIf of a changed blob: %v, want ErrPrecondition", err)
		}
		if got := content(t, s, "u1/a"); string(got) != "rewritten since verify" {
			t.Fatalf("blob now holds %q", got)
		}
	})
	for _, soft := range []bool{false, true} {
		t.Run(fmt.Sprintf("BetweenCheckAndDelete/soft=%v", soft), func(t *testing.T) {
			key := fmt.Sprintf("u2/race-%v", soft)
			verified := put(t, s, key, []byte("verified bytes"))
			var fired atomic.Bool
			remove := p.Inject(&s3test.Rule{Match: func(r *http.Request) bool {
				if azbtest.Classify(r) == azbtest.OpDelete && strings.HasSuffix(r.URL.Path, "/"+key) && fired.CompareAndSwap(false, true) {
					overwrite(t, srv, cont, "users/"+key, []byte("rewritten under the delete"))
				}
				return false // forward the delete untouched: Azure decides
			}})
			defer remove()
			var err error
			if soft {
				_, err = s.SoftDelete(ctx, key, verified)
			} else {
				err = s.DeleteIf(ctx, key, verified)
			}
			if !fired.Load() {
				t.Fatal("no delete reached the server")
			}
			if !errors.Is(err, providers.ErrPrecondition) {
				t.Fatalf("delete raced by a rewrite: %v, want ErrPrecondition", err)
			}
			if got := content(t, s, key); string(got) != "rewritten under the delete" {
				t.Fatalf("blob now holds %q", got)
			}
			if soft {
				// The quarantined copy of the old bytes is not kept for a delete that
				// did not happen.
				if ok, err := s.SoftExists(ctx, key, s.SoftHandle(key, verified)); err != nil || ok {
					t.Errorf("SoftExists after a refused soft delete = %v, %v; want false", ok, err)
				}
			}
		})
	}
}

// TestBlockListIntegrity: a blob above the part size goes up as several blocks,
// carries the whole-blob Content-MD5 ferry computed, and its metadata round-trips;
// a block corrupted in flight is refused by Azure's per-block MD5 and nothing is
// committed.
func TestBlockListIntegrity(t *testing.T) {
	srv := azbtest.Shared(t)
	cont := srv.Container(t)
	p := srv.Proxy(t)
	cfg := srv.Config(cont, "")
	cfg.Endpoint = p.Endpoint
	cfg.PartSize = 256 << 10
	s := open(t, cfg)
	ctx := t.Context()

	data := providertest.Bytes(7, 1<<20+12345)
	meta := map[string]string{"ferry-sha256": sha(data), "ferry-source-key": "a%2Fb", "Ferry_Odd.Name-2": "ünïcode value "}
	o, err := s.Put(ctx, "big", bytes.NewReader(data), int64(len(data)), providers.PutOptions{SHA256: sha(data), Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	st, err := s.Stat(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if st.Checksums.MD5 != hex.EncodeToString(sum[:]) || o.Checksums.MD5 != st.Checksums.MD5 {
		t.Errorf("Content-MD5: Put reports %q, Stat %q, the bytes have %x", o.Checksums.MD5, st.Checksums.MD5, sum)
	}
	for k, v := range meta {
		if got := st.Metadata[strings.ToLower(k)]; got != v {
			t.Errorf("metadata %q = %q, want %q (all: %v)", k, got, v, st.Metadata)
		}
	}
	bl, err := srv.Client().NewContainerClient(cont).NewBlockBlobClient("big").GetBlockList(ctx, blockblob.BlockListTypeCommitted, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(bl.CommittedBlocks); n != 5 {
		t.Errorf("committed %d blocks, want 5 of 256 KiB", n)
	}
	if got := content(t, s, "big"); !bytes.Equal(got, data) {
		t.Error("the block blob reads back other bytes")
	}

	// One block corrupted on its way: Azure refuses it (Md5Mismatch), the upload
	// fails with ErrChecksum and the old blob stays.
	rule := &s3test.Rule{Match: func(r *http.Request) bool {
		return azbtest.Classify(r) == azbtest.OpPut && r.URL.Query().Get("comp") == "block"
	}, When: fault.When{Skip: 2, Times: 1}, Fault: s3test.Fault{CorruptRequest: true}}
	remove := p.Inject(rule)
	other := providertest.Bytes(8, len(data))
	_, err = s.Put(ctx, "big", bytes.NewReader(other), int64(len(other)), providers.PutOptions{SHA256: sha(other)})
	remove()
	if rule.Fired() != 1 {
		t.Fatalf("the corruption fired %d times", rule.Fired())
	}
	if !errors.Is(err, providers.ErrChecksum) {
		t.Fatalf("Put with a block corrupted in flight: %v, want ErrChecksum", err)
	}
	if got := content(t, s, "big"); !bytes.Equal(got, data) {
		t.Error("a failed block upload changed the blob")
	}

	// A single Put Blob corrupted in flight: refused by its Content-MD5.
	rule = &s3test.Rule{Match: azbtest.Match(azbtest.OpPut), When: fault.When{Times: 1}, Fault: s3test.Fault{CorruptRequest: true}}
	remove = p.Inject(rule)
	small := []byte("small blob, one request")
	_, err = s.Put(ctx, "small", bytes.NewReader(small), int64(len(small)), providers.PutOptions{})
	remove()
	if !errors.Is(err, providers.ErrChecksum) {
		t.Fatalf("Put Blob corrupted in flight: %v, want ErrChecksum", err)
	}
	if _, err := s.Stat(ctx, "small"); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Stat after a refused Put Blob: %v, want ErrNotFound", err)
	}

	// A download corrupted in flight fails its Content-MD5 check.
	remove = p.Inject(&s3test.Rule{Match: azbtest.Match(azbtest.OpGet), When: fault.When{Times: 1}, Fault: s3test.Fault{CorruptBody: true}})
	rc, _, err := s.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	remove()
	if !errors.Is(err, providers.ErrChecksum) {
		t.Fatalf("reading a corrupted download: %v, want ErrChecksum", err)
	}
}

// TestFaultStorm runs writes, listings, reads and conditional deletes through
// throttling and server errors (retried by the store) and cut or truncated
// download bodies (failed reads, retried here as the pipeline retries a record):
// every byte that comes back is right, and every delete is exact.
func TestFaultStorm(t *testing.T) {
	srv := azbtest.Shared(t)
	cont := srv.Container(t)
	p := srv.Proxy(t)
	cfg := srv.Config(cont, "storm/")
	cfg.Endpoint = p.Endpoint
	cfg.PartSize = 128 << 10
	s := open(t, cfg)
	ctx := t.Context()

	for _, st := range []int{429, 500, 503} {
		p.Inject(&s3test.Rule{Match: azbtest.Match(), When: fault.When{Fraction: 0.08}, Fault: s3test.Fault{Status: st}})
	}
	cut := &s3test.Rule{Match: azbtest.Match(azbtest.OpGet), When: fault.When{Fraction: 0.15}, Fault: s3test.Fault{Truncate: true}}
	short := &s3test.Rule{Match: azbtest.Match(azbtest.OpGet), When: fault.When{Fraction: 0.15}, Fault: s3test.Fault{ShortBody: true}}
	p.Inject(cut)
	p.Inject(short)

	const n = 24
	want := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		key := fmt.Sprintf("u%02d/obj", i)
		data := providertest.Bytes(uint64(100+i), 40<<10+i*20<<10) // some above the part size
		mu.Lock()
		want[key] = data
		mu.Unlock()
		wg.Go(func() {
			// A put that still fails after the store's own retries is tried again,
			// as the pipeline retries a record.
			var err error
			for range 3 {
				if _, err = s.Put(ctx, key, bytes.NewReader(data), int64(len(data)), providers.PutOptions{SHA256: sha(data)}); err == nil {
					return
				}
			}
			errs <- fmt.Errorf("Put %s: %w", key, err)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	listed := map[string]providers.Object{}
	if err := s.List(ctx, func(o providers.Object) error { listed[o.Key] = o; return nil }); err != nil {
		t.Fatalf("List through the storm: %v", err)
	}
	if len(listed) != n {
		t.Fatalf("List through the storm: %d blobs, want %d", len(listed), n)
	}
	readFailures := 0
	for key, data := range want {
		var got []byte
		for attempt := 0; ; attempt++ {
			rc, _, err := s.Open(ctx, key)
			if err == nil {
				got, err = io.ReadAll(rc)
				rc.Close()
			}
			if err == nil {
				break
			}
			readFailures++
			if attempt == 20 {
				t.Fatalf("read %s: %v", key, err)
			}
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read %s through the storm: %d bytes that are not the blob's", key, len(got))
		}
		if err := s.DeleteIf(ctx, key, listed[key]); err != nil {
			t.Fatalf("DeleteIf %s: %v", key, err)
		}
	}
	p.Clear()
	var left []string
	if err := s.List(ctx, func(o providers.Object) error { left = append(left, o.Key); return nil }); err != nil || len(left) != 0 {
		t.Fatalf("after the storm: %v left, %v", left, err)
	}
	if cut.Fired()+short.Fired() == 0 || s.Retries() == 0 {
		t.Fatalf("the storm did not blow: %d cut, %d truncated bodies, %d retries", cut.Fired(), short.Fired(), s.Retries())
	}
	t.Logf("storm: %d retries, %d cut and %d truncated bodies, %d failed reads, no wrong byte", s.Retries(), cut.Fired(), short.Fired(), readFailures)
}

// TestRetainedBlob: Azure's refusal to delete a blob under an immutability policy
// or legal hold (Azurite has neither; the proxy answers as Azure does) is
// ErrRetained, never a success and never ErrNotFound, and the blob stays.
func TestRetainedBlob(t *testing.T) {
	srv := azbtest.Shared(t)
	cont := srv.Container(t)
	p := srv.Proxy(t)
	cfg := srv.Config(cont, "")
	cfg.Endpoint = p.Endpoint
	s := open(t, cfg)
	ctx := t.Context()
	for _, code := range []string{"BlobImmutableDueToPolicy", "BlobImmutableDueToLegalHold"} {
		t.Run(code, func(t *testing.T) {
			o := put(t, s, "held-"+code, []byte("under a hold"))
			// Only the blob itself is held: the quarantine copy a soft delete makes
			// first must be cleaned up.
			remove := p.Inject(&s3test.Rule{Match: func(r *http.Request) bool {
				return azbtest.Classify(r) == azbtest.OpDelete && strings.HasSuffix(r.URL.Path, "/"+cont+"/"+o.Key)
			}, Fault: s3test.Fault{Status: 409, Code: code}})
			defer remove()
			for name, del := range map[string]func() error{
				"DeleteIf":   func() error { return s.DeleteIf(ctx, o.Key, o) },
				"SoftDelete": func() error { _, err := s.SoftDelete(ctx, o.Key, o); return err },
			} {
				err := del()
				if !errors.Is(err, providers.ErrRetained) || errors.Is(err, providers.ErrNotFound) || providers.Fatal(err) {
					t.Errorf("%s of a held blob: %v, want ErrRetained (not fatal, not not-found)", name, err)
				} else if !strings.Contains(err.Error(), "undeletable") {
					t.Errorf("%s: the error does not say the blob is undeletable: %v", name, err)
				}
			}
			remove()
			if got := content(t, s, o.Key); string(got) != "under a hold" {
				t.Errorf("held blob holds %q", got)
			}
			if ok, err := s.SoftExists(ctx, o.Key, s.SoftHandle(o.Key, o)); err != nil || ok {
				t.Errorf("a quarantined copy of a held blob was left behind: %v, %v", ok, err)
			}
		})
	}
}

// TestBadInput: each misconfiguration fails at open, fast, with an error that
// names the site and says what to do, classified so that a phase stops at once.
func TestBadInput(t *testing.T) {
	srv := azbtest.Shared(t)
	cont := srv.Container(t)
	ctx := t.Context()
	openErr := func(t *testing.T, cfg providers.Config) error {
		t.Helper()
		start := time.Now()
		s, err := azblob.New(ctx, cfg, testOptions)
		if err == nil {
			s.Close()
			t.Fatalf("open %s succeeded", cfg.URL)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("open took %v to fail", d)
		}
		t.Logf("%v", err)
		if !strings.HasPrefix(err.Error(), cfg.Name+": ") {
			t.Errorf("error does not name the site %q: %v", cfg.Name, err)
		}
		return err
	}
	t.Run("MissingContainer", func(t *testing.T) {
		err := openErr(t, srv.Config("no-such-container", ""))
		if !errors.Is(err, providers.ErrNoBucket) || !providers.Fatal(err) || errors.Is(err, providers.ErrNotFound) {
			t.Errorf("missing container: %v, want fatal ErrNoBucket", err)
		}
		if !strings.Contains(err.Error(), "create the container") {
			t.Errorf("missing container: the error does not say what to do: %v", err)
		}
	})
	t.Run("WrongKey", func(t *testing.T) {
		env := "FERRY_AZBTEST_WRONG_KEY"
		t.Setenv(env, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 64)))
		cfg := srv.Config(cont, "")
		cfg.Credentials = map[string]string{"account_key_env": env}
		err := openErr(t, cfg)
		if !errors.Is(err, providers.ErrCredentials) || !providers.Fatal(err) {
			t.Errorf("wrong key: %v, want fatal ErrCredentials", err)
		}
		if strings.Contains(err.Error(), os.Getenv(env)) {
			t.Errorf("the error shows the key: %v", err)
		}
	})
	t.Run("KeyNotSet", func(t *testing.T) {
		cfg := srv.Config(cont, "")
		cfg.Credentials = map[string]string{"account_key_env": "FERRY_AZBTEST_UNSET_KEY"}
		if err := openErr(t, cfg); !strings.Contains(err.Error(), "FERRY_AZBTEST_UNSET_KEY, which is not set") {
			t.Errorf("unset key variable: %v", err)
		}
	})
	t.Run("BadSASNotShown", func(t *testing.T) {
		env := "FERRY_AZBTEST_SAS"
		const sig = "c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ%3D%3D"
		t.Setenv(env, "?sv=2021-08-06&ss=b&srt=sco&sp=rl&se=2099-01-01T00:00:00Z&sig="+sig)
		cfg := srv.Config(cont, "")
		cfg.Credentials = map[string]string{"sas_token_env": env}
		err := openErr(t, cfg)
		if !errors.Is(err, providers.ErrCredentials) && !errors.Is(err, providers.ErrAccessDenied) {
			t.Errorf("bad SAS: %v, want ErrCredentials or ErrAccessDenied", err)
		}
		if strings.Contains(err.Error(), sig) || strings.Contains(err.Error(), "c2VjcmV0") {
			t.Errorf("the error shows the SAS signature: %v", err)
		}
	})
	t.Run("AzuriteNotRunning", func(t *testing.T) {
		port, err := s3test.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		cfg := srv.Config(cont, "")
		cfg.Endpoint = fmt.Sprintf("http://127.0.0.1:%d/%s", port, azbtest.Account)
		err = openErr(t, cfg)
		if !strings.Contains(err.Error(), "does not answer") {
			t.Errorf("no server: %v, want a message that the endpoint does not answer", err)
		}
	})
	t.Run("AccountMismatch", func(t *testing.T) {
		for _, c := range []struct{ url, endpoint string }{
			{"azblob://otheraccount/" + cont + "/", srv.Endpoint},
			{"azblob://myaccount/" + cont + "/", "https://youraccount.blob.core.windows.net"},
			{"azblob://myaccount/" + cont + "/", "https://youraccount.blob.core.usgovcloudapi.net/"},
		} {
			cfg := srv.Config(cont, "")
			cfg.URL, cfg.Endpoint = c.url, c.endpoint
			err := openErr(t, cfg)
			if !strings.Contains(err.Error(), "but the url names account") {
				t.Errorf("url %s at endpoint %s: %v, want an account mismatch", c.url, c.endpoint, err)
			}
		}
		cfg := srv.Config(cont, "")
		cfg.Endpoint = srv.Base // path style without the account
		if err := openErr(t, cfg); !strings.Contains(err.Error(), "names no storage account") {
			t.Errorf("endpoint without an account: %v", err)
		}
	})
	t.Run("URLs", func(t *testing.T) {
		for _, raw := range []string{
			"azblob://Upper/" + cont + "/", "azblob://ab/" + cont + "/", "azblob://acct/", "azblob://acct/Bad_Container/",
			"azblob://acct:10000/c0ntainer/", "azblob://acct/c0ntainer/../x", "azblob://acct/c0ntainer/p?sig=secretsig",
			"s3://acct/c0ntainer/",
		} {
			cfg := srv.Config(cont, "")
			cfg.URL = raw
			err := openErr(t, cfg)
			if strings.Contains(err.Error(), "secretsig") {
				t.Errorf("%s: the error shows the signature: %v", raw, err)
			}
		}
		acct, c, prefix, err := azblob.ParseURL("azblob://acct/c0ntainer/users")
		if err != nil || acct != "acct" || c != "c0ntainer" || prefix != "users/" {
			t.Errorf("ParseURL = %q %q %q %v", acct, c, prefix, err)
		}
	})
}

// TestWithSAS: a SAS token named by environment variable works for every
// operation, soft delete's server-side copy included.
func TestWithSAS(t *testing.T) {
	srv := azbtest.Shared(t)
	cont := srv.Container(t)
	sasURL, err := srv.Client().NewContainerClient(cont).GetSASURL(sas.ContainerPermissions{Read: true, Add: true, Create: true, Write: true, Delete: true, List: true},
		time.Now().Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, query, _ := strings.Cut(sasURL, "?")
	t.Setenv("FERRY_AZBTEST_GOOD_SAS", query)
	cfg := srv.Config(cont, "sas/")
	cfg.Credentials = map[string]string{"sas_token_env": "FERRY_AZBTEST_GOOD_SAS"}
	s := open(t, cfg)
	ctx := t.Context()
	o := put(t, s, "u/k", []byte("through a SAS"))
	h, err := s.SoftDelete(ctx, "u/k", o)
	if err != nil {
		t.Fatalf("SoftDelete with a SAS: %v", err)
	}
	if err := s.Restore(ctx, "u/k", h); err != nil {
		t.Fatalf("Restore with a SAS: %v", err)
	}
	if got := content(t, s, "u/k"); string(got) != "through a SAS" {
		t.Fatalf("restored %q", got)
	}
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, providers.ErrNotFound) || strings.Contains(err.Error(), "sig=") {
		t.Errorf("Stat of a missing blob with a SAS: %v", err)
	}
}

// TestStoreFacts: identity, region, recoverability and the encryption scope as
// far as Azurite shows them.
func TestStoreFacts(t *testing.T) {
	srv := azbtest.Shared(t)
	cont := srv.Container(t)
	ctx := t.Context()
	s := open(t, srv.Config(cont, "a/"))
	id, err := s.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := open(t, srv.Config(cont, "a/b/"))
	oid, _ := other.Identity(ctx)
	if id.Kind != "azblob" || id.Container != azbtest.Account+"/"+cont || !id.Overlaps(oid) {
		t.Errorf("identity %+v does not overlap its own sub-prefix %+v", id, oid)
	}
	third := open(t, srv.Config(srv.Container(t), "a/"))
	if tid, _ := third.Identity(ctx); id.Overlaps(tid) {
		t.Errorf("two containers overlap: %+v %+v", id, tid)
	}
	if _, err := s.Region(ctx); !errors.Is(err, providers.ErrNotSupported) {
		t.Errorf("Region without a declared region: %v, want ErrNotSupported", err)
	}
	cfg := srv.Config(cont, "a/")
	cfg.Region = "westeurope"
	if r, err := open(t, cfg).Region(ctx); r != "westeurope" || err != nil {
		t.Errorf("declared region: %q, %v", r, err)
	}
	rec, err := s.Recoverability(ctx)
	if err != nil || rec.Recoverable {
		t.Errorf("Recoverability on Azurite (no soft delete) = %+v, %v", rec, err)
	}
	if on, err := s.Versioning(ctx); err != nil || on {
		t.Errorf("Versioning on Azurite = %v, %v; want false", on, err)
	}
}

// TestEncryptionScope: every write names the target's encryption scope. Azurite
// accepts the header without keeping a scope (it has none), so this shows the
// request is well formed and the scope reaches the service; a real account refuses
// a scope it does not have, which is what the pipeline then reports.
func TestEncryptionScope(t *testing.T) {
	srv := azbtest.Shared(t)
	cont := srv.Container(t)
	p := srv.Proxy(t)
	cfg := srv.Config(cont, "")
	cfg.Endpoint, cfg.EncryptionScope, cfg.PartSize = p.Endpoint, "ferryscope1", 128<<10
	s := open(t, cfg)
	var mu sync.Mutex
	scopes := map[string]int{}
	p.Inject(&s3test.Rule{Match: func(r *http.Request) bool {
		if azbtest.Classify(r) == azbtest.OpPut {
			mu.Lock()
			scopes[r.URL.Query().Get("comp")+"="+r.Header.Get("x-ms-encryption-scope")]++
			mu.Unlock()
		}
		return false
	}})
	put(t, s, "small", []byte("one put blob"))
	big := providertest.Bytes(9, 300<<10)
	put(t, s, "big", big)
	if got := content(t, s, "big"); !bytes.Equal(got, big) {
		t.Fatal("read back other bytes")
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{"=ferryscope1": 1, "block=ferryscope1": 3, "blocklist=ferryscope1": 1}
	if fmt.Sprint(scopes) != fmt.Sprint(want) {
		t.Errorf("writes named scopes %v, want %v", scopes, want)
	}
}

// TestListRange: ranges list exactly their keys in order, with startFrom where the
// service takes it, and from the start of the prefix where it refuses it (400).
func TestListRange(t *testing.T) {
	srv := azbtest.Shared(t)
	cont := srv.Container(t)
	p := srv.Proxy(t)
	cfg := srv.Config(cont, "r/")
	cfg.Endpoint = p.Endpoint
	s := open(t, cfg)
	var keys []string
	for i := range 30 {
		k := fmt.Sprintf("u%02d/doc", i)
		keys = append(keys, k)
		put(t, s, k, []byte(k))
	}
	rangeKeys := func() []string {
		t.Helper()
		var got []string
		if err := s.ListRange(t.Context(), "u09/doc", "u19/doc", func(o providers.Object) error { got = append(got, o.Key); return nil }); err != nil {
			t.Fatalf("ListRange: %v", err)
		}
		return got
	}
	want := fmt.Sprint(keys[10:20])
	if got := rangeKeys(); fmt.Sprint(got) != want {
		t.Fatalf("ListRange(u09/doc, u19/doc] = %v, want %v", got, want)
	}
	refuse := &s3test.Rule{Match: func(r *http.Request) bool {
		return azbtest.Classify(r) == azbtest.OpList && r.URL.Query().Has("startFrom")
	}, Fault: s3test.Fault{Status: 400, Code: "InvalidQueryParameterValue"}}
	p.Inject(refuse)
	if got := rangeKeys(); fmt.Sprint(got) != want {
		t.Fatalf("ListRange without startFrom = %v, want %v", got, want)
	}
	if refuse.Fired() != 1 {
		t.Errorf("startFrom refused %d times, want once (then no longer sent)", refuse.Fired())
	}
	if got := rangeKeys(); fmt.Sprint(got) != want || refuse.Fired() != 1 {
		t.Errorf("second range: %v, refusals %d", got, refuse.Fired())
	}
}
