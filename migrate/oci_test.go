package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/mem"
	"github.com/ferrymigrate/ferry/providers/oci"
	"github.com/ferrymigrate/ferry/providers/oci/ocitest"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// useOCITarget swaps the harness's target for a bucket on the OCI emulator, which
// checks every request's signature.
func useOCITarget(t *testing.T, h *harness, versioned bool) *ocitest.Server {
	t.Helper()
	srv := ocitest.Start(t, ocitest.Options{})
	id := ocitest.NewIdentity(t)
	srv.Trust(id)
	if err := srv.CreateBucket("us-users", versioned); err != nil {
		t.Fatal(err)
	}
	cfg := srv.StoreConfig(id, "us-users", "users/")
	cfg.Name, cfg.Migration = "target", "test-migration"
	st, err := oci.New(context.Background(), cfg, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.raw["target"] = st
	h.faults["target"] = faulty.Wrap(st)
	return srv
}

// The whole pipeline into the OCI emulator, from file sites and from MinIO sites,
// every delete stage included.
func TestPipelineOCITarget(t *testing.T) {
	kinds := []storeKind{storeKinds[0]}
	for _, k := range storeKinds {
		if k.name == "s3-minio" {
			kinds = append(kinds, k)
		}
	}
	for _, k := range kinds {
		t.Run("sites-"+k.name, func(t *testing.T) {
			h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
			useOCITarget(t, h, false)
			recs := h.standardData(6)
			m := h.open()
			ctx := context.Background()
			runThroughVerify(t, m)
			for _, st := range m.Spec.Delete.Stages {
				if d, err := deleteStage(t, m, st.Name); err != nil {
					t.Fatalf("%s: %v %+v", st.Name, err, d.Problems)
				}
			}
			h.advance(25 * time.Hour)
			for _, st := range []string{"canary", "backups"} {
				if _, err := m.Purge(ctx, st); err != nil {
					t.Fatal(err)
				}
			}
			target := h.listing("target")
			for _, r := range recs {
				if _, ok := target[r.Key]; !ok {
					t.Fatalf("%q missing at the OCI target", r.Key)
				}
			}
			for _, site := range []string{"virginia", "singapore", "archive"} {
				if n := len(h.listing(site)); n != 0 {
					t.Fatalf("%s still holds %d replicas", site, n)
				}
			}
			if _, err := m.Verify(ctx, true); err != nil {
				t.Fatalf("re-read verify after deletion: %v", err)
			}
		})
	}
}

// A corrupted upload to OCI is caught and the record never verified: the emulator
// corrupts request bodies in flight.
func TestOCICorruptUploadNeverVerified(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	srv := useOCITarget(t, h, false)
	h.put("virginia", "u1/doc", []byte("bytes that must arrive intact"))
	rule := &ocitest.Rule{Op: "PutObject", Path: "u1/doc", Fault: ocitest.Fault{CorruptRequest: true}}
	remove := srv.Inject(rule)
	m := h.open()
	ctx := context.Background()
	if _, err := m.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := m.Copy(ctx)
	mustCode(t, err, ExitIncomplete)
	if rule.Fired() == 0 {
		t.Fatal("the fault never fired")
	}
	if st := record(t, m, "u1/doc").State; st != "failed" {
		t.Fatalf("record %s after corrupted uploads, want failed", st)
	}
	remove()
	if _, err := m.Copy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, true); err != nil {
		t.Fatal(err)
	}
}

// A target whose store reports a region outside the residency policy is refused
// (exit 5) at plan and copy, before anything is written.
func TestResidencyRefused(t *testing.T) {
	spec := replaceOnce(fmt.Sprintf(sitesYAML, "fail"), "target:\n  url: file://./stores/target\n",
		"target:\n  url: oci://ns/us-users/users/\n  region: us-ashburn-1\n  residency: [us-ashburn-1, us-phoenix-1]\n")
	h := newHarness(t, storeKinds[1], spec)
	h.standardData(2)
	name := "residency-" + t.Name()
	mem.Reset(name)
	h.raw["target"] = mem.New(name, mem.WithRegion("eu-frankfurt-1"))
	h.faults["target"] = faulty.Wrap(h.raw["target"])
	m := h.open()
	_, err := m.Plan(context.Background())
	mustCode(t, err, ExitRefused)
	_, err = m.Copy(context.Background())
	mustCode(t, err, ExitRefused)
	if n := len(h.listing("target")); n != 0 {
		t.Fatalf("%d objects written to a target outside residency", n)
	}
	_ = providers.ErrNotFound
	_ = s3test.MinIO
}

// I8 on an OCI target: a whole migration with debug logging into the emulator, whose
// every request is signed with the identity's RSA key; the logs, the results as JSON,
// the state store (with its WAL) and the report are scanned for the private key's PEM
// lines and every Authorization header value (and its signature) that was sent.
func TestI8SecretsNeverWrittenOCI(t *testing.T) {
	h := newHarness(t, storeKinds[0], fmt.Sprintf(sitesYAML, "fail"))
	srv := ocitest.Start(t, ocitest.Options{})
	id := ocitest.NewIdentity(t)
	srv.Trust(id)
	if err := srv.CreateBucket("us-users", false); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	auth := map[string]bool{}
	srv.Inject(&ocitest.Rule{Match: func(r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if a := r.Header.Get("Authorization"); a != "" {
			auth[a] = true
		}
		return false
	}})
	cfg := srv.StoreConfig(id, "us-users", "users/")
	cfg.Name, cfg.Migration = "target", "test-migration"
	st, err := oci.New(context.Background(), cfg, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.raw["target"], h.faults["target"] = st, faulty.Wrap(st)
	h.standardData(3)
	m := h.open()
	ctx := context.Background()
	results := []any{runThroughVerify(t, m)}
	for _, s := range m.Spec.Delete.Stages {
		d, err := deleteStage(t, m, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, d)
	}
	rep, _ := m.Report(ctx, filepath.Join(h.dir, "report"))
	results = append(results, rep)
	m.Close()
	js, err := json.Marshal(results)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := os.ReadFile(id.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	var secrets []string
	for _, line := range strings.Split(string(pemKey), "\n") {
		if len(line) >= 32 && !strings.HasPrefix(line, "-----") {
			secrets = append(secrets, line)
		}
	}
	mu.Lock()
	for a := range auth {
		secrets = append(secrets, a)
		if i := strings.Index(a, `signature="`); i >= 0 {
			secrets = append(secrets, strings.TrimSuffix(a[i+len(`signature="`):], `"`))
		}
	}
	mu.Unlock()
	if len(auth) == 0 || len(secrets) <= len(auth) {
		t.Fatalf("nothing to scan for: %d headers, %d secrets", len(auth), len(secrets))
	}
	hay := map[string][]byte{"logs": h.logs.Bytes(), "json": js}
	filepath.WalkDir(h.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), "ferry.key") && !strings.Contains(p, "/stores/") {
			b, _ := os.ReadFile(p)
			hay[p] = b
		}
		return nil
	})
	for name, b := range hay {
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Fatalf("I8 broken: %s contains key material or an Authorization value (%.16s...)", name, s)
			}
		}
	}
	t.Logf("scanned %d haystacks for %d secrets (%d Authorization headers)", len(hay), len(secrets), len(auth))
}

// I9 on OCI: the target's bucket reached as a site through the emulator's endpoint
// spelled localhost instead of 127.0.0.1 is the target under another name: the
// delete stage is refused (exit 5) and nothing is deleted.
func TestI9OCISiteIsTargetUnderAnotherEndpoint(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(recheckYAML, "hard"))
	srv := useOCITarget(t, h, false)
	for i := range 6 {
		h.putBoth(fmt.Sprintf("u%d/doc", i), []byte(fmt.Sprintf("record %d", i)))
	}
	m := h.open()
	runThroughVerify(t, m)
	m.Close()
	id := ocitest.NewIdentity(t)
	srv.Trust(id)
	cfg := srv.StoreConfig(id, "us-users", "users/")
	cfg.Name, cfg.Migration = "singapore", "test-migration"
	cfg.Endpoint = strings.Replace(cfg.Endpoint, "127.0.0.1", "localhost", 1)
	alias, err := oci.New(context.Background(), cfg, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alias.Close() })
	h.faults["singapore"] = faulty.Wrap(alias)
	m = h.open()
	_, err = deleteStage(t, m, "backups")
	mustRefuseAlias(t, "delete", err, "singapore")
	if strings.Contains(err.Error(), "marker") {
		t.Fatalf("refused by the marker, want by identity: %v", err)
	}
	if n := len(h.listing("target")); n != 6 {
		t.Fatalf("target holds %d of 6 records", n)
	}
}
