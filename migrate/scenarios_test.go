package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/file"
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

// hostileSite lists, besides its own objects, keys a hostile or broken server could
// return: "..", absolute, NUL. Opening them yields bytes.
type hostileSite struct {
	providers.Store
	keys []string
}

func (h hostileSite) List(ctx context.Context, fn func(providers.Object) error) error {
	if err := h.Store.List(ctx, fn); err != nil {
		return err
	}
	for _, k := range h.keys {
		if err := fn(providers.Object{Key: k, Size: 4, ETag: "e"}); err != nil {
			return err
		}
	}
	return nil
}

func (h hostileSite) hostile(key string) bool { return slices.Contains(h.keys, key) }

func (h hostileSite) Stat(ctx context.Context, key string) (providers.Object, error) {
	if h.hostile(key) {
		return providers.Object{Key: key, Size: 4, ETag: "e"}, nil
	}
	return h.Store.Stat(ctx, key)
}

func (h hostileSite) Open(ctx context.Context, key string) (io.ReadCloser, providers.Object, error) {
	if h.hostile(key) {
		return io.NopCloser(strings.NewReader("evil")), providers.Object{Key: key, Size: 4, ETag: "e"}, nil
	}
	return h.Store.Open(ctx, key)
}

// Bad input: a site listing keys that try to escape a file target's root ("../",
// absolute, NUL) never gets a byte written outside it; the other records migrate.
// And keys that differ only in case or unicode normalisation are never merged: each
// is its own record with its own bytes at the target.
func TestHostileKeysAndTwins(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	jail := filepath.Join(h.dir, "jail")
	os.MkdirAll(filepath.Join(jail, "target"), 0o755)
	tgt, err := file.New(filepath.Join(jail, "target"), file.Options{Migration: "test-migration"})
	if err != nil {
		t.Fatal(err)
	}
	h.raw["target"], h.faults["target"] = tgt, faulty.Wrap(tgt)
	evil := []string{"u1/../../escape", "../escape2", "/tmp/ferry-escape-abs", "u1/nul\x00byte", "u1/..", ".."}
	h.faults["virginia"] = faulty.Wrap(hostileSite{h.raw["virginia"], evil})
	twins := map[string]string{
		"u2/Doc": "capital", "u2/doc": "lower", "u2/DOC": "upper",
		"u2/caf\u00e9": "nfc", "u2/cafe\u0301": "nfd",
	}
	for k, v := range twins {
		h.put("virginia", k, []byte(v))
	}
	h.put("singapore", "u2/cafe\u0301", []byte("nfd")) // a replica of the NFD twin only
	m := h.open()
	ctx := context.Background()
	_, perr := m.Plan(ctx)
	_, cerr := m.Copy(ctx)
	t.Logf("plan: %v; copy: %v", perr, cerr)
	// Nothing outside the target's root.
	filepath.WalkDir(jail, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(p, filepath.Join(jail, "target")+string(filepath.Separator)) {
			t.Errorf("written outside the target's root: %s", p)
		}
		return nil
	})
	for _, p := range []string{"/tmp/ferry-escape-abs", filepath.Join(h.dir, "escape"), filepath.Join(h.dir, "escape2")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("escaped to %s", p)
		}
	}
	got := h.listing("target")
	for _, k := range evil {
		if _, ok := got[k]; ok {
			t.Errorf("hostile key %q reached the target", k)
		}
	}
	// The twins: five records, five files, each its own bytes.
	if _, err := m.Verify(ctx, true); err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	for k, v := range twins {
		if b, ok := got[k]; !ok || string(h.read("target", k)) != v {
			t.Fatalf("twin %q: at target %v, bytes %q, want %q", k, ok, h.read("target", k), v)
		} else if b.Size != int64(len(v)) {
			t.Fatalf("twin %q has %d bytes", k, b.Size)
		}
		if r := record(t, m, k); r.State != checkpoints.Verified || len(r.Replicas) != 1+b2i(k == "u2/cafe\u0301") {
			t.Fatalf("twin %q: %s with %d replicas: merged with another key?", k, r.State, len(r.Replicas))
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
