package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/fault"
	"github.com/ferrymigrate/ferry/providers/faulty"
)

// Each test here would fail if its invariant (DESIGN.md I1-I8, I10) were broken.

// I1: no replica is deleted unless its record is verified and the target copy was
// re-checked as part of that delete.
func TestI1NoDeleteWithoutVerifiedRecheckedTarget(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		recs := h.standardData(6)
		m := h.open()
		ctx := context.Background()
		mustPlanCopy(t, m)
		// Copied but not verified: the scope is empty, nothing is deleted.
		before := len(h.listing("singapore"))
		if d, err := deleteStage(t, m, "canary"); err != nil || d.Deleted != 0 {
			t.Fatalf("delete before verify: %+v %v", d, err)
		}
		if len(h.listing("singapore")) != before {
			t.Fatal("a replica of an unverified record was deleted")
		}
		// Restore the stage to pending for the real run.
		if err := m.State.SaveStage(ctx, checkpoints.StageState{Name: "canary", State: StagePending}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Verify(ctx, false); err != nil {
			t.Fatal(err)
		}
		// The target copy of one record vanishes after verify: its replicas stay.
		victim := ""
		for _, r := range recs {
			if sc := m.assignStage("singapore", r.Key); sc == "canary" {
				if _, ok := h.listing("singapore")[r.Key]; ok {
					victim = r.Key
					break
				}
			}
		}
		if victim == "" {
			t.Fatal("no canary record in the data set")
		}
		if err := h.raw["target"].Delete(ctx, victim); err != nil {
			t.Fatal(err)
		}
		var stat atomic.Int64
		h.faults["target"].Before(func(_ context.Context, c faulty.Call) error {
			if c.Method == faulty.Stat {
				stat.Add(1)
			}
			return nil
		})
		d, err := deleteStage(t, m, "canary")
		if ExitCode(err) != ExitVerify || d.Skipped != 1 {
			t.Fatalf("delete with a vanished target copy: %+v %v; want exit 4, 1 skipped", d, err)
		}
		if _, ok := h.listing("singapore")[victim]; !ok {
			t.Fatal("I1 broken: replica deleted although its target copy was gone")
		}
		if stat.Load() < d.Deleted+1 {
			t.Fatalf("target stat calls %d for %d deletes: the target was not re-checked per record", stat.Load(), d.Deleted)
		}
		if got := record(t, m, victim).State; got == checkpoints.Verified {
			t.Fatal("a record whose target copy vanished is still verified")
		}
	})
}

// I2: a record is verified only if the target's checksum, or its re-read bytes, equal
// the SHA-256 of the bytes read from the source.
func TestI2CorruptTargetNeverVerified(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		recs := h.standardData(4)
		m := h.open()
		ctx := context.Background()
		mustPlanCopy(t, m)
		// Replace one target copy with other bytes of the same size.
		var victim string
		for _, r := range recs {
			if r.Size > 0 {
				victim = r.Key
				break
			}
		}
		b := h.read("target", victim)
		b[0] ^= 0xff
		h.put("target", victim, b)
		_, err := m.Verify(ctx, false)
		mustCode(t, err, ExitVerify)
		if st := record(t, m, victim).State; st == checkpoints.Verified {
			t.Fatal("I2 broken: a corrupted target copy was verified")
		}
		// The next copy repairs it and verify then passes.
		if _, err := m.Copy(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Verify(ctx, true); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(h.read("target", victim), findRec(recs, victim).Bytes()) {
			t.Fatal("repaired copy differs")
		}
	})
}

// I2 with the corruption in flight: the bytes read from the source are corrupted once.
// The copy carries the corrupted hash, but verify reads the replica again, finds it
// differs from the record and nothing of it is deleted.
func TestI2CorruptReadInFlight(t *testing.T) {
	h := newHarness(t, storeKinds[0], fmt.Sprintf(sitesYAML, "prefer-primary"))
	h.put("virginia", "u1/doc", []byte("original bytes"))
	h.faults["virginia"].CorruptOpen("u1/doc")
	m := h.open()
	ctx := context.Background()
	mustPlanCopy(t, m)
	h.faults["virginia"].Clear()
	_, err := m.Verify(ctx, false)
	if ExitCode(err) == ExitOK {
		t.Fatal("verify passed a copy whose source read was corrupted")
	}
	r := record(t, m, "u1/doc")
	if p := r.Replica("virginia"); p.State == checkpoints.Identical {
		t.Fatal("I2/I3 broken: a replica was proven identical to corrupted bytes")
	}
	for _, st := range m.Spec.Delete.Stages {
		deleteStage(t, m, st.Name)
	}
	if _, ok := h.listing("virginia")["u1/doc"]; !ok {
		t.Fatal("the original was deleted although its copy was corrupted")
	}
}

// I3: a replica is deleted only if it was proven identical to the target copy; a
// replica that changes after verification is not deleted.
func TestI3ChangedAfterVerifyNotDeleted(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		h.put("virginia", "u1/doc", []byte("version one"))
		h.put("singapore", "u1/doc", []byte("version one"))
		h.put("virginia", "u2/doc", []byte("other"))
		m := h.open()
		runThroughVerify(t, m)
		// Overwrite singapore's replica between verify and delete (same size).
		h.put("singapore", "u1/doc", []byte("version two"))
		var changed int64
		for _, st := range m.Spec.Delete.Stages[:2] {
			d, err := deleteStage(t, m, st.Name)
			if err != nil && ExitCode(err) != ExitIncomplete {
				t.Fatalf("%s: %v", st.Name, err)
			}
			changed += d.Changed
		}
		if changed != 1 {
			t.Fatalf("%d replicas reported changed, want 1", changed)
		}
		if got := h.read("singapore", "u1/doc"); string(got) != "version two" {
			t.Fatalf("I3 broken: a replica changed after verification was deleted (now %q)", got)
		}
		if st := replicaState(t, m, "u1/doc", "singapore"); st != checkpoints.Present {
			t.Fatalf("changed replica state %s, want present (to be proven again)", st)
		}
	})
}

// I4: the verified state and the delete intent are durable before the delete call,
// and a crash between the call and its outcome is resolved by looking at the site.
func TestI4IntentDurableBeforeDelete(t *testing.T) {
	h := newHarness(t, storeKinds[0], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(5)
	m := h.open()
	ctx := context.Background()
	runThroughVerify(t, m)
	dbPath := filepath.Join(h.dir, "ferry.db")
	var checked atomic.Int64
	h.faults["singapore"].Before(func(_ context.Context, c faulty.Call) error {
		if c.Method != faulty.SoftDelete {
			return nil
		}
		// Another connection (as a new process would) must already see the intent.
		ro, err := checkpoints.Open(context.Background(), dbPath, checkpoints.Options{ReadOnly: true})
		if err != nil {
			return err
		}
		defer ro.Close()
		r, ok, err := ro.Get(context.Background(), c.Key)
		if err != nil || !ok {
			return fmt.Errorf("I4: record %s not readable from a second connection (found %v): %v", c.Key, ok, err)
		}
		var state checkpoints.ReplicaState
		if p := r.Replica("singapore"); p != nil {
			state = p.State
		}
		if state != checkpoints.Intent || r.State != checkpoints.Verified {
			return fmt.Errorf("I4 broken: at the delete call the durable state is replica %q, record %s", state, r.State)
		}
		checked.Add(1)
		return nil
	})
	// Lose the response of the first delete: it happened, ferry does not know.
	h.faults["singapore"].AddRule(faulty.Rule{Method: faulty.SoftDelete, When: fault.When{Nth: 1}, Effect: fault.Effect{Lost: true, Err: errInjected}})
	_, err := deleteStage(t, m, "canary")
	mustCode(t, err, ExitRuntime)
	if checked.Load() == 0 {
		t.Fatal("no delete call observed")
	}
	// Resume: the intent is settled by looking at the site.
	d, err := deleteStage(t, m, "canary")
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if d.Already == 0 {
		t.Fatalf("resume did not settle the interrupted delete: %+v", d)
	}
	st, _ := m.Status(ctx, "")
	if n := st.Sites["singapore"][checkpoints.Intent].N; n != 0 {
		t.Fatalf("%d intents left unresolved", n)
	}
}

// I6: deletion scope comes only from verified records, never from absence in a
// listing; a listing that fails or is cut short fails the phase.
func TestI6ListingFailureFailsPlan(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		h.standardData(8)
		m := h.open()
		ctx := context.Background()
		p1 := runThroughVerify(t, m)
		before, _ := m.Status(ctx, "")
		h.faults["archive"].FailListAfter(3, providers.ErrIncompleteList)
		_, err := m.Plan(ctx)
		mustCode(t, err, ExitRuntime)
		after, _ := m.Status(ctx, "")
		if after.PlanDigest != p1.Digest || fmt.Sprint(before.Sites) != fmt.Sprint(after.Sites) {
			t.Fatal("I6 broken: a failed listing changed the plan")
		}
		h.faults["archive"].Clear()
		// An empty listing of a site the plan knows is refused.
		h.faults["archive"].TruncateList(0)
		_, err = m.Plan(ctx)
		mustCode(t, err, ExitRefused)
		h.faults["archive"].Clear()
		// A listing that lies (cut short, claims success) cannot cause deletion: the
		// unlisted replicas are flagged missing and no stage deletes them.
		h.faults["archive"].TruncateList(2)
		if _, err := m.Plan(ctx); err != nil {
			t.Fatal(err)
		}
		h.faults["archive"].Clear()
		archived := h.listing("archive")
		for _, st := range m.Spec.Delete.Stages[:2] {
			deleteStage(t, m, st.Name)
		}
		st, _ := m.Status(ctx, "")
		deleted := st.Sites["archive"][checkpoints.Deleted].N
		missing := st.Sites["archive"][checkpoints.Missing].N
		if missing == 0 || deleted+missing != int64(len(archived)) {
			t.Fatalf("archive: %d deleted, %d missing of %d", deleted, missing, len(archived))
		}
		left := h.listing("archive")
		if int64(len(left)) != missing {
			t.Fatalf("I6 broken: %d replicas left at archive, %d flagged missing: absence in a listing led to deletion", len(left), missing)
		}
	})
}

// I7: the certificate and its manifest verify offline; any changed byte is detected.
func TestI7CertificateTamperDetected(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(4)
	m := h.open()
	runThroughVerify(t, m)
	for _, st := range m.Spec.Delete.Stages {
		if _, err := deleteStage(t, m, st.Name); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	rep, err := m.Report(context.Background(), dir)
	if rep == nil {
		t.Fatal(err)
	}
	env, err := certificate.ReadEnvelope(rep.CertificatePath)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(rep.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := certificate.VerifyCertificate(env, bytes.NewReader(manifest), nil); err != nil || !r.OK() {
		t.Fatalf("untouched certificate does not verify: %v", err)
	}
	for _, i := range []int{0, len(manifest) / 3, len(manifest) / 2, len(manifest) - 2} {
		bad := bytes.Clone(manifest)
		bad[i] ^= 0x01
		r, err := certificate.VerifyCertificate(env, bytes.NewReader(bad), nil)
		if err == nil && r.OK() {
			t.Fatalf("I7 broken: flipping byte %d of the manifest went unnoticed", i)
		}
	}
}

// I8: secrets never reach logs, errors, JSON, the state store or the certificate.
// A spec that inlines one is refused without echoing it; the names of env vars that
// hold secrets are all ferry ever handles.
func TestI8SecretsNeverWritten(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	h := newHarness(t, storeKinds[0], fmt.Sprintf(sitesYAML, "fail"))
	spec := strings.Replace(h.spec, "target:\n", "target:\n  credentials: {secret_key: "+secret+"}\n", 1)
	if err := os.WriteFile(filepath.Join(h.dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), h.options(false))
	mustCode(t, err, ExitUsage)
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "wJalr") {
		t.Fatal("I8 broken: the error echoes the inline secret")
	}
	if strings.Contains(h.logs.String(), secret) {
		t.Fatal("I8 broken: the log holds the secret")
	}
	if _, err := os.Stat(filepath.Join(h.dir, "ferry.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused spec created state")
	}
}

func findRec(recs []synthRecord, key string) synthRecord {
	for _, r := range recs {
		if r.Key == key {
			return r
		}
	}
	panic("no record " + key)
}

// I10 (issue 13 class 2): every version a user had is user data. On versioned sites
// where some keys hold older versions, after every stage (and a re-plan, copy, verify
// and delete after it) no replica is recorded deleted while any version of its key
// remains at its site, no older version is deleted, the target copies never change,
// and the manifest never calls such a record deleted.
func TestI10VersionedSitesNeverClaimDeleted(t *testing.T) {
	eachVersionedKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(versionedYAML, "hard"))
		ctx := context.Background()
		recs := synth.Records(synth.Options{Users: 3, RecordsPerUser: 4, Seed: 11})
		older := map[string]map[string]bool{"virginia": {}, "singapore": {}}
		for i, r := range recs {
			if i%3 == 0 {
				h.put("virginia", r.Key, olderText("virginia", r.Key))
				older["virginia"][r.Key] = true
			}
			if i%5 == 0 {
				h.put("singapore", r.Key, olderText("singapore", r.Key))
				older["singapore"][r.Key] = true
			}
		}
		h.populate("virginia", recs)
		h.populate("singapore", synth.Subset(recs, 0.7, 3))
		m := h.open()
		targetSums := map[string]string{}
		check := func(when string) {
			t.Helper()
			for _, r := range recs {
				rec := record(t, m, r.Key)
				for _, p := range rec.Replicas {
					vs := h.versions(p.Site, r.Key)
					if (p.State == checkpoints.Deleted || p.State == checkpoints.Purged) && len(vs) > 0 {
						t.Fatalf("%s: I10 broken: %q at %s recorded %s while %d versions remain", when, r.Key, p.Site, p.State, len(vs))
					}
					if older[p.Site][r.Key] && !slices.ContainsFunc(vs, func(o providers.Object) bool { return o.Size == int64(len(olderText(p.Site, r.Key))) }) {
						t.Fatalf("%s: I10 broken: the older version of %q at %s was deleted", when, r.Key, p.Site)
					}
				}
				if rec.VerifiedAt.IsZero() {
					continue // never verified (a conflict between sites): no target copy to guard
				}
				sum := sha256Hex(h.read("target", r.Key))
				if prev, ok := targetSums[r.Key]; ok && prev != sum {
					t.Fatalf("%s: I10 broken: the verified target copy of %q was overwritten", when, r.Key)
				}
				targetSums[r.Key] = sum
			}
		}
		runThroughVerify(t, m)
		check("after verify")
		for round := 1; round <= 2; round++ {
			for _, st := range m.Spec.Delete.Stages {
				if _, err := deleteStage(t, m, st.Name); err != nil && ExitCode(err) != ExitIncomplete {
					t.Fatalf("round %d, %s: %v", round, st.Name, err)
				}
				check(fmt.Sprintf("round %d, after stage %s", round, st.Name))
			}
			runThroughVerify(t, m) // a later plan sees the surfaced older versions
			check(fmt.Sprintf("round %d, after re-plan, copy, verify", round))
		}
		dir := filepath.Join(h.dir, "report")
		if _, err := m.Report(ctx, dir); err != nil && ExitCode(err) != ExitIncomplete {
			t.Fatal(err)
		}
		for key, l := range manifestLines(t, dir) {
			if l.Status != certificate.StatusDeleted && l.Status != certificate.StatusPurged {
				continue
			}
			for _, ref := range l.Replicas {
				if vs := h.versions(ref.Site, key); len(vs) > 0 {
					t.Fatalf("I10 broken: the manifest says %q is %s, but %s holds %d versions", key, l.Status, ref.Site, len(vs))
				}
			}
		}
	})
}
