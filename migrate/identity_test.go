package migrate

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/faulty"
	"github.com/ferrymigrate/ferry/providers/file"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// Issue 13 class 1 and I9: the target is a source under another name. Stores are
// judged by what they are (resolved paths, device and inode, normalised endpoints)
// and by the marker object ferry writes to the target and looks for at every site.

// mustRefuseAlias checks a refusal (exit 5) that names the site and the target.
func mustRefuseAlias(t *testing.T, what string, err error, site string) {
	t.Helper()
	if ExitCode(err) != ExitRefused {
		t.Fatalf("%s: exit %d, want %d (refused): %v", what, ExitCode(err), ExitRefused, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "site "+site) || !strings.Contains(msg, "target") {
		t.Fatalf("%s: the refusal does not name site %s and the target: %v", what, site, msg)
	}
}

// specMigration opens the spec at dir/ferry.yaml with the real providers (no test
// decorators), as the CLI does.
func specMigration(t *testing.T, dir string, dry bool) (*Migration, error) {
	t.Helper()
	m, err := Open(context.Background(), Options{SpecPath: filepath.Join(dir, "ferry.yaml"), DryRun: dry,
		Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Cleanup(func() { m.Close() })
	}
	return m, err
}

const fileAliasYAML = `migration: identity-test
sources:
  - {name: virginia, role: primary, url: %s}
  - {name: singapore, role: backup, url: %s}
target:
  url: %s
records:
  user: '^(?P<user>[^/]+)/'
delete:
  stages:
    - {name: backups, sites: [singapore]}
    - {name: primary, sites: [virginia]}
`

// TestI9FileAliases: a site directory that is a symlink to the target, and a target
// that is a symlink into a site, pass the spec's lexical check; validate (even a dry
// run) and plan refuse them, and nothing is written anywhere.
func TestI9FileAliases(t *testing.T) {
	cases := []struct {
		name string
		// layout makes the directories under base and returns the three URLs.
		layout func(t *testing.T, base string) (virginia, singapore, target string)
		site   string // the site the refusal names
	}{
		{"site symlinked to the target", func(t *testing.T, base string) (string, string, string) {
			mkdirs(t, base, "virginia", "target")
			if err := os.Symlink(filepath.Join(base, "target"), filepath.Join(base, "singapore")); err != nil {
				t.Fatal(err)
			}
			return "file://./virginia", "file://./singapore", "file://./target"
		}, "singapore"},
		{"target symlinked into a site", func(t *testing.T, base string) (string, string, string) {
			mkdirs(t, base, "virginia/migrated", "singapore")
			if err := os.Symlink(filepath.Join(base, "virginia", "migrated"), filepath.Join(base, "target")); err != nil {
				t.Fatal(err)
			}
			return "file://./virginia", "file://./singapore", "file://./target"
		}, "virginia"},
		{"site symlinked around the target", func(t *testing.T, base string) (string, string, string) {
			mkdirs(t, base, "virginia", "store/target")
			if err := os.Symlink(filepath.Join(base, "store"), filepath.Join(base, "singapore")); err != nil {
				t.Fatal(err)
			}
			return "file://./virginia", "file://./singapore", "file://./store/target"
		}, "singapore"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			v, s, tg := c.layout(t, base)
			if err := os.WriteFile(filepath.Join(base, "ferry.yaml"), []byte(fmt.Sprintf(fileAliasYAML, v, s, tg)), 0o644); err != nil {
				t.Fatal(err)
			}
			recs := synth.Records(synth.Options{Users: 3, RecordsPerUser: 3, Seed: 5})
			vs, err := file.New(filepath.Join(base, "virginia"), file.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer vs.Close()
			if err := synth.Populate(context.Background(), vs, recs, 4); err != nil {
				t.Fatal(err)
			}
			before := treeFiles(t, base)
			for _, dry := range []bool{true, false} {
				m, err := specMigration(t, base, dry)
				if err != nil {
					t.Fatal(err)
				}
				_, err = m.Validate(context.Background())
				mustRefuseAlias(t, fmt.Sprintf("validate (dry run %v)", dry), err, c.site)
				_, err = m.Plan(context.Background())
				mustRefuseAlias(t, fmt.Sprintf("plan (dry run %v)", dry), err, c.site)
				m.Close()
			}
			if after := treeFiles(t, base); after != before {
				t.Fatalf("a refused validate or plan wrote to a store:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func mkdirs(t *testing.T, base string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// treeFiles lists the regular files under base outside the state, following no
// symlinks: what the stores hold.
func treeFiles(t *testing.T, base string) string {
	t.Helper()
	var out []string
	err := filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		if fi.Mode().IsRegular() && !strings.HasPrefix(rel, "ferry.") {
			out = append(out, fmt.Sprintf("%s:%d", rel, fi.Size()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}

const s3AliasYAML = `migration: identity-test
sources:
  - {name: virginia, role: primary, url: file://./virginia}
  - name: singapore
    role: backup
    url: s3://%[1]s/users/
    endpoint: %[2]s
    region: us-east-1
    path_style: true
    credentials: {access_key_env: %[4]s, secret_key_env: %[5]s}
target:
  url: s3://%[1]s/users/
  endpoint: %[3]s
  region: us-east-1
  path_style: true
  credentials: {access_key_env: %[4]s, secret_key_env: %[5]s}
records:
  user: '^(?P<user>[^/]+)/'
delete:
  stages:
    - {name: backups, sites: [singapore]}
    - {name: primary, sites: [virginia]}
`

// TestI9S3EndpointSpellings: a MinIO bucket as a site through http://localhost:PORT
// and as the target through http://127.0.0.1:PORT is one store. validate and plan
// refuse it by identity; reached through a proxy on another port (a spelling no
// normalisation can tell), validate, plan and copy refuse it by the target's marker.
func TestI9S3EndpointSpellings(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	localhost := strings.Replace(srv.Endpoint, "127.0.0.1", "localhost", 1)
	proxy := srv.Proxy(t)
	cases := []struct {
		name, siteEndpoint string
		marker             bool // only the marker can tell
	}{
		{"localhost and 127.0.0.1", localhost, false},
		{"through a proxy on another port", proxy.URL, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			mkdirs(t, base, "virginia")
			bucket := srv.Bucket(t, false)
			spec := fmt.Sprintf(s3AliasYAML, bucket, c.siteEndpoint, srv.Endpoint, srv.AccessKeyEnv, srv.SecretKeyEnv)
			if err := os.WriteFile(filepath.Join(base, "ferry.yaml"), []byte(spec), 0o644); err != nil {
				t.Fatal(err)
			}
			recs := synth.Records(synth.Options{Users: 3, RecordsPerUser: 3, Seed: 5})
			cfg := srv.Config(bucket, "users/")
			bs, err := s3.New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer bs.Close()
			if err := synth.Populate(context.Background(), bs, recs, 4); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if c.marker {
				// Plan and copy before any validate: plan cannot tell yet (no marker
				// anywhere), copy writes the marker and finds it at singapore.
				m, err := specMigration(t, base, false)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := m.Plan(ctx); err != nil {
					t.Fatalf("plan: %v", err)
				}
				_, err = m.Copy(ctx)
				mustRefuseAlias(t, "copy", err, "singapore")
				if !strings.Contains(err.Error(), "marker") {
					t.Fatalf("copy refused, but not by the marker: %v", err)
				}
				m.Close()
			}
			m, err := specMigration(t, base, false)
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.Validate(ctx)
			mustRefuseAlias(t, "validate", err, "singapore")
			if c.marker != strings.Contains(err.Error(), "marker") {
				t.Fatalf("validate refused, marker %v: %v", c.marker, err)
			}
			_, err = m.Plan(ctx)
			mustRefuseAlias(t, "plan", err, "singapore")
			m.Close()
			// Nothing was copied, deleted or overwritten: the bucket holds the
			// records as written, and at most ferry's marker besides.
			got := map[string]int64{}
			if err := bs.List(ctx, func(o providers.Object) error {
				if !isMarkerKey(o.Key) {
					got[o.Key] = o.Size
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(recs) {
				t.Fatalf("bucket holds %d records, want %d", len(got), len(recs))
			}
			for _, r := range recs {
				if got[r.Key] != r.Size {
					t.Fatalf("%q: %d bytes, want %d", r.Key, got[r.Key], r.Size)
				}
			}
		})
	}
}

// aliasKinds are stores that become the target under another name after verify:
// the harness's singapore store is replaced by alias(h).
var aliasKinds = []struct {
	name   string
	kind   func(t *testing.T) storeKind
	alias  func(t *testing.T, h *harness) providers.Store
	marker bool // only the marker can tell (the store has no identity, or a proxy hides it)
}{
	{"mem, no identity", func(*testing.T) storeKind { return storeKinds[1] }, func(t *testing.T, h *harness) providers.Store {
		return h.raw["target"]
	}, true},
	{"file, symlink", func(*testing.T) storeKind { return storeKinds[0] }, func(t *testing.T, h *harness) providers.Store {
		link := filepath.Join(h.dir, "stores", "singapore-alias")
		if err := os.Symlink(filepath.Join(h.dir, "stores", "target"), link); err != nil {
			t.Fatal(err)
		}
		s, err := file.New(link, file.Options{Migration: "test-migration"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, false},
	{"s3, localhost", s3AliasKind, func(t *testing.T, h *harness) providers.Store {
		srv := s3test.Shared(t, s3test.MinIO)
		return openS3Alias(t, h, strings.Replace(srv.Endpoint, "127.0.0.1", "localhost", 1))
	}, false},
	{"s3, proxy", s3AliasKind, func(t *testing.T, h *harness) providers.Store {
		srv := s3test.Shared(t, s3test.MinIO)
		return openS3Alias(t, h, srv.Proxy(t).URL)
	}, true},
}

// s3AliasKind is the s3-minio kind that remembers each store's bucket.
func s3AliasKind(t *testing.T) storeKind {
	return storeKind{"s3-minio", func(t *testing.T, h *harness, name string) providers.Store {
		srv := s3test.Shared(t, s3test.MinIO)
		bucket := srv.Bucket(t, false)
		h.buckets[name] = bucket
		cfg := srv.Config(bucket, "users/")
		cfg.Name, cfg.Migration = name, "test-migration"
		st, err := s3.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}}
}

// openS3Alias opens the target's bucket at endpoint.
func openS3Alias(t *testing.T, h *harness, endpoint string) providers.Store {
	srv := s3test.Shared(t, s3test.MinIO)
	cfg := srv.Config(h.buckets["target"], "users/")
	cfg.Name, cfg.Migration, cfg.Endpoint = "singapore", "test-migration", endpoint
	st, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestI9AliasedSiteRefusedBeforeDeleteAndPurge: a site that became the target under
// another name after verify (a remount, a DNS change, a proxy) is caught before a
// delete stage, before a purge and at validate: exit 5 naming the site and the
// target, nothing deleted or purged, data intact. Where the store has no identity
// or a proxy hides it, the target's marker catches it.
func TestI9AliasedSiteRefusedBeforeDeleteAndPurge(t *testing.T) {
	for _, ak := range aliasKinds {
		t.Run(ak.name, func(t *testing.T) {
			h := newHarness(t, ak.kind(t), fmt.Sprintf(recheckYAML, "soft"))
			const n = 12
			for i := range n {
				h.putBoth(fmt.Sprintf("u%d/doc", i), []byte(fmt.Sprintf("record %d", i)))
			}
			m := h.open()
			runThroughVerify(t, m)
			m.Close()
			real := h.faults["singapore"]
			alias := faulty.Wrap(ak.alias(t, h))
			ctx := context.Background()
			intact := func(when string) {
				t.Helper()
				for _, store := range []string{"target", "virginia"} {
					if got := len(h.listing(store)); got != n {
						t.Fatalf("%s: %s holds %d records, want %d", when, store, got, n)
					}
				}
				for i := range n {
					if got, want := string(h.read("target", fmt.Sprintf("u%d/doc", i))), fmt.Sprintf("record %d", i); got != want {
						t.Fatalf("%s: target copy %d reads %q", when, i, got)
					}
				}
			}
			refused := func(what string, err error) {
				t.Helper()
				mustRefuseAlias(t, what, err, "singapore")
				if ak.marker && !strings.Contains(err.Error(), "marker") {
					t.Fatalf("%s refused, but not by the marker: %v", what, err)
				}
			}

			// Before the first delete stage.
			h.faults["singapore"] = alias
			m = h.open()
			_, err := deleteStage(t, m, "backups")
			refused("delete", err)
			_, err = m.Validate(ctx)
			refused("validate", err)
			m.Close()
			intact("after the refused delete")

			// The real site again: the stage runs (soft).
			h.faults["singapore"] = real
			m = h.open()
			if d, err := deleteStage(t, m, "backups"); err != nil || d.Deleted != n {
				t.Fatalf("delete backups: %+v %v", d, err)
			}
			m.Close()
			h.advance(25 * time.Hour)

			// Before the purge, and before the next stage.
			h.faults["singapore"] = alias
			m = h.open()
			_, err = m.Purge(ctx, "backups")
			refused("purge", err)
			_, err = deleteStage(t, m, "primary")
			refused("delete primary", err)
			states, serr := m.stageStates(ctx)
			if serr != nil {
				t.Fatal(serr)
			}
			if st := states["backups"].State; st != StageFinished {
				t.Fatalf("stage backups is %s after a refused purge, want finished", st)
			}
			if err := m.State.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
				if p := r.Replica("singapore"); p == nil || p.State != checkpoints.Deleted {
					t.Errorf("%q: singapore replica %+v after a refused purge, want soft-deleted and kept", r.Key, p)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			m.Close()
			intact("after the refused purge")
		})
	}
}

// TestMarkerNeverARecord: ferry's markers never become records. A site holding
// another migration's marker plans without it; a site holding this migration's
// marker is refused; the target's marker is not counted, copied or certified.
func TestMarkerNeverARecord(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(recheckYAML, "hard"))
	for i := range 4 {
		h.putBoth(fmt.Sprintf("u%d/doc", i), []byte(fmt.Sprintf("record %d", i)))
	}
	h.put("singapore", MarkerDir+"another-migration-0123456789abcdef", []byte("{}"))
	m := h.open()
	ctx := context.Background()
	p, err := m.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Sites["singapore"].Objects != 4 {
		t.Fatalf("singapore listed %d objects, want 4 (the marker left out)", p.Sites["singapore"].Objects)
	}
	if _, err := m.Copy(ctx); err != nil {
		t.Fatal(err)
	}
	key, ok, err := m.State.Meta(ctx, metaMarker)
	if err != nil || !ok || !strings.HasPrefix(key, MarkerDir+"test-migration-") {
		t.Fatalf("marker key %q %v %v", key, ok, err)
	}
	if _, err := h.raw["target"].Stat(ctx, key); err != nil {
		t.Fatalf("copy wrote no marker to the target: %v", err)
	}
	n := 0
	if err := m.State.Records(ctx, checkpoints.Query{}, func(r checkpoints.Record) error {
		n++
		if isMarkerKey(r.Key) {
			t.Errorf("a marker became a record: %q", r.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("%d records, want 4", n)
	}
	// This migration's marker at a site (a site that is, or holds, the target).
	h.put("virginia", "deep/"+key, []byte("{}"))
	_, err = m.Plan(ctx)
	mustRefuseAlias(t, "plan", err, "virginia")
}
