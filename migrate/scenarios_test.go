package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// Issue 6 scenarios 5 and 7 (6 is TestI1NoDeleteWithoutVerifiedRecheckedTarget and
// testdata/script/recheck.txtar; 9 is testdata/script/lock.txtar and
// TestLockTakenOverOnlyAfterLease).

// Scenario 5, first half: a source replica overwritten between copy and verify (same
// size, other bytes) is never proven identical and never deleted; the record is
// flagged (conflict) rather than verified against the old bytes.
func TestSourceOverwrittenBetweenCopyAndVerify(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
		h.put("virginia", "u1/doc", []byte("version one"))
		h.put("singapore", "u1/doc", []byte("version one"))
		h.put("virginia", "u2/doc", []byte("other"))
		m := h.open()
		ctx := context.Background()
		mustPlanCopy(t, m)
		h.put("singapore", "u1/doc", []byte("version two"))
		_, err := m.Verify(ctx, false)
		if ExitCode(err) == ExitOK {
			t.Fatal("verify passed with a replica overwritten after the copy")
		}
		if st := replicaState(t, m, "u1/doc", "singapore"); st == checkpoints.Identical {
			t.Fatal("I3 broken: an overwritten replica was proven identical")
		}
		for _, st := range m.Spec.Delete.Stages {
			deleteStage(t, m, st.Name)
		}
		if got := h.read("singapore", "u1/doc"); string(got) != "version two" {
			t.Fatalf("the overwritten replica was deleted (now %q)", got)
		}
		if got := h.read("virginia", "u1/doc"); string(got) != "version one" {
			t.Fatal("the primary of a flagged record was deleted")
		}
		if r := record(t, m, "u1/doc"); r.State == checkpoints.Verified && r.Replica("singapore").State != checkpoints.Divergent {
			t.Fatalf("record %s, replica %s: the overwrite is neither flagged nor re-queued", r.State, r.Replica("singapore").State)
		}
	})
}

// answersGone is a site whose delete calls answer success for a key that is not
// there, as S3's DeleteObject does (204 for any key) when a server ignores If-Match.
type answersGone struct{ providers.Store }

func (a answersGone) DeleteIf(ctx context.Context, key string, expect providers.Object) error {
	if _, err := a.Store.Stat(ctx, key); errors.Is(err, providers.ErrNotFound) {
		return nil
	}
	return a.Store.(providers.ConditionalDeleter).DeleteIf(ctx, key, expect)
}

func (a answersGone) SoftHandle(key string, expect providers.Object) string {
	return a.Store.(providers.SoftDeleter).SoftHandle(key, expect)
}

func (a answersGone) SoftDelete(ctx context.Context, key string, expect providers.Object) (string, error) {
	if _, err := a.Store.Stat(ctx, key); errors.Is(err, providers.ErrNotFound) {
		return a.SoftHandle(key, expect), nil
	}
	return a.Store.(providers.SoftDeleter).SoftDelete(ctx, key, expect)
}

func (a answersGone) SoftExists(ctx context.Context, key, handle string) (bool, error) {
	return a.Store.(providers.SoftDeleter).SoftExists(ctx, key, handle)
}

func (a answersGone) Restore(ctx context.Context, key, handle string) error {
	return a.Store.(providers.SoftDeleter).Restore(ctx, key, handle)
}

func (a answersGone) Purge(ctx context.Context, key, handle string) error {
	return a.Store.(providers.SoftDeleter).Purge(ctx, key, handle)
}

// Scenario 7: a replica removed behind ferry's back after verify, at a site whose
// delete answers success for a key already gone. ferry logs an anomaly and records the
// replica missing, not deleted: the certificate never claims ferry deleted it.
func TestDeleteOfGoneKeyIsAnomaly(t *testing.T) {
	for _, mode := range []string{"soft", "hard"} {
		t.Run(mode, func(t *testing.T) {
			spec := replaceOnce(fmt.Sprintf(sitesYAML, "fail"), "    - {name: primary, sites: [virginia], mode: hard}\n", "    - {name: primary, sites: [virginia], mode: "+mode+"}\n")
			h := newHarness(t, storeKinds[0], spec)
			h.put("virginia", "u1/doc", []byte("one"))
			h.put("virginia", "u2/doc", []byte("two"))
			h.faults["virginia"] = faulty.Wrap(answersGone{h.raw["virginia"]})
			m := h.open()
			ctx := context.Background()
			runThroughVerify(t, m)
			for _, st := range m.Spec.Delete.Stages[:2] {
				if _, err := deleteStage(t, m, st.Name); err != nil {
					t.Fatal(err)
				}
			}
			// Someone else removes u1/doc after it was verified.
			if err := h.raw["virginia"].Delete(ctx, "u1/doc"); err != nil {
				t.Fatal(err)
			}
			d, _ := deleteStage(t, m, "primary")
			if d.Deleted != 1 {
				t.Fatalf("primary stage: %+v; want 1 deleted (u2/doc)", d)
			}
			r := record(t, m, "u1/doc")
			p := r.Replica("virginia")
			if p.State == checkpoints.Deleted || p.ConfirmedAbsent {
				t.Fatalf("a delete answering success for a key already gone was taken as proof: replica %s, confirmed absent %v", p.State, p.ConfirmedAbsent)
			}
			if p.State != checkpoints.Missing {
				t.Fatalf("replica state %s, want missing (anomaly)", p.State)
			}
			if !strings.Contains(h.logs.String(), "anomaly") {
				t.Fatal("no anomaly logged")
			}
			if got := replicaState(t, m, "u2/doc", "virginia"); got != checkpoints.Deleted {
				t.Fatalf("u2/doc at virginia is %s, want deleted", got)
			}
		})
	}
}

// Scenario 7 against MinIO, through the proxy: another client removes the replica
// after ferry's own look and the provider's HEAD, just before the DELETE reaches the
// server, which answers 204 as S3 does for any key. No client can tell this apart from
// its own delete (only a server that honours If-Match on DELETE could); what must hold
// is that nothing is lost: the record is verified and intact at the target, and the
// replica is recorded deleted or missing, never present.
func TestDeleteRaceS3(t *testing.T) {
	px, k := newProxied(t)
	h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
	h.put("virginia", "u1/doc", []byte("one"))
	h.put("virginia", "u2/doc", []byte("two"))
	m := h.open()
	runThroughVerify(t, m)
	for _, st := range m.Spec.Delete.Stages[:2] {
		if _, err := deleteStage(t, m, st.Name); err != nil {
			t.Fatal(err)
		}
	}
	bucket := px.bucket("virginia")
	rule := &s3test.Rule{Op: s3test.OpDelete, Bucket: bucket, Match: func(r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/users/u1/doc") {
			return false
		}
		_, err := px.srv.Client().DeleteObject(context.Background(), &awss3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("users/u1/doc")})
		return err == nil
	}}
	px.proxy.Inject(rule)
	d, err := deleteStage(t, m, "primary")
	t.Logf("primary stage: deleted %d, problems %v, err %v", d.Deleted, d.Problems, err)
	if rule.Fired() == 0 {
		t.Fatal("the race was never staged")
	}
	r := record(t, m, "u1/doc")
	p := r.Replica("virginia")
	t.Logf("u1/doc at virginia: %s (confirmed absent %v): %s", p.State, p.ConfirmedAbsent, p.LastError)
	if p.State != checkpoints.Deleted && p.State != checkpoints.Missing {
		t.Fatalf("u1/doc at virginia is %s after it vanished", p.State)
	}
	if r.State != checkpoints.Verified || sumOf(t, px.direct["target"], "u1/doc") != sha256.Sum256([]byte("one")) {
		t.Fatalf("u1/doc is %s and not intact at the target", r.State)
	}
}
