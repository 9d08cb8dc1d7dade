package migrate

import (
	"fmt"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
)

// A sampled stage (a canary) exists to delete a few replicas first and prove the
// deletion path. A sample that selects none of a small set (1% of fewer than 100
// replicas) would finish empty, prove nothing, and unlock every later stage: it is
// refused, and a sampled stage that finished without deleting anything never
// unlocks the stages after it.

// checkCanary refuses to run a sampled stage whose scope is empty while its sites
// hold replicas assigned to it or to later stages.
func (m *Migration) checkCanary(st spec.Stage, sc StageScope) error {
	if st.SampleFraction() >= 1 || sc.Replicas > 0 {
		return nil
	}
	return Refused("stage %q (sample %s) selects no replica to delete (%d retained): an empty canary proves nothing and would unlock the later stages; "+
		"raise its sample so that it holds at least one verified replica (or remove the stage), then run `ferry plan` and review the scope", st.Name, st.Sample.String(), sc.Retained)
}

// emptyCanary reports why a finished earlier stage does not unlock later ones: a
// sampled stage that deleted nothing.
func (m *Migration) emptyCanary(states map[string]checkpoints.StageState, st spec.Stage) error {
	s := states[st.Name]
	if st.SampleFraction() >= 1 || s.Deleted > 0 {
		return nil
	}
	if s.State != StageFinished && s.State != StagePurged {
		return nil
	}
	return Refused("stage %q (sample %s) finished without deleting any replica: an empty canary does not unlock stage order; %s",
		st.Name, st.Sample.String(), fmt.Sprintf("raise its sample, run `ferry plan` and run stage %q again", st.Name))
}
