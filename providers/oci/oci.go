// Package oci is the provider for Oracle Cloud Infrastructure Object Storage
// (oci://namespace/bucket/prefix/), on the native API through
// github.com/oracle/oci-go-sdk/v65/objectstorage.
//
// # Configuration
//
// providers.Config fields used: URL, Region (overrides the profile's region and
// names the region Region reports), Endpoint (a private endpoint, or an emulator such
// as ociemu), PartSize (default 64 MiB, at least 10 MiB), KMSKeyID
// (opc-sse-kms-key-id on every write), Quarantine and Migration (soft deletes in
// unversioned buckets). Credentials, by name only:
//
//	auth:                   config_file (default) | security_token | instance_principal | resource_principal
//	oci_config_file:        the OCI config file (default ~/.oci/config)
//	oci_profile:            its profile (default DEFAULT)
//	oci_key_passphrase_env: an environment variable holding the key's passphrase
//
// # Integrity
//
// Single puts (size <= part size) send opc-checksum-algorithm SHA256 and, when the
// caller gave one, opc-content-sha256: OCI refuses bytes that do not hash to it, and
// reports the SHA-256 it computed, which Stat returns. Larger objects go up in
// parallel multipart parts, each with opc-content-crc32c checked by the server; the
// whole-object SHA-256 and CRC32C are computed locally while reading, checked against
// PutOptions before the commit, and the server's whole-object opc-content-crc32c is
// compared with the local CRC32C after it. Stat and List report an MD5 only for
// single-part objects: opc-multipart-md5 is not a content MD5. Open verifies the bytes
// it streams against the object's CRC32C (or SHA-256) and fails with ErrChecksum at
// the end of a corrupted body.
//
// # Retries and the circuit breaker
//
// Every call goes through the SDK's retry loop with this package's policy: 429, 500,
// 502, 503, 504, 409 IncorrectState/LockConflict, connection resets, unexpected EOFs,
// timeouts and an open circuit are retried with exponential backoff and full jitter,
// a bounded number of times (8 attempts, 0.5 s doubling to 20 s: about a minute in
// all). Bodies are always retryable: a seekable reader is re-read from its starting
// offset, anything else is buffered in memory (bounded per store, see
// Options.BufferBytes), since the SDK never retries a non-seekable body.
//
// The SDK's circuit breaker is kept, deliberately, but one per Store, never the
// process-wide default or the environment's: when a target fails most requests (80%
// of at least 20 within a minute) the store stops sending for 15 seconds, and the
// retry policy waits through it instead of failing every record at once. A store's
// failures never open another store's breaker. Options.DisableCircuitBreaker turns it
// off (tests that count requests do).
//
// # Deletes
//
// DeleteIf does a HEAD first (a missing object is never a successful delete), then
// DeleteObject with If-Match on the ETag, and in a versioned bucket the versionId of
// exactly that version. SoftDelete in a versioned bucket (versioning Enabled) makes a
// delete marker with If-Match; the handle is the version id, Restore removes the
// delete markers newer than it, Purge deletes that version. In an unversioned bucket
// the object is copied (GET and verified PUT; OCI's CopyObject is an asynchronous work
// request) to the quarantine prefix, by default ".ferry-quarantine/<migration>/" at
// the bucket root, under a name made of its own name and ETag, and then deleted with
// If-Match.
package oci

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/common/auth"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/ferrymigrate/ferry/providers"
)

// Scheme is the URL scheme this provider registers.
const Scheme = "oci"

const (
	// DefaultPartSize is the multipart part size when Config.PartSize is 0; objects
	// larger than the part size are uploaded in parts.
	DefaultPartSize = 64 << 20
	// MinPartSize is OCI's smallest part (but the last).
	MinPartSize = 10 << 20
	// MaxParts is OCI's largest part count; the part size grows to stay under it.
	MaxParts = 10000
	// MaxObjectName is OCI's longest object name, in bytes.
	MaxObjectName = 1024
	// DefaultQuarantineRoot is where unversioned soft deletes go, under the migration id.
	DefaultQuarantineRoot = ".ferry-quarantine/"
)

func init() {
	providers.Register(Scheme, func(ctx context.Context, cfg providers.Config) (providers.Store, error) {
		return New(ctx, cfg, Options{})
	})
}

// Options tune a Store beyond providers.Config; the zero value is the production
// setting.
type Options struct {
	// ConfigurationProvider, when set, signs requests instead of the one
	// cfg.Credentials names.
	ConfigurationProvider common.ConfigurationProvider
	// MaxAttempts bounds the attempts of each call (default 8; 1 disables retries).
	MaxAttempts int
	// RetryBaseDelay and RetryMaxDelay shape the exponential backoff (defaults 500ms
	// and 20s).
	RetryBaseDelay, RetryMaxDelay time.Duration
	// DisableCircuitBreaker turns off the per-store circuit breaker.
	DisableCircuitBreaker bool
	// CircuitBreaker replaces the per-store circuit breaker's settings.
	CircuitBreaker *common.CircuitBreakerSetting
	// PartConcurrency is how many parts of one upload are in flight (default 4).
	PartConcurrency int
	// BufferBytes bounds the bytes this store holds in memory to make bodies
	// retryable: non-seekable single puts and multipart parts (default 4 part sizes).
	BufferBytes int64
	// MinPartSize lowers the 10 MiB floor on Config.PartSize (tests).
	MinPartSize int64
	// ListLimit is the page size of listings (default and maximum 1000).
	ListLimit int
	// HTTPClient replaces the HTTP client (default: the SDK's transport with its TLS
	// settings, no overall timeout, a 2 minute response-header timeout).
	HTTPClient common.HTTPRequestDispatcher
}

// Store is an OCI Object Storage bucket prefix. Safe for concurrent use.
type Store struct {
	client     api
	httpClient *http.Client // the default client, to close its idle connections
	ns, bucket string
	prefix     string // "" or ending in "/"
	region     string
	endpoint   string // configured; "" for OCI's own endpoint of the region
	name       string // site name, for messages
	kms        string
	partSize   int64
	partConc   int
	listLimit  int
	quarantine string // object name prefix at the bucket root, ending in "/"
	reserved   string // quarantine relative to prefix when inside the root, else ""
	versioned  bool
	mem        *weighted
	closeOnce  sync.Once
}

var (
	_ providers.Store              = (*Store)(nil)
	_ providers.ConditionalDeleter = (*Store)(nil)
	_ providers.SoftDeleter        = (*Store)(nil)
	_ providers.Regioner           = (*Store)(nil)
	_ providers.Featurer           = (*Store)(nil)
)

var (
	bucketRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)
	namespaceRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)
)

// ParseURL splits oci://namespace/bucket/prefix. The prefix, when not empty, is
// made to end in "/": a site is a folder, and "users" must not also match
// "users-old/".
func ParseURL(raw string) (namespace, bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", "", fmt.Errorf("oci: bad url %q: %w", raw, err)
	}
	if u.Scheme != Scheme {
		return "", "", "", fmt.Errorf("oci: url %q: scheme is not oci", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return "", "", "", fmt.Errorf("oci: url %q: want oci://namespace/bucket/prefix (no user, port, query or fragment)", raw)
	}
	namespace = u.Host
	if !namespaceRE.MatchString(namespace) {
		return "", "", "", fmt.Errorf("oci: url %q: %q is not an Object Storage namespace", raw, namespace)
	}
	bucket, prefix, _ = strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !bucketRE.MatchString(bucket) {
		return "", "", "", fmt.Errorf("oci: url %q: %q is not a bucket name", raw, bucket)
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if err := checkName(prefix, true); err != nil {
		return "", "", "", fmt.Errorf("oci: url %q: prefix %q: %s", raw, prefix, err)
	}
	return namespace, bucket, prefix, nil
}

// New opens the store cfg names. It reads the bucket (GetBucket) to learn whether
// it is versioned, so a missing bucket or a key OCI does not accept fails here.
func New(ctx context.Context, cfg providers.Config, opts Options) (*Store, error) {
	ns, bucket, prefix, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, siteErr(cfg.Name, err)
	}
	s := &Store{ns: ns, bucket: bucket, prefix: prefix, name: cfg.Name, kms: cfg.KMSKeyID,
		partSize: cfg.PartSize, partConc: opts.PartConcurrency, listLimit: opts.ListLimit}
	minPart := int64(MinPartSize)
	if opts.MinPartSize > 0 {
		minPart = opts.MinPartSize
	}
	switch {
	case s.partSize == 0:
		s.partSize = DefaultPartSize
	case s.partSize < minPart:
		return nil, siteErr(cfg.Name, fmt.Errorf("oci: part size %d is below OCI's minimum of %d bytes", s.partSize, minPart))
	}
	if s.partConc <= 0 {
		s.partConc = 4
	}
	if s.listLimit <= 0 || s.listLimit > 1000 {
		s.listLimit = 1000
	}
	buf := opts.BufferBytes
	if buf <= 0 {
		buf = 4 * s.partSize
	}
	if buf < s.partSize {
		buf = s.partSize
	}
	s.mem = newWeighted(buf)
	if err := s.setQuarantine(cfg); err != nil {
		return nil, siteErr(cfg.Name, err)
	}

	provider := opts.ConfigurationProvider
	if provider == nil {
		if provider, err = configurationProvider(cfg); err != nil {
			return nil, siteErr(cfg.Name, err)
		}
	}
	client, err := objectstorage.NewObjectStorageClientWithConfigurationProvider(provider)
	if err != nil {
		return nil, siteErr(cfg.Name, fmt.Errorf("oci: %s: %w", credentialsName(cfg), err))
	}
	if opts.HTTPClient != nil {
		client.HTTPClient = dispatcher{opts.HTTPClient}
	} else {
		s.httpClient = defaultHTTPClient()
		client.HTTPClient = dispatcher{s.httpClient}
	}
	// SetCustomClientConfiguration and SetRegion both recompute client.Host from the
	// region, so the endpoint is set last.
	policy := retryPolicy(opts)
	conf := common.CustomClientConfiguration{RetryPolicy: &policy}
	if !opts.DisableCircuitBreaker {
		setting := opts.CircuitBreaker
		if setting == nil {
			setting = defaultCircuitBreaker()
		}
		conf.CircuitBreaker = common.NewCircuitBreaker(setting)
	}
	client.SetCustomClientConfiguration(conf)
	s.region = cfg.Region
	if s.region == "" {
		if s.region, err = provider.Region(); err != nil {
			return nil, siteErr(cfg.Name, fmt.Errorf("oci: no region in the spec or the profile: %w", err))
		}
	}
	client.SetRegion(s.region)
	if cfg.Endpoint != "" {
		host, err := endpointHost(cfg.Endpoint)
		if err != nil {
			return nil, siteErr(cfg.Name, err)
		}
		client.Host = host
		s.endpoint = cfg.Endpoint
	}
	client.Interceptor = versionFieldsInterceptor
	s.client = api{c: client}

	b, err := s.client.GetBucket(ctx, objectstorage.GetBucketRequest{NamespaceName: &s.ns, BucketName: &s.bucket})
	if err != nil {
		return nil, siteErr(cfg.Name, s.fail("open bucket", "", err))
	}
	s.versioned = b.Versioning == objectstorage.BucketVersioningEnabled
	return s, nil
}

func siteErr(name string, err error) error {
	if name == "" {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}

func credentialsName(cfg providers.Config) string {
	switch a := cfg.Credentials["auth"]; a {
	case "", "config_file", "api_key", "security_token", "session_token":
		p := cfg.Credentials["oci_profile"]
		if p == "" {
			p = "DEFAULT"
		}
		return fmt.Sprintf("profile %s of %s", p, configPath(cfg))
	default:
		return a
	}
}

func configPath(cfg providers.Config) string {
	p := cfg.Credentials["oci_config_file"]
	if p == "" {
		p = "~/.oci/config"
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, rest)
		}
	}
	return p
}

// configurationProvider builds the signer cfg.Credentials names.
func configurationProvider(cfg providers.Config) (common.ConfigurationProvider, error) {
	cred := cfg.Credentials
	for k := range cred {
		switch k {
		case "auth", "oci_config_file", "oci_profile", "oci_key_passphrase_env":
		default:
			return nil, fmt.Errorf("oci: unknown credentials key %q (want auth, oci_config_file, oci_profile, oci_key_passphrase_env)", k)
		}
	}
	region := common.StringToRegion(cfg.Region)
	switch a := cred["auth"]; a {
	case "instance_principal":
		if cfg.Region != "" {
			return auth.InstancePrincipalConfigurationProviderForRegion(region)
		}
		return auth.InstancePrincipalConfigurationProvider()
	case "resource_principal":
		if cfg.Region != "" {
			return auth.ResourcePrincipalConfigurationProviderForRegion(region)
		}
		return auth.ResourcePrincipalConfigurationProvider()
	case "", "config_file", "api_key", "security_token", "session_token":
		path := configPath(cfg)
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("oci: OCI config file: %w", err)
		}
		profile := cred["oci_profile"]
		if profile == "" {
			profile = "DEFAULT"
		}
		var pass string
		if env := cred["oci_key_passphrase_env"]; env != "" {
			v, ok := os.LookupEnv(env)
			if !ok {
				return nil, fmt.Errorf("oci: oci_key_passphrase_env names %s, which is not set", env)
			}
			pass = v
		}
		var p common.ConfigurationProvider
		var err error
		if a == "security_token" || a == "session_token" {
			p, err = common.ConfigurationProviderForSessionTokenWithProfile(path, profile, pass)
		} else {
			p, err = common.ConfigurationProviderFromFileWithProfile(path, profile, pass)
		}
		if err != nil {
			return nil, fmt.Errorf("oci: profile %s of %s: %w", profile, path, err)
		}
		if a == "security_token" || a == "session_token" {
			// Refreshable: the SDK must see the provider itself.
			if cfg.Region != "" {
				p = regionOverride{p, cfg.Region}
			}
			return p, nil
		}
		return &fileProvider{ConfigurationProvider: p, region: cfg.Region}, nil
	default:
		return nil, fmt.Errorf("oci: unknown auth %q (want config_file, security_token, instance_principal or resource_principal)", a)
	}
}

// regionOverride makes a profile without a region (or with another one) usable
// with the spec's region.
type regionOverride struct {
	common.ConfigurationProvider
	region string
}

func (r regionOverride) Region() (string, error) { return r.region, nil }

// fileProvider is an API-key profile with its parsed key kept: the SDK's file
// provider re-reads and re-parses the PEM key for every request it signs. It also
// applies the spec's region.
type fileProvider struct {
	common.ConfigurationProvider
	region string

	once  sync.Once
	key   *rsa.PrivateKey
	keyID string
	err   error
}

func (f *fileProvider) load() {
	f.once.Do(func() {
		if f.key, f.err = f.ConfigurationProvider.PrivateRSAKey(); f.err == nil {
			f.keyID, f.err = f.ConfigurationProvider.KeyID()
		}
	})
}

func (f *fileProvider) PrivateRSAKey() (*rsa.PrivateKey, error) {
	f.load()
	return f.key, f.err
}

func (f *fileProvider) KeyID() (string, error) {
	f.load()
	return f.keyID, f.err
}

func (f *fileProvider) Region() (string, error) {
	if f.region != "" {
		return f.region, nil
	}
	return f.ConfigurationProvider.Region()
}

func endpointHost(ep string) (string, error) {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("oci: endpoint %q: want http(s)://host[:port]", ep)
	}
	return u.Scheme + "://" + u.Host, nil
}

func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: &common.OciHTTPTransportWrapper{
		RefreshRate:       5 * time.Minute,
		TLSConfigProvider: common.GetTLSConfigTemplateForTransport(),
		TransportTemplate: func(tlsCfg *tls.Config) (http.RoundTripper, error) {
			t, err := common.DefaultTransport(tlsCfg)
			if err != nil {
				return nil, err
			}
			t.MaxIdleConnsPerHost = 128
			t.MaxIdleConns = 256
			t.ResponseHeaderTimeout = 2 * time.Minute
			return t, nil
		},
	}}
}

// setQuarantine picks the quarantine prefix and reserves it when it lies inside
// the root.
func (s *Store) setQuarantine(cfg providers.Config) error {
	q := cfg.Quarantine
	if q == "" {
		mig := cfg.Migration
		if mig == "" {
			mig = "default"
		}
		if strings.ContainsAny(mig, "/\x00") || mig == "." || mig == ".." {
			return fmt.Errorf("oci: migration id %q cannot name a quarantine prefix", mig)
		}
		q = DefaultQuarantineRoot + mig + "/"
	}
	q = strings.TrimPrefix(q, "/")
	if !strings.HasSuffix(q, "/") {
		q += "/"
	}
	if err := checkName(q, true); err != nil {
		return fmt.Errorf("oci: quarantine prefix %q: %s", q, err)
	}
	if s.prefix != "" && strings.HasPrefix(s.prefix, q) {
		return fmt.Errorf("oci: the site prefix %q lies inside the quarantine prefix %q", s.prefix, q)
	}
	s.quarantine = q
	if rel, ok := strings.CutPrefix(q, s.prefix); ok {
		s.reserved = rel
	}
	return nil
}

// checkName applies ferry's key rules to an object name (or a prefix).
func checkName(name string, isPrefix bool) error {
	switch {
	case !isPrefix && name == "":
		return errors.New("empty key")
	case strings.HasPrefix(name, "/"):
		return errors.New("absolute key")
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("NUL byte")
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8 (OCI object names are UTF-8)")
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%q segment", seg)
		}
	}
	return nil
}

// object returns the full object name for key, or an ErrInvalidKey error.
func (s *Store) object(op, key string) (string, error) {
	if err := checkName(key, false); err != nil {
		return "", fmt.Errorf("oci: %s %q: %s: %w", op, key, err, providers.ErrInvalidKey)
	}
	if s.reserved != "" && strings.HasPrefix(key, s.reserved) {
		return "", fmt.Errorf("oci: %s %q: keys under %q are reserved for the quarantine: %w", op, key, s.reserved, providers.ErrInvalidKey)
	}
	name := s.prefix + key
	if len(name) > MaxObjectName {
		return "", fmt.Errorf("oci: %s %q: object name is %d bytes, OCI allows %d: %w", op, key, len(name), MaxObjectName, providers.ErrInvalidKey)
	}
	return name, nil
}

// URI names key for reports.
func (s *Store) URI(key string) string {
	return "oci://" + s.ns + "/" + s.bucket + "/" + s.prefix + key
}

// Features: object-store shapes; the SHA-256 is reported only for single puts made
// with the SHA256 checksum algorithm, and never in listings, so it is not trusted
// store-wide. A GET streams one version and names it (ETag) in its response, so
// reads are snapshots.
func (s *Store) Features() providers.Features {
	return providers.Features{DirMarkers: true, PrefixAndChild: true, SnapshotReads: true}
}

// Region returns the region the store's endpoint serves: the spec's region, or the
// profile's. A bucket is regional and New reached it through this region's endpoint
// (or the endpoint the spec names for it).
func (s *Store) Region(context.Context) (string, error) { return s.region, nil }

// Versioned reports whether the bucket had versioning enabled when the store opened.
func (s *Store) Versioned() bool { return s.versioned }

// Bucket returns the namespace, bucket and prefix.
func (s *Store) Bucket() (namespace, bucket, prefix string) { return s.ns, s.bucket, s.prefix }

// QuarantinePrefix returns where unversioned soft deletes are kept (an object name
// prefix at the bucket root).
func (s *Store) QuarantinePrefix() string { return s.quarantine }

// Close releases idle connections.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.httpClient != nil {
			s.httpClient.CloseIdleConnections()
		}
	})
	return nil
}
