package azblob

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/ferrymigrate/ferry/providers"
)

var (
	_ providers.Versioner = (*Store)(nil)
	_ providers.Recoverer = (*Store)(nil)
)

// Versioning reports whether the account keeps versions of this container's
// blobs. Blob versioning is an account setting that only the management plane
// shows, so the store looks at the blobs: a version id on any blob it has seen,
// or on any blob of the first page of a version listing under the prefix, means
// versioning is (or was) on. An empty prefix on a versioning account reads as
// unversioned until its first write, which then carries a version id.
func (s *Store) Versioning(ctx context.Context) (bool, error) {
	if s.versioned.Load() {
		return true, nil
	}
	n := int32(100)
	opts := &container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Versions: true}, MaxResults: &n}
	if s.prefix != "" {
		opts.Prefix = &s.prefix
	}
	resp, err := s.cont.NewListBlobsFlatPager(opts).NextPage(ctx)
	if err != nil {
		return false, s.fail("read versioning of", "", err)
	}
	if resp.Segment != nil {
		for _, it := range resp.Segment.BlobItems {
			if deref(it.VersionID) != "" {
				s.versioned.Store(true)
				return true, nil
			}
		}
	}
	return false, nil
}

// Versions lists every version of exactly key, newest first (List Blobs with
// include=versions and the name as prefix; names below it are skipped). Azure has
// no delete markers: a deleted base blob leaves its versions as previous versions.
func (s *Store) Versions(ctx context.Context, key string) ([]providers.Object, error) {
	name, err := s.blobName("list versions", key)
	if err != nil {
		return nil, err
	}
	opts := &container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Versions: true}, Prefix: &name, MaxResults: &s.pageSize}
	pager := s.cont.NewListBlobsFlatPager(opts)
	var out []providers.Object
	var current *providers.Object
	for page := 1; pager.More(); page++ {
		resp, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("azblob: list versions of %s: page %d: %w: %w", s.uriOf(name), page, providers.ErrIncompleteList, s.fail("list versions", name, err))
		}
		if resp.Segment == nil {
			break
		}
		for _, it := range resp.Segment.BlobItems {
			if deref(it.Name) != name || deref(it.Deleted) {
				continue
			}
			if it.Properties == nil || it.Properties.ContentLength == nil || it.Properties.ETag == nil {
				return nil, fmt.Errorf("azblob: list versions of %s: a version is listed without its size or etag: %w", s.uriOf(name), providers.ErrIncompleteList)
			}
			p := props{etag: etagOf(it.Properties.ETag), version: deref(it.VersionID), size: *it.Properties.ContentLength,
				modified: deref(it.Properties.LastModified), md5: it.Properties.ContentMD5}
			o := s.objectOf(key, p)
			if p.version != "" {
				s.versioned.Store(true)
			}
			if deref(it.IsCurrentVersion) || p.version == "" {
				current = &o
				continue
			}
			out = append(out, o)
		}
	}
	// Version ids are the times the versions were made (RFC 3339, fixed width).
	sort.Slice(out, func(i, j int) bool { return out[i].Version > out[j].Version })
	if current != nil {
		out = append([]providers.Object{*current}, out...)
	}
	return out, nil
}

// Recoverability reports whether Azure keeps deleted blobs recoverable: blob soft
// delete (the blob service's delete retention policy), for its days. Reading the service
// properties needs an account-level role; without it the answer is an error, never
// a guess.
func (s *Store) Recoverability(ctx context.Context) (providers.Recoverability, error) {
	resp, err := s.svc.GetProperties(ctx, nil)
	if err != nil {
		return providers.Recoverability{}, s.fail("read the blob service's delete retention policy of", "", err)
	}
	if rp := resp.DeleteRetentionPolicy; rp != nil && deref(rp.Enabled) {
		days := deref(rp.Days)
		return providers.Recoverability{Recoverable: true, Mechanism: "blob soft delete",
			Retention: time.Duration(days) * 24 * time.Hour}, nil
	}
	// Versioning alone does not keep what ferry deletes: a hard delete and a purge
	// remove the verified version itself.
	return providers.Recoverability{}, nil
}
