package migrate

import (
	"context"

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
