package migrate

import (
	"context"
	"errors"
	"time"
)

// What every phase shares until one runner owns it (issue 15): needing a plan, the
// exit mapping of a phase's error, and a context-aware sleep.

// needPlan refuses a phase when no plan exists; in a dry run it plans on the scratch
// state first, so a CI dry run of any phase on a fresh checkout still says exactly
// what would happen.
func (m *Migration) needPlan(ctx context.Context) error {
	if _, ok, err := m.State.Meta(ctx, "plan_digest"); err != nil {
		return Errorf(ExitRuntime, "%w", err)
	} else if ok {
		return nil
	}
	if m.Opts.DryRun {
		_, err := m.Plan(ctx)
		return err
	}
	return Errorf(ExitUsage, "no plan in the state: run `ferry plan` first")
}

// phaseErr maps an interrupted context to exit 130 and anything else to a runtime error.
func phaseErr(phase string, err error) error {
	if errors.Is(err, context.Canceled) {
		return Errorf(ExitInterrupted, "%s interrupted: state saved, rerun resumes", phase)
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return Errorf(ExitRuntime, "%s: %w", phase, err)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
