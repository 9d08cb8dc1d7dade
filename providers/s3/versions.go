package s3

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrymigrate/ferry/providers"
)

var _ providers.Versioner = (*Store)(nil)

// Versioning reports whether the bucket keeps, or may hold, older versions: its
// versioning is Enabled or Suspended (a suspended bucket keeps the versions written
// while it was enabled). It asks the bucket again, so validate sees the state now.
// When the credentials may not read the versioning state, it says so with an error:
// the caller must then assume versions may exist.
func (s *Store) Versioning(ctx context.Context) (bool, error) {
	out, err := s.client.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &s.bucket})
	if err != nil {
		return false, fail("read versioning of", "s3://"+s.bucket, err)
	}
	return out.Status == types.BucketVersioningStatusEnabled || out.Status == types.BucketVersioningStatusSuspended, nil
}

// VersioningStatus is the bucket's versioning as read when the store was opened:
// "Enabled", "Suspended", "" (never enabled) or "unknown" (not readable).
func (s *Store) VersioningStatus() string { return s.versioning }

// Versions lists every version of exactly key that is not a delete marker, newest
// first (ListObjectVersions on the key as prefix, keys below it skipped). In an
// unversioned bucket it is the current object, its version id "null" where the
// server names one.
func (s *Store) Versions(ctx context.Context, key string) ([]providers.Object, error) {
	fk, err := s.full(key)
	if err != nil {
		return nil, err
	}
	var out []providers.Object
	seen := map[string]bool{}
	var keyMarker, versionMarker *string
	for page := 0; page < 10000; page++ {
		resp, err := s.client.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{
			Bucket: &s.bucket, Prefix: &fk, KeyMarker: keyMarker, VersionIdMarker: versionMarker,
			MaxKeys: aws.Int32(s.pageSize),
		})
		if err != nil {
			return nil, s.noBucket(ctx, fail("list versions of", s.uriFull(fk), err))
		}
		past := false // the page reached keys after fk: its history is complete
		for _, v := range resp.Versions {
			k := aws.ToString(v.Key)
			if k != fk {
				past = past || k > fk
				continue
			}
			id := aws.ToString(v.VersionId)
			if seen[id] {
				continue // versitygw starts a page at its marker, not after it
			}
			seen[id] = true
			out = append(out, providers.Object{Key: key, Size: aws.ToInt64(v.Size), ETag: trimETag(v.ETag),
				Version: id, ModTime: aws.ToTime(v.LastModified)})
		}
		for _, d := range resp.DeleteMarkers {
			if k := aws.ToString(d.Key); k > fk {
				past = true
			}
		}
		if past || !aws.ToBool(resp.IsTruncated) {
			return out, nil
		}
		next, nextVersion := aws.ToString(resp.NextKeyMarker), aws.ToString(resp.NextVersionIdMarker)
		if next == "" || (keyMarker != nil && next == *keyMarker && nextVersion == aws.ToString(versionMarker)) {
			return nil, fmt.Errorf("s3: list versions of %s: the listing is truncated but does not advance: %w", s.uriFull(fk), providers.ErrIncompleteList)
		}
		keyMarker, versionMarker = &next, nil
		if nextVersion != "" {
			versionMarker = &nextVersion
		}
	}
	return nil, fmt.Errorf("s3: list versions of %s: more than 10000 pages: %w", s.uriFull(fk), providers.ErrIncompleteList)
}
