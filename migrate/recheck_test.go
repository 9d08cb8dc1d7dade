package migrate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/file"
	"github.com/ferrymigrate/ferry/providers/oci"
	"github.com/ferrymigrate/ferry/providers/oci/ocitest"
)

// Issue 13, classes 3, 4 and 5, and I9's "a delete stage stops at the first target
// copy that is gone": every delete and purge proves the target's bytes first (I12),
// a file replica is proven by its bytes again just before its delete, and a target
// copy that vanishes stops the stage.

const recheckYAML = `migration: test-migration
sources:
  - {name: virginia, role: primary, url: file://./stores/virginia}
  - {name: singapore, role: backup, url: file://./stores/singapore}
target:
  url: file://./stores/target
records:
  user: '^(?P<user>[^/]+)/'
  conflicts: fail
copy:
  concurrency: 8
  retries: 3
delete:
  mode: %s
  grace: 24h
  stages:
    - {name: backups, sites: [singapore]}
    - {name: primary, sites: [virginia], mode: hard}
report:
  signing_key: keys/ferry.key
  signer: Test Data Protection Office
`

// putBoth writes key with data at virginia and singapore.
func (h *harness) putBoth(key string, data []byte) {
	h.put("virginia", key, data)
	h.put("singapore", key, data)
}

// filePath is key's file in a file store.
func (h *harness) filePath(store, key string) string {
	h.t.Helper()
	fs, ok := h.raw[store].(*file.Store)
	if !ok {
		h.t.Fatalf("%s is not a file store", store)
	}
	return filepath.Join(fs.Dir(), filepath.FromSlash(key))
}

// rewriteInPlace changes key's bytes behind the store's back without changing what
// its metadata says: in a file store the same inode is rewritten (same size) and its
// mtime set back; rot flips one byte, as a failing disk would. Elsewhere the object
// is overwritten through the store with bytes of the same size (a new version the
// store knows about).
func (h *harness) rewriteInPlace(store, key string, rot bool) {
	h.t.Helper()
	old := h.read(store, key)
	data := bytes.Clone(old)
	if rot {
		data[len(data)/2] ^= 0x40
	} else {
		for i := range data {
			data[i] = 'x'
		}
	}
	if _, ok := h.raw[store].(*file.Store); !ok {
		h.put(store, key, data)
		return
	}
	p := h.filePath(store, key)
	fi, err := os.Stat(p)
	if err != nil {
		h.t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		h.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		h.t.Fatal(err)
	}
	after, err := h.raw[store].Stat(context.Background(), key)
	if err != nil {
		h.t.Fatal(err)
	}
	before := providers.Object{Size: fi.Size(), ModTime: fi.ModTime()}
	if after.Size != before.Size || !after.ModTime.Equal(before.ModTime) {
		h.t.Fatalf("the rewrite of %s %q changed its metadata", store, key)
	}
}

// I12 / issue 13 class 4: a target copy rewritten in place with its mtime set back,
// or silently rotted, keeps its size, mtime and inode. The re-check before the delete
// proves the bytes, so the stage refuses to delete its replicas (exit 4) and sends the
// record back to verify; the other records are deleted.
func TestI12RecheckProvesTargetBytes(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		recheckBytesCase(t, newHarness(t, k, fmt.Sprintf(recheckYAML, "hard")))
	})
}

func recheckBytesCase(t *testing.T, h *harness) {
	h.putBoth("u1/rewritten", []byte("the first user's record"))
	h.putBoth("u2/rotted", []byte("the second user's record"))
	h.putBoth("u3/intact", []byte("the third user's record"))
	m := h.open()
	runThroughVerify(t, m)
	h.rewriteInPlace("target", "u1/rewritten", false)
	h.rewriteInPlace("target", "u2/rotted", true)
	d, err := deleteStage(t, m, "backups")
	mustCode(t, err, ExitVerify)
	if d.Skipped != 2 || d.Deleted != 1 {
		t.Fatalf("delete: %+v; want 2 skipped, 1 deleted", d)
	}
	left := h.listing("singapore")
	for _, key := range []string{"u1/rewritten", "u2/rotted"} {
		if _, ok := left[key]; !ok {
			t.Fatalf("I12 broken: %q deleted although its target copy's bytes changed", key)
		}
		if r := record(t, m, key); r.State != checkpoints.Copied {
			t.Fatalf("%q is %s after a failed re-check, want copied", key, r.State)
		}
		if st := replicaState(t, m, key, "singapore"); st != checkpoints.Identical {
			t.Fatalf("%q replica is %s after a failed re-check, want identical", key, st)
		}
	}
	if _, ok := left["u3/intact"]; ok {
		t.Fatal("the intact record's replica was not deleted")
	}
}

// I12 for `report verify --live`: a target copy rotted after the report, with its
// metadata unchanged, fails the live check.
func TestI12LiveCheckProvesTargetBytes(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		h := newHarness(t, k, fmt.Sprintf(recheckYAML, "hard"))
		h.putBoth("u1/doc", []byte("the first user's record"))
		h.putBoth("u2/doc", []byte("the second user's record"))
		m := h.open()
		ctx := context.Background()
		runThroughVerify(t, m)
		dir := filepath.Join(h.dir, "report")
		if _, err := m.Report(ctx, dir); err != nil && ExitCode(err) != ExitIncomplete {
			t.Fatal(err)
		}
		manifest, err := os.ReadFile(filepath.Join(dir, "manifest.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		if lr, err := m.LiveCheck(ctx, bytes.NewReader(manifest), 1); err != nil || lr.TargetOK != 2 {
			t.Fatalf("live check of an intact target: %+v %v", lr, err)
		}
		h.rewriteInPlace("target", "u2/doc", true)
		lr, err := m.LiveCheck(ctx, bytes.NewReader(manifest), 1)
		mustCode(t, err, ExitVerify)
		if lr.TargetOK != 1 || len(lr.Problems) != 1 || lr.Problems[0].Key != "u2/doc" {
			t.Fatalf("live check of a rotted target copy: %+v", lr)
		}
	})
}

// crcOnly reports only a whole-object CRC32C for the target, as S3 and OCI do for a
// multipart object, and counts reads.
type crcOnly struct {
	providers.Store
	opens int
}

func (c *crcOnly) Stat(ctx context.Context, key string) (providers.Object, error) {
	o, err := c.Store.Stat(ctx, key)
	o.Checksums.SHA256, o.Checksums.MD5 = "", ""
	return o, err
}

func (c *crcOnly) Open(ctx context.Context, key string) (_ io.ReadCloser, _ providers.Object, _ error) {
	c.opens++
	return c.Store.Open(ctx, key)
}

// I12 on a target that reports only a whole-object CRC32C (multipart S3/OCI): the
// store's CRC32C, computed over the content, is compared with the CRC32C ferry
// computed of the bytes at copy; no re-read is needed, and a mismatch is refused.
func TestI12RecheckByStoreCRC32C(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(recheckYAML, "hard"))
	h.putBoth("u1/doc", []byte("the first user's record"))
	m := h.open()
	ctx := context.Background()
	runThroughVerify(t, m)
	r := record(t, m, "u1/doc")
	if r.CRC32C == "" {
		t.Fatal("copy recorded no crc32c")
	}
	tgt := &crcOnly{Store: m.Target}
	m.Target = tgt
	if err := m.recheckTarget(ctx, &r); err != nil || tgt.opens != 0 {
		t.Fatalf("re-check by crc32c: %v (%d reads)", err, tgt.opens)
	}
	r.CRC32C = "00000000"
	if err := m.recheckTarget(ctx, &r); err == nil || !strings.Contains(err.Error(), "crc32c") {
		t.Fatalf("re-check with another crc32c: %v", err)
	}
}

// aliasTarget makes deleting a replica at site also delete the target copy of the same
// key, as a site that is the target under another name would.
func (h *harness) aliasTarget(site string) {
	h.faults[site].Before(func(ctx context.Context, c faulty.Call) error {
		if c.Method == faulty.DeleteIf || c.Method == faulty.SoftDelete || c.Method == faulty.Delete {
			if err := h.raw["target"].Delete(ctx, c.Key); err != nil {
				h.t.Errorf("alias: %v", err)
			}
		}
		return nil
	})
}

// I9: a delete stage stops at the first target copy that is gone. A site that is the
// target under another name loses at most one replica before the stage stops (exit 4,
// naming the key), and the stage is not finished.
func TestI9DeleteStopsAtVanishedTarget(t *testing.T) {
	for _, mode := range []string{"hard", "soft"} {
		t.Run(mode, func(t *testing.T) {
			eachKind(t, func(t *testing.T, k storeKind) {
				vanishCase(t, newHarness(t, k, fmt.Sprintf(recheckYAML, mode)))
			})
		})
	}
}

func vanishCase(t *testing.T, h *harness) {
	for i := range 20 {
		h.putBoth(fmt.Sprintf("u%d/doc", i), []byte(fmt.Sprintf("record %d", i)))
	}
	m := h.open()
	runThroughVerify(t, m)
	h.aliasTarget("singapore")
	before := len(h.listing("singapore"))
	d, err := deleteStage(t, m, "backups")
	mustCode(t, err, ExitVerify)
	if !strings.Contains(err.Error(), "vanished") {
		t.Fatalf("error does not say the target copy vanished: %v", err)
	}
	lost := before - len(h.listing("singapore"))
	if lost > 1 || d.Deleted > 1 {
		t.Fatalf("I9 broken: %d replicas deleted (%d counted) after the target copies started vanishing", lost, d.Deleted)
	}
	if n := len(h.listing("target")); n < 19 {
		t.Fatalf("%d of 20 target copies left", n)
	}
	states, err := m.stageStates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st := states["backups"].State; st == StageFinished {
		t.Fatal("a stage stopped at a vanished target copy is finished")
	}
	// Records never started keep no delete intent: nothing is left to settle.
	err = m.State.Records(context.Background(), checkpoints.Query{}, func(r checkpoints.Record) error {
		if p := r.Replica("singapore"); p != nil && p.State == checkpoints.Intent {
			t.Errorf("%q keeps a delete intent after the stop", r.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// keptHandle returns the soft-delete handle recorded for key's replica at site.
func keptHandle(t *testing.T, m *Migration, key, site string) string {
	t.Helper()
	r := record(t, m, key)
	p := r.Replica(site)
	if p == nil || p.Handle == "" {
		t.Fatalf("%q at %s has no soft-delete handle: %+v", key, site, p)
	}
	return p.Handle
}

// kept reports whether the soft-deleted bytes of key at site are still kept: in a
// file store by looking into the quarantine directory itself.
func (h *harness) kept(m *Migration, key, site string) bool {
	h.t.Helper()
	handle := keptHandle(h.t, m, key, site)
	if fs, ok := h.raw[site].(*file.Store); ok {
		_, err := os.Stat(filepath.Join(fs.QuarantineDir(), filepath.FromSlash(handle)))
		return err == nil
	}
	ok, err := h.raw[site].(providers.SoftDeleter).SoftExists(context.Background(), key, handle)
	if err != nil {
		h.t.Fatal(err)
	}
	return ok
}

// I12 / issue 13 class 3: --purge re-checks the target copy before destroying the
// kept bytes. A target copy that changed refuses that record's purge (exit 4) while
// the others are purged; a target copy that is gone stops the purge (exit 4); the
// kept bytes stay, and --restore still brings them back.
func TestI12PurgeRechecksTarget(t *testing.T) {
	eachKind(t, func(t *testing.T, k storeKind) {
		purgeCase(t, newHarness(t, k, fmt.Sprintf(recheckYAML, "soft")))
	})
}

func purgeCase(t *testing.T, h *harness) {
	h.putBoth("u1/changed", []byte("the first user's record"))
	h.putBoth("u2/vanished", []byte("the second user's record"))
	h.putBoth("u3/intact", []byte("the third user's record"))
	m := h.open()
	ctx := context.Background()
	runThroughVerify(t, m)
	if d, err := deleteStage(t, m, "backups"); err != nil || d.Deleted != 3 {
		t.Fatalf("soft delete: %+v %v", d, err)
	}
	h.rewriteInPlace("target", "u1/changed", true)
	h.advance(25 * time.Hour)
	_, err := m.Purge(ctx, "backups")
	mustCode(t, err, ExitVerify)
	if !h.kept(m, "u1/changed", "singapore") {
		t.Fatal("I12 broken: purged the kept bytes of a record whose target copy changed")
	}
	if h.kept(m, "u3/intact", "singapore") || h.kept(m, "u2/vanished", "singapore") {
		t.Fatal("records with an intact target copy were not purged")
	}
	// Now the target copy of a kept record vanishes: the purge stops there.
	if _, err := m.Restore(ctx, "backups"); err != nil {
		t.Fatalf("restore after a refused purge: %v", err)
	}
	if got := h.read("singapore", "u1/changed"); string(got) != "the first user's record" {
		t.Fatalf("restored %q", got)
	}
	h.rewriteInPlace("target", "u1/changed", true) // back to the verified bytes
	if _, err := m.Verify(ctx, false); err != nil {
		t.Fatal(err)
	}
	if d, err := deleteStage(t, m, "backups"); err != nil || d.Deleted != 1 {
		t.Fatalf("soft delete again: %+v %v", d, err)
	}
	if err := h.raw["target"].Delete(ctx, "u1/changed"); err != nil {
		t.Fatal(err)
	}
	h.advance(25 * time.Hour)
	_, err = m.Purge(ctx, "backups")
	mustCode(t, err, ExitVerify)
	if !strings.Contains(err.Error(), "vanished") {
		t.Fatalf("purge error does not say the target copy vanished: %v", err)
	}
	if !h.kept(m, "u1/changed", "singapore") {
		t.Fatal("I12 broken: purged the kept bytes of a record whose target copy is gone")
	}
	if _, err := m.Restore(ctx, "backups"); err != nil {
		t.Fatalf("restore after a stopped purge: %v", err)
	}
	if got := h.read("singapore", "u1/changed"); string(got) != "the first user's record" {
		t.Fatalf("restored %q", got)
	}
}

// Issue 13 class 5: a file replica rewritten in place with its size and mtime kept
// (same inode) after verify is not deleted, hard or soft: its bytes are proven again
// just before the delete. It is reported as changed (exit 3) and goes back to be
// proven again; the other replicas are deleted.
func TestI3FileReplicaRewrittenInPlaceNotDeleted(t *testing.T) {
	for _, mode := range []string{"hard", "soft"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, storeKinds[0], fmt.Sprintf(recheckYAML, mode))
			h.putBoth("u1/doc", []byte("the first user's record"))
			h.putBoth("u2/doc", []byte("the second user's record"))
			m := h.open()
			runThroughVerify(t, m)
			h.rewriteInPlace("singapore", "u1/doc", false)
			d, err := deleteStage(t, m, "backups")
			mustCode(t, err, ExitIncomplete)
			if d.Changed != 1 || d.Deleted != 1 {
				t.Fatalf("delete: %+v; want 1 changed, 1 deleted", d)
			}
			if got := h.read("singapore", "u1/doc"); string(got) != strings.Repeat("x", len(got)) {
				t.Fatalf("I3 broken: the rewritten replica was deleted (now %q)", got)
			}
			if st := replicaState(t, m, "u1/doc", "singapore"); st != checkpoints.Present {
				t.Fatalf("rewritten replica is %s, want present (to be proven again)", st)
			}
			if _, ok := h.listing("singapore")["u2/doc"]; ok {
				t.Fatal("the unchanged replica was not deleted")
			}
		})
	}
}

// ociTarget swaps the harness's target for a bucket on the OCI emulator; with
// partSize > 0 every record above it is a multipart object, for which the store
// reports a whole-object CRC32C and no SHA-256.
func ociTarget(t *testing.T, h *harness, partSize int64) {
	t.Helper()
	srv := ocitest.Start(t, ocitest.Options{MinPartSize: partSize})
	id := ocitest.NewIdentity(t)
	srv.Trust(id)
	if err := srv.CreateBucket("us-users", false); err != nil {
		t.Fatal(err)
	}
	cfg := srv.StoreConfig(id, "us-users", "users/")
	cfg.Name, cfg.Migration, cfg.PartSize = "target", "test-migration", partSize
	st, err := oci.New(context.Background(), cfg, oci.Options{MinPartSize: partSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.raw["target"] = st
	h.faults["target"] = faulty.Wrap(st)
}

// The re-check, the stop at a vanished target copy and the purge's re-check with an
// OCI target (file sites): single-part objects (opc-content-sha256) and multipart
// objects (whole-object CRC32C only).
func TestI12RecheckOCITarget(t *testing.T) {
	for _, part := range []int64{0, 8} {
		name := "single-part"
		if part > 0 {
			name = "multipart"
		}
		t.Run(name, func(t *testing.T) {
			oh := func(t *testing.T, mode string) *harness {
				h := newHarness(t, storeKinds[0], fmt.Sprintf(recheckYAML, mode))
				ociTarget(t, h, part)
				return h
			}
			t.Run("bytes", func(t *testing.T) {
				h := oh(t, "hard")
				recheckBytesCase(t, h)
				if part > 0 {
					o, err := h.raw["target"].Stat(context.Background(), "u3/intact")
					if err != nil || o.Checksums.SHA256 != "" || o.Checksums.CRC32C == "" {
						t.Fatalf("target copy is not multipart with a crc32c only: %+v %v", o, err)
					}
				}
			})
			t.Run("vanish-hard", func(t *testing.T) { vanishCase(t, oh(t, "hard")) })
			t.Run("vanish-soft", func(t *testing.T) { vanishCase(t, oh(t, "soft")) })
			t.Run("purge", func(t *testing.T) { purgeCase(t, oh(t, "soft")) })
		})
	}
}

// The worker path (Delete's m.worker branch, range by range under fenced claims) uses
// the same per-record re-check: with two workers, a rewritten file target copy keeps
// its replica, and an aliased site loses at most one replica per worker before each
// stops at the vanished target copy.
func TestI12RecheckWorkers(t *testing.T) {
	for _, k := range storeKinds[:2] { // file and mem: the stores are the same as in one process
		t.Run(k.name, func(t *testing.T) { recheckWorkersCase(t, k) })
	}
}

func recheckWorkersCase(t *testing.T, k storeKind) {
	{
		for _, alias := range []bool{false, true} {
			t.Run(fmt.Sprintf("alias=%v", alias), func(t *testing.T) {
				h := newHarness(t, k, fmt.Sprintf(recheckYAML, "soft"))
				for i := range 20 {
					h.putBoth(fmt.Sprintf("u%02d/doc", i), []byte(fmt.Sprintf("record number %d", i)))
				}
				state := filepath.Join(h.dir, "shared.db")
				h.phasesByWorkers(2, state, 4, "plan", "copy", "verify")
				if alias {
					h.aliasTarget("singapore")
				} else {
					h.rewriteInPlace("target", "u07/doc", true)
				}
				before := len(h.listing("singapore"))
				digest := ""
				h.workers(1, state, 4, func(m *Migration) error {
					sc, err := m.stageScope(context.Background(), "backups", false)
					digest = sc.Digest
					return err
				})
				errs := h.workers(2, state, 4, func(m *Migration) error {
					_, err := m.Delete(context.Background(), "backups", digest[:16])
					return err
				})
				t.Logf("lost %d, errors %v", before-len(h.listing("singapore")), errs)
				lost := before - len(h.listing("singapore"))
				if alias {
					stopped := 0
					for i, err := range errs {
						switch {
						case ExitCode(err) == ExitVerify && strings.Contains(err.Error(), "vanished"):
							stopped++
						case ExitCode(err) == ExitRefused && strings.Contains(err.Error(), "scope changed"):
							// It started after the other stopped: the scope had changed.
						default:
							t.Fatalf("worker %d: %v; want exit 4 naming a vanished target copy", i, err)
						}
					}
					if stopped == 0 {
						t.Fatal("no worker stopped at the vanished target copy")
					}
					if lost > 2 {
						t.Fatalf("I9 broken: %d replicas deleted by two workers after target copies started vanishing", lost)
					}
					return
				}
				if _, ok := h.listing("singapore")["u07/doc"]; !ok {
					t.Fatal("I12 broken: a worker deleted a replica whose target copy rotted")
				}
				if lost != 19 {
					t.Fatalf("%d of 19 replicas deleted", lost)
				}
				verifyErr := false
				for _, err := range errs {
					// A worker that starts after the other finished the stage finds the
					// scope changed (exit 5): the guard, not a failure.
					if err != nil && ExitCode(err) != ExitVerify && ExitCode(err) != ExitRefused {
						t.Fatalf("worker: %v", err)
					}
					verifyErr = verifyErr || err != nil
				}
				if !verifyErr {
					t.Fatal("no worker reported the failed re-check (exit 4)")
				}
			})
		}
	}
}
