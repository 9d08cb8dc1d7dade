package azblob

import (
	"context"

	"github.com/ferrymigrate/ferry/providers"
)

var _ providers.Identifier = (*Store)(nil)

// Identity is the storage account, container and prefix. On Azure's own endpoints
// an account name is global ("azure-account:NAME" whatever the host's spelling: a
// sovereign cloud's or a private endpoint's name reaches the same account); any
// other endpoint (Azurite, a proxy) is a server of its own, normalised as for S3,
// and the account is part of the container.
func (s *Store) Identity(ctx context.Context) (providers.Identity, error) {
	if s.azure {
		return providers.Identity{Kind: "azblob", Servers: []string{"azure-account:" + s.account}, Container: s.account + "/" + s.container, Prefix: s.prefix}, nil
	}
	return providers.Identity{Kind: "azblob", Servers: providers.EndpointServers(ctx, s.endpoint), Container: s.account + "/" + s.container, Prefix: s.prefix}, nil
}
