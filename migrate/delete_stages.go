package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"sort"
	"strconv"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
)

// The deletion stages as the spec declares them and the state records them.

func (m *Migration) stage(name string) (spec.Stage, bool) {
	for _, st := range m.Spec.Delete.Stages {
		if st.Name == name {
			return st, true
		}
	}
	return spec.Stage{}, false
}

func (m *Migration) stageMode(name string) string {
	if st, ok := m.stage(name); ok && st.Mode != "" {
		return string(st.Mode)
	}
	return string(m.Spec.Delete.Mode)
}

func (m *Migration) stageStates(ctx context.Context) (map[string]checkpoints.StageState, error) {
	list, err := m.State.Stages(ctx)
	if err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}
	out := map[string]checkpoints.StageState{}
	for _, s := range list {
		out[s.Name] = s
	}
	for i, st := range m.Spec.Delete.Stages {
		if _, ok := out[st.Name]; !ok {
			out[st.Name] = checkpoints.StageState{Name: st.Name, Ord: i, Mode: m.stageMode(st.Name), State: StagePending}
		}
	}
	return out, nil
}

func (m *Migration) stageNames() []string {
	var n []string
	for _, s := range m.Spec.Delete.Stages {
		n = append(n, s.Name)
	}
	return n
}

// StageScope is one deletion stage's scope as it stands.
type StageScope struct {
	Name     string   `json:"name"`
	Sites    []string `json:"sites"`
	Sample   string   `json:"sample,omitempty"`
	Mode     string   `json:"mode"`
	Replicas int64    `json:"replicas"`
	Bytes    int64    `json:"bytes"`
	Digest   string   `json:"digest"`
	// Retained counts replicas assigned to the stage that are not (yet) deletable:
	// not verified, divergent, in conflict.
	Retained int64 `json:"retained"`
	// intents counts the scope's replicas with an unresolved delete intent.
	intents int64
}

// scopeLine is one replica's line in a stage's scope digest. The digest names exactly
// which version of which object at which site the stage may delete.
func scopeLine(h hash.Hash, r checkpoints.Record, p checkpoints.Replica) {
	for _, f := range []string{r.Key, p.Site, p.SiteKey, strconv.FormatInt(p.Size, 10), p.ETag, p.Version} {
		fmt.Fprintf(h, "%d:%s", len(f), f)
	}
	h.Write([]byte{'\n'})
}

// inScope reports whether a replica belongs to its stage's deletion scope. predicted:
// as the plan expects it once everything is verified (what `ferry plan` prints);
// otherwise as it stands (verified record, replica proven identical, or already on its
// way out in this stage, so the digest stays the same while the stage runs and resumes).
func inScope(r checkpoints.Record, p checkpoints.Replica, predicted bool) bool {
	if p.Stage == "" {
		return false
	}
	if predicted {
		switch r.State {
		case checkpoints.Conflict, checkpoints.Failed, checkpoints.Excluded, checkpoints.Rejected:
			return false
		}
		return p.State == checkpoints.Present || p.State == checkpoints.Identical || p.State == checkpoints.Restored || p.State == checkpoints.Undeletable || gone(p.State)
	}
	if r.State != checkpoints.Verified {
		return false
	}
	// Undeletable: proven identical, refused by the site once; each run of the stage
	// tries it once more (the hold may have been released).
	return p.State == checkpoints.Identical || p.State == checkpoints.Undeletable || gone(p.State)
}

// StageScopes computes every stage's scope and digest.
func (m *Migration) StageScopes(ctx context.Context, predicted bool) ([]StageScope, error) {
	var out []StageScope
	for _, st := range m.Spec.Delete.Stages {
		sc, err := m.stageScope(ctx, st.Name, predicted)
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

func (m *Migration) stageScope(ctx context.Context, name string, predicted bool) (StageScope, error) {
	st, ok := m.stage(name)
	if !ok {
		return StageScope{}, Errorf(ExitUsage, "no stage %q in the spec", name)
	}
	sc := StageScope{Name: st.Name, Sites: append([]string(nil), st.Sites...), Mode: m.stageMode(name)}
	if st.SampleFraction() < 1 {
		sc.Sample = strconv.FormatFloat(st.SampleFraction()*100, 'f', -1, 64) + "%"
	}
	h := sha256.New()
	fmt.Fprintf(h, "ferry-scope-v1\nmigration %s\nstage %s\ncontext %s\n", m.Spec.Migration, name, m.contextDigest())
	err := m.State.Records(ctx, checkpoints.Query{Stage: name}, func(r checkpoints.Record) error {
		reps := append([]checkpoints.Replica(nil), r.Replicas...)
		sort.Slice(reps, func(i, j int) bool { return reps[i].Site < reps[j].Site })
		for _, p := range reps {
			if p.Stage != name {
				continue
			}
			if !inScope(r, p, predicted) {
				sc.Retained++
				continue
			}
			sc.Replicas++
			sc.Bytes += p.Size
			if p.State == checkpoints.Intent {
				sc.intents++
			}
			scopeLine(h, r, p)
		}
		return nil
	})
	if err != nil {
		return sc, Errorf(ExitRuntime, "%w", err)
	}
	sc.Digest = hex.EncodeToString(h.Sum(nil))
	return sc, nil
}
