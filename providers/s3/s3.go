// Package s3 is the provider for S3 and S3-compatible stores (MinIO, Ceph RGW,
// versitygw, OCI's S3 API): s3://bucket/prefix/.
//
// # Keys
//
// A key is relative to the site's prefix; the prefix is added and removed here. A URL
// prefix that does not end in "/" gets one ("s3://b/users" lists "users/..."). Keys
// are exact UTF-8 strings. Besides what every store refuses ("..", a leading "/",
// NUL), keys with "." segments or an empty segment inside them ("a//b", "a/./b") are
// refused with ErrInvalidKey: AWS stores them as written, but MinIO rejects them and
// versitygw silently stores "a//b" and "a/./b" as "a/b", so they cannot round-trip
// between S3-compatible stores. A trailing "/" (a directory marker, "a/") is fine.
//
// Listings ask for url-encoded keys (EncodingType=url) and decode them when the
// server says it encoded them, so keys with characters XML cannot carry survive. A
// server that ignores the encoding (versitygw) returns raw XML, where such a
// character arrives as U+FFFD: a listed key holding U+FFFD is checked with a HEAD,
// and a listing that mangled a key fails with ErrIncompleteList. An object whose key
// equals the prefix itself (a directory marker for the site's folder) is not a
// record and is not listed.
//
// # Checksums
//
// Stat, Open and Put report what the server vouches for: x-amz-checksum-sha256 of a
// single-part object (as lowercase hex), a whole-object CRC32C (multipart uploads
// written here use the FULL_OBJECT checksum type), and an MD5 only when the ETag is
// a plain 32-hex MD5 of a single-part, unencrypted (or AWS SSE-S3) object. List
// reports no checksums (S3 listings carry none), so Features().TrustedSHA256 is
// false even where Stat reports a SHA-256: the pipeline reads it per object.
//
// # Deletes
//
// See delete.go: conditional deletes, and soft deletes by delete marker (versioned
// buckets) or by a quarantine prefix (unversioned buckets). DeleteIfBatch (batch.go)
// deletes many keys with DeleteObjects where that is as safe as single deletes.
//
// # Servers
//
// The store learns the server from the Server header at open (Server()) and adapts
// where servers differ from AWS (tests pin each point against MinIO and versitygw):
//
//   - MinIO ignores If-Match on DELETE and the ETag element in DeleteObjects;
//     versitygw honours If-Match on DELETE but not in DeleteObjects. Neither honours
//     If-None-Match on CopyObject. Version ids make deletes in versioned buckets
//     race-free on every server.
//   - MinIO stores "a" next to "a/b" but then lists only one of them: Put checks
//     first (checkShape, against a cache of each directory listed once: shape.go).
//     versitygw refuses such pairs itself. Objects a MinIO
//     source already hides this way are invisible to its own listing, so to ferry.
//   - versitygw ignores EncodingType=url (see Keys), starts a version listing page
//     at its marker when the marker names a key's latest entry (the duplicate is
//     dropped), and loops back to the start after a directory marker in a versioned
//     bucket (caught as a repeated marker: ErrIncompleteList).
//   - MinIO's version-listing key markers are opaque and passed back as given.
package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithymiddleware "github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/semaphore"

	"github.com/ferrymigrate/ferry/providers"
)

const (
	// DefaultPartSize is the multipart part size when the spec gives none. Objects
	// up to one part are written with a single PutObject.
	DefaultPartSize = 16 << 20
	// MinPartSize and MaxPartSize are S3's limits for a part (but the last).
	MinPartSize = 5 << 20
	MaxPartSize = 5 << 30
	maxParts    = 10000
	// maxCopySize is the largest object CopyObject copies in one request.
	maxCopySize = 5 << 30

	// DefaultQuarantine is the bucket-relative prefix where soft deletes keep objects
	// in unversioned buckets, followed by the migration id.
	DefaultQuarantine = ".ferry-quarantine/"

	// MaxAttempts bounds every request: the first try and up to MaxAttempts-1
	// retries, with jittered exponential backoff up to maxBackoff.
	MaxAttempts = 6
	maxBackoff  = 20 * time.Second

	// uploadParallelism is how many parts of one multipart upload are in flight.
	uploadParallelism = 4
)

func init() {
	providers.Register("s3", func(ctx context.Context, cfg providers.Config) (providers.Store, error) {
		return New(ctx, cfg)
	})
}

// Store is one s3://bucket/prefix/ site or target. Safe for concurrent use.
type Store struct {
	client *s3.Client
	http   interface{ CloseIdleConnections() }
	name   string
	bucket string
	prefix string // "" or ending in "/"

	region    string // configured
	endpoint  string // configured; "" for AWS
	awsHosted bool   // no custom endpoint: AWS itself
	partSize  int64
	kmsKeyID  string

	server     string // "minio", "versitygw", or "" (AWS or another), from the Server header at open
	versioning string // GetBucketVersioning status at open: "Enabled", "Suspended", "" (never), "unknown"
	versioned  bool   // versioning == Enabled: soft deletes use delete markers

	qroot   string // quarantine root, bucket-relative, ending in "/"
	qprefix string // qroot + migration + "/"
	qInView bool   // the quarantine lies under the prefix: List skips it, keys may not enter it

	mem      *semaphore.Weighted // bytes of part buffers in memory
	memLimit int64
	bufs     sync.Pool // *[]byte of partSize bytes

	retries   atomic.Int64
	noIfMatch atomic.Bool // the server refused If-Match on DELETE as not implemented
	pageSize  int32
	regionMu  sync.Mutex
	regionVal string

	// shape is MinIO's shape guard's cache (shape.go).
	shape shapeCache

	// beforeDelete, when set (tests), runs between the HEAD that checks an object
	// and the request that deletes it.
	beforeDelete func(key string)
}

var (
	_ providers.Store              = (*Store)(nil)
	_ providers.ConditionalDeleter = (*Store)(nil)
	_ providers.SoftDeleter        = (*Store)(nil)
	_ providers.Featurer           = (*Store)(nil)
	_ providers.Regioner           = (*Store)(nil)
	_ providers.UncheckedOpener    = (*Store)(nil)
	_ providers.Retrier            = (*Store)(nil)
)

// ParseURL splits s3://bucket/prefix into the bucket and the prefix ("" or ending
// in "/"). Percent-escapes in the prefix are decoded.
func ParseURL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		// Not the url itself: a malformed one may hold what looks like a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", "", fmt.Errorf("s3: bad url: %w", err)
	}
	switch {
	case u.Scheme != "s3":
		return "", "", fmt.Errorf("s3: url %q: scheme is not s3", raw)
	case u.Opaque != "" || u.Host == "":
		return "", "", fmt.Errorf("s3: url %q: want s3://bucket/prefix", raw)
	case u.User != nil:
		return "", "", fmt.Errorf("s3: url %q: credentials do not belong in the url; use the site's credentials setting", redactURL(u))
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "?") || strings.HasSuffix(raw, "#"):
		return "", "", fmt.Errorf("s3: url %q: query or fragment not allowed; escape ? and # as %%3F and %%23", raw)
	case u.Port() != "":
		return "", "", fmt.Errorf("s3: url %q: a port belongs in the endpoint setting, not the url", raw)
	}
	prefix = strings.TrimPrefix(u.Path, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if prefix != "" {
		if err := checkKey(prefix); err != nil {
			return "", "", fmt.Errorf("s3: url %q: prefix: %w", raw, err)
		}
	}
	return u.Host, prefix, nil
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// New opens the site cfg names: it builds a client with the site's own credentials,
// checks that the bucket exists and reads its versioning state.
func New(ctx context.Context, cfg providers.Config) (*Store, error) {
	name := cfg.Name
	if name == "" {
		name = cfg.URL
	}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("%s: s3: "+format, append([]any{name}, args...)...)
	}
	bucket, prefix, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	partSize := cfg.PartSize
	switch {
	case partSize == 0:
		partSize = DefaultPartSize
	case partSize < MinPartSize || partSize > MaxPartSize:
		return nil, errf("part size %d outside S3's limits (%d to %d bytes)", partSize, MinPartSize, MaxPartSize)
	}
	s := &Store{
		name: name, bucket: bucket, prefix: prefix,
		region: cfg.Region, endpoint: cfg.Endpoint, awsHosted: cfg.Endpoint == "",
		partSize: partSize, kmsKeyID: cfg.KMSKeyID,
		pageSize: 1000,
	}
	// Memory for buffered bodies, shared by all uploads through this store: two
	// uploads' parts in flight (128 MiB of 16 MiB parts), bounded whatever the
	// caller's concurrency. Peak memory stays near this figure because part buffers
	// are reused, not left to the garbage collector.
	s.memLimit = 2 * uploadParallelism * partSize
	s.mem = semaphore.NewWeighted(s.memLimit)
	if err := s.setQuarantine(cfg.Quarantine, cfg.Migration); err != nil {
		return nil, errf("%v", err)
	}

	awsCfg, err := s.loadConfig(ctx, cfg)
	if err != nil {
		return nil, errf("%v", err)
	}
	s.client = s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.EndpointResolverV2 = newEndpointCache(s3.NewDefaultEndpointResolverV2())
		o.UsePathStyle = cfg.PathStyle
		o.APIOptions = append(o.APIOptions, addRequestIDMiddleware)
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		if cfg.ChecksumWhenRequired {
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	if err := s.readVersioning(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// loadConfig builds the AWS config for this site alone: its region, its HTTP client
// (a BuildableClient, so AWS_CA_BUNDLE applies), its retryer and its credentials.
func (s *Store) loadConfig(ctx context.Context, cfg providers.Config) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = 256
			tr.ResponseHeaderTimeout = 5 * time.Minute
		})),
		config.WithRetryer(func() aws.Retryer {
			return &countingRetryer{RetryerV2: newRetryer(), n: &s.retries}
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	creds := cfg.Credentials
	for k := range creds {
		switch k {
		case "profile", "access_key_env", "secret_key_env", "session_token_env":
		default:
			return aws.Config{}, fmt.Errorf("credentials: unknown setting %q for an s3 site (profile, access_key_env, secret_key_env, session_token_env)", k)
		}
	}
	akEnv, skEnv, tokEnv := creds["access_key_env"], creds["secret_key_env"], creds["session_token_env"]
	switch {
	case creds["profile"] != "" && (akEnv != "" || skEnv != "" || tokEnv != ""):
		return aws.Config{}, errors.New("credentials: give either a profile or environment variable names, not both")
	case creds["profile"] != "":
		opts = append(opts, config.WithSharedConfigProfile(creds["profile"]))
	case akEnv != "" || skEnv != "" || tokEnv != "":
		if akEnv == "" || skEnv == "" {
			return aws.Config{}, errors.New("credentials: access_key_env and secret_key_env go together")
		}
		get := func(setting, env string) (string, error) {
			v := strings.TrimSpace(lookupEnv(env))
			if v == "" {
				return "", fmt.Errorf("credentials: environment variable %s (named by %s) is not set or empty", env, setting)
			}
			return v, nil
		}
		ak, err := get("access_key_env", akEnv)
		if err != nil {
			return aws.Config{}, err
		}
		sk, err := get("secret_key_env", skEnv)
		if err != nil {
			return aws.Config{}, err
		}
		tok := ""
		if tokEnv != "" {
			if tok, err = get("session_token_env", tokEnv); err != nil {
				return aws.Config{}, err
			}
		}
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, tok)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config: %w", err)
	}
	if awsCfg.Region == "" {
		// S3-compatible servers rarely care; AWS answers with the bucket's region.
		awsCfg.Region = "us-east-1"
	}
	// Freeze the client so Close can drop its idle connections.
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		hc := bc.Freeze()
		awsCfg.HTTPClient = hc
		s.http, _ = hc.(interface{ CloseIdleConnections() })
	}
	return awsCfg, nil
}

// lookupEnv reads credentials from the environment; a variable for tests.
var lookupEnv = os.Getenv

func (s *Store) setQuarantine(q, mig string) error {
	if mig == "" {
		mig = "default"
	}
	if mig == "." || mig == ".." || strings.ContainsAny(mig, "/\x00") || !utf8.ValidString(mig) {
		return fmt.Errorf("migration id %q cannot name a quarantine prefix", mig)
	}
	if q == "" {
		q = DefaultQuarantine
	}
	if strings.HasPrefix(q, "s3://") {
		b, p, err := ParseURL(q)
		if err != nil {
			return fmt.Errorf("quarantine: %w", err)
		}
		if b != s.bucket {
			return fmt.Errorf("quarantine %s is in bucket %s, not the site's bucket %s: it must be at the same site (a server-side copy)", q, b, s.bucket)
		}
		q = p
	}
	q = strings.TrimPrefix(q, "/")
	if q == "" {
		return errors.New("quarantine prefix is empty: it would be the whole bucket")
	}
	if !strings.HasSuffix(q, "/") {
		q += "/"
	}
	if err := checkKey(q); err != nil {
		return fmt.Errorf("quarantine %q: %w", q, err)
	}
	if s.prefix != "" && strings.HasPrefix(s.prefix, q) {
		return fmt.Errorf("site prefix %q lies inside the quarantine %q", s.prefix, q)
	}
	s.qroot, s.qprefix = q, q+mig+"/"
	s.qInView = strings.HasPrefix(q, s.prefix)
	return nil
}

func (s *Store) readVersioning(ctx context.Context) error {
	out, err := s.client.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &s.bucket})
	if err != nil {
		code, _ := errorCode(err)
		switch {
		case code == "NoSuchBucket":
			return fmt.Errorf("s3: bucket %s does not exist (or is not visible with these credentials): %w: %w", s.bucket, providers.ErrNoBucket, err)
		case errors.Is(portable(err), providers.ErrPermission), errors.Is(portable(err), providers.ErrNotSupported):
			// A read-only role may lack s3:GetBucketVersioning. Without it, soft
			// deletes use the quarantine, which is safe in any bucket.
			s.versioning = "unknown"
			return s.checkBucket(ctx)
		default:
			return fail("read versioning of", "s3://"+s.bucket, err)
		}
	}
	s.versioning = string(out.Status)
	s.versioned = out.Status == types.BucketVersioningStatusEnabled
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok && raw != nil {
		switch strings.ToLower(raw.Header.Get("Server")) {
		case "minio":
			s.server = "minio"
		case "versitygw":
			s.server = "versitygw"
		}
	}
	return nil
}

// Server names the server implementation when it announced a known one: "minio",
// "versitygw", or "" (AWS, or another).
func (s *Store) Server() string { return s.server }

func (s *Store) checkBucket(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if isStatus(err, 404) {
		return fmt.Errorf("s3: bucket %s does not exist: %w: %w", s.bucket, providers.ErrNoBucket, err)
	}
	if err != nil && !errors.Is(portable(err), providers.ErrPermission) {
		return fail("check bucket", "s3://"+s.bucket, err)
	}
	return nil
}

// Versioned reports whether the bucket had versioning enabled when the store was
// opened (soft deletes then leave delete markers).
func (s *Store) Versioned() bool { return s.versioned }

// Bucket and Prefix name the store's root.
func (s *Store) Bucket() string { return s.bucket }
func (s *Store) Prefix() string { return s.prefix }

// QuarantinePrefix is the bucket-relative prefix under which soft deletes keep
// objects in an unversioned bucket.
func (s *Store) QuarantinePrefix() string { return s.qprefix }

// Stats are counters since the store was opened.
type Stats struct {
	// Retries is how many requests were retried (throttling, 5xx, dropped
	// connections), summed over all operations.
	Retries int64 `json:"retries"`
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats { return Stats{Retries: s.retries.Load()} }

// Retries is how many requests this store retried so far (providers.Retrier).
func (s *Store) Retries() int64 { return s.retries.Load() }

// URI is for humans: nothing is escaped.
func (s *Store) URI(key string) string { return "s3://" + s.bucket + "/" + s.prefix + key }

func (s *Store) uriFull(full string) string { return "s3://" + s.bucket + "/" + full }

// Features: S3 keys are flat strings, so "a/" and "a" next to "a/b" are ordinary
// on AWS. Not on MinIO and versitygw, which store keys as paths: versitygw refuses
// "a/b" next to an object "a" (and "a" over "a/b"), and MinIO accepts both but then
// lists only one of them. On those servers PrefixAndChild is false and Put refuses
// such a pair with ErrAlreadyExists (on MinIO by checking before the write).
// A GET streams one version and names it (ETag, version id) in its response, so
// reads are snapshots.
func (s *Store) Features() providers.Features {
	return providers.Features{DirMarkers: true, PrefixAndChild: s.server == "", SnapshotReads: true}
}

// Close drops idle connections.
func (s *Store) Close() error {
	if s.http != nil {
		s.http.CloseIdleConnections()
	}
	return nil
}

// checkKey enforces the key rules (see the package comment).
func checkKey(key string) error {
	switch {
	case key == "":
		return invalid(key, "empty key")
	case key[0] == '/':
		return invalid(key, "absolute key")
	case strings.IndexByte(key, 0) >= 0:
		return invalid(key, "NUL byte")
	case !utf8.ValidString(key):
		return invalid(key, "not UTF-8 (S3 keys are UTF-8)")
	}
	segs := strings.Split(key, "/")
	for i, seg := range segs {
		switch {
		case seg == "." || seg == "..":
			return invalid(key, fmt.Sprintf("%q segment", seg))
		case seg == "" && i < len(segs)-1:
			return invalid(key, "empty segment (//): S3-compatible stores reject or merge it")
		}
	}
	return nil
}

func invalid(key, why string) error {
	return fmt.Errorf("s3: key %q: %s: %w", key, why, providers.ErrInvalidKey)
}

// full returns the bucket key for a relative key, or ErrInvalidKey.
func (s *Store) full(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	fk := s.prefix + key
	if len(fk) > 1024 {
		return "", invalid(key, "longer than S3's 1024 bytes with the prefix")
	}
	if s.qInView && strings.HasPrefix(fk, s.qroot) {
		return "", invalid(key, "reserved for the soft-delete quarantine "+s.qroot)
	}
	return fk, nil
}

// ---- objects ----

func trimETag(etag *string) string { return strings.Trim(aws.ToString(etag), `"`) }

func quoteETag(etag string) *string { return aws.String(`"` + etag + `"`) }

var md5ETag = regexp.MustCompile(`^[0-9a-f]{32}$`)

// sums decodes what the server reports into trusted checksums.
type reported struct {
	etag, sha256, crc32c string
	ctype                types.ChecksumType
	sse                  types.ServerSideEncryption
	ssec                 string
}

func (s *Store) checksums(r reported) providers.Checksums {
	var c providers.Checksums
	multipart := strings.Contains(r.etag, "-")
	whole := r.ctype != types.ChecksumTypeComposite
	if v := r.sha256; v != "" && whole && !multipart && !strings.Contains(v, "-") {
		if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) == 32 {
			c.SHA256 = hex.EncodeToString(b)
		}
	}
	if v := r.crc32c; v != "" && whole && !strings.Contains(v, "-") {
		if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) == 4 {
			c.CRC32C = hex.EncodeToString(b) // big-endian, as S3 sends it
		}
	}
	// An ETag is the MD5 of the bytes only for a single-part object that is not
	// encrypted with KMS or a customer key (SSE-S3 keeps MD5 ETags on AWS; other
	// servers may not, so there only unencrypted objects count).
	plain := r.sse == "" || (r.sse == types.ServerSideEncryptionAes256 && s.awsHosted)
	if !multipart && plain && r.ssec == "" && md5ETag.MatchString(r.etag) {
		c.MD5 = r.etag
	}
	return c
}

func (s *Store) rel(full string) string { return strings.TrimPrefix(full, s.prefix) }

func (s *Store) fromHead(key string, h *s3.HeadObjectOutput) providers.Object {
	etag := trimETag(h.ETag)
	return providers.Object{
		Key: key, Size: aws.ToInt64(h.ContentLength), ETag: etag,
		Version: aws.ToString(h.VersionId), ModTime: aws.ToTime(h.LastModified),
		Checksums: s.checksums(reported{etag: etag, sha256: aws.ToString(h.ChecksumSHA256),
			crc32c: aws.ToString(h.ChecksumCRC32C), ctype: h.ChecksumType,
			sse: h.ServerSideEncryption, ssec: aws.ToString(h.SSECustomerAlgorithm)}),
		Metadata: nonEmpty(h.Metadata),
	}
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// head HEADs a bucket key (a version of it when version != "") with checksums.
func (s *Store) head(ctx context.Context, full, version string) (*s3.HeadObjectOutput, error) {
	in := &s3.HeadObjectInput{Bucket: &s.bucket, Key: &full, ChecksumMode: types.ChecksumModeEnabled}
	if version != "" {
		in.VersionId = &version
	}
	out, err := s.client.HeadObject(ctx, in)
	if err != nil {
		if version != "" && isStatus(err, 405) {
			// HEAD of a delete marker's version id: not an object.
			return nil, fmt.Errorf("s3: stat %s version %s: a delete marker: %w", s.uriFull(full), version, providers.ErrNotFound)
		}
		return nil, s.noBucket(ctx, fail("stat", s.uriFull(full), err))
	}
	return out, nil
}

// Stat HEADs key with checksum mode enabled.
func (s *Store) Stat(ctx context.Context, key string) (providers.Object, error) {
	fk, err := s.full(key)
	if err != nil {
		return providers.Object{}, err
	}
	h, err := s.head(ctx, fk, "")
	if err != nil {
		return providers.Object{}, err
	}
	return s.fromHead(key, h), nil
}

// Open GETs key; the Object describes the version being read (from the GET's own
// response headers). With checksum mode enabled the SDK checks a whole-object
// checksum while the body is read and fails the read on a mismatch.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	return s.open(ctx, key)
}

// OpenUnchecked is Open without the SDK's check of the body against the checksum
// in the response (providers.UncheckedOpener): the Object still carries that
// checksum, for the caller to compare with its own hash of the bytes.
func (s *Store) OpenUnchecked(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	return s.open(ctx, key, s3.WithAPIOptions(func(st *smithymiddleware.Stack) error {
		st.Deserialize.Remove("AWSChecksum:ValidateOutputPayloadChecksum") // absent: nothing to skip
		return nil
	}))
}

func (s *Store) open(ctx context.Context, key string, optFns ...func(*s3.Options)) (io.ReadCloser, providers.Object, error) {
	fk, err := s.full(key)
	if err != nil {
		return nil, providers.Object{}, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &fk, ChecksumMode: types.ChecksumModeEnabled}, optFns...)
	if err != nil {
		return nil, providers.Object{}, fail("open", s.uriFull(fk), err)
	}
	etag := trimETag(out.ETag)
	o := providers.Object{
		Key: key, Size: aws.ToInt64(out.ContentLength), ETag: etag,
		Version: aws.ToString(out.VersionId), ModTime: aws.ToTime(out.LastModified),
		Checksums: s.checksums(reported{etag: etag, sha256: aws.ToString(out.ChecksumSHA256),
			crc32c: aws.ToString(out.ChecksumCRC32C), ctype: out.ChecksumType,
			sse: out.ServerSideEncryption, ssec: aws.ToString(out.SSECustomerAlgorithm)}),
		Metadata: nonEmpty(out.Metadata),
	}
	return out.Body, o, nil
}

// Delete removes key unconditionally: ErrNotFound if it is absent. In a versioned
// bucket it leaves a delete marker (the versions stay).
func (s *Store) Delete(ctx context.Context, key string) error {
	defer s.mutating()()
	fk, err := s.full(key)
	if err != nil {
		return err
	}
	if _, err := s.head(ctx, fk, ""); err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &fk}); err != nil {
		return fail("delete", s.uriFull(fk), err)
	}
	return nil
}

// Region returns the bucket's region: GetBucketLocation where the server answers it
// with a region, else the configured one. A found region is cached.
func (s *Store) Region(ctx context.Context) (string, error) {
	s.regionMu.Lock()
	defer s.regionMu.Unlock()
	if s.regionVal != "" {
		return s.regionVal, nil
	}
	out, err := s.client.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: &s.bucket})
	switch {
	case err == nil && out.LocationConstraint != "":
		s.regionVal = string(out.LocationConstraint)
		if s.regionVal == "EU" {
			s.regionVal = "eu-west-1"
		}
	case err == nil && s.awsHosted:
		s.regionVal = "us-east-1" // AWS's empty location constraint
	case s.region != "":
		// The server does not say (versitygw answers ""), or may not be asked.
		s.regionVal = s.region
	case err != nil:
		return "", fail("get location of", "s3://"+s.bucket, err)
	}
	return s.regionVal, nil
}

// ---- retries ----

// backoff replaces the SDK's jittered exponential backoff when set (tests).
var backoff retry.BackoffDelayer

// SetTestBackoff makes stores created afterwards wait d between retries instead of
// the SDK's jittered exponential backoff (up to 20s). It is for test binaries that
// inject many faults, set once before any store is created.
func SetTestBackoff(d time.Duration) {
	backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return d, nil })
}

func newRetryer() aws.RetryerV2 {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = MaxAttempts
		o.MaxBackoff = maxBackoff
		if backoff != nil {
			o.Backoff = backoff
		}
		// No client-wide retry quota: every request gets its bounded attempts, so
		// one burst of throttling cannot make unrelated requests fail at once.
		o.RateLimiter = ratelimit.None
		// A certificate that does not verify will not verify on the next attempt.
		o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			var cv *tls.CertificateVerificationError
			var ua x509.UnknownAuthorityError
			var he x509.HostnameError
			if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) {
				return aws.FalseTernary
			}
			return aws.UnknownTernary
		})}, o.Retryables...)
		o.Retryables = append(o.Retryables, retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return aws.UnknownTernary
			}
			code, status := errorCode(err)
			switch {
			case status == 429, code == "SlowDown", code == "TooManyRequests", code == "ServiceUnavailable", code == "InternalError":
				return aws.TrueTernary
			case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
				// A connection dropped before or while the response arrived.
				return aws.TrueTernary
			}
			return aws.UnknownTernary
		}))
	})
}

// countingRetryer counts retries: RetryDelay is asked once before each retry.
type countingRetryer struct {
	aws.RetryerV2
	n *atomic.Int64
}

func (c *countingRetryer) RetryDelay(attempt int, err error) (time.Duration, error) {
	c.n.Add(1)
	return c.RetryerV2.RetryDelay(attempt, err)
}
