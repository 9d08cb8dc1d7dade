package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
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
	if _, ok := m.stage(stageName); !ok {
		return nil, Errorf(ExitUsage, "no stage %q in %s (stages: %s)", stageName, m.Spec.Path, strings.Join(m.stageNames(), ", "))
	}
	res := &StageOpResult{Stage: stageName, Op: op}
	var ss checkpoints.StageState
	var done, refused atomic.Int64 // refused: purges refused because the target copy failed its re-check
	q := checkpoints.Query{Stage: stageName, ReplicaStates: []checkpoints.ReplicaState{checkpoints.Deleted, checkpoints.Intent, checkpoints.Retained}}
	pr, err := m.runPhase(ctx, &phase{
		name: op, bar: op, lockOnly: true,
		check: func(ctx context.Context) (size, error) {
			if err := m.checkPlanContext(ctx, op); err != nil {
				return size{}, err
			}
			states, err := m.stageStates(ctx)
			if err != nil {
				return size{}, err
			}
			ss = states[stageName]
			res.State = ss.State
			switch {
			case ss.State == StagePurged && op == "purge":
				return size{}, errNoWork // already done (a rerun after a crash, say)
			case ss.State == StagePurged:
				return size{}, Refused("stage %q is purged: nothing left to %s", stageName, op)
			case op == "purge" && ss.State != StageFinished:
				return size{}, Refused("stage %q is %s: only a finished stage can be purged", stageName, ss.State)
			case op == "purge":
				until := m.purgeAfter(ctx, ss) // the grace in force at the soft delete, if longer
				if m.now().Before(until) {
					return size{}, Refused("stage %q is in its grace period until %s: purge after that", stageName, until.UTC().Format(time.RFC3339))
				}
			case op == "restore" && ss.State == StagePending:
				return size{}, Refused("stage %q has not run: nothing to restore", stageName)
			}
			err = m.State.Records(ctx, q, func(r checkpoints.Record) error {
				res.Replicas += int64(len(keptReplicas(r, stageName)))
				return nil
			})
			return size{n: res.Replicas}, err
		},
		start: func(ctx context.Context) error {
			if op == "purge" {
				return m.checkIdentity(ctx, "purge") // a site that is the target under another name (identity.go)
			}
			return nil
		},
		query: q, conc: 1,
		each: func(ctx context.Context, pr *run, r checkpoints.Record) ([]checkpoints.Record, error) {
			return m.stageOpRecord(ctx, pr, op, stageName, r, &done, &refused)
		},
		tally: func(pr *run) { res.Done, res.Problems = done.Load(), pr.Problems() },
		end: func(ctx context.Context, _ *run) error {
			if op == "restore" && res.Done > 0 {
				res.Next = restoredNext(stageName)
			}
			if n := refused.Load(); n > 0 {
				return Errorf(ExitVerify, "purge of stage %q: %d records' kept replicas were not purged: their target copy failed the re-check; run ferry verify (the kept bytes can still be restored with --restore)", stageName, n)
			}
			if len(res.Problems) > 0 {
				return Errorf(ExitIncomplete, "%s of stage %q: %d of %d replicas not done", op, stageName, res.Replicas-res.Done, res.Replicas)
			}
			now := m.now().UTC()
			if op == "restore" {
				ss.State, ss.RestoredAt, ss.FinishedAt = StageRestored, now, time.Time{}
			} else {
				ss.State, ss.PurgedAt = StagePurged, now
			}
			if err := m.State.SaveStage(ctx, ss); err != nil {
				return Errorf(ExitRuntime, "%w", err)
			}
			res.State = ss.State
			return nil
		},
	})
	res.DryRun = pr.dry
	if res.State == "" {
		return nil, err // stopped before there was anything to report
	}
	return res, err
}

// keptReplicas are the indexes of r's replicas that a restore or purge of stage
// works on: deleted ones, interrupted deletes, and retained ones with kept bytes.
func keptReplicas(r checkpoints.Record, stage string) []int {
	var idx []int
	for i, p := range r.Replicas {
		if p.Stage == stage && (p.State == checkpoints.Deleted || p.State == checkpoints.Intent || keptRetained(p)) {
			idx = append(idx, i)
		}
	}
	return idx
}

// stageOpRecord restores or purges one record's kept replicas of a stage, and returns
// the record as it now stands (also when it stops the phase: what was done is kept).
func (m *Migration) stageOpRecord(ctx context.Context, pr *run, op, stageName string, r checkpoints.Record, done, refused *atomic.Int64) ([]checkpoints.Record, error) {
	r.Replicas = slices.Clone(r.Replicas)
	rechecked := false // once per record, not per replica
	kept := keptReplicas(r, stageName)
	defer pr.tick(int64(len(kept)), 0)
	for _, i := range kept {
		p := &r.Replicas[i]
		if p.State == checkpoints.Intent {
			pr.problem(r.Key, "an interrupted delete at "+p.Site+": run the stage's delete again first")
			continue
		}
		if op == "purge" && heldBack(r.State) {
			pr.problem(r.Key, "not purged at "+p.Site+": "+r.LastError+"; its kept copy stays (--restore puts it back)")
			continue
		}
		if p.Mode != "soft" {
			if op == "restore" {
				pr.problem(r.Key, "hard-deleted at "+p.Site+": cannot be restored")
			}
			continue
		}
		sd := m.caps(p.Site).SoftDeleter
		if sd == nil {
			return nil, Refused("site %s cannot %s soft deletes", p.Site, op)
		}
		var err error
		if op == "restore" {
			err = sd.Restore(ctx, p.SiteKey, p.Handle)
			if err == nil {
				p.State, p.Handle, p.DeletedAt, p.ConfirmedAbsent, p.IntentAt, p.Mode = checkpoints.Restored, "", time.Time{}, false, time.Time{}, ""
			}
		} else {
			// Purging destroys the last kept bytes: the target copy must prove its
			// bytes first, as before any delete (I12).
			if !rechecked {
				if err := m.recheckTarget(ctx, &r); err != nil {
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					var rf *recheckFailed
					if !errors.As(err, &rf) {
						return nil, err // could not look: nothing decided
					}
					refused.Add(1)
					pr.problem(r.Key, "not purged at "+p.Site+": "+err.Error())
					if errors.Is(err, errTargetGone) {
						return []checkpoints.Record{r}, vanished(r.Key)
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
				return []checkpoints.Record{r}, ferr // what this record's other replicas came to is saved
			}
			p.LastError = errString(err)
			pr.problem(r.Key, fmt.Sprintf("%s at %s: %v", op, p.Site, err))
			continue
		}
		done.Add(1)
	}
	return []checkpoints.Record{r}, nil
}
