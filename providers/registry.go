package providers

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"sync"
)

// Config is everything a provider needs to open one site or target. It carries the
// names of credentials (a profile, an environment variable), never secret values.
type Config struct {
	Name     string // site name, for messages
	URL      string // scheme://...
	Endpoint string // optional custom endpoint
	Region   string
	// PathStyle forces path-style S3 addressing (MinIO, Ceph, other S3-compatible stores).
	PathStyle bool
	// ChecksumWhenRequired sets the S3 client's request checksum calculation and
	// response validation to "when required", for third-party servers.
	ChecksumWhenRequired bool
	// Credentials holds only names: profile, access_key_env, secret_key_env,
	// session_token_env (s3); oci_profile, oci_config_file, auth (oci);
	// gcp_credentials_file, auth: none (gs); account_key_env, sas_token_env (azblob).
	Credentials map[string]string
	PartSize    int64 // multipart part size in bytes; 0: provider default
	// KMSKeyID is the customer-managed key every write names, target only: an ARN
	// (s3), a key OCID (oci) or a Cloud KMS key name (gs, spec key kms_key_name).
	KMSKeyID string
	// EncryptionScope is the Azure encryption scope every write names (azblob target).
	EncryptionScope string
	// Quarantine names where soft-deleted objects are kept when the store has no
	// versioning: a directory (file) or key prefix (object stores) at the same site.
	Quarantine string
	// Migration is the migration id, used to name quarantines.
	Migration string
}

// Opener opens a Store for a Config whose URL has the opener's scheme.
type Opener func(ctx context.Context, cfg Config) (Store, error)

var (
	regMu   sync.RWMutex
	openers = map[string]Opener{}
)

// Register makes a scheme available to Open. Provider packages call it from init.
func Register(scheme string, o Opener) {
	regMu.Lock()
	defer regMu.Unlock()
	openers[scheme] = o
}

// Schemes lists the registered schemes.
func Schemes() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	var s []string
	for k := range openers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Open opens the store named by cfg.URL with the provider registered for its scheme.
func Open(ctx context.Context, cfg Config) (Store, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%s: bad url: %w", cfg.Name, err)
	}
	regMu.RLock()
	o := openers[u.Scheme]
	regMu.RUnlock()
	if o == nil {
		return nil, fmt.Errorf("%s: no provider for scheme %q (have %v)", cfg.Name, u.Scheme, Schemes())
	}
	return o(ctx, cfg)
}
