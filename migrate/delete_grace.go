package migrate

import (
	"context"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
)

// The grace that counts for --purge is the one in force when the replicas were
// soft-deleted (I11): each soft-deleting run of a stage records it (meta
// "stage_grace/<stage>", the longest of its runs), and purge waits for the longer of
// that and the spec's grace now. A grace shortened after the soft delete never lets
// purge run early; a lengthened one is honoured. A stage soft-deleted by a ferry that
// did not record it has only the spec's grace to go by.

func graceKey(stage string) string { return "stage_grace/" + stage }

// recordGrace records the grace in force for a soft-deleting run of stage.
func (m *Migration) recordGrace(ctx context.Context, stage, mode string) error {
	if mode != "soft" {
		return nil
	}
	g := m.Spec.Delete.Grace
	if old, ok := m.recordedGrace(ctx, stage); ok && old > g {
		return nil
	}
	if err := m.State.SetMeta(ctx, graceKey(stage), g.String()); err != nil {
		return Errorf(ExitRuntime, "recording the grace of stage %q: %w", stage, err)
	}
	return nil
}

func (m *Migration) recordedGrace(ctx context.Context, stage string) (time.Duration, bool) {
	v, ok, err := m.State.Meta(ctx, graceKey(stage))
	if err != nil || !ok {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, false
	}
	return d, true
}

// stageGrace is the grace a soft-deleted stage must wait out before --purge.
func (m *Migration) stageGrace(ctx context.Context, stage string) time.Duration {
	g := m.Spec.Delete.Grace
	if old, ok := m.recordedGrace(ctx, stage); ok && old > g {
		return old
	}
	return g
}

// purgeAfter is when a finished soft stage may be purged.
func (m *Migration) purgeAfter(ctx context.Context, ss checkpoints.StageState) time.Time {
	return ss.FinishedAt.Add(m.stageGrace(ctx, ss.Name))
}

// restoredNext is what a restore tells the operator: restored replicas are proven
// again before any stage deletes them.
func restoredNext(stage string) string {
	return "restored replicas must be verified again before they can be deleted: run `ferry verify`, then `ferry delete --stage " + stage + " --dry-run` and confirm the new scope digest"
}
