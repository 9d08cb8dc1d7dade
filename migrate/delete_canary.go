package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
)

// A sampled stage (a canary) exists to delete a few replicas first and prove the
// deletion path. A sample that selects none of a small set (1% of fewer than 100
// replicas) would finish empty, prove nothing, and unlock every later stage. So plan
// rounds a sample up to at least one replica (roundUpSamples), a sampled stage with
// no replica at all is refused, and one that finished empty (planned by an older
// ferry) never unlocks the stages after it.

// checkCanary refuses to run a sampled stage that holds no replica while its sites
// hold replicas a later stage would delete: its sample rounded them to none.
func (m *Migration) checkCanary(ctx context.Context, st spec.Stage, sc StageScope) error {
	if st.SampleFraction() >= 1 || sc.Replicas+sc.Retained > 0 {
		return nil
	}
	if missed, _, err := m.sampleMissed(ctx, st); err != nil || missed == nil {
		return err // an empty site: nothing to prove, nothing unlocked by it either
	}
	return Refused("stage %q (sample %s) selects no replica: an empty canary proves nothing and would unlock the later stages; "+
		"run `ferry plan` again (it rounds a sample up to at least one replica) or raise the sample, then review the scope", st.Name, st.Sample.String())
}

// emptyCanary refuses a later stage while a sampled stage before it finished holding
// no replica although its sites hold replicas that later stages delete.
func (m *Migration) emptyCanary(ctx context.Context, states map[string]checkpoints.StageState, st spec.Stage) error {
	s := states[st.Name]
	if st.SampleFraction() >= 1 || s.Deleted > 0 || s.Retained > 0 {
		return nil
	}
	if s.State != StageFinished && s.State != StagePurged {
		return nil
	}
	if missed, _, err := m.sampleMissed(ctx, st); err != nil || missed == nil {
		return err
	}
	return Refused("stage %q (sample %s) finished without any replica: an empty canary does not unlock the stages after it; %s",
		st.Name, st.Sample.String(), fmt.Sprintf("run `ferry plan` again (it rounds the sample up to at least one replica) and run stage %q again", st.Name))
}

// sampleMissed finds, for a sampled stage, the live replica at its sites that a later
// stage would delete and whose key comes first in sample order (spec.InSample's
// hash): the one a slightly larger sample would take first. nil: there is none.
func (m *Migration) sampleMissed(ctx context.Context, st spec.Stage) (*checkpoints.Record, string, error) {
	later := map[string]bool{}
	seen := false
	for _, l := range m.Spec.Delete.Stages {
		if seen {
			later[l.Name] = true
		}
		seen = seen || l.Name == st.Name
	}
	var best *checkpoints.Record
	var bestSite string
	var bestX uint64
	err := m.State.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
		if r.State == checkpoints.Conflict || heldBack(r.State) || r.State == checkpoints.Failed {
			return nil
		}
		for _, p := range r.Replicas {
			if !st.HasSite(p.Site) || !later[p.Stage] || !live(p.State) {
				continue
			}
			sum := sha256.Sum256([]byte(p.SiteKey))
			if x := binary.BigEndian.Uint64(sum[:8]); best == nil || x < bestX {
				rc := r
				rc.Replicas = slices.Clone(r.Replicas)
				best, bestSite, bestX = &rc, p.Site, x
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", Errorf(ExitRuntime, "%w", err)
	}
	return best, bestSite, nil
}

// roundUpSamples gives every sampled stage whose sample selects none of the replicas
// at its sites the one sampleMissed finds. Deterministic, so a re-plan picks the same.
func (m *Migration) roundUpSamples(ctx context.Context) error {
	for _, st := range m.Spec.Delete.Stages {
		if st.SampleFraction() >= 1 {
			continue
		}
		sc, err := m.stageScope(ctx, st.Name, true)
		if err != nil {
			return err
		}
		if sc.Replicas+sc.Retained > 0 {
			continue
		}
		best, site, err := m.sampleMissed(ctx, st)
		if err != nil || best == nil {
			return err
		}
		best.Replica(site).Stage = st.Name
		if err := m.State.Save(ctx, []checkpoints.Record{*best}); err != nil {
			return Errorf(ExitRuntime, "%w", err)
		}
		m.log.Info("sample rounded up to one replica", "stage", st.Name, "key", best.Key, "site", site)
	}
	return nil
}
