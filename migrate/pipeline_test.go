package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/storetest"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", to drop the test schema
)

// TestPipelineEndToEnd runs every phase over three sites with one conflict and checks
// the result with the oracle (direct listings), against every store kind.
func TestPipelineEndToEnd(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		recs := h.standardData(40)
		// One deliberate conflict: singapore's copy of a record differs in size.
		bad := recs[len(recs)/2]
		h.put("singapore", bad.Key, append(bad.Bytes(), 'x'))
		ctx := context.Background()
		m := h.open()

		plan := runThroughVerify(t, m)
		if len(plan.Conflicts) != 1 || plan.Conflicts[0].Key != bad.Key {
			t.Fatalf("conflicts = %+v, want exactly %q", plan.Conflicts, bad.Key)
		}
		if plan.Records["planned"] != int64(len(recs)-1) {
			t.Fatalf("planned %d, want %d", plan.Records["planned"], len(recs)-1)
		}
		for i, st := range m.Spec.Delete.Stages {
			d, err := deleteStage(t, m, st.Name)
			if err != nil {
				t.Fatalf("delete %s: %v", st.Name, err)
			}
			if d.Scope.Digest != plan.Stages[i].Digest {
				t.Fatalf("stage %s: scope digest at delete %s, plan predicted %s", st.Name, d.Scope.Digest, plan.Stages[i].Digest)
			}
		}
		// The oracle: every record but the conflict is at the target with its bytes;
		// the sites keep only the conflicting record.
		target := h.listing("target")
		for _, r := range recs {
			_, ok := target[r.Key]
			if r.Key == bad.Key {
				if ok {
					t.Fatalf("conflicting record %q was copied", r.Key)
				}
				continue
			}
			if !ok {
				t.Fatalf("record %q missing at target", r.Key)
			}
			if got := h.read("target", r.Key); !bytes.Equal(got, r.Bytes()) {
				t.Fatalf("record %q: target bytes differ", r.Key)
			}
		}
		for _, site := range []string{"virginia", "singapore", "archive"} {
			for key := range h.listing(site) {
				if key != bad.Key {
					t.Fatalf("site %s still holds %q", site, key)
				}
			}
		}
		if _, ok := h.listing("virginia")[bad.Key]; !ok {
			t.Fatal("the conflicting record was deleted at virginia")
		}
		// Soft-deleted backups are recoverable until purge; the grace period holds.
		if _, err := m.Purge(ctx, "backups"); ExitCode(err) != ExitRefused {
			t.Fatalf("purge inside the grace period: %v, want refused", err)
		}
		h.advance(25 * time.Hour)
		for _, st := range []string{"canary", "backups"} {
			if _, err := m.Purge(ctx, st); err != nil {
				t.Fatalf("purge %s: %v", st, err)
			}
		}
		rep, err := m.Report(ctx, t.TempDir())
		if ExitCode(err) != ExitIncomplete || rep == nil || rep.Complete {
			t.Fatalf("report of a migration with a conflict: err %v, complete %v; want exit 3, incomplete", err, rep != nil && rep.Complete)
		}
		if rep.Summary.TreeSize != uint64(len(recs)) {
			t.Fatalf("manifest has %d lines, want %d", rep.Summary.TreeSize, len(recs))
		}
	})
}

// TestReplanKeepsFinishedWork: new objects are planned, finished records stay finished.
func TestReplanKeepsFinishedWork(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		recs := h.standardData(10)
		m := h.open()
		p1 := runThroughVerify(t, m)
		h.put("virginia", "user-99999/new.bin", []byte("new data"))
		p2, err := m.Plan(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if p2.New != 1 || p2.Digest == p1.Digest {
			t.Fatalf("re-plan: new=%d digest changed=%v", p2.New, p2.Digest != p1.Digest)
		}
		if p2.Records["verified"] != int64(len(recs)) || p2.Records["planned"] != 1 {
			t.Fatalf("re-plan records %v: verified work lost", p2.Records)
		}
		c, err := m.Copy(context.Background())
		if err != nil || c.Copied != 1 {
			t.Fatalf("copy after re-plan: copied %d, err %v; want exactly the new record", c.Copied, err)
		}
		p3, _ := m.Plan(context.Background())
		if p3.Digest != p2.Digest {
			t.Fatal("plan digest changed although no site changed")
		}
	})
}

func TestConflictPolicies(t *testing.T) {
	for _, policy := range []string{"fail", "prefer-primary", "keep-both"} {
		t.Run(policy, func(t *testing.T) {
			h := newHarness(t, storeKinds[0], fmt.Sprintf(sitesYAML, policy))
			a := []byte("the primary's version")
			b := []byte("the backup's other version!")
			h.put("virginia", "u1/doc", a)
			h.put("singapore", "u1/doc", b)
			// Same size, different bytes: found only by reading, at verify.
			h.put("virginia", "u2/doc", []byte("AAAA"))
			h.put("singapore", "u2/doc", []byte("BBBB"))
			m := h.open()
			runThroughVerify(t, m)
			r1, r2 := record(t, m, "u1/doc"), record(t, m, "u2/doc")
			switch policy {
			case "fail":
				if r1.State != checkpoints.Conflict || r2.State != checkpoints.Conflict {
					t.Fatalf("states %s %s, want conflict", r1.State, r2.State)
				}
			case "prefer-primary":
				if r1.State != checkpoints.Verified || r1.Replica("singapore").State != checkpoints.Divergent {
					t.Fatalf("u1: %s / singapore %s", r1.State, r1.Replica("singapore").State)
				}
				if r2.State != checkpoints.Verified || r2.Replica("singapore").State != checkpoints.Divergent {
					t.Fatalf("u2: %s / singapore %s", r2.State, r2.Replica("singapore").State)
				}
				if got := h.read("target", "u1/doc"); !bytes.Equal(got, a) {
					t.Fatalf("target has %q, want the primary's", got)
				}
			case "keep-both":
				v := record(t, m, "u1/doc"+ConflictSuffix+"singapore")
				if r1.State != checkpoints.Verified || v.State != checkpoints.Verified {
					t.Fatalf("u1 %s, variant %s: want both verified", r1.State, v.State)
				}
				if got := h.read("target", "u1/doc"+ConflictSuffix+"singapore"); !bytes.Equal(got, b) {
					t.Fatalf("variant at target = %q", got)
				}
				// The same-size divergence found at verify becomes a variant too; the
				// next copy and verify migrate it.
				if _, err := m.Copy(context.Background()); err != nil {
					t.Fatal(err)
				}
				if _, err := m.Verify(context.Background(), false); err != nil {
					t.Fatal(err)
				}
				if got := h.read("target", "u2/doc"+ConflictSuffix+"singapore"); !bytes.Equal(got, []byte("BBBB")) {
					t.Fatalf("u2 variant at target = %q", got)
				}
			}
			// Whatever the policy, divergent bytes are never deleted: run every stage.
			for _, st := range m.Spec.Delete.Stages {
				if _, err := deleteStage(t, m, st.Name); err != nil {
					t.Fatalf("delete %s: %v", st.Name, err)
				}
			}
			sg := h.listing("singapore")
			if policy != "keep-both" {
				if _, ok := sg["u1/doc"]; !ok {
					t.Fatal("a divergent replica was deleted")
				}
				if _, ok := sg["u2/doc"]; !ok {
					t.Fatal("a divergent replica (same size) was deleted")
				}
			}
			// Under keep-both every version reached the target before anything was deleted.
			if policy == "keep-both" {
				for _, key := range []string{"u1/doc", "u2/doc"} {
					if _, ok := h.listing("target")[key+ConflictSuffix+"singapore"]; !ok && sg[key].Key != "" {
						t.Fatalf("%s: singapore's version neither kept nor migrated", key)
					}
				}
			}
		})
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		h.standardData(5)
		before := map[string]int{}
		for name := range h.raw {
			before[name] = len(h.listing(name))
		}
		ctx := context.Background()
		dm := h.openDry()
		p, err := dm.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p.Records["planned"] == 0 || !p.DryRun {
			t.Fatalf("dry plan says %v", p.Records)
		}
		c, err := dm.Copy(ctx)
		if err != nil || c.Records == 0 || c.Copied != 0 {
			t.Fatalf("dry copy: %+v %v", c, err)
		}
		d, err := dm.Delete(ctx, "canary", "")
		if err != nil || d.Scope.Digest == "" {
			t.Fatalf("dry delete: %+v %v", d, err)
		}
		dm.Close()
		if _, err := statFile(h.dir + "/ferry.db"); err == nil {
			t.Fatal("a dry run created the state file")
		}
		for name := range h.raw {
			if n := len(h.listing(name)); n != before[name] {
				t.Fatalf("dry run changed %s: %d -> %d objects", name, before[name], n)
			}
		}
		// With real state: a dry run does not advance it.
		m := h.open()
		runThroughVerify(t, m)
		st1, _ := m.Status(ctx, "")
		m.Close()
		dm2 := h.openDry()
		if _, err := dm2.Delete(ctx, "canary", ""); err != nil {
			t.Fatal(err)
		}
		dm2.Close()
		m2 := h.open()
		st2, _ := m2.Status(ctx, "")
		if fmt.Sprint(st1.Sites) != fmt.Sprint(st2.Sites) || fmt.Sprint(st1.Records) != fmt.Sprint(st2.Records) {
			t.Fatalf("dry run advanced the state:\n%v\n%v", st1.Sites, st2.Sites)
		}
	})
}

func TestDeleteGuards(t *testing.T) {
	h := newHarness(t, storeKinds[1], strings.Replace(fmt.Sprintf(sitesYAML, "fail"), "mode: soft\n", "mode: soft\n  max_delete: 50%\n", 1))
	h.standardData(10)
	m := h.open()
	ctx := context.Background()
	runThroughVerify(t, m)
	if _, err := m.Delete(ctx, "backups", "deadbeefdeadbeef"); ExitCode(err) != ExitRefused || !strings.Contains(err.Error(), "must finish before") {
		t.Fatalf("stage order: %v", err)
	}
	if _, err := m.Delete(ctx, "canary", ""); ExitCode(err) != ExitRefused {
		t.Fatalf("no confirm: %v", err)
	}
	if _, err := m.Delete(ctx, "canary", "abc"); ExitCode(err) != ExitRefused {
		t.Fatalf("short confirm: %v", err)
	}
	if _, err := m.Delete(ctx, "canary", "0000000000000000"); ExitCode(err) != ExitRefused {
		t.Fatalf("wrong confirm: %v", err)
	}
	if _, err := m.Delete(ctx, "nosuchstage", "0000000000000000"); ExitCode(err) != ExitUsage {
		t.Fatalf("unknown stage: %v", err)
	}
	if _, err := deleteStage(t, m, "canary"); err != nil {
		t.Fatal(err)
	}
	// backups would delete far more than half of singapore's and archive's replicas.
	if _, err := deleteStage(t, m, "backups"); ExitCode(err) != ExitRefused || !strings.Contains(err.Error(), "max_delete") {
		t.Fatalf("max_delete: %v", err)
	}
	if n := len(h.listing("archive")); n == 0 {
		t.Fatal("a refused stage deleted something")
	}
}

func TestSoftDeleteRestoreAndPurge(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		h.standardData(8)
		m := h.open()
		ctx := context.Background()
		runThroughVerify(t, m)
		before := h.listing("singapore")
		if _, err := deleteStage(t, m, "canary"); err != nil {
			t.Fatal(err)
		}
		mid := h.listing("singapore")
		if len(mid) >= len(before) {
			t.Fatalf("canary deleted nothing (%d -> %d)", len(before), len(mid))
		}
		r, err := m.Restore(ctx, "canary")
		if err != nil || r.Done != int64(len(before)-len(mid)) {
			t.Fatalf("restore: %+v %v", r, err)
		}
		after := h.listing("singapore")
		if len(after) != len(before) {
			t.Fatalf("restore brought back %d of %d", len(after)-len(mid), len(before)-len(mid))
		}
		for key := range before {
			if after[key].Size != before[key].Size {
				t.Fatalf("%q restored with another size", key)
			}
		}
		// Restored replicas must be proven again before a stage deletes them.
		sc, _ := m.stageScope(ctx, "canary", false)
		if sc.Replicas != 0 {
			t.Fatalf("restored replicas in scope before verify: %d", sc.Replicas)
		}
		if _, err := m.Verify(ctx, false); err != nil {
			t.Fatal(err)
		}
		if _, err := deleteStage(t, m, "canary"); err != nil {
			t.Fatal(err)
		}
		h.advance(25 * time.Hour)
		if _, err := m.Purge(ctx, "canary"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Restore(ctx, "canary"); ExitCode(err) != ExitRefused {
			t.Fatalf("restore after purge: %v", err)
		}
	})
}

func TestLockRefusesSecondProcess(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(2)
	m1 := h.open()
	if err := m1.Lock(context.Background(), "copy"); err != nil {
		t.Fatal(err)
	}
	m2 := h.open()
	// Same pid, same host: the holder is alive, so the second is refused.
	if _, err := m2.Plan(context.Background()); ExitCode(err) != ExitRefused {
		t.Fatalf("second holder: %v, want exit 5", err)
	}
	m1.Close()
	if _, err := m2.Plan(context.Background()); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestStatusUser(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	recs := h.standardData(5)
	m := h.open()
	runThroughVerify(t, m)
	st, err := m.Status(context.Background(), synth.User(1))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, r := range recs {
		if strings.HasPrefix(r.Key, synth.User(1)+"/") {
			want++
		}
	}
	if len(st.Users) != want || want == 0 {
		t.Fatalf("status --user: %d records, want %d", len(st.Users), want)
	}
	for _, u := range st.Users {
		if u.State != "verified" || u.Target == "" || len(u.Replicas) == 0 {
			t.Fatalf("user record %+v", u)
		}
	}
	if st.Records[checkpoints.Verified].N != int64(len(recs)) {
		t.Fatalf("status counts %v", st.Records)
	}
}

var _ = providers.ErrNotFound

// A source that changes while it is being copied is never recorded as its new
// version. A store whose reads are snapshots (providers.Features.SnapshotReads)
// hands copy exactly the planned version, which copy records; verify then finds the
// replica changed and it is never deleted. On any other store copy stats the source
// again after the read and does not record the copy.
func TestCopySourceChangedDuringCopy(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		h.put("virginia", "u1/doc", []byte("first version"))
		m := h.open()
		ctx := context.Background()
		if _, err := m.Plan(ctx); err != nil {
			t.Fatal(err)
		}
		snapshot := providers.FeaturesOf(h.raw["virginia"]).SnapshotReads
		var once sync.Once
		overwrite := func() { once.Do(func() { h.put("virginia", "u1/doc", []byte("second version!")) }) }
		if snapshot {
			// The source is read whole before the target write starts.
			h.faults["target"].Before(func(_ context.Context, c faulty.Call) error {
				if c.Method == faulty.Put && c.Key == "u1/doc" {
					overwrite()
				}
				return nil
			})
		} else {
			// Copy re-stats the source after reading it: overwrite it just before that.
			h.faults["virginia"].Before(func(_ context.Context, c faulty.Call) error {
				if c.Method == faulty.Stat && c.Key == "u1/doc" {
					overwrite()
				}
				return nil
			})
		}
		_, err := m.Copy(ctx)
		if snapshot {
			if err != nil {
				t.Fatal(err)
			}
			r := record(t, m, "u1/doc")
			if want := fmt.Sprintf("%x", sha256.Sum256([]byte("first version"))); r.State != checkpoints.Copied || r.SHA256 != want {
				t.Fatalf("a snapshot read of the planned version: record %s with sha256 %s, want copied with %s", r.State, r.SHA256, want)
			}
			if got := h.read("target", "u1/doc"); string(got) != "first version" {
				t.Fatalf("target holds %q", got)
			}
			// The replica changed after it was read: verify must not prove it.
			_, err := m.Verify(ctx, false)
			mustCode(t, err, ExitIncomplete)
			r = record(t, m, "u1/doc")
			for _, p := range r.Replicas {
				if p.Site == "virginia" && p.State != checkpoints.Divergent {
					t.Fatalf("a replica rewritten after the copy is %s, want divergent", p.State)
				}
			}
		} else {
			mustCode(t, err, ExitIncomplete)
			r := record(t, m, "u1/doc")
			if r.State == checkpoints.Copied || r.State == checkpoints.Verified {
				t.Fatalf("a source that changed during the copy was recorded as %s", r.State)
			}
		}
		if got := h.read("virginia", "u1/doc"); string(got) != "second version!" {
			t.Fatalf("the source holds %q", got)
		}
		// A new plan sees the new version and the copy then takes it.
		h.faults["virginia"].Clear()
		h.faults["target"].Clear()
		if _, err := m.Plan(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Copy(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Verify(ctx, false); err != nil {
			t.Fatal(err)
		}
		if got := h.read("target", "u1/doc"); string(got) != "second version!" {
			t.Fatalf("target holds %q", got)
		}
	})
}

// A record whose target copy already matches (by checksums both stores vouch for) is
// not copied again: here the state is lost after a copy, as after a crash between the
// target write and the state write.
func TestCopySkipsMatchingTarget(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	recs := h.standardData(5)
	m := h.open()
	ctx := context.Background()
	runThroughVerify(t, m)
	m.Close()
	for _, f := range []string{"ferry.db", "ferry.db-wal", "ferry.db-shm"} {
		os.Remove(filepath.Join(h.dir, f))
	}
	var puts atomic.Int64
	h.faults["target"].Before(func(_ context.Context, c faulty.Call) error {
		if c.Method == faulty.Put && !isMarkerKey(c.Key) { // copy (re)writes ferry's marker
			puts.Add(1)
		}
		return nil
	})
	m2 := h.open()
	if _, err := m2.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := m2.Copy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Skipped != int64(len(recs)) || puts.Load() != 0 {
		t.Fatalf("copy after a lost state: %d skipped of %d, %d puts; want every record skipped", c.Skipped, len(recs), puts.Load())
	}
	if _, err := m2.Verify(ctx, false); err != nil {
		t.Fatal(err)
	}
}

// countingRetrier stands for a store whose SDK retried requests.
type countingRetrier struct {
	providers.Store
	n int64
}

func (c countingRetrier) Retries() int64          { return c.n }
func (c countingRetrier) Unwrap() providers.Store { return c.Store }

// Requests the stores retried are summed across runs and shown by status.
func TestStatusReportsRetries(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(2)
	h.faults["virginia"] = faulty.Wrap(countingRetrier{h.raw["virginia"], 7})
	for i := 0; i < 2; i++ {
		m := h.open()
		if _, err := m.Plan(context.Background()); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	m := h.open()
	st, err := m.Status(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Retries["virginia"] != 14 {
		t.Fatalf("status retries = %v, want virginia 14", st.Retries)
	}
}

// The pipeline on the shared PostgreSQL state store (the one many workers use),
// with its own schema.
func TestPipelinePostgresState(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	recs := h.standardData(5)
	opts := h.options(false)
	opts.StateDSN = storetest.PostgresState(t, "ferry_migrate_test_")
	m, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() }) // before the schema is dropped (cleanups run last first)
	runThroughVerify(t, m)
	for _, st := range m.Spec.Delete.Stages {
		if _, err := deleteStage(t, m, st.Name); err != nil {
			t.Fatal(err)
		}
	}
	st, err := m.Status(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Records[checkpoints.Verified].N != int64(len(recs)) {
		t.Fatalf("records %v", st.Records)
	}
	for _, site := range []string{"virginia", "singapore", "archive"} {
		if n := len(h.listing(site)); n != 0 {
			t.Fatalf("%s holds %d", site, n)
		}
	}
}
