package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
)

// Stage states.
const (
	StagePending  = "pending"
	StageRunning  = "running"
	StageFinished = "finished"
	StageRestored = "restored"
	StagePurged   = "purged"
)

// DeleteResult is what `ferry delete` reports.
type DeleteResult struct {
	Stage   string     `json:"stage"`
	DryRun  bool       `json:"dry_run"`
	Mode    string     `json:"mode"`
	Scope   StageScope `json:"scope"`
	Limit   int64      `json:"max_delete"`
	Deleted int64      `json:"deleted"`
	Already int64      `json:"already_deleted"`
	Skipped int64      `json:"skipped"` // the target re-check failed: the record must be verified again
	Changed int64      `json:"changed"` // the replica changed after verification: not deleted
	// Retained: on a versioned site the verified version was deleted, but other
	// versions of the key remain (user data): not deleted (I10).
	Retained int64 `json:"retained_for_versions"`
	// Undeletable: the site refused the delete (retention policy, object hold, legal
	// hold, immutability policy): nothing was deleted; the next run tries once more.
	Undeletable int64          `json:"undeletable,omitempty"`
	Errors      int64          `json:"errors"`
	Problems    []ConflictInfo `json:"problems,omitempty"`
	State       string         `json:"stage_state"`
}

// delCounts are a delete run's outcomes, counted by concurrent workers.
type delCounts struct {
	deleted, already, skipped, changed, errs atomic.Int64
	retained                                 atomic.Int64           // versioned sites: other versions remain
	undeletable                              atomic.Int64           // refused by the site: retention or hold
	example                                  atomic.Pointer[string] // one failed delete, for the final message
}

// failed counts a failed delete of key and keeps the first as the example.
func (n *delCounts) failed(key, msg string) {
	n.errs.Add(1)
	ex := fmt.Sprintf("%q: %s", key, msg)
	n.example.CompareAndSwap(nil, &ex)
}

type delUnit struct {
	rec     checkpoints.Record
	idx     []int // replicas of rec in this stage's scope
	fresh   []int // replicas this run marked with a delete intent
	started bool  // deleteUnit ran (or is running) for it
}

// Delete deletes stage's scope: verified replicas at its sites, confirmed by digest.
func (m *Migration) Delete(ctx context.Context, stageName, confirm string) (*DeleteResult, error) {
	st, ok := m.stage(stageName)
	if !ok {
		return nil, Errorf(ExitUsage, "no stage %q in %s (stages: %s)", stageName, m.Spec.Path, strings.Join(m.stageNames(), ", "))
	}
	res := &DeleteResult{Stage: stageName, Mode: m.stageMode(stageName)}
	var ss checkpoints.StageState
	var n delCounts
	pr, err := m.runPhase(ctx, &phase{
		// Workers of one stage share it; workers of different stages never run together.
		name: "delete/" + stageName, bar: "delete", needPlan: true, confirm: confirm,
		check: func(ctx context.Context) (size, error) {
			if err := m.checkPlanContext(ctx, "delete"); err != nil {
				return size{}, err
			}
			states, err := m.stageStates(ctx)
			if err != nil {
				return size{}, err
			}
			if res.Scope, err = m.stageScope(ctx, stageName, false); err != nil {
				return size{}, err
			}
			if err := m.checkOrder(ctx, states, stageName); err != nil {
				return size{}, err
			}
			if res.Limit, err = m.deleteLimit(ctx, st); err != nil {
				return size{}, err
			}
			ss = states[stageName]
			res.State = ss.State
			if res.Scope.Replicas > res.Limit {
				return size{}, Refused("stage %q would delete %d replicas, over max_delete (%d)", stageName, res.Scope.Replicas, res.Limit)
			}
			if ss.State == StagePurged {
				return size{}, Refused("stage %q is already purged", stageName)
			}
			return size{n: res.Scope.Replicas, bytes: res.Scope.Bytes, digest: res.Scope.Digest}, nil
		},
		ready: func(ctx context.Context) error { return m.checkCanary(ctx, st, res.Scope) },
		start: func(ctx context.Context) error {
			if err := m.checkIdentity(ctx, "delete"); err != nil {
				return err // a site that is the target under another name (identity.go)
			}
			// Every site of the stage must support the delete the mode needs.
			for _, site := range st.Sites {
				c := m.caps(site)
				if res.Mode == "soft" {
					if c.SoftDeleter == nil {
						return Refused("site %s cannot soft-delete (no versioning or quarantine support); use mode: hard for this stage", site)
					}
				} else if c.ConditionalDeleter == nil {
					return Refused("site %s cannot delete conditionally; ferry never deletes unconditionally", site)
				}
			}
			if err := m.recordGrace(ctx, stageName, res.Mode); err != nil {
				return err
			}
			ss.Mode, ss.Digest, ss.State = res.Mode, res.Scope.Digest, StageRunning
			if ss.StartedAt.IsZero() {
				ss.StartedAt = m.now().UTC()
			}
			if err := m.State.SaveStage(ctx, ss); err != nil {
				return Errorf(ExitRuntime, "%w", err)
			}
			return nil
		},
		query: checkpoints.Query{Stage: stageName},
		batch: func(ctx context.Context, pr *run, recs []checkpoints.Record, save saveFunc) error {
			units := make([]*delUnit, 0, len(recs))
			for _, r := range recs {
				if idx := stageReplicas(r, stageName); len(idx) > 0 {
					units = append(units, &delUnit{rec: r, idx: idx})
				}
			}
			err := m.deleteBatch(ctx, res.Mode, units, &n, pr.problem, save)
			for _, u := range units {
				pr.tick(int64(len(u.idx)), 0)
			}
			return err
		},
		tally: func(pr *run) {
			res.Deleted, res.Already, res.Skipped, res.Changed, res.Errors = n.deleted.Load(), n.already.Load(), n.skipped.Load(), n.changed.Load(), n.errs.Load()
			res.Retained, res.Undeletable = n.retained.Load(), n.undeletable.Load()
			res.Problems = pr.Problems()
		},
		end: func(ctx context.Context, _ *run) error { return m.finishStage(ctx, res, &ss, &n) },
	})
	res.DryRun = pr.dry
	if res.Scope.Name == "" {
		return nil, err // stopped before there was anything to report
	}
	return res, err
}

// stageReplicas are the indexes of r's replicas in stage's scope, in site order.
func stageReplicas(r checkpoints.Record, stage string) []int {
	var idx []int
	for i, p := range r.Replicas {
		if p.Stage == stage && inScope(r, p, false) {
			idx = append(idx, i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(r.Replicas[a].Site, r.Replicas[b].Site) })
	return idx
}

// finishStage closes a stage whose deletes ran through: finished, unless a delete
// failed or an intent is unresolved (a rerun resumes), with its counts taken from the
// state (many workers may have deleted it); then what its outcomes mean.
func (m *Migration) finishStage(ctx context.Context, res *DeleteResult, ss *checkpoints.StageState, n *delCounts) error {
	stageName := res.Stage
	if res.Errors > 0 {
		res.State = StageRunning
		example := ""
		if ex := n.example.Load(); ex != nil {
			example = "; for example " + *ex
		}
		return Errorf(ExitRuntime, "stage %q: %d deletes failed; rerun the same command to resume%s", stageName, res.Errors, example)
	}
	after, err := m.stageScope(ctx, stageName, false)
	if err != nil {
		return err
	}
	if after.intents > 0 {
		// Another worker's deletes that failed: the next run settles them at the sites.
		return Errorf(ExitRuntime, "stage %q: %d delete intents are unresolved; rerun the same command to resume", stageName, after.intents)
	}
	ss.State, ss.FinishedAt, ss.Retained = StageFinished, m.now().UTC(), after.Retained
	if ss.Deleted, err = m.stageGone(ctx, stageName); err != nil {
		return err
	}
	if res.Mode == "hard" {
		ss.PurgedAt = ss.FinishedAt // nothing kept to purge
	}
	if err := m.State.SaveStage(ctx, *ss); err != nil {
		return Errorf(ExitRuntime, "%w", err)
	}
	res.State = ss.State
	m.recordRecoverability(ctx, stageName, ss.FinishedAt)
	if res.Skipped > 0 {
		return Errorf(ExitVerify, "stage %q finished, but %d replicas were not deleted: their target copy failed the re-check before deletion; run ferry verify", stageName, res.Skipped)
	}
	if res.Changed > 0 {
		return Errorf(ExitIncomplete, "stage %q finished, but %d replicas changed at their site after verification and were not deleted; run ferry verify", stageName, res.Changed)
	}
	if res.Retained > 0 {
		return retainedErr(stageName, res.Retained)
	}
	if res.Undeletable > 0 {
		return undeletableErr(stageName, res.Undeletable)
	}
	return nil
}

// deleteBatch runs one batch of units through: resolve intents left by a crash, make
// the intents durable, then record by record re-check the target (proving its bytes,
// I12) immediately before that record's conditional deletes, confirm absence, and
// record the outcomes (I1, I4). A target copy that is gone stops the stage at once
// (I9): the first record runs alone, so a site that is the target under another name
// loses at most one replica before the stop.
func (m *Migration) deleteBatch(ctx context.Context, mode string, units []*delUnit, n *delCounts, problem func(string, string), save saveFunc) error {
	conc := m.Spec.Copy.Concurrency
	// 1. Resolve intents left by a crash, by looking at the site.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for _, u := range units {
		g.Go(func() error {
			for _, i := range u.idx {
				p := &u.rec.Replicas[i]
				if p.State == checkpoints.Intent {
					if err := m.resolveIntent(gctx, p); err != nil {
						if ferr := m.stopFatal("delete", blame(p.Site, err)); ferr != nil {
							return ferr
						}
						n.failed(u.rec.Key, err.Error())
						p.LastError = errString(err)
						problem(u.rec.Key, err.Error())
					}
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// 2. Durable intents before any delete call.
	now := m.now().UTC()
	var intents []checkpoints.Record
	for _, u := range units {
		u.fresh = u.fresh[:0]
		for _, i := range u.idx {
			p := &u.rec.Replicas[i]
			// Undeletable: refused by the site in an earlier run; tried once more in
			// each run (the operator may have released the hold), never in a loop.
			if p.State == checkpoints.Identical || p.State == checkpoints.Undeletable {
				p.State, p.IntentAt, p.Mode = checkpoints.Intent, now, mode
				if mode == "soft" {
					p.Handle = m.caps(p.Site).SoftDeleter.SoftHandle(p.SiteKey, replicaObject(*p))
				}
				u.fresh = append(u.fresh, i)
			}
		}
		if len(u.fresh) > 0 {
			intents = append(intents, u.rec)
		}
	}
	if err := save(ctx, intents); err != nil {
		return Errorf(ExitRuntime, "recording delete intents: %w", err)
	}
	failpoint("delete-after-intent")
	// 3. Record by record: re-check the target, delete exactly the verified versions,
	// confirm absence, and check that the target copy survived the deletes.
	rest := units
	for len(rest) > 0 {
		u := rest[0]
		rest = rest[1:]
		if !slices.ContainsFunc(u.idx, func(i int) bool { return u.rec.Replicas[i].State == checkpoints.Intent }) {
			m.deleteUnit(ctx, mode, u, n, problem) // counts what is already gone
			continue
		}
		// The first record that deletes anything runs alone.
		if err := m.deleteUnit(ctx, mode, u, n, problem); err != nil {
			return stopBatch(ctx, units, save, err)
		}
		break
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for _, u := range rest {
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err() // stopped: this record is not started
			}
			return m.deleteUnit(gctx, mode, u, n, problem)
		})
	}
	if err := g.Wait(); err != nil {
		return stopBatch(ctx, units, save, err)
	}
	return saveUnits(ctx, units, save)
}

// stopBatch records the outcomes of the calls that did finish when a batch stops
// early. A record that was never started had no delete call: its intents from this
// run go back to identical; a started one keeps its intents, settled by the next run
// by looking at the site (I4).
func stopBatch(ctx context.Context, units []*delUnit, save saveFunc, err error) error {
	for _, u := range units {
		if u.started {
			continue
		}
		for _, i := range u.fresh {
			if p := &u.rec.Replicas[i]; p.State == checkpoints.Intent {
				p.State, p.IntentAt, p.Mode, p.Handle = checkpoints.Identical, time.Time{}, "", ""
			}
		}
	}
	_ = saveUnits(context.WithoutCancel(ctx), units, save)
	return err
}

// deleteUnit deletes one record's replicas in the stage: the target copy is re-checked
// first (once per record, not per replica), and stat'ed again after the deletes. A
// target copy that is gone, before or after, stops the stage (errVanished).
func (m *Migration) deleteUnit(ctx context.Context, mode string, u *delUnit, n *delCounts, problem func(string, string)) error {
	u.started = true
	var todo []int
	for _, i := range u.idx {
		switch u.rec.Replicas[i].State {
		case checkpoints.Deleted, checkpoints.Purged:
			n.already.Add(1) // by an earlier run (or settled from its intent above)
		case checkpoints.Retained:
			countRetained(n, &u.rec.Replicas[i], u.rec.Key, problem) // still not deleted: say so again
		case checkpoints.Intent:
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if err := m.recheckTarget(ctx, &u.rec); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Nothing was deleted: this run's intents go back to identical.
		for _, i := range u.fresh {
			p := &u.rec.Replicas[i]
			if p.State == checkpoints.Intent {
				p.State, p.IntentAt, p.Mode, p.Handle = checkpoints.Identical, time.Time{}, "", ""
			}
		}
		if ferr := m.stopFatal("delete", blame(spec.TargetName, err)); ferr != nil {
			return ferr // the target cannot be read at all: stop, deciding nothing
		}
		n.skipped.Add(int64(len(todo)))
		m.countDeleteSkipped(u.rec, todo)
		problem(u.rec.Key, err.Error())
		if errors.Is(err, errTargetGone) {
			return vanished(u.rec.Key)
		}
		return nil
	}
	for _, i := range todo {
		p := &u.rec.Replicas[i]
		err := m.deleteReplica(ctx, p, mode, u.rec.SHA256)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ferr := m.stopFatal("delete", blame(p.Site, err)); ferr != nil {
			return ferr // the intent stays: the next run settles it by looking at the site
		}
		m.countDelete(p, err)
		switch {
		case err == nil && p.State == checkpoints.Retained:
			countRetained(n, p, u.rec.Key, problem)
		case err == nil:
			n.deleted.Add(1)
		case errors.Is(err, providers.ErrRetained):
			// Nothing was deleted: the replica is still there, proven identical. The
			// intent is settled; the next run of the stage tries it once more.
			p.State, p.IntentAt, p.Mode, p.Handle = checkpoints.Undeletable, time.Time{}, "", ""
			p.LastError = "undeletable: " + errString(err)
			n.undeletable.Add(1)
			problem(u.rec.Key, "replica at "+p.Site+" is undeletable (retention policy or hold): "+err.Error())
		case errors.Is(err, providers.ErrPrecondition):
			p.State, p.LastError = checkpoints.Present, "changed after verification: not deleted; verify again"
			n.changed.Add(1)
			problem(u.rec.Key, "replica at "+p.Site+" changed after verification: not deleted")
		case errors.Is(err, providers.ErrNotFound):
			p.State, p.LastError = checkpoints.Missing, "already absent when ferry came to delete it: anomaly, not a deletion"
			problem(u.rec.Key, "replica at "+p.Site+" was already gone before the delete (anomaly)")
			m.log.Warn("delete anomaly: replica already absent", "key", u.rec.Key, "site", p.Site)
		default:
			n.failed(u.rec.Key, "replica at "+p.Site+": "+err.Error())
			p.LastError = errString(err)
			problem(u.rec.Key, "replica at "+p.Site+": "+err.Error())
		}
	}
	// A delete at a site must never touch the target: if the copy is gone now, a site
	// is the target (or holds it) under another name.
	if _, err := m.Target.Stat(ctx, u.rec.TargetKey); errors.Is(err, providers.ErrNotFound) {
		u.rec.State = checkpoints.Copied
		u.rec.LastError = "target copy vanished while its replicas were deleted: verify again"
		problem(u.rec.Key, "target copy vanished while its replicas were deleted")
		return vanished(u.rec.Key)
	} else if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// errTargetGone marks a re-check that found the target copy absent.
var errTargetGone = errors.New("target copy is gone")

// stageGone counts the stage's replicas gone from their sites.
func (m *Migration) stageGone(ctx context.Context, stage string) (int64, error) {
	st, err := m.State.Stats(ctx, m.now())
	if err != nil {
		return 0, Errorf(ExitRuntime, "%w", err)
	}
	c := st.StageCounts[stage]
	return c[checkpoints.Deleted].N + c[checkpoints.Purged].N, nil
}

func saveUnits(ctx context.Context, units []*delUnit, save saveFunc) error {
	recs := make([]checkpoints.Record, 0, len(units))
	for _, u := range units {
		recs = append(recs, u.rec)
	}
	if err := save(ctx, recs); err != nil {
		return Errorf(ExitRuntime, "recording delete outcomes: %w", err)
	}
	return nil
}
