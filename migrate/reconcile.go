package migrate

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// ConflictSuffix joins a key and a site into the key of a keep-both variant: the
// divergent replica at site is migrated as its own record under this key.
const ConflictSuffix = ".ferry-conflict."

// Conflict policies (records.conflicts).
const (
	PolicyFail          = "fail"
	PolicyPreferPrimary = "prefer-primary"
	PolicyKeepBoth      = "keep-both"
)

// live reports whether a replica still holds its bytes at its site, in plain view.
func live(s checkpoints.ReplicaState) bool {
	switch s {
	case checkpoints.Present, checkpoints.Identical, checkpoints.Divergent, checkpoints.Restored, checkpoints.Undeletable:
		return true
	}
	return false
}

// gone reports whether ferry has deleted (or is deleting) the replica, or its
// verified version (retained: other versions remain, so it is not deleted).
func gone(s checkpoints.ReplicaState) bool {
	switch s {
	case checkpoints.Intent, checkpoints.Deleted, checkpoints.Purged, checkpoints.Retained:
		return true
	}
	return false
}

func listedObject(l checkpoints.Listed) providers.Object {
	return providers.Object{Key: l.SiteKey, Size: l.Size, ETag: l.ETag, Version: l.Version, ModTime: l.ModTime}
}

func replicaObject(p checkpoints.Replica) providers.Object {
	return providers.Object{Key: p.SiteKey, Size: p.Size, ETag: p.ETag, Version: p.Version, ModTime: p.ModTime}
}

// siteOrder ranks sites: primaries first, then in spec order.
func (m *Migration) siteOrder(name string) int {
	for i, s := range m.Spec.Sources {
		if s.Name == name {
			if s.Role == "primary" {
				return i
			}
			return 1000 + i
		}
	}
	return 1 << 30
}

// assignStage returns the first stage (spec order) that deletes the replica of key at
// site: the stage names the site and its sample holds the key. "" means retained.
func (m *Migration) assignStage(site, key string) string {
	for _, st := range m.Spec.Delete.Stages {
		for _, s := range st.Sites {
			if s == site && spec.InSample(key, st.SampleFraction()) {
				return st.Name
			}
		}
	}
	return ""
}

// reconcile merges what the listing shows for key with what the state holds, and
// returns every record to save (the record, and keep-both variants). Finished work is
// kept: a replica whose version did not change keeps its state.
func (m *Migration) reconcile(key string, listed []checkpoints.Listed, get func(string) (*checkpoints.Record, error)) ([]checkpoints.Record, error) {
	sort.SliceStable(listed, func(i, j int) bool { return m.siteOrder(listed[i].Site) < m.siteOrder(listed[j].Site) })
	old, err := get(key)
	if err != nil {
		return nil, err
	}
	groups := [][]checkpoints.Listed{listed}
	var variantKeys []string
	if m.Spec.Records.Conflicts == PolicyKeepBoth && !m.pastPlanning(old) {
		groups, variantKeys = splitVariants(key, listed)
	}
	var out []checkpoints.Record
	for i, g := range groups {
		k := key
		var prev *checkpoints.Record
		if i == 0 {
			prev = old
		} else {
			k = variantKeys[i-1]
			if prev, err = get(k); err != nil {
				return nil, err
			}
		}
		out = append(out, m.merge(k, key, g, prev))
	}
	return out, nil
}

func (m *Migration) pastPlanning(r *checkpoints.Record) bool {
	return r != nil && (r.State == checkpoints.Copied || r.State == checkpoints.Verified)
}

// splitVariants partitions replicas by content identity (size, and SHA-256 where every
// replica has a trusted one). The first group (holding the best-ranked site) keeps key;
// each other site becomes a variant key.
func splitVariants(key string, listed []checkpoints.Listed) ([][]checkpoints.Listed, []string) {
	ref := listed[0]
	main := []checkpoints.Listed{}
	var groups [][]checkpoints.Listed
	var keys []string
	for _, l := range listed {
		if sameContent(ref, l) {
			main = append(main, l)
			continue
		}
		groups = append(groups, []checkpoints.Listed{l})
		keys = append(keys, key+ConflictSuffix+l.Site)
	}
	return append([][]checkpoints.Listed{main}, groups...), keys
}

func sameContent(a, b checkpoints.Listed) bool {
	if a.Size != b.Size {
		return false
	}
	if a.SHA256 != "" && b.SHA256 != "" {
		return a.SHA256 == b.SHA256
	}
	return true
}

// merge builds the record for key (siteKey at the sites) from the listed replicas and
// the previous state.
func (m *Migration) merge(key, siteKey string, listed []checkpoints.Listed, old *checkpoints.Record) checkpoints.Record {
	var rec checkpoints.Record
	if old != nil {
		rec = *old
		rec.Replicas = append([]checkpoints.Replica(nil), old.Replicas...)
	} else {
		rec = checkpoints.Record{Key: key, State: checkpoints.Planned, TargetKey: key}
	}
	sourceChanged := false
	var surfaced []string // sites listing another version where ferry deleted (I10)
	for _, l := range listed {
		site := m.siteSpec(l.Site)
		np := checkpoints.Replica{
			Site: l.Site, SiteKey: siteKey, Primary: site != nil && site.Role == "primary",
			Size: l.Size, ETag: l.ETag, Version: l.Version, ModTime: l.ModTime, SHA256: l.SHA256,
			State: checkpoints.Present, Stage: m.assignStage(l.Site, siteKey),
		}
		p := rec.Replica(l.Site)
		if p == nil {
			rec.Replicas = append(rec.Replicas, np)
			continue
		}
		if replicaObject(*p).SameVersion(listedObject(l)) {
			if !gone(p.State) {
				p.Stage = np.Stage // the spec's stages may have changed
			}
			if p.State == checkpoints.Missing {
				p.State = checkpoints.Present
			}
			continue
		}
		if keepsDeleted(p) {
			// Another version where ferry deleted (or is deleting) the verified one:
			// the replica keeps its record; the record goes to conflict below.
			if p.State != checkpoints.Intent {
				surfaced = append(surfaced, l.Site)
			}
			continue
		}
		// A new version at this site: it must be proven again before anything
		// happens to it.
		if rec.Source == l.Site && m.pastPlanning(&rec) {
			sourceChanged = true
		}
		np.LastError = "changed at the site since the last plan"
		*p = np
	}
	sort.Slice(rec.Replicas, func(i, j int) bool { return rec.Replicas[i].Site < rec.Replicas[j].Site })
	if why := deletedThenChanged(old, surfaced, sourceChanged); why != "" {
		rec.State, rec.Conflict = checkpoints.Conflict, why // never copied over the verified target copy
		return rec
	}

	if m.pastPlanning(&rec) {
		if sourceChanged {
			if anyGone(rec) {
				rec.State = checkpoints.Conflict
				rec.Conflict = "the source changed after deletion of other replicas began; resolve by hand"
			} else {
				resetCopy(&rec)
				rec.LastError = "source changed since it was copied: copying again"
			}
		}
		m.holdBack(&rec, siteKey) // exclusions reach records in every state
		return rec
	}
	// Planned, conflict, failed, excluded, rejected (or new): evaluate from scratch.
	prev := rec.State
	rec.Conflict, rec.LastError = "", ""
	rec.State = checkpoints.Planned
	if st, why := m.specVerdict(siteKey); st != "" {
		rec.State = st
		if st == checkpoints.Rejected {
			rec.LastError = why
		}
		return rec
	}
	rec.User, _ = m.Spec.User(siteKey)
	m.evalConflict(&rec)
	reinclude(&rec, prev)
	return rec
}

func anyGone(r checkpoints.Record) bool {
	for _, p := range r.Replicas {
		if gone(p.State) {
			return true
		}
	}
	return false
}

func resetCopy(r *checkpoints.Record) {
	r.State = checkpoints.Planned
	r.SHA256, r.CRC32C, r.Source = "", "", ""
	r.TargetETag, r.TargetVersion = "", ""
	r.CopiedAt, r.VerifiedAt = zeroTime, zeroTime
}

// evalConflict applies records.conflicts to a record's live replicas at plan time.
func (m *Migration) evalConflict(r *checkpoints.Record) {
	var lv []*checkpoints.Replica
	for i := range r.Replicas {
		p := &r.Replicas[i]
		if p.State == checkpoints.Divergent {
			p.State = checkpoints.Present // re-evaluated below
		}
		if live(p.State) {
			lv = append(lv, p)
		}
	}
	if len(lv) == 0 {
		r.State = checkpoints.Rejected
		r.LastError = reasonNoLive
		return
	}
	sort.SliceStable(lv, func(i, j int) bool { return m.siteOrder(lv[i].Site) < m.siteOrder(lv[j].Site) })
	ref := lv[0]
	r.Size = ref.Size
	var differ []string
	for _, p := range lv[1:] {
		if p.Size != ref.Size || (p.SHA256 != "" && ref.SHA256 != "" && p.SHA256 != ref.SHA256) {
			differ = append(differ, p.Site)
		}
	}
	if len(differ) == 0 {
		return
	}
	reason := describeDifference(ref, lv)
	switch m.Spec.Records.Conflicts {
	case PolicyPreferPrimary:
		if !ref.Primary {
			r.State, r.Conflict = checkpoints.Conflict, "no primary replica to prefer: "+reason
			return
		}
		for _, p := range lv[1:] {
			if contains(differ, p.Site) {
				if p.Primary {
					r.State, r.Conflict = checkpoints.Conflict, "primary replicas differ: "+reason
					return
				}
				p.State = checkpoints.Divergent
				p.LastError = "differs from the primary: " + reason
			}
		}
	default: // fail (keep-both splits variants before merge)
		r.State, r.Conflict = checkpoints.Conflict, reason
		for _, p := range lv {
			if contains(differ, p.Site) {
				p.State = checkpoints.Divergent
			}
		}
	}
}

func describeDifference(ref *checkpoints.Replica, lv []*checkpoints.Replica) string {
	var parts []string
	for _, p := range lv {
		s := fmt.Sprintf("%s %d bytes", p.Site, p.Size)
		if p.SHA256 != "" {
			s += " sha256 " + short(p.SHA256)
		}
		parts = append(parts, s)
	}
	_ = ref
	return "replicas differ: " + strings.Join(parts, ", ")
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
