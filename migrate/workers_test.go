package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/storetest"
	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// Many ferry processes, one migration: real processes of the real binary against one
// PostgreSQL state and MinIO sites, each phase worked by three workers at once.

const workersSpec = `migration: workers-test
sources:
  - {name: virginia, role: primary, url: "s3://%[1]s/users/", %[4]s}
  - {name: singapore, role: backup, url: "s3://%[2]s/users/", %[4]s}
target:
  url: "s3://%[3]s/users/"
  endpoint: %[5]q
  path_style: true
  region: us-east-1
  credentials: {access_key_env: %[6]s, secret_key_env: %[7]s}
records:
  user: '^(?P<user>[^/]+)/'
copy:
  concurrency: 4
  retries: 5
delete:
  mode: hard
  stages:
    - {name: backups, sites: [singapore]}
    - {name: primary, sites: [virginia]}
`

// pgStateDSN is a PostgreSQL state in a schema of its own, dropped after the test.
func pgStateDSN(t *testing.T) string { return storetest.PostgresState(t, "ferry_workers_") }

// workersSetup writes the spec for three fresh MinIO buckets (the target versioned, so
// that every PUT leaves a version to count) and fills the sites.
func workersSetup(t *testing.T, srv *s3test.Server, recs []synth.Record) (dir, target string) {
	t.Helper()
	dir = t.TempDir()
	va, sg, target := srv.Bucket(t, false), srv.Bucket(t, false), srv.Bucket(t, true)
	conn := fmt.Sprintf("endpoint: %q, path_style: true, region: %s, credentials: {access_key_env: %s, secret_key_env: %s}",
		srv.Endpoint, s3test.Region, srv.AccessKeyEnv, srv.SecretKeyEnv)
	spec := fmt.Sprintf(workersSpec, va, sg, target, conn, srv.Endpoint, srv.AccessKeyEnv, srv.SecretKeyEnv)
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	for bucket, set := range map[string][]synth.Record{va: recs, sg: synth.Subset(recs, 0.7, 3)} {
		cfg := srv.Config(bucket, "users/")
		st, err := s3.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := synth.Populate(context.Background(), st, set, 16); err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	return dir, target
}

type procResult struct {
	code int
	out  string // stdout: the --json document
	log  string // stderr: JSON log lines
}

// ferryProc starts the binary; wait returns its outcome.
func ferryProc(t *testing.T, bin, dir, state string, args ...string) (*exec.Cmd, func() procResult) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-c", filepath.Join(dir, "ferry.yaml"), "--state", state, "--json", "--log-format", "json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, func() procResult {
		// A worker that hangs is a failure with its goroutines on record, not a
		// test binary killed at its deadline.
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(3 * time.Minute):
				_ = cmd.Process.Signal(syscall.SIGQUIT)
			}
		}()
		err := cmd.Wait()
		close(done)
		if strings.Contains(stderr.String(), "goroutine ") && strings.Contains(stderr.String(), "SIGQUIT") {
			t.Errorf("%v hung; its goroutines:\n%s", args, stderr.String())
		}
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = -int(ws.Signal())
			}
		} else if err != nil {
			t.Fatal(err)
		}
		return procResult{code: code, out: stdout.String(), log: stderr.String()}
	}
}

// together runs n copies of one command at once and fails unless each exits 0.
func together(t *testing.T, n int, bin, dir, state string, args ...string) []procResult {
	t.Helper()
	waits := make([]func() procResult, n)
	for i := range waits {
		_, waits[i] = ferryProc(t, bin, dir, state, args...)
	}
	out := make([]procResult, n)
	for i, w := range waits {
		out[i] = w()
		if out[i].code != 0 {
			t.Fatalf("worker %d of %v exited %d:\n%s\n%s", i, args, out[i].code, out[i].out, lastLines(out[i].log, 20))
		}
	}
	return out
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func result[T any](t *testing.T, p procResult) T {
	t.Helper()
	var env struct {
		Result T `json:"result"`
	}
	if err := json.Unmarshal([]byte(p.out), &env); err != nil {
		t.Fatalf("--json output: %v\n%s", err, p.out)
	}
	return env.Result
}

// targetVersions counts the versions each key has in the (versioned) target bucket:
// one per PUT ferry made.
func targetVersions(t *testing.T, srv *s3test.Server, bucket string) map[string]int {
	t.Helper()
	out := map[string]int{}
	p := awss3.NewListObjectVersionsPaginator(srv.Client(), &awss3.ListObjectVersionsInput{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Versions {
			out[strings.TrimPrefix(aws.ToString(v.Key), "users/")]++
		}
	}
	return out
}

// comparable is what two runs of the same migration must agree on, record by record.
type comparable struct {
	Key, State, SHA256, CRC32C, Source string
	Size                               int64
	Replicas                           []string
}

func stateDump(t *testing.T, dsn string) map[string]comparable {
	t.Helper()
	st, err := checkpoints.Open(context.Background(), dsn, checkpoints.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[string]comparable{}
	err = st.Records(context.Background(), checkpoints.Query{}, func(r checkpoints.Record) error {
		c := comparable{Key: r.Key, State: string(r.State), SHA256: r.SHA256, CRC32C: r.CRC32C, Source: r.Source, Size: r.Size}
		for _, p := range r.Replicas {
			c.Replicas = append(c.Replicas, fmt.Sprintf("%s:%s:%s:%s:%v", p.Site, p.State, p.Stage, p.SHA256, p.ConfirmedAbsent))
		}
		out[r.Key] = c
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWorkersThreeProcesses(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	bin := buildFerry(t)
	recs := synth.Records(synth.Options{Users: 400, RecordsPerUser: 5, Tricky: true, Seed: 8})
	if len(recs) < 1500 {
		t.Fatalf("only %d records", len(recs))
	}

	// Three workers per phase on PostgreSQL.
	dir, target := workersSetup(t, srv, recs)
	pg := pgStateDSN(t)
	var digests []string
	for _, p := range together(t, 3, bin, dir, pg, "plan", "--worker", "--range-size", "64") {
		digests = append(digests, result[struct {
			Digest string `json:"plan_digest"`
		}](t, p).Digest)
	}
	// (The digest covers the spec, which names other buckets than the one-process
	// run's below: the workers must agree with each other, and the states must match.)
	for i, d := range digests {
		if d == "" || d != digests[0] {
			t.Fatalf("plan workers report digests %q (worker %d differs)", digests, i)
		}
	}
	copies := together(t, 3, bin, dir, pg, "copy", "--worker", "--range-size", "64")
	var copied int64
	for i, p := range copies {
		r := result[struct {
			Copied int64 `json:"copied"`
		}](t, p)
		if r.Copied == 0 {
			t.Errorf("copy worker %d copied nothing: the work was not shared", i)
		}
		copied += r.Copied
	}
	if copied != int64(len(recs)) {
		t.Errorf("the workers copied %d records in all, want %d", copied, len(recs))
	}
	together(t, 3, bin, dir, pg, "verify", "--worker", "--range-size", "64")
	for key, n := range targetVersions(t, srv, target) {
		// ferry's own marker is not a record: workers starting together may each
		// find it missing and write it (the same bytes), one version each.
		if n != 1 && !strings.HasPrefix(key, migrate.MarkerDir) {
			t.Errorf("record %q was written to the target %d times", key, n)
		}
	}
	deleted := map[string]int64{}
	for _, stage := range []string{"backups", "primary"} {
		d := result[struct {
			Scope struct {
				Digest   string `json:"digest"`
				Replicas int64  `json:"replicas"`
			} `json:"scope"`
		}](t, together(t, 1, bin, dir, pg, "delete", "--stage", stage, "--dry-run")[0])
		for _, p := range together(t, 3, bin, dir, pg, "delete", "--worker", "--range-size", "64", "--stage", stage, "--confirm", d.Scope.Digest[:16]) {
			r := result[struct {
				Deleted int64 `json:"deleted"`
			}](t, p)
			deleted[stage] += r.Deleted
		}
		// No replica deleted twice: a second delete of one replica would count twice
		// (or find it gone and record an anomaly, checked below).
		if deleted[stage] != d.Scope.Replicas {
			t.Errorf("stage %s: the workers deleted %d replicas in all, the scope holds %d", stage, deleted[stage], d.Scope.Replicas)
		}
	}
	st := result[struct {
		Workers []struct {
			ID      string `json:"id"`
			Phase   string `json:"phase"`
			Ranges  int64  `json:"ranges"`
			Records int64  `json:"records"`
			Left    bool   `json:"left"`
		} `json:"workers"`
	}](t, together(t, 1, bin, dir, pg, "status")[0])
	if len(st.Workers) != 15 {
		t.Errorf("status lists %d workers, want 15 (3 per phase)", len(st.Workers))
	}
	for _, w := range st.Workers {
		if !w.Left || w.ID == "" || w.Phase == "" {
			t.Errorf("worker %+v: want a finished worker with id and phase", w)
		}
	}

	// The same migration in one process on SQLite ends in the same state.
	dir1, _ := workersSetup(t, srv, recs)
	one := filepath.Join(dir1, "state.db")
	together(t, 1, bin, dir1, one, "plan")
	together(t, 1, bin, dir1, one, "copy")
	together(t, 1, bin, dir1, one, "verify")
	for _, stage := range []string{"backups", "primary"} {
		d := result[struct {
			Scope struct {
				Digest string `json:"digest"`
			} `json:"scope"`
		}](t, together(t, 1, bin, dir1, one, "delete", "--stage", stage, "--dry-run")[0])
		together(t, 1, bin, dir1, one, "delete", "--stage", stage, "--confirm", d.Scope.Digest[:16])
	}
	many, single := stateDump(t, pg), stateDump(t, one)
	if len(many) != len(recs) || len(single) != len(recs) {
		t.Fatalf("records: %d with three workers, %d in one process, want %d", len(many), len(single), len(recs))
	}
	for key, want := range single {
		if got := many[key]; !reflect.DeepEqual(got, want) {
			t.Errorf("record %q differs:\nthree workers %+v\none process   %+v", key, got, want)
		}
	}
}

// One worker is killed mid-range and another paused past its lease: the others finish
// their ranges, and the paused worker's late results are rejected.
func TestWorkersKillAndPause(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	bin := buildFerry(t)
	recs := synth.Records(synth.Options{Users: 500, RecordsPerUser: 5, Seed: 9})
	dir, target := workersSetup(t, srv, recs)
	pg := pgStateDSN(t)
	together(t, 1, bin, dir, pg, "plan")

	args := []string{"copy", "--worker", "--range-size", "32", "--lease", "3s", "-v"}
	killed, waitKilled := ferryProc(t, bin, dir, pg, args...)
	paused, waitPaused := ferryProc(t, bin, dir, pg, args...)
	_, waitSteady := ferryProc(t, bin, dir, pg, args...)
	// claims reports how many ranges the worker with pid holds, as status shows it.
	var lastStatus string // for the failure message
	claims := func(pid int) (int64, bool) {
		var st struct {
			Workers []struct {
				PID    int   `json:"pid"`
				Claims int64 `json:"claims"`
			} `json:"workers"`
		}
		cmd := exec.Command(bin, "-c", filepath.Join(dir, "ferry.yaml"), "--state", pg, "--json", "status")
		out, err := cmd.Output()
		lastStatus = fmt.Sprintf("%s(%v)", out, err)
		if err != nil {
			return 0, false
		}
		var env struct {
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(out, &env) != nil || json.Unmarshal(env.Result, &st) != nil {
			return 0, false
		}
		for _, w := range st.Workers {
			if w.PID == pid {
				return w.Claims, true
			}
		}
		return 0, false
	}
	// await polls until cond holds for the worker with pid.
	await := func(what string, pid int, cond func(int64) bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			if n, ok := claims(pid); ok && cond(n) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("worker pid %d: %s never happened; the last status:\n%s", pid, what, lastStatus)
	}
	held := func(n int64) bool { return n > 0 }
	await("holding a range", killed.Process.Pid, held)
	await("holding a range", paused.Process.Pid, held)
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Stop the worker while it holds a range: it may finish one between the look
	// and the signal, so look again once it is stopped, and retry until it was.
	for attempt := 1; ; attempt++ {
		if err := paused.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		if n, ok := claims(paused.Process.Pid); ok && n > 0 {
			break
		}
		if attempt == 50 {
			t.Fatalf("worker pid %d was never stopped while it held a range; the last status:\n%s", paused.Process.Pid, lastStatus)
		}
		if err := paused.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		await("holding a range", paused.Process.Pid, held)
	}
	// Paused past its lease until another worker has taken its range over (a worker
	// that is stopped cannot give it back).
	await("losing its range while paused", paused.Process.Pid, func(n int64) bool { return n == 0 })
	if err := paused.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	k, p, s := waitKilled(), waitPaused(), waitSteady()
	if k.code != -int(syscall.SIGKILL) {
		t.Fatalf("the killed worker exited %d", k.code)
	}
	if s.code != 0 {
		t.Fatalf("the steady worker exited %d:\n%s", s.code, lastLines(s.log, 20))
	}
	if p.code != 0 {
		t.Fatalf("the paused worker exited %d:\n%s", p.code, lastLines(p.log, 20))
	}
	if !strings.Contains(s.log, "taking over a range whose lease ran out") {
		t.Errorf("the steady worker never took over a range:\n%s", lastLines(s.log, 20))
	}
	if !strings.Contains(p.log, "range lost to another worker") && !strings.Contains(p.log, "range taken over by another worker") {
		t.Errorf("the paused worker's late results were not rejected:\n%s", lastLines(p.log, 30))
	}

	// Everything is copied, exactly as the plan says; a second run finds nothing to do.
	together(t, 1, bin, dir, pg, "verify")
	dump := stateDump(t, pg)
	for _, r := range recs {
		c, ok := dump[r.Key]
		if !ok || c.State != string(checkpoints.Verified) || c.Size != r.Size {
			t.Fatalf("record %q: %+v after the workers finished", r.Key, c)
		}
	}
	versions := targetVersions(t, srv, target)
	var rewritten int
	for _, r := range recs {
		switch n := versions[r.Key]; {
		case n == 0:
			t.Fatalf("record %q is not at the target", r.Key)
		case n > 1:
			rewritten++ // a range redone after a takeover: idempotent, the same bytes
		}
	}
	t.Logf("%d records, %d written twice by a range redone after a takeover", len(recs), rewritten)
}
