package gs_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/gs"
	"github.com/ferrymigrate/ferry/providers/gs/gstest"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

func TestBadURLsAndSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  providers.Config
		want string
	}{
		{"uppercase bucket", providers.Config{URL: "gs://Bad_Bucket/x/", Endpoint: "http://127.0.0.1:1", Credentials: map[string]string{"auth": "none"}}, "not a Cloud Storage bucket name"},
		{"port", providers.Config{URL: "gs://bucket:99/x/"}, "no user, port"},
		{"dotdot prefix", providers.Config{URL: "gs://bucket/a/../b/"}, `".." segment`},
		{"scheme", providers.Config{URL: "s3://bucket/x/"}, "scheme is not gs"},
		{"unknown credential", providers.Config{URL: "gs://bucket/x/", Credentials: map[string]string{"profile": "p"}}, `unknown credentials key "profile"`},
		{"auth none without endpoint", providers.Config{URL: "gs://bucket/x/", Credentials: map[string]string{"auth": "none"}}, "name it with endpoint"},
		{"unknown auth", providers.Config{URL: "gs://bucket/x/", Credentials: map[string]string{"auth": "instance_principal"}}, `unknown auth "instance_principal"`},
		{"bad endpoint", providers.Config{URL: "gs://bucket/x/", Endpoint: "127.0.0.1:4443", Credentials: map[string]string{"auth": "none"}}, "want http(s)://host[:port]"},
		{"tiny part size", providers.Config{URL: "gs://bucket/x/", PartSize: 1000}, "part size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Name = "gsite"
			_, err := gs.New(t.Context(), tc.cfg, gs.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "gsite: ") {
				t.Fatalf("New = %v; want an error naming the site and saying %q", err, tc.want)
			}
		})
	}
}

func TestMissingBucket(t *testing.T) {
	srv := gstest.Shared(t)
	cfg := srv.Config("no-such-bucket-here", "x/")
	_, err := gs.New(t.Context(), cfg, fastRetries)
	if !errors.Is(err, providers.ErrNoBucket) || !providers.Fatal(err) || !strings.Contains(err.Error(), cfg.Name) {
		t.Fatalf("New on a missing bucket = %v; want a fatal ErrNoBucket naming the site", err)
	}
}

func TestEmulatorNotRunning(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := providers.Config{Name: "gsite", URL: "gs://bucket/x/", Endpoint: "http://" + addr, Credentials: map[string]string{"auth": "none"}}
	start := time.Now()
	_, err = gs.New(t.Context(), cfg, gs.Options{}) // production retry settings
	if err == nil || !strings.Contains(err.Error(), "is the emulator running") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("New against a closed port = %v; want it to say nothing listens at %s", err, addr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a refused connection took %v to report: it must not be retried", d)
	}
}

// serviceAccountFile writes a service-account key whose token endpoint is tokenURL.
func serviceAccountFile(t *testing.T, tokenURL string) string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	sa, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "ferry-test", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "ferry@ferry-test.iam.gserviceaccount.com", "client_id": "1",
		"token_uri": tokenURL,
	})
	p := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(p, sa, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWrongCredentials(t *testing.T) {
	srv := gstest.Shared(t)
	bucket := srv.Bucket(t, false)
	t.Run("missing file", func(t *testing.T) {
		cfg := srv.Config(bucket, "")
		cfg.Credentials = map[string]string{"gcp_credentials_file": filepath.Join(t.TempDir(), "nope.json")}
		_, err := gs.New(t.Context(), cfg, fastRetries)
		if !errors.Is(err, providers.ErrCredentials) || !providers.Fatal(err) {
			t.Fatalf("New = %v; want a fatal ErrCredentials", err)
		}
	})
	t.Run("key the token endpoint rejects", func(t *testing.T) {
		var calls atomic.Int64
		tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`))
		}))
		defer tokens.Close()
		cfg := srv.Config(bucket, "")
		cfg.Credentials = map[string]string{"gcp_credentials_file": serviceAccountFile(t, tokens.URL)}
		_, err := gs.New(t.Context(), cfg, fastRetries)
		if !errors.Is(err, providers.ErrCredentials) || !providers.Fatal(err) || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("New = %v; want a fatal ErrCredentials saying invalid_grant", err)
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Fatalf("the error shows the key: %v", err)
		}
		if n := calls.Load(); n > 2 {
			t.Errorf("the token endpoint was asked %d times: a rejected key is not retried", n)
		}
	})
	for status, want := range map[int]error{http.StatusUnauthorized: providers.ErrCredentials, http.StatusForbidden: providers.ErrAccessDenied} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			remove := srv.Faults.Inject(gstest.Rule(gstest.OpStat, bucket, s3test.Fault{Status: status}))
			defer remove()
			_, err := gs.New(t.Context(), srv.Config(bucket, ""), fastRetries)
			if !errors.Is(err, want) || !providers.Fatal(err) {
				t.Fatalf("New answered %d = %v; want a fatal %v", status, err, want)
			}
		})
	}
}
