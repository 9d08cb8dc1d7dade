package s3

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/ferrymigrate/ferry/providers"
)

// BatchSize is the most keys one DeleteObjects request carries (S3's limit).
const BatchSize = 1000

// batchHeads is how many HEADs DeleteIfBatch runs at once.
const batchHeads = 16

// DeleteIfBatch is DeleteIf for many keys at once: each expect (its Key relative to
// the root) is checked with its own HEAD exactly as DeleteIf checks it, then the
// keys that pass are deleted with DeleteObjects, up to BatchSize per request, where
// that is as safe as DeleteIf (see batchable): by version id when the HEAD named
// one, else by ETag. The others get DeleteIf's own conditional DELETE.
//
// It returns one error per item, in order: nil for a key deleted, else an error
// wrapping ErrNotFound, ErrPrecondition, ErrInvalidKey, ... as DeleteIf would. The
// returned error is for the whole call (a cancelled context).
func (s *Store) DeleteIfBatch(ctx context.Context, items []providers.Object) ([]error, error) {
	defer s.mutating()()
	errs := make([]error, len(items))
	type cand struct {
		i   int
		fk  string
		id  types.ObjectIdentifier
		cur *s3.HeadObjectOutput
	}
	cands := make([]*cand, len(items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(batchHeads)
	for i, it := range items {
		fk, err := s.full(it.Key)
		if err != nil {
			errs[i] = err
			continue
		}
		g.Go(func() error {
			cur, err := s.current(gctx, "delete", fk, it)
			if err != nil {
				errs[i] = err
				return nil
			}
			id := types.ObjectIdentifier{Key: aws.String(fk)}
			if v := aws.ToString(cur.VersionId); v != "" {
				id.VersionId = &v
			}
			if v := aws.ToString(id.VersionId); v == "" || v == "null" {
				id.ETag = quoteETag(trimETag(cur.ETag))
			}
			cands[i] = &cand{i: i, fk: fk, id: id, cur: cur}
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return errs, err
	}
	var batch []*cand
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if s.beforeDelete != nil {
			s.beforeDelete(s.rel(batch[0].fk))
		}
		// Keys are unique within a batch (see below), so a key names its entry.
		byKey := map[string]*cand{}
		ids := make([]types.ObjectIdentifier, 0, len(batch))
		for _, c := range batch {
			byKey[c.fk] = c
			ids = append(ids, c.id)
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &s.bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(false)},
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			for _, c := range batch {
				errs[c.i] = fail("delete (batch)", s.uriFull(c.fk), err)
			}
			batch = batch[:0]
			return nil
		}
		reported := map[string]bool{}
		for _, d := range out.Deleted {
			k := aws.ToString(d.Key)
			if c, ok := byKey[k]; ok && !reported[k] {
				if v := aws.ToString(c.id.VersionId); v != "" && v != aws.ToString(d.VersionId) {
					errs[c.i] = fmt.Errorf("s3: delete (batch) %s: the server deleted version %q, not %q", s.uriFull(c.fk), aws.ToString(d.VersionId), v)
				} else {
					errs[c.i] = nil
				}
				reported[k] = true
			}
		}
		for _, e := range out.Errors {
			k := aws.ToString(e.Key)
			c, ok := byKey[k]
			if !ok || reported[k] {
				continue
			}
			reported[k] = true
			code := aws.ToString(e.Code)
			msg := fmt.Sprintf("s3: delete (batch) %s: %s: %s", s.uriFull(c.fk), code, aws.ToString(e.Message))
			if p := codeErrors[code]; p != nil {
				errs[c.i] = fmt.Errorf("%s: %w", msg, p)
			} else {
				errs[c.i] = errors.New(msg)
			}
		}
		for k, c := range byKey {
			if !reported[k] {
				errs[c.i] = fmt.Errorf("s3: delete (batch) %s: the server did not report this key's outcome", s.uriFull(c.fk))
			}
		}
		batch = batch[:0]
		return nil
	}
	seen := map[string]bool{}
	var single []*cand
	for _, c := range cands {
		if c == nil {
			continue
		}
		if seen[c.fk] {
			errs[c.i] = fmt.Errorf("s3: delete (batch) %s: the key is in the batch twice", s.uriFull(c.fk))
			continue
		}
		seen[c.fk] = true
		if !s.batchable(c.id) {
			single = append(single, c)
			continue
		}
		batch = append(batch, c)
		if len(batch) == BatchSize {
			if err := flush(); err != nil {
				return errs, err
			}
		}
	}
	if err := flush(); err != nil {
		return errs, err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(batchHeads)
	for _, c := range single {
		g.Go(func() error {
			if s.beforeDelete != nil {
				s.beforeDelete(s.rel(c.fk))
			}
			errs[c.i] = s.deleteCurrent(gctx, "delete", c.fk, c.cur)
			return nil
		})
	}
	g.Wait()
	return errs, ctx.Err()
}

// batchable reports whether DeleteObjects deletes id as safely as DeleteIf's single
// DELETE would: always for a version id (immutable bytes); for an ETag condition
// only on AWS, which honours the ETag element, and on MinIO, which honours no
// condition on deletes at all (so batching loses nothing). versitygw honours
// If-Match on DELETE but ignores the ETag element in DeleteObjects, and other
// servers are not known to honour it: there each key gets its own DELETE.
func (s *Store) batchable(id types.ObjectIdentifier) bool {
	if v := aws.ToString(id.VersionId); v != "" && v != "null" {
		return true
	}
	return s.awsHosted || s.server == "minio"
}
