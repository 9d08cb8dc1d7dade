package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

const offlineSpec = `migration: offline-test
sources:
  - name: virginia
    role: primary
    url: s3://%[1]s/users/
    endpoint: %[3]s
    region: us-east-1
    path_style: true
    credentials: {access_key_env: FERRY_OFFLINE_AK, secret_key_env: FERRY_OFFLINE_SK}
target:
  url: s3://%[2]s/users/
  endpoint: %[3]s
  region: us-east-1
  path_style: true
  credentials: {access_key_env: FERRY_OFFLINE_AK, secret_key_env: FERRY_OFFLINE_SK}
records:
  user: '^(?P<user>[^/]+)/'
delete:
  mode: hard
  stages:
    - {name: primary, sites: [virginia]}
report:
  signing_key: keys/ferry.key
  signer: Data Protection Office
`

// status, report and a delete dry run read the state only: they work with the
// environment variables the spec names for the sites' credentials unset, and name
// the same places as with them (issue 13, "also found by a new operator"). A phase
// that needs the stores still says which variable is missing.
func TestOfflinePhasesNeedNoCredentials(t *testing.T) {
	srv := s3test.Start(t, s3test.MinIO)
	site, target := srv.Bucket(t, false), srv.Bucket(t, false)
	for _, k := range []string{"users/alice/mail.txt", "users/bob/photo.jpg"} {
		if _, err := srv.Client().PutObject(context.Background(), &s3.PutObjectInput{
			Bucket: aws.String(site), Key: aws.String(k), Body: strings.NewReader("bytes of " + k)}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	spec := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf(offlineSpec, site, target, srv.Endpoint)), 0o644); err != nil {
		t.Fatal(err)
	}
	ferry := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"-c", spec, "--no-progress"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	must := func(args ...string) string {
		t.Helper()
		code, out, errs := ferry(args...)
		if code != 0 {
			t.Fatalf("ferry %v: exit %d\n%s%s", args, code, out, errs)
		}
		return out
	}
	t.Setenv("FERRY_OFFLINE_AK", srv.AccessKey)
	t.Setenv("FERRY_OFFLINE_SK", srv.SecretKey)
	must("keys", "generate", "--out", filepath.Join(dir, "keys"))
	must("plan")
	must("copy")
	must("verify")
	withCreds := must("delete", "--stage", "primary", "--dry-run")

	os.Unsetenv("FERRY_OFFLINE_AK")
	os.Unsetenv("FERRY_OFFLINE_SK")
	if out := must("status"); !strings.Contains(out, "verified") {
		t.Errorf("status without credentials:\n%s", out)
	}
	if out := must("status", "--user", "alice"); !strings.Contains(out, "s3://"+site+"/users/alice/mail.txt") {
		t.Errorf("status --user without credentials does not name the replica:\n%s", out)
	}
	if out := must("delete", "--stage", "primary", "--dry-run"); out != withCreds {
		t.Errorf("delete --dry-run without credentials:\n%s\nwith them:\n%s", out, withCreds)
	}
	code, out, errs := ferry("report", "--out", filepath.Join(dir, "report"))
	if code != 3 || !strings.Contains(out, "status: INCOMPLETE") { // the stage has not run
		t.Fatalf("report without credentials: exit %d, want 3 (incomplete)\n%s%s", code, out, errs)
	}
	man, err := os.ReadFile(filepath.Join(dir, "report", "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"uri":"s3://` + site + `/users/alice/mail.txt"`, `"uri":"s3://` + target + `/users/bob/photo.jpg"`} {
		if !bytes.Contains(man, []byte(want)) {
			t.Errorf("manifest written without credentials lacks %s:\n%s", want, man)
		}
	}

	// A phase that needs the stores fails, naming the variable.
	code, _, errs = ferry("copy")
	if code != 1 || !strings.Contains(errs, "FERRY_OFFLINE_AK") {
		t.Errorf("copy without credentials: exit %d, want 1 naming FERRY_OFFLINE_AK\n%s", code, errs)
	}
}

// FERRY_CPUPROFILE writes one profile per command into the folder it names.
func TestCPUProfileEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FERRY_CPUPROFILE", dir)
	stop := cpuProfile([]string{"status", "--json"})
	stop()
	files, err := filepath.Glob(filepath.Join(dir, fmt.Sprintf("status-%d.pprof", os.Getpid())))
	if err != nil || len(files) != 1 {
		t.Fatalf("profiles %v (%v), want status-<pid>.pprof", files, err)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Size() == 0 {
		t.Fatalf("profile %s: %v, %v", files[0], fi, err)
	}
}
