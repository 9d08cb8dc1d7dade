package migrate

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/fault"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/mem"
	"github.com/ferrymigrate/ferry/providers/oci"
	"github.com/ferrymigrate/ferry/providers/oci/ocitest"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Issue 13 class 2, DESIGN.md I10: a versioned source bucket with older versions.
// Deleting the verified version makes an older one current; that older version is
// user data. The replica is retained (not deleted), the stage exits incomplete, an
// interrupted delete is settled by the version's own existence, and a later plan
// never copies the surfaced version over the verified target copy.

// versionedYAML: two sites whose buckets keep versions, hard deletes.
const versionedYAML = `migration: test-migration
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

// versionedKinds are the stores whose sites keep versions (the target does not).
func versionedKinds() []storeKind {
	return []storeKind{
		{"mem-versioned", func(t *testing.T, h *harness, name string) providers.Store {
			n := fmt.Sprintf("%s-%s", strings.ReplaceAll(t.Name(), "/", "_"), name)
			mem.Reset(n)
			t.Cleanup(func() { mem.Reset(n) })
			if name == "target" {
				return mem.New(n)
			}
			return mem.New(n, mem.WithVersioning())
		}},
		{"s3-minio-versioned", func(t *testing.T, h *harness, name string) providers.Store {
			return openS3(t, s3test.Shared(t, s3test.MinIO), name != "target", name)
		}},
		{"oci-versioned", func(t *testing.T, h *harness, name string) providers.Store {
			return openOCIStore(t, name, name != "target")
		}},
	}
}

// openOCIStore opens a fresh bucket on a fresh OCI emulator as store name.
func openOCIStore(t *testing.T, name string, versioned bool) providers.Store {
	t.Helper()
	srv := ocitest.Start(t, ocitest.Options{})
	id := ocitest.NewIdentity(t)
	srv.Trust(id)
	if err := srv.CreateBucket("b-"+name, versioned); err != nil {
		t.Fatal(err)
	}
	cfg := srv.StoreConfig(id, "b-"+name, "users/")
	cfg.Name, cfg.Migration = name, "test-migration"
	st, err := oci.New(context.Background(), cfg, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func eachVersionedKind(t *testing.T, f func(t *testing.T, k storeKind)) {
	for _, k := range versionedKinds() {
		t.Run(k.name, func(t *testing.T) { f(t, k) })
	}
}

// versions lists key's versions at store, straight from the store (the oracle).
func (h *harness) versions(store, key string) []providers.Object {
	h.t.Helper()
	v, ok := providers.As[providers.Versioner](h.raw[store])
	if !ok {
		h.t.Fatalf("%s keeps no versions", store)
	}
	vs, err := v.Versions(context.Background(), key)
	if err != nil {
		h.t.Fatal(err)
	}
	return vs
}

// manifestLines reads a report's manifest, by key.
func manifestLines(t *testing.T, dir string) map[string]certificate.ManifestLine {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]certificate.ManifestLine{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l, err := certificate.ParseLine(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		out[l.Key] = l
	}
	return out
}

var (
	olderBytes = []byte("the older version: user data too")
	newerBytes = []byte("the newer version, verified and copied")
	plainBytes = []byte("a key with one version")
)

// populateVersioned writes u1/doc twice at virginia (older, then newer), the newer
// bytes at singapore, and u2/plain once at both.
func populateVersioned(h *harness) {
	h.put("virginia", "u1/doc", olderBytes)
	h.put("virginia", "u1/doc", newerBytes)
	h.put("singapore", "u1/doc", newerBytes)
	h.put("virginia", "u2/plain", plainBytes)
	h.put("singapore", "u2/plain", plainBytes)
}

func wantBytes(t *testing.T, h *harness, store, key string, want []byte) {
	t.Helper()
	if got := h.read(store, key); string(got) != string(want) {
		t.Fatalf("%s %q holds %q, want %q", store, key, got, want)
	}
}

// TestVersionedSiteOlderVersionRetained is the data-loss path: delete the
// verified version, an older one becomes current; then plan, copy, verify, delete
// again. Today's main fails the delete's absence check, re-records the replica as
// changed, and the next plan copies the older version over the verified target copy.
func TestVersionedSiteOlderVersionRetained(t *testing.T) {
	eachVersionedKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(versionedYAML, "hard"))
		populateVersioned(h)
		m := h.open()
		ctx := context.Background()
		// validate names the versioned sites.
		v, err := m.Validate(ctx)
		if err != nil {
			t.Fatalf("validate: %v", err)
		}
		for _, p := range v.Sites {
			if p.Versioning == "" {
				t.Fatalf("validate does not report site %s as versioned: %+v", p.Name, p)
			}
		}
		if v.Target.Versioning != "" {
			t.Fatalf("validate reports the unversioned target as versioned %q", v.Target.Versioning)
		}
		runThroughVerify(t, m)
		wantBytes(t, h, "target", "u1/doc", newerBytes)

		if d, err := deleteStage(t, m, "backups"); err != nil {
			t.Fatalf("backups: %v %+v", err, d)
		}
		d, err := deleteStage(t, m, "primary")
		mustCode(t, err, ExitIncomplete)
		if d.Retained != 1 || d.Deleted != 1 || d.Errors != 0 {
			t.Fatalf("primary: deleted %d, retained %d, errors %d; want 1, 1, 0 (%+v)", d.Deleted, d.Retained, d.Errors, d.Problems)
		}
		r0 := record(t, m, "u1/doc")
		p := r0.Replica("virginia")
		if p.State != checkpoints.Retained || !strings.Contains(p.LastError, "retained_for_versions: 1 other versions remain") {
			t.Fatalf("u1/doc at virginia: %s %q; want retained for 1 other version", p.State, p.LastError)
		}
		if p.ConfirmedAbsent {
			t.Fatal("a retained replica is recorded as confirmed absent")
		}
		if st := replicaState(t, m, "u2/plain", "virginia"); st != checkpoints.Deleted {
			t.Fatalf("u2/plain at virginia: %s, want deleted", st)
		}
		// ferry deleted exactly the verified version: the older one is untouched.
		if vs := h.versions("virginia", "u1/doc"); len(vs) != 1 || vs[0].Size != int64(len(olderBytes)) {
			t.Fatalf("virginia keeps versions %+v, want only the older one", vs)
		}
		wantBytes(t, h, "virginia", "u1/doc", olderBytes)

		// A rerun of the stage still says so.
		d, err = deleteStage(t, m, "primary")
		t.Logf("rerun: %+v", d)
		mustCode(t, err, ExitIncomplete)
		if d.Retained != 1 {
			t.Fatalf("rerun: retained %d, want 1", d.Retained)
		}

		// plan -> copy -> verify -> delete: the surfaced older version is never copied
		// over the verified target copy, and the target copy is never deleted.
		if _, err := m.Plan(ctx); err != nil && ExitCode(err) != ExitIncomplete {
			t.Fatal(err)
		}
		r := record(t, m, "u1/doc")
		if r.State != checkpoints.Conflict || !strings.Contains(r.Conflict, "never overwritten") {
			t.Fatalf("after re-plan u1/doc is %s (%q), want conflict", r.State, r.Conflict)
		}
		if r.Replica("virginia").State != checkpoints.Retained {
			t.Fatalf("re-plan turned the retained replica into %s", r.Replica("virginia").State)
		}
		if _, err := m.Copy(ctx); err != nil && ExitCode(err) != ExitIncomplete {
			t.Fatal(err)
		}
		if _, err := m.Verify(ctx, false); err != nil && ExitCode(err) != ExitIncomplete {
			t.Fatal(err)
		}
		for _, st := range []string{"backups", "primary"} {
			if _, err := deleteStage(t, m, st); err != nil && ExitCode(err) != ExitIncomplete {
				t.Fatalf("%s: %v", st, err)
			}
		}
		wantBytes(t, h, "target", "u1/doc", newerBytes)
		wantBytes(t, h, "virginia", "u1/doc", olderBytes)
		wantBytes(t, h, "target", "u2/plain", plainBytes)

		// The certificate lists the replica as not deleted, with the reason.
		dir := filepath.Join(h.dir, "report")
		rep, err := m.Report(ctx, dir)
		if err != nil && ExitCode(err) != ExitIncomplete {
			t.Fatal(err)
		}
		l := manifestLines(t, dir)["u1/doc"]
		for _, ref := range l.Replicas {
			if ref.Site == "virginia" && (ref.State != certificate.ReplicaRetained || ref.DeletedAt != "" || ref.ConfirmedAbsent) {
				t.Fatalf("manifest claims the retained replica is gone: %+v", ref)
			}
		}
		if l.Status == certificate.StatusDeleted || l.Status == certificate.StatusPurged {
			t.Fatalf("manifest status %q for a record whose originals are not all gone", l.Status)
		}
		if rep.Complete || !strings.Contains(strings.Join(rep.IncompleteReasons, "\n"), "retained_for_versions") {
			t.Fatalf("certificate complete=%v reasons %q; want incomplete, naming retained_for_versions", rep.Complete, rep.IncompleteReasons)
		}
	})
}

// TestVersionedInterruptedDelete: the verified version was deleted but its outcome
// was never recorded (the response was lost). The rerun must settle the intent by
// whether that version exists, not by the key's presence (an older one is current
// now): retained, never "changed" and copied again.
func TestVersionedInterruptedDelete(t *testing.T) {
	eachVersionedKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(versionedYAML, "hard"))
		populateVersioned(h)
		m := h.open()
		ctx := context.Background()
		runThroughVerify(t, m)
		if _, err := deleteStage(t, m, "backups"); err != nil {
			t.Fatal(err)
		}
		// Every delete at virginia happens, and its answer is lost.
		h.faults["virginia"].AddRule(faulty.Rule{Method: faulty.DeleteIf, Effect: fault.Effect{Lost: true, Err: errInjected}})
		_, err := deleteStage(t, m, "primary")
		mustCode(t, err, ExitRuntime)
		if st := replicaState(t, m, "u1/doc", "virginia"); st != checkpoints.Intent {
			t.Fatalf("after a lost answer the replica is %s, want delete-intent", st)
		}
		h.faults["virginia"].Clear()
		d, err := deleteStage(t, m, "primary")
		mustCode(t, err, ExitIncomplete)
		if d.Retained != 1 || d.Already != 1 {
			t.Fatalf("resume: retained %d, already %d; want 1, 1 (%+v)", d.Retained, d.Already, d.Problems)
		}
		if st := replicaState(t, m, "u1/doc", "virginia"); st != checkpoints.Retained {
			t.Fatalf("the interrupted delete settled as %s, want retained", st)
		}
		if st := replicaState(t, m, "u2/plain", "virginia"); st != checkpoints.Deleted {
			t.Fatalf("u2/plain settled as %s, want deleted", st)
		}
		if _, err := m.Plan(ctx); err != nil && ExitCode(err) != ExitIncomplete {
			t.Fatal(err)
		}
		if _, err := m.Copy(ctx); err != nil && ExitCode(err) != ExitIncomplete {
			t.Fatal(err)
		}
		wantBytes(t, h, "target", "u1/doc", newerBytes)
		wantBytes(t, h, "virginia", "u1/doc", olderBytes)
	})
}

// TestVersionedIntentNotYetDeleted: an intent recorded, then a crash before the
// delete call: the verified version is still current, so the rerun deletes it now.
func TestVersionedIntentNotYetDeleted(t *testing.T) {
	h := newHarness(t, versionedKinds()[0], fmt.Sprintf(versionedYAML, "hard"))
	populateVersioned(h)
	m := h.open()
	runThroughVerify(t, m)
	if _, err := deleteStage(t, m, "backups"); err != nil {
		t.Fatal(err)
	}
	// Every delete call at virginia fails before it reaches the store.
	h.faults["virginia"].AddRule(faulty.Rule{Method: faulty.DeleteIf, Effect: fault.Effect{Err: errInjected}})
	_, err := deleteStage(t, m, "primary")
	mustCode(t, err, ExitRuntime)
	if len(h.versions("virginia", "u1/doc")) != 2 {
		t.Fatal("the failed call deleted something")
	}
	h.faults["virginia"].Clear()
	d, err := deleteStage(t, m, "primary")
	mustCode(t, err, ExitIncomplete)
	if d.Retained != 1 || d.Deleted != 1 {
		t.Fatalf("resume: deleted %d retained %d, want 1, 1 (%+v)", d.Deleted, d.Retained, d.Problems)
	}
	if vs := h.versions("virginia", "u1/doc"); len(vs) != 1 || vs[0].Size != int64(len(olderBytes)) {
		t.Fatalf("versions left %+v, want the older one", vs)
	}
}

// TestVersionedSoftDelete: soft deletes on a versioned site keep the verified
// version behind a delete marker; with an older version below, the replica is
// retained, can be restored, and purge keeps it retained.
func TestVersionedSoftDelete(t *testing.T) {
	eachVersionedKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(versionedYAML, "soft"))
		populateVersioned(h)
		m := h.open()
		ctx := context.Background()
		runThroughVerify(t, m)
		if _, err := deleteStage(t, m, "backups"); err != nil {
			t.Fatal(err)
		}
		d, err := deleteStage(t, m, "primary")
		mustCode(t, err, ExitIncomplete)
		if d.Retained != 1 || d.Deleted != 1 {
			t.Fatalf("primary: deleted %d retained %d, want 1, 1 (%+v)", d.Deleted, d.Retained, d.Problems)
		}
		if st := replicaState(t, m, "u1/doc", "virginia"); st != checkpoints.Retained {
			t.Fatalf("u1/doc at virginia: %s, want retained", st)
		}
		h.advance(25 * 3600e9)
		if _, err := m.Purge(ctx, "primary"); err != nil {
			t.Fatalf("purge: %v", err)
		}
		r := record(t, m, "u1/doc")
		p := r.Replica("virginia")
		if p.State != checkpoints.Retained || p.PurgedAt.IsZero() {
			t.Fatalf("after purge: %s purged at %v; want retained, purged", p.State, p.PurgedAt)
		}
		if vs := h.versions("virginia", "u1/doc"); len(vs) != 1 || vs[0].Size != int64(len(olderBytes)) {
			t.Fatalf("versions after purge %+v, want only the older one", vs)
		}
		wantBytes(t, h, "target", "u1/doc", newerBytes)
	})
}

// olderText is what the tests write as an older version of key at site: shorter
// than any synthetic record (512 bytes at least), so a listed size tells it apart.
func olderText(site, key string) []byte { return []byte("older at " + site + ": " + key) }

// TestVersionedSuspendedS3: a MinIO bucket whose versioning was enabled and then
// suspended. Listings name no version ids, and the current object is the "null"
// version written after the suspension; deleting it makes the older version (kept
// from when versioning was on) current. The replica is retained, not deleted.
func TestVersionedSuspendedS3(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	ctx := context.Background()
	k := storeKind{"s3-suspended", func(t *testing.T, h *harness, name string) providers.Store {
		if name == "target" {
			return openS3(t, srv, false, name)
		}
		bucket := srv.Bucket(t, true)
		key := "users/u1/doc"
		if name == "virginia" {
			if _, err := srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(olderBytes)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := srv.Client().PutBucketVersioning(ctx, &awss3.PutBucketVersioningInput{Bucket: &bucket,
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusSuspended}}); err != nil {
			t.Fatal(err)
		}
		cfg := srv.Config(bucket, "users/")
		cfg.Name, cfg.Migration = name, "test-migration"
		st, err := s3.New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}}
	h := newHarness(t, k, fmt.Sprintf(versionedYAML, "hard"))
	if got := versioningOf(ctx, h.raw["virginia"]); got != "suspended" {
		t.Fatalf("validate would report versioning %q, want suspended", got)
	}
	h.put("virginia", "u1/doc", newerBytes) // the "null" version, on top of the older one
	h.put("singapore", "u1/doc", newerBytes)
	m := h.open()
	runThroughVerify(t, m)
	if _, err := deleteStage(t, m, "backups"); err != nil {
		t.Fatal(err)
	}
	d, err := deleteStage(t, m, "primary")
	mustCode(t, err, ExitIncomplete)
	if d.Retained != 1 {
		t.Fatalf("primary: %+v, want 1 retained", d)
	}
	// The older version is kept (current, or below a "null" delete marker: MinIO
	// deletes a suspended bucket's null version by leaving a null marker).
	if vs := h.versions("virginia", "u1/doc"); len(vs) != 1 || vs[0].Size != int64(len(olderBytes)) {
		t.Fatalf("versions left %+v, want the older one", vs)
	}
	if _, err := m.Plan(ctx); err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	if _, err := m.Copy(ctx); err != nil && ExitCode(err) != ExitIncomplete {
		t.Fatal(err)
	}
	wantBytes(t, h, "target", "u1/doc", newerBytes)
	if p := record(t, m, "u1/doc").Replicas; p[1].Site != "virginia" || p[1].State != checkpoints.Retained {
		t.Fatalf("after re-plan: %+v, want virginia retained", p)
	}
}
