package spec

import (
	"errors"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// location is a store URL taken apart, for overlap checks and the digest.
type location struct {
	scheme    string // s3, oci, gs, azblob, file
	endpoint  string // normalised endpoint ("" for the default)
	region    string
	namespace string // oci: the namespace; azblob: the storage account
	bucket    string // s3, oci, gs: the bucket; azblob: the container
	prefix    string // object stores: the key prefix as written, no leading "/"
	dir       string // file: absolute, cleaned
	relative  string // file: the cleaned relative path when written file://./x
	resolved  string // the URL providers get
	canonical string // a normal form of the URL as written (digest)
}

var (
	bucketRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)
	namespaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	// gsBucketRE: Cloud Storage bucket names (lower case, digits, '-', '_', '.').
	gsBucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)
	// accountRE and containerRE: Azure storage account and container names.
	accountRE   = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	containerRE = regexp.MustCompile(`^(\$root|[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62})$`)
)

const schemeHelp = "s3://bucket/prefix/, oci://namespace/bucket/prefix/, gs://bucket/prefix/, azblob://account/container/prefix/ or file:///dir"

// parseLocation checks a store URL and takes it apart. dir resolves relative file
// URLs. The returned error never repeats the URL (it may hold a secret).
func parseLocation(raw, dir string) (location, error) {
	var loc location
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return loc, errors.New("must not be empty")
	}
	if strings.ContainsAny(raw, "\x00\r\n\t") {
		return loc, errors.New("must not contain control characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return loc, errors.New("is not a valid URL: " + ue.Err.Error())
		}
		return loc, errors.New("is not a valid URL")
	}
	loc.scheme = strings.ToLower(u.Scheme)
	switch loc.scheme {
	case "s3", "oci", "gs", "azblob", "file":
	case "":
		return loc, errors.New("needs a scheme: " + schemeHelp)
	default:
		return loc, errors.New("scheme must be s3://, oci://, gs://, azblob:// or file://")
	}
	if u.User != nil {
		return loc, errors.New("inline secret refused: the URL carries user info (user:password@); name credentials under credentials instead")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return loc, errors.New("must not have a query (?...) or fragment (#...)")
	}
	if u.Opaque != "" {
		if loc.scheme == "file" {
			return loc, errors.New("write file:///absolute/dir, or file://./dir for a folder relative to the spec")
		}
		return loc, errors.New("must be " + loc.scheme + "://...")
	}
	switch loc.scheme {
	case "s3":
		if u.Host == "" {
			return loc, errors.New("needs a bucket: s3://bucket/prefix/")
		}
		if u.Port() != "" {
			return loc, errors.New("a bucket has no port: put the server in endpoint")
		}
		if !bucketRE.MatchString(u.Host) {
			return loc, errors.New("bucket name must be letters, digits, '.', '_' or '-'")
		}
		loc.bucket = u.Host
		loc.prefix = strings.TrimPrefix(u.Path, "/")
		if err := checkPrefix(loc.prefix); err != nil {
			return loc, err
		}
		loc.resolved = raw
		loc.canonical = "s3://" + loc.bucket + "/" + loc.prefix
	case "oci":
		if u.Host == "" {
			return loc, errors.New("needs a namespace and a bucket: oci://namespace/bucket/prefix/")
		}
		if u.Port() != "" {
			return loc, errors.New("a namespace has no port: put the server in endpoint")
		}
		if !namespaceRE.MatchString(u.Host) {
			return loc, errors.New("namespace must be letters, digits, '.', '_' or '-'")
		}
		rest := strings.TrimPrefix(u.Path, "/")
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return loc, errors.New("needs a bucket: oci://namespace/bucket/prefix/")
		}
		if !bucketRE.MatchString(bucket) {
			return loc, errors.New("bucket name must be letters, digits, '.', '_' or '-'")
		}
		if err := checkPrefix(prefix); err != nil {
			return loc, err
		}
		loc.namespace, loc.bucket, loc.prefix = u.Host, bucket, prefix
		loc.resolved = raw
		loc.canonical = "oci://" + loc.namespace + "/" + loc.bucket + "/" + loc.prefix
	case "gs":
		if u.Host == "" {
			return loc, errors.New("needs a bucket: gs://bucket/prefix/")
		}
		if u.Port() != "" {
			return loc, errors.New("a bucket has no port: put the server in endpoint")
		}
		if !gsBucketRE.MatchString(u.Host) || strings.Contains(u.Host, "..") {
			return loc, errors.New("bucket name must be 3 to 222 lower-case letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
		}
		loc.bucket = u.Host
		loc.prefix = strings.TrimPrefix(u.Path, "/")
		if err := checkPrefix(loc.prefix); err != nil {
			return loc, err
		}
		loc.resolved = raw
		loc.canonical = "gs://" + loc.bucket + "/" + loc.prefix
	case "azblob":
		if u.Host == "" {
			return loc, errors.New("needs a storage account and a container: azblob://account/container/prefix/")
		}
		if u.Port() != "" {
			return loc, errors.New("a storage account has no port: put the server in endpoint")
		}
		if !accountRE.MatchString(u.Host) {
			return loc, errors.New("storage account name must be 3 to 24 lower-case letters and digits")
		}
		rest := strings.TrimPrefix(u.Path, "/")
		container, prefix, _ := strings.Cut(rest, "/")
		if container == "" {
			return loc, errors.New("needs a container: azblob://account/container/prefix/")
		}
		if !containerRE.MatchString(container) {
			return loc, errors.New("container name must be 3 to 63 lower-case letters, digits and single hyphens, starting with a letter or digit")
		}
		if err := checkPrefix(prefix); err != nil {
			return loc, err
		}
		loc.namespace, loc.bucket, loc.prefix = u.Host, container, prefix
		loc.resolved = raw
		loc.canonical = "azblob://" + loc.namespace + "/" + loc.bucket + "/" + loc.prefix
	case "file":
		p := u.Path
		switch u.Host {
		case "", "localhost":
			if p == "" {
				return loc, errors.New("needs a directory: file:///absolute/dir or file://./dir")
			}
			loc.dir = filepath.Clean(filepath.FromSlash(p))
			loc.canonical = "file://" + path.Clean(p)
		case ".", "..":
			rel := path.Clean(u.Host + p)
			loc.relative = rel
			loc.dir = filepath.Join(dir, filepath.FromSlash(rel))
			if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
				loc.canonical = "file://" + rel
			} else {
				loc.canonical = "file://./" + rel
			}
		default:
			return loc, errors.New("file URLs name a local directory: file:///absolute/dir, or file://./dir relative to the spec (a host is not allowed)")
		}
		if !filepath.IsAbs(loc.dir) {
			return loc, errors.New("needs an absolute directory: file:///absolute/dir, or file://./dir relative to the spec")
		}
		if filepath.Dir(loc.dir) == loc.dir {
			return loc, errors.New("the filesystem root cannot be a store")
		}
		loc.resolved = (&url.URL{Scheme: "file", Path: filepath.ToSlash(loc.dir)}).String()
	}
	return loc, nil
}

// checkPrefix refuses prefixes with "." or ".." segments or empty segments (a
// trailing "/" is fine).
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	segs := strings.Split(strings.TrimSuffix(prefix, "/"), "/")
	for _, s := range segs {
		switch s {
		case "":
			return errors.New("prefix must not have empty segments (//)")
		case ".", "..":
			return errors.New("prefix must not have . or .. segments")
		}
	}
	return nil
}

// parseEndpoint checks an endpoint URL and returns its normal form for comparisons.
func parseEndpoint(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return "", errors.New("is not a valid URL: " + ue.Err.Error())
		}
		return "", errors.New("is not a valid URL")
	}
	if u.User != nil {
		return "", errors.New("inline secret refused: the endpoint carries user info (user:password@); name credentials under credentials instead")
	}
	s := strings.ToLower(u.Scheme)
	if s != "http" && s != "https" {
		return "", errors.New("must be an http:// or https:// URL")
	}
	if u.Host == "" {
		return "", errors.New("needs a host: https://host[:port]")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", errors.New("must not have a query (?...) or fragment (#...)")
	}
	return s + "://" + strings.ToLower(u.Host) + strings.TrimRight(u.Path, "/"), nil
}

// overlaps reports whether two stores share any object: the same store and one root
// equal to, inside or around the other.
func overlaps(a, b location) bool {
	if a.scheme != b.scheme || a.scheme == "" {
		return false
	}
	switch a.scheme {
	case "file":
		return a.dir == b.dir || within(a.dir, b.dir) || within(b.dir, a.dir)
	case "s3", "oci", "gs", "azblob":
		if a.endpoint != b.endpoint || a.namespace != b.namespace || a.bucket != b.bucket {
			return false
		}
		// OCI buckets live in a region; two regions on default endpoints are two stores.
		if a.scheme == "oci" && a.endpoint == "" && a.region != "" && b.region != "" && !strings.EqualFold(a.region, b.region) {
			return false
		}
		// Prefixes are raw key prefixes: "users" also lists "users2/...".
		return strings.HasPrefix(a.prefix, b.prefix) || strings.HasPrefix(b.prefix, a.prefix)
	}
	return false
}

// within reports whether dir lies strictly inside root.
func within(dir, root string) bool {
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return false
	}
	return rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}
