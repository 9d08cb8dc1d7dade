package migrate

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// The guards of a delete stage: stage order, the max_delete limit, the confirm
// digest, and the proof that the target copy is still there and still right before
// any replica goes (I1, I9).

// checkOrder refuses a stage while an earlier stage has not finished.
func (m *Migration) checkOrder(ctx context.Context, states map[string]checkpoints.StageState, name string) error {
	for _, st := range m.Spec.Delete.Stages {
		if st.Name == name {
			return nil
		}
		s := states[st.Name]
		if s.State != StageFinished && s.State != StagePurged {
			return Refused("stage %q must finish before stage %q (it is %s)", st.Name, name, s.State)
		}
		if err := m.emptyCanary(ctx, states, st); err != nil {
			return err
		}
	}
	return nil
}

// deleteLimit is max_delete for a stage: a count, or a share of every replica the
// state holds at the stage's sites (live or deleted), so a stage that would empty
// more of a site than the operator allowed is refused.
func (m *Migration) deleteLimit(ctx context.Context, st spec.Stage) (int64, error) {
	stats, err := m.State.Stats(ctx, m.now())
	if err != nil {
		return 0, Errorf(ExitRuntime, "%w", err)
	}
	var basis int64
	for _, site := range st.Sites {
		for state, c := range stats.ReplicasSite[site] {
			if live(state) || gone(state) || state == checkpoints.Missing {
				basis += c.N
			}
		}
	}
	return st.MaxDelete.Limit(basis), nil
}

// ValidConfirm reports whether confirm is an acceptable prefix of digest.
func ValidConfirm(confirm, digest string) error {
	if confirm == "" {
		return Refused("deleting needs --confirm with the stage's scope digest (at least 8 hex characters); run the same command with --dry-run to see the scope and its digest")
	}
	if len(confirm) < 8 {
		return Refused("--confirm %q is too short: give at least 8 hex characters of the scope digest", confirm)
	}
	if _, err := hex.DecodeString(confirm[:len(confirm)/2*2]); err != nil {
		return Refused("--confirm %q is not hex", confirm)
	}
	if !strings.HasPrefix(digest, strings.ToLower(confirm)) {
		return Refused("--confirm %s does not match the scope as it stands now: the scope changed since it was printed, or this is another stage; run with --dry-run again and review it", confirm)
	}
	return nil
}

// recheckTarget proves the target copy again just before a delete or purge (I12):
// present, the version verify checked, and its bytes those of the record, by a
// checksum the store computes over the content or by reading them again. On failure
// the record goes back to copied, to be verified again; a copy that is gone answers
// an error wrapping errTargetGone.
func (m *Migration) recheckTarget(ctx context.Context, r *checkpoints.Record) error {
	obj, bad, err := m.proveTarget(ctx, r.TargetKey, r.Size, r.SHA256, r.CRC32C)
	gone := errors.Is(err, providers.ErrNotFound)
	switch {
	case gone:
		bad = "target copy is gone"
	case err != nil:
		return fmt.Errorf("re-check target %s: %w", r.TargetKey, err)
	case bad == "" && !obj.SameVersion(providers.Object{Size: r.Size, ETag: r.TargetETag, Version: r.TargetVersion, ModTime: obj.ModTime}):
		bad = "target copy was replaced since verify"
	}
	if bad == "" {
		return nil
	}
	r.State = checkpoints.Copied
	r.LastError = bad + ": its replicas are kept; verify again"
	return &recheckFailed{msg: r.LastError, gone: gone}
}

// recheckFailed is a re-check that looked and found the target copy not proven: gone
// (errors.Is errTargetGone) or different.
type recheckFailed struct {
	msg  string
	gone bool
}

func (e *recheckFailed) Error() string { return e.msg }

func (e *recheckFailed) Is(target error) bool { return e.gone && target == errTargetGone }

// proveTarget proves that key at the target holds size bytes hashing to sha256: by a
// SHA-256 the store computes and reports, else by a whole-object CRC32C the store
// computes, compared with the CRC32C ferry computed of the bytes at copy, else by
// reading the bytes again. Size, mtime, inode or an ETag alone never prove bytes.
// bad describes a mismatch; err is an access error (ErrNotFound: the copy is gone).
func (m *Migration) proveTarget(ctx context.Context, key string, size int64, sha256, crc32c string) (obj providers.Object, bad string, err error) {
	obj, err = m.Target.Stat(ctx, key)
	switch {
	case err != nil:
		return obj, "", err
	case obj.Size != size:
		return obj, fmt.Sprintf("target copy has %d bytes, verified %d", obj.Size, size), nil
	case sha256 == "":
		return obj, "no content hash recorded for the target copy", nil
	case obj.Checksums.SHA256 != "":
		if obj.Checksums.SHA256 != sha256 {
			return obj, "target copy's sha256 changed since verify", nil
		}
		return obj, "", nil
	case obj.Checksums.CRC32C != "" && crc32c != "":
		if obj.Checksums.CRC32C != crc32c {
			return obj, "target copy's crc32c changed since verify", nil
		}
		return obj, "", nil
	}
	sum, got, _, err := m.hashObject(ctx, m.Target, key)
	switch {
	case err != nil:
		return obj, "", err
	case sum != sha256:
		return obj, fmt.Sprintf("target copy's bytes hash to %s, verified %s", short(sum), short(sha256)), nil
	case !got.SameVersion(obj):
		return obj, "target copy changed while it was re-read", nil
	}
	return got, "", nil
}
