package s3

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ferrymigrate/ferry/providers"
)

var _ providers.RangeLister = (*Store)(nil)

var errPastRange = errors.New("past the end of the range")

// splitSample bounds the first-level entries SplitKeys holds (a site with a million
// users has a million of them).
const splitSample = 4096

// ListRange lists the keys in (after, through] of an unversioned bucket with
// ListObjectsV2 from StartAfter, which S3 returns in UTF-8 byte order, stopping at
// the first key past through. A versioned bucket's listing (current versions) is
// not offered by range: ErrNotSupported.
func (s *Store) ListRange(ctx context.Context, after, through string, fn func(providers.Object) error) error {
	if s.versioned {
		return fmt.Errorf("s3: list %s by range: %w (versioned bucket)", s.URI(""), providers.ErrNotSupported)
	}
	last := after
	err := s.listV2(ctx, after, func(o providers.Object) error {
		if o.Key <= last {
			return fmt.Errorf("s3: list %s: %w: key %q out of order after %q", s.URI(""), providers.ErrIncompleteList, o.Key, last)
		}
		last = o.Key
		if through != "" && o.Key > through {
			return errPastRange
		}
		return fn(o)
	})
	if errors.Is(err, errPastRange) {
		return nil
	}
	return err
}

// SplitKeys lists the first level under the prefix (Delimiter "/") and returns up to
// parts-1 of its entries at even intervals: each a key or a common prefix, so ranges
// cut there follow the site's own folders. It keeps an even sample of at most
// splitSample entries, however many the first level holds. A versioned bucket cannot
// be listed by range (ListRange): ErrNotSupported, without a request.
func (s *Store) SplitKeys(ctx context.Context, parts int) ([]string, error) {
	if s.versioned {
		return nil, fmt.Errorf("s3: split %s: %w (versioned bucket)", s.URI(""), providers.ErrNotSupported)
	}
	var prefix *string
	if s.prefix != "" {
		prefix = &s.prefix
	}
	var first []string
	stride, seen := 1, 0 // keep every stride-th entry; halve the sample when it is full
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
	var token *string
	for page := 1; page <= 1000; page++ {
		out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket: &s.bucket, Prefix: prefix, Delimiter: aws.String("/"), ContinuationToken: token,
			EncodingType: types.EncodingTypeUrl, MaxKeys: aws.Int32(s.pageSize),
		})
		if err != nil {
			return nil, s.incomplete(page, err)
		}
		encoded := out.EncodingType == types.EncodingTypeUrl
		for _, c := range out.CommonPrefixes {
			full, err := s.listedKey(ctx, aws.ToString(c.Prefix), encoded)
			if err != nil {
				return nil, s.incomplete(page, err)
			}
			if !s.skip(full) && full != s.prefix {
				keep(s.rel(full))
			}
		}
		for _, c := range out.Contents {
			full, err := s.listedKey(ctx, aws.ToString(c.Key), encoded)
			if err != nil {
				return nil, s.incomplete(page, err)
			}
			if !s.skip(full) {
				keep(s.rel(full))
			}
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextContinuationToken) == "" {
			break
		}
		token = out.NextContinuationToken
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
