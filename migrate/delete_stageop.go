package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
)

// Restore and purge: what happens to a soft-deleted stage's kept bytes afterwards.

// StageOpResult is what --restore and --purge report.
type StageOpResult struct {
	Stage    string         `json:"stage"`
	Op       string         `json:"op"`
	DryRun   bool           `json:"dry_run"`
	Replicas int64          `json:"replicas"`
	Done     int64          `json:"done"`
	Problems []ConflictInfo `json:"problems,omitempty"`
	State    string         `json:"stage_state"`
	// Next says what must happen before the stage can run again (after a restore).
	Next string `json:"next,omitempty"`
}

// Restore puts back every soft-deleted replica of a stage.
func (m *Migration) Restore(ctx context.Context, stageName string) (*StageOpResult, error) {
	return m.stageOp(ctx, stageName, "restore")
}

// Purge removes for good the kept bytes of a soft-deleted stage, after the grace period.
func (m *Migration) Purge(ctx context.Context, stageName string) (*StageOpResult, error) {
	return m.stageOp(ctx, stageName, "purge")
}

func (m *Migration) stageOp(ctx context.Context, stageName, op string) (*StageOpResult, error) {
	if err := m.Lock(ctx, op); err != nil {
		return nil, err
	}
	if _, ok := m.stage(stageName); !ok {
		return nil, Errorf(ExitUsage, "no stage %q in %s (stages: %s)", stageName, m.Spec.Path, strings.Join(m.stageNames(), ", "))
	}
	if err := m.checkPlanContext(ctx, op); err != nil {
		return nil, err
	}
	states, err := m.stageStates(ctx)
	if err != nil {
		return nil, err
	}
	ss := states[stageName]
	res := &StageOpResult{Stage: stageName, Op: op, DryRun: m.Opts.DryRun, State: ss.State}
	switch {
	case ss.State == StagePurged && op == "purge":
		return res, nil // already done (a rerun after a crash, say): nothing to do
	case ss.State == StagePurged:
		return res, Refused("stage %q is purged: nothing left to %s", stageName, op)
	case op == "purge" && ss.State != StageFinished:
		return res, Refused("stage %q is %s: only a finished stage can be purged", stageName, ss.State)
	case op == "purge":
		until := m.purgeAfter(ctx, ss) // the grace in force at the soft delete, if longer
		if m.now().Before(until) {
			return res, Refused("stage %q is in its grace period until %s: purge after that", stageName, until.UTC().Format(time.RFC3339))
		}
		if !m.Opts.DryRun {
			if err := m.checkIdentity(ctx, "purge"); err != nil {
				return res, err // a site that is the target under another name (identity.go)
			}
		}
	case op == "restore" && ss.State == StagePending:
		return res, Refused("stage %q has not run: nothing to restore", stageName)
	}
	var recs []checkpoints.Record
	refused := int64(0) // purges refused because the target copy failed its re-check
	err = m.State.Records(ctx, checkpoints.Query{Stage: stageName, ReplicaStates: []checkpoints.ReplicaState{checkpoints.Deleted, checkpoints.Intent, checkpoints.Retained}}, func(r checkpoints.Record) error {
		r.Replicas = slices.Clone(r.Replicas)
		rechecked := false // once per record, not per replica
		for i := range r.Replicas {
			p := &r.Replicas[i]
			if p.Stage != stageName || (p.State != checkpoints.Deleted && p.State != checkpoints.Intent && !keptRetained(*p)) {
				continue
			}
			res.Replicas++
			if m.Opts.DryRun {
				continue
			}
			if p.State == checkpoints.Intent {
				res.Problems = append(res.Problems, ConflictInfo{Key: r.Key, Reason: "an interrupted delete at " + p.Site + ": run the stage's delete again first"})
				continue
			}
			if op == "purge" && heldBack(r.State) {
				res.Problems = append(res.Problems, ConflictInfo{Key: r.Key, Reason: "not purged at " + p.Site + ": " + r.LastError + "; its kept copy stays (--restore puts it back)"})
				continue
			}
			if p.Mode != "soft" {
				if op == "restore" {
					res.Problems = append(res.Problems, ConflictInfo{Key: r.Key, Reason: "hard-deleted at " + p.Site + ": cannot be restored"})
				}
				continue
			}
			sd := m.caps(p.Site).SoftDeleter
			if sd == nil {
				return Refused("site %s cannot %s soft deletes", p.Site, op)
			}
			var err error
			if op == "restore" {
				err = sd.Restore(ctx, p.SiteKey, p.Handle)
				if err == nil {
					p.State, p.Handle, p.DeletedAt, p.ConfirmedAbsent, p.IntentAt, p.Mode = checkpoints.Restored, "", time.Time{}, false, time.Time{}, ""
				}
			} else {
				// Purging destroys the last kept bytes: the target copy must prove
				// its bytes first, as before any delete (I12).
				if !rechecked {
					if err := m.recheckTarget(ctx, &r); err != nil {
						if ctx.Err() != nil {
							return ctx.Err()
						}
						var rf *recheckFailed
						if !errors.As(err, &rf) {
							return err // could not look: nothing decided
						}
						refused++
						res.Problems = append(res.Problems, ConflictInfo{Key: r.Key, Reason: "not purged at " + p.Site + ": " + err.Error()})
						if errors.Is(err, errTargetGone) {
							recs = append(recs, r)
							if serr := m.State.Save(ctx, recs); serr != nil {
								return serr
							}
							recs = recs[:0]
							return vanished(r.Key)
						}
						break
					}
					rechecked = true
				}
				err = sd.Purge(ctx, p.SiteKey, p.Handle)
				if errors.Is(err, providers.ErrNotFound) {
					// Purged by an interrupted earlier run (or by hand): nothing is kept either way.
					err = nil
				}
				if err == nil {
					p.State, p.PurgedAt = purgedState(*p), m.now().UTC()
				}
			}
			if err != nil {
				if ferr := m.stopFatal(op, blame(p.Site, err)); ferr != nil {
					recs = append(recs, r) // what this record's other replicas came to is saved below
					return ferr
				}
				p.LastError = errString(err)
				res.Problems = append(res.Problems, ConflictInfo{Key: r.Key, Reason: fmt.Sprintf("%s at %s: %v", op, p.Site, err)})
				continue
			}
			res.Done++
		}
		recs = append(recs, r)
		if len(recs) >= 256 {
			err := m.State.Save(ctx, recs)
			recs = recs[:0]
			return err
		}
		return nil
	})
	if err == nil && !m.Opts.DryRun {
		err = m.State.Save(ctx, recs)
	} else if ExitCode(err) == ExitRuntime && !m.Opts.DryRun && len(recs) > 0 {
		// Stopped by a store error: keep what was restored or purged before it.
		if serr := m.State.Save(context.WithoutCancel(ctx), recs); serr != nil {
			m.log.Error("saving the outcomes before the stop", "err", serr)
		}
	}
	if err != nil {
		return res, phaseErr(op, err)
	}
	if m.Opts.DryRun {
		return res, nil
	}
	if op == "restore" && res.Done > 0 {
		res.Next = restoredNext(stageName)
	}
	if refused > 0 {
		return res, Errorf(ExitVerify, "purge of stage %q: %d records' kept replicas were not purged: their target copy failed the re-check; run ferry verify (the kept bytes can still be restored with --restore)", stageName, refused)
	}
	if len(res.Problems) > 0 {
		return res, Errorf(ExitIncomplete, "%s of stage %q: %d of %d replicas not done", op, stageName, res.Replicas-res.Done, res.Replicas)
	}
	now := m.now().UTC()
	if op == "restore" {
		ss.State, ss.RestoredAt, ss.FinishedAt = StageRestored, now, time.Time{}
	} else {
		ss.State, ss.PurgedAt = StagePurged, now
	}
	if err := m.State.SaveStage(ctx, ss); err != nil {
		return res, Errorf(ExitRuntime, "%w", err)
	}
	res.State = ss.State
	return res, nil
}
