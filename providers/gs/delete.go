package gs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/storage"

	"github.com/ferrymigrate/ferry/providers"
)

// Metadata keys a quarantined copy carries.
const (
	metaQuarantinedFrom    = "ferry-quarantined-from"
	metaOriginalGeneration = "ferry-original-generation"
	// metaRestoredFrom marks a live object restored from a noncurrent generation.
	metaRestoredFrom = "ferry-restored-from-generation"
)

// cleanupTimeout bounds a cleanup made after the caller's context ended.
const cleanupTimeout = 30 * time.Second

func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// Delete removes key's live generation unconditionally (in a versioned bucket it
// becomes noncurrent).
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.object("delete", key)
	if err != nil {
		return err
	}
	if err := s.bucket.Object(name).Delete(ctx); err != nil {
		return s.fail("delete", name, err)
	}
	return nil
}

// heldReason says why GCS would refuse to delete the object now, or "".
func heldReason(a *storage.ObjectAttrs, now time.Time) string {
	var why []string
	if a.EventBasedHold {
		why = append(why, "an event-based hold")
	}
	if a.TemporaryHold {
		why = append(why, "a temporary hold")
	}
	if t := a.RetentionExpirationTime; !t.IsZero() && now.Before(t) {
		why = append(why, "the bucket's retention policy until "+t.UTC().Format(time.RFC3339))
	}
	if r := a.Retention; r != nil && !r.RetainUntil.IsZero() && now.Before(r.RetainUntil) {
		why = append(why, fmt.Sprintf("object retention (%s) until %s", strings.ToLower(r.Mode), r.RetainUntil.UTC().Format(time.RFC3339)))
	}
	return strings.Join(why, " and ")
}

// current reads name's live generation and checks it is the one expect names, and
// that GCS would let it go (no hold, no unexpired retention).
func (s *Store) current(ctx context.Context, op, name string, expect providers.Object) (*storage.ObjectAttrs, error) {
	gen, ok := generationOf(expect)
	if !ok {
		return nil, fmt.Errorf("gs: %s %s: the expected version names no generation: %w", op, s.uriOf(name), providers.ErrPrecondition)
	}
	a, err := s.bucket.Object(name).Attrs(ctx)
	if err != nil {
		return nil, s.fail(op, name, err)
	}
	if a.Generation != gen {
		return nil, fmt.Errorf("gs: %s %s: now generation %d, expected %d: %w", op, s.uriOf(name), a.Generation, gen, providers.ErrPrecondition)
	}
	if why := heldReason(a, time.Now()); why != "" {
		return nil, fmt.Errorf("gs: %s %s: protected by %s: %w", op, s.uriOf(name), why, providers.ErrRetained)
	}
	return a, nil
}

// DeleteIf deletes key only if its live generation is still the one expect names:
// a metadata read (a missing object is ErrNotFound, a held or retained one
// ErrRetained), then a delete with ifGenerationMatch. In a versioned bucket the
// delete names that generation, so it is removed for good rather than kept as a
// noncurrent version; older generations, never verified, are left alone.
func (s *Store) DeleteIf(ctx context.Context, key string, expect providers.Object) error {
	name, err := s.object("delete", key)
	if err != nil {
		return err
	}
	a, err := s.current(ctx, "delete", name, expect)
	if err != nil {
		return err
	}
	h := s.bucket.Object(name)
	if s.versioned() {
		h = h.Generation(a.Generation)
	}
	if err := h.If(storage.Conditions{GenerationMatch: a.Generation}).Delete(ctx); err != nil {
		return s.fail("delete", name, err)
	}
	return nil
}

// Soft deletes. A handle is either a generation (versioned bucket: the generation
// made noncurrent) or the name of a quarantined copy (it starts with the quarantine
// prefix). Both are functions of key and expect alone.

// SoftHandle returns the handle SoftDelete(key, expect) returns, without a call.
func (s *Store) SoftHandle(key string, expect providers.Object) string {
	gen, _ := generationOf(expect)
	if s.versioned() && gen > 0 {
		return genString(gen)
	}
	return s.quarantineName(key, genString(gen))
}

// quarantineName is where key's generation gen is kept: the quarantine prefix, the
// full object name and the generation; a hash when that would be too long.
func (s *Store) quarantineName(key, gen string) string {
	n := s.quarantine + s.prefix + key + "@" + gen
	if len(n) > MaxObjectName {
		sum := sha256.Sum256([]byte(s.prefix + key + "\x00" + gen))
		n = s.quarantine + "h/" + hex.EncodeToString(sum[:])
	}
	return n
}

func (s *Store) isQuarantineHandle(handle string) bool {
	return strings.HasPrefix(handle, s.quarantine)
}

// checkHandle validates key and handle together and returns the object name and,
// for a generation handle, the generation.
func (s *Store) checkHandle(op, key, handle string) (string, int64, error) {
	name, err := s.object(op, key)
	if err != nil {
		return "", 0, err
	}
	bad := func() (string, int64, error) {
		return "", 0, fmt.Errorf("gs: %s %q: handle %q does not name kept bytes of this key: %w", op, key, handle, providers.ErrInvalidKey)
	}
	switch {
	case handle == "":
		return bad()
	case s.isQuarantineHandle(handle):
		if strings.HasPrefix(handle, s.quarantine+"h/") {
			return name, 0, nil // hashed form: the copy's metadata is checked when read
		}
		gen, ok := strings.CutPrefix(handle, s.quarantine+name+"@")
		if !ok || gen == "" || strings.Contains(gen, "/") {
			return bad()
		}
		return name, 0, nil
	}
	gen, err := strconv.ParseInt(handle, 10, 64)
	if err != nil || gen <= 0 {
		return bad()
	}
	return name, gen, nil
}

// SoftDelete hides key but keeps its bytes: as a noncurrent generation in a
// versioned bucket, else in a quarantined copy. It is conditional like DeleteIf.
func (s *Store) SoftDelete(ctx context.Context, key string, expect providers.Object) (string, error) {
	name, err := s.object("soft delete", key)
	if err != nil {
		return "", err
	}
	a, err := s.current(ctx, "soft delete", name, expect)
	if err != nil {
		return "", err
	}
	handle := s.SoftHandle(key, expect)
	cond := storage.Conditions{GenerationMatch: a.Generation}
	if !s.isQuarantineHandle(handle) {
		// Deleting the live generation without naming it keeps it as noncurrent.
		if err := s.bucket.Object(name).If(cond).Delete(ctx); err != nil {
			return "", s.fail("soft delete", name, err)
		}
		return handle, nil
	}
	if err := s.quarantineCopy(ctx, name, handle, a); err != nil {
		return "", err
	}
	if err := s.bucket.Object(name).If(cond).Delete(ctx); err != nil {
		if errors.Is(s.fail("", "", err), providers.ErrPrecondition) {
			// Someone replaced the object since the copy: it is not ours to keep.
			cctx, cancel := cleanupContext(ctx)
			s.bucket.Object(handle).Delete(cctx)
			cancel()
		}
		return "", s.fail("soft delete", name, err)
	}
	return handle, nil
}

// quarantineCopy copies generation a of name to handle server-side, unless an
// earlier attempt already did, and checks the copy's CRC32C.
func (s *Store) quarantineCopy(ctx context.Context, name, handle string, a *storage.ObjectAttrs) error {
	gen := genString(a.Generation)
	if q, err := s.bucket.Object(handle).Attrs(ctx); err == nil {
		if q.Size == a.Size && q.CRC32C == a.CRC32C && q.Metadata[metaOriginalGeneration] == gen {
			return nil // copied by an attempt that stopped before the delete
		}
	} else if !errors.Is(err, storage.ErrObjectNotExist) {
		return s.fail("soft delete (check quarantine)", handle, err)
	}
	meta := maps.Clone(a.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[metaQuarantinedFrom] = name
	meta[metaOriginalGeneration] = gen
	_, err := s.copyObject(ctx, name, a, handle, meta)
	return err
}

// copyObject copies generation src of name to dst (only if dst does not exist),
// server-side, and checks that the copy has the source's size and CRC32C.
func (s *Store) copyObject(ctx context.Context, name string, src *storage.ObjectAttrs, dst string, meta map[string]string) (*storage.ObjectAttrs, error) {
	c := s.bucket.Object(dst).If(storage.Conditions{DoesNotExist: true}).CopierFrom(s.bucket.Object(name).Generation(src.Generation))
	c.ContentType = src.ContentType
	c.Metadata = meta
	if s.kms != "" {
		c.DestinationKMSKeyName = s.kms
	}
	got, err := c.Run(ctx)
	if err != nil {
		if errors.Is(s.fail("", "", err), providers.ErrPrecondition) {
			return nil, fmt.Errorf("gs: copy %s to %s: %w", s.uriOf(name), s.uriOf(dst), providers.ErrAlreadyExists)
		}
		return nil, s.fail("copy to "+s.uriOf(dst)+" from", name, err)
	}
	if got.Size != src.Size || got.CRC32C != src.CRC32C {
		cctx, cancel := cleanupContext(ctx)
		s.bucket.Object(dst).If(storage.Conditions{GenerationMatch: got.Generation}).Delete(cctx)
		cancel()
		return nil, fmt.Errorf("gs: copy %s to %s: the copy has %d bytes crc32c %s, the source %d bytes crc32c %s: %w",
			s.uriOf(name), s.uriOf(dst), got.Size, crcHex(got.CRC32C), src.Size, crcHex(src.CRC32C), providers.ErrChecksum)
	}
	return got, nil
}

// Restore puts the kept bytes back under key; ErrAlreadyExists if key is taken.
func (s *Store) Restore(ctx context.Context, key, handle string) error {
	name, gen, err := s.checkHandle("restore", key, handle)
	if err != nil {
		return err
	}
	if s.isQuarantineHandle(handle) {
		return s.restoreQuarantined(ctx, key, name, handle)
	}
	return s.restoreGeneration(ctx, name, gen)
}

// restoreGeneration copies the noncurrent generation gen back as the live object (a
// new generation with the same bytes, as GCS's own restore does), marked with the
// generation it came from, and then deletes generation gen: left behind, it would be
// a second copy of the same bytes, counted as another version of the record by a
// later delete (DESIGN.md I10).
func (s *Store) restoreGeneration(ctx context.Context, name string, gen int64) error {
	from := genString(gen)
	kept, err := s.bucket.Object(name).Generation(gen).Attrs(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		if cur, cerr := s.bucket.Object(name).Attrs(ctx); cerr == nil && cur.Metadata[metaRestoredFrom] == from {
			return nil // restored, and the kept generation removed, by an earlier attempt
		}
	}
	if err != nil {
		return s.fail("restore", name, err)
	}
	cur, err := s.bucket.Object(name).Attrs(ctx)
	switch {
	case err == nil && cur.Generation == gen:
		return nil // live: never deleted
	case err == nil && cur.Metadata[metaRestoredFrom] == from && cur.Size == kept.Size && cur.CRC32C == kept.CRC32C:
		return s.dropRestored(ctx, name, gen) // restored by an attempt that stopped before this
	case err == nil:
		return fmt.Errorf("gs: restore %s: the key holds another generation (%d): %w", s.uriOf(name), cur.Generation, providers.ErrAlreadyExists)
	case !errors.Is(err, storage.ErrObjectNotExist):
		return s.fail("restore", name, err)
	}
	meta := maps.Clone(kept.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[metaRestoredFrom] = from
	if _, err := s.copyObject(ctx, name, kept, name, meta); err != nil {
		if errors.Is(err, providers.ErrAlreadyExists) {
			return fmt.Errorf("gs: restore %s: %w", s.uriOf(name), providers.ErrAlreadyExists)
		}
		return err
	}
	return s.dropRestored(ctx, name, gen)
}

// dropRestored deletes the kept generation gen once its bytes are live again (the
// copy's CRC32C was checked). An emulator that cannot delete a noncurrent
// generation (ErrNotSupported) keeps it: nothing is lost either way.
func (s *Store) dropRestored(ctx context.Context, name string, gen int64) error {
	err := s.bucket.Object(name).Generation(gen).If(storage.Conditions{GenerationMatch: gen}).Delete(ctx)
	if err == nil || errors.Is(err, storage.ErrObjectNotExist) {
		return nil
	}
	if ferr := s.fail("restore (remove the kept generation)", name, err); !errors.Is(ferr, providers.ErrNotSupported) {
		return ferr
	}
	return nil
}

func (s *Store) restoreQuarantined(ctx context.Context, key, name, handle string) error {
	q, err := s.bucket.Object(handle).Attrs(ctx)
	if err != nil {
		return s.fail("restore", handle, err)
	}
	if q.Metadata[metaQuarantinedFrom] != name {
		return fmt.Errorf("gs: restore %q: %s was quarantined from %q: %w", key, s.uriOf(handle), q.Metadata[metaQuarantinedFrom], providers.ErrInvalidKey)
	}
	meta := maps.Clone(q.Metadata)
	delete(meta, metaQuarantinedFrom)
	delete(meta, metaOriginalGeneration)
	if _, err := s.copyObject(ctx, handle, q, name, meta); err != nil {
		if !errors.Is(err, providers.ErrAlreadyExists) {
			return err
		}
		// Taken: by an earlier restore that stopped before removing the copy (same
		// bytes), or by someone else.
		cur, herr := s.bucket.Object(name).Attrs(ctx)
		if herr != nil || cur.Size != q.Size || cur.CRC32C != q.CRC32C {
			return fmt.Errorf("gs: restore %s: %w", s.uriOf(name), providers.ErrAlreadyExists)
		}
	}
	err = s.bucket.Object(handle).If(storage.Conditions{GenerationMatch: q.Generation}).Delete(ctx)
	if err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return s.fail("restore (remove quarantined copy)", handle, err)
	}
	return nil
}

// Purge removes the kept bytes for good: the quarantined copy, or the noncurrent
// generation (never the live one).
func (s *Store) Purge(ctx context.Context, key, handle string) error {
	name, gen, err := s.checkHandle("purge", key, handle)
	if err != nil {
		return err
	}
	if s.isQuarantineHandle(handle) {
		if err := s.bucket.Object(handle).Delete(ctx); err != nil {
			return s.fail("purge", handle, err)
		}
		return nil
	}
	if cur, err := s.bucket.Object(name).Attrs(ctx); err == nil && cur.Generation == gen {
		return fmt.Errorf("gs: purge %s: generation %d is live; not purging it: %w", s.uriOf(name), gen, providers.ErrPrecondition)
	} else if err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return s.fail("purge", name, err)
	}
	if err := s.bucket.Object(name).Generation(gen).Delete(ctx); err != nil {
		return s.fail("purge", name, err)
	}
	return nil
}

// SoftExists reports whether the kept bytes named by handle are still there.
func (s *Store) SoftExists(ctx context.Context, key, handle string) (bool, error) {
	name, gen, err := s.checkHandle("soft exists", key, handle)
	if err != nil {
		return false, err
	}
	h, target := s.bucket.Object(handle), handle
	if !s.isQuarantineHandle(handle) {
		h, target = s.bucket.Object(name).Generation(gen), name
	}
	if _, err := h.Attrs(ctx); err != nil {
		if errors.Is(err, storage.ErrObjectNotExist) {
			return false, nil
		}
		return false, s.fail("soft exists", target, err)
	}
	return true, nil
}

// Recoverability reads the bucket again and says whether an object ferry deletes
// stays recoverable by GCS: a bucket soft-delete policy keeps deleted objects (and
// the generations ferry deletes by name in a versioned bucket) for its retention
// duration; without one, a deleted object is gone.
func (s *Store) Recoverability(ctx context.Context) (providers.Recoverability, error) {
	b, err := s.readBucket(ctx)
	if err != nil {
		return providers.Recoverability{}, err
	}
	if b.softDelete > 0 {
		return providers.Recoverability{Recoverable: true, Mechanism: "soft delete policy", Retention: b.softDelete}, nil
	}
	return providers.Recoverability{}, nil
}

// Policies describes the bucket's policies that bear on deletes, for validate.
func (s *Store) Policies(ctx context.Context) (string, error) {
	b, err := s.readBucket(ctx)
	if err != nil {
		return "", err
	}
	var parts []string
	if b.versioned {
		parts = append(parts, "object versioning on")
	} else {
		parts = append(parts, "object versioning off")
	}
	if b.softDelete > 0 {
		parts = append(parts, "soft delete keeps deleted objects "+b.softDelete.String())
	} else {
		parts = append(parts, "soft delete off")
	}
	if b.retention > 0 {
		lock := ""
		if b.retentionLocked {
			lock = " (locked)"
		}
		parts = append(parts, "retention policy "+b.retention.String()+lock)
	}
	if b.objectRetention {
		parts = append(parts, "object retention enabled")
	}
	if b.defaultEventHold {
		parts = append(parts, "new objects under event-based hold")
	}
	return strings.Join(parts, "; "), nil
}
