package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/azblob/azbtest"
	"github.com/ferrymigrate/ferry/providers/gs/gstest"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

const cloudsSpec = `migration: three-clouds
sources:
  - name: virginia
    role: primary
    url: file://./virginia
  - name: gcs
    role: backup
    url: gs://%[1]s/users/
    endpoint: %[2]s
    credentials: {auth: none}
  - name: azure
    role: backup
    url: azblob://devstoreaccount1/%[3]s/users/
    endpoint: %[4]s
    credentials: {account_key_env: %[5]s}
target:
  url: s3://%[6]s/users/
  endpoint: %[7]s
  region: us-east-1
  path_style: true
  credentials: {access_key_env: %[8]s, secret_key_env: %[9]s}
records:
  user: '^(?P<user>[^/]+)/'
delete:
  mode: soft
  grace: 0s
  stages:
    - {name: canary, sites: [gcs], sample: 10%%}
    - {name: backups, sites: [gcs, azure]}
    - {name: primary, sites: [virginia]}
report:
  signing_key: keys/ferry.key
  signer: Data Protection Office
`

// The migration issue 14 was written for: a file primary in the data center, a GCS
// backup and an Azure backup, into an S3 target, every phase through the CLI on the
// emulators. Then independent clients (the S3 SDK, GCS's JSON API, the Azure SDK)
// find every record at the target and nothing of the users' data left at the sites,
// and the certificate verifies.
func TestThreeCloudsThroughTheCLI(t *testing.T) {
	ctx := context.Background()
	minio := s3test.Start(t, s3test.MinIO)
	gcs := gstest.Start(t)
	az := azbtest.Start(t)
	target := minio.Bucket(t, false)
	bucket := gcs.Bucket(t, false)
	cont := az.Container(t)

	dir := t.TempDir()
	// 30 users with 2 records each at the primary; the GCS backup holds the even
	// users, Azure every third; both backups hold exactly the primary's bytes.
	want := map[string]string{}
	gsStore := open(t, gcs.Config(bucket, "users/"))
	azStore := open(t, az.Config(cont, "users/"))
	for u := 0; u < 30; u++ {
		for _, f := range []string{"mail.txt", "photos/p1.jpg"} {
			key := fmt.Sprintf("user%02d/%s", u, f)
			data := fmt.Sprintf("%s: %s", key, strings.Repeat("x", 100+u*37))
			want[key] = data
			p := filepath.Join(dir, "virginia", filepath.FromSlash(key))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			if u%2 == 0 {
				put(t, gsStore, key, data)
			}
			if u%3 == 0 {
				put(t, azStore, key, data)
			}
		}
	}

	spec := filepath.Join(dir, "ferry.yaml")
	text := fmt.Sprintf(cloudsSpec, bucket, gcs.Endpoint, cont, az.Endpoint, az.KeyEnv,
		target, minio.Endpoint, minio.AccessKeyEnv, minio.SecretKeyEnv)
	if err := os.WriteFile(spec, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(minio.AccessKeyEnv, minio.AccessKey)
	t.Setenv(minio.SecretKeyEnv, minio.SecretKey)
	ferry := func(args ...string) (int, string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(append([]string{"-c", spec, "--no-progress"}, args...), &out, &errb)
		if code != 0 {
			return code, out.String() + errb.String()
		}
		return code, out.String()
	}
	must := func(args ...string) string {
		t.Helper()
		code, out := ferry(args...)
		if code != 0 {
			t.Fatalf("ferry %v: exit %d\n%s", args, code, out)
		}
		return out
	}
	confirm := func(stage string) {
		t.Helper()
		code, out := ferry("--json", "delete", "--stage", stage, "--dry-run")
		if code != 0 {
			t.Fatalf("dry run of %s: exit %d\n%s", stage, code, out)
		}
		var env struct {
			Result struct {
				Scope struct {
					Digest string `json:"digest"`
				} `json:"scope"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(out), &env); err != nil || env.Result.Scope.Digest == "" {
			t.Fatalf("dry run of %s: no digest (%v)\n%s", stage, err, out)
		}
		must("delete", "--stage", stage, "--confirm", env.Result.Scope.Digest)
	}

	must("keys", "generate", "--out", filepath.Join(dir, "keys"))
	must("validate")
	if out := must("plan"); !strings.Contains(out, "60") {
		t.Errorf("plan does not count 60 records:\n%s", out)
	}
	must("copy")
	must("verify")
	for _, stage := range []string{"canary", "backups", "primary"} {
		confirm(stage)
	}
	must("delete", "--stage", "canary", "--purge")
	must("delete", "--stage", "backups", "--purge")
	must("delete", "--stage", "primary", "--purge")
	code, out := ferry("report", "--out", filepath.Join(dir, "report"))
	if code != 0 || !strings.Contains(out, "COMPLETE") {
		t.Fatalf("report: exit %d\n%s", code, out)
	}
	must("report", "verify", filepath.Join(dir, "report", "certificate.json"),
		"--manifest", filepath.Join(dir, "report", "manifest.jsonl"), "--pubkey", filepath.Join(dir, "keys", "ferry.pub"))

	// Every record at the target, byte for byte (the S3 SDK, not ferry).
	got := map[string]string{}
	p := s3.NewListObjectsV2Paginator(minio.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(target), Prefix: aws.String("users/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), "users/")
			if strings.HasPrefix(k, ".ferry") {
				continue
			}
			r, err := minio.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(target), Key: o.Key})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			got[k] = string(b)
		}
	}
	if len(got) != len(want) {
		t.Errorf("target holds %d records, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("target %s: %d bytes, want %d", k, len(got[k]), len(v))
		}
	}

	// Nothing left at the sites: no user file at the primary, no object (live or
	// quarantined) in the GCS bucket (fake-gcs-server's own listing, behind the
	// proxies), no blob in the Azure container (the Azure SDK with the account key).
	var left []string
	filepath.WalkDir(filepath.Join(dir, "virginia"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, "virginia:"+p)
		}
		return nil
	})
	resp, err := http.Get(gcs.Direct + "/storage/v1/b/" + url.PathEscape(bucket) + "/o")
	if err != nil {
		t.Fatal(err)
	}
	var listing struct {
		Items []struct{ Name string } `json:"items"`
	}
	err = json.NewDecoder(resp.Body).Decode(&listing)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range listing.Items {
		left = append(left, "gcs:"+it.Name)
	}
	pager := az.Client().NewContainerClient(cont).NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: to.Ptr("")})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.Segment.BlobItems {
			left = append(left, "azure:"+*b.Name)
		}
	}
	sort.Strings(left)
	if len(left) > 0 {
		t.Errorf("left at the sites after every stage and purge:\n%s", strings.Join(left, "\n"))
	}
}

func open(t *testing.T, cfg providers.Config) providers.Store {
	t.Helper()
	s, err := providers.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, ok := s.(io.Closer); ok {
			c.Close()
		}
	})
	return s
}

func put(t *testing.T, s providers.Store, key, data string) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, strings.NewReader(data), int64(len(data)), providers.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
