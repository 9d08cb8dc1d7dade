package migrate

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

const auditYAML = `migration: audit-test
sources:
  - name: virginia
    role: primary
    url: s3://%[1]s/users/
    endpoint: %[3]s
    region: us-east-1
    path_style: true
    credentials: {access_key_env: %[4]s, secret_key_env: %[5]s}
target:
  url: s3://%[2]s/users/
  endpoint: %[3]s
  region: us-east-1
  path_style: true
  credentials: {access_key_env: %[4]s, secret_key_env: %[5]s}
records:
  user: '^(?P<user>[^/]+)/'
copy:
  concurrency: 4
delete:
  stages:
    - {name: primary, sites: [virginia], mode: hard}
report:
  signing_key: keys/ferry.key
  signer: Test Data Protection Office
`

// auditSink is an HTTP listener on 127.0.0.1 that MinIO's audit webhook posts to; it
// appends every entry to a log file, as a webhook collector in production would.
type auditSink struct {
	mu   sync.Mutex
	path string
	body bytes.Buffer
}

func (s *auditSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.body.Write(bytes.TrimSpace(b))
	s.body.WriteByte('\n')
	os.WriteFile(s.path, s.body.Bytes(), 0o644)
	s.mu.Unlock()
}

// waitFor waits until the log holds an entry with the request id (the webhook
// delivers asynchronously).
func (s *auditSink) waitFor(t *testing.T, requestID string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		found := bytes.Contains(s.body.Bytes(), []byte(`"requestID":"`+requestID+`"`))
		s.mu.Unlock()
		if found {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("MinIO's audit webhook never delivered request %s", requestID)
}

// TestAuditMinIO is issue 17's done-when: a migration on MinIO with MinIO's audit
// webhook pointed at a listener on 127.0.0.1. Before anyone else touches the data, the
// audit finds nothing; then another identity (STS credentials of their own) reads one
// record at the target, deletes another out of band at the site, and after ferry's
// delete stage reads a key ferry deleted. ferry audit names all three, with who and
// when, and none of ferry's own requests; the certificate carries the findings.
func TestAuditMinIO(t *testing.T) {
	dir := t.TempDir()
	sink := &auditSink{path: filepath.Join(dir, "minio-audit.log")}
	ls := httptest.NewServer(sink)
	defer ls.Close()
	srv := s3test.StartWith(t, s3test.MinIO,
		"MINIO_AUDIT_WEBHOOK_ENABLE_ferrytest=on", "MINIO_AUDIT_WEBHOOK_ENDPOINT_ferrytest="+ls.URL+"/audit")
	siteBucket, targetBucket := srv.Bucket(t, false), srv.Bucket(t, false)
	ctx := context.Background()
	root := srv.Client()
	keys := []string{"alice/a.json", "alice/b.json", "bob/c.json", "bob/d.json", "carol/e.json", "carol/f.json"}
	for i, k := range keys {
		if _, err := root.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(siteBucket), Key: aws.String("users/" + k),
			Body: strings.NewReader(fmt.Sprintf("record %d of %s", i, k))}); err != nil {
			t.Fatal(err)
		}
	}
	spec := fmt.Sprintf(auditYAML, siteBucket, targetBucket, srv.Endpoint, srv.AccessKeyEnv, srv.SecretKeyEnv)
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := certificate.GenerateKeyPair(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	m, err := Open(ctx, Options{SpecPath: filepath.Join(dir, "ferry.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	runThroughVerify(t, m)

	// A probe request by root marks where the log has caught up with ferry's traffic.
	probe := func() string { t.Helper(); return lastRequestID(t, root, siteBucket) }
	sink.waitFor(t, probe())
	sum, err := m.Audit(ctx, AuditOptions{Logs: []string{sink.path}, Format: "auto"})
	if err != nil {
		t.Fatalf("audit of a migration nobody else touched: %v", err)
	}
	if sum.FindingsTotal != 0 || sum.Sources[0].Ferry == 0 || sum.Sources[0].Format != "minio" {
		t.Fatalf("clean migration: %d findings (%+v), %+v", sum.FindingsTotal, sum.Findings, sum.Sources)
	}

	// Mallory: credentials of their own (an STS session), not ferry's.
	mallory := srv.Restricted(t, "MALLORY", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}`)
	mc := awss3.New(awss3.Options{Region: s3test.Region, BaseEndpoint: aws.String(srv.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(mallory.AccessKey, mallory.SecretKey, mallory.SessionToken)})
	readAt := time.Now().UTC()
	out, err := mc.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(targetBucket), Key: aws.String("users/alice/a.json")})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, out.Body)
	out.Body.Close()
	if _, err := mc.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(siteBucket), Key: aws.String("users/bob/c.json")}); err != nil {
		t.Fatal(err)
	}
	if _, err := deleteStage(t, m, "primary"); err != nil {
		t.Logf("delete stage after the out-of-band delete: %v", err)
	}
	carol := record(t, m, "carol/e.json")
	if r := carol.Replica("virginia"); r == nil || r.DeletedAt.IsZero() {
		t.Fatalf("ferry did not delete carol/e.json at virginia: %+v", r)
	}
	// After ferry's deletion, mallory looks for carol/e.json at the site (404).
	_, err = mc.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(siteBucket), Key: aws.String("users/carol/e.json")})
	if err == nil {
		t.Fatal("carol/e.json is still readable at the site after ferry deleted it")
	}
	sink.waitFor(t, probe())

	sum, err = m.Audit(ctx, AuditOptions{Logs: []string{sink.path}})
	mustCode(t, err, ExitIncomplete)
	type want struct{ kind, store, key, op string }
	wants := []want{
		{"foreign-access", "target", "alice/a.json", "read"},
		{"foreign-access", "virginia", "bob/c.json", "delete"},
		{"after-deletion", "virginia", "carol/e.json", "read"},
	}
	if sum.FindingsTotal != int64(len(wants)) {
		t.Fatalf("%d findings, want %d: %+v", sum.FindingsTotal, len(wants), sum.Findings)
	}
	for i, w := range wants {
		f := sum.Findings[i]
		if f.Kind != w.kind || f.Store != w.store || f.Key != w.key || f.Operation != w.op {
			t.Errorf("finding %d = %+v, want %+v", i, f, w)
		}
		if f.Identity != mallory.AccessKey {
			t.Errorf("finding %d names %q, want mallory's access key %q", i, f.Identity, mallory.AccessKey)
		}
		at, err := time.Parse(certificate.TimeLayout, f.Time)
		if err != nil || at.Before(readAt.Truncate(time.Second)) || at.After(time.Now().Add(time.Second)) {
			t.Errorf("finding %d at %q, want a time since %s (%v)", i, f.Time, readAt, err)
		}
		if f.RequestID == "" || !strings.HasPrefix(f.Log, sink.path+":") {
			t.Errorf("finding %d: request id %q, log %q", i, f.RequestID, f.Log)
		}
	}
	for _, id := range sum.FerryIdentities {
		if strings.Contains(id, srv.AccessKey) {
			t.Errorf("the summary names ferry's access key id whole: %q", id)
		}
	}

	// The same log, gzipped, read from the bucket it was delivered to, finds the same.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	b, _ := os.ReadFile(sink.path)
	zw.Write(b)
	zw.Close()
	logBucket := srv.Bucket(t, false)
	if _, err := root.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(logBucket), Key: aws.String("audit/2026/minio.log.gz"), Body: bytes.NewReader(gz.Bytes())}); err != nil {
		t.Fatal(err)
	}
	fromBucket, err := m.Audit(ctx, AuditOptions{Logs: []string{"s3://" + logBucket + "/audit/"}})
	mustCode(t, err, ExitIncomplete)
	if len(fromBucket.Sources) != 2 || fromBucket.FindingsTotal != 6 {
		t.Fatalf("log from its bucket: %+v, %d findings", fromBucket.Sources, fromBucket.FindingsTotal)
	}
	var inBucket int
	for _, f := range fromBucket.Findings {
		if strings.HasPrefix(f.Log, "s3://"+logBucket+"/audit/2026/minio.log.gz:") {
			inBucket++
		}
	}
	if inBucket != 3 {
		t.Fatalf("%d findings from the bucket's log, want 3: %+v", inBucket, fromBucket.Findings)
	}
	// Auditing the file again replaces its findings rather than adding to them.
	sum, err = m.Audit(ctx, AuditOptions{Logs: []string{sink.path}})
	mustCode(t, err, ExitIncomplete)
	if sum.FindingsTotal != 6 {
		t.Fatalf("re-audit of one log: %d findings, want 6 (3 per log)", sum.FindingsTotal)
	}

	// The next report's certificate carries the findings.
	rep, err := m.Report(ctx, filepath.Join(dir, "report"))
	if err != nil && rep == nil {
		t.Fatal(err)
	}
	env, err := certificate.ReadEnvelope(rep.CertificatePath)
	if err != nil {
		t.Fatal(err)
	}
	_, st, err := env.Statement()
	if err != nil {
		t.Fatal(err)
	}
	a := st.Predicate.Audit
	if a == nil || a.FindingsTotal != 6 || len(a.Findings) != 6 || a.Findings[2].Key != "bob/c.json" || a.Findings[2].Identity != mallory.AccessKey {
		js, _ := json.Marshal(a)
		t.Fatalf("certificate's audit section: %s", js)
	}
}

// lastRequestID returns the request id MinIO gave to a fresh HEAD of bucket.
func lastRequestID(t *testing.T, c *awss3.Client, bucket string) string {
	t.Helper()
	var id string
	_, err := c.HeadBucket(context.Background(), &awss3.HeadBucketInput{Bucket: aws.String(bucket)}, func(o *awss3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Deserialize.Add(middleware.DeserializeMiddlewareFunc("rid", func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleDeserialize(ctx, in)
				if r, ok := out.RawResponse.(*smithyhttp.Response); ok {
					id = r.Header.Get("X-Amz-Request-Id")
				}
				return out, md, err
			}), middleware.After)
		})
	})
	if err != nil || id == "" {
		t.Fatalf("HEAD %s: request id %q, %v", bucket, id, err)
	}
	return id
}
