package migrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// Issue 13 classes 6, 7 and 8 (I11): delete, purge, restore and report act only on
// what the plan was made against; spec edits after verify (exclusions, grace) are
// honoured; records the plan rejects are never copied nor deleted. And the operator
// items next to them: an empty canary, a dry run's --confirm, verify's advice.

// driftYAML has two sites and two stages; %s are records.exclude and delete.grace.
const driftYAML = `migration: test-migration
sources:
  - {name: virginia, role: primary, url: file://./stores/virginia}
  - {name: singapore, role: backup, url: file://./stores/singapore}
target:
  url: file://./stores/target
records:
  user: '^(?P<user>[^/]+)/'
  exclude: [%s]
delete:
  mode: soft
  grace: %s
  stages:
    - {name: backups, sites: [singapore]}
    - {name: primary, sites: [virginia], mode: hard}
report:
  signing_key: keys/ferry.key
  signer: Test Data Protection Office
`

var driftKeys = []string{"alice/a.txt", "alice/b.txt", "bob/a.txt", "bob/b.txt", "carol/a.txt"}

func newDriftHarness(t *testing.T, k storeKind, yaml string) *harness {
	h := newHarness(t, k, yaml)
	for _, key := range driftKeys {
		h.putBoth(key, []byte("the bytes of "+key))
	}
	return h
}

// setSpec replaces the spec on disk; the next open reads it.
func (h *harness) setSpec(yaml string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, "ferry.yaml"), []byte(yaml), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func mustRefuse(t *testing.T, err error, want ...string) {
	t.Helper()
	mustCode(t, err, ExitRefused)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("refusal does not say %q: %v", w, err)
		}
	}
}

func (h *harness) mustHave(store string, keys ...string) {
	h.t.Helper()
	l := h.listing(store)
	for _, k := range keys {
		if _, ok := l[k]; !ok {
			h.t.Fatalf("%s lost %q (has %d objects)", store, k, len(l))
		}
	}
}

// Class 6: a site's URL changed after verify. The confirmed digest must not delete at
// a store that was never planned: delete, purge, restore and report refuse and say to
// re-plan; after the re-plan the old digest confirms nothing.
func TestI11SiteURLChangedRefused(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		yaml := fmt.Sprintf(driftYAML, "", "24h")
		h := newDriftHarness(t, k, yaml)
		ctx := context.Background()
		m := h.open()
		runThroughVerify(t, m)
		old, err := m.stageScope(ctx, "backups", false)
		if err != nil {
			t.Fatal(err)
		}
		m.Close()

		h.setSpec(strings.Replace(yaml, "file://./stores/singapore", "file://./stores/elsewhere", 1))
		m = h.open()
		_, err = m.Delete(ctx, "backups", old.Digest[:16])
		mustRefuse(t, err, "site singapore url", "stores/elsewhere", "ferry plan")
		_, err = m.Purge(ctx, "backups")
		mustRefuse(t, err, "purge refused", "site singapore url")
		_, err = m.Restore(ctx, "backups")
		mustRefuse(t, err, "restore refused")
		_, err = m.Report(ctx, filepath.Join(h.dir, "report"))
		mustRefuse(t, err, "report refused")
		if _, err := os.Stat(filepath.Join(h.dir, "report")); err == nil {
			t.Fatal("a refused report wrote files")
		}
		st, err := m.Status(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.PlanDrift) == 0 || !strings.Contains(strings.Join(st.PlanDrift, ";"), "site singapore url") {
			t.Fatalf("status does not name the change: %q", st.PlanDrift)
		}
		h.mustHave("singapore", driftKeys...)

		// Re-planned: the digest printed before the change confirms nothing.
		if _, err := m.Plan(ctx); err != nil {
			t.Fatalf("plan: %v", err)
		}
		_, err = m.Delete(ctx, "backups", old.Digest[:16])
		mustRefuse(t, err, "does not match")
		h.mustHave("singapore", driftKeys...)
		if _, err := deleteStage(t, m, "backups"); err != nil {
			t.Fatalf("delete after the re-plan: %v", err)
		}
	})
}

// Class 6: the stage's sites changed between the dry run and the delete.
func TestI11StageSitesChangedRefused(t *testing.T) {
	yaml := fmt.Sprintf(driftYAML, "", "24h")
	h := newDriftHarness(t, storeKinds[0], yaml)
	ctx := context.Background()
	m := h.open()
	runThroughVerify(t, m)
	dry, err := m.stageScope(ctx, "backups", false)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	h.setSpec(strings.Replace(yaml, "{name: backups, sites: [singapore]}", "{name: backups, sites: [virginia]}", 1))
	m = h.open()
	_, err = m.Delete(ctx, "backups", dry.Digest[:16])
	mustRefuse(t, err, "stage backups sites were singapore, are now virginia", "ferry plan")
	h.mustHave("virginia", driftKeys...)
	h.mustHave("singapore", driftKeys...)
}

// Class 6: the target URL changed: the report would name a place where nothing is.
func TestI11TargetChangedReportRefused(t *testing.T) {
	yaml := fmt.Sprintf(driftYAML, "", "24h")
	h := newDriftHarness(t, storeKinds[0], yaml)
	ctx := context.Background()
	m := h.open()
	runThroughVerify(t, m)
	m.Close()
	h.setSpec(strings.Replace(yaml, "url: file://./stores/target", "url: file://./stores/newtarget", 1))
	m = h.open()
	_, err := m.Report(ctx, filepath.Join(h.dir, "report"))
	mustRefuse(t, err, "target url", "newtarget", "ferry plan")
}

// Class 6: a state planned by a ferry that did not record the plan context: delete
// refuses until it is planned again.
func TestI11StateWithoutPlanContext(t *testing.T) {
	h := newDriftHarness(t, storeKinds[0], fmt.Sprintf(driftYAML, "", "24h"))
	ctx := context.Background()
	m := h.open()
	runThroughVerify(t, m)
	if err := m.State.SetMeta(ctx, planContextKey, ""); err != nil {
		t.Fatal(err)
	}
	_, err := deleteStage(t, m, "backups")
	mustRefuse(t, err, "older ferry", "ferry plan")
	h.mustHave("singapore", driftKeys...)
	if _, err := m.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := deleteStage(t, m, "backups"); err != nil {
		t.Fatalf("delete after the re-plan: %v", err)
	}
}

// Class 7: a record excluded after verify is never deleted: the delete refuses until
// re-planned, the plan marks the records excluded, and no stage deletes them.
func TestI11ExcludedAfterVerifyNeverDeleted(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newDriftHarness(t, k, fmt.Sprintf(driftYAML, "", "24h"))
		ctx := context.Background()
		m := h.open()
		runThroughVerify(t, m)
		m.Close()

		h.setSpec(fmt.Sprintf(driftYAML, "'bob/**'", "24h"))
		m = h.open()
		_, err := deleteStage(t, m, "backups")
		mustRefuse(t, err, "records.exclude", "ferry plan")
		if _, err := m.Plan(ctx); err != nil {
			t.Fatalf("plan: %v", err)
		}
		if s := record(t, m, "bob/a.txt").State; s != checkpoints.Excluded {
			t.Fatalf("bob/a.txt is %s after the re-plan, want excluded", s)
		}
		if _, err := deleteStage(t, m, "backups"); err != nil {
			t.Fatalf("delete backups: %v", err)
		}
		if _, err := deleteStage(t, m, "primary"); err != nil {
			t.Fatalf("delete primary: %v", err)
		}
		h.mustHave("singapore", "bob/a.txt", "bob/b.txt")
		h.mustHave("virginia", "bob/a.txt", "bob/b.txt")
		if _, ok := h.listing("singapore")["alice/a.txt"]; ok {
			t.Fatal("alice/a.txt was not deleted: the stage did not run")
		}
	})
}

// softKinds runs f against every store kind and a versioned MinIO bucket, where a
// soft delete is a delete marker and the kept bytes a noncurrent version.
func softKinds(t *testing.T, f func(t *testing.T, k storeKind)) {
	eachKind(t, f)
	t.Run("s3-versioned", func(t *testing.T) {
		f(t, storeKind{"s3-versioned", func(t *testing.T, h *harness, name string) providers.Store {
			return openS3(t, s3test.Shared(t, s3test.MinIO), true, name)
		}})
	})
}

// Class 7: a record excluded after its replicas were soft-deleted is never purged.
func TestI11ExcludedAfterSoftDeleteNeverPurged(t *testing.T) {
	softKinds(t, func(t *testing.T, k storeKind) { excludedAfterSoftDelete(t, k) })
}

func excludedAfterSoftDelete(t *testing.T, k storeKind) {
	h := newDriftHarness(t, k, fmt.Sprintf(driftYAML, "", "24h"))
	ctx := context.Background()
	m := h.open()
	runThroughVerify(t, m)
	if _, err := deleteStage(t, m, "backups"); err != nil {
		t.Fatal(err)
	}
	m.Close()
	h.setSpec(fmt.Sprintf(driftYAML, "'bob/**'", "24h"))
	m = h.open()
	if _, err := m.Plan(ctx); err != nil {
		t.Fatalf("plan: %v", err)
	}
	h.advance(25 * time.Hour)
	res, err := m.Purge(ctx, "backups")
	mustCode(t, err, ExitIncomplete)
	if !h.kept(m, "bob/a.txt", "singapore") || !h.kept(m, "bob/b.txt", "singapore") {
		t.Fatal("an excluded record's kept replica was purged")
	}
	if replicaState(t, m, "alice/a.txt", "singapore") != checkpoints.Purged {
		t.Fatalf("alice/a.txt was not purged: %+v", res)
	}
	if !strings.Contains(fmt.Sprint(res.Problems), "excluded") {
		t.Fatalf("purge problems do not say why: %+v", res.Problems)
	}
}

// Class 7: the grace in force at the soft delete counts; a shorter one later does
// not let purge run early.
func TestI11GraceShortenedAfterSoftDelete(t *testing.T) {
	softKinds(t, func(t *testing.T, k storeKind) { graceShortened(t, k) })
}

func graceShortened(t *testing.T, k storeKind) {
	h := newDriftHarness(t, k, fmt.Sprintf(driftYAML, "", "24h"))
	ctx := context.Background()
	m := h.open()
	runThroughVerify(t, m)
	if _, err := deleteStage(t, m, "backups"); err != nil {
		t.Fatal(err)
	}
	m.Close()
	h.setSpec(fmt.Sprintf(driftYAML, "", "1h"))
	h.advance(2 * time.Hour)
	m = h.open()
	_, err := m.Purge(ctx, "backups")
	mustRefuse(t, err, "grace period")
	if !h.kept(m, "alice/a.txt", "singapore") {
		t.Fatal("purged inside the grace in force at the soft delete")
	}
	st, err := m.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if pa := st.Stages[0].PurgeAfter; pa == nil || pa.Sub(h.clock()) < 20*time.Hour {
		t.Fatalf("status says purge after %v, now %v: not the 24h in force at the soft delete", pa, h.clock())
	}
	h.advance(23 * time.Hour)
	if _, err := m.Purge(ctx, "backups"); err != nil {
		t.Fatalf("purge after the grace: %v", err)
	}
}

// Class 8: a key that records.user does not match is rejected at plan, listed with
// its reason, never copied and never deleted.
func TestI11RejectedRecordNeverCopiedNorDeleted(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newDriftHarness(t, k, fmt.Sprintf(driftYAML, "", "24h"))
		h.putBoth("loose.txt", []byte("nobody's"))
		ctx := context.Background()
		m := h.open()
		p, err := m.Plan(ctx)
		mustCode(t, err, ExitIncomplete)
		if !strings.Contains(err.Error(), "1 rejected") {
			t.Fatalf("plan's message does not count the rejected record: %v", err)
		}
		if len(p.Rejected) != 1 || p.Rejected[0].Key != "loose.txt" || !strings.Contains(p.Rejected[0].Reason, "records.user") {
			t.Fatalf("plan lists rejected %+v", p.Rejected)
		}
		if _, err := m.Copy(ctx); ExitCode(err) != ExitOK && ExitCode(err) != ExitIncomplete {
			t.Fatalf("copy: %v", err)
		}
		if _, ok := h.listing(spec.TargetName)["loose.txt"]; ok {
			t.Fatal("a rejected record was copied")
		}
		if _, err := m.Verify(ctx, false); ExitCode(err) != ExitOK && ExitCode(err) != ExitIncomplete {
			t.Fatalf("verify: %v", err)
		}
		for _, st := range []string{"backups", "primary"} {
			if _, err := deleteStage(t, m, st); err != nil {
				t.Fatalf("delete %s: %v", st, err)
			}
		}
		h.mustHave("singapore", "loose.txt")
		h.mustHave("virginia", "loose.txt")
		st, err := m.Status(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Rejected) != 1 || st.Rejected[0].Key != "loose.txt" || st.Rejected[0].Reason == "" {
			t.Fatalf("status lists rejected %+v", st.Rejected)
		}
	})
}

// Class 8, a state planned by an older ferry, which kept a rejected key as failed:
// copy (which retries failed records) still never copies it.
func TestI11OldFailedRejectionNotCopied(t *testing.T) {
	h := newDriftHarness(t, storeKinds[0], fmt.Sprintf(driftYAML, "", "24h"))
	h.putBoth("loose.txt", []byte("nobody's"))
	ctx := context.Background()
	m := h.open()
	if _, err := m.Plan(ctx); ExitCode(err) != ExitIncomplete {
		t.Fatalf("plan: %v", err)
	}
	r := record(t, m, "loose.txt")
	r.State, r.LastError = checkpoints.Failed, "key does not match records.user"
	if err := m.State.Save(ctx, []checkpoints.Record{r}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Copy(ctx); err != nil {
		t.Fatalf("copy: %v", err)
	}
	if _, ok := h.listing(spec.TargetName)["loose.txt"]; ok {
		t.Fatal("a record the plan rejected was copied")
	}
	if s := record(t, m, "loose.txt").State; s != checkpoints.Rejected {
		t.Fatalf("loose.txt is %s, want rejected", s)
	}
}

// A 1% canary of a handful of replicas selects none by its sample: plan rounds it up
// to one replica, and a canary that finished empty (planned by an older ferry)
// unlocks no later stage.
func TestEmptyCanaryRoundedUp(t *testing.T) {
	yaml := strings.Replace(fmt.Sprintf(driftYAML, "", "24h"), "  stages:\n", "  stages:\n    - {name: canary, sites: [singapore], sample: 1%}\n", 1)
	h := newHarness(t, storeKinds[0], yaml)
	var keys []string
	for i := 0; len(keys) < 8; i++ {
		if k := fmt.Sprintf("u%d/r.txt", i); !spec.InSample(k, 0.01) {
			keys = append(keys, k)
			h.putBoth(k, []byte(k))
		}
	}
	ctx := context.Background()
	m := h.open()
	p := runThroughVerify(t, m)
	if p.Stages[0].Name != "canary" || p.Stages[0].Replicas != 1 {
		t.Fatalf("plan predicts canary %+v, want 1 replica (rounded up)", p.Stages[0])
	}

	// A canary that an older ferry let finish empty does not unlock later stages.
	if err := m.State.SaveStage(ctx, checkpoints.StageState{Name: "canary", Ord: 0, Mode: "soft", State: StageFinished, FinishedAt: h.clock()}); err != nil {
		t.Fatal(err)
	}
	_, err := deleteStage(t, m, "backups")
	mustRefuse(t, err, "empty canary")
	h.mustHave("singapore", keys...)
	if err := m.State.SaveStage(ctx, checkpoints.StageState{Name: "canary", Ord: 0, State: StagePending}); err != nil {
		t.Fatal(err)
	}

	d, err := deleteStage(t, m, "canary")
	if err != nil || d.Deleted != 1 {
		t.Fatalf("canary: %+v %v", d, err)
	}
	if n := len(h.listing("singapore")); n != len(keys)-1 {
		t.Fatalf("singapore holds %d of %d after the canary", n, len(keys))
	}
	if _, err := deleteStage(t, m, "backups"); err != nil {
		t.Fatalf("backups after the canary: %v", err)
	}
}

// A dry run checks a given --confirm as the real run would (delete and run).
func TestDryRunChecksConfirm(t *testing.T) {
	h := newDriftHarness(t, storeKinds[0], fmt.Sprintf(driftYAML, "", "24h"))
	ctx := context.Background()
	m := h.open()
	p := runThroughVerify(t, m)
	m.Close()
	d := h.openDry()
	_, err := d.Delete(ctx, "backups", "deadbeefdeadbeef")
	mustRefuse(t, err, "does not match")
	_, err = d.Run(ctx, "delete", "deadbeefdeadbeef", false)
	mustRefuse(t, err, "does not match")
	sc, err := d.stageScope(ctx, "backups", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Delete(ctx, "backups", sc.Digest[:12]); err != nil {
		t.Fatalf("dry run with the right digest: %v", err)
	}
	if _, err := d.Run(ctx, "delete", p.Digest[:12], false); err != nil {
		t.Fatalf("dry run of run with the plan digest: %v", err)
	}
	h.mustHave("singapore", driftKeys...)
}

// After a deletion, a target copy that no longer verifies is not "copied again by the
// next ferry copy": verify says what is true.
func TestVerifyAdviceAfterDeletion(t *testing.T) {
	h := newDriftHarness(t, storeKinds[0], fmt.Sprintf(driftYAML, "", "24h"))
	ctx := context.Background()
	m := h.open()
	runThroughVerify(t, m)
	if _, err := deleteStage(t, m, "backups"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(h.filePath(spec.TargetName, "alice/a.txt")); err != nil {
		t.Fatal(err)
	}
	res, err := m.Verify(ctx, false)
	mustCode(t, err, ExitVerify)
	if res.MismatchedAfterDelete != 1 {
		t.Fatalf("mismatched after delete = %d, want 1", res.MismatchedAfterDelete)
	}
	msg := err.Error()
	if strings.Contains(msg, "they are copied again") || !strings.Contains(msg, "NOT copied again") || !strings.Contains(msg, "--restore") {
		t.Fatalf("verify's advice is not what happens: %s", msg)
	}
	if _, err := m.Copy(ctx); err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.filePath(spec.TargetName, "alice/a.txt")); err == nil {
		t.Fatal("copy wrote the target copy again although verify said it would not")
	}
}
