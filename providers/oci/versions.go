package oci

import (
	"context"
	"crypto/md5"
	"fmt"

	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/ferrymigrate/ferry/providers"
)

var _ providers.Versioner = (*Store)(nil)

// Versioning reports whether the bucket keeps, or may hold, older versions: its
// versioning is Enabled, or Suspended after having been enabled. It asks the bucket
// again, so validate reports the state now.
func (s *Store) Versioning(ctx context.Context) (bool, error) {
	b, err := s.client.GetBucket(ctx, objectstorage.GetBucketRequest{NamespaceName: &s.ns, BucketName: &s.bucket})
	if err != nil {
		return false, s.fail("read versioning of", "", err)
	}
	return b.Versioning == objectstorage.BucketVersioningEnabled || b.Versioning == objectstorage.BucketVersioningSuspended, nil
}

// Versions lists every version of exactly key that is not a delete marker, newest
// first (ListObjectVersions with the name as prefix; names below it are skipped).
func (s *Store) Versions(ctx context.Context, key string) ([]providers.Object, error) {
	name, err := s.object("list versions", key)
	if err != nil {
		return nil, err
	}
	var out []providers.Object
	var token *string
	seen := map[string]bool{}
	for {
		resp, err := s.client.ListObjectVersions(ctx, objectstorage.ListObjectVersionsRequest{NamespaceName: &s.ns,
			BucketName: &s.bucket, Prefix: &name, Page: token, Fields: objectstorage.ListObjectVersionsFieldsName})
		if err != nil {
			return nil, s.fail("list versions", name, err)
		}
		for _, it := range resp.Items {
			n := deref(it.Name)
			if n > name {
				return out, nil // past this name's history
			}
			if n != name || deref(it.IsDeleteMarker) {
				continue
			}
			if it.VersionId == nil || it.Etag == nil || it.Size == nil {
				return nil, fmt.Errorf("oci: list versions of %s: a version is listed without its id, etag or size: %w", s.uriOf(name), providers.ErrIncompleteList)
			}
			o := providers.Object{Key: key, Size: *it.Size, ETag: *it.Etag, Version: *it.VersionId, ModTime: sdkTime(it.TimeModified)}
			o.Checksums.MD5 = b64hex(it.Md5, md5.Size)
			out = append(out, o)
		}
		if resp.OpcNextPage == nil || *resp.OpcNextPage == "" {
			return out, nil
		}
		if seen[*resp.OpcNextPage] {
			return nil, fmt.Errorf("oci: list versions of %s: a page token repeats: %w", s.uriOf(name), providers.ErrIncompleteList)
		}
		seen[*resp.OpcNextPage] = true
		token = resp.OpcNextPage
	}
}
