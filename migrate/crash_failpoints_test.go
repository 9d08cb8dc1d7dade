package migrate_test

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	"github.com/ferrymigrate/ferry/migrate/synth"

	_ "github.com/ncruces/go-sqlite3/driver"
)

// runFerry runs the real binary once with env added and reports whether it died of
// SIGKILL. Any other failure (a non-zero exit code not in ok) fails the test.
func runFerry(t *testing.T, bin, dir string, env []string, ok []int, args ...string) (killed bool, out string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-c", filepath.Join(dir, "ferry.yaml"), "--no-progress", "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err == nil {
		return false, buf.String()
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%v: %v", args, err)
	}
	if ws := ee.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		return true, buf.String()
	}
	for _, c := range ok {
		if ee.ExitCode() == c {
			return false, buf.String()
		}
	}
	t.Fatalf("%v %v: %v\n%s", env, args, err, buf.String())
	return false, ""
}

// crashOracle checks, by reading the folders directly, that no replica has left its
// site unless its record is at the target with exactly the right bytes.
func crashOracle(t *testing.T, dir string, recs []synth.Record, sets map[string][]synth.Record, when string) {
	t.Helper()
	byKey := map[string]synth.Record{}
	for _, r := range recs {
		byKey[r.Key] = r
	}
	target := listDir(t, filepath.Join(dir, "target"))
	for site, set := range sets {
		left := listDir(t, filepath.Join(dir, "sites", site))
		for _, r := range set {
			if _, ok := left[r.Key]; ok {
				continue
			}
			obj, ok := target[r.Key]
			if !ok {
				t.Fatalf("%s: %q left %s but is not at the target (data lost)", when, r.Key, site)
			}
			b, err := os.ReadFile(filepath.Join(dir, "target", r.Key))
			if err != nil || obj.Size != r.Size || !bytes.Equal(b, byKey[r.Key].Bytes()) {
				t.Fatalf("%s: %q left %s but its target copy differs", when, r.Key, site)
			}
		}
	}
}

// TestCrashAtFailpoints kills a real ferry (SIGKILL, from inside, via FERRY_FAILPOINT)
// at every named dangerous point, several times each at random hits, and at random
// moments from outside, across 300 records: after a target PUT before its state is
// written, after verify before the verified state is durable, after the delete
// intents before the delete calls, after a delete call before its outcome is
// recorded, and in the middle of the report. After every kill an oracle reads the
// sites and the target directly; every rerun must converge (I4, I5).
func TestCrashAtFailpoints(t *testing.T) {
	bin := buildFerry(t)
	dir, recs, sets := crashSetup(t, 60)
	if _, _, _, err := certificate.GenerateKeyPair(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "ferry.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "report:\n  signing_key: keys/ferry.key\n  signer: Crash Test\n")
	f.Close()
	start := time.Now()
	defer func() { t.Logf("took %s", time.Since(start)) }()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 6))
	t.Logf("seed %d", seed)
	kills := 0
	fired := map[string]int{}
	// fail runs args with one failpoint armed at a random hit in [1, upto].
	fail := func(name string, upto int, ok []int, args ...string) {
		t.Helper()
		fp := fmt.Sprintf("%s@%d", name, 1+rng.IntN(upto))
		killed, out := runFerry(t, bin, dir, []string{"FERRY_FAILPOINT=" + fp}, ok, args...)
		if killed {
			kills++
			fired[name]++
		} else {
			t.Logf("%s not reached: %s", fp, lastLine(out))
		}
		crashOracle(t, dir, recs, sets, "after "+fp)
		t.Logf("%s %v killed=%v at %s", fp, args[:2], killed, time.Since(start).Round(time.Millisecond))
	}

	// Plan, copy and verify: killed at the named points, then at random times.
	for range 5 {
		fail("copy-after-put", 120, nil, "run", "--through", "verify")
	}
	for range 5 {
		fail("verify-after-check", len(recs), nil, "run", "--through", "verify")
	}
	kills += killLoop(t, bin, dir, rng, 300*time.Millisecond, "run", "--through", "verify")
	crashOracle(t, dir, recs, sets, "after verify")
	target := listDir(t, filepath.Join(dir, "target"))
	if len(target) != len(recs) {
		t.Fatalf("target holds %d of %d records after verify", len(target), len(recs))
	}

	// A report killed half-way leaves no certificate behind (files are renamed into
	// place only when whole).
	report := filepath.Join(dir, "report")
	fail("report-mid", len(recs), []int{3}, "report", "--out", report)
	if _, err := os.Stat(filepath.Join(report, "certificate.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a report killed half-way left a certificate: %v", err)
	}

	for _, stage := range []string{"canary", "backups", "primary"} {
		digest, replicas := dryScope(t, bin, dir, stage)
		args := []string{"delete", "--stage", stage, "--confirm", digest[:16]}
		fail("delete-after-intent", 1, nil, args...)
		for range 3 {
			fail("delete-after-call", int(replicas/2), nil, args...)
		}
		kills += killLoop(t, bin, dir, rng, 200*time.Millisecond, args...)
		crashOracle(t, dir, recs, sets, "after stage "+stage)
		if stage != "primary" {
			kills += killLoop(t, bin, dir, rng, 100*time.Millisecond, "delete", "--stage", stage, "--purge")
		}
	}

	// Nothing verified was copied again: the target files are the very same files.
	now := listDir(t, filepath.Join(dir, "target"))
	for key, before := range target {
		if !now[key].SameVersion(before) {
			t.Fatalf("%q was rewritten at the target after it was verified", key)
		}
	}
	for name := range sets {
		if left := listDir(t, filepath.Join(dir, "sites", name)); len(left) != 0 {
			t.Fatalf("site %s still holds %d replicas", name, len(left))
		}
	}

	// A certificate written whole, then a report killed half-way: the certificate in
	// place still verifies against its manifest, and the rerun's does too.
	if killed, out := runFerry(t, bin, dir, nil, nil, "report", "--out", report); killed {
		t.Fatalf("report killed without a failpoint: %s", out)
	}
	verifyCert(t, report)
	fail("report-mid", len(recs), nil, "report", "--out", report)
	verifyCert(t, report)
	if killed, out := runFerry(t, bin, dir, nil, nil, "report", "--out", report); killed {
		t.Fatalf("report killed without a failpoint: %s", out)
	}
	verifyCert(t, report)

	for _, name := range migrate.Failpoints {
		if fired[name] == 0 {
			t.Errorf("failpoint %s never killed ferry", name)
		}
	}
	t.Logf("survived %d kills (SIGKILL) of %d records; at named failpoints: %v", kills, len(recs), fired)
	if kills == 0 {
		t.Fatal("no run was killed: the test proved nothing")
	}
}

func verifyCert(t *testing.T, dir string) {
	t.Helper()
	env, err := certificate.ReadEnvelope(filepath.Join(dir, "certificate.json"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if r, err := certificate.VerifyCertificate(env, f, nil); err != nil || !r.OK() {
		t.Fatalf("certificate in %s does not verify against its manifest: %v", dir, err)
	}
}

func lastLine(s string) string {
	s = string(bytes.TrimSpace([]byte(s)))
	if i := bytes.LastIndexByte([]byte(s), '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Scenario 9, end to end with the real binary: a ferry killed mid-copy leaves its lock
// behind. Held by a process of another host (as with a shared state), it refuses
// every phase (exit 5, naming the holder) while its lease runs and is taken over once
// the lease has expired; held by a dead process of this host, it is taken over at once.
func TestLockOfKilledFerry(t *testing.T) {
	bin := buildFerry(t)
	dir, recs, _ := crashSetup(t, 4)
	if killed, out := runFerry(t, bin, dir, nil, nil, "plan"); killed {
		t.Fatal(out)
	}
	killed, _ := runFerry(t, bin, dir, []string{"FERRY_FAILPOINT=copy-after-put@1"}, nil, "copy")
	if !killed {
		t.Fatal("copy was not killed at its first target write")
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var host string
	var pid int
	if err := db.QueryRow("SELECT host, pid FROM lock WHERE id = 1").Scan(&host, &pid); err != nil {
		t.Fatalf("the killed copy left no lock: %v", err)
	}
	setLock := func(host string, till time.Time) {
		t.Helper()
		if _, err := db.Exec("UPDATE lock SET host = ?, lease_until = ? WHERE id = 1", host, till.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(args ...string) {
		t.Helper()
		_, out := runFerry(t, bin, dir, nil, []int{5}, args...)
		if !strings.Contains(out, "another ferry holds this migration") || !strings.Contains(out, "other-host.invalid") {
			t.Fatalf("%v while another host's lease runs: %s", args, out)
		}
	}

	// Another host's killed ferry: refused while its lease runs.
	copied := listDir(t, filepath.Join(dir, "target"))
	setLock("other-host.invalid", time.Now().Add(time.Hour))
	refused("copy")
	refused("verify")
	refused("delete", "--stage", "canary", "--confirm", "deadbeefdeadbeef")
	if n := len(listDir(t, filepath.Join(dir, "target"))); n != len(copied) {
		t.Fatalf("%d records copied while the lock was held elsewhere", n-len(copied))
	}
	// Its lease expired: taken over.
	setLock("other-host.invalid", time.Now().Add(-time.Second))
	if killed, out := runFerry(t, bin, dir, nil, nil, "copy"); killed {
		t.Fatal(out)
	}
	if n := len(listDir(t, filepath.Join(dir, "target"))); n != len(recs) {
		t.Fatalf("target holds %d of %d records after the takeover", n, len(recs))
	}

	// A dead ferry of this host with an hour of lease left: taken over at once.
	if killed, _ := runFerry(t, bin, dir, []string{"FERRY_FAILPOINT=verify-after-check@1"}, nil, "verify"); !killed {
		t.Fatal("verify was not killed")
	}
	hostname, _ := os.Hostname()
	setLock(hostname, time.Now().Add(time.Hour))
	if killed, out := runFerry(t, bin, dir, nil, nil, "verify"); killed {
		t.Fatal(out)
	}
}
