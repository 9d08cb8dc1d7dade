package s3

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyauth "github.com/aws/smithy-go/auth"
)

// The cache's key must cover every endpoint parameter but the per-object ones: a
// field the SDK adds later must be added to endpointKey too.
func TestEndpointKeyCoversParameters(t *testing.T) {
	var fields []string
	for f := range reflect.TypeFor[s3.EndpointParameters]().Fields() {
		fields = append(fields, f.Name)
	}
	want := []string{"Bucket", "Region", "UseFIPS", "UseDualStack", "Endpoint", "ForcePathStyle", "Accelerate",
		"UseGlobalEndpoint", "UseObjectLambdaEndpoint", "Key", "Prefix", "CopySource", "DisableAccessPoints",
		"DisableMultiRegionAccessPoints", "UseArnRegion", "UseS3ExpressControlEndpoint", "DisableS3ExpressSessionAuth"}
	slices.Sort(fields)
	slices.Sort(want)
	if !slices.Equal(fields, want) {
		t.Fatalf("s3.EndpointParameters has fields %v; endpointKey knows %v", fields, want)
	}
}

// The cache answers what the SDK's rules answer, for any key, bucket and setting.
func TestEndpointCacheAgrees(t *testing.T) {
	ctx := context.Background()
	rules := s3.NewDefaultEndpointResolverV2()
	c := newEndpointCache(rules)
	var cases []s3.EndpointParameters
	for _, bucket := range []string{"b1", "b2", "dotted.bucket"} {
		for _, ep := range []*string{nil, aws.String("http://127.0.0.1:9000")} {
			for _, ps := range []bool{false, true} {
				for _, key := range []string{"a", "u/x.bin", "ключ"} {
					cases = append(cases, s3.EndpointParameters{Bucket: aws.String(bucket), Region: aws.String("us-east-1"),
						Endpoint: ep, ForcePathStyle: aws.Bool(ps), Key: aws.String(key), UseFIPS: aws.Bool(false),
						UseDualStack: aws.Bool(false), Accelerate: aws.Bool(false)})
				}
			}
		}
	}
	for range 2 { // the second round is answered from the cache
		for _, p := range cases {
			want, werr := rules.ResolveEndpoint(ctx, p)
			got, gerr := c.ResolveEndpoint(ctx, p)
			if (werr == nil) != (gerr == nil) || want.URI.String() != got.URI.String() || !reflect.DeepEqual(want.Properties, got.Properties) {
				t.Errorf("bucket %s endpoint %v path-style %v key %s: cache %v %v, rules %v %v",
					*p.Bucket, aws.ToString(p.Endpoint), *p.ForcePathStyle, *p.Key, got.URI.String(), gerr, want.URI.String(), werr)
			}
		}
	}
	// A caller changing what it got does not change what the cache gives next.
	p := cases[0]
	first, _ := c.ResolveEndpoint(ctx, p)
	if opts, ok := smithyauth.GetAuthOptions(&first.Properties); ok && len(opts) > 0 {
		opts[0].SchemeID = "changed"
		opts[0].SignerProperties.Set("k", "v")
	}
	second, _ := c.ResolveEndpoint(ctx, p)
	if opts, ok := smithyauth.GetAuthOptions(&second.Properties); !ok || len(opts) == 0 || opts[0].SchemeID == "changed" || opts[0].SignerProperties.Has("k") {
		t.Errorf("a change to a returned endpoint's auth options reached the cache: %+v", opts)
	}
	if n := len(c.m); n == 0 || n > 12 {
		t.Errorf("%d cached endpoints for 12 settings", n)
	}
}
