package migrate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/file"
	"github.com/ferrymigrate/ferry/providers/gs"
	"github.com/ferrymigrate/ferry/providers/gs/gstest"
)

// gsCrashSpec: a file primary and two GCS backups (buckets on fake-gcs-server) into a
// GCS target, through the spec's gs:// URLs, endpoint and {auth: none}.
const gsCrashSpec = `migration: crash-gs
sources:
  - {name: virginia, role: primary, url: file://./sites/virginia}
  - {name: singapore, role: backup, url: gs://%[2]s/users/, endpoint: %[1]s, credentials: {auth: none}}
  - {name: archive, role: backup, url: gs://%[3]s/backups/users/, endpoint: %[1]s, credentials: {auth: none}}
target:
  url: gs://%[4]s/migrated/
  endpoint: %[1]s
  credentials: {auth: none}
records:
  user: '^(?P<user>[^/]+)/'
copy:
  concurrency: 8
delete:
  mode: soft
  grace: 0s
  stages:
    - {name: canary, sites: [singapore], sample: 20%%}
    - {name: backups, sites: [singapore, archive]}
    - {name: primary, sites: [virginia], mode: hard}
`

// gsList lists url's objects on srv (bucket root when prefix is ""), markers left out.
func gsList(t *testing.T, srv *gstest.Server, bucket, prefix string) map[string]providers.Object {
	t.Helper()
	cfg := srv.Config(bucket, prefix)
	s, err := gs.New(context.Background(), cfg, gs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]providers.Object{}
	if err := s.List(context.Background(), func(o providers.Object) error {
		if !strings.Contains(o.Key, ".ferry-marker/") {
			out[o.Key] = o
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func gsRead(t *testing.T, srv *gstest.Server, bucket, prefix, key string) []byte {
	t.Helper()
	s, err := gs.New(context.Background(), srv.Config(bucket, prefix), gs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rc, _, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// killSome runs args, killing (SIGKILL) each of the first maxKills runs after a
// random delay, then lets a run finish; it fails the test on any other failure. It
// returns the number of kills. The delay is drawn below a window that starts at
// maxDelay/16 and doubles with each kill up to maxDelay: a phase that takes less
// than maxDelay (a few records on a fast server) is still killed early in its run
// rather than seldom at all. (crash_test.go's killLoop kills until a run outgrows a
// delay that grows by 20 ms a run: on a store a few hundred milliseconds away, that
// takes minutes.)
func killSome(t *testing.T, bin, dir string, rng *rand.Rand, maxDelay time.Duration, maxKills int, args ...string) int {
	t.Helper()
	kills := 0
	window := maxDelay / 16
	for {
		cmd := exec.Command(bin, append([]string{"-c", filepath.Join(dir, "ferry.yaml"), "--no-progress", "--log-format", "json"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var timer <-chan time.Time
		if kills < maxKills {
			timer = time.After(time.Duration(rng.Int64N(int64(window))))
			window = min(2*window, maxDelay)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%v failed after %d kills: %v\n%s", args, kills, err, out.String())
			}
			return kills
		case <-timer:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			err := <-done
			var ee *exec.ExitError
			switch {
			case err == nil:
				return kills
			case errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signaled():
				kills++
			default:
				t.Fatalf("%v failed: %v\n%s", args, err, out.String())
			}
		}
	}
}

// TestCrashConvergesGS kills the real ferry (SIGKILL) at random moments of copy,
// verify, every delete stage and purge of a migration whose backups and target are
// GCS buckets, reruns it each time, and checks with an independent client (the gs
// provider opened afresh) that every record is at the target intact and nothing is
// left at the sites, quarantine included (I5 on GCS).
func TestCrashConvergesGS(t *testing.T) {
	srv := gstest.Shared(t)
	bin := buildFerry(t)
	sing, arch, tgt := srv.Bucket(t, false), srv.Bucket(t, false), srv.Bucket(t, false)
	dir := t.TempDir()
	spec := fmt.Sprintf(gsCrashSpec, srv.Endpoint, sing, arch, tgt)
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	recs := synth.Records(synth.Options{Users: 6, RecordsPerUser: 5, Tricky: true, LargeEvery: 17, MaxLarge: 1 << 20, Seed: 14})
	sets := map[string][]synth.Record{"virginia": recs, "singapore": synth.Subset(recs, 0.8, 1), "archive": synth.Subset(recs, 0.4, 2)}
	where := map[string][2]string{"singapore": {sing, "users/"}, "archive": {arch, "backups/users/"}}
	ctx := context.Background()
	for name, set := range sets {
		var s providers.Store
		var err error
		if name == "virginia" {
			d := filepath.Join(dir, "sites", name)
			os.MkdirAll(d, 0o755)
			s, err = file.New(d, file.Options{})
		} else {
			s, err = gs.New(ctx, srv.Config(where[name][0], where[name][1]), gs.Options{})
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := synth.Populate(ctx, s, set, 8); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	siteLeft := func(name string) int {
		if name == "virginia" {
			return len(listDir(t, filepath.Join(dir, "sites", name)))
		}
		return len(gsList(t, srv, where[name][0], where[name][1]))
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	kills := killSome(t, bin, dir, rng, 600*time.Millisecond, 8, "run", "--through", "verify")
	target := gsList(t, srv, tgt, "migrated/")
	check := func(when string) {
		for _, r := range recs {
			obj, ok := target[r.Key]
			if !ok {
				t.Fatalf("%s: record %q missing at the GCS target", when, r.Key)
			}
			if obj.Size != r.Size || !bytes.Equal(gsRead(t, srv, tgt, "migrated/", r.Key), r.Bytes()) {
				t.Fatalf("%s: record %q differs at the GCS target", when, r.Key)
			}
		}
	}
	check("after verify")
	for name, set := range sets {
		if n := siteLeft(name); n != len(set) {
			t.Fatalf("a site lost replicas before any delete: %s has %d of %d", name, n, len(set))
		}
	}
	for _, stage := range []string{"canary", "backups", "primary"} {
		digest, _ := dryScope(t, bin, dir, stage)
		kills += killSome(t, bin, dir, rng, 450*time.Millisecond, 5, "delete", "--stage", stage, "--confirm", digest[:16])
		if stage != "primary" {
			kills += killSome(t, bin, dir, rng, 350*time.Millisecond, 3, "delete", "--stage", stage, "--purge")
		}
	}
	// Nothing verified was copied again: every target object is the generation it was.
	now := gsList(t, srv, tgt, "migrated/")
	for key, before := range target {
		if !now[key].SameVersion(before) {
			t.Fatalf("%q was rewritten at the target after it was verified", key)
		}
	}
	check("after every stage")
	for name := range sets {
		if n := siteLeft(name); n != 0 {
			t.Fatalf("site %s still holds %d replicas", name, n)
		}
	}
	// Purged: the GCS backups' buckets hold nothing at all, quarantine included.
	for _, b := range []string{sing, arch} {
		if left := gsList(t, srv, b, ""); len(left) != 0 {
			t.Fatalf("bucket %s keeps %d objects after purge: %v", b, len(left), left)
		}
	}
	var st struct {
		Records map[string]struct{ Count int64 } `json:"records"`
	}
	ferryJSON(t, bin, dir, &st, "status")
	if st.Records["verified"].Count != int64(len(recs)) {
		t.Fatalf("final state: %+v records, want %d verified", st.Records, len(recs))
	}
	t.Logf("survived %d kills across copy, verify, 3 stages and 2 purges of %d records on GCS", kills, len(recs))
	if kills == 0 {
		t.Fatal("no run was killed: the test proved nothing")
	}
}
