package azblob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/ferrymigrate/ferry/providers"
)

// Metadata keys a quarantined copy carries (before escaping).
const (
	metaQuarantinedFrom = "ferry-quarantined-from"
	metaOriginalETag    = "ferry-original-etag"
)

func ifMatch(etag string) *blob.AccessConditions {
	e := azcore.ETag(etag)
	return &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &e}}
}

func ifNoneMatchAny() *blob.AccessConditions {
	e := azcore.ETagAny
	return &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: &e}}
}

// deleteBlob deletes name: the base blob (with If-Match when etag is set), or one
// version of it.
func (s *Store) deleteBlob(ctx context.Context, name, etag, versionID string) error {
	c := s.blob(name)
	var opts blob.DeleteOptions
	if versionID != "" {
		var err error
		if c, err = c.WithVersionID(versionID); err != nil {
			return err
		}
	} else {
		// Snapshots belong to the blob; a blob that has some cannot be deleted alone.
		inc := blob.DeleteSnapshotsOptionTypeInclude
		opts.DeleteSnapshots = &inc
	}
	if etag != "" {
		opts.AccessConditions = ifMatch(etag)
	}
	_, err := c.Delete(ctx, &opts)
	return err
}

// retained describes why name cannot be deleted, after Azure refused a delete for
// an immutability policy or a legal hold: the policy's mode and expiry, the hold.
func (s *Store) retained(ctx context.Context, op, name, versionID string, err error) error {
	reason := "an immutability policy or legal hold"
	if p, perr := s.getProps(ctx, name, versionID); perr == nil {
		var why []string
		if p.legalHold {
			why = append(why, "a legal hold")
		}
		if !p.immutableTill.IsZero() {
			mode := p.immutableMode
			if mode == "" {
				mode = "time-based"
			}
			why = append(why, fmt.Sprintf("an immutability policy (%s) until %s", strings.ToLower(mode), p.immutableTill.UTC().Format(time.RFC3339)))
		}
		if len(why) > 0 {
			reason = strings.Join(why, " and ")
		} else {
			reason = "a container-level immutability policy or legal hold"
		}
	}
	return fmt.Errorf("azblob: %s %s: undeletable: protected by %s: %w: %w", op, s.uriOf(name), reason, providers.ErrRetained, shortError{redact(err)})
}

// checkRetention refuses, before anything is copied, a blob that its own
// properties show protected: a legal hold, an immutability policy not yet expired.
// (A container-level policy shows only when Azure refuses the delete.)
func (s *Store) checkRetention(op, name string, p props) error {
	if !p.legalHold && !p.immutableTill.After(time.Now()) {
		return nil
	}
	var why []string
	if p.legalHold {
		why = append(why, "a legal hold")
	}
	if p.immutableTill.After(time.Now()) {
		why = append(why, fmt.Sprintf("an immutability policy (%s) until %s", strings.ToLower(p.immutableMode), p.immutableTill.UTC().Format(time.RFC3339)))
	}
	return fmt.Errorf("azblob: %s %s: undeletable: protected by %s: %w", op, s.uriOf(name), strings.Join(why, " and "), providers.ErrRetained)
}

// deleteFail maps a delete's error; an immutable blob names its protection.
func (s *Store) deleteFail(ctx context.Context, op, name, versionID string, err error) error {
	if code, _, ok := respError(err); ok && retainedCode(code) {
		return s.retained(ctx, op, name, versionID, err)
	}
	return s.fail(op, name, err)
}

// Delete removes key unconditionally (on a versioned account the current version
// becomes a previous version).
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.blobName("delete", key)
	if err != nil {
		return err
	}
	if err := s.deleteBlob(ctx, name, "", ""); err != nil {
		return s.deleteFail(ctx, "delete", name, "", err)
	}
	return nil
}

// current reads key's properties and checks it is still the version expect names.
func (s *Store) current(ctx context.Context, op, name string, expect providers.Object) (props, error) {
	if expect.ETag == "" {
		return props{}, fmt.Errorf("azblob: %s %s: the expected version has no ETag: %w", op, s.uriOf(name), providers.ErrPrecondition)
	}
	p, err := s.getProps(ctx, name, "")
	if err != nil {
		return props{}, s.fail(op, name, err)
	}
	if p.etag != expect.ETag || (expect.Version != "" && p.version != "" && p.version != expect.Version) {
		return props{}, fmt.Errorf("azblob: %s %s: now etag %s version %s, expected etag %s version %s: %w",
			op, s.uriOf(name), p.etag, p.version, expect.ETag, expect.Version, providers.ErrPrecondition)
	}
	return p, nil
}

// DeleteIf deletes key only if it is still the version expect names: Delete Blob
// with If-Match; a refusal is told apart by a properties read (a missing blob is
// ErrNotFound, never a success; a changed one ErrPrecondition). On a
// versioned account a properties read first names the current version, and the
// verified version, a previous version after the delete, is then deleted by its
// id; older versions, never verified, are left alone.
func (s *Store) DeleteIf(ctx context.Context, key string, expect providers.Object) error {
	name, err := s.blobName("delete", key)
	if err != nil {
		return err
	}
	if expect.ETag != "" && expect.Version == "" && !s.versioned.Load() {
		// Unversioned: the conditional delete alone, and only a refusal is looked at
		// (If-Match on a missing blob is 412 too: absence must read as ErrNotFound).
		err := s.deleteBlob(ctx, name, expect.ETag, "")
		if err == nil {
			return nil
		}
		if isStatus(err, 412) {
			if _, herr := s.getProps(ctx, name, ""); isStatus(herr, 404) {
				return s.fail("delete", name, herr)
			}
		}
		return s.deleteFail(ctx, "delete", name, "", err)
	}
	p, err := s.current(ctx, "delete", name, expect)
	if err != nil {
		return err
	}
	if err := s.deleteBlob(ctx, name, expect.ETag, ""); err != nil {
		return s.deleteFail(ctx, "delete", name, "", err)
	}
	if p.version != "" {
		if err := s.deleteBlob(ctx, name, "", p.version); err != nil && !isStatus(err, 404) {
			return s.deleteFail(ctx, "delete (version "+p.version+")", name, p.version, err)
		}
	}
	return nil
}

// Soft deletes. A handle is either a version id (versioned account: the verified
// version, kept as a previous version) or the name of a quarantined copy (it
// starts with the quarantine prefix). Both are functions of key and expect alone.

// SoftHandle returns the handle SoftDelete(key, expect) returns, without a call.
func (s *Store) SoftHandle(key string, expect providers.Object) string {
	if expect.Version != "" {
		return expect.Version
	}
	return s.quarantineName(key, expect.ETag)
}

// quarantineName is where key's version etag is kept: the quarantine prefix, the
// full blob name and the ETag (its quotes removed); a hash when that would be too
// long.
func (s *Store) quarantineName(key, etag string) string {
	n := s.quarantine + s.prefix + key + "@" + strings.Trim(etag, `"`)
	if len([]rune(n)) > MaxBlobName {
		sum := sha256.Sum256([]byte(s.prefix + key + "\x00" + etag))
		n = s.quarantine + "h/" + hex.EncodeToString(sum[:])
	}
	return n
}

func (s *Store) isQuarantineHandle(handle string) bool {
	return strings.HasPrefix(handle, s.quarantine)
}

// checkHandle validates key and handle together and returns the blob name.
func (s *Store) checkHandle(op, key, handle string) (string, error) {
	name, err := s.blobName(op, key)
	if err != nil {
		return "", err
	}
	bad := func() (string, error) {
		return "", fmt.Errorf("azblob: %s %q: handle %q does not name kept bytes of this key: %w", op, key, handle, providers.ErrInvalidKey)
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
	case strings.ContainsAny(handle, "/\x00?&"):
		return bad()
	}
	return name, nil
}

// SoftDelete hides key but keeps its bytes: as a previous version on a versioned
// account, else in a quarantined copy. It is conditional like DeleteIf.
func (s *Store) SoftDelete(ctx context.Context, key string, expect providers.Object) (string, error) {
	name, err := s.blobName("soft delete", key)
	if err != nil {
		return "", err
	}
	p, err := s.current(ctx, "soft delete", name, expect)
	if err != nil {
		return "", err
	}
	if err := s.checkRetention("soft delete", name, p); err != nil {
		return "", err
	}
	handle := s.SoftHandle(key, expect)
	if !s.isQuarantineHandle(handle) {
		// Deleting the base blob keeps exactly this version as a previous version.
		if err := s.deleteBlob(ctx, name, expect.ETag, ""); err != nil {
			return "", s.deleteFail(ctx, "soft delete", name, "", err)
		}
		return handle, nil
	}
	if err := s.quarantineCopy(ctx, name, handle, p, expect); err != nil {
		return "", err
	}
	if err := s.deleteBlob(ctx, name, expect.ETag, ""); err != nil {
		if isStatus(err, 412) || retainedCode(func() string { c, _, _ := respError(err); return c }()) {
			// Replaced since the copy, or not deletable: the copy is not ours to keep.
			cctx, cancel := cleanupContext(ctx)
			s.deleteBlob(cctx, handle, "", "")
			cancel()
		}
		return "", s.deleteFail(ctx, "soft delete", name, "", err)
	}
	if p.version != "" {
		// Versioning came on after the plan: the version stays as a previous version
		// too; remove it, the quarantined copy is what Restore and Purge use.
		if err := s.deleteBlob(ctx, name, "", p.version); err != nil && !isStatus(err, 404) {
			return "", s.deleteFail(ctx, "soft delete (version "+p.version+")", name, p.version, err)
		}
	}
	return handle, nil
}

func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// quarantineCopy copies the current version p of name to handle, server-side,
// unless an earlier attempt already did.
func (s *Store) quarantineCopy(ctx context.Context, name, handle string, p props, expect providers.Object) error {
	meta := decodeMeta(p.meta)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[metaQuarantinedFrom] = name
	meta[metaOriginalETag] = expect.ETag
	err := s.copyBlob(ctx, name, expect.ETag, "", handle, p, meta, true)
	if !errors.Is(err, providers.ErrAlreadyExists) {
		return err
	}
	q, err := s.getProps(ctx, handle, "")
	if isStatus(err, 404) {
		// No copy there: the refusal was the source's If-Match (a server that does
		// not say SourceConditionNotMet). The blob changed since it was checked.
		return fmt.Errorf("azblob: soft delete %s: changed while being quarantined: %w", s.uriOf(name), providers.ErrPrecondition)
	}
	if err != nil {
		return s.fail("soft delete (check quarantine)", handle, err)
	}
	if q.size == p.size && md5hex(q.md5) == md5hex(p.md5) && decodeMeta(q.meta)[metaOriginalETag] == expect.ETag {
		return nil // copied by an attempt that stopped before the delete
	}
	return s.copyBlob(ctx, name, expect.ETag, "", handle, p, meta, false)
}

// copyBlob copies name (at version etag, or versionID) to dst with Copy Blob and
// waits for the copy to finish, then checks its size and MD5 against the source.
// ifAbsent makes the copy fail with ErrAlreadyExists when dst exists.
func (s *Store) copyBlob(ctx context.Context, name, etag, versionID, dst string, src props, meta map[string]string, ifAbsent bool) error {
	emeta, err := encodeMeta(meta)
	if err != nil {
		return err
	}
	srcClient := s.blob(name)
	if versionID != "" {
		if srcClient, err = srcClient.WithVersionID(versionID); err != nil {
			return err
		}
	}
	opts := &blob.StartCopyFromURLOptions{Metadata: emeta}
	if etag != "" {
		e := azcore.ETag(etag)
		opts.SourceModifiedAccessConditions = &blob.SourceModifiedAccessConditions{SourceIfMatch: &e}
	}
	if ifAbsent {
		opts.AccessConditions = ifNoneMatchAny()
	}
	dc := s.blob(dst)
	if _, err := dc.StartCopyFromURL(ctx, srcClient.URL(), opts); err != nil {
		if isCode(err, "SourceConditionNotMet") {
			return fmt.Errorf("azblob: copy %s: the source changed: %w", s.uriOf(name), providers.ErrPrecondition)
		}
		if ifAbsent && (isStatus(err, 412) || isCode(err, "BlobAlreadyExists")) {
			return fmt.Errorf("azblob: copy to %s: %w", s.uriOf(dst), providers.ErrAlreadyExists)
		}
		return s.fail("copy "+s.uriOf(name)+" to", dst, err)
	}
	delay := 100 * time.Millisecond
	var q props
	for {
		r, err := dc.GetProperties(ctx, nil)
		if err != nil {
			return s.fail("copy (status)", dst, err)
		}
		status := string(deref(r.CopyStatus))
		q = props{etag: etagOf(r.ETag), size: deref(r.ContentLength), md5: r.ContentMD5}
		if status != string(blob.CopyStatusTypePending) {
			if status != "" && status != string(blob.CopyStatusTypeSuccess) {
				return fmt.Errorf("azblob: copy %s to %s: copy status %s: %s", s.uriOf(name), s.uriOf(dst), status, deref(r.CopyStatusDescription))
			}
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("azblob: copy %s to %s: %w", s.uriOf(name), s.uriOf(dst), ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
	if q.size != src.size || (md5hex(src.md5) != "" && md5hex(q.md5) != md5hex(src.md5)) {
		cctx, cancel := cleanupContext(ctx)
		s.deleteBlob(cctx, dst, q.etag, "")
		cancel()
		return fmt.Errorf("azblob: copy %s to %s: the copy has %d bytes md5 %s, the source %d bytes md5 %s: %w",
			s.uriOf(name), s.uriOf(dst), q.size, md5hex(q.md5), src.size, md5hex(src.md5), providers.ErrChecksum)
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

// restoreVersion copies the kept previous version back over the base blob, which
// must be absent (or already be that version's bytes, from an earlier restore).
func (s *Store) restoreVersion(ctx context.Context, name, vid string) error {
	v, err := s.getProps(ctx, name, vid)
	if err != nil {
		return s.fail("restore", name, err)
	}
	cur, err := s.getProps(ctx, name, "")
	switch {
	case err == nil && (cur.version == vid || restoredFrom(cur, vid)):
		return nil // restored already
	case err == nil:
		return fmt.Errorf("azblob: restore %s: the key holds another version (%s): %w", s.uriOf(name), cur.version, providers.ErrAlreadyExists)
	case !isStatus(err, 404):
		return s.fail("restore", name, err)
	}
	meta := decodeMeta(v.meta)
	if meta == nil {
		meta = map[string]string{}
	}
	meta["ferry-restored-from-version"] = vid
	if err := s.copyBlob(ctx, name, "", vid, name, v, meta, true); err != nil {
		return err
	}
	return nil
}

func restoredFrom(p props, vid string) bool {
	return decodeMeta(p.meta)["ferry-restored-from-version"] == vid
}

func (s *Store) restoreQuarantined(ctx context.Context, key, name, handle string) error {
	q, err := s.getProps(ctx, handle, "")
	if err != nil {
		return s.fail("restore", handle, err)
	}
	meta := decodeMeta(q.meta)
	if meta[metaQuarantinedFrom] != name {
		return fmt.Errorf("azblob: restore %q: %s was quarantined from %q: %w", key, s.uriOf(handle), meta[metaQuarantinedFrom], providers.ErrInvalidKey)
	}
	delete(meta, metaQuarantinedFrom)
	delete(meta, metaOriginalETag)
	if err := s.copyBlob(ctx, handle, q.etag, "", name, q, meta, true); err != nil {
		if !errors.Is(err, providers.ErrAlreadyExists) {
			return err
		}
		// Taken: by an earlier restore that stopped before removing the copy (same
		// bytes), or by someone else.
		cur, herr := s.getProps(ctx, name, "")
		if herr != nil || cur.size != q.size || md5hex(cur.md5) == "" || md5hex(cur.md5) != md5hex(q.md5) {
			return fmt.Errorf("azblob: restore %s: %w", s.uriOf(name), providers.ErrAlreadyExists)
		}
	}
	if err := s.deleteBlob(ctx, handle, q.etag, ""); err != nil && !isStatus(err, 404) {
		return s.fail("restore (remove quarantined copy)", handle, err)
	}
	return nil
}

// Purge removes the kept bytes for good: the quarantined copy, or the previous
// version (never the live blob of a restored key). Blob soft delete, where on,
// keeps them recoverable by Azure for its retention days (Recoverability).
func (s *Store) Purge(ctx context.Context, key, handle string) error {
	name, err := s.checkHandle("purge", key, handle)
	if err != nil {
		return err
	}
	if s.isQuarantineHandle(handle) {
		if err := s.deleteBlob(ctx, handle, "", ""); err != nil {
			return s.deleteFail(ctx, "purge", handle, "", err)
		}
		return nil
	}
	if cur, err := s.getProps(ctx, name, ""); err == nil && cur.version == handle {
		return fmt.Errorf("azblob: purge %s: version %s is live again (restored); not purging it: %w",
			s.uriOf(name), handle, providers.ErrPrecondition)
	} else if err != nil && !isStatus(err, 404) {
		return s.fail("purge", name, err)
	}
	if err := s.deleteBlob(ctx, name, "", handle); err != nil {
		return s.deleteFail(ctx, "purge", name, handle, err)
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
	p, err := s.getProps(ctx, target, vid)
	if err != nil {
		if isStatus(err, 404) && !isCode(err, "ContainerNotFound") {
			return false, nil
		}
		return false, s.fail("soft exists", target, err)
	}
	if vid != "" && p.current {
		return false, nil // live again: not kept bytes
	}
	return true, nil
}
