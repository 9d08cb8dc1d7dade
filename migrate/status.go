package migrate

import (
	"context"
	"sort"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
)

// StageStatus is one stage in `ferry status`.
type StageStatus struct {
	Name       string                                         `json:"name"`
	Sites      []string                                       `json:"sites"`
	Mode       string                                         `json:"mode"`
	State      string                                         `json:"state"`
	Digest     string                                         `json:"digest,omitempty"`
	StartedAt  *time.Time                                     `json:"started_at,omitempty"`
	FinishedAt *time.Time                                     `json:"finished_at,omitempty"`
	PurgedAt   *time.Time                                     `json:"purged_at,omitempty"`
	PurgeAfter *time.Time                                     `json:"purge_after,omitempty"`
	Replicas   map[checkpoints.ReplicaState]checkpoints.Count `json:"replicas"`
}

// UserRecord is one record of a user in `ferry status --user`.
type UserRecord struct {
	Key      string        `json:"key"`
	State    string        `json:"state"`
	Size     int64         `json:"size"`
	Target   string        `json:"target,omitempty"`
	Error    string        `json:"error,omitempty"`
	Replicas []UserReplica `json:"replicas"`
}

// UserReplica is one replica in `ferry status --user`.
type UserReplica struct {
	Site  string `json:"site"`
	URI   string `json:"uri"`
	State string `json:"state"`
	Stage string `json:"stage,omitempty"`
}

// WorkerStatus is one worker in `ferry status`.
type WorkerStatus struct {
	checkpoints.Worker
	Alive bool    `json:"alive"`
	Rate  float64 `json:"records_per_second"`
}

// StatusResult is what `ferry status` reports.
type StatusResult struct {
	Migration  string                                                    `json:"migration"`
	PlanDigest string                                                    `json:"plan_digest,omitempty"`
	PlannedAt  string                                                    `json:"planned_at,omitempty"`
	Records    map[checkpoints.RecordState]checkpoints.Count             `json:"records"`
	Sites      map[string]map[checkpoints.ReplicaState]checkpoints.Count `json:"sites"`
	Stages     []StageStatus                                             `json:"stages"`
	// PerMinute counts records copied and verified, and replicas deleted, in the last minute.
	PerMinute map[string]int64 `json:"per_minute"`
	// Retries counts requests the stores retried (throttling, 5xx, dropped
	// connections), by site, over every run so far.
	Retries map[string]int64 `json:"retries,omitempty"`
	// Limits lists each store's limit in force and the time spent waiting on it
	// (stores without limits or waits are left out).
	Limits []StoreLimit          `json:"limits,omitempty"`
	Lock   *checkpoints.LockInfo `json:"lock,omitempty"`
	// Workers lists the processes that joined a shared phase, live ones first.
	Workers []WorkerStatus `json:"workers,omitempty"`
	User    string         `json:"user,omitempty"`
	Users   []UserRecord   `json:"user_records,omitempty"`
	// Failed and Rejected list records never copied nor deleted as they stand, with
	// the reason (the first 100 of each).
	Failed   []ConflictInfo `json:"failed,omitempty"`
	Rejected []ConflictInfo `json:"rejected,omitempty"`
	// PlanDrift names how the spec differs from what the plan was made against:
	// delete, purge, restore and report refuse until ferry plan runs again.
	PlanDrift []string `json:"plan_drift,omitempty"`
	// Inventories names, by site, the inventory the last plan read in place of a
	// listing, with its date (inventory.go).
	Inventories map[string]InventoryInfo `json:"inventories,omitempty"`
}

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Status reads the state; it takes no lock and works while another ferry runs.
func (m *Migration) Status(ctx context.Context, user string) (*StatusResult, error) {
	res := &StatusResult{Migration: m.Spec.Migration, User: user}
	res.PlanDigest, _, _ = m.State.Meta(ctx, "plan_digest")
	res.PlannedAt, _, _ = m.State.Meta(ctx, "planned_at")
	st, err := m.State.Stats(ctx, m.now())
	if err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}
	res.Records, res.Sites, res.PerMinute = st.Records, st.ReplicasSite, st.Recent
	if r := m.retryTotals(ctx); len(r) > 0 {
		res.Retries = r
	}
	if res.Inventories, err = m.Inventories(ctx); err != nil {
		return nil, err
	}
	if res.Limits, err = m.Limits(ctx); err != nil {
		return nil, err
	}
	states, err := m.stageStates(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range m.Spec.Delete.Stages {
		ss := states[s.Name]
		out := StageStatus{Name: s.Name, Sites: s.Sites, Mode: m.stageMode(s.Name), State: ss.State, Digest: ss.Digest,
			StartedAt: tp(ss.StartedAt), FinishedAt: tp(ss.FinishedAt), PurgedAt: tp(ss.PurgedAt), Replicas: st.StageCounts[s.Name]}
		if ss.State == StageFinished && out.Mode == "soft" {
			out.PurgeAfter = tp(m.purgeAfter(ctx, ss))
		}
		res.Stages = append(res.Stages, out)
	}
	if res.Failed, res.Rejected, err = m.listHeld(ctx); err != nil {
		return nil, err
	}
	if res.PlanDigest != "" {
		changes, recorded, err := m.planDrift(ctx)
		if err != nil {
			return nil, err
		}
		if !recorded {
			changes = []string{"the state does not record what its plan was made against (planned by an older ferry): run ferry plan again"}
		}
		res.PlanDrift = changes
	}
	if l, ok, err := m.State.LockHolder(ctx); err == nil && ok && checkpoints.HolderAlive(l, m.now()) {
		l.Token = ""
		res.Lock = &l
	}
	ws, err := m.State.Workers(ctx)
	if err != nil {
		return nil, Errorf(ExitRuntime, "%w", err)
	}
	for _, w := range ws {
		res.Workers = append(res.Workers, WorkerStatus{Worker: w, Alive: w.Alive(m.now()), Rate: w.Rate()})
	}
	sort.SliceStable(res.Workers, func(i, j int) bool { return res.Workers[i].Alive && !res.Workers[j].Alive })
	if user != "" {
		err := m.State.Records(ctx, checkpoints.Query{User: user}, func(r checkpoints.Record) error {
			ur := UserRecord{Key: r.Key, State: string(r.State), Size: r.Size, Error: r.LastError}
			if r.Conflict != "" {
				ur.Error = r.Conflict
			}
			if r.State == checkpoints.Copied || r.State == checkpoints.Verified {
				ur.Target = m.Target.URI(r.TargetKey)
			}
			for _, p := range r.Replicas {
				ur.Replicas = append(ur.Replicas, UserReplica{Site: p.Site, URI: m.Sites[p.Site].URI(p.SiteKey), State: string(p.State), Stage: p.Stage})
			}
			res.Users = append(res.Users, ur)
			return nil
		})
		if err != nil {
			return nil, Errorf(ExitRuntime, "%w", err)
		}
	}
	return res, nil
}
