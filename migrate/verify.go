package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// VerifyResult is what `ferry verify` reports.
type VerifyResult struct {
	DryRun          bool           `json:"dry_run"`
	Reread          bool           `json:"reread"`
	Records         int64          `json:"records"`
	Verified        int64          `json:"verified"`
	Mismatched      int64          `json:"mismatched"` // target copy missing or different
	ReplicasProven  int64          `json:"replicas_proven"`
	Divergent       int64          `json:"replicas_divergent"`
	ReplicasMissing int64          `json:"replicas_missing"`
	BytesRead       int64          `json:"bytes_read"`
	Problems        []ConflictInfo `json:"problems,omitempty"`
	// NotVerified counts records left planned, copied or failed after this run.
	NotVerified int64 `json:"not_verified"`
	// MismatchedAfterDelete counts the mismatched records some of whose replicas ferry
	// had already deleted: never copied again over, they are put in conflict.
	MismatchedAfterDelete int64 `json:"mismatched_after_delete"`
}

// Verify re-checks every copied record's target copy (its checksum, or with reread
// its bytes) against the SHA-256 read from the source, and proves every replica due
// for deletion identical to the record. It trusts nothing copy recorded but the hash.
func (m *Migration) Verify(ctx context.Context, reread bool) (*VerifyResult, error) {
	reread = reread || m.Spec.Verify.Reread
	res := &VerifyResult{Reread: reread}
	q := checkpoints.Query{States: []checkpoints.RecordState{checkpoints.Copied, checkpoints.Verified}}
	var verified, mismatched, orphaned, proven, divergent, missing, read atomic.Int64
	conc := m.Spec.Verify.Concurrency
	if conc <= 0 {
		conc = m.Spec.Copy.Concurrency
	}
	pr, err := m.runPhase(ctx, &phase{
		name: "verify", bar: "verify", needPlan: true,
		check: func(ctx context.Context) (size, error) {
			st, err := m.State.Stats(ctx, m.now())
			if err != nil {
				return size{}, Errorf(ExitRuntime, "%w", err)
			}
			var totalBytes int64
			for _, s := range q.States {
				res.Records += st.Records[s].N
				totalBytes += st.Records[s].Bytes
			}
			if reread || !m.caps(spec.TargetName).TrustedSHA256 {
				res.BytesRead = totalBytes // what a dry run would read
			}
			return size{n: res.Records}, nil
		},
		query: q, conc: conc,
		each: func(ctx context.Context, pr *run, r checkpoints.Record) ([]checkpoints.Record, error) {
			out := r
			out.Replicas = slices.Clone(r.Replicas)
			n, terr := m.verifyTarget(ctx, &out, reread)
			read.Add(n)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if ferr := m.stopFatal("verify", blame(spec.TargetName, terr)); ferr != nil {
				return nil, ferr
			}
			var extra []checkpoints.Record
			if terr != nil {
				mismatched.Add(1)
				if out.State == checkpoints.Conflict {
					orphaned.Add(1)
				}
				pr.problem(r.Key, terr.Error())
				m.log.Warn("target copy does not verify", "key", r.Key, "err", terr)
			} else {
				verified.Add(1)
				for i := range out.Replicas {
					p := &out.Replicas[i]
					if p.Stage == "" || !(p.State == checkpoints.Present || p.State == checkpoints.Identical || p.State == checkpoints.Restored) {
						continue
					}
					n, perr := m.proveReplica(ctx, &out, p)
					read.Add(n)
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					if ferr := m.stopFatal("verify", blame(p.Site, perr)); ferr != nil {
						return nil, ferr
					}
					m.countProof(p, n, perr)
					switch {
					case perr != nil:
						p.LastError = errString(perr)
						pr.problem(r.Key, fmt.Sprintf("replica at %s: %v", p.Site, perr))
					case p.State == checkpoints.Identical:
						proven.Add(1)
					case p.State == checkpoints.Missing:
						missing.Add(1)
						pr.problem(r.Key, "replica at "+p.Site+" is gone (not deleted by ferry)")
					case p.State == checkpoints.Divergent:
						divergent.Add(1)
						pr.problem(r.Key, "replica at "+p.Site+" differs from the record: "+p.LastError)
						if v := m.divergence(&out, p); v != nil {
							extra = append(extra, *v)
						}
					}
				}
				out.Replicas = slices.DeleteFunc(out.Replicas, func(p checkpoints.Replica) bool { return p.Site == "" })
			}
			failpoint("verify-after-check")
			m.countVerify(n, terr)
			pr.tick(1, n)
			// Saved durably before verify reports success (I4).
			return append([]checkpoints.Record{out}, extra...), nil
		},
		tally: func(pr *run) {
			res.MismatchedAfterDelete = orphaned.Load()
			res.Verified, res.Mismatched, res.ReplicasProven, res.Divergent, res.ReplicasMissing, res.BytesRead =
				verified.Load(), mismatched.Load(), proven.Load(), divergent.Load(), missing.Load(), read.Load()
			res.Problems = pr.Problems()
		},
		end: func(ctx context.Context, _ *run) error {
			if res.Mismatched > 0 {
				return Errorf(ExitVerify, "verification failed: %s", mismatchAdvice(res))
			}
			if res.Divergent > 0 || res.ReplicasMissing > 0 {
				return Errorf(ExitIncomplete, "verify finished: %d replicas divergent, %d missing; they are never deleted", res.Divergent, res.ReplicasMissing)
			}
			if after, err := m.State.Stats(ctx, m.now()); err != nil {
				return Errorf(ExitRuntime, "%w", err)
			} else if n := after.Records[checkpoints.Planned].N + after.Records[checkpoints.Failed].N + after.Records[checkpoints.Copied].N; n > 0 {
				res.NotVerified = n
				return Errorf(ExitIncomplete, "verify finished, but %d records are not verified (not copied yet, or failed); %d in conflict", n, after.Records[checkpoints.Conflict].N)
			}
			return nil
		},
	})
	res.DryRun = pr.dry
	if !pr.checked {
		return nil, err // stopped before there was anything to report
	}
	return res, err
}

// verifyTarget proves the target copy equals the record's SHA-256 (I2). On success the
// record is verified, naming the exact target version that was checked.
func (m *Migration) verifyTarget(ctx context.Context, r *checkpoints.Record, reread bool) (int64, error) {
	fail := func(format string, a ...any) (int64, error) {
		err := fmt.Errorf(format, a...)
		if anyGone(*r) {
			r.State = checkpoints.Conflict
			r.Conflict = "target copy no longer verifies after replicas were deleted: " + err.Error()
		} else {
			resetCopy(r)
		}
		r.LastError = errString(err)
		return 0, err
	}
	if r.SHA256 == "" {
		return fail("no source hash recorded")
	}
	obj, err := m.Target.Stat(ctx, r.TargetKey)
	if errors.Is(err, providers.ErrNotFound) {
		return fail("target copy %s is missing", r.TargetKey)
	}
	if err != nil {
		return 0, fmt.Errorf("stat target %s: %w", r.TargetKey, err)
	}
	if obj.Size != r.Size {
		return fail("target copy has %d bytes, the record %d", obj.Size, r.Size)
	}
	var n int64
	if reread || obj.Checksums.SHA256 == "" {
		sum, got, read, err := m.hashObject(ctx, m.Target, r.TargetKey)
		n = read
		if errors.Is(err, providers.ErrNotFound) {
			return fail("target copy %s is missing", r.TargetKey)
		}
		if err != nil {
			return n, fmt.Errorf("read target %s: %w", r.TargetKey, err)
		}
		if sum != r.SHA256 {
			_, err := fail("target copy's bytes hash to %s, the source's to %s", short(sum), short(r.SHA256))
			return n, err
		}
		obj = got
	} else if obj.Checksums.SHA256 != r.SHA256 {
		return fail("target reports sha256 %s, the source's is %s", short(obj.Checksums.SHA256), short(r.SHA256))
	}
	r.State = checkpoints.Verified
	r.VerifiedAt = m.now().UTC()
	r.TargetETag, r.TargetVersion = obj.ETag, obj.Version
	r.LastError = ""
	return n, nil
}

// hashObject reads key whole and returns its SHA-256 and the version that was read.
func (m *Migration) hashObject(ctx context.Context, s providers.Store, key string) (string, providers.Object, int64, error) {
	rc, obj, err := s.Open(ctx, key)
	if err != nil {
		return "", obj, 0, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return "", obj, n, err
	}
	if n != obj.Size {
		return "", obj, n, fmt.Errorf("read %d bytes of %d", n, obj.Size)
	}
	return hex.EncodeToString(h.Sum(nil)), obj, n, nil
}

// proveReplica decides whether a replica due for deletion is identical to the record
// (I3): by a checksum the site vouches for, or by reading it again. Even the replica
// copy read from is read again: a read corrupted in flight during copy would otherwise
// "prove" itself.
func (m *Migration) proveReplica(ctx context.Context, r *checkpoints.Record, p *checkpoints.Replica) (int64, error) {
	store := m.Sites[p.Site]
	obj, err := store.Stat(ctx, p.SiteKey)
	if errors.Is(err, providers.ErrNotFound) {
		p.State = checkpoints.Missing
		p.LastError = "gone from the site, not deleted by ferry"
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !obj.SameVersion(replicaObject(*p)) {
		// A new version: whatever was known of the old one no longer applies.
		p.Size, p.ETag, p.Version, p.ModTime, p.SHA256 = obj.Size, obj.ETag, obj.Version, obj.ModTime, ""
	}
	var n int64
	sum := ""
	switch {
	case obj.Size != r.Size:
		p.State = checkpoints.Divergent
		p.LastError = fmt.Sprintf("%d bytes, the record %d", obj.Size, r.Size)
		return 0, nil
	case obj.Checksums.SHA256 != "":
		sum = obj.Checksums.SHA256
	default:
		var got providers.Object
		sum, got, n, err = m.hashObject(ctx, store, p.SiteKey)
		if err != nil {
			return n, err
		}
		if !got.SameVersion(obj) {
			return n, fmt.Errorf("changed while being read")
		}
	}
	p.SHA256 = sum
	if sum != r.SHA256 {
		p.State = checkpoints.Divergent
		p.LastError = fmt.Sprintf("sha256 %s, the record %s", short(sum), short(r.SHA256))
		return n, nil
	}
	p.State = checkpoints.Identical
	p.LastError = ""
	return n, nil
}

// divergence applies records.conflicts to a replica found divergent at verify. With
// keep-both it returns a new record that migrates the divergent version on its own,
// and removes the replica from r.
func (m *Migration) divergence(r *checkpoints.Record, p *checkpoints.Replica) *checkpoints.Record {
	switch m.Spec.Records.Conflicts {
	case PolicyKeepBoth:
		v := checkpoints.Record{
			Key: r.Key + ConflictSuffix + p.Site, User: r.User, Size: p.Size, State: checkpoints.Planned,
			TargetKey: r.Key + ConflictSuffix + p.Site,
		}
		rp := *p
		rp.State, rp.SHA256, rp.LastError = checkpoints.Present, "", ""
		v.Replicas = []checkpoints.Replica{rp}
		p.Site = "" // removed by the caller
		return &v
	case PolicyPreferPrimary:
		if p.Primary {
			r.State, r.Conflict = checkpoints.Conflict, "the primary replica at "+p.Site+" differs from the copy"
		}
	default:
		r.State, r.Conflict = checkpoints.Conflict, "replica at "+p.Site+" differs: "+p.LastError
	}
	return nil
}
