package oci

import (
	"context"
	"crypto/md5"
	"fmt"
	"net/http"
	"strings"

	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/ferrymigrate/ferry/providers"
)

// listFields are the object fields listings ask for.
const listFields = "name,size,etag,md5,timeCreated,timeModified"

// versionFieldsInterceptor widens ListObjectVersions' fields: the SDK types that
// parameter as a single enum value, where the service takes a comma-separated list.
func versionFieldsInterceptor(r *http.Request) error {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/objectversions") {
		q := r.URL.Query()
		if q.Get("fields") == string(objectstorage.ListObjectVersionsFieldsName) {
			q.Set("fields", listFields)
			r.URL.RawQuery = q.Encode()
		}
	}
	return nil
}

// List calls fn for every object under the prefix. A versioned bucket is listed by
// version (ListObjectVersions), so that every object carries its version id; an
// unversioned one with ListObjects and nextStartWith. Either listing is complete or
// fails with ErrIncompleteList: a page that fails after the retries, a continuation
// that repeats or does not advance, names out of order or outside the prefix.
func (s *Store) List(ctx context.Context, fn func(providers.Object) error) error {
	if s.versioned {
		return s.listVersions(ctx, fn)
	}
	return s.listObjects(ctx, fn)
}

func (s *Store) incomplete(format string, args ...any) error {
	return fmt.Errorf("oci: list %s: %s: %w", s.URI(""), fmt.Sprintf(format, args...), providers.ErrIncompleteList)
}

// keyOf strips the prefix from a listed name; skip reports a reserved key.
func (s *Store) keyOf(name string) (key string, skip bool, err error) {
	key, ok := strings.CutPrefix(name, s.prefix)
	if !ok || key == "" {
		return "", false, s.incomplete("the service listed %q, which is not under the prefix %q", name, s.prefix)
	}
	if s.reserved != "" && strings.HasPrefix(key, s.reserved) {
		return "", true, nil
	}
	return key, false, nil
}

func (s *Store) listObjects(ctx context.Context, fn func(providers.Object) error) error {
	var prefix *string
	if s.prefix != "" {
		prefix = &s.prefix
	}
	var start, startAfter *string
	last, page := "", 0
	for {
		page++
		req := objectstorage.ListObjectsRequest{NamespaceName: &s.ns, BucketName: &s.bucket, Prefix: prefix,
			Start: start, StartAfter: startAfter, Limit: common.Int(s.listLimit), Fields: common.String(listFields)}
		resp, err := s.client.ListObjects(ctx, req)
		if err != nil {
			return fmt.Errorf("oci: list %s: page %d: %w: %w", s.URI(""), page, providers.ErrIncompleteList, s.fail("list", s.prefix, err))
		}
		for _, it := range resp.Objects {
			name := deref(it.Name)
			if last != "" && name <= last {
				return s.incomplete("page %d lists %q after %q: out of order or repeated", page, name, last)
			}
			if start != nil && name < *start {
				return s.incomplete("page %d lists %q, before the %q it started at", page, name, *start)
			}
			last = name
			key, skip, err := s.keyOf(name)
			if err != nil {
				return err
			}
			if skip {
				continue
			}
			o := providers.Object{Key: key, Size: deref(it.Size), ETag: deref(it.Etag), ModTime: sdkTime(it.TimeModified)}
			o.Checksums.MD5 = b64hex(it.Md5, md5.Size) // a multipart "xxx-N" is not a content MD5
			if err := fn(o); err != nil {
				return err
			}
		}
		if resp.NextStartWith == nil || *resp.NextStartWith == "" {
			if len(resp.Objects) < s.listLimit {
				return nil
			}
			// A full page that claims to be the last: make sure nothing follows.
			if last == "" {
				return nil
			}
			start, startAfter = nil, common.String(last)
			continue
		}
		next := *resp.NextStartWith
		switch {
		case last != "" && next <= last:
			return s.incomplete("page %d ends at %q but continues at %q, which does not advance", page, last, next)
		case start != nil && next <= *start:
			return s.incomplete("page %d continues at %q again: a repeated nextStartWith", page, next)
		case startAfter != nil && next <= *startAfter:
			return s.incomplete("page %d continues at %q, which does not advance past %q", page, next, *startAfter)
		case !strings.HasPrefix(next, s.prefix):
			return s.incomplete("page %d continues at %q, outside the prefix %q", page, next, s.prefix)
		}
		start, startAfter = &next, nil
	}
}

func (s *Store) listVersions(ctx context.Context, fn func(providers.Object) error) error {
	var prefix *string
	if s.prefix != "" {
		prefix = &s.prefix
	}
	var token *string
	seen := map[string]bool{}
	last, haveLast, page := "", false, 0
	for {
		page++
		req := objectstorage.ListObjectVersionsRequest{NamespaceName: &s.ns, BucketName: &s.bucket, Prefix: prefix,
			Page: token, Limit: common.Int(s.listLimit), Fields: objectstorage.ListObjectVersionsFieldsName}
		resp, err := s.client.ListObjectVersions(ctx, req)
		if err != nil {
			return fmt.Errorf("oci: list %s: page %d: %w: %w", s.URI(""), page, providers.ErrIncompleteList, s.fail("list versions", s.prefix, err))
		}
		for _, it := range resp.Items {
			name := deref(it.Name)
			if haveLast && name < last {
				return s.incomplete("page %d lists %q after %q: out of order", page, name, last)
			}
			if haveLast && name == last {
				continue // an older version of the name just seen
			}
			last, haveLast = name, true
			if deref(it.IsDeleteMarker) {
				continue // the newest version is a delete marker: not a current object
			}
			key, skip, err := s.keyOf(name)
			if err != nil {
				return err
			}
			if skip {
				continue
			}
			if it.VersionId == nil || it.Etag == nil || it.Size == nil {
				return s.incomplete("page %d: %q is listed without its version id, etag or size", page, name)
			}
			o := providers.Object{Key: key, Size: *it.Size, ETag: *it.Etag, Version: *it.VersionId, ModTime: sdkTime(it.TimeModified)}
			o.Checksums.MD5 = b64hex(it.Md5, md5.Size)
			if err := fn(o); err != nil {
				return err
			}
		}
		if resp.OpcNextPage == nil || *resp.OpcNextPage == "" {
			return nil
		}
		next := *resp.OpcNextPage
		if seen[next] {
			return s.incomplete("page %d repeats the page token of an earlier page", page)
		}
		seen[next] = true
		token = &next
	}
}
