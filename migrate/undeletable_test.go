package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/gs/gstest"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// DESIGN.md "Providers": an object under a retention policy or a hold is reported as
// undeletable, never retried forever and never counted as deleted.

// undeletableYAML: two sites, no versions, one stage per site.
const undeletableYAML = `migration: test-migration
sources:
  - {name: virginia, role: primary, url: file://./stores/virginia}
  - {name: singapore, role: backup, url: file://./stores/singapore}
target:
  url: file://./stores/target
records:
  user: '^(?P<user>[^/]+)/'
  conflicts: fail
copy:
  concurrency: 4
  retries: 3
delete:
  mode: %s
  grace: 24h
  stages:
    - {name: backups, sites: [singapore]}
    - {name: primary, sites: [virginia]}
report:
  signing_key: keys/ferry.key
  signer: Test Data Protection Office
`

const heldReason = "protected by temporary hold"

// TestUndeletableReplica: the site refuses one replica's delete (ErrRetained). The
// stage finishes with exit 3, the replica is undeletable with the site's reason and
// no intent, nothing counts it as deleted, a re-plan keeps it, purge skips it, the
// certificate is incomplete and lists it; each rerun tries it exactly once, and once
// the hold is released the rerun deletes it and the stage completes.
func TestUndeletableReplica(t *testing.T) {
	for _, mode := range []string{"hard", "soft"} {
		t.Run(mode, func(t *testing.T) {
			eachKind(t, func(t *testing.T, k storeKind) {
				testUndeletable(t, k, mode)
			})
		})
	}
}

func testUndeletable(t *testing.T, k storeKind, mode string) {
	ctx := context.Background()
	h := newHarness(t, k, fmt.Sprintf(undeletableYAML, mode))
	for _, key := range []string{"u1/held", "u2/free"} {
		h.put("virginia", key, []byte("bytes of "+key))
		h.put("singapore", key, []byte("bytes of "+key))
	}
	m := h.open()
	runThroughVerify(t, m)

	method := faulty.DeleteIf
	if mode == "soft" {
		method = faulty.SoftDelete
	}
	held := fmt.Errorf("test: delete %s: %s: %w", "u1/held", heldReason, providers.ErrRetained)
	h.faults["singapore"].FailKey(method, "u1/held", held)

	d, err := deleteStage(t, m, "backups")
	mustCode(t, err, ExitIncomplete)
	if !strings.Contains(err.Error(), "undeletable") || !strings.Contains(err.Error(), "1 replicas") {
		t.Fatalf("stage error %q does not name the undeletable replica", err)
	}
	if d.Undeletable != 1 || d.Deleted != 1 || d.Errors != 0 || d.State != StageFinished {
		t.Fatalf("delete result %+v: want 1 undeletable, 1 deleted, no errors, stage finished", d)
	}
	r := record(t, m, "u1/held")
	p := r.Replica("singapore")
	if p.State != checkpoints.Undeletable || !strings.Contains(p.LastError, heldReason) || !p.DeletedAt.IsZero() || p.ConfirmedAbsent || !p.IntentAt.IsZero() {
		t.Fatalf("held replica %+v: want undeletable with the reason, never deleted", p)
	}
	if got := h.read("singapore", "u1/held"); string(got) != "bytes of u1/held" {
		t.Fatalf("held object now %q", got)
	}
	if _, ok := h.listing("singapore")["u2/free"]; ok {
		t.Fatal("u2/free was not deleted")
	}
	if mode == "soft" {
		for key := range h.listing("singapore") {
			if key != "u1/held" {
				t.Fatalf("singapore lists %q: a refused soft delete left something behind", key)
			}
		}
	}
	stats, err := m.State.Stats(ctx, h.clock())
	if err != nil {
		t.Fatal(err)
	}
	if n := stats.StageCounts["backups"][checkpoints.Intent].N; n != 0 {
		t.Fatalf("%d delete intents left", n)
	}
	if sc, err := m.stageScope(ctx, "backups", false); err != nil || sc.intents != 0 {
		t.Fatalf("stage scope after the run: %d unresolved intents (%v)", sc.intents, err)
	}
	st, err := m.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Stages[0].Replicas[checkpoints.Undeletable].N; n != 1 {
		t.Fatalf("status: stage backups shows %d undeletable, want 1 (%+v)", n, st.Stages[0].Replicas)
	}
	if n := st.Sites["singapore"][checkpoints.Undeletable].N; n != 1 {
		t.Fatalf("status: site singapore shows %d undeletable, want 1", n)
	}
	// The next stage may run: the earlier one finished.
	if _, err := deleteStage(t, m, "primary"); err != nil {
		t.Fatalf("primary: %v", err)
	}

	// A re-plan keeps the replica as it is (still there, still undeletable).
	if _, err := m.Plan(ctx); err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	if st := replicaState(t, m, "u1/held", "singapore"); st != checkpoints.Undeletable {
		t.Fatalf("re-plan turned the undeletable replica into %s", st)
	}

	// The certificate: incomplete, the replica listed as undeletable with its reason.
	dir := filepath.Join(h.dir, "report")
	rep, err := m.Report(ctx, dir)
	if err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	l := manifestLines(t, dir)["u1/held"]
	found := false
	for _, ref := range l.Replicas {
		if ref.Site != "singapore" {
			continue
		}
		found = true
		if ref.State != certificate.ReplicaUndeletable || !strings.Contains(ref.Reason, heldReason) || ref.DeletedAt != "" || ref.ConfirmedAbsent || ref.Mode != "" {
			t.Fatalf("manifest replica %+v: want undeletable with the reason, not deleted", ref)
		}
	}
	if !found {
		t.Fatal("manifest has no singapore replica for u1/held")
	}
	if l.Status == certificate.StatusDeleted || l.Status == certificate.StatusPurged {
		t.Fatalf("manifest status %q for a record with an undeletable replica", l.Status)
	}
	for _, ref := range manifestLines(t, dir)["u2/free"].Replicas {
		if ref.Reason != "" {
			t.Fatalf("a deleted replica carries a reason: %+v", ref)
		}
	}
	if rep.Complete || !strings.Contains(strings.Join(rep.IncompleteReasons, "\n"), "could not be deleted") {
		t.Fatalf("certificate complete=%v reasons %q; want incomplete, naming the undeletable replica", rep.Complete, rep.IncompleteReasons)
	}

	// A rerun tries it once more, exactly once, and says so again.
	before := h.faults["singapore"].Calls(method)
	d, err = deleteStage(t, m, "backups")
	mustCode(t, err, ExitIncomplete)
	if got := h.faults["singapore"].Calls(method) - before; got != 1 {
		t.Fatalf("rerun made %d delete calls, want exactly 1", got)
	}
	if d.Undeletable != 1 {
		t.Fatalf("rerun: %+v, want 1 undeletable", d)
	}

	// The operator releases the hold: the next rerun deletes it and the stage completes.
	h.faults["singapore"].Clear()
	d, err = deleteStage(t, m, "backups")
	if err != nil {
		t.Fatalf("rerun after release: %v (%+v)", err, d)
	}
	if d.Undeletable != 0 || d.Deleted != 1 {
		t.Fatalf("rerun after release: %+v, want 1 deleted", d)
	}
	r = record(t, m, "u1/held")
	p = r.Replica("singapore")
	if p.State != checkpoints.Deleted || !p.ConfirmedAbsent || p.LastError != "" {
		t.Fatalf("released replica %+v: want deleted, confirmed absent, no error", p)
	}
	if _, ok := h.listing("singapore")["u1/held"]; ok {
		t.Fatal("u1/held is still listed at singapore")
	}
	if sc, err := m.stageScope(ctx, "backups", false); err != nil || sc.intents != 0 {
		t.Fatalf("stage scope after the run: %d unresolved intents (%v)", sc.intents, err)
	}
	if mode == "soft" {
		// The purge after the grace removes the kept bytes of both.
		h.advance(25 * 3600e9)
		if _, err := m.Purge(ctx, "backups"); err != nil {
			t.Fatalf("purge: %v", err)
		}
		for _, key := range []string{"u1/held", "u2/free"} {
			if st := replicaState(t, m, key, "singapore"); st != checkpoints.Purged {
				t.Fatalf("after purge %s at singapore is %s, want purged", key, st)
			}
		}
	}
}

// TestUndeletablePurgeSkips: a purge while a replica is undeletable purges the
// others and leaves it as it is (nothing of it was kept to purge).
func TestUndeletablePurgeSkips(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, storeKinds[1], fmt.Sprintf(undeletableYAML, "soft"))
	for _, key := range []string{"u1/held", "u2/free"} {
		h.put("virginia", key, []byte("bytes of "+key))
		h.put("singapore", key, []byte("bytes of "+key))
	}
	m := h.open()
	runThroughVerify(t, m)
	h.faults["singapore"].FailKey(faulty.SoftDelete, "u1/held", fmt.Errorf("test: %s: %w", heldReason, providers.ErrRetained))
	_, err := deleteStage(t, m, "backups")
	mustCode(t, err, ExitIncomplete)
	h.advance(25 * 3600e9)
	res, err := m.Purge(ctx, "backups")
	if err != nil {
		t.Fatalf("purge: %v", err)
	}
	if res.Done != 1 {
		t.Fatalf("purge: %+v, want 1 done", res)
	}
	if st := replicaState(t, m, "u1/held", "singapore"); st != checkpoints.Undeletable {
		t.Fatalf("purge turned the undeletable replica into %s", st)
	}
	if got := h.read("singapore", "u1/held"); string(got) != "bytes of u1/held" {
		t.Fatalf("held object now %q", got)
	}
	if _, err := m.Restore(ctx, "backups"); err == nil {
		t.Log("restore after purge accepted") // a purged stage has nothing to restore
	}
	if st := replicaState(t, m, "u1/held", "singapore"); st != checkpoints.Undeletable {
		t.Fatalf("restore turned the undeletable replica into %s", st)
	}
}

// TestUndeletableGS: the same on Google Cloud Storage (fake-gcs-server behind the
// fault proxy, which adds a temporary hold to one object's metadata and a soft-delete
// policy to the bucket, as GCS would send them): the held object is undeletable with
// gs's reason, released it is deleted, and the certificate says how long the
// provider keeps deleted objects.
func TestUndeletableGS(t *testing.T) {
	srv := gstest.Shared(t)
	ctx := context.Background()
	h := newHarness(t, gsKind, fmt.Sprintf(undeletableYAML, "hard"))
	for _, key := range []string{"u1/held", "u2/free"} {
		h.put("virginia", key, []byte("bytes of "+key))
		h.put("singapore", key, []byte("bytes of "+key))
	}
	m := h.open()
	runThroughVerify(t, m)
	bucket := h.buckets["singapore"]
	release := srv.Faults.Inject(&s3test.Rule{Match: func(r *http.Request) bool {
		op, b := gstest.Classify(r)
		return op == gstest.OpStat && b == bucket && strings.Contains(r.URL.EscapedPath(), "/o/") && strings.Contains(r.URL.EscapedPath(), "held")
	}, Fault: addJSON(map[string]any{"temporaryHold": true})})
	defer release()
	defer srv.Faults.Inject(&s3test.Rule{Match: func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.EscapedPath() == "/storage/v1/b/"+bucket
	}, Fault: addJSON(map[string]any{"softDeletePolicy": map[string]string{"retentionDurationSeconds": "604800", "effectiveTime": "2024-03-01T00:00:00Z"}})})()

	d, err := deleteStage(t, m, "backups")
	mustCode(t, err, ExitIncomplete)
	if d.Undeletable != 1 || d.Deleted != 1 {
		t.Fatalf("delete result %+v: want 1 undeletable, 1 deleted", d)
	}
	r := record(t, m, "u1/held")
	if p := r.Replica("singapore"); p.State != checkpoints.Undeletable || !strings.Contains(p.LastError, "temporary hold") {
		t.Fatalf("held replica %+v: want undeletable naming the temporary hold", p)
	}
	if got := h.read("singapore", "u1/held"); string(got) != "bytes of u1/held" {
		t.Fatalf("held object now %q", got)
	}
	release()
	if d, err = deleteStage(t, m, "backups"); err != nil || d.Deleted != 1 {
		t.Fatalf("rerun after release: %+v, %v", d, err)
	}
	if _, ok := h.listing("singapore")["u1/held"]; ok {
		t.Fatal("u1/held is still at singapore")
	}
	rep, err := m.Report(ctx, filepath.Join(h.dir, "report"))
	if err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	for _, s := range rep.Statement.Predicate.Sites {
		if s.Name != "singapore" {
			continue
		}
		want := certificate.FormatTime(h.clock().Add(7 * 24 * time.Hour))
		if r := s.ProviderRecoverability; r == nil || !r.Recoverable || r.Until != want {
			t.Fatalf("singapore recoverability %+v, want until %s", r, want)
		}
	}
}

// addJSON adds fields to a JSON answer (what GCS would send and the emulator keeps not).
func addJSON(add map[string]any) s3test.Fault {
	return s3test.Fault{Rewrite: func(status int, h http.Header, body []byte) []byte {
		var m map[string]any
		if status != http.StatusOK || json.Unmarshal(body, &m) != nil {
			return body
		}
		for k, v := range add {
			m[k] = v
		}
		out, _ := json.Marshal(m)
		return out
	}}
}
