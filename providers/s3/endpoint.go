package s3

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
)

// endpointCache remembers what the SDK's endpoint rules resolved. The rules run for
// every request and cost about a tenth of the client's CPU per small object; their
// answer depends only on the bucket and the client's settings, never on the object
// key (the rules do not read Key, Prefix or CopySource), so one store needs only a
// handful of answers. Each request gets its own copy: the SDK rewrites the auth
// options of the endpoint it is given.
type endpointCache struct {
	next s3.EndpointResolverV2
	mu   sync.Mutex
	m    map[endpointKey]smithyendpoints.Endpoint
}

// maxEndpoints bounds the cache; a store talks to one bucket (AWS's region
// discovery adds a few more entries).
const maxEndpoints = 64

// endpointKey is s3.EndpointParameters without the per-object fields, dereferenced.
type endpointKey struct {
	bucket, region, endpoint                       optString
	fips, dualStack, pathStyle, accelerate, global optBool
	lambda, noAccessPoints, noMRAP, arnRegion      optBool
	expressControl, noExpressAuth                  optBool
}

type optString struct {
	set bool
	v   string
}

type optBool struct{ set, v bool }

func str(p *string) optString {
	if p == nil {
		return optString{}
	}
	return optString{true, *p}
}

func flag(p *bool) optBool {
	if p == nil {
		return optBool{}
	}
	return optBool{true, *p}
}

func newEndpointCache(next s3.EndpointResolverV2) *endpointCache {
	return &endpointCache{next: next, m: map[endpointKey]smithyendpoints.Endpoint{}}
}

func (c *endpointCache) ResolveEndpoint(ctx context.Context, p s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	k := endpointKey{
		bucket: str(p.Bucket), region: str(p.Region), endpoint: str(p.Endpoint),
		fips: flag(p.UseFIPS), dualStack: flag(p.UseDualStack), pathStyle: flag(p.ForcePathStyle),
		accelerate: flag(p.Accelerate), global: flag(p.UseGlobalEndpoint), lambda: flag(p.UseObjectLambdaEndpoint),
		noAccessPoints: flag(p.DisableAccessPoints), noMRAP: flag(p.DisableMultiRegionAccessPoints),
		arnRegion: flag(p.UseArnRegion), expressControl: flag(p.UseS3ExpressControlEndpoint),
		noExpressAuth: flag(p.DisableS3ExpressSessionAuth),
	}
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return cloneEndpoint(e), nil
	}
	e, err := c.next.ResolveEndpoint(ctx, p)
	if err != nil {
		return e, err // not cached: an error may not last
	}
	c.mu.Lock()
	if len(c.m) >= maxEndpoints {
		clear(c.m)
	}
	c.m[k] = cloneEndpoint(e)
	c.mu.Unlock()
	return e, nil
}

// cloneEndpoint copies e deep enough that the caller may change its headers,
// properties and auth options.
func cloneEndpoint(e smithyendpoints.Endpoint) smithyendpoints.Endpoint {
	c := e
	c.Headers = e.Headers.Clone()
	c.Properties = smithy.Properties{}
	c.Properties.SetAll(&e.Properties)
	if opts, ok := smithyauth.GetAuthOptions(&e.Properties); ok {
		cp := make([]*smithyauth.Option, len(opts))
		for i, o := range opts {
			n := &smithyauth.Option{SchemeID: o.SchemeID}
			n.IdentityProperties.SetAll(&o.IdentityProperties)
			n.SignerProperties.SetAll(&o.SignerProperties)
			cp[i] = n
		}
		smithyauth.SetAuthOptions(&c.Properties, cp)
	}
	return c
}
