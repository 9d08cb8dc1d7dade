package migrate

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/mem"
	"github.com/ferrymigrate/ferry/providers/oci"
	"github.com/ferrymigrate/ferry/providers/oci/ocitest"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// failFastYAML: one mem site, a MinIO target whose credentials are named in the spec
// (bucket, endpoint, access key env, secret key env).
const failFastYAML = `migration: test-migration
sources:
  - {name: virginia, role: primary, url: file://./stores/virginia}
target:
  url: s3://%s/users/
  endpoint: %s
  region: us-east-1
  path_style: true
  credentials: {access_key_env: %s, secret_key_env: %s}
records:
  user: '^(?P<user>[^/]+)/'
copy:
  concurrency: 4
  retries: 5
delete:
  stages:
    - {name: primary, sites: [virginia]}
`

const wrongSecretEnv = "FERRY_TEST_WRONG_SECRET"

// failFastHarness puts about 60 records at a mem site for a MinIO target opened with cfg
// changed by edit, and returns the harness and the target's S3 store.
func failFastHarness(t *testing.T, edit func(cfg *providers.Config)) (*harness, *s3.Store, string) {
	srv := s3test.Shared(t, s3test.MinIO)
	bucket := srv.Bucket(t, false)
	t.Setenv(wrongSecretEnv, "not-"+strings.Repeat("x", 32))
	var target *s3.Store
	k := storeKind{"mem+s3", func(t *testing.T, h *harness, name string) providers.Store {
		if name != "target" {
			n := fmt.Sprintf("%s-%s", strings.ReplaceAll(t.Name(), "/", "_"), name)
			mem.Reset(n)
			t.Cleanup(func() { mem.Reset(n) })
			return mem.New(n)
		}
		cfg := srv.Config(bucket, "users/")
		cfg.Name = name
		edit(&cfg)
		st, err := s3.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		target = st
		return st
	}}
	h := newHarness(t, k, fmt.Sprintf(failFastYAML, bucket, srv.Endpoint, srv.AccessKeyEnv, wrongSecretEnv))
	h.populate("virginia", synth.Records(synth.Options{Users: 12, RecordsPerUser: 5, Seed: 3}))
	return h, target, bucket
}

// checkStoppedOnce: copy stopped with exit 1 and one message naming the target and
// what to check, having tried no more records than run at once, each once, and the
// SDK retried none of the rejected requests; no record is marked failed.
func checkStoppedOnce(t *testing.T, h *harness, m *Migration, target *s3.Store, err error, says ...string) {
	t.Helper()
	mustCode(t, err, ExitRuntime)
	msg := err.Error()
	for _, s := range says {
		if !strings.Contains(msg, s) {
			t.Errorf("message does not say %q:\n%s", s, msg)
		}
	}
	if strings.Contains(msg, wrongSecretEnv) && strings.Contains(msg, "not-xxxx") {
		t.Errorf("the message carries the secret: %s", msg)
	}
	conc := m.Spec.Copy.Concurrency
	if n := h.faults["target"].Calls(faulty.Put); n < 1 || n > conc {
		t.Errorf("%d Put calls to the target, want 1..%d (one per record in flight, no retries)", n, conc)
	}
	if n := target.Retries(); n != 0 {
		t.Errorf("the SDK retried %d rejected requests", n)
	}
	st, serr := m.State.Stats(context.Background(), m.now())
	if serr != nil {
		t.Fatal(serr)
	}
	if f := st.Records[checkpoints.Failed].N; f != 0 {
		t.Errorf("%d records marked failed: a store-wide error is not the records' fault", f)
	}
	if p, all := st.Records[checkpoints.Planned].N, int64(len(h.listing("virginia"))); p != all {
		t.Errorf("%d records still planned, want all %d", p, all)
	}
	if c := strings.Count(h.logs.String(), "copy failed"); c != 0 {
		t.Errorf("%d per-record failures logged, want none", c)
	}
}

// Wrong (rotated) secret key at the target: copy stops at once with one message
// naming the target and its credential setting (issue 13 extras, issue 16 item 5).
func TestFailFastWrongSecretS3(t *testing.T) {
	h, target, _ := failFastHarness(t, func(cfg *providers.Config) { cfg.Credentials["secret_key_env"] = wrongSecretEnv })
	m := h.open()
	ctx := context.Background()
	if _, err := m.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := m.Copy(ctx)
	checkStoppedOnce(t, h, m, target, err, "target: credentials rejected", "secret_key_env: "+wrongSecretEnv, "copy stopped")
}

// The target bucket removed under a migration: copy stops at once naming the url.
func TestFailFastMissingBucketS3(t *testing.T) {
	h, target, bucket := failFastHarness(t, func(cfg *providers.Config) {})
	m := h.open()
	ctx := context.Background()
	if _, err := m.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	srv := s3test.Shared(t, s3test.MinIO)
	if _, err := srv.Client().DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	_, err := m.Copy(ctx)
	checkStoppedOnce(t, h, m, target, err, "target: the bucket or container does not exist", "s3://"+bucket+"/users/", "copy stopped")
}

// A missing target bucket when the migration is opened: one message naming the url.
func TestFailFastMissingBucketAtOpen(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	h := newHarness(t, storeKinds[1], fmt.Sprintf(failFastYAML, "ferry-no-such-bucket", srv.Endpoint, srv.AccessKeyEnv, srv.SecretKeyEnv))
	opts := h.options(false)
	opts.OpenStore = func(ctx context.Context, cfg providers.Config) (providers.Store, error) {
		if cfg.Name == "target" {
			return providers.Open(ctx, cfg)
		}
		return h.faults[cfg.Name], nil
	}
	_, err := Open(context.Background(), opts)
	mustCode(t, err, ExitRuntime)
	for _, s := range []string{"target: the bucket or container does not exist", "s3://ferry-no-such-bucket/users/"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message does not say %q:\n%v", s, err)
		}
	}
}

// The target bucket removed after verify: the delete stage's re-check and verify
// stop at once, naming it; no replica is deleted and no record is sent back to be
// copied (a HEAD's bare 404 on a missing bucket is not a missing object).
func TestFailFastTargetBucketGoneAtDeleteAndVerify(t *testing.T) {
	h, _, bucket := failFastHarness(t, func(cfg *providers.Config) {})
	m := h.open()
	ctx := context.Background()
	runThroughVerify(t, m)
	srv := s3test.Shared(t, s3test.MinIO)
	c := srv.Client()
	out, err := c.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.Contents {
		if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	before := len(h.listing("virginia"))
	_, err = deleteStage(t, m, "primary")
	mustCode(t, err, ExitRuntime)
	if !strings.Contains(err.Error(), "target: the bucket or container does not exist") || !strings.Contains(err.Error(), "delete stopped") {
		t.Errorf("delete stage: %v", err)
	}
	if n := len(h.listing("virginia")); n != before {
		t.Fatalf("%d replicas deleted with the target bucket gone", before-n)
	}
	_, err = m.Verify(ctx, false)
	mustCode(t, err, ExitRuntime)
	if !strings.Contains(err.Error(), "verify stopped") {
		t.Errorf("verify: %v", err)
	}
	st, err := m.State.Stats(ctx, m.now())
	if err != nil {
		t.Fatal(err)
	}
	if v := st.Records[checkpoints.Verified].N; v != int64(before) {
		t.Errorf("%d of %d records still verified: the missing bucket was taken for missing copies (%+v)", v, before, st.Records)
	}
}

// The target's signing key revoked (OCI emulator: 401 on every request): copy stops
// at once naming the target, each record in flight tried once, none marked failed.
func TestFailFastRevokedKeyOCI(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	srv := ocitest.Start(t, ocitest.Options{})
	id := ocitest.NewIdentity(t)
	srv.Trust(id)
	if err := srv.CreateBucket("us-users", false); err != nil {
		t.Fatal(err)
	}
	cfg := srv.StoreConfig(id, "us-users", "users/")
	cfg.Name, cfg.Migration = "target", "test-migration"
	st, err := oci.New(context.Background(), cfg, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.raw["target"] = st
	h.faults["target"] = faulty.Wrap(st)
	h.standardData(8)
	m := h.open()
	ctx := context.Background()
	if _, err := m.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	srv.RemovePublicKey(id.KeyID())
	_, err = m.Copy(ctx)
	mustCode(t, err, ExitRuntime)
	if !strings.Contains(err.Error(), "target: credentials rejected") || !strings.Contains(err.Error(), "copy stopped") {
		t.Errorf("copy with a revoked key: %v", err)
	}
	if n, conc := h.faults["target"].Calls(faulty.Put), m.Spec.Copy.Concurrency; n < 1 || n > conc {
		t.Errorf("%d Put calls to the target, want 1..%d", n, conc)
	}
	stats, err := m.State.Stats(ctx, m.now())
	if err != nil {
		t.Fatal(err)
	}
	if f := stats.Records[checkpoints.Failed].N; f != 0 {
		t.Errorf("%d records marked failed", f)
	}
}

// A site whose secret key was rotated: plan stops at its listing with one message
// naming the site and its credential setting, and the SDK retries nothing.
func TestFailFastWrongSecretSiteS3Plan(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	bucket := srv.Bucket(t, false)
	t.Setenv(wrongSecretEnv, "not-"+strings.Repeat("x", 32))
	var site *s3.Store
	k := storeKind{"s3+mem", func(t *testing.T, h *harness, name string) providers.Store {
		if name != "virginia" {
			n := fmt.Sprintf("%s-%s", strings.ReplaceAll(t.Name(), "/", "_"), name)
			mem.Reset(n)
			t.Cleanup(func() { mem.Reset(n) })
			return mem.New(n)
		}
		cfg := srv.Config(bucket, "users/")
		cfg.Name = name
		cfg.Credentials["secret_key_env"] = wrongSecretEnv
		st, err := s3.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		site = st
		return st
	}}
	yaml := strings.Replace(failFastYAML, "url: file://./stores/virginia}",
		"url: \"s3://"+bucket+"/users/\", endpoint: \""+srv.Endpoint+"\", credentials: {access_key_env: AK, secret_key_env: "+wrongSecretEnv+"}}", 1)
	h := newHarness(t, k, fmt.Sprintf(yaml, "unused-bucket", srv.Endpoint, srv.AccessKeyEnv, srv.SecretKeyEnv))
	if _, err := srv.Client().PutObject(context.Background(), &awss3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("users/alice/a"), Body: strings.NewReader("a")}); err != nil {
		t.Fatal(err)
	}
	m := h.open()
	_, err := m.Plan(context.Background())
	mustCode(t, err, ExitRuntime)
	for _, s := range []string{"virginia: credentials rejected", "secret_key_env: " + wrongSecretEnv, "plan stopped"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("plan does not say %q: %v", s, err)
		}
	}
	if n := site.Retries(); n != 0 {
		t.Errorf("the SDK retried %d rejected requests", n)
	}
}
