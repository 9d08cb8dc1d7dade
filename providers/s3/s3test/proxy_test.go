package s3test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrymigrate/ferry/providers/fault"
)

func TestMain(m *testing.M) { Main(m) }

// client returns an S3 client for srv's root user through endpoint, retrying
// nothing: each faulted request is seen as it is.
func rawClient(srv *Server, endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region: Region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
		HTTPClient:  awshttp.NewBuildableClient(),
		Retryer:     aws.NopRetryer{},
	})
}

// Each proxy fault does what it says to a real request against MinIO.
func TestProxyFaults(t *testing.T) {
	srv := Shared(t, MinIO)
	px := srv.Proxy(t)
	c := rawClient(srv, px.URL)
	ctx := context.Background()
	bucket := srv.Bucket(t, false)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	put := func() error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("k"), Body: bytes.NewReader(data)})
		return err
	}
	get := func() ([]byte, error) {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("k")})
		if err != nil {
			return nil, err
		}
		defer out.Body.Close()
		return io.ReadAll(out.Body)
	}
	if err := put(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []Fault{{Status: 503}, {Status: 429}, {Status: 500}, {Drop: true}} {
		px.Inject(&Rule{When: fault.When{Times: 1}, Fault: f})
		if err := put(); err == nil {
			t.Fatalf("%+v: put succeeded", f)
		}
	}
	for _, f := range []Fault{{CorruptRequest: true}, {TruncateRequest: true}} {
		px.Inject(&Rule{Op: OpPut, When: fault.When{Times: 1}, Fault: f})
		t0 := time.Now()
		err := put()
		t.Logf("%+v: %v after %s", f, err, time.Since(t0))
		if err == nil {
			t.Fatalf("%+v: put succeeded", f)
		}
	}
	if b, err := get(); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("object changed by failed puts: %v", err)
	}
	px.Inject(&Rule{Op: OpGet, When: fault.When{Times: 1}, Fault: Fault{CorruptBody: true}})
	if b, err := get(); err == nil && sha256.Sum256(b) == sha256.Sum256(data) {
		t.Fatal("corrupted response arrived intact")
	}
	px.Inject(&Rule{Op: OpGet, When: fault.When{Times: 1}, Fault: Fault{ShortBody: true}})
	if b, err := get(); err == nil && len(b) == len(data) {
		t.Fatal("truncated response arrived whole")
	}
	px.Inject(&Rule{Op: OpGet, When: fault.When{Times: 1}, Fault: Fault{Truncate: true}})
	if _, err := get(); err == nil {
		t.Fatal("a response cut mid-body read without error")
	}
	lat := &Rule{Op: OpGet, When: fault.When{Times: 1}, Fault: Fault{Latency: 100 * time.Millisecond}}
	px.Inject(lat)
	if b, err := get(); err != nil || !bytes.Equal(b, data) || lat.Fired() != 1 {
		t.Fatalf("a delayed response: %v", err)
	}
	if n := px.Answered(OpPut, bucket); n != 1 {
		t.Fatalf("%d puts answered, want 1", n)
	}
	// Skip: the first matching get passes, the second is faulted, Times spares the third.
	skip := &Rule{Op: OpGet, When: fault.When{Skip: 1, Times: 1}, Fault: Fault{Status: 503}}
	px.Inject(skip)
	for i, want := range []bool{true, false, true} {
		if _, err := get(); (err == nil) != want {
			t.Fatalf("get #%d under Skip 1, Times 1: %v", i+1, err)
		}
	}
	if skip.Matched() != 3 || skip.Fired() != 1 {
		t.Fatalf("Skip rule matched %d, fired %d; want 3, 1", skip.Matched(), skip.Fired())
	}
	// Lost: the put takes effect, but the client never hears so.
	old := data
	data = bytes.Repeat([]byte("fedcba9876543210"), 512)
	px.Inject(&Rule{Op: OpPut, When: fault.When{Times: 1}, Fault: Fault{Lost: true}})
	if err := put(); err == nil {
		t.Fatal("a put whose response was lost succeeded")
	}
	if b, err := get(); err != nil || bytes.Equal(b, old) || !bytes.Equal(b, data) {
		t.Fatalf("a put whose response was lost did not take effect: %v", err)
	}
	if n := px.Answered(OpPut, bucket); n != 2 {
		t.Fatalf("%d puts answered, want 2", n)
	}
}
