package oci

import (
	"context"
	"net/url"
	"strings"

	"github.com/ferrymigrate/ferry/providers"
)

var _ providers.Identifier = (*Store)(nil)

// Identity is the namespace, bucket and prefix, on the region's Object Storage. An
// endpoint of OCI's own (a private endpoint, a dedicated region's host) reaches the
// same region's buckets, so it adds the region; any other endpoint (an emulator, a
// proxy) is a server of its own, normalised as for S3.
func (s *Store) Identity(ctx context.Context) (providers.Identity, error) {
	region := "oci-region:" + strings.ToLower(strings.TrimSpace(s.region))
	servers := []string{region}
	if s.endpoint != "" {
		u, err := url.Parse(s.endpoint)
		host := ""
		if err == nil {
			host = strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		}
		if !strings.HasSuffix(host, ".oraclecloud.com") && !strings.HasSuffix(host, ".oci.customer-oci.com") {
			servers = providers.EndpointServers(ctx, s.endpoint)
		}
	}
	return providers.Identity{Kind: "oci", Servers: servers, Container: s.ns + "/" + s.bucket, Prefix: s.prefix}, nil
}
