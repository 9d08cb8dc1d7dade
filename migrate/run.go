package migrate

import (
	"context"
)

// RunResult is what `ferry run` reports.
type RunResult struct {
	Through string          `json:"through"`
	DryRun  bool            `json:"dry_run"`
	Plan    *PlanResult     `json:"plan,omitempty"`
	Copy    *CopyResult     `json:"copy,omitempty"`
	Verify  *VerifyResult   `json:"verify,omitempty"`
	Deletes []*DeleteResult `json:"deletes,omitempty"`
}

// Run runs plan, copy, verify and (through "delete") every stage in spec order.
// Deleting needs confirm to match the plan digest (which covers the spec and the
// whole inventory), and each stage's scope as it stands to equal the scope the plan
// predicted: anything unexpected stops the run before it deletes.
func (m *Migration) Run(ctx context.Context, through, confirm string, reread bool) (*RunResult, error) {
	if through == "" {
		through = "verify"
	}
	res := &RunResult{Through: through, DryRun: m.Opts.DryRun}
	var err error
	if through == "delete" && !m.Opts.DryRun && confirm == "" {
		return res, Refused("run --through delete needs --confirm with the plan digest (at least 8 hex characters) printed by `ferry plan`")
	}
	if err := m.Lock(ctx, "run"); err != nil {
		return res, err
	}
	// Exit 3 from a phase (conflicts, failures) does not stop the next phase; it is
	// the run's result unless something worse happens. Conflicts known to the plan do
	// not stop deletion either: the confirmed plan digest covers them and no stage
	// scope holds them. Failed or unverified records do.
	var soft error
	keep := func(err error) error {
		if ExitCode(err) == ExitIncomplete {
			if soft == nil {
				soft = err
			}
			return nil
		}
		return err
	}
	if res.Plan, err = m.Plan(ctx); keep(err) != nil {
		return res, err
	}
	if res.Copy, err = m.Copy(ctx); keep(err) != nil {
		return res, err
	}
	if through == "copy" {
		return res, soft
	}
	if res.Verify, err = m.Verify(ctx, reread); keep(err) != nil {
		return res, err
	}
	if through == "verify" {
		return res, soft
	}
	if !m.Opts.DryRun && (res.Copy.Failed > 0 || res.Verify.NotVerified > 0 || res.Verify.Divergent > 0 || res.Verify.ReplicasMissing > 0) {
		return res, soft
	}
	// A dry run checks a given --confirm exactly as the real run would.
	if !m.Opts.DryRun || confirm != "" {
		if err := ValidConfirm(confirm, res.Plan.Digest); err != nil {
			return res, Refused("%v (run --confirm takes the plan digest)", err)
		}
	}
	for i, st := range m.Spec.Delete.Stages {
		predicted := res.Plan.Stages[i]
		if m.Opts.DryRun {
			res.Deletes = append(res.Deletes, &DeleteResult{Stage: st.Name, DryRun: true, Mode: m.stageMode(st.Name), Scope: predicted})
			if err := m.checkCanary(ctx, st, predicted); err != nil {
				return res, err // the real run would stop here
			}
			continue
		}
		now, err := m.stageScope(ctx, st.Name, false)
		if err != nil {
			return res, err
		}
		if now.Digest != predicted.Digest {
			return res, Refused("stage %q: its scope (%d replicas, digest %.12s) is not what the plan predicted (%d replicas, %.12s): some records did not verify; review with `ferry status` and run the stage by hand",
				st.Name, now.Replicas, now.Digest, predicted.Replicas, predicted.Digest)
		}
		d, err := m.Delete(ctx, st.Name, now.Digest)
		res.Deletes = append(res.Deletes, d)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}
