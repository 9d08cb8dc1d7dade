package s3

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrymigrate/ferry/providers"
)

// List lists every object under the prefix: ListObjectsV2 in an unversioned bucket,
// ListObjectVersions (current versions only, so Object.Version is set) in a
// versioned one. It is complete or fails with ErrIncompleteList: a failed page, a
// truncated page without a continuation token, a token or marker that repeats, a
// key outside the prefix or a key the server could not encode all fail the
// listing. The quarantine is skipped when it lies under the prefix.
func (s *Store) List(ctx context.Context, fn func(providers.Object) error) error {
	if s.versioned {
		return s.listVersions(ctx, fn)
	}
	return s.listV2(ctx, "", fn)
}

// listV2 lists an unversioned bucket's keys under the prefix, those after the
// relative key after when it is set, in key order.
func (s *Store) listV2(ctx context.Context, after string, fn func(providers.Object) error) error {
	var startAfter *string
	if after != "" {
		startAfter = aws.String(s.prefix + after)
	}
	var prefix *string
	if s.prefix != "" {
		prefix = &s.prefix
	}
	seen := map[string]bool{}
	var token *string
	for page := 1; ; page++ {
		out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket: &s.bucket, Prefix: prefix, ContinuationToken: token, StartAfter: startAfter,
			EncodingType: types.EncodingTypeUrl, MaxKeys: aws.Int32(s.pageSize),
		})
		if err != nil {
			return s.incomplete(page, err)
		}
		encoded := out.EncodingType == types.EncodingTypeUrl
		for _, c := range out.Contents {
			full, err := s.listedKey(ctx, aws.ToString(c.Key), encoded)
			if err != nil {
				return s.incomplete(page, err)
			}
			if s.skip(full) {
				continue
			}
			o := providers.Object{Key: s.rel(full), Size: aws.ToInt64(c.Size), ETag: trimETag(c.ETag), ModTime: aws.ToTime(c.LastModified)}
			if err := fn(o); err != nil {
				return err
			}
		}
		next := aws.ToString(out.NextContinuationToken)
		if !aws.ToBool(out.IsTruncated) && (out.IsTruncated != nil || next == "") {
			return nil
		}
		switch {
		case next == "":
			return s.incomplete(page, errors.New("the server says the listing is truncated but gives no continuation token"))
		case seen[next]:
			return s.incomplete(page, errors.New("the server repeated a continuation token"))
		}
		seen[next] = true
		token = &next
	}
}

func (s *Store) incomplete(page int, err error) error {
	if p := portable(err); p != nil {
		return fmt.Errorf("s3: list %s: page %d: %w: %w: %w", s.URI(""), page, providers.ErrIncompleteList, p, err)
	}
	return fmt.Errorf("s3: list %s: page %d: %w: %w", s.URI(""), page, providers.ErrIncompleteList, err)
}

// skip reports whether a listed bucket key is not a record: the quarantine, or an
// object named exactly like the prefix (the site folder's own directory marker).
func (s *Store) skip(full string) bool {
	return full == s.prefix || (s.qInView && strings.HasPrefix(full, s.qroot))
}

// listedKey decodes a key from a listing and checks it.
func (s *Store) listedKey(ctx context.Context, raw string, encoded bool) (string, error) {
	key := raw
	if encoded {
		// S3's "url" encoding is form encoding: "+" is a space, a plus is %2B.
		k, err := url.QueryUnescape(raw)
		if err != nil {
			return "", fmt.Errorf("key %q: bad url encoding: %w", raw, err)
		}
		key = k
	} else if strings.ContainsRune(key, utf8.RuneError) {
		// The server ignored EncodingType and sent raw XML, which cannot carry every
		// character: such a character arrives as U+FFFD. Check the key exists as
		// listed; if it does not, the listing mangled a key.
		if _, err := s.head(ctx, key, ""); errors.Is(err, providers.ErrNotFound) {
			return "", fmt.Errorf("key %+q: the server could not list this key faithfully (it does not url-encode listings)", key)
		} else if err != nil {
			return "", err
		}
	}
	if !strings.HasPrefix(key, s.prefix) {
		return "", fmt.Errorf("the server listed %+q, outside the prefix %q", key, s.prefix)
	}
	return key, nil
}

// listVersions lists the current version of every key in a versioned bucket.
func (s *Store) listVersions(ctx context.Context, fn func(providers.Object) error) error {
	var prefix *string
	if s.prefix != "" {
		prefix = &s.prefix
	}
	type marker struct{ key, version, rawKey string }
	seen := map[marker]bool{}
	var keyMarker, versionMarker *string
	var last marker // the previous page's last entry, per its markers
	for page := 1; ; page++ {
		out, err := s.client.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{
			Bucket: &s.bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker,
			EncodingType: types.EncodingTypeUrl, MaxKeys: aws.Int32(s.pageSize),
		})
		if err != nil {
			return s.incomplete(page, err)
		}
		encoded := out.EncodingType == types.EncodingTypeUrl
		for _, v := range out.Versions {
			if !aws.ToBool(v.IsLatest) {
				continue
			}
			if aws.ToString(v.VersionId) == last.version && aws.ToString(v.Key) == last.rawKey {
				// versitygw starts a page at its markers, not after them: the
				// previous page's last entry comes again.
				continue
			}
			full, err := s.listedKey(ctx, aws.ToString(v.Key), encoded)
			if err != nil {
				return s.incomplete(page, err)
			}
			if s.skip(full) {
				continue
			}
			o := providers.Object{Key: s.rel(full), Size: aws.ToInt64(v.Size), ETag: trimETag(v.ETag),
				Version: aws.ToString(v.VersionId), ModTime: aws.ToTime(v.LastModified)}
			if err := fn(o); err != nil {
				return err
			}
		}
		rawKey, nextVersion := aws.ToString(out.NextKeyMarker), aws.ToString(out.NextVersionIdMarker)
		nextKey := rawKey
		if !aws.ToBool(out.IsTruncated) && (out.IsTruncated != nil || nextKey == "") {
			return nil
		}
		if nextKey == "" {
			return s.incomplete(page, errors.New("the server says the version listing is truncated but gives no key marker"))
		}
		if encoded {
			k, err := url.QueryUnescape(nextKey)
			if err != nil {
				return s.incomplete(page, fmt.Errorf("key marker %q: bad url encoding: %w", nextKey, err))
			}
			nextKey = k
		}
		// The key marker may be opaque (MinIO appends its own state to it): pass it
		// back as given, decoded only when the server encoded the page.
		m := marker{key: nextKey, version: nextVersion, rawKey: rawKey}
		if seen[m] {
			return s.incomplete(page, errors.New("the server repeated a key and version marker"))
		}
		seen[m] = true
		last = m
		keyMarker, versionMarker = &m.key, nil
		if m.version != "" {
			versionMarker = &m.version
		}
	}
}

// version is one entry in a key's version history.
type version struct {
	id     string
	etag   string
	marker bool // a delete marker
	latest bool
}

// versionsFrom walks the version history of exactly the bucket key full, newest
// first (only the entries older than version after, when after is not empty),
// calling fn for each entry until fn returns false.
//
// It asks for one entry per page, because the SDK splits a page into versions and
// delete markers and so loses their relative order, which restores and purges
// depend on. Servers disagree on what a version-id marker means: S3 and MinIO start
// after it; versitygw starts at it when it names a key's latest entry, and after it
// otherwise. When the marker entry itself comes back, the page is asked again with
// two entries and the marker dropped. Histories are short: ferry walks only the
// entries above the version it kept.
func (s *Store) versionsFrom(ctx context.Context, full, after string, fn func(version) bool) error {
	page := func(max int32) (*s3.ListObjectVersionsOutput, []version, error) {
		in := &s3.ListObjectVersionsInput{Bucket: &s.bucket, Prefix: &full, MaxKeys: aws.Int32(max)}
		if after != "" {
			in.KeyMarker, in.VersionIdMarker = aws.String(full), aws.String(after)
		}
		out, err := s.client.ListObjectVersions(ctx, in)
		if err != nil {
			return nil, nil, fail("list versions of", s.uriFull(full), err)
		}
		var entries []version
		for _, v := range out.Versions {
			if aws.ToString(v.Key) == full {
				entries = append(entries, version{id: aws.ToString(v.VersionId), etag: trimETag(v.ETag), latest: aws.ToBool(v.IsLatest)})
			}
		}
		for _, d := range out.DeleteMarkers {
			if aws.ToString(d.Key) == full {
				entries = append(entries, version{id: aws.ToString(d.VersionId), marker: true, latest: aws.ToBool(d.IsLatest)})
			}
		}
		return out, entries, nil
	}
	for range 10000 {
		out, entries, err := page(1)
		if err != nil {
			return err
		}
		if after != "" && len(entries) == 1 && entries[0].id == after {
			if out, entries, err = page(2); err != nil {
				return err
			}
			entries = slices.DeleteFunc(entries, func(v version) bool { return v.id == after })
		}
		switch len(entries) {
		case 0:
			return nil // past this key's history
		case 1:
		default:
			return fmt.Errorf("s3: list versions of %s: the server returned %d entries for one", s.uriFull(full), len(entries))
		}
		if !fn(entries[0]) || !aws.ToBool(out.IsTruncated) {
			return nil
		}
		after = entries[0].id
	}
	return fmt.Errorf("s3: list versions of %s: more than 10000 versions", s.uriFull(full))
}
