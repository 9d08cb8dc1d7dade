package ocitest_test

import (
	"bytes"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/ferrymigrate/ferry/providers/fault"
	"github.com/ferrymigrate/ferry/providers/oci/ocitest"
)

var (
	idOnce sync.Once
	ids    []*ocitest.Identity
	tmp    string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ocitest-")
	if err != nil {
		panic(err)
	}
	tmp = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// identities returns two keys shared by the tests.
func identities(t *testing.T) (*ocitest.Identity, *ocitest.Identity) {
	t.Helper()
	idOnce.Do(func() {
		for range 2 {
			id, err := ocitest.GenerateIdentity(tmp, "DEFAULT")
			if err != nil {
				panic(err)
			}
			ids = append(ids, id)
		}
	})
	return ids[0], ids[1]
}

// client is a raw SDK client signing as id, aimed at srv, with no retries.
func client(t *testing.T, srv *ocitest.Server, id *ocitest.Identity) objectstorage.ObjectStorageClient {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	p := common.NewRawConfigurationProvider(id.Tenancy, id.User, id.Region, id.Fingerprint, keyPEM, nil)
	c, err := objectstorage.NewObjectStorageClientWithConfigurationProvider(p)
	if err != nil {
		t.Fatal(err)
	}
	none := common.NoRetryPolicy()
	c.SetCustomClientConfiguration(common.CustomClientConfiguration{RetryPolicy: &none})
	c.Host = srv.URL
	return c
}

func status(err error) (int, string) {
	if se, ok := common.IsServiceError(err); ok {
		return se.GetHTTPStatusCode(), se.GetCode()
	}
	return 0, ""
}

func wantStatus(t *testing.T, err error, code int, what string) {
	t.Helper()
	if got, c := status(err); got != code {
		t.Errorf("%s: got %v (status %d %s), want status %d", what, err, got, c, code)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func crc32c(b []byte) string {
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return b64(out[:])
}

func str(s string) *string { return &s }

func TestSignatures(t *testing.T) {
	a, b := identities(t)
	srv := ocitest.Start(t, ocitest.Options{})
	srv.Trust(a)
	ctx := t.Context()
	ca, cb := client(t, srv, a), client(t, srv, b)

	ns, err := ca.GetNamespace(ctx, objectstorage.GetNamespaceRequest{})
	if err != nil || *ns.Value != ocitest.DefaultNamespace {
		t.Fatalf("GetNamespace = %v, %v", ns.Value, err)
	}
	_, err = cb.GetNamespace(ctx, objectstorage.GetNamespaceRequest{})
	if c, code := status(err); c != 401 || code != "NotAuthenticated" {
		t.Errorf("unregistered key: %v", err)
	}

	// A wildcard key is accepted for any tenancy and user, if the fingerprint is its.
	if err := srv.AddPublicKey("*", b.PublicKeyPEM()); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.GetNamespace(ctx, objectstorage.GetNamespaceRequest{}); err != nil {
		t.Errorf("wildcard key: %v", err)
	}
	srv.RemovePublicKey(b.Fingerprint)
	forged := *b
	forged.Fingerprint = a.Fingerprint
	forged.Tenancy, forged.User = a.Tenancy, a.User
	_, err = client(t, srv, &forged).GetNamespace(ctx, objectstorage.GetNamespaceRequest{})
	wantStatus(t, err, 401, "a's keyId signed with b's key")

	// Hand-made requests: what the SDK must sign.
	sign := func(r *http.Request, headers ...string) {
		t.Helper()
		signer := common.RequestSigner(keyProvider{a}, headers, nil)
		if err := signer.Sign(r); err != nil {
			t.Fatal(err)
		}
	}
	do := func(r *http.Request) (int, string) {
		t.Helper()
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	newReq := func(method, path string, body []byte) *http.Request {
		r, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		return r
	}
	r := newReq("GET", "/n", nil)
	if code, body := do(r); code != 401 || !strings.Contains(body, `"code":"NotAuthenticated"`) {
		t.Errorf("unsigned: %d %s", code, body)
	}
	r = newReq("GET", "/n", nil)
	sign(r, "date", "(request-target)")
	if code, body := do(r); code != 401 || !strings.Contains(body, "host") {
		t.Errorf("host not signed: %d %s", code, body)
	}
	r = newReq("GET", "/n", nil)
	sign(r, "date", "(request-target)", "host")
	r.URL.RawQuery = "compartmentId=x" // the request target changed after signing
	if code, _ := do(r); code != 401 {
		t.Errorf("request target changed after signing: %d", code)
	}
	r = newReq("GET", "/n", nil)
	r.Header.Set("Date", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat))
	sign(r, "date", "(request-target)", "host")
	if code, body := do(r); code != 401 || !strings.Contains(body, "clock") {
		t.Errorf("an hour-old date: %d %s", code, body)
	}
	// A JSON body must be signed, and must be the body signed.
	if err := srv.CreateBucket("b1", false); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"object":"x"}`)
	r = newReq("POST", "/n/"+srv.Namespace()+"/b/b1/u", body)
	r.Header.Set("Content-Type", "application/json")
	sign(r, "date", "(request-target)", "host")
	if code, body := do(r); code != 401 || !strings.Contains(body, "does not cover the required header") {
		t.Errorf("POST without the body signed: %d %s", code, body)
	}
	// Signed for one body, sent with another of the same length.
	r = newReq("POST", "/n/"+srv.Namespace()+"/b/b1/u", body)
	r.Header.Set("Content-Type", "application/json")
	sign(r, "date", "(request-target)", "host", "content-length", "content-type", "x-content-sha256")
	other := []byte(`{"object":"y"}`)
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(other)), int64(len(other))
	if code, body := do(r); code != 401 || !strings.Contains(body, "does not match the body") {
		t.Errorf("POST with another body than the one signed: %d %s", code, body)
	}
	r = newReq("POST", "/n/"+srv.Namespace()+"/b/b1/u", body)
	r.Header.Set("Content-Type", "application/json")
	sign(r, "date", "(request-target)", "host", "content-length", "content-type", "x-content-sha256")
	if code, body := do(r); code != 200 {
		t.Errorf("POST signed properly: %d %s", code, body)
	}
}

type keyProvider struct{ id *ocitest.Identity }

func (k keyProvider) PrivateRSAKey() (*rsa.PrivateKey, error) { return k.id.Key, nil }
func (k keyProvider) KeyID() (string, error)                  { return k.id.KeyID(), nil }

func TestObjects(t *testing.T) {
	a, _ := identities(t)
	srv := ocitest.Start(t, ocitest.Options{})
	srv.Trust(a)
	ctx := t.Context()
	c := client(t, srv, a)
	ns := srv.Namespace()
	_, err := c.CreateBucket(ctx, objectstorage.CreateBucketRequest{NamespaceName: &ns, CreateBucketDetails: objectstorage.CreateBucketDetails{
		Name: str("b"), CompartmentId: str("ocid1.compartment.oc1..x"), Versioning: objectstorage.CreateBucketDetailsVersioningEnabled}})
	if err != nil {
		t.Fatal(err)
	}
	bk, err := c.GetBucket(ctx, objectstorage.GetBucketRequest{NamespaceName: &ns, BucketName: str("b")})
	if err != nil || bk.Versioning != objectstorage.BucketVersioningEnabled {
		t.Fatalf("GetBucket: %+v %v", bk.Versioning, err)
	}
	_, err = c.GetBucket(ctx, objectstorage.GetBucketRequest{NamespaceName: &ns, BucketName: str("nope")})
	if code, name := status(err); code != 404 || name != "BucketNotFound" {
		t.Errorf("missing bucket: %v", err)
	}

	data := []byte("0123456789abcdef")
	md := md5.Sum(data)
	sh := sha256.Sum256(data)
	put := func(name string, body []byte, edit func(*objectstorage.PutObjectRequest)) (objectstorage.PutObjectResponse, error) {
		n := int64(len(body))
		req := objectstorage.PutObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str(name),
			ContentLength: &n, PutObjectBody: io.NopCloser(bytes.NewReader(body))}
		if edit != nil {
			edit(&req)
		}
		return c.PutObject(ctx, req)
	}
	p, err := put("a b/é", data, func(r *objectstorage.PutObjectRequest) {
		r.OpcChecksumAlgorithm = objectstorage.PutObjectOpcChecksumAlgorithmSha256
		r.OpcContentSha256 = str(b64(sh[:]))
		r.ContentMD5 = str(b64(md[:]))
		r.OpcMeta = map[string]string{"src": "virginia"}
	})
	if err != nil {
		t.Fatal(err)
	}
	if *p.OpcContentMd5 != b64(md[:]) || *p.OpcContentSha256 != b64(sh[:]) || p.VersionId == nil || p.ETag == nil {
		t.Errorf("PutObject response: %+v", p)
	}
	h, err := c.HeadObject(ctx, objectstorage.HeadObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é")})
	if err != nil {
		t.Fatal(err)
	}
	if *h.ContentMd5 != b64(md[:]) || *h.OpcContentSha256 != b64(sh[:]) || *h.OpcContentCrc32c != crc32c(data) ||
		*h.ContentLength != int64(len(data)) || h.OpcMeta["src"] != "virginia" || *h.ETag != *p.ETag || h.OpcMultipartMd5 != nil {
		t.Errorf("HeadObject: md5 %v sha %v crc %v len %v meta %v", *h.ContentMd5, *h.OpcContentSha256, *h.OpcContentCrc32c, *h.ContentLength, h.OpcMeta)
	}

	// Checksum headers that do not match the body: refused, nothing stored.
	for _, tc := range []struct {
		name string
		edit func(*objectstorage.PutObjectRequest)
	}{
		{"sha256", func(r *objectstorage.PutObjectRequest) {
			r.OpcChecksumAlgorithm = objectstorage.PutObjectOpcChecksumAlgorithmSha256
			r.OpcContentSha256 = str(b64(make([]byte, 32)))
		}},
		{"md5", func(r *objectstorage.PutObjectRequest) { r.ContentMD5 = str(b64(make([]byte, 16))) }},
		{"crc32c", func(r *objectstorage.PutObjectRequest) {
			r.OpcChecksumAlgorithm = objectstorage.PutObjectOpcChecksumAlgorithmCrc32c
			r.OpcContentCrc32c = str("AAAAAA==")
		}},
	} {
		_, err := put("bad-"+tc.name, data, tc.edit)
		if code, name := status(err); code != 400 || !strings.HasPrefix(name, "UnmatchedContent") {
			t.Errorf("put with a wrong %s: %v", tc.name, err)
		}
	}
	if names := srv.ObjectNames("b"); len(names) != 1 {
		t.Errorf("objects after refused puts: %q", names)
	}

	// Range, conditions.
	g, err := c.GetObject(ctx, objectstorage.GetObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é"), Range: str("bytes=2-5")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(g.Content)
	g.Content.Close()
	if string(got) != "2345" || *g.ContentRange != "bytes 2-5/16" {
		t.Errorf("range read %q %v", got, *g.ContentRange)
	}
	_, err = c.GetObject(ctx, objectstorage.GetObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é"), Range: str("bytes=99-")})
	wantStatus(t, err, 416, "range past the end")
	_, err = c.HeadObject(ctx, objectstorage.HeadObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é"), IfMatch: str("other")})
	wantStatus(t, err, 412, "HEAD If-Match another etag")
	h304, err := c.HeadObject(ctx, objectstorage.HeadObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é"), IfNoneMatch: p.ETag})
	if err != nil || h304.RawResponse.StatusCode != 304 {
		t.Errorf("HEAD If-None-Match the etag: %v", err)
	}
	_, err = put("a b/é", data, func(r *objectstorage.PutObjectRequest) { r.IfNoneMatch = str("*") })
	if code, name := status(err); code != 412 || name != "IfNoneMatchFailed" {
		t.Errorf("put If-None-Match * onto an object: %v", err)
	}
	_, err = put("a b/é", data, func(r *objectstorage.PutObjectRequest) { r.IfMatch = str("stale") })
	if code, name := status(err); code != 412 || name != "IfMatchFailed" {
		t.Errorf("put If-Match stale: %v", err)
	}
	_, err = c.DeleteObject(ctx, objectstorage.DeleteObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é"), IfMatch: str("stale")})
	wantStatus(t, err, 412, "delete If-Match stale")

	// Versioning: a delete marker hides the object; the version is still there.
	p2, err := put("a b/é", []byte("v2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.DeleteObject(ctx, objectstorage.DeleteObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é"), IfMatch: p2.ETag})
	if err != nil || !*d.IsDeleteMarker {
		t.Fatalf("delete in a versioned bucket: %+v %v", d, err)
	}
	_, err = c.HeadObject(ctx, objectstorage.HeadObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é")})
	wantStatus(t, err, 404, "HEAD behind a delete marker")
	_, err = c.HeadObject(ctx, objectstorage.HeadObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é"), VersionId: p.VersionId})
	if err != nil {
		t.Errorf("HEAD of the old version: %v", err)
	}
	lv, err := c.ListObjectVersions(ctx, objectstorage.ListObjectVersionsRequest{NamespaceName: &ns, BucketName: str("b"), Limit: common.Int(2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(lv.Items) != 2 || !*lv.Items[0].IsDeleteMarker || *lv.Items[1].VersionId != *p2.VersionId || lv.OpcNextPage == nil {
		t.Errorf("first page of versions: %+v next %v", lv.Items, lv.OpcNextPage)
	}
	lv, err = c.ListObjectVersions(ctx, objectstorage.ListObjectVersionsRequest{NamespaceName: &ns, BucketName: str("b"), Page: lv.OpcNextPage})
	if err != nil || len(lv.Items) != 1 || *lv.Items[0].VersionId != *p.VersionId || lv.OpcNextPage != nil {
		t.Errorf("second page of versions: %+v %v", lv.Items, err)
	}
	lo, err := c.ListObjects(ctx, objectstorage.ListObjectsRequest{NamespaceName: &ns, BucketName: str("b")})
	if err != nil || len(lo.Objects) != 0 {
		t.Errorf("ListObjects behind a delete marker: %+v %v", lo.Objects, err)
	}
	_, err = c.DeleteObject(ctx, objectstorage.DeleteObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é"), VersionId: d.VersionId})
	if err != nil {
		t.Fatal(err)
	}
	if g, err := c.GetObject(ctx, objectstorage.GetObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("a b/é")}); err != nil {
		t.Errorf("GET after removing the delete marker: %v", err)
	} else {
		b, _ := io.ReadAll(g.Content)
		g.Content.Close()
		if string(b) != "v2" {
			t.Errorf("GET after removing the delete marker: %q", b)
		}
	}
}

func TestListing(t *testing.T) {
	a, _ := identities(t)
	srv := ocitest.Start(t, ocitest.Options{})
	srv.Trust(a)
	ctx := t.Context()
	c := client(t, srv, a)
	ns := srv.Namespace()
	if err := srv.CreateBucket("b", false); err != nil {
		t.Fatal(err)
	}
	names := []string{"a/1", "a/2", "a/b/3", "b", "c/4", "c/5", "d"}
	for _, n := range names {
		body := []byte(n)
		l := int64(len(body))
		if _, err := c.PutObject(ctx, objectstorage.PutObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str(n),
			ContentLength: &l, PutObjectBody: io.NopCloser(bytes.NewReader(body))}); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	var start *string
	for page := 0; ; page++ {
		r, err := c.ListObjects(ctx, objectstorage.ListObjectsRequest{NamespaceName: &ns, BucketName: str("b"), Start: start,
			Limit: common.Int(3), Fields: str("name,size,etag,md5,timeCreated,timeModified")})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range r.Objects {
			if o.Size == nil || o.Etag == nil || o.Md5 == nil || o.TimeModified == nil {
				t.Errorf("fields missing: %+v", o)
			}
			all = append(all, *o.Name)
		}
		if r.NextStartWith == nil {
			break
		}
		start = r.NextStartWith
	}
	if strings.Join(all, ",") != strings.Join(names, ",") {
		t.Errorf("paged listing %q, want %q", all, names)
	}
	r, err := c.ListObjects(ctx, objectstorage.ListObjectsRequest{NamespaceName: &ns, BucketName: str("b"), Prefix: str("a/"),
		Delimiter: str("/")})
	if err != nil || len(r.Objects) != 2 || len(r.Prefixes) != 1 || r.Prefixes[0] != "a/b/" {
		t.Errorf("delimited listing: %+v %v %v", r.Objects, r.Prefixes, err)
	}
	r, err = c.ListObjects(ctx, objectstorage.ListObjectsRequest{NamespaceName: &ns, BucketName: str("b"), Start: str("b"), End: str("c/5")})
	if err != nil || len(r.Objects) != 2 || *r.Objects[0].Name != "b" || r.Objects[0].Size != nil {
		t.Errorf("start/end listing without fields: %+v %v", r.Objects, err)
	}
}

func TestMultipartAndFaults(t *testing.T) {
	a, _ := identities(t)
	srv := ocitest.Start(t, ocitest.Options{MinPartSize: 1024})
	srv.Trust(a)
	ctx := t.Context()
	c := client(t, srv, a)
	ns := srv.Namespace()
	if err := srv.CreateBucket("b", false); err != nil {
		t.Fatal(err)
	}
	up, err := c.CreateMultipartUpload(ctx, objectstorage.CreateMultipartUploadRequest{NamespaceName: &ns, BucketName: str("b"),
		CreateMultipartUploadDetails: objectstorage.CreateMultipartUploadDetails{Object: str("big"), Metadata: map[string]string{"opc-meta-k": "v"}},
		OpcChecksumAlgorithm:         objectstorage.CreateMultipartUploadOpcChecksumAlgorithmCrc32c})
	if err != nil {
		t.Fatal(err)
	}
	var whole []byte
	var parts []objectstorage.CommitMultipartUploadPartDetails
	partMD5 := md5.New()
	for i := 1; i <= 3; i++ {
		body := bytes.Repeat([]byte{byte('a' + i)}, 1500)
		if i == 3 {
			body = body[:10]
		}
		whole = append(whole, body...)
		n := int64(len(body))
		req := objectstorage.UploadPartRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("big"), UploadId: up.UploadId,
			UploadPartNum: common.Int(i), ContentLength: &n, UploadPartBody: io.NopCloser(bytes.NewReader(body)),
			OpcChecksumAlgorithm: objectstorage.UploadPartOpcChecksumAlgorithmCrc32c, OpcContentCrc32c: str(crc32c(body))}
		if i == 2 {
			// The first try is corrupted in flight: refused.
			remove := srv.Inject(&ocitest.Rule{Op: "UploadPart", When: fault.When{Times: 1}, Fault: ocitest.Fault{CorruptRequest: true}})
			_, err := c.UploadPart(ctx, req)
			remove()
			if code, name := status(err); code != 400 || name != "UnmatchedContentCRC32C" {
				t.Errorf("corrupted part: %v", err)
			}
			req.UploadPartBody = io.NopCloser(bytes.NewReader(body))
		}
		pr, err := c.UploadPart(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		m := md5.Sum(body)
		partMD5.Write(m[:])
		if *pr.OpcContentMd5 != b64(m[:]) || *pr.OpcContentCrc32c != crc32c(body) {
			t.Errorf("part %d response: %+v", i, pr)
		}
		parts = append(parts, objectstorage.CommitMultipartUploadPartDetails{PartNum: common.Int(i), Etag: pr.ETag})
	}
	lp, err := c.ListMultipartUploadParts(ctx, objectstorage.ListMultipartUploadPartsRequest{NamespaceName: &ns, BucketName: str("b"),
		ObjectName: str("big"), UploadId: up.UploadId})
	if err != nil || len(lp.Items) != 3 {
		t.Errorf("ListMultipartUploadParts: %d parts, %v", len(lp.Items), err)
	}
	cm, err := c.CommitMultipartUpload(ctx, objectstorage.CommitMultipartUploadRequest{NamespaceName: &ns, BucketName: str("b"),
		ObjectName: str("big"), UploadId: up.UploadId, CommitMultipartUploadDetails: objectstorage.CommitMultipartUploadDetails{PartsToCommit: parts}})
	if err != nil {
		t.Fatal(err)
	}
	wantMP := b64(partMD5.Sum(nil)) + "-3"
	if *cm.OpcMultipartMd5 != wantMP || *cm.OpcContentCrc32c != crc32c(whole) {
		t.Errorf("commit: multipart md5 %s (want %s), crc32c %s (want %s)", *cm.OpcMultipartMd5, wantMP, *cm.OpcContentCrc32c, crc32c(whole))
	}
	h, err := c.HeadObject(ctx, objectstorage.HeadObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("big")})
	if err != nil || h.ContentMd5 != nil || *h.OpcMultipartMd5 != wantMP || *h.OpcContentCrc32c != crc32c(whole) || h.OpcMeta["k"] != "v" {
		t.Errorf("HEAD of a multipart object: %+v %v", h, err)
	}
	if got, _, _ := srv.ReadObject("b", "big"); !bytes.Equal(got, whole) {
		t.Errorf("assembled object differs")
	}

	// A part too small (not the last) is refused at commit.
	up2, _ := c.CreateMultipartUpload(ctx, objectstorage.CreateMultipartUploadRequest{NamespaceName: &ns, BucketName: str("b"),
		CreateMultipartUploadDetails: objectstorage.CreateMultipartUploadDetails{Object: str("small")}})
	var parts2 []objectstorage.CommitMultipartUploadPartDetails
	for i := 1; i <= 2; i++ {
		n := int64(10)
		pr, err := c.UploadPart(ctx, objectstorage.UploadPartRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("small"),
			UploadId: up2.UploadId, UploadPartNum: common.Int(i), ContentLength: &n, UploadPartBody: io.NopCloser(bytes.NewReader(make([]byte, 10)))})
		if err != nil {
			t.Fatal(err)
		}
		parts2 = append(parts2, objectstorage.CommitMultipartUploadPartDetails{PartNum: common.Int(i), Etag: pr.ETag})
	}
	_, err = c.CommitMultipartUpload(ctx, objectstorage.CommitMultipartUploadRequest{NamespaceName: &ns, BucketName: str("b"),
		ObjectName: str("small"), UploadId: up2.UploadId, CommitMultipartUploadDetails: objectstorage.CommitMultipartUploadDetails{PartsToCommit: parts2}})
	wantStatus(t, err, 400, "commit with a small first part")
	if _, err := c.AbortMultipartUpload(ctx, objectstorage.AbortMultipartUploadRequest{NamespaceName: &ns, BucketName: str("b"),
		ObjectName: str("small"), UploadId: up2.UploadId}); err != nil {
		t.Errorf("abort: %v", err)
	}
	if u := srv.Uploads("b"); len(u) != 0 {
		t.Errorf("uploads left: %v", u)
	}

	// Faults: status on the Nth request, a dropped connection, latency, truncation.
	rule := &ocitest.Rule{Op: "HeadObject", When: fault.When{Skip: 1, Times: 1}, Fault: ocitest.Fault{Status: 503}}
	srv.Inject(rule)
	head := func() error {
		_, err := c.HeadObject(ctx, objectstorage.HeadObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("big")})
		return err
	}
	if err := head(); err != nil {
		t.Errorf("first HEAD: %v", err)
	}
	wantStatus(t, head(), 503, "second HEAD")
	if err := head(); err != nil || rule.Fired() != 1 {
		t.Errorf("third HEAD: %v (fired %d)", err, rule.Fired())
	}
	srv.ClearFaults()
	// (net/http retries an idempotent request once on a reused connection that
	// closes, so drop more than once.)
	srv.Inject(&ocitest.Rule{Op: "HeadObject", When: fault.When{Times: 3}, Fault: ocitest.Fault{Drop: true}})
	if err := head(); err == nil || status0(err) {
		t.Errorf("dropped connection: %v", err)
	}
	srv.ClearFaults()
	srv.Inject(&ocitest.Rule{Method: "HEAD", Path: "/o/big", When: fault.When{Times: 1}, Fault: ocitest.Fault{Latency: 50 * time.Millisecond}})
	start := time.Now()
	if err := head(); err != nil || time.Since(start) < 50*time.Millisecond {
		t.Errorf("latency: %v after %s", err, time.Since(start))
	}
	srv.Inject(&ocitest.Rule{Op: "GetObject", When: fault.When{Times: 1}, Fault: ocitest.Fault{Truncate: true, TruncateAt: 100}})
	g, err := c.GetObject(ctx, objectstorage.GetObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("big")})
	if err == nil {
		b, rerr := io.ReadAll(g.Content)
		g.Content.Close()
		if rerr == nil || len(b) != 100 {
			t.Errorf("truncated body: %d bytes, %v", len(b), rerr)
		}
	}
	// ShortBody: half of the body, with a Content-Length that says it is all of it.
	full, err := c.GetObject(ctx, objectstorage.GetObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("big")})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(full.Content)
	full.Content.Close()
	srv.Inject(&ocitest.Rule{Op: "GetObject", When: fault.When{Times: 1}, Fault: ocitest.Fault{ShortBody: true}})
	if g, err := c.GetObject(ctx, objectstorage.GetObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("big")}); err != nil {
		t.Errorf("short body: %v", err)
	} else {
		b, rerr := io.ReadAll(g.Content)
		g.Content.Close()
		if rerr != nil || len(b) != len(all)/2 || !bytes.Equal(b, all[:len(all)/2]) {
			t.Errorf("short body: %d of %d bytes, %v", len(b), len(all), rerr)
		}
	}
	// TruncateRequest: half the upload reaches the emulator, the connection drops,
	// and nothing is stored.
	srv.Inject(&ocitest.Rule{Op: "PutObject", When: fault.When{Times: 3}, Fault: ocitest.Fault{TruncateRequest: true}})
	body := bytes.Repeat([]byte("x"), 4096)
	if _, err := c.PutObject(ctx, objectstorage.PutObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("cut"),
		ContentLength: common.Int64(int64(len(body))), PutObjectBody: io.NopCloser(bytes.NewReader(body))}); err == nil {
		t.Error("a put whose body was cut succeeded")
	}
	_, err = c.HeadObject(ctx, objectstorage.HeadObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("cut")})
	wantStatus(t, err, 404, "HEAD of an object whose upload was cut")
	if st := srv.Stats(); st["HeadObject"] < 5 || st["UploadPart"] != 6 {
		t.Errorf("stats: %v", st)
	}
}

func status0(err error) bool { c, _ := status(err); return c != 0 }

func TestDataDirSurvivesRestart(t *testing.T) {
	a, _ := identities(t)
	dir := t.TempDir()
	keys := map[string][]byte{a.KeyID(): a.PublicKeyPEM()}
	srv, err := ocitest.New(ocitest.Options{Dir: dir, PublicKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateBucket("b", true); err != nil {
		t.Fatal(err)
	}
	hs := httptestServer(t, srv)
	c := client(t, hs, a)
	ns := srv.Namespace()
	for i, body := range []string{"one", "two"} {
		n := int64(len(body))
		if _, err := c.PutObject(t.Context(), objectstorage.PutObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("k"),
			ContentLength: &n, PutObjectBody: io.NopCloser(strings.NewReader(body)), OpcMeta: map[string]string{"i": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	srv.Close()

	srv2, err := ocitest.New(ocitest.Options{Dir: dir, PublicKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	got, info, ok := srv2.ReadObject("b", "k")
	if !ok || string(got) != "two" || info.Metadata["i"] != "1" {
		t.Errorf("after restart: %q %+v %v", got, info, ok)
	}
	if vs := srv2.Versions("b", "k"); len(vs) != 2 {
		t.Errorf("versions after restart: %+v", vs)
	}
	c2 := client(t, httptestServer(t, srv2), a)
	h, err := c2.HeadObject(t.Context(), objectstorage.HeadObjectRequest{NamespaceName: &ns, BucketName: str("b"), ObjectName: str("k")})
	if err != nil || *h.OpcContentCrc32c != crc32c([]byte("two")) {
		t.Errorf("HEAD after restart: %v", err)
	}
}

// httptestServer serves srv (made with New) for the test and sets its URL.
func httptestServer(t *testing.T, srv *ocitest.Server) *ocitest.Server {
	t.Helper()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	srv.URL = hs.URL
	return srv
}
