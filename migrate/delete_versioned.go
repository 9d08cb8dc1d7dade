package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
)

// Versioned sites (DESIGN.md I10, issue 13 class 2)
//
// On a site whose bucket keeps versions, every version a user had is user data.
// Deleting the version ferry verified removes those bytes only: an older version
// (or a newer one written since) can still be there, and after the delete an older
// one becomes current. So on a versioned site:
//
//   - ferry deletes exactly the verified version (the stores do it by version id,
//     conditionally), and then settles the outcome by that version's own existence
//     (Versions), never by whether the key is absent;
//   - when other versions of the key remain, the replica is retained, not deleted:
//     state retained, the reason "retained_for_versions: N other versions remain",
//     counted as not deleted, the stage exits incomplete (3), and the certificate
//     lists it as not deleted;
//   - an interrupted delete is settled the same way, by whether that version exists;
//   - a record with any replica already deleted (or retained) is never copied
//     again: a later plan that sees another version at a site puts the record in
//     conflict instead, so the verified target copy is never overwritten.

// versionedSites caches whether each site keeps versions, asked once per migration.
type versionedSites struct {
	mu sync.Mutex
	m  map[string]siteVersioning
}

type siteVersioning struct {
	v  providers.Versioner
	on bool
}

// versioner returns site's Versioner when the site keeps (or may keep) versions. A
// store that cannot say (its versioning unreadable with these credentials) is treated
// as versioned: looking at the versions costs a listing, assuming none could cost
// user data.
func (m *Migration) versioner(ctx context.Context, site string) (providers.Versioner, bool) {
	vs := &m.versioned
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.m == nil {
		vs.m = map[string]siteVersioning{}
	}
	if sv, ok := vs.m[site]; ok {
		return sv.v, sv.on
	}
	var sv siteVersioning
	if v := m.caps(site).Versioner; v != nil {
		on, err := v.Versioning(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, false // not cached: the next call asks again
			}
			m.log.Warn("cannot tell whether the site keeps versions; treating it as versioned", "site", site, "err", err)
			on = true
		}
		sv = siteVersioning{v: v, on: on}
	}
	vs.m[site] = sv
	return sv.v, sv.on
}

// isOurs reports whether version o is the replica's verified version: by version
// id when the replica has one, else by ETag and size (a listing of a bucket whose
// versioning is suspended names no version id).
func isOurs(p checkpoints.Replica, o providers.Object) bool {
	if p.Version != "" && o.Version != "" {
		return p.Version == o.Version
	}
	return o.ETag != "" && o.ETag == p.ETag && o.Size == p.Size
}

// others counts the versions in vs that are not the replica's verified version.
func others(p checkpoints.Replica, vs []providers.Object) (ours bool, n int) {
	for _, o := range vs {
		if isOurs(p, o) {
			ours = true
		} else {
			n++
		}
	}
	return ours, n
}

// retainedReason is the replica's LastError when other versions remain.
func retainedReason(n int) string {
	return fmt.Sprintf("retained_for_versions: %d other versions remain at the site (every version is user data): "+
		"the verified version was deleted, the record's originals are not gone", n)
}

// settleDeleted records the outcome of a delete of the replica's verified version
// that is known to have happened: deleted when no other version of the key remains,
// else retained.
func (m *Migration) settleDeleted(ctx context.Context, p *checkpoints.Replica, vs []providers.Object) error {
	_, n := others(*p, vs)
	now := m.now().UTC()
	if n > 0 {
		p.State, p.DeletedAt, p.ConfirmedAbsent, p.LastError = checkpoints.Retained, now, false, retainedReason(n)
		return nil
	}
	// No other version: the key must be absent from plain view too.
	if o, err := m.Sites[p.Site].Stat(ctx, p.SiteKey); err == nil {
		p.State, p.DeletedAt, p.ConfirmedAbsent, p.LastError = checkpoints.Retained, now, false,
			retainedReason(1)+fmt.Sprintf(" (version %q appeared)", o.Version)
		return nil
	} else if !errors.Is(err, providers.ErrNotFound) {
		return fmt.Errorf("confirming absence of %s at %s: %w", p.SiteKey, p.Site, err)
	}
	p.State, p.DeletedAt, p.ConfirmedAbsent, p.LastError = checkpoints.Deleted, now, true, ""
	return nil
}

// confirmVersionedDelete replaces the plain absence check after a delete call on a
// versioned site: the verified version itself must be gone (hard) or hidden and
// kept (soft), and other versions decide between deleted and retained.
func (m *Migration) confirmVersionedDelete(ctx context.Context, v providers.Versioner, p *checkpoints.Replica, mode string) error {
	vs, err := v.Versions(ctx, p.SiteKey)
	if err != nil {
		return fmt.Errorf("confirming the delete of %s at %s: %w", p.SiteKey, p.Site, err)
	}
	ours, _ := others(*p, vs)
	if ours {
		if mode != "soft" {
			return fmt.Errorf("confirming the delete of %s at %s: the verified version is still there after the delete", p.SiteKey, p.Site)
		}
		// Soft: the version is kept behind a delete marker; it must not be current.
		cur, err := m.Sites[p.Site].Stat(ctx, p.SiteKey)
		if err == nil && cur.SameVersion(replicaObject(*p)) {
			return fmt.Errorf("confirming the soft delete of %s at %s: the verified version is still current", p.SiteKey, p.Site)
		} else if err != nil && !errors.Is(err, providers.ErrNotFound) {
			return fmt.Errorf("confirming the soft delete of %s at %s: %w", p.SiteKey, p.Site, err)
		}
	}
	return m.settleDeleted(ctx, p, vs)
}

// resolveVersionedIntent settles a delete intent on a versioned site by whether the
// verified version still exists (I4, I10): after its delete an older version is
// current, so the key's presence says nothing.
func (m *Migration) resolveVersionedIntent(ctx context.Context, v providers.Versioner, p *checkpoints.Replica) error {
	store := m.Sites[p.Site]
	vs, err := v.Versions(ctx, p.SiteKey)
	if err != nil {
		return err
	}
	ours, _ := others(*p, vs)
	cur, err := store.Stat(ctx, p.SiteKey)
	absent := errors.Is(err, providers.ErrNotFound)
	if err != nil && !absent {
		return err
	}
	if ours && !absent && cur.SameVersion(replicaObject(*p)) {
		p.State = checkpoints.Identical // the delete did not happen: it is made now
		return nil
	}
	if p.Mode == "soft" {
		kept, err := m.softKept(ctx, p)
		if err != nil {
			return err
		}
		if !kept {
			if ours {
				// Still there, below a newer version: the soft delete did not happen.
				p.State, p.LastError = checkpoints.Present, "a newer version was written at the site after the delete intent: not deleted"
				return nil
			}
			p.State, p.LastError = checkpoints.Missing, "the verified version is gone after an interrupted soft delete, and its kept copy is not where it should be"
			return nil
		}
		return m.settleDeleted(ctx, p, vs)
	}
	if ours {
		// The verified version is still there, but not current: a newer version was
		// written on top of it. Nothing was deleted; it must be proven again.
		p.State, p.LastError = checkpoints.Present, "a newer version was written at the site after the delete intent: not deleted"
		return nil
	}
	return m.settleDeleted(ctx, p, vs)
}

// keepsDeleted reports whether the plan must leave replica p as it is although its
// site now lists another version of the key: ferry deleted (or is deleting) its
// verified version, and what the site holds now is other bytes. The record is never
// copied again over its verified target copy (see deletedThenChanged).
func keepsDeleted(p *checkpoints.Replica) bool {
	return gone(p.State)
}

// deletedThenChanged is the conflict a plan puts a record in when any of its
// replicas was deleted (or retained) and a site now holds other bytes under its key:
// an older version surfaced, or a new one was written. Copying them would overwrite
// the verified target copy, the only copy of the deleted bytes. "" when neither.
func deletedThenChanged(old *checkpoints.Record, surfaced []string, sourceChanged bool) string {
	if old == nil || !anyGone(*old) {
		return ""
	}
	if len(surfaced) == 0 && !sourceChanged {
		if old.State == checkpoints.Conflict {
			return old.Conflict // stays in conflict: never planned (and copied) again
		}
		return ""
	}
	where := "the source site"
	if len(surfaced) > 0 {
		where = fmt.Sprintf("site %s", surfaced[0])
	}
	return fmt.Sprintf("%s holds another version of the key (an older version surfaced, or a new one was written) "+
		"after ferry deleted a verified replica: the verified target copy is kept and never overwritten; "+
		"migrate the other version by hand (every version is user data)", where)
}

// countRetained counts the deleteUnit outcome of a replica settled as retained.
func countRetained(n *delCounts, p *checkpoints.Replica, key string, problem func(string, string)) {
	n.retained.Add(1)
	problem(key, "replica at "+p.Site+": "+p.LastError)
}

// retainedErr is the stage's exit when replicas were retained for other versions.
func retainedErr(stage string, n int64) error {
	return Errorf(ExitIncomplete, "stage %q finished, but %d replicas were not deleted: other versions of their keys remain at a versioned site "+
		"(retained_for_versions; every version is user data); migrate or remove those versions deliberately, they are not certified as deleted", stage, n)
}

// undeletableErr is the stage's exit when the sites refused deletes because of a
// retention policy or a hold.
func undeletableErr(stage string, n int64) error {
	return Errorf(ExitIncomplete, "stage %q finished, but %d replicas were not deleted: their site holds them under a retention policy, "+
		"an object hold, a legal hold or an immutability policy (undeletable; the reason is in ferry status --user and in the report's manifest); "+
		"they are not certified as deleted; once the hold is released or the retention has run out, rerun the same command to try them once more", stage, n)
}

// keptRetained reports whether a retained replica still has soft-deleted bytes to
// restore or purge: its verified version, kept behind a delete marker or in the
// quarantine.
func keptRetained(p checkpoints.Replica) bool {
	return p.State == checkpoints.Retained && p.Mode == "soft" && p.PurgedAt.IsZero()
}

// purgedState is a replica's state after its kept bytes were purged: purged, or
// still retained when other versions of its key remain at the site.
func purgedState(p checkpoints.Replica) checkpoints.ReplicaState {
	if p.State == checkpoints.Retained {
		return checkpoints.Retained
	}
	return checkpoints.Purged
}

// versioningOf describes whether s keeps versions, for validate: "enabled" or
// "suspended" where the store names the state, "on" where it only says it keeps
// them, "unknown" when it cannot tell, "" when it keeps none.
func versioningOf(ctx context.Context, s providers.Store) string {
	v, ok := providers.As[providers.Versioner](s)
	if !ok {
		return ""
	}
	on, err := v.Versioning(ctx)
	switch {
	case err != nil:
		return "unknown"
	case !on:
		return ""
	}
	if st, ok := providers.As[interface{ VersioningStatus() string }](s); ok {
		switch st.VersioningStatus() {
		case "Enabled":
			return "enabled"
		case "Suspended":
			return "suspended"
		}
	}
	return "on"
}
