package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/ferrymigrate/ferry/providers"
)

// Conditional deletes
//
// Every delete starts with a HEAD of the key: absent is ErrNotFound (S3 answers 204
// to a DELETE of a missing key, which must never count as a delete), and a version
// other than the expected one (ETag, version id, size) is ErrPrecondition. Then:
//
//   - When the HEAD names a version id (a versioned bucket, or one whose versioning
//     was suspended after writes), that exact version is deleted by id. A version is
//     immutable, so a write that lands after the HEAD is never deleted: it stays.
//   - Otherwise (an unversioned bucket) the DELETE carries If-Match with the ETag.
//     Servers that honour it (AWS, versitygw) refuse with 412 if the object changed
//     after the HEAD. MinIO ignores If-Match on DELETE (checked by
//     TestConditionalDeleteRace): there a write that lands in the window between
//     the HEAD and the DELETE, one round trip wide, is deleted. A legacy site being
//     drained is not being written to; where it might be, use a versioned bucket or
//     soft deletes (which keep the bytes).
//
// In a versioned bucket DeleteIf removes exactly the verified version; versions
// older than it are other bytes, not verified, and are left alone (if one exists it
// becomes current, and the pipeline's absence check sees it).

// DeleteIf deletes key only if it is still the version expect describes.
func (s *Store) DeleteIf(ctx context.Context, key string, expect providers.Object) error {
	defer s.mutating()()
	fk, err := s.full(key)
	if err != nil {
		return err
	}
	cur, err := s.current(ctx, "delete", fk, expect)
	if err != nil {
		return err
	}
	if s.beforeDelete != nil {
		s.beforeDelete(key)
	}
	return s.deleteCurrent(ctx, "delete", fk, cur)
}

// current HEADs fk and checks it is the version expect describes.
func (s *Store) current(ctx context.Context, op, fk string, expect providers.Object) (*s3.HeadObjectOutput, error) {
	uri := s.uriFull(fk)
	if expect.ETag == "" {
		return nil, fmt.Errorf("s3: %s %s: the expected version has no ETag: %w", op, uri, providers.ErrPrecondition)
	}
	h, err := s.head(ctx, fk, "")
	if err != nil {
		return nil, fmt.Errorf("s3: %s: %w", op, err)
	}
	etag, ver, size := trimETag(h.ETag), aws.ToString(h.VersionId), aws.ToInt64(h.ContentLength)
	switch {
	case etag != expect.ETag:
		return nil, fmt.Errorf("s3: %s %s: ETag is now %s, expected %s: %w", op, uri, etag, expect.ETag, providers.ErrPrecondition)
	case expect.Version != "" && ver != expect.Version:
		return nil, fmt.Errorf("s3: %s %s: current version is %q, expected %q: %w", op, uri, ver, expect.Version, providers.ErrPrecondition)
	case size != expect.Size:
		return nil, fmt.Errorf("s3: %s %s: now %d bytes, expected %d: %w", op, uri, size, expect.Size, providers.ErrPrecondition)
	}
	return h, nil
}

// deleteCurrent deletes the version cur (a HEAD of fk) describes.
func (s *Store) deleteCurrent(ctx context.Context, op, fk string, cur *s3.HeadObjectOutput) error {
	in := &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &fk}
	if v := aws.ToString(cur.VersionId); v != "" {
		in.VersionId = &v
	}
	// A real version id names immutable bytes; "null" (and no id) is overwritable.
	if v := aws.ToString(in.VersionId); (v == "" || v == "null") && !s.noIfMatch.Load() {
		in.IfMatch = quoteETag(trimETag(cur.ETag))
	}
	_, err := s.client.DeleteObject(ctx, in)
	if err != nil && in.IfMatch != nil && errors.Is(portable(err), providers.ErrNotSupported) {
		s.noIfMatch.Store(true)
		in.IfMatch = nil
		_, err = s.client.DeleteObject(ctx, in)
	}
	if err != nil {
		return fail(op, s.uriFull(fk), err)
	}
	return nil
}

// Soft deletes
//
// Versioned bucket (versioning Enabled when the store was opened): SoftDelete checks
// the current version is expect's, then DELETEs the key without a version id, which
// leaves a delete marker and keeps the version. It then checks that the entry right
// below its marker is that version; if a write landed in between, it removes its
// own marker again and returns ErrPrecondition. The handle is expect.Version (or
// "etag:<ETag>" when expect carries no version id: the newest version with that
// ETag). Restore removes the delete markers above the kept version, so it is
// current again (ErrAlreadyExists if a newer real version exists). Purge deletes the
// kept version for good, and then the markers too if no real version of the key is
// left. SoftExists lists the key's versions.
//
// Unversioned bucket: a quarantine prefix in the same bucket,
// <quarantine>/<migration>/<ETag>/<prefix><key> (default quarantine
// ".ferry-quarantine/" at the bucket root, outside the site's prefix unless the
// prefix is empty; then List skips it and keys under it are refused). The handle
// is that bucket key. SoftDelete copies the exact version (CopySourceIfMatch) to the
// handle, then deletes the original conditionally as DeleteIf does (with its window
// on MinIO; the bytes are kept either way). Restore copies it back if the key is
// free and deletes the quarantined copy. S3 has no copy-if-absent that MinIO or
// versitygw honour (both ignore If-None-Match on CopyObject), so a write landing
// between Restore's HEAD and its copy is overwritten. A restored copy of a
// multipart object is a new object with a new ETag.

var etagSegment = regexp.MustCompile(`^[0-9A-Za-z_-]{1,64}$`)

// SoftHandle returns the handle SoftDelete(key, expect) returns, without I/O.
func (s *Store) SoftHandle(key string, expect providers.Object) string {
	if s.versioned {
		if expect.Version != "" {
			return expect.Version
		}
		return "etag:" + expect.ETag
	}
	seg := expect.ETag
	if !etagSegment.MatchString(seg) {
		sum := sha256.Sum256([]byte(seg))
		seg = "h" + hex.EncodeToString(sum[:16])
	}
	return s.qprefix + seg + "/" + s.prefix + key
}

// handle parses a handle for key: a quarantine key, or a version reference.
func (s *Store) handle(fk, h string) (quarantine, version string, err error) {
	if strings.HasPrefix(h, s.qroot) {
		rest, ok := strings.CutPrefix(h, s.qprefix)
		if !ok {
			return "", "", fmt.Errorf("s3: handle %q belongs to another migration's quarantine (this one is %s): %w", h, s.qprefix, providers.ErrInvalidKey)
		}
		seg, tail, ok := strings.Cut(rest, "/")
		if !ok || seg == "" || tail != fk {
			return "", "", fmt.Errorf("s3: handle %q does not name a quarantined copy of %s: %w", h, s.uriFull(fk), providers.ErrInvalidKey)
		}
		return h, "", nil
	}
	if h == "" {
		return "", "", fmt.Errorf("s3: empty soft-delete handle for %s: %w", s.uriFull(fk), providers.ErrInvalidKey)
	}
	return "", h, nil
}

// SoftDelete removes key from view, keeping its bytes (see above).
func (s *Store) SoftDelete(ctx context.Context, key string, expect providers.Object) (string, error) {
	defer s.mutating()()
	fk, err := s.full(key)
	if err != nil {
		return "", err
	}
	h := s.SoftHandle(key, expect)
	cur, err := s.current(ctx, "soft-delete", fk, expect)
	if err != nil {
		return "", err
	}
	if s.versioned {
		return h, s.softDeleteVersioned(ctx, key, fk, cur)
	}
	return h, s.softDeleteQuarantine(ctx, key, fk, h, cur)
}

func (s *Store) softDeleteVersioned(ctx context.Context, key, fk string, cur *s3.HeadObjectOutput) error {
	uri := s.uriFull(fk)
	vid := aws.ToString(cur.VersionId)
	if vid == "" {
		return fmt.Errorf("s3: soft-delete %s: the bucket is versioned but the server named no version id", uri)
	}
	if s.beforeDelete != nil {
		s.beforeDelete(key)
	}
	out, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &fk})
	if err != nil {
		return fail("soft-delete", uri, err)
	}
	marker := aws.ToString(out.VersionId)
	if marker == "" || !aws.ToBool(out.DeleteMarker) {
		return fmt.Errorf("s3: soft-delete %s: the server did not report a delete marker; check the bucket's versioning", uri)
	}
	// The entry right below the marker must be the version that was checked.
	var below *version
	if err := s.versionsFrom(ctx, fk, marker, func(v version) bool { below = &v; return false }); err != nil {
		return fmt.Errorf("s3: soft-delete %s: checking what the marker hides: %w", uri, err)
	}
	if below == nil || below.marker || below.id != vid {
		// A write landed between the HEAD and the marker: take the marker back so the
		// newer write is current again, and leave everything as it was.
		if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &fk, VersionId: &marker}); err != nil {
			return fmt.Errorf("s3: soft-delete %s: the object changed after the check, and removing the delete marker %s failed: %w", uri, marker, fail("delete marker of", uri, err))
		}
		return fmt.Errorf("s3: soft-delete %s: the object changed after the check: %w", uri, providers.ErrPrecondition)
	}
	return nil
}

func (s *Store) softDeleteQuarantine(ctx context.Context, key, fk, q string, cur *s3.HeadObjectOutput) error {
	if err := s.copyObject(ctx, "soft-delete (copy to quarantine)", q, fk, cur); err != nil {
		return err
	}
	if s.beforeDelete != nil {
		s.beforeDelete(key)
	}
	if err := s.deleteCurrent(ctx, "soft-delete", fk, cur); err != nil {
		if errors.Is(err, providers.ErrPrecondition) {
			// The original changed and stays; the quarantined copy is of a version that
			// is no longer current. Remove it (best effort: it holds no unique bytes
			// the caller asked to keep).
			s.client.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &q})
		}
		return err
	}
	return nil
}

// Restore puts the kept bytes back under key.
func (s *Store) Restore(ctx context.Context, key, handle string) error {
	defer s.mutating()()
	fk, err := s.full(key)
	if err != nil {
		return err
	}
	q, ref, err := s.handle(fk, handle)
	if err != nil {
		return err
	}
	if q != "" {
		return s.restoreQuarantine(ctx, fk, q)
	}
	return s.restoreVersion(ctx, fk, ref)
}

func (s *Store) restoreQuarantine(ctx context.Context, fk, q string) error {
	uri := s.uriFull(fk)
	qh, err := s.head(ctx, q, "")
	if err != nil {
		return fmt.Errorf("s3: restore %s: the quarantined copy: %w", uri, err)
	}
	cur, err := s.head(ctx, fk, "")
	switch {
	case err == nil:
		if trimETag(cur.ETag) == trimETag(qh.ETag) && aws.ToInt64(cur.ContentLength) == aws.ToInt64(qh.ContentLength) {
			// An earlier restore copied it back and stopped before removing the copy.
			return s.deleteQuarantined(ctx, q, qh)
		}
		return fmt.Errorf("s3: restore %s: the key holds another object: %w", uri, providers.ErrAlreadyExists)
	case !errors.Is(err, providers.ErrNotFound):
		return fmt.Errorf("s3: restore: %w", err)
	}
	if err := s.copyObject(ctx, "restore", fk, q, qh); err != nil {
		return err
	}
	return s.deleteQuarantined(ctx, q, qh)
}

func (s *Store) deleteQuarantined(ctx context.Context, q string, qh *s3.HeadObjectOutput) error {
	if err := s.deleteCurrent(ctx, "delete quarantined copy", q, qh); err != nil && !errors.Is(err, providers.ErrNotFound) {
		return err
	}
	return nil
}

// resolve returns the version id a version reference names.
func (s *Store) resolve(ctx context.Context, fk, ref string) (string, error) {
	etag, ok := strings.CutPrefix(ref, "etag:")
	if !ok {
		return ref, nil
	}
	id := ""
	err := s.versionsFrom(ctx, fk, "", func(v version) bool {
		if !v.marker && v.etag == etag {
			id = v.id
			return false
		}
		return true
	})
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("s3: %s has no version with ETag %s: %w", s.uriFull(fk), etag, providers.ErrNotFound)
	}
	return id, nil
}

// above returns the entries above version vid, newest first, and whether vid (a
// real version, not a marker) exists at all.
func (s *Store) above(ctx context.Context, fk, ref string) (vid string, above []version, found bool, err error) {
	vid, err = s.resolve(ctx, fk, ref)
	if errors.Is(err, providers.ErrNotFound) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, err
	}
	err = s.versionsFrom(ctx, fk, "", func(v version) bool {
		if v.id == vid && !v.marker {
			found = true
			return false
		}
		above = append(above, v)
		return true
	})
	return vid, above, found, err
}

func (s *Store) restoreVersion(ctx context.Context, fk, ref string) error {
	uri := s.uriFull(fk)
	vid, above, found, err := s.above(ctx, fk, ref)
	if err != nil {
		return fmt.Errorf("s3: restore %s: %w", uri, err)
	}
	if !found {
		return fmt.Errorf("s3: restore %s: version %s is gone (purged?): %w", uri, ref, providers.ErrNotFound)
	}
	for _, v := range above {
		if !v.marker {
			return fmt.Errorf("s3: restore %s: a newer version %s was written after the soft delete: %w", uri, v.id, providers.ErrAlreadyExists)
		}
	}
	for _, v := range above {
		if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &fk, VersionId: &v.id}); err != nil && !errors.Is(portable(err), providers.ErrNotFound) {
			return fail("restore (remove delete marker)", uri, err)
		}
	}
	h, err := s.head(ctx, fk, "")
	if err != nil {
		return fmt.Errorf("s3: restore: %w", err)
	}
	if got := aws.ToString(h.VersionId); got != vid {
		return fmt.Errorf("s3: restore %s: version %s was written meanwhile and is current: %w", uri, got, providers.ErrAlreadyExists)
	}
	return nil
}

// Purge removes the kept bytes for good.
func (s *Store) Purge(ctx context.Context, key, handle string) error {
	defer s.mutating()()
	fk, err := s.full(key)
	if err != nil {
		return err
	}
	q, ref, err := s.handle(fk, handle)
	if err != nil {
		return err
	}
	uri := s.uriFull(fk)
	if q != "" {
		qh, err := s.head(ctx, q, "")
		if err != nil {
			return fmt.Errorf("s3: purge %s: %w", uri, err)
		}
		return s.deleteCurrent(ctx, "purge", q, qh)
	}
	vid, _, found, err := s.above(ctx, fk, ref)
	if err != nil {
		return fmt.Errorf("s3: purge %s: %w", uri, err)
	}
	if !found {
		return fmt.Errorf("s3: purge %s: version %s: %w", uri, ref, providers.ErrNotFound)
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &fk, VersionId: &vid}); err != nil {
		return fail("purge", uri, err)
	}
	// Delete markers that hide nothing are clutter: remove them when no real
	// version of the key is left. (A write landing meanwhile is newer than them,
	// so removing them cannot change what is visible.)
	real := false
	var markers []string
	if err := s.versionsFrom(ctx, fk, "", func(v version) bool {
		if !v.marker {
			real = true
			return false
		}
		markers = append(markers, v.id)
		return true
	}); err != nil || real {
		return nil
	}
	for _, m := range markers {
		s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &fk, VersionId: &m})
	}
	return nil
}

// SoftExists reports whether the kept bytes are still there.
func (s *Store) SoftExists(ctx context.Context, key, handle string) (bool, error) {
	fk, err := s.full(key)
	if err != nil {
		return false, err
	}
	q, ref, err := s.handle(fk, handle)
	if err != nil {
		return false, err
	}
	if q != "" {
		_, err := s.head(ctx, q, "")
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, providers.ErrNotFound):
			return false, nil
		}
		return false, err
	}
	_, _, found, err := s.above(ctx, fk, ref)
	return found, err
}

// ---- server-side copies ----

// copyPartSize is the part size of a server-side multipart copy.
const copyPartSize = 512 << 20

// copyObject copies the version src's HEAD describes to dst in this bucket, only if
// src is still that version (x-amz-copy-source-if-match). Objects over 5 GiB are
// copied part by part (UploadPartCopy).
func (s *Store) copyObject(ctx context.Context, op, dst, src string, cur *s3.HeadObjectOutput) error {
	uri := s.uriFull(src)
	source := s.bucket + "/" + escapePath(src)
	if v := aws.ToString(cur.VersionId); v != "" {
		source += "?versionId=" + url.QueryEscape(v)
	}
	etag := quoteETag(trimETag(cur.ETag))
	size := aws.ToInt64(cur.ContentLength)
	if size <= maxCopySize {
		in := &s3.CopyObjectInput{
			Bucket: &s.bucket, Key: &dst, CopySource: &source, CopySourceIfMatch: etag,
			MetadataDirective: types.MetadataDirectiveCopy,
		}
		if s.kmsKeyID != "" {
			in.ServerSideEncryption, in.SSEKMSKeyId = types.ServerSideEncryptionAwsKms, &s.kmsKeyID
		}
		if _, err := s.client.CopyObject(ctx, in); err != nil {
			return fail(op, uri, err)
		}
		return nil
	}
	return s.copyLarge(ctx, op, dst, source, etag, size, cur)
}

func (s *Store) copyLarge(ctx context.Context, op, dst, source string, etag *string, size int64, cur *s3.HeadObjectOutput) (err error) {
	uri := s.uriFull(dst)
	in := &s3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: &dst, Metadata: cur.Metadata, ContentType: cur.ContentType,
		ContentEncoding: cur.ContentEncoding, ContentDisposition: cur.ContentDisposition,
		CacheControl: cur.CacheControl,
	}
	if s.kmsKeyID != "" {
		in.ServerSideEncryption, in.SSEKMSKeyId = types.ServerSideEncryptionAwsKms, &s.kmsKeyID
	}
	up, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return fail(op, uri, err)
	}
	done := false
	defer func() {
		if !done {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if _, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &dst, UploadId: up.UploadId}); aerr != nil {
				err = errors.Join(err, fail("abort multipart copy to", uri, aerr))
			}
		}
	}()
	partSize := max(int64(copyPartSize), (size+maxParts-1)/maxParts)
	n := int((size + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadParallelism)
	for i := range n {
		first := int64(i) * partSize
		last := min(first+partSize, size) - 1
		num := int32(i + 1)
		g.Go(func() error {
			out, err := s.client.UploadPartCopy(gctx, &s3.UploadPartCopyInput{
				Bucket: &s.bucket, Key: &dst, UploadId: up.UploadId, PartNumber: &num,
				CopySource: &source, CopySourceIfMatch: etag,
				CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", first, last)),
			})
			if err != nil {
				return fail(fmt.Sprintf("%s: copy part %d of %d to", op, num, n), uri, err)
			}
			parts[num-1] = types.CompletedPart{PartNumber: &num, ETag: out.CopyPartResult.ETag}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if _, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &dst, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		return fail(op, uri, err)
	}
	done = true
	return nil
}

// escapePath percent-encodes a key for x-amz-copy-source: everything but RFC 3986
// unreserved characters and "/" (so "+" is %2B and never read as a space).
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
