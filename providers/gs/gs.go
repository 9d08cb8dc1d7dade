// Package gs is the provider for Google Cloud Storage (gs://bucket/prefix/), on the
// native JSON API through cloud.google.com/go/storage (not the S3 interoperability
// API: that one ignores ferry's checksums and cannot delete conditionally).
//
// # Configuration
//
// providers.Config fields used: URL, Endpoint (a private endpoint, or an emulator
// such as fake-gcs-server: "http://127.0.0.1:4443"; "/storage/v1/" is added when the
// URL has no path), KMSKeyID (the Cloud KMS key name every write names: CMEK),
// PartSize (the upload chunk size above which uploads are resumable, default 16 MiB),
// Quarantine and Migration (soft deletes in unversioned buckets). Region is not
// needed: a bucket's location is read from the bucket. Credentials, by name only:
//
//	gcp_credentials_file: a service-account JSON key file
//	auth: none            anonymous requests (an emulator named by endpoint)
//
// With neither, Application Default Credentials are used (GOOGLE_APPLICATION_CREDENTIALS,
// gcloud's user credentials, workload identity, the metadata server).
//
// # Versions and integrity
//
// An object's generation is its ETag (and, in a bucket with object versioning, its
// Version): every write makes a new one, so a conditional delete on it
// (ifGenerationMatch) removes exactly the bytes that were verified. Uploads send the
// caller's CRC32C (the client computes it itself when the caller has none) and GCS
// refuses bytes that do not match; the stored CRC32C and, for non-composite objects,
// MD5 are compared with what was sent after the upload. SHA-256 is ferry's own: the
// caller's is checked locally while the bytes stream and the upload is abandoned on a
// mismatch, so nothing is stored. GCS never reports a SHA-256, so verify re-reads.
// Reads use the JSON API and are checked against the stored CRC32C by the client.
//
// # Deletes, retention and recoverability
//
// DeleteIf reads the object's metadata first (a missing object is never a successful
// delete; a held or retained object is refused with providers.ErrRetained and its
// reason, without a delete call), then deletes with ifGenerationMatch (and, in a
// versioned bucket, that generation: a permanent delete of exactly that version).
// SoftDelete in a versioned bucket deletes the live generation with ifGenerationMatch,
// which makes it noncurrent: the handle is the generation; Restore copies it back
// (only if the key is free) and deletes the kept generation, Purge deletes it. In an unversioned bucket
// the object is copied server-side (CopyTo, pinned to the generation) to the
// quarantine prefix, by default ".ferry-quarantine/<migration>/" at the bucket root,
// then deleted with ifGenerationMatch.
//
// The bucket's versioning, soft-delete policy, retention policy and object retention
// mode are read when the store opens (validate) and again by Recoverability.
package gs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/storage"
	gax "github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"

	"github.com/ferrymigrate/ferry/providers"
)

// Scheme is the URL scheme this provider registers.
const Scheme = "gs"

const (
	// DefaultChunkSize is the upload chunk when Config.PartSize is 0: objects up to it
	// go up in one request, larger ones as a resumable upload in chunks of it.
	DefaultChunkSize = 16 << 20
	// chunkUnit is GCS's chunk granularity.
	chunkUnit = 256 << 10
	// MaxObjectName is GCS's longest object name, in bytes.
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
	// MaxAttempts bounds the attempts of each call (default 8; 1 disables retries).
	MaxAttempts int
	// RetryBaseDelay and RetryMaxDelay shape the exponential backoff (defaults 500ms
	// and 20s).
	RetryBaseDelay, RetryMaxDelay time.Duration
	// HTTPClient replaces the HTTP client (tests). With it, credentials are the
	// client's business.
	HTTPClient *http.Client
	// ListPageSize is the page size of listings (default 1000).
	ListPageSize int
}

// Store is a GCS bucket prefix. Safe for concurrent use.
type Store struct {
	client     *storage.Client
	bucket     *storage.BucketHandle
	bucketName string
	prefix     string // "" or ending in "/"
	endpoint   string // configured; "" for Google's own
	name       string // site name, for messages
	kms        string
	chunkSize  int
	pageSize   int
	quarantine string // object name prefix at the bucket root, ending in "/"
	reserved   string // quarantine relative to prefix when inside the root, else ""
	retries    *retryCounter

	mu    sync.Mutex
	attrs bucketInfo // as last read
	once  sync.Once
}

// bucketInfo is what the store knows of its bucket's policies.
type bucketInfo struct {
	location, locationType string
	versioned              bool
	softDelete             time.Duration // 0: no soft-delete policy
	retention              time.Duration // bucket retention policy period; 0: none
	retentionLocked        bool
	objectRetention        bool // object retention (per-object retain-until) enabled
	defaultEventHold       bool
}

var (
	_ providers.Store              = (*Store)(nil)
	_ providers.ConditionalDeleter = (*Store)(nil)
	_ providers.SoftDeleter        = (*Store)(nil)
	_ providers.Regioner           = (*Store)(nil)
	_ providers.Featurer           = (*Store)(nil)
	_ providers.Versioner          = (*Store)(nil)
	_ providers.Recoverer          = (*Store)(nil)
	_ providers.RangeLister        = (*Store)(nil)
	_ providers.Identifier         = (*Store)(nil)
	_ providers.Retrier            = (*Store)(nil)
)

// bucketRE: GCS bucket names (3-63 characters per dot-separated part, 222 in all).
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)

// ParseURL splits gs://bucket/prefix. The prefix, when not empty, is made to end in
// "/": a site is a folder, and "users" must not also match "users-old/".
func ParseURL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("gs: bad url %q: %w", raw, err)
	}
	if u.Scheme != Scheme {
		return "", "", fmt.Errorf("gs: url %q: scheme is not gs", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return "", "", fmt.Errorf("gs: url %q: want gs://bucket/prefix (no user, port, query or fragment)", raw)
	}
	bucket = u.Host
	if !bucketRE.MatchString(bucket) || strings.Contains(bucket, "..") || strings.HasPrefix(bucket, "goog") {
		return "", "", fmt.Errorf("gs: url %q: %q is not a Cloud Storage bucket name (lowercase letters, digits, '-', '_', '.'; 3 to 222 characters)", raw, bucket)
	}
	prefix = strings.TrimPrefix(u.Path, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if err := checkName(prefix, true); err != nil {
		return "", "", fmt.Errorf("gs: url %q: prefix %q: %s", raw, prefix, err)
	}
	return bucket, prefix, nil
}

// New opens the store cfg names. It reads the bucket's metadata (versioning,
// location, soft-delete and retention policies), so a missing bucket, credentials GCS
// rejects or an endpoint nobody listens on fail here, with the site's name.
func New(ctx context.Context, cfg providers.Config, opts Options) (*Store, error) {
	bucket, prefix, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, siteErr(cfg.Name, err)
	}
	s := &Store{bucketName: bucket, prefix: prefix, name: cfg.Name, kms: cfg.KMSKeyID,
		pageSize: opts.ListPageSize, retries: &retryCounter{}}
	if s.pageSize <= 0 || s.pageSize > 1000 {
		s.pageSize = 1000
	}
	switch {
	case cfg.PartSize == 0:
		s.chunkSize = DefaultChunkSize
	case cfg.PartSize < chunkUnit || cfg.PartSize > 5<<30:
		return nil, siteErr(cfg.Name, fmt.Errorf("gs: part size %d: want between 256 KiB and 5 GiB", cfg.PartSize))
	default:
		s.chunkSize = int((cfg.PartSize + chunkUnit - 1) / chunkUnit * chunkUnit)
	}
	if err := s.setQuarantine(cfg); err != nil {
		return nil, siteErr(cfg.Name, err)
	}
	copts, err := clientOptions(cfg, opts)
	if err != nil {
		return nil, siteErr(cfg.Name, err)
	}
	if cfg.Endpoint != "" {
		ep, err := endpointURL(cfg.Endpoint)
		if err != nil {
			return nil, siteErr(cfg.Name, err)
		}
		s.endpoint = cfg.Endpoint
		copts = append(copts, option.WithEndpoint(ep))
	}
	client, err := storage.NewClient(ctx, copts...)
	if err != nil {
		return nil, siteErr(cfg.Name, fmt.Errorf("gs: %s: %w: %w", credentialsName(cfg), providers.ErrCredentials, err))
	}
	s.client = client
	client.SetRetry(s.retryOptions(opts)...)
	s.bucket = client.Bucket(bucket)
	if _, err := s.readBucket(ctx); err != nil {
		client.Close()
		if errors.Is(err, providers.ErrCredentials) {
			err = fmt.Errorf("%w (credentials: %s)", err, credentialsName(cfg))
		}
		return nil, siteErr(cfg.Name, err)
	}
	return s, nil
}

func siteErr(name string, err error) error {
	if name == "" {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}

func credentialsName(cfg providers.Config) string {
	switch {
	case cfg.Credentials["auth"] == "none":
		return "anonymous (auth: none)"
	case cfg.Credentials["gcp_credentials_file"] != "":
		return "service-account file " + cfg.Credentials["gcp_credentials_file"]
	}
	return "Application Default Credentials"
}

// clientOptions builds the client's credentials from the names cfg.Credentials holds.
func clientOptions(cfg providers.Config, opts Options) ([]option.ClientOption, error) {
	cred := cfg.Credentials
	for k := range cred {
		switch k {
		case "auth", "gcp_credentials_file":
		default:
			return nil, fmt.Errorf("gs: unknown credentials key %q (want gcp_credentials_file, or auth: none for an emulator)", k)
		}
	}
	out := []option.ClientOption{option.WithUserAgent("ferry"), storage.WithJSONReads(), storage.WithDisabledClientMetrics()}
	if opts.HTTPClient != nil {
		out = append(out, option.WithHTTPClient(opts.HTTPClient))
	}
	file := cred["gcp_credentials_file"]
	switch a := cred["auth"]; a {
	case "none":
		if file != "" {
			return nil, errors.New("gs: credentials: auth: none and gcp_credentials_file exclude each other")
		}
		if cfg.Endpoint == "" {
			return nil, errors.New("gs: credentials: auth: none is for an emulator: name it with endpoint")
		}
		if opts.HTTPClient == nil {
			out = append(out, option.WithoutAuthentication())
		}
	case "", "default", "adc":
		if file != "" {
			fi, err := os.Stat(file)
			if err != nil {
				return nil, fmt.Errorf("gs: gcp_credentials_file: %w: %w", providers.ErrCredentials, err)
			}
			if !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("gs: gcp_credentials_file %s: %w: not a regular file", file, providers.ErrCredentials)
			}
			if opts.HTTPClient == nil {
				out = append(out, option.WithAuthCredentialsFile(option.ServiceAccount, file))
			}
		}
	default:
		return nil, fmt.Errorf("gs: unknown auth %q (want none, or leave it out for Application Default Credentials)", a)
	}
	return out, nil
}

// endpointURL turns http(s)://host[:port][/path] into the JSON API base URL.
func endpointURL(ep string) (string, error) {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("gs: endpoint %q: want http(s)://host[:port]", ep)
	}
	p := u.Path
	if p == "" || p == "/" {
		p = "/storage/v1/"
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return u.Scheme + "://" + u.Host + p, nil
}

// retryOptions: every call is retried (uploads overwrite with the same bytes; deletes
// are conditional), with bounded exponential backoff, and counted.
func (s *Store) retryOptions(o Options) []storage.RetryOption {
	attempts := o.MaxAttempts
	if attempts <= 0 {
		attempts = 8
	}
	base, most := o.RetryBaseDelay, o.RetryMaxDelay
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if most <= 0 {
		most = 20 * time.Second
	}
	return []storage.RetryOption{
		storage.WithPolicy(storage.RetryAlways),
		storage.WithMaxAttempts(attempts),
		storage.WithBackoff(gax.Backoff{Initial: base, Max: most, Multiplier: 2}),
		storage.WithErrorFunc(func(err error) bool {
			if retryable(err) {
				s.retries.add()
				return true
			}
			return false
		}),
	}
}

// readBucket reads the bucket's metadata and keeps the policies.
func (s *Store) readBucket(ctx context.Context) (bucketInfo, error) {
	a, err := s.bucket.Attrs(ctx)
	if err != nil {
		return bucketInfo{}, s.fail("open bucket", "", err)
	}
	b := bucketInfo{location: strings.ToLower(a.Location), locationType: a.LocationType, versioned: a.VersioningEnabled,
		objectRetention: a.ObjectRetentionMode == "Enabled", defaultEventHold: a.DefaultEventBasedHold}
	if a.SoftDeletePolicy != nil {
		b.softDelete = a.SoftDeletePolicy.RetentionDuration
	}
	if a.RetentionPolicy != nil {
		b.retention, b.retentionLocked = a.RetentionPolicy.RetentionPeriod, a.RetentionPolicy.IsLocked
	}
	s.mu.Lock()
	s.attrs = b
	s.mu.Unlock()
	return b, nil
}

func (s *Store) info() bucketInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attrs
}

func (s *Store) versioned() bool { return s.info().versioned }

// setQuarantine picks the quarantine prefix and reserves it when it lies inside the
// root.
func (s *Store) setQuarantine(cfg providers.Config) error {
	q := cfg.Quarantine
	if q == "" {
		mig := cfg.Migration
		if mig == "" {
			mig = "default"
		}
		if strings.ContainsAny(mig, "/\x00\r\n") || mig == "." || mig == ".." {
			return fmt.Errorf("gs: migration id %q cannot name a quarantine prefix", mig)
		}
		q = DefaultQuarantineRoot + mig + "/"
	}
	q = strings.TrimPrefix(q, "/")
	if !strings.HasSuffix(q, "/") {
		q += "/"
	}
	if err := checkName(q, true); err != nil {
		return fmt.Errorf("gs: quarantine prefix %q: %s", q, err)
	}
	if s.prefix != "" && strings.HasPrefix(s.prefix, q) {
		return fmt.Errorf("gs: the site prefix %q lies inside the quarantine prefix %q", s.prefix, q)
	}
	s.quarantine = q
	if rel, ok := strings.CutPrefix(q, s.prefix); ok {
		s.reserved = rel
	}
	return nil
}

// checkName applies ferry's key rules and GCS's object name rules to a name (or a
// prefix): valid UTF-8, no carriage return or line feed.
func checkName(name string, isPrefix bool) error {
	switch {
	case !isPrefix && name == "":
		return errors.New("empty key")
	case strings.HasPrefix(name, "/"):
		return errors.New("absolute key")
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("NUL byte")
	case strings.ContainsAny(name, "\r\n"):
		return errors.New("carriage return or line feed (GCS object names cannot hold them)")
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8 (GCS object names are UTF-8)")
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
		return "", fmt.Errorf("gs: %s %q: %s: %w", op, key, err, providers.ErrInvalidKey)
	}
	if s.reserved != "" && strings.HasPrefix(key, s.reserved) {
		return "", fmt.Errorf("gs: %s %q: keys under %q are reserved for the quarantine: %w", op, key, s.reserved, providers.ErrInvalidKey)
	}
	name := s.prefix + key
	if len(name) > MaxObjectName {
		return "", fmt.Errorf("gs: %s %q: object name is %d bytes, GCS allows %d: %w", op, key, len(name), MaxObjectName, providers.ErrInvalidKey)
	}
	return name, nil
}

// URI names key for reports.
func (s *Store) URI(key string) string { return "gs://" + s.bucketName + "/" + s.prefix + key }

func (s *Store) uriOf(name string) string { return "gs://" + s.bucketName + "/" + name }

// Features: object-store shapes. GCS reports no SHA-256. A read is pinned to the
// generation of its first response (the client re-opens with that generation), so
// reads are snapshots.
func (s *Store) Features() providers.Features {
	return providers.Features{DirMarkers: true, PrefixAndChild: true, SnapshotReads: true}
}

// Region returns the bucket's location in lowercase, as GCS names it: a region
// ("us-east1"), a dual-region ("nam4", or a configurable one) or a multi-region ("us").
func (s *Store) Region(ctx context.Context) (string, error) {
	b, err := s.readBucket(ctx)
	if err != nil {
		return "", err
	}
	return b.location, nil
}

// Bucket returns the bucket and prefix.
func (s *Store) Bucket() (bucket, prefix string) { return s.bucketName, s.prefix }

// QuarantinePrefix returns where unversioned soft deletes are kept.
func (s *Store) QuarantinePrefix() string { return s.quarantine }

// Versioned reports whether the bucket had object versioning on when last read.
func (s *Store) Versioned() bool { return s.versioned() }

// Retries returns how many failed attempts the client retried.
func (s *Store) Retries() int64 { return s.retries.n.Load() }

// Identity is the bucket and prefix on Google Cloud Storage ("gcs": bucket names
// are global), or on the endpoint's server when one is configured.
func (s *Store) Identity(ctx context.Context) (providers.Identity, error) {
	servers := []string{"gcs"}
	if s.endpoint != "" {
		u, err := url.Parse(s.endpoint)
		host := ""
		if err == nil {
			host = strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		}
		if host != "storage.googleapis.com" && !strings.HasSuffix(host, ".googleapis.com") {
			servers = providers.EndpointServers(ctx, s.endpoint)
		}
	}
	return providers.Identity{Kind: "gs", Servers: servers, Container: s.bucketName, Prefix: s.prefix}, nil
}

// Close releases the client.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() { err = s.client.Close() })
	return err
}
