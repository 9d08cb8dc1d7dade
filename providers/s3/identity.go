package s3

import (
	"context"

	"github.com/ferrymigrate/ferry/providers"
)

var _ providers.Identifier = (*Store)(nil)

// Identity is the server (the endpoint normalised and resolved, or "aws": bucket
// names are global on AWS), the bucket and the prefix.
func (s *Store) Identity(ctx context.Context) (providers.Identity, error) {
	servers := []string{"aws"}
	if !s.awsHosted {
		servers = providers.EndpointServers(ctx, s.endpoint)
	}
	return providers.Identity{Kind: "s3", Servers: servers, Container: s.bucket, Prefix: s.prefix}, nil
}
