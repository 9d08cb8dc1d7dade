package azblob

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/ferrymigrate/ferry/providers"
)

var _ providers.RangeLister = (*Store)(nil)

func (s *Store) incomplete(format string, args ...any) error {
	return fmt.Errorf("azblob: list %s: %s: %w", s.URI(""), fmt.Sprintf(format, args...), providers.ErrIncompleteList)
}

// keyOf strips the prefix from a listed name; skip reports a reserved key.
func (s *Store) keyOf(name string) (key string, skip bool, err error) {
	key, ok := strings.CutPrefix(name, s.prefix)
	if !ok {
		return "", false, s.incomplete("the service listed %q, which is not under the prefix %q", name, s.prefix)
	}
	if key == "" {
		return "", true, nil // a marker blob named like the site's folder is not a record
	}
	if s.reserved != "" && strings.HasPrefix(key, s.reserved) {
		return "", true, nil
	}
	return key, false, nil
}

// List calls fn for every blob under the prefix (List Blobs, flat, current blobs
// only). The listing is complete or fails with ErrIncompleteList: a page that
// fails after the retries, a continuation marker that repeats, names out of order
// or outside the prefix.
func (s *Store) List(ctx context.Context, fn func(providers.Object) error) error {
	return s.list(ctx, "", "", fn)
}

// list lists names in (prefix+after, prefix+through] in ascending order; "" bounds
// are open. startFrom asks the service to begin at after (Azure's startFrom; a
// server that ignores it is filtered here).
func (s *Store) list(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	opts := &container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Metadata: false}, MaxResults: &s.pageSize}
	if s.prefix != "" {
		opts.Prefix = &s.prefix
	}
	if after != "" && !s.noStartFrom.Load() {
		from := s.prefix + after
		opts.StartFrom = &from
	}
	pager := s.cont.NewListBlobsFlatPager(opts)
	seen := map[string]bool{}
	last, page := "", 0
	for pager.More() {
		page++
		resp, err := pager.NextPage(ctx)
		if err != nil && page == 1 && opts.StartFrom != nil && isStatus(err, 400) {
			// A service version or account kind without startFrom: list from the
			// start of the prefix and skip to the range here.
			s.noStartFrom.Store(true)
			opts.StartFrom = nil
			pager = s.cont.NewListBlobsFlatPager(opts)
			page--
			continue
		}
		if err != nil {
			return fmt.Errorf("azblob: list %s: page %d: %w: %w", s.URI(""), page, providers.ErrIncompleteList, s.fail("list", s.prefix, err))
		}
		if resp.Segment == nil {
			return s.incomplete("page %d has no blob list", page)
		}
		for _, it := range resp.Segment.BlobItems {
			name := deref(it.Name)
			if last != "" && name <= last {
				return s.incomplete("page %d lists %q after %q: out of order or repeated", page, name, last)
			}
			last = name
			key, skip, err := s.keyOf(name)
			if err != nil {
				return err
			}
			if skip || (after != "" && key <= after) {
				continue
			}
			if through != "" && key > through {
				return nil
			}
			if it.Properties == nil || it.Properties.ContentLength == nil || it.Properties.ETag == nil {
				return s.incomplete("page %d: %q is listed without its size or etag", page, name)
			}
			p := props{etag: etagOf(it.Properties.ETag), version: deref(it.VersionID), size: *it.Properties.ContentLength,
				modified: deref(it.Properties.LastModified), md5: it.Properties.ContentMD5}
			if err := fn(s.objectOf(key, p)); err != nil {
				return err
			}
		}
		if m := deref(resp.NextMarker); m != "" {
			if seen[m] {
				return s.incomplete("page %d repeats the continuation marker of an earlier page", page)
			}
			seen[m] = true
		}
	}
	return nil
}

// ListRange lists the keys in (after, through] in ascending byte order (List Blobs
// with startFrom where the service honours it, filtered here either way). Azure
// lists blob names in UTF-8 byte order; a listing out of order fails.
func (s *Store) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	return s.list(ctx, after, through, fn)
}

// splitSample bounds the first-level entries SplitKeys holds.
const splitSample = 4096

// SplitKeys lists the first level under the prefix (delimiter "/") and returns up
// to parts-1 of its entries at even intervals, so ranges cut there follow the
// site's own folders.
func (s *Store) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	opts := &container.ListBlobsHierarchyOptions{MaxResults: &s.pageSize}
	if s.prefix != "" {
		opts.Prefix = &s.prefix
	}
	var first []string
	stride, seen := 1, 0
	keep := func(k string) {
		if seen++; (seen-1)%stride != 0 {
			return
		}
		first = append(first, k)
		if len(first) >= splitSample {
			half := first[:0]
			for i := 0; i < len(first); i += 2 {
				half = append(half, first[i])
			}
			first, stride = half, stride*2
		}
	}
	pager := s.cont.NewListBlobsHierarchyPager("/", opts)
	for page := 1; pager.More() && page <= 1000; page++ {
		resp, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("azblob: split %s: %w: %w", s.URI(""), providers.ErrIncompleteList, s.fail("list", s.prefix, err))
		}
		if resp.Segment == nil {
			break
		}
		for _, p := range resp.Segment.BlobPrefixes {
			if key, skip, err := s.keyOf(deref(p.Name)); err == nil && !skip {
				keep(key)
			}
		}
		for _, it := range resp.Segment.BlobItems {
			if key, skip, err := s.keyOf(deref(it.Name)); err == nil && !skip {
				keep(key)
			}
		}
	}
	sort.Strings(first)
	if parts < 2 || len(first) < 2 {
		return nil, nil
	}
	var cut []string
	for i := 1; i < parts; i++ {
		k := first[i*len(first)/parts]
		if len(cut) == 0 || cut[len(cut)-1] != k {
			cut = append(cut, k)
		}
	}
	return cut, nil
}
