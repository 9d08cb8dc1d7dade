package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// The minimum policies of README.md "Least privilege", per phase, for sites
// (site buckets) and the target (one bucket). bucket() and objects() expand names.
func lpPolicy(phase string, sites []string, target string) string {
	arns := func(suffix string, buckets ...string) string {
		var out []string
		for _, b := range buckets {
			out = append(out, fmt.Sprintf("%q", "arn:aws:s3:::"+b+suffix))
		}
		return strings.Join(out, ",")
	}
	all := append(append([]string(nil), sites...), target)
	stmt := func(actions, resources string) string {
		return fmt.Sprintf(`{"Effect":"Allow","Action":[%s],"Resource":[%s]}`, actions, resources)
	}
	buckets := stmt(`"s3:ListBucket","s3:ListBucketVersions","s3:GetBucketLocation","s3:GetBucketVersioning"`, arns("", all...))
	var s []string
	switch phase {
	case "plan", "report":
		s = []string{buckets}
	case "copy":
		s = []string{buckets,
			stmt(`"s3:GetObject"`, arns("/*", sites...)),
			stmt(`"s3:GetObject","s3:PutObject","s3:AbortMultipartUpload","s3:ListMultipartUploadParts"`, arns("/*", target))}
	case "verify":
		s = []string{buckets, stmt(`"s3:GetObject"`, arns("/*", all...))}
	case "delete":
		var quarantine []string
		for _, b := range sites {
			quarantine = append(quarantine, b+"/.ferry-quarantine")
		}
		s = []string{buckets,
			stmt(`"s3:GetObject"`, arns("/*", all...)),
			stmt(`"s3:DeleteObject","s3:DeleteObjectVersion","s3:GetObjectVersion"`, arns("/*", sites...)),
			// Soft deletes in unversioned buckets keep a copy under the quarantine prefix.
			stmt(`"s3:PutObject"`, arns("/*", quarantine...))}
	}
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(s, ",") + `]}`
}

// TestLeastPrivilegeS3 runs every phase of the real binary against MinIO, each with
// temporary credentials (STS AssumeRole with an inline session policy) that hold only
// that phase's permissions (lpPolicy, README.md "Least privilege"): copy works with
// credentials that cannot delete at the sites, delete with credentials that can delete
// at the sites but cannot write to the target, and a phase given another phase's
// credentials fails clearly (access denied, the store named) and changes nothing.
//
// The same runs are the I8 scan of issue 6: every run with -v, text and --json, through
// a proxy that records every Authorization header; stdout, stderr, the state store
// (with its WAL) and the report files are searched for every access key, secret key,
// session token and Authorization header value used.
func TestLeastPrivilegeS3(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	bin := buildFerry(t)
	dir := t.TempDir()
	px := srv.Proxy(t)
	var authMu sync.Mutex
	auth := map[string]bool{}
	px.Inject(&s3test.Rule{Match: func(r *http.Request) bool {
		if a := r.Header.Get("Authorization"); a != "" {
			authMu.Lock()
			auth[a] = true
			authMu.Unlock()
		}
		return false
	}})

	bv, bs, bt := srv.Bucket(t, false), srv.Bucket(t, false), srv.Bucket(t, false)
	recs := synth.Records(synth.Options{Users: 4, RecordsPerUser: 4, Tricky: true, Seed: 21})
	for b, set := range map[string][]synth.Record{bv: recs, bs: synth.Subset(recs, 0.7, 1)} {
		st, err := s3.New(context.Background(), srv.Config(b, "users/"))
		if err != nil {
			t.Fatal(err)
		}
		if err := synth.Populate(context.Background(), st, set, 8); err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	creds := map[string]*s3test.Restricted{}
	for _, phase := range []string{"plan", "copy", "verify", "delete", "report"} {
		creds[phase] = srv.Restricted(t, "FERRY_LP_"+strings.ToUpper(phase), lpPolicy(phase, []string{bv, bs}, bt))
	}
	const names = "{access_key_env: FERRY_LP_ACCESS_KEY, secret_key_env: FERRY_LP_SECRET_KEY, session_token_env: FERRY_LP_SESSION_TOKEN}"
	site := func(name, role, bucket string) string {
		return fmt.Sprintf("  - {name: %s, role: %s, url: s3://%s/users/, endpoint: %s, region: us-east-1, path_style: true, credentials: %s}\n", name, role, bucket, px.URL, names)
	}
	spec := "migration: least-privilege\nsources:\n" + site("virginia", "primary", bv) + site("singapore", "backup", bs) +
		fmt.Sprintf("target: {url: s3://%s/users/, endpoint: %s, region: us-east-1, path_style: true, credentials: %s}\n", bt, px.URL, names) +
		"records:\n  user: '^(?P<user>[^/]+)/'\ndelete:\n  mode: soft\n  grace: 0s\n  stages:\n    - {name: backups, sites: [singapore]}\n    - {name: primary, sites: [virginia], mode: hard}\n" +
		"report:\n  signing_key: keys/ferry.key\n  signer: Least Privilege Test\n"
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := certificate.GenerateKeyPair(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}

	var outputs bytes.Buffer // everything ferry printed, for the I8 scan
	// ferry runs a phase with the credentials of role (FERRY_LP_* set to them), -v.
	ferry := func(role string, args ...string) (int, string) {
		t.Helper()
		r := creds[role]
		cmd := exec.Command(bin, append([]string{"-c", filepath.Join(dir, "ferry.yaml"), "--no-progress", "-v"}, args...)...)
		cmd.Env = append(os.Environ(), "FERRY_LP_ACCESS_KEY="+r.AccessKey, "FERRY_LP_SECRET_KEY="+r.SecretKey, "FERRY_LP_SESSION_TOKEN="+r.SessionToken)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		outputs.Write(out.Bytes())
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	}
	must := func(role string, args ...string) string {
		t.Helper()
		code, out := ferry(role, args...)
		if code != 0 {
			t.Fatalf("%v with %s credentials: exit %d\n%s", args, role, code, out)
		}
		return out
	}
	denied := regexp.MustCompile(`(?i)access denied|accessdenied|permission denied|forbidden`)
	refused := func(role string, args ...string) {
		t.Helper()
		code, out := ferry(role, args...)
		t.Logf("%v with %s credentials: exit %d: %s", args, role, code, lastLine(out))
		// The final message itself says so, not only a warning further up.
		if code == 0 || !denied.MatchString(lastLine(out)) {
			t.Fatalf("%v with %s credentials: exit %d; want a final message that says access was denied:\n%s", args, role, code, out)
		}
	}
	direct := func(b string) map[string]providers.Object {
		st, err := s3.New(context.Background(), srv.Config(b, "users/"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		out := map[string]providers.Object{}
		if err := st.List(context.Background(), func(o providers.Object) error {
			if !strings.HasPrefix(o.Key, ".ferry-marker/") { // ferry's marker at the target is not data
				out[o.Key] = o
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	client := func(role string) *awss3.Client {
		r := creds[role]
		return awss3.New(awss3.Options{Region: s3test.Region, BaseEndpoint: aws.String(srv.Endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(r.AccessKey, r.SecretKey, r.SessionToken), HTTPClient: awshttp.NewBuildableClient()})
	}
	ctx := context.Background()

	must("plan", "plan")
	must("plan", "--json", "plan")
	// The copy credentials cannot delete at a site, nor the delete credentials write
	// to the target: the policies really are that narrow.
	if _, err := client("copy").DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &bs, Key: aws.String("users/" + recs[0].Key)}); err == nil || !denied.MatchString(err.Error()) {
		t.Fatalf("copy credentials deleting at a site: %v", err)
	}
	if _, err := client("delete").PutObject(ctx, &awss3.PutObjectInput{Bucket: &bt, Key: aws.String("users/x"), Body: strings.NewReader("x")}); err == nil || !denied.MatchString(err.Error()) {
		t.Fatalf("delete credentials writing to the target: %v", err)
	}

	// Copy with read-only credentials: refused clearly, nothing written.
	refused("verify", "copy")
	if n := len(direct(bt)); n != 0 {
		t.Fatalf("%d objects written to the target by credentials that cannot write", n)
	}
	must("copy", "copy")
	must("copy", "--json", "copy")
	must("verify", "verify")
	must("verify", "--json", "verify")
	if n := len(direct(bt)); n != len(recs) {
		t.Fatalf("target holds %d of %d records", n, len(recs))
	}

	var d struct {
		Result struct {
			Scope struct {
				Digest string `json:"digest"`
			} `json:"scope"`
		} `json:"result"`
	}
	for _, stage := range []string{"backups", "primary"} {
		out := must("delete", "--json", "delete", "--stage", stage, "--dry-run")
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &d); err != nil {
			t.Fatalf("dry run JSON: %v\n%s", err, out)
		}
		del := []string{"delete", "--stage", stage, "--confirm", d.Result.Scope.Digest[:16]}
		// The copy credentials cannot delete: refused clearly, nothing deleted.
		before := len(direct(bs)) + len(direct(bv))
		refused("copy", del...)
		if after := len(direct(bs)) + len(direct(bv)); after != before {
			t.Fatalf("stage %s: %d replicas deleted with credentials that cannot delete", stage, before-after)
		}
		must("delete", del...)
	}
	if n := len(direct(bv)) + len(direct(bs)); n != 0 {
		t.Fatalf("%d replicas left at the sites", n)
	}
	must("delete", "delete", "--stage", "backups", "--purge")
	must("report", "report", "--out", filepath.Join(dir, "report"))
	must("report", "--json", "status")
	if n := len(direct(bt)); n != len(recs) {
		t.Fatalf("target holds %d of %d records after the stages", n, len(recs))
	}

	// I8: no credential and no Authorization header value in anything ferry wrote.
	authMu.Lock()
	var secrets []string
	for a := range auth {
		secrets = append(secrets, a)
		if i := strings.Index(a, "Signature="); i >= 0 {
			secrets = append(secrets, a[i+len("Signature="):])
		}
	}
	authMu.Unlock()
	if len(secrets) == 0 {
		t.Fatal("no Authorization header seen: the scan proves nothing")
	}
	for _, r := range creds {
		secrets = append(secrets, r.AccessKey, r.SecretKey, r.SessionToken)
	}
	secrets = append(secrets, srv.AccessKey, srv.SecretKey)
	hay := map[string][]byte{"ferry's output (-v, text and --json)": outputs.Bytes()}
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && !strings.HasPrefix(e.Name(), "ferry.key") {
			b, _ := os.ReadFile(p)
			hay[p] = b
		}
		return nil
	})
	if _, ok := hay[filepath.Join(dir, "ferry.db")]; !ok {
		t.Fatal("no state store to scan")
	}
	for name, b := range hay {
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Fatalf("I8 broken: %s contains a credential or Authorization value (%.12s...)", name, s)
			}
		}
	}
	t.Logf("scanned %d files and %d bytes of output for %d secrets (%d Authorization headers)", len(hay)-1, outputs.Len(), len(secrets), len(auth))
}
