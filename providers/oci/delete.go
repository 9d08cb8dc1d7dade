package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/oracle/oci-go-sdk/v65/common"
	"github.com/oracle/oci-go-sdk/v65/objectstorage"

	"github.com/ferrymigrate/ferry/providers"
)

// Metadata keys a quarantined copy carries.
const (
	metaQuarantinedFrom = "ferry-quarantined-from"
	metaOriginalETag    = "ferry-original-etag"
)

func (s *Store) deleteObject(ctx context.Context, name, ifMatch, versionID string) error {
	req := objectstorage.DeleteObjectRequest{NamespaceName: &s.ns, BucketName: &s.bucket, ObjectName: &name}
	if ifMatch != "" {
		req.IfMatch = common.String(ifMatch)
	}
	if versionID != "" {
		req.VersionId = common.String(versionID)
	}
	_, err := s.client.DeleteObject(ctx, req)
	return err
}

// Delete removes key unconditionally (in a versioned bucket: a delete marker).
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.object("delete", key)
	if err != nil {
		return err
	}
	if err := s.deleteObject(ctx, name, "", ""); err != nil {
		return s.fail("delete", name, err)
	}
	return nil
}

// current HEADs key and checks it is still the version expect names.
func (s *Store) current(ctx context.Context, op, name string, expect providers.Object) (head, error) {
	if expect.ETag == "" {
		return head{}, fmt.Errorf("oci: %s %s: the expected version has no ETag: %w", op, s.uriOf(name), providers.ErrPrecondition)
	}
	h, err := s.headObject(ctx, name, "")
	if err != nil {
		return head{}, s.fail(op, name, err)
	}
	if h.etag != expect.ETag || (s.versioned && expect.Version != "" && h.version != expect.Version) {
		return head{}, fmt.Errorf("oci: %s %s: now etag %s version %s, expected etag %s version %s: %w",
			op, s.uriOf(name), h.etag, h.version, expect.ETag, expect.Version, providers.ErrPrecondition)
	}
	return h, nil
}

// DeleteIf deletes key only if it is still the version expect names: a HEAD (so a
// missing object is ErrNotFound, never a success), then DeleteObject with If-Match,
// and in a versioned bucket the versionId of exactly that version. Older versions
// of the key, never verified, are left alone.
func (s *Store) DeleteIf(ctx context.Context, key string, expect providers.Object) error {
	name, err := s.object("delete", key)
	if err != nil {
		return err
	}
	h, err := s.current(ctx, "delete", name, expect)
	if err != nil {
		return err
	}
	vid := ""
	if s.versioned {
		vid = h.version
	}
	if err := s.deleteObject(ctx, name, expect.ETag, vid); err != nil {
		return s.fail("delete", name, err)
	}
	return nil
}

// Soft deletes. A handle is either a version id (versioned bucket: the version
// behind a delete marker) or the name of a quarantined copy (it starts with the
// quarantine prefix). Both are functions of key and expect alone.

// SoftHandle returns the handle SoftDelete(key, expect) returns, without a call.
func (s *Store) SoftHandle(key string, expect providers.Object) string {
	if s.versioned && expect.Version != "" {
		return expect.Version
	}
	return s.quarantineName(key, expect.ETag)
}

// quarantineName is where key's version etag is kept: the quarantine prefix, the
// full object name and the ETag; a hash when that would be too long.
func (s *Store) quarantineName(key, etag string) string {
	n := s.quarantine + s.prefix + key + "@" + etag
	if len(n) > MaxObjectName {
		sum := sha256.Sum256([]byte(s.prefix + key + "\x00" + etag))
		n = s.quarantine + "h/" + hex.EncodeToString(sum[:])
	}
	return n
}

func (s *Store) isQuarantineHandle(handle string) bool {
	return strings.HasPrefix(handle, s.quarantine)
}

// checkHandle validates key and handle together and returns the object name.
func (s *Store) checkHandle(op, key, handle string) (string, error) {
	name, err := s.object(op, key)
	if err != nil {
		return "", err
	}
	bad := func() (string, error) {
		return "", fmt.Errorf("oci: %s %q: handle %q does not name kept bytes of this key: %w", op, key, handle, providers.ErrInvalidKey)
	}
	switch {
	case handle == "":
		return bad()
	case s.isQuarantineHandle(handle):
		if strings.HasPrefix(handle, s.quarantine+"h/") {
			return name, nil // hashed form: the copy's metadata is checked when read
		}
		etag, ok := strings.CutPrefix(handle, s.quarantine+name+"@")
		if !ok || etag == "" || strings.Contains(etag, "/") {
			return bad()
		}
	case strings.ContainsAny(handle, "/\x00") || !s.versioned:
		return bad()
	}
	return name, nil
}

// SoftDelete hides key but keeps its bytes: behind a delete marker in a versioned
// bucket, else in a quarantined copy. It is conditional like DeleteIf.
func (s *Store) SoftDelete(ctx context.Context, key string, expect providers.Object) (string, error) {
	name, err := s.object("soft delete", key)
	if err != nil {
		return "", err
	}
	h, err := s.current(ctx, "soft delete", name, expect)
	if err != nil {
		return "", err
	}
	handle := s.SoftHandle(key, expect)
	if !s.isQuarantineHandle(handle) {
		// A delete marker on top of exactly this version.
		if err := s.deleteObject(ctx, name, expect.ETag, ""); err != nil {
			return "", s.fail("soft delete", name, err)
		}
		return handle, nil
	}
	if err := s.quarantineCopy(ctx, name, handle, h, expect); err != nil {
		return "", err
	}
	vid := ""
	if s.versioned {
		vid = h.version
	}
	if err := s.deleteObject(ctx, name, expect.ETag, vid); err != nil {
		if isStatus(err, 412) {
			// Someone replaced the object since the copy: it is not ours to keep.
			cctx, cancel := cleanupContext(ctx)
			s.deleteObject(cctx, handle, "", "")
			cancel()
		}
		return "", s.fail("soft delete", name, err)
	}
	return handle, nil
}

// quarantineCopy copies the current version h of name to handle (GET with If-Match,
// then a verified PUT), unless an earlier attempt already did.
func (s *Store) quarantineCopy(ctx context.Context, name, handle string, h head, expect providers.Object) error {
	if q, err := s.headObject(ctx, handle, ""); err == nil {
		if q.size == h.size && deref(q.crc32c) != "" && deref(q.crc32c) == deref(h.crc32c) &&
			decodeMeta(q.meta)[metaOriginalETag] == expect.ETag {
			return nil // copied by an attempt that stopped before the delete
		}
	} else if !isStatus(err, 404) {
		return s.fail("soft delete (check quarantine)", handle, err)
	}
	meta := decodeMeta(h.meta)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[metaQuarantinedFrom] = name
	meta[metaOriginalETag] = expect.ETag
	return s.copyObject(ctx, name, expect.ETag, handle, h, meta, false)
}

// copyObject copies name (at version etag, described by h) to dst, checking the
// copy's checksums against the source's. OCI's CopyObject is an asynchronous,
// cross-region work request; a streamed GET and PUT is simpler and verifiable.
func (s *Store) copyObject(ctx context.Context, name, etag, dst string, h head, meta map[string]string, ifAbsent bool) error {
	r, err := s.client.GetObject(ctx, objectstorage.GetObjectRequest{NamespaceName: &s.ns, BucketName: &s.bucket,
		ObjectName: &name, IfMatch: common.String(etag)})
	if err != nil {
		return s.fail("copy (read)", name, err)
	}
	src := s.objectOf("", h)
	rd := newVerifier(r.Content, src, s.uriOf(name))
	defer rd.Close()
	opts := providers.PutOptions{SHA256: src.Checksums.SHA256, CRC32C: src.Checksums.CRC32C, Metadata: meta}
	o, err := s.put(ctx, "", dst, rd, h.size, opts, ifAbsent)
	if err != nil {
		return err
	}
	if src.Checksums.CRC32C != "" && o.Checksums.CRC32C == "" {
		// A single put reports the checksum it was asked to check; make sure.
		q, err := s.headObject(ctx, dst, "")
		if err != nil {
			return s.fail("copy (verify)", dst, err)
		}
		if got := b64hex(q.crc32c, 4); got != src.Checksums.CRC32C {
			cctx, cancel := cleanupContext(ctx)
			s.deleteObject(cctx, dst, q.etag, "")
			cancel()
			return fmt.Errorf("oci: copy %s to %s: the copy has crc32c %s, the source %s: %w",
				s.uriOf(name), s.uriOf(dst), got, src.Checksums.CRC32C, providers.ErrChecksum)
		}
	}
	return nil
}

// Restore puts the kept bytes back under key; ErrAlreadyExists if key is taken.
func (s *Store) Restore(ctx context.Context, key, handle string) error {
	name, err := s.checkHandle("restore", key, handle)
	if err != nil {
		return err
	}
	if s.isQuarantineHandle(handle) {
		return s.restoreQuarantined(ctx, key, name, handle)
	}
	return s.restoreVersion(ctx, name, handle)
}

func (s *Store) restoreVersion(ctx context.Context, name, vid string) error {
	if _, err := s.headObject(ctx, name, vid); err != nil {
		return s.fail("restore", name, err)
	}
	cur, err := s.headObject(ctx, name, "")
	switch {
	case err == nil && cur.version == vid:
		return nil // restored already
	case err == nil:
		return fmt.Errorf("oci: restore %s: the key holds another version (%s): %w", s.uriOf(name), cur.version, providers.ErrAlreadyExists)
	case !isStatus(err, 404):
		return s.fail("restore", name, err)
	}
	// Everything newer than the kept version must be a delete marker; remove them.
	newer, err := s.versionsNewerThan(ctx, name, vid)
	if err != nil {
		return err
	}
	for _, v := range newer {
		if !deref(v.IsDeleteMarker) {
			return fmt.Errorf("oci: restore %s: a newer version %s was written (and deleted) since: %w",
				s.uriOf(name), deref(v.VersionId), providers.ErrAlreadyExists)
		}
	}
	for _, v := range newer {
		if err := s.deleteObject(ctx, name, "", deref(v.VersionId)); err != nil && !isStatus(err, 404) {
			return s.fail("restore (remove delete marker)", name, err)
		}
	}
	cur, err = s.headObject(ctx, name, "")
	if err != nil {
		return s.fail("restore (confirm)", name, err)
	}
	if cur.version != vid {
		return fmt.Errorf("oci: restore %s: the key now holds version %s, not %s: %w", s.uriOf(name), cur.version, vid, providers.ErrAlreadyExists)
	}
	return nil
}

// versionsNewerThan lists name's versions newer than vid (newest first); it fails
// with ErrNotFound if vid is not among them.
func (s *Store) versionsNewerThan(ctx context.Context, name, vid string) ([]objectstorage.ObjectVersionSummary, error) {
	var out []objectstorage.ObjectVersionSummary
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
			if n < name {
				continue
			}
			if n > name {
				return nil, fmt.Errorf("oci: version %s of %s: %w", vid, s.uriOf(name), providers.ErrNotFound)
			}
			if deref(it.VersionId) == vid {
				return out, nil
			}
			out = append(out, it)
		}
		if resp.OpcNextPage == nil || *resp.OpcNextPage == "" || seen[*resp.OpcNextPage] {
			return nil, fmt.Errorf("oci: version %s of %s: %w", vid, s.uriOf(name), providers.ErrNotFound)
		}
		seen[*resp.OpcNextPage] = true
		token = resp.OpcNextPage
	}
}

func (s *Store) restoreQuarantined(ctx context.Context, key, name, handle string) error {
	q, err := s.headObject(ctx, handle, "")
	if err != nil {
		return s.fail("restore", handle, err)
	}
	meta := decodeMeta(q.meta)
	if meta[metaQuarantinedFrom] != name {
		return fmt.Errorf("oci: restore %q: %s was quarantined from %q: %w", key, s.uriOf(handle), meta[metaQuarantinedFrom], providers.ErrInvalidKey)
	}
	delete(meta, metaQuarantinedFrom)
	delete(meta, metaOriginalETag)
	err = s.copyObject(ctx, handle, q.etag, name, q, meta, true)
	if err != nil {
		if !isAlreadyExists(err) {
			return err
		}
		// Taken: by an earlier restore that stopped before removing the copy (same
		// bytes), or by someone else.
		cur, herr := s.headObject(ctx, name, "")
		if herr != nil || cur.size != q.size || deref(cur.crc32c) == "" || deref(cur.crc32c) != deref(q.crc32c) {
			return fmt.Errorf("oci: restore %s: %w", s.uriOf(name), providers.ErrAlreadyExists)
		}
	}
	if err := s.deleteObject(ctx, handle, q.etag, ""); err != nil && !isStatus(err, 404) {
		return s.fail("restore (remove quarantined copy)", handle, err)
	}
	return nil
}

func isAlreadyExists(err error) bool { return errors.Is(err, providers.ErrAlreadyExists) }

// Purge removes the kept bytes for good: the quarantined copy, or the version
// behind the delete marker (never the live version of a restored key).
func (s *Store) Purge(ctx context.Context, key, handle string) error {
	name, err := s.checkHandle("purge", key, handle)
	if err != nil {
		return err
	}
	if s.isQuarantineHandle(handle) {
		if err := s.deleteObject(ctx, handle, "", ""); err != nil {
			return s.fail("purge", handle, err)
		}
		return nil
	}
	if cur, err := s.headObject(ctx, name, ""); err == nil && cur.version == handle {
		return fmt.Errorf("oci: purge %s: version %s is live again (restored); not purging it: %w",
			s.uriOf(name), handle, providers.ErrPrecondition)
	} else if err != nil && !isStatus(err, 404) {
		return s.fail("purge", name, err)
	}
	if err := s.deleteObject(ctx, name, "", handle); err != nil {
		return s.fail("purge", name, err)
	}
	return nil
}

// SoftExists reports whether the kept bytes named by handle are still there.
func (s *Store) SoftExists(ctx context.Context, key, handle string) (bool, error) {
	name, err := s.checkHandle("soft exists", key, handle)
	if err != nil {
		return false, err
	}
	target, vid := handle, ""
	if !s.isQuarantineHandle(handle) {
		target, vid = name, handle
	}
	if _, err := s.headObject(ctx, target, vid); err != nil {
		if isStatus(err, 404) {
			return false, nil
		}
		return false, s.fail("soft exists", target, err)
	}
	return true, nil
}
