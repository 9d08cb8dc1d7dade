package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// The pipeline tests run against S3 on a real MinIO too (one bucket per store), not
// only against files and memory.
func init() {
	storeKinds = append(storeKinds, storeKind{"s3-minio", func(t *testing.T, h *harness, name string) providers.Store {
		return openS3(t, s3test.Shared(t, s3test.MinIO), false, name)
	}})
}

func openS3(t *testing.T, srv *s3test.Server, versioned bool, name string) providers.Store {
	t.Helper()
	cfg := srv.Config(srv.Bucket(t, versioned), "users/")
	cfg.Name, cfg.Migration = name, "test-migration"
	st, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestPipelineS3Versioned runs the whole pipeline with every store a versioned MinIO
// bucket: soft deletes leave delete markers that --restore removes and --purge
// finalises; hard deletes remove exactly the verified version.
func TestPipelineS3Versioned(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	k := storeKind{"s3-versioned", func(t *testing.T, h *harness, name string) providers.Store {
		return openS3(t, srv, true, name)
	}}
	h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
	// No directory markers here: a versioned MinIO bucket does not show a soft-deleted
	// "dir/" marker's version below its delete marker, so ferry (rightly) refuses to
	// count that delete as done; that case is left to the provider's own tests.
	recs := synth.Records(synth.Options{Users: 6, RecordsPerUser: 4, Tricky: true, Seed: 7})
	h.populate("virginia", recs)
	h.populate("singapore", synth.Subset(recs, 0.8, 1))
	h.populate("archive", synth.Subset(recs, 0.3, 2))
	m := h.open()
	ctx := context.Background()
	runThroughVerify(t, m)
	before := len(h.listing("singapore"))
	if _, err := deleteStage(t, m, "canary"); err != nil {
		t.Fatal(err)
	}
	mid := len(h.listing("singapore"))
	if mid >= before {
		t.Fatal("canary deleted nothing")
	}
	if _, err := m.Restore(ctx, "canary"); err != nil {
		t.Fatal(err)
	}
	if n := len(h.listing("singapore")); n != before {
		t.Fatalf("restore: %d of %d back", n, before)
	}
	if _, err := m.Verify(ctx, false); err != nil {
		t.Fatal(err)
	}
	for _, st := range m.Spec.Delete.Stages {
		if d, err := deleteStage(t, m, st.Name); err != nil {
			t.Fatalf("%s: %v %+v", st.Name, err, d.Problems)
		}
	}
	h.advance(25 * 3600e9)
	for _, st := range []string{"canary", "backups"} {
		if _, err := m.Purge(ctx, st); err != nil {
			t.Fatalf("purge %s: %v", st, err)
		}
	}
	for _, site := range []string{"virginia", "singapore", "archive"} {
		if n := len(h.listing(site)); n != 0 {
			t.Fatalf("%s still lists %d objects", site, n)
		}
	}
	if n := len(h.listing("target")); n != len(recs) {
		t.Fatalf("target has %d of %d records", n, len(recs))
	}
}

// TestI8SecretsNeverWrittenS3 runs a whole migration against MinIO with debug logging
// and scans everything ferry wrote (logs, results as JSON, the state store and its
// WAL, the certificate files) for the credentials it used.
func TestI8SecretsNeverWrittenS3(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	k := storeKind{"s3", func(t *testing.T, h *harness, name string) providers.Store { return openS3(t, srv, false, name) }}
	h := newHarness(t, k, fmt.Sprintf(sitesYAML, "fail"))
	h.standardData(4)
	m := h.open()
	ctx := context.Background()
	var results []any
	p := runThroughVerify(t, m)
	results = append(results, p)
	for _, st := range m.Spec.Delete.Stages {
		d, err := deleteStage(t, m, st.Name)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, d)
	}
	rep, _ := m.Report(ctx, filepath.Join(h.dir, "report"))
	results = append(results, rep)
	st, _ := m.Status(ctx, synth.User(0))
	results = append(results, st)
	m.Close()
	js, err := json.Marshal(results)
	if err != nil {
		t.Fatal(err)
	}
	haystacks := map[string][]byte{"logs": h.logs.Bytes(), "json": js}
	filepath.WalkDir(h.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(filepath.Base(p), "ferry.key") {
			b, _ := os.ReadFile(p)
			haystacks[p] = b
		}
		return nil
	})
	if len(h.logs.Bytes()) == 0 {
		t.Fatal("no debug log was written: the test scans nothing")
	}
	for name, hay := range haystacks {
		for _, secret := range []string{srv.SecretKey, srv.AccessKey} {
			if bytes.Contains(hay, []byte(secret)) {
				t.Fatalf("I8 broken: %s contains a credential", name)
			}
		}
	}
}
