package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/file"
)

const crashSpec = `migration: crash-test
sources:
  - {name: virginia, role: primary, url: file://./sites/virginia}
  - {name: singapore, role: backup, url: file://./sites/singapore}
  - {name: archive, role: backup, url: file://./sites/archive}
target:
  url: file://./target
records:
  user: '^(?P<user>[^/]+)/'
copy:
  concurrency: 8
delete:
  mode: soft
  grace: 0s
  stages:
    - {name: canary, sites: [singapore], sample: 20%}
    - {name: backups, sites: [singapore, archive]}
    - {name: primary, sites: [virginia], mode: hard}
`

// buildFerry returns the path of the real ferry binary, built once per test process
// (migrate.BuildFerry, in harness_test.go).
func buildFerry(t *testing.T) string { return migrate.BuildFerry(t) }

// killLoop runs args until one run exits on its own with an accepted code, killing
// (SIGKILL) each run after a random delay first. It returns the number of kills.
func killLoop(t *testing.T, bin, dir string, rng *rand.Rand, maxDelay time.Duration, args ...string) int {
	t.Helper()
	kills := 0
	for attempt := 0; attempt < 200; attempt++ {
		cmd := exec.Command(bin, append([]string{"-c", filepath.Join(dir, "ferry.yaml"), "--no-progress", "--log-format", "json"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// Later attempts get more time so the loop converges.
		delay := time.Duration(rng.Int64N(int64(maxDelay))) + time.Duration(attempt)*20*time.Millisecond
		select {
		case err := <-done:
			if err == nil {
				return kills
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == 5 {
				// The lock of the killed run: its process is gone, so this must not happen.
				t.Fatalf("%v refused after a kill (stale lock not taken over): %s", args, out.String())
			}
			t.Fatalf("%v failed: %v\n%s", args, err, out.String())
		case <-time.After(delay):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			err := <-done
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
				kills++
			} else if err == nil {
				return kills
			} else {
				t.Fatalf("%v failed: %v\n%s", args, err, out.String())
			}
		}
	}
	t.Fatalf("%v never finished", args)
	return kills
}

func ferryJSON(t *testing.T, bin, dir string, v any, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-c", filepath.Join(dir, "ferry.yaml"), "--json"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(env.Result, v); err != nil {
		t.Fatal(err)
	}
}

// dryScope asks ferry (a dry run) for a stage's scope digest and size; an empty scope
// fails the test, which would prove nothing.
func dryScope(t *testing.T, bin, dir, stage string) (digest string, replicas int64) {
	t.Helper()
	var d struct {
		Scope struct {
			Digest   string `json:"digest"`
			Replicas int64  `json:"replicas"`
		} `json:"scope"`
	}
	ferryJSON(t, bin, dir, &d, "delete", "--stage", stage, "--dry-run")
	if d.Scope.Replicas == 0 {
		t.Fatalf("stage %s has an empty scope", stage)
	}
	return d.Scope.Digest, d.Scope.Replicas
}

func listDir(t *testing.T, dir string) map[string]providers.Object {
	t.Helper()
	s, err := file.New(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]providers.Object{}
	if err := s.List(context.Background(), func(o providers.Object) error {
		if !strings.HasPrefix(o.Key, ".ferry-marker/") { // ferry's marker at the target is not data
			out[o.Key] = o
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// crashSetup writes the crash spec and three file sites holding users*5 records
// (every record at virginia, 80% at singapore, 40% at archive) into a new folder.
func crashSetup(t *testing.T, users int) (string, []synth.Record, map[string][]synth.Record) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(crashSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	recs := synth.Records(synth.Options{Users: users, RecordsPerUser: 5, Tricky: true, LargeEvery: 97, MaxLarge: 2 << 20, Seed: 99})
	sets := map[string][]synth.Record{"virginia": recs, "singapore": synth.Subset(recs, 0.8, 1), "archive": synth.Subset(recs, 0.4, 2)}
	for name, set := range sets {
		d := filepath.Join(dir, "sites", name)
		os.MkdirAll(d, 0o755)
		s, err := file.New(d, file.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := synth.Populate(context.Background(), s, set, 8); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "target"), 0o755)
	return dir, recs, sets
}

// TestCrashConverges kills a real ferry process (SIGKILL) at random moments of copy,
// verify, every delete stage and purge, reruns it each time, and checks with an
// oracle that reads the folders directly: every record reaches the target intact,
// nothing verified is copied again, no replica is deleted without a verified copy,
// and the final state is the same as an uninterrupted run's (I5).
func TestCrashConverges(t *testing.T) {
	bin := buildFerry(t)
	dir, recs, sets := crashSetup(t, 60)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0

	// Plan, copy, verify under kills.
	kills += killLoop(t, bin, dir, rng, 400*time.Millisecond, "run", "--through", "verify")
	target := listDir(t, filepath.Join(dir, "target"))
	check := func(stage string) {
		for _, r := range recs {
			obj, ok := target[r.Key]
			if !ok {
				t.Fatalf("%s: record %q missing at the target", stage, r.Key)
			}
			b, err := os.ReadFile(filepath.Join(dir, "target", r.Key))
			if err != nil || !bytes.Equal(b, r.Bytes()) || obj.Size != r.Size {
				t.Fatalf("%s: record %q differs at the target", stage, r.Key)
			}
		}
	}
	check("after verify")
	for name, set := range sets {
		if n := len(listDir(t, filepath.Join(dir, "sites", name))); n != len(set) {
			t.Fatalf("a site lost replicas before any delete: %s has %d of %d", name, n, len(set))
		}
	}

	// Every stage under kills, then purge under kills.
	for _, stage := range []string{"canary", "backups", "primary"} {
		digest, _ := dryScope(t, bin, dir, stage)
		kills += killLoop(t, bin, dir, rng, 300*time.Millisecond, "delete", "--stage", stage, "--confirm", digest[:16])
		if stage != "primary" {
			kills += killLoop(t, bin, dir, rng, 100*time.Millisecond, "delete", "--stage", stage, "--purge")
		}
		// No replica is gone unless its record is intact at the target.
		check("after stage " + stage)
	}

	// Nothing verified was copied again: the target files are the very same files.
	for key, before := range target {
		now := listDir(t, filepath.Join(dir, "target"))[key]
		if !now.SameVersion(before) {
			t.Fatalf("%q was rewritten at the target after it was verified", key)
		}
	}
	for name := range sets {
		if left := listDir(t, filepath.Join(dir, "sites", name)); len(left) != 0 {
			t.Fatalf("site %s still holds %d replicas", name, len(left))
		}
	}
	var st struct {
		Records map[string]struct{ Count int64 } `json:"records"`
		Sites   map[string]map[string]struct {
			Count int64 `json:"count"`
		} `json:"sites"`
	}
	ferryJSON(t, bin, dir, &st, "status")
	if st.Records["verified"].Count != int64(len(recs)) {
		t.Fatalf("final state: %+v records, want %d verified", st.Records, len(recs))
	}
	for site, states := range st.Sites {
		for state, c := range states {
			if state != "deleted" && state != "purged" && c.Count > 0 {
				t.Fatalf("final state: %d replicas at %s are %s", c.Count, site, state)
			}
		}
	}
	t.Logf("survived %d kills (SIGKILL) across copy, verify, 3 stages and 2 purges of %d records", kills, len(recs))
	if kills == 0 {
		t.Fatal("no run was killed: the test proved nothing")
	}
}
