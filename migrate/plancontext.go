package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// The plan context is what a plan was made against (I11): every site's name, role
// and store (URL in normal form, endpoint), the target's store, every stage's sites,
// sample and mode, and the records rules (user, include, exclude). Plan records it in
// the state (meta "plan_context"); delete, purge, restore and report refuse while the
// spec says something else, and the scope digest that --confirm takes covers it, so a
// digest printed for one set of stores never confirms a delete at another.
//
// A state planned by a ferry that did not record the context is refused the same way
// until it is planned again: nothing says what its replicas' sites were.

const planContextKey = "plan_context"

type planContext struct {
	Sites   []ctxStore `json:"sites"`
	Target  ctxStore   `json:"target"`
	Stages  []ctxStage `json:"stages"`
	Records ctxRecords `json:"records"`
}

type ctxStore struct {
	Name     string `json:"name,omitempty"`
	Role     string `json:"role,omitempty"`
	URL      string `json:"url"`
	Endpoint string `json:"endpoint,omitempty"`
}

type ctxStage struct {
	Name   string   `json:"name"`
	Sites  []string `json:"sites"`
	Sample string   `json:"sample"`
	Mode   string   `json:"mode"`
}

type ctxRecords struct {
	User    string   `json:"user"`
	Include []string `json:"include"`
	Exclude []string `json:"exclude"`
}

// specContext is the plan context the spec describes now.
func (m *Migration) specContext() planContext {
	sp := m.Spec
	c := planContext{Sites: []ctxStore{}, Stages: []ctxStage{}}
	for i := range sp.Sources {
		s := &sp.Sources[i]
		c.Sites = append(c.Sites, ctxStore{Name: s.Name, Role: string(s.Role), URL: s.PlanURL(), Endpoint: s.PlanEndpoint()})
	}
	c.Target = ctxStore{URL: sp.Target.PlanURL(), Endpoint: sp.Target.PlanEndpoint()}
	for _, st := range sp.Delete.Stages {
		sites := slices.Clone(st.Sites)
		slices.Sort(sites)
		c.Stages = append(c.Stages, ctxStage{Name: st.Name, Sites: sites, Sample: st.Sample.String(), Mode: m.stageMode(st.Name)})
	}
	set := func(in []string) []string {
		out := slices.Clone(in)
		slices.Sort(out)
		return append([]string{}, slices.Compact(out)...)
	}
	c.Records = ctxRecords{User: sp.Records.UserPattern, Include: set(sp.Records.Include), Exclude: set(sp.Records.Exclude)}
	return c
}

func (c planContext) encode() string {
	b, err := json.Marshal(c)
	if err != nil {
		panic("plan context: " + err.Error()) // strings and slices only
	}
	return string(b)
}

// contextDigest is the hex SHA-256 of the spec's plan context; every scope digest
// covers it.
func (m *Migration) contextDigest() string {
	sum := sha256.Sum256([]byte(m.specContext().encode()))
	return hex.EncodeToString(sum[:])
}

// recordPlanContext stores the spec's plan context with the plan.
func (m *Migration) recordPlanContext(ctx context.Context) error {
	if err := m.State.SetMeta(ctx, planContextKey, m.specContext().encode()); err != nil {
		return Errorf(ExitRuntime, "%w", err)
	}
	return nil
}

// planDrift lists, in words, how the spec differs from the context the plan was made
// against; recorded is false when the state holds no context (planned by an older
// ferry, or not planned).
func (m *Migration) planDrift(ctx context.Context) (changes []string, recorded bool, err error) {
	v, ok, err := m.State.Meta(ctx, planContextKey)
	if err != nil {
		return nil, false, Errorf(ExitRuntime, "%w", err)
	}
	if !ok || v == "" {
		return nil, false, nil
	}
	var old planContext
	if err := json.Unmarshal([]byte(v), &old); err != nil {
		return []string{"the recorded plan context cannot be read (" + err.Error() + ")"}, true, nil
	}
	return diffContext(old, m.specContext()), true, nil
}

// checkPlanContext refuses op (exit 5) when the spec no longer describes what the
// plan was made against, or the state does not say what that was.
func (m *Migration) checkPlanContext(ctx context.Context, op string) error {
	changes, recorded, err := m.planDrift(ctx)
	if err != nil {
		return err
	}
	if !recorded {
		return Refused("%s refused: the state does not record which sites, target and stages its plan was made against "+
			"(it was planned by an older ferry): run `ferry plan` again, then review the scope with `ferry delete --stage S --dry-run`", op)
	}
	if len(changes) > 0 {
		return Refused("%s refused: the spec changed since the plan was made: %s; run `ferry plan` again, then review the new scope with `ferry delete --stage S --dry-run` before deleting",
			op, strings.Join(changes, "; "))
	}
	return nil
}

// diffContext names every difference between the recorded context and the spec's.
func diffContext(old, cur planContext) []string {
	var out []string
	store := func(what string, a, b ctxStore) {
		if a.URL != b.URL {
			out = append(out, fmt.Sprintf("%s url was %s, is now %s", what, a.URL, b.URL))
		}
		if a.Endpoint != b.Endpoint {
			out = append(out, fmt.Sprintf("%s endpoint was %q, is now %q", what, a.Endpoint, b.Endpoint))
		}
		if a.Role != b.Role {
			out = append(out, fmt.Sprintf("%s role was %s, is now %s", what, a.Role, b.Role))
		}
	}
	oldSites := map[string]ctxStore{}
	for _, s := range old.Sites {
		oldSites[s.Name] = s
	}
	curSites := map[string]bool{}
	for _, s := range cur.Sites {
		curSites[s.Name] = true
		o, ok := oldSites[s.Name]
		if !ok {
			out = append(out, fmt.Sprintf("site %s was added (%s)", s.Name, s.URL))
			continue
		}
		store("site "+s.Name, o, s)
	}
	for _, s := range old.Sites {
		if !curSites[s.Name] {
			out = append(out, fmt.Sprintf("site %s was removed (it was %s)", s.Name, s.URL))
		}
	}
	store("target", old.Target, cur.Target)

	oldStages := map[string]ctxStage{}
	var oldOrder, curOrder []string
	for _, s := range old.Stages {
		oldStages[s.Name] = s
		oldOrder = append(oldOrder, s.Name)
	}
	curStages := map[string]bool{}
	for _, s := range cur.Stages {
		curStages[s.Name] = true
		curOrder = append(curOrder, s.Name)
		o, ok := oldStages[s.Name]
		if !ok {
			out = append(out, fmt.Sprintf("stage %s was added (sites %s)", s.Name, strings.Join(s.Sites, ",")))
			continue
		}
		if !slices.Equal(o.Sites, s.Sites) {
			out = append(out, fmt.Sprintf("stage %s sites were %s, are now %s", s.Name, strings.Join(o.Sites, ","), strings.Join(s.Sites, ",")))
		}
		if o.Sample != s.Sample {
			out = append(out, fmt.Sprintf("stage %s sample was %s, is now %s", s.Name, o.Sample, s.Sample))
		}
		if o.Mode != s.Mode {
			out = append(out, fmt.Sprintf("stage %s mode was %s, is now %s", s.Name, o.Mode, s.Mode))
		}
	}
	for _, s := range old.Stages {
		if !curStages[s.Name] {
			out = append(out, fmt.Sprintf("stage %s was removed", s.Name))
		}
	}
	if len(out) == 0 && !slices.Equal(oldOrder, curOrder) {
		out = append(out, fmt.Sprintf("stage order was %s, is now %s", strings.Join(oldOrder, ","), strings.Join(curOrder, ",")))
	}
	if old.Records.User != cur.Records.User {
		out = append(out, fmt.Sprintf("records.user was %q, is now %q", old.Records.User, cur.Records.User))
	}
	if !slices.Equal(old.Records.Include, cur.Records.Include) {
		out = append(out, fmt.Sprintf("records.include was %q, is now %q", old.Records.Include, cur.Records.Include))
	}
	if !slices.Equal(old.Records.Exclude, cur.Records.Exclude) {
		out = append(out, fmt.Sprintf("records.exclude was %q, is now %q", old.Records.Exclude, cur.Records.Exclude))
	}
	return out
}
