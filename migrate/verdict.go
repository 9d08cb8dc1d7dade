package migrate

import (
	"context"
	"fmt"

	"github.com/ferrymigrate/ferry/checkpoints"
)

// The spec's verdict on a record reaches it in every state (I11): a key that
// records.include/exclude now leaves out is excluded, and a key records.user does not
// match is rejected, even after it was copied, verified or partly deleted. Neither is
// ever copied, deleted or purged; plan, status and --json list them with the reason.

const (
	reasonExcluded = "excluded by records.include/exclude"
	reasonNoUser   = "key does not match records.user"
)

// specVerdict is what the spec says of the record whose key at the sites is siteKey:
// "" (a record to migrate), or Excluded / Rejected and why.
func (m *Migration) specVerdict(siteKey string) (checkpoints.RecordState, string) {
	if !m.Spec.Match(siteKey) {
		return checkpoints.Excluded, reasonExcluded
	}
	if _, ok := m.Spec.User(siteKey); !ok {
		return checkpoints.Rejected, reasonNoUser
	}
	return "", ""
}

// recordSiteKey is the key a record's replicas have at their sites (a keep-both
// variant's record key carries a suffix its replicas do not).
func recordSiteKey(r *checkpoints.Record) string {
	for _, p := range r.Replicas {
		if p.SiteKey != "" {
			return p.SiteKey
		}
	}
	return r.Key
}

// holdBack applies the spec's verdict to a record past planning (copied or verified):
// one the spec now leaves out or rejects stops where it is. Its copy fields are kept,
// so a later spec that takes it back in has it verified again (see reinclude).
func (m *Migration) holdBack(r *checkpoints.Record, siteKey string) {
	st, why := m.specVerdict(siteKey)
	if st == "" {
		return
	}
	r.State = st
	r.LastError = why + " since it was copied: never deleted; its replicas stay at their sites"
}

// reinclude settles a record that the spec takes back in after it had been copied
// and replicas of it were deleted: copying again could overwrite the verified target
// copy with another version, and there may be no replica left to copy from, so it
// goes back to copied and must be verified again.
func reinclude(r *checkpoints.Record, prev checkpoints.RecordState) {
	if prev != checkpoints.Excluded && prev != checkpoints.Rejected {
		return
	}
	if r.SHA256 == "" || r.CopiedAt.IsZero() || !anyGone(*r) {
		return
	}
	if r.State == checkpoints.Planned || (r.State == checkpoints.Rejected && r.LastError == reasonNoLive) {
		r.State = checkpoints.Copied
		r.LastError = "taken back in after replicas of it were deleted: verify again"
	}
}

// heldBack reports whether a record's state keeps all its replicas where they are.
func heldBack(s checkpoints.RecordState) bool {
	return s == checkpoints.Excluded || s == checkpoints.Rejected
}

// listHeld fills the plan's lists of failed and rejected records (the first 100 of
// each) with their reasons.
func (m *Migration) listHeld(ctx context.Context) (failed, rejected []ConflictInfo, err error) {
	for _, st := range []checkpoints.RecordState{checkpoints.Failed, checkpoints.Rejected} {
		var out []ConflictInfo
		err := m.State.Records(ctx, checkpoints.Query{States: []checkpoints.RecordState{st}, Limit: 100}, func(r checkpoints.Record) error {
			out = append(out, ConflictInfo{Key: r.Key, Reason: r.LastError})
			return nil
		})
		if err != nil {
			return nil, nil, Errorf(ExitRuntime, "%w", err)
		}
		if st == checkpoints.Failed {
			failed = out
		} else {
			rejected = out
		}
	}
	return failed, rejected, nil
}

// reasonNoLive rejects a record whose replicas are all gone from plain view.
const reasonNoLive = "no live replica at any site"

// heldError is plan's exit 3 when records are in conflict, failed or rejected.
func heldError(res *PlanResult) error {
	c, f, r := res.Records[string(checkpoints.Conflict)], res.Records[string(checkpoints.Failed)], res.Records[string(checkpoints.Rejected)]
	if c+f+r == 0 {
		return nil
	}
	first := ""
	if len(res.Rejected) > 0 {
		first = fmt.Sprintf("; for example %q is rejected: %s", res.Rejected[0].Key, res.Rejected[0].Reason)
	}
	return Errorf(ExitIncomplete, "plan stored: %d records in conflict, %d failed, %d rejected; they are never copied nor deleted until resolved%s", c, f, r, first)
}
