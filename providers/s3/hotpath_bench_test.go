package s3

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// BenchmarkShapeGuard is MinIO's shape guard for a Put into a target whose
// directories are known (the bucket root listed once, empty): the per-Put cost
// once nothing needs asking, for 5,000 keys across 1,000 users.
func BenchmarkShapeGuard(b *testing.B) {
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%05d/kind-%d/%04d.bin", i%1000, i%3, i)
	}
	b.ReportAllocs()
	for b.Loop() {
		s := &Store{server: "minio", bucket: "b"}
		root := newDirList()
		root.whole = true
		close(root.done)
		s.shape.dirs = map[string]*dirList{"": root}
		for _, k := range keys {
			if err := s.checkShape(context.Background(), k); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/put")
}

// BenchmarkEndpoint is the endpoint resolution every request makes: the SDK's
// rules, and the store's cache of their answers.
func BenchmarkEndpoint(b *testing.B) {
	p := s3.EndpointParameters{Bucket: aws.String("bucket"), Region: aws.String("us-east-1"),
		Endpoint: aws.String("http://127.0.0.1:9000"), ForcePathStyle: aws.Bool(true), Key: aws.String("user/k.bin"),
		UseFIPS: aws.Bool(false), UseDualStack: aws.Bool(false), Accelerate: aws.Bool(false)}
	for _, c := range []struct {
		name string
		r    s3.EndpointResolverV2
	}{
		{"rules", s3.NewDefaultEndpointResolverV2()},
		{"cached", newEndpointCache(s3.NewDefaultEndpointResolverV2())},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.r.ResolveEndpoint(context.Background(), p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
