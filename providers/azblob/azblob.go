// Package azblob is the provider for Azure Blob Storage
// (azblob://account/container/prefix/), on the native API through
// github.com/Azure/azure-sdk-for-go/sdk/storage/azblob.
//
// # Configuration
//
// providers.Config fields used: URL, Endpoint (a sovereign cloud's blob endpoint
// such as https://ACCOUNT.blob.core.usgovcloudapi.net, a private endpoint, or
// Azurite's path-style http://127.0.0.1:10000/ACCOUNT), Region (declared: see
// Region), PartSize (block size; default 16 MiB), EncryptionScope (every write
// names it, target only), Quarantine and Migration (soft deletes). Credentials, by
// name only:
//
//	account_key_env: an environment variable holding the storage account key
//	sas_token_env:   an environment variable holding a SAS token (with or without "?")
//
// Without either, azidentity's default chain (environment, workload identity,
// managed identity, Azure CLI, ...) signs requests with Microsoft Entra ID. The
// account in the URL must be the one the endpoint serves: a mismatch is refused at
// open, before any request.
//
// # Integrity
//
// Blobs up to the part size go up in one Put Blob with the MD5 of the bytes as
// Content-MD5 (Azure checks it and stores it). Larger blobs go up as a block list,
// four blocks in flight, their buffers bounded store-wide (Options.BufferBytes):
// each block is staged with its own transactional MD5 (checked by Azure), and the
// commit sets x-ms-blob-content-md5 to the whole-blob MD5 that ferry computed
// while reading, because Azure does not compute one for block lists. The caller's
// SHA-256 is checked locally before anything is committed (ErrChecksum, nothing
// stored); it stays ferry's own metadata (ferry-sha256), never a checksum the store
// vouches for, so verify re-reads. Stat, List and Open report the blob's Content-MD5
// when it has one; Open checks the bytes it streams against it and fails with
// ErrChecksum at the end of a corrupted body.
//
// # Deletes
//
// DeleteIf reads the blob's properties (a missing blob is ErrNotFound, never a
// success), then deletes with If-Match on the verified ETag; on a versioned account
// it then deletes exactly the verified version by its version id. SoftDelete on a
// versioned account deletes the base blob with If-Match, which keeps the verified
// version as a previous version (the handle is its version id); Restore copies that
// version back over the base blob, Purge deletes the version. Elsewhere the blob is
// copied server-side to the quarantine prefix (".ferry-quarantine/<migration>/" at
// the container root by default) and then deleted with If-Match. Blob soft delete,
// where the account has it, keeps deleted bytes recoverable by Azure for its
// retention days on top of that; Recoverability reports it for the certificate.
//
// A blob under an immutability policy or a legal hold cannot be deleted: the error
// wraps providers.ErrRetained and names the policy's mode and expiry or the hold.
package azblob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"golang.org/x/sync/semaphore"

	"github.com/ferrymigrate/ferry/providers"
)

// Scheme is the URL scheme this provider registers.
const Scheme = "azblob"

const (
	// DefaultPartSize is the block size when Config.PartSize is 0; blobs up to one
	// block are written with a single Put Blob.
	DefaultPartSize = 16 << 20
	// MinPartSize keeps block lists reasonable (Azure allows smaller blocks).
	MinPartSize = 1 << 20
	// MaxPartSize is Azure's largest block.
	MaxPartSize = 4000 << 20
	// MaxBlocks is Azure's largest committed block count; the block size grows to
	// stay under it.
	MaxBlocks = 50000
	// MaxBlobName is Azure's longest blob name, in characters.
	MaxBlobName = 1024
	// DefaultQuarantineRoot is where soft deletes go without versioning, under the
	// migration id.
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
	// MaxRetries bounds the retries of each request (default 5; -1 disables them).
	MaxRetries int
	// RetryDelay and MaxRetryDelay shape the exponential backoff (defaults 800ms, 30s).
	RetryDelay, MaxRetryDelay time.Duration
	// TryTimeout bounds one attempt (default 5 minutes).
	TryTimeout time.Duration
	// MinPartSize lowers the 1 MiB floor on Config.PartSize (tests).
	MinPartSize int64
	// ListPageSize is the page size of listings (default and maximum 5000).
	ListPageSize int32
	// BlockConcurrency is how many blocks of one upload are in flight (default 4).
	BlockConcurrency int
	// BufferBytes bounds the bytes this store holds in memory for blocks and
	// non-seekable single puts, across all uploads (default 4 part sizes).
	BufferBytes int64
	// Credential, when set, signs requests instead of what cfg.Credentials names.
	Credential azcore.TokenCredential
}

// Store is an Azure Blob container prefix. Safe for concurrent use.
type Store struct {
	svc        *service.Client
	cont       *container.Client
	httpClient *http.Client
	account    string
	container  string
	prefix     string // "" or ending in "/"
	name       string // site name, for messages
	endpoint   string // the service URL, without credentials
	azure      bool   // the endpoint is Azure's own (not an emulator or proxy)
	region     string // declared in the spec
	scope      string // encryption scope for writes
	partSize   int64
	pageSize   int32
	blockConc  int
	mem        *semaphore.Weighted // bytes of block buffers in memory
	memLimit   int64
	quarantine string // blob name prefix at the container root, ending in "/"
	reserved   string // quarantine relative to prefix when inside the root, else ""
	versioned  atomic.Bool
	// noStartFrom: the service refused List Blobs' startFrom once; ranges are
	// listed from the start of the prefix.
	noStartFrom atomic.Bool
	calls       atomic.Int64
	tries       atomic.Int64
	closeOnce   sync.Once
}

var (
	_ providers.Store              = (*Store)(nil)
	_ providers.ConditionalDeleter = (*Store)(nil)
	_ providers.SoftDeleter        = (*Store)(nil)
	_ providers.Regioner           = (*Store)(nil)
	_ providers.Featurer           = (*Store)(nil)
	_ providers.Retrier            = (*Store)(nil)
)

var (
	accountRE   = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	containerRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$`)
)

// shownURL is raw as a message may show it: without its query or fragment (where a
// pasted SAS token sits, spaces and all: a url allows neither anyway), and with any
// SAS parameter left in the rest redacted up to the next separator.
func shownURL(raw string) string {
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "?REDACTED"
	}
	return urlSigRE.ReplaceAllString(s, "${1}REDACTED")
}

var urlSigRE = regexp.MustCompile(`(?i)((?:^|[&/;])` + sasParams + `)[^&/]*`)

// ParseURL splits azblob://account/container/prefix. The prefix, when not empty,
// is made to end in "/": a site is a folder, and "users" must not also match
// "users-old/".
func ParseURL(raw string) (account, cont, prefix string, err error) {
	shown := shownURL(raw) // a SAS pasted into the url never reaches a message
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", "", "", fmt.Errorf("azblob: bad url: %w", err)
	}
	switch {
	case u.Scheme != Scheme:
		return "", "", "", fmt.Errorf("azblob: url %q: scheme is not azblob", shown)
	case u.User != nil:
		return "", "", "", fmt.Errorf("azblob: url: credentials do not belong in the url; use the site's credentials setting")
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "?"):
		return "", "", "", fmt.Errorf("azblob: url %q: query or fragment not allowed (a SAS token goes in the environment variable sas_token_env names)", shown)
	case u.Port() != "":
		return "", "", "", fmt.Errorf("azblob: url %q: a storage account has no port: put the server in endpoint", shown)
	}
	account = u.Host
	if !accountRE.MatchString(account) {
		return "", "", "", fmt.Errorf("azblob: url %q: %q is not a storage account name (3 to 24 lower-case letters and digits)", shown, account)
	}
	cont, prefix, _ = strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !containerRE.MatchString(cont) {
		return "", "", "", fmt.Errorf("azblob: url %q: %q is not a container name (3 to 63 lower-case letters, digits and single hyphens)", shown, cont)
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if err := checkName(prefix, true); err != nil {
		return "", "", "", fmt.Errorf("azblob: url %q: prefix %q: %s", shown, prefix, err)
	}
	return account, cont, prefix, nil
}

// serviceURL returns the blob service URL for account: Azure's public cloud, or
// the endpoint the spec names, which must serve that account (host-style: the first
// label of the host; path-style, as Azurite: the first path segment).
func serviceURL(account, endpoint string) (svcURL string, azure bool, err error) {
	if endpoint == "" {
		return "https://" + account + ".blob.core.windows.net/", true, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return "", false, fmt.Errorf("azblob: endpoint %q: want http(s)://host[:port][/account]", redactString(endpoint))
	}
	if u.RawQuery != "" {
		return "", false, errors.New("azblob: endpoint: a query (a SAS token?) does not belong in the endpoint; name it with sas_token_env")
	}
	host := strings.ToLower(u.Hostname())
	path := strings.Trim(u.Path, "/")
	isIP := net.ParseIP(strings.Trim(host, "[]")) != nil
	switch {
	case path != "":
		if strings.Contains(path, "/") {
			return "", false, fmt.Errorf("azblob: endpoint %q: a path-style endpoint names the account only: http(s)://host[:port]/%s", endpoint, account)
		}
		if path != account {
			return "", false, fmt.Errorf("azblob: endpoint %q serves storage account %q, but the url names account %q: fix the url or the endpoint", endpoint, path, account)
		}
	case isIP || host == "localhost":
		return "", false, fmt.Errorf("azblob: endpoint %q names no storage account: for Azurite and other path-style endpoints use %s://%s/%s", endpoint, u.Scheme, u.Host, account)
	default:
		first, _, _ := strings.Cut(host, ".")
		if first != account {
			return "", false, fmt.Errorf("azblob: endpoint %q serves storage account %q, but the url names account %q: fix the url or the endpoint", endpoint, first, account)
		}
	}
	azure = strings.HasSuffix(host, ".blob.core.windows.net") || strings.HasSuffix(host, ".blob.core.usgovcloudapi.net") ||
		strings.HasSuffix(host, ".blob.core.chinacloudapi.cn") || strings.HasSuffix(host, ".blob.storage.azure.net")
	return strings.TrimSuffix(u.Scheme+"://"+u.Host+"/"+path, "/") + "/", azure, nil
}

// New opens the store cfg names. It lists one blob of the container, so a missing
// container, a wrong key or an endpoint that does not answer fails here.
func New(ctx context.Context, cfg providers.Config, opts Options) (*Store, error) {
	account, cont, prefix, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, siteErr(cfg.Name, err)
	}
	svcURL, azure, err := serviceURL(account, cfg.Endpoint)
	if err != nil {
		return nil, siteErr(cfg.Name, err)
	}
	s := &Store{account: account, container: cont, prefix: prefix, name: cfg.Name, endpoint: svcURL, azure: azure,
		region: cfg.Region, scope: cfg.EncryptionScope, partSize: cfg.PartSize, pageSize: opts.ListPageSize}
	minPart := int64(MinPartSize)
	if opts.MinPartSize > 0 {
		minPart = opts.MinPartSize
	}
	switch {
	case s.partSize == 0:
		s.partSize = DefaultPartSize
	case s.partSize < minPart:
		return nil, siteErr(cfg.Name, fmt.Errorf("azblob: part size %d is below the minimum of %d bytes", s.partSize, minPart))
	case s.partSize > MaxPartSize:
		return nil, siteErr(cfg.Name, fmt.Errorf("azblob: part size %d is above Azure's largest block of %d bytes", s.partSize, int64(MaxPartSize)))
	}
	if s.pageSize <= 0 || s.pageSize > 5000 {
		s.pageSize = 5000
	}
	s.blockConc = opts.BlockConcurrency
	if s.blockConc <= 0 {
		s.blockConc = 4
	}
	s.memLimit = opts.BufferBytes
	if s.memLimit <= 0 {
		s.memLimit = 4 * s.partSize
	}
	s.memLimit = max(s.memLimit, s.partSize)
	s.mem = semaphore.NewWeighted(s.memLimit)
	if err := s.setQuarantine(cfg); err != nil {
		return nil, siteErr(cfg.Name, err)
	}
	s.httpClient = newHTTPClient()
	copts := s.clientOptions(opts)
	switch {
	case opts.Credential != nil:
		s.svc, err = service.NewClient(svcURL, opts.Credential, copts)
	default:
		s.svc, err = s.newServiceClient(svcURL, cfg, copts)
	}
	if err != nil {
		return nil, siteErr(cfg.Name, err)
	}
	s.cont = s.svc.NewContainerClient(cont)
	// One listing of one blob: what every phase needs at least (a container-scoped
	// SAS cannot read the container's properties).
	one := int32(1)
	probe := &container.ListBlobsFlatOptions{MaxResults: &one}
	if prefix != "" {
		probe.Prefix = &s.prefix
	}
	// A server that does not answer at all is told quickly, not after the full backoff.
	pctx := ctx
	if opts.MaxRetries >= 0 {
		pr := copts.Retry
		pr.MaxRetries = min(pr.MaxRetries, 2)
		pctx = policy.WithRetryOptions(ctx, pr)
	}
	if _, err := s.cont.NewListBlobsFlatPager(probe).NextPage(pctx); err != nil {
		return nil, siteErr(cfg.Name, s.openFail(err))
	}
	return s, nil
}

// newServiceClient builds the client with the credential cfg.Credentials names.
func (s *Store) newServiceClient(svcURL string, cfg providers.Config, copts *service.ClientOptions) (*service.Client, error) {
	cred := cfg.Credentials
	for k := range cred {
		switch k {
		case "account_key_env", "sas_token_env":
		default:
			return nil, fmt.Errorf("azblob: unknown credentials key %q (want account_key_env or sas_token_env, or none for azidentity's default chain)", k)
		}
	}
	keyEnv, sasEnv := cred["account_key_env"], cred["sas_token_env"]
	switch {
	case keyEnv != "" && sasEnv != "":
		return nil, errors.New("azblob: credentials: use an account key or a SAS token, not both")
	case keyEnv != "":
		key, ok := os.LookupEnv(keyEnv)
		if !ok || strings.TrimSpace(key) == "" {
			return nil, fmt.Errorf("azblob: account_key_env names %s, which is not set", keyEnv)
		}
		kc, err := service.NewSharedKeyCredential(s.account, strings.TrimSpace(key))
		if err != nil {
			// The SDK's message may quote the key; never pass it on.
			return nil, fmt.Errorf("azblob: the account key in %s is not a base64 storage account key", keyEnv)
		}
		return service.NewClientWithSharedKeyCredential(svcURL, kc, copts)
	case sasEnv != "":
		sas, ok := os.LookupEnv(sasEnv)
		sas = strings.TrimPrefix(strings.TrimSpace(sas), "?")
		if !ok || sas == "" {
			return nil, fmt.Errorf("azblob: sas_token_env names %s, which is not set", sasEnv)
		}
		if _, err := url.ParseQuery(sas); err != nil || !strings.Contains(sas, "sig=") {
			return nil, fmt.Errorf("azblob: the SAS token in %s is not a SAS query string (sv=...&sig=...)", sasEnv)
		}
		return service.NewClientWithNoCredential(svcURL+"?"+sas, copts)
	default:
		tc, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("azblob: no account_key_env or sas_token_env, and azidentity's default credential chain is not usable: %w", err)
		}
		return service.NewClient(svcURL, tc, copts)
	}
}

// clientOptions sets the retry policy, the transport and a retry counter.
func (s *Store) clientOptions(o Options) *service.ClientOptions {
	retries := o.MaxRetries
	if retries == 0 {
		retries = 5
	}
	delay, most := o.RetryDelay, o.MaxRetryDelay
	if delay <= 0 {
		delay = 800 * time.Millisecond
	}
	if most <= 0 {
		most = 30 * time.Second
	}
	try := o.TryTimeout
	if try <= 0 {
		try = 5 * time.Minute
	}
	copts := &service.ClientOptions{}
	copts.Retry = policy.RetryOptions{MaxRetries: int32(retries), RetryDelay: delay, MaxRetryDelay: most, TryTimeout: try,
		StatusCodes: []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}}
	copts.Transport = s.httpClient
	copts.PerCallPolicies = []policy.Policy{countPolicy{&s.calls}, ownBody{}}
	copts.PerRetryPolicies = []policy.Policy{countPolicy{&s.tries}, freshBody{}, requestIDPolicy{}}
	// Never log request URLs or headers (a SAS token rides in the query).
	copts.Logging = policy.LogOptions{IncludeBody: false}
	copts.Telemetry.Disabled = true
	return copts
}

// requestIDPolicy notes the id the service gave each try (x-ms-request-id, which
// StorageBlobLogs carries as CorrelationId) for ferry's journal of its own access.
type requestIDPolicy struct{}

func (requestIDPolicy) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	if resp != nil {
		providers.NoteRequestID(req.Raw().Context(), resp.Header.Get("x-ms-request-id"))
	}
	return resp, err
}

type countPolicy struct{ n *atomic.Int64 }

func (c countPolicy) Do(req *policy.Request) (*http.Response, error) {
	c.n.Add(1)
	return req.Next()
}

// Request bodies and retries. net/http may still be reading a request's body after
// RoundTrip returned (a server that answered before reading it, as a throttling
// proxy does), while azcore's retry rewinds that same body for the next try: two
// goroutines on one reader. So every try reads its own reader over the body's bytes:
// ownBody (once per call, before any try) makes a body readable at offsets, and
// freshBody (per try) gives the try a fresh section reader over it.

type bodyAt interface {
	io.ReaderAt
	Size() int64
}

type ownBody struct{}

func (ownBody) Do(req *policy.Request) (*http.Response, error) {
	if b := req.Body(); b != nil {
		if _, ok := b.(bodyAt); !ok {
			ct := req.Raw().Header.Get("Content-Type")
			if _, err := b.Seek(0, io.SeekStart); err == nil && ct != "" {
				buf, err := io.ReadAll(b)
				if err != nil {
					return nil, err
				}
				if err := req.SetBody(nopCloser{bytes.NewReader(buf)}, ct); err != nil {
					return nil, err
				}
			}
		}
	}
	return req.Next()
}

type freshBody struct{}

func (freshBody) Do(req *policy.Request) (*http.Response, error) {
	if b, ok := req.Body().(bodyAt); ok && req.Raw().Body != nil && req.Raw().Body != http.NoBody {
		req.Raw().Body = io.NopCloser(io.NewSectionReader(b, 0, b.Size()))
	}
	return req.Next()
}

// Retries returns how many requests were sent again after a failure.
func (s *Store) Retries() int64 { return max(s.tries.Load()-s.calls.Load(), 0) }

func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 128
	t.MaxIdleConns = 256
	t.ResponseHeaderTimeout = 2 * time.Minute
	return &http.Client{Transport: t}
}

func siteErr(name string, err error) error {
	if name == "" {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
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
			return fmt.Errorf("azblob: migration id %q cannot name a quarantine prefix", mig)
		}
		q = DefaultQuarantineRoot + mig + "/"
	}
	q = strings.TrimPrefix(q, "/")
	if !strings.HasSuffix(q, "/") {
		q += "/"
	}
	if err := checkName(q, true); err != nil {
		return fmt.Errorf("azblob: quarantine prefix %q: %s", q, err)
	}
	if s.prefix != "" && strings.HasPrefix(s.prefix, q) {
		return fmt.Errorf("azblob: the site prefix %q lies inside the quarantine prefix %q", s.prefix, q)
	}
	s.quarantine = q
	if rel, ok := strings.CutPrefix(q, s.prefix); ok {
		s.reserved = rel
	}
	return nil
}

// checkName applies ferry's key rules to a blob name (or a prefix). Azure also
// refuses names ending in "." or "/" segments of dots only on some paths and
// treats "\" as "/" in its portal, but stores both as written; ferry refuses only
// what cannot round-trip.
func checkName(name string, isPrefix bool) error {
	switch {
	case !isPrefix && name == "":
		return errors.New("empty key")
	case strings.HasPrefix(name, "/"):
		return errors.New("absolute key")
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("NUL byte")
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8 (blob names are UTF-8)")
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%q segment", seg)
		}
	}
	return nil
}

// blobName returns the full blob name for key, or an ErrInvalidKey error.
func (s *Store) blobName(op, key string) (string, error) {
	if err := checkName(key, false); err != nil {
		return "", fmt.Errorf("azblob: %s %q: %s: %w", op, key, err, providers.ErrInvalidKey)
	}
	if s.reserved != "" && strings.HasPrefix(key, s.reserved) {
		return "", fmt.Errorf("azblob: %s %q: keys under %q are reserved for the quarantine: %w", op, key, s.reserved, providers.ErrInvalidKey)
	}
	name := s.prefix + key
	if utf8.RuneCountInString(name) > MaxBlobName {
		return "", fmt.Errorf("azblob: %s %q: blob name is %d characters, Azure allows %d: %w", op, key, utf8.RuneCountInString(name), MaxBlobName, providers.ErrInvalidKey)
	}
	return name, nil
}

// URI names key for reports.
func (s *Store) URI(key string) string { return s.uriOf(s.prefix + key) }

func (s *Store) uriOf(name string) string {
	return "azblob://" + s.account + "/" + s.container + "/" + name
}

// Features: object-store shapes. Azure reports an MD5, never a SHA-256. A GET
// streams one version of a blob and names it (ETag) in its response.
func (s *Store) Features() providers.Features {
	return providers.Features{DirMarkers: true, PrefixAndChild: true, SnapshotReads: true}
}

// Region returns the region the spec declares for the account. Azure's data plane
// does not tell a storage account's location (only the management plane does, with
// other roles), so a store without a declared region answers ErrNotSupported and
// residency rests on the spec's region, checked at parse time.
func (s *Store) Region(context.Context) (string, error) {
	if s.region == "" {
		return "", fmt.Errorf("azblob: the storage account's region is not visible on the blob endpoint; declare it with region: %w", providers.ErrNotSupported)
	}
	return s.region, nil
}

// Container returns the account, container and prefix.
func (s *Store) Container() (account, cont, prefix string) { return s.account, s.container, s.prefix }

// QuarantinePrefix returns where soft deletes are kept without versioning.
func (s *Store) QuarantinePrefix() string { return s.quarantine }

// Close releases idle connections.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.httpClient.CloseIdleConnections() })
	return nil
}

// blob returns a client for one blob name.
func (s *Store) blob(name string) *blob.Client { return s.cont.NewBlobClient(name) }
