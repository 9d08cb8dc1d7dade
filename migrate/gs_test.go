package migrate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/gs"
	"github.com/ferrymigrate/ferry/providers/gs/gstest"
)

// The pipeline on Google Cloud Storage: every site and the target a bucket on
// fake-gcs-server (behind gstest's precondition proxy, which enforces the
// ifGenerationMatch every delete carries). gs is not appended to storeKinds, which
// would run every pipeline test against it: the tests below pick the representative
// ones (every phase, soft and hard deletes, restore, purge, the invariants that
// deletes rest on) and run them with gs stores only.

// gsKind opens each store as a fresh bucket, prefix users/, on the shared server.
var gsKind = storeKind{"gs", func(t *testing.T, h *harness, name string) providers.Store {
	srv := gstest.Shared(t)
	bucket := srv.Bucket(t, false)
	h.buckets[name] = bucket
	return openGS(t, srv, bucket, "users/", name)
}}

func openGS(t *testing.T, srv *gstest.Server, bucket, prefix, name string) *gs.Store {
	t.Helper()
	cfg := srv.Config(bucket, prefix)
	cfg.Name, cfg.Migration = name, "test-migration"
	st, err := gs.New(context.Background(), cfg, gs.Options{MaxAttempts: 6, RetryBaseDelay: 5 * time.Millisecond, RetryMaxDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// withKinds runs test with storeKinds set to kinds only (no migrate test runs in
// parallel, so the swap is seen by that test alone).
func withKinds(t *testing.T, kinds []storeKind, name string, test func(*testing.T)) {
	t.Run(name, func(t *testing.T) {
		saved := storeKinds
		storeKinds = kinds
		defer func() { storeKinds = saved }()
		test(t)
	})
}

// TestPipelineGS runs the representative pipeline tests with gs sites and target.
func TestPipelineGS(t *testing.T) {
	gstest.Shared(t) // fails (CI) or skips (no server) once, up front
	kinds := []storeKind{gsKind}
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"EndToEnd", TestPipelineEndToEnd},                                         // plan, copy, verify, every stage, purge, report
		{"SoftDeleteRestoreAndPurge", TestSoftDeleteRestoreAndPurge},               // quarantine, restore, re-verify, purge
		{"I1NoDeleteWithoutRecheck", TestI1NoDeleteWithoutVerifiedRecheckedTarget}, // I1
		{"I3ChangedAfterVerifyNotDeleted", TestI3ChangedAfterVerifyNotDeleted},     // generation precondition
		{"I6ListingFailureFailsPlan", TestI6ListingFailureFailsPlan},               // I6
		{"SourceOverwrittenBetweenCopyAndVerify", TestSourceOverwrittenBetweenCopyAndVerify},
	} {
		withKinds(t, kinds, tc.name, tc.test)
	}
}

// TestPipelineGSHardDeletes: GCS sites (primary and backups) into another kind of
// target (in memory), hard deletes at every stage: nothing is left in the sites'
// buckets, quarantine included.
func TestPipelineGSHardDeletes(t *testing.T) {
	h := newHarness(t, gsKind, replaceOnce(fmt.Sprintf(sitesYAML, "fail"), "  mode: soft\n", "  mode: hard\n"))
	recs := h.standardData(5)
	// The target is another kind of store (mem: it keeps "dir/" keys, as GCS does).
	h.raw["target"] = storeKinds[1].open(t, h, "target")
	h.faults["target"] = faulty.Wrap(h.raw["target"])
	m := h.open()
	runThroughVerify(t, m)
	for _, st := range m.Spec.Delete.Stages {
		if d, err := deleteStage(t, m, st.Name); err != nil {
			t.Fatalf("%s: %v %+v", st.Name, err, d.Problems)
		}
	}
	target := h.listing("target")
	for _, r := range recs {
		if _, ok := target[r.Key]; !ok {
			t.Fatalf("%q missing at the target", r.Key)
		}
	}
	for _, site := range []string{"virginia", "singapore", "archive"} {
		if n := len(h.listing(site)); n != 0 {
			t.Fatalf("%s still holds %d objects after hard deletes", site, n)
		}
		// Nothing was quarantined either: a hard delete keeps nothing at the site.
		root := openGS(t, gstest.Shared(t), h.buckets[site], "", site)
		var left []string
		if err := root.List(context.Background(), func(o providers.Object) error { left = append(left, o.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Fatalf("%s's bucket keeps %q after hard deletes", site, left)
		}
	}
	if _, err := m.Verify(context.Background(), true); err != nil {
		t.Fatalf("re-read verify after the deletes: %v", err)
	}
}

// TestResidencyGS: a GCS target's bucket location as GCS reports it (us-east1 on the
// emulator), not the region the spec claims, is checked against target.residency:
// allowed when listed, refused (exit 5) before anything is written otherwise.
func TestResidencyGS(t *testing.T) {
	for _, tc := range []struct {
		name, residency string
		refused         bool
	}{
		{"inside", "[us-east1, us]\n  region: us-east1", false},
		{"outside", "[europe-west1, eu]\n  region: europe-west1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := replaceOnce(fmt.Sprintf(sitesYAML, "fail"), "target:\n  url: file://./stores/target\n",
				"target:\n  url: gs://us-users/users/\n  residency: "+tc.residency+"\n")
			h := newHarness(t, gsKind, spec)
			h.standardData(2)
			m := h.open()
			ctx := context.Background()
			_, err := m.Plan(ctx)
			if !tc.refused {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := m.Copy(ctx); err != nil {
					t.Fatal(err)
				}
				return
			}
			mustCode(t, err, ExitRefused)
			_, err = m.Copy(ctx)
			mustCode(t, err, ExitRefused)
			if n := len(h.listing("target")); n != 0 {
				t.Fatalf("%d objects written to a target outside residency", n)
			}
		})
	}
}
