package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
)

// One replica's deletion: the intent protocol (an intent recorded before the call,
// settled after it or by the next run) and the conditional delete itself.

// vanished is the error that stops a delete stage (or a purge) at a target copy that
// is gone (I9).
func vanished(key string) error {
	return Errorf(ExitVerify, "stopped: the target copy of %q vanished during the stage; the target or a site is not what the plan says "+
		"(a site may be the target, or hold it, under another name): check site and target identity before anything else; "+
		"replicas deleted so far are recorded; run ferry verify", key)
}

// softKept reports whether the bytes a soft delete of p keeps are where its handle
// says.
func (m *Migration) softKept(ctx context.Context, p *checkpoints.Replica) (bool, error) {
	sd := m.caps(p.Site).SoftDeleter
	if sd == nil {
		return false, fmt.Errorf("site %s cannot soft-delete", p.Site)
	}
	return sd.SoftExists(ctx, p.SiteKey, p.Handle)
}

// resolveIntent settles a delete intent left by an earlier run by looking at the site
// (I4): absent means the delete happened; the same version present means it did not
// (the replica goes back to identical and is deleted now); anything else is a change.
func (m *Migration) resolveIntent(ctx context.Context, p *checkpoints.Replica) error {
	if v, ok := m.versioner(ctx, p.Site); ok {
		return m.resolveVersionedIntent(ctx, v, p) // by the version's own existence (I10)
	}
	store := m.Sites[p.Site]
	obj, err := store.Stat(ctx, p.SiteKey)
	switch {
	case errors.Is(err, providers.ErrNotFound):
		if p.Mode == "soft" {
			kept, err := m.softKept(ctx, p)
			if err != nil {
				return err
			}
			if !kept {
				p.State, p.LastError = checkpoints.Missing, "absent after an interrupted soft delete, and its kept copy is not where it should be"
				return nil
			}
		}
		p.State, p.DeletedAt, p.ConfirmedAbsent, p.LastError = checkpoints.Deleted, m.now().UTC(), true, ""
		return nil
	case err != nil:
		return err
	case obj.SameVersion(replicaObject(*p)):
		p.State = checkpoints.Identical
		return nil
	default:
		p.State, p.LastError = checkpoints.Present, "changed at the site after the delete intent: not deleted"
		return nil
	}
}

// deleteReplica deletes (or soft-deletes) exactly the verified version, then confirms
// it is absent from plain view. expect carries the record's SHA-256, the bytes the
// replica was proven to hold: a store whose versions are not named by their content
// (a file's size, mtime and inode survive a rewrite in place) proves it again.
func (m *Migration) deleteReplica(ctx context.Context, p *checkpoints.Replica, mode, sha256 string) error {
	store := m.Sites[p.Site]
	expect := replicaObject(*p)
	expect.Checksums.SHA256 = sha256
	// A delete answering success proves nothing for a key already gone (S3 answers 204
	// for any key): the replica must be there before the call, or it is an anomaly.
	if _, err := store.Stat(ctx, p.SiteKey); err != nil {
		return err
	}
	var err error
	if mode == "soft" {
		var h string
		h, err = m.caps(p.Site).SoftDeleter.SoftDelete(ctx, p.SiteKey, expect)
		if err == nil && h != "" {
			p.Handle = h
		}
	} else {
		err = m.caps(p.Site).ConditionalDeleter.DeleteIf(ctx, p.SiteKey, expect)
	}
	failpoint("delete-after-call")
	if err != nil {
		return err
	}
	if v, ok := m.versioner(ctx, p.Site); ok {
		return m.confirmVersionedDelete(ctx, v, p, mode) // deleted, or retained for other versions (I10)
	}
	if _, err := store.Stat(ctx, p.SiteKey); !errors.Is(err, providers.ErrNotFound) {
		if err == nil {
			err = errors.New("still present after the delete")
		}
		return fmt.Errorf("confirming absence of %s at %s: %w", p.SiteKey, p.Site, err)
	}
	p.State, p.DeletedAt, p.ConfirmedAbsent, p.LastError = checkpoints.Deleted, m.now().UTC(), true, ""
	return nil
}
