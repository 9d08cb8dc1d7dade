// Package providers defines the one interface every store (file, s3, oci) implements,
// the portable errors they map to, and the optional capabilities a store may have,
// which the pipeline resolves once per store into a Caps value (CapsOf) instead of
// type-asserting at every call.
//
// # The contract
//
// A Store is rooted at a URL (file:///dir, s3://bucket/prefix/, oci://ns/bucket/prefix/).
// Every key a Store takes or returns is relative to that root: the store's prefix is
// added and removed by the store, never by the caller.
//
//   - Keys are exact byte strings. No normalisation of any kind: the NFC and NFD spellings
//     of "é" are two keys, "a/" and "a-" and "a b" and "A" are all distinct, and a key
//     round-trips through List, Stat, Open, Put and Delete unchanged.
//   - Zero-byte objects are objects.
//   - List calls fn exactly once for every object under the root, in no particular order,
//     and returns nil only if the listing was complete. A page that fails, a listing that
//     claims to be complete while cut short, or a continuation token that repeats is an
//     error: a partial listing is never reported as a success (DESIGN.md I6). An error
//     returned by fn stops the listing and is returned (wrapped).
//   - A key the store cannot represent, or one that would leave the root (".." segments,
//     an absolute path, a NUL byte on a file store), is rejected with an error wrapping
//     ErrInvalidKey; it never touches anything outside the root.
//   - Put is atomic: readers see either the old object or the whole new one, never a
//     partial write under the final key. It accepts a non-seekable reader (the pipeline
//     streams large objects); a seekable one lets the store retry. When PutOptions
//     carries a SHA256 (or CRC32C) the store checks the bytes against it and stores
//     nothing on a mismatch (ErrChecksum). It returns the stored Object as the store
//     reports it. Where a key and a key below it cannot coexist (Features.PrefixAndChild
//     false), the collision is ErrAlreadyExists.
//   - Delete of an absent key returns ErrNotFound: absence is never reported as a
//     successful delete.
//   - Errors wrap the portable errors below where one applies, so callers use errors.Is.
//
// Retry, rate limiting, fault injection and dry run are decorators around a Store, each
// with Unwrap. A decorator implements an optional capability exactly when the store it
// wraps does (minus what it deliberately blocks, said in its code), so that its
// capabilities, by type assertion or by CapsOf, are the wrapped store's.
package providers

import (
	"context"
	"errors"
	"io"
	"time"
)

// Portable errors. Each provider maps its own error shapes to these in one place.
var (
	ErrNotFound        = errors.New("not found")
	ErrPrecondition    = errors.New("precondition failed: object changed")
	ErrInvalidKey      = errors.New("invalid key")
	ErrPermission      = errors.New("permission denied")
	ErrChecksum        = errors.New("checksum mismatch")
	ErrIncompleteList  = errors.New("listing incomplete")
	ErrNotSupported    = errors.New("not supported by this store")
	ErrAlreadyExists   = errors.New("already exists")
	ErrRegionResidency = errors.New("region outside residency policy")

	// Errors that retrying cannot fix, for any key of the store (see Fatal).
	// ErrAccessDenied and ErrCredentials are also ErrPermission.
	ErrAccessDenied error = &subErr{"access denied", ErrPermission}
	ErrCredentials  error = &subErr{"credentials rejected", ErrPermission}
	ErrNoBucket           = errors.New("bucket or container does not exist")
	ErrNoSpace            = errors.New("no space left on the store")
	ErrReadOnly           = errors.New("the store is read-only")

	// ErrRetained: the store refuses to delete this object now because a retention
	// policy, object lock, immutability policy or hold protects it. The wrapping error
	// names the reason. Retrying does not help before the retention ends, so the
	// pipeline reports the replica as undeletable and never counts it as deleted.
	ErrRetained = errors.New("retained by the store: retention policy or hold")
)

// subErr is a portable error that is also a more general one.
type subErr struct {
	msg    string
	parent error
}

func (e *subErr) Error() string        { return e.msg }
func (e *subErr) Is(target error) bool { return target == e.parent }

// Fatal reports whether err is one that retrying cannot fix and that concerns the
// store as a whole, not one key: credentials or a signature the store rejects, access
// denied, a missing bucket or container, a full or read-only disk. A phase stops at
// the first one instead of retrying every record. A plain ErrPermission (one file a
// file store may not read) is not fatal: it concerns that key only.
func Fatal(err error) bool {
	return errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrCredentials) ||
		errors.Is(err, ErrNoBucket) || errors.Is(err, ErrNoSpace) || errors.Is(err, ErrReadOnly)
}

type listSkipKey struct{}

// WithListSkip returns a context under which a listing may leave out an entry it
// cannot represent as an object (a symlink, a FIFO at a file store) when skip says
// its key is not wanted anyway (records.exclude): such an entry would never be a
// record, so leaving it out keeps the listing complete. Regular objects are listed
// regardless; an entry that cannot be an object and is not skipped still fails the
// listing.
func WithListSkip(ctx context.Context, skip func(key string) bool) context.Context {
	return context.WithValue(ctx, listSkipKey{}, skip)
}

// ListSkipped reports whether the caller of a listing under ctx does not want key.
func ListSkipped(ctx context.Context, key string) bool {
	skip, _ := ctx.Value(listSkipKey{}).(func(string) bool)
	return skip != nil && skip(key)
}

// Checksums a store reports for an object. Each field is lowercase hex (CRC32C: the 8
// hex digits of the big-endian Castagnoli value), or empty when
// the store does not report it or it cannot be trusted as a content checksum (an S3
// multipart ETag, an OCI multipart MD5, an SSE-KMS ETag are not content MD5s).
type Checksums struct {
	SHA256 string `json:"sha256,omitempty"`
	MD5    string `json:"md5,omitempty"`
	CRC32C string `json:"crc32c,omitempty"`
}

// Object describes one stored object.
type Object struct {
	Key     string    // relative to the store's root
	Size    int64     // bytes
	ETag    string    // opaque token naming this exact content version; used for conditional ops
	Version string    // version id in a versioned bucket, else empty
	ModTime time.Time // as the store reports it
	// Checksums the store itself reports and vouches for (empty fields when none).
	Checksums Checksums
	Metadata  map[string]string
}

// SameVersion reports whether two observations of a key name the same stored bytes,
// by the strongest identity both carry (version id, then ETag, then size+mtime).
func (o Object) SameVersion(p Object) bool {
	if o.Size != p.Size {
		return false
	}
	if o.Version != "" && p.Version != "" {
		return o.Version == p.Version && (o.ETag == "" || p.ETag == "" || o.ETag == p.ETag)
	}
	if o.ETag != "" && p.ETag != "" {
		return o.ETag == p.ETag
	}
	return o.ModTime.Equal(p.ModTime)
}

// PutOptions tell the store what to check on upload and what to attach.
type PutOptions struct {
	// SHA256 is the hex SHA-256 the caller computed of the bytes; a store that can make
	// the server check it (x-amz-checksum-sha256, opc-content-sha256) sends it.
	SHA256 string
	// CRC32C is the hex CRC32C (Castagnoli) of the bytes, for multipart checks.
	CRC32C string
	// Metadata is stored with the object (source site, source key, sha256).
	Metadata map[string]string
}

// Store is the core interface. Implementations are safe for concurrent use.
type Store interface {
	// URI names key in this store, for reports (scheme://root/key).
	URI(key string) string
	// List calls fn once per object under the root; nil only when complete.
	List(ctx context.Context, fn func(Object) error) error
	// Stat returns the object's current description, or ErrNotFound.
	Stat(ctx context.Context, key string) (Object, error)
	// Open returns the object's bytes and the description of the version being read.
	Open(ctx context.Context, key string) (io.ReadCloser, Object, error)
	// Put writes size bytes from r under key atomically and returns the stored object.
	// r may be an io.Seeker; stores that retry re-read it from the start.
	Put(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) (Object, error)
	// Delete removes key unconditionally. The pipeline never calls it on a replica:
	// replicas are removed with ConditionalDeleter.
	Delete(ctx context.Context, key string) error
	// Close releases resources.
	Close() error
}

// ConditionalDeleter deletes key only if it is still exactly the version expect
// describes (S3/OCI If-Match on the ETag; file: size, mtime and inode unchanged).
// When expect.Checksums.SHA256 is set (the bytes the caller proved), a store whose
// version token is not derived from the content (file: a rewrite in place can keep
// size, mtime and inode) reads the bytes again and refuses unless they hash to it.
// It returns an error wrapping ErrPrecondition if the object changed, and ErrNotFound
// if it is already gone: a delete of something absent is never reported as a success.
type ConditionalDeleter interface {
	DeleteIf(ctx context.Context, key string, expect Object) error
}

// SoftDeleter removes key from view but keeps its bytes recoverable at the same site
// (a versioned delete marker, or a quarantine prefix/dir) until Purge.
// SoftDelete is conditional like DeleteIf and returns a handle naming the kept bytes.
//
// The handle is a deterministic function of key and expect, and SoftHandle computes it
// without touching the store: a caller that crashed between SoftDelete and recording
// its outcome finds the kept bytes again from what it recorded before the call.
type SoftDeleter interface {
	SoftHandle(key string, expect Object) string
	SoftDelete(ctx context.Context, key string, expect Object) (handle string, err error)
	// Restore puts the kept bytes back under key; ErrAlreadyExists if key is taken.
	Restore(ctx context.Context, key, handle string) error
	// Purge removes the kept bytes for good. Purging an already purged handle returns ErrNotFound.
	Purge(ctx context.Context, key, handle string) error
	// SoftExists reports whether the kept bytes named by handle are still there.
	SoftExists(ctx context.Context, key, handle string) (bool, error)
}

// RangeLister lists part of a store, so that many workers can enumerate one huge
// site together, each range resumable from the last key it listed.
//
// ListRange calls fn once for every object whose key k satisfies after < k <= through
// (through "" has no upper bound), in ascending byte order of keys, and returns nil
// only if that part of the listing was complete (as List). A store that cannot list
// a range in key order in its current configuration returns ErrNotSupported.
//
// SplitKeys returns keys that divide the store's key space into parts of roughly
// similar size, from one cheap listing of its first level (S3: the common prefixes
// under the root), in ascending order; none when the store cannot tell, and
// ErrNotSupported when it cannot list by range in its current configuration. A store
// that refuses ranges does so before listing anything.
type RangeLister interface {
	ListRange(ctx context.Context, after, through string, fn func(Object) error) error
	SplitKeys(ctx context.Context, parts int) ([]string, error)
}

// UncheckedOpener is implemented by stores whose Open checks the bytes against the
// checksum the store holds while they are read (S3 with checksum mode). OpenUnchecked
// is Open without that check, for a caller that hashes every byte itself and compares
// the result with the returned Object's Checksums: the same proof without hashing the
// bytes twice. It is a read capability but is asserted on the store itself, so a
// decorator that must see every read (fault injection) is never bypassed.
type UncheckedOpener interface {
	OpenUnchecked(ctx context.Context, key string) (io.ReadCloser, Object, error)
}

// Versioner is implemented by stores whose buckets can keep more than one version
// of a key (S3 and OCI bucket versioning, GCS object versioning, Azure blob
// versioning). On such a site every version a user had is user data.
type Versioner interface {
	// Versioning reports whether the bucket keeps (or may hold) older versions:
	// versioning enabled, or suspended after having been enabled.
	Versioning(ctx context.Context) (bool, error)
	// Versions returns every stored version of key that is not a delete marker,
	// newest first, each with Version set; the current one first if the key exists.
	Versions(ctx context.Context, key string) ([]Object, error)
}

// Recoverability says whether objects deleted from a store stay recoverable by the
// provider (a bucket soft-delete policy, account soft delete, versioning), and for how
// long, so that the certificate can state it.
type Recoverability struct {
	Recoverable bool          `json:"recoverable"`
	Mechanism   string        `json:"mechanism,omitempty"` // "soft delete policy", "blob soft delete", ...
	Retention   time.Duration `json:"retention,omitempty"` // 0 with Recoverable: until removed by hand
}

// Recoverer is implemented by stores that can tell their Recoverability.
type Recoverer interface {
	Recoverability(ctx context.Context) (Recoverability, error)
}

// Regioner reports the region the store actually lives in, for residency checks.
type Regioner interface {
	Region(ctx context.Context) (string, error)
}

// Retrier is implemented by stores that retry requests themselves (throttling, 5xx,
// dropped connections) and count them, so status can report them.
type Retrier interface {
	Retries() int64
}

// Features a store declares to the conformance suite and the pipeline.
type Features struct {
	// DirMarkers: keys ending in "/" are ordinary objects (object stores); a file store
	// rejects them with ErrInvalidKey.
	DirMarkers bool
	// PrefixAndChild: "a" and "a/b" may both exist (false on a file store).
	PrefixAndChild bool
	// TrustedSHA256: Stat/List report a SHA-256 the pipeline may trust without re-reading.
	TrustedSHA256 bool
	// SnapshotReads: Open returns the bytes of exactly the version its Object
	// describes, whole, even while the key is overwritten or deleted during the read
	// (an S3 or OCI GET streams one version; mem hands out immutable bytes). A read
	// can fail then, but it never mixes versions. Copy trusts Open's own description
	// of what it read and needs no second look at the source; a store without it (a
	// file can be rewritten in place under a reader) is stat'ed again after the read.
	// On an object store that second look could not see more than the read's own
	// response: it compares ETags, and a write through the store's API makes a new
	// one, while a write behind the API (a gateway's files changed in place) keeps
	// it, so neither the GET nor a HEAD would tell. Verify compares checksums later.
	SnapshotReads bool
}

// Featurer is implemented by stores that declare Features.
type Featurer interface {
	Features() Features
}

// FeaturesOf returns s's features, unwrapping decorators.
func FeaturesOf(s Store) Features {
	for s != nil {
		if f, ok := s.(Featurer); ok {
			return f.Features()
		}
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	return Features{}
}

// As finds the first store in s's decorator chain (following Unwrap) that implements
// T. Use it for read-only capabilities (Regioner, Featurer). Capabilities that write
// (ConditionalDeleter, SoftDeleter) are asserted on s itself, so that a decorator that
// must see every write (dry run, fault injection) cannot be bypassed. CapsOf follows
// this rule.
func As[T any](s Store) (T, bool) {
	for s != nil {
		if t, ok := s.(T); ok {
			return t, true
		}
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	var zero T
	return zero, false
}

// Identifier is implemented by stores that can say what they are, not how their URL
// is spelled (DESIGN.md I9): a file store by its resolved root and the device and
// inode of its directories, an object store by its server's addresses, its bucket and
// its prefix. The pipeline refuses a site whose Identity overlaps the target's or
// another site's. Spelled identity cannot be complete for object stores (a proxy, a
// second DNS name), so the pipeline also looks for a marker object (migrate).
type Identifier interface {
	Identity(ctx context.Context) (Identity, error)
}
