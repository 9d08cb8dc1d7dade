package migrate_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers/file"
)

// diskSetup writes a spec and a file site of small records (so the target's files
// stay far below any size limit the tests put on the state).
func diskSetup(t *testing.T, users int) (string, []synth.Record) {
	t.Helper()
	dir := t.TempDir()
	spec := strings.Replace(crashSpec, "  - {name: singapore, role: backup, url: file://./sites/singapore}\n  - {name: archive, role: backup, url: file://./sites/archive}\n", "", 1)
	spec = strings.Replace(spec, "    - {name: canary, sites: [singapore], sample: 20%}\n    - {name: backups, sites: [singapore, archive]}\n", "", 1)
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	recs := synth.Records(synth.Options{Users: users, RecordsPerUser: 5, MinSize: 64, MaxSize: 2048, Seed: 10})
	d := filepath.Join(dir, "sites", "virginia")
	os.MkdirAll(d, 0o755)
	s, err := file.New(d, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Populate(context.Background(), s, recs, 8); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "target"), 0o755)
	return dir, recs
}

// ferryLimited runs ferry with every file it writes limited to limit bytes
// (RLIMIT_FSIZE: a write past it fails with EFBIG, as on a full disk).
func ferryLimited(t *testing.T, bin, dir string, limit int64, args ...string) (int, string) {
	t.Helper()
	all := append([]string{os.Args[0], "-test.run=^$", "--", bin, "-c", filepath.Join(dir, "ferry.yaml"), "--no-progress"}, args...)
	cmd := exec.Command(all[0], all[1:]...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("FERRY_TEST_FSIZE_EXEC=%d", limit))
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatal(err)
	}
	return 0, string(out)
}

func integrityOK(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("state %s: integrity_check %q, %v", path, res, err)
	}
}

// refusedClearly checks a run failed at the state: exit 1 with a message that says
// so, never "interrupted, state saved".
func failedAtState(t *testing.T, what string, code int, out, says string) {
	t.Helper()
	if code != 1 || !strings.Contains(out, "state") || !strings.Contains(out, says) || strings.Contains(out, "state saved") {
		t.Fatalf("%s: exit %d, want 1 with a clear error naming the state (%q):\n%s", what, code, says, out)
	}
}

// siteIntact is the oracle: a replica has left the site only if its record is at the
// target with exactly its bytes.
func siteIntact(t *testing.T, dir string, recs []synth.Record, when string) (left int) {
	t.Helper()
	site := listDir(t, filepath.Join(dir, "sites", "virginia"))
	for _, r := range recs {
		if _, ok := site[r.Key]; ok {
			left++
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "target", r.Key))
		if err != nil || !bytes.Equal(b, r.Bytes()) {
			t.Fatalf("%s: %q left the site without an intact target copy", when, r.Key)
		}
	}
	return left
}

// Scenario 10, disk full: every phase run with the state's files limited to 64 KiB
// (RLIMIT_FSIZE on the ferry process: writes past it fail with EFBIG, as on a full
// disk; no privileges needed) fails with exit 1 and an error that names the state and
// the cause, deletes nothing it has not recorded, and once the space is back every
// rerun converges: all records verified and at the target, the state intact.
func TestStateDiskFull(t *testing.T) {
	bin := buildFerry(t)
	dir, recs := diskSetup(t, 60)
	const limit = 64 << 10
	run := func(args ...string) {
		t.Helper()
		if code, out := ferryLimited(t, bin, dir, 1<<40, args...); code != 0 {
			t.Fatalf("%v with space: exit %d\n%s", args, code, out)
		}
	}
	code, out := ferryLimited(t, bin, dir, limit, "plan")
	failedAtState(t, "plan", code, out, filepath.Join(dir, "ferry.db"))
	run("plan")
	for _, phase := range []string{"copy", "verify"} {
		code, out := ferryLimited(t, bin, dir, limit, phase)
		failedAtState(t, phase, code, out, "disk full")
		if left := siteIntact(t, dir, recs, phase); left != len(recs) {
			t.Fatalf("%d replicas gone before any delete", len(recs)-left)
		}
		run(phase)
	}
	var d struct {
		Scope struct {
			Digest string `json:"digest"`
		} `json:"scope"`
	}
	ferryJSON(t, bin, dir, &d, "delete", "--stage", "primary", "--dry-run")
	del := []string{"delete", "--stage", "primary", "--confirm", d.Scope.Digest[:16]}
	code, out = ferryLimited(t, bin, dir, limit, del...)
	failedAtState(t, "delete", code, out, "disk full")
	// The intents could not be made durable: no delete call was made (I4).
	if left := siteIntact(t, dir, recs, "delete on a full disk"); left != len(recs) {
		t.Fatalf("I4 broken: %d replicas deleted although their intents could not be recorded", len(recs)-left)
	}
	run(del...)
	if left := siteIntact(t, dir, recs, "delete"); left != 0 {
		t.Fatalf("%d replicas left after the stage", left)
	}
	integrityOK(t, filepath.Join(dir, "ferry.db"))
	var st struct {
		Records map[string]struct{ Count int64 } `json:"records"`
	}
	ferryJSON(t, bin, dir, &st, "status")
	if st.Records["verified"].Count != int64(len(recs)) {
		t.Fatalf("final state: %+v, want %d verified", st.Records, len(recs))
	}
}

// Scenario 10, read-only and full for real: as root, the state lives on its own
// small tmpfs, which fills up (ENOSPC), is given space, then is remounted read-only
// and back; unprivileged, the state's folder and files are made read-only (mode
// 0555/0444) instead. Each failure is exit 1 with a clear error naming the state; the
// state is consistent and every rerun converges once the disk is writable again.
func TestStateReadOnly(t *testing.T) {
	bin := buildFerry(t)
	dir, recs := diskSetup(t, 60)
	statedir := filepath.Join(dir, "statefs")
	os.MkdirAll(statedir, 0o755)
	state := filepath.Join(statedir, "ferry.db")
	root := os.Geteuid() == 0
	mount := func(opts string) {
		t.Helper()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", statedir).CombinedOutput(); err != nil {
			t.Fatalf("mount %s: %v %s", opts, err, out)
		}
	}
	if root {
		mount("size=160k")
		t.Cleanup(func() { exec.Command("umount", statedir).Run() })
	}
	ferry := func(args ...string) (int, string) {
		return ferryLimited(t, bin, dir, 1<<40, append([]string{"--state", state}, args...)...)
	}
	if root {
		// The disk fills up during the plan (ENOSPC), then gets space.
		code, out := ferry("plan")
		failedAtState(t, "plan on a full tmpfs", code, out, "full")
		mount("remount,size=16m")
	}
	for _, phase := range []string{"plan", "copy"} {
		if code, out := ferry(phase); code != 0 {
			t.Fatalf("%s: exit %d\n%s", phase, code, out)
		}
	}
	readOnly := func(ro bool) {
		t.Helper()
		if root {
			if ro {
				mount("remount,ro")
			} else {
				mount("remount,rw")
			}
			return
		}
		mode, fmode := os.FileMode(0o755), os.FileMode(0o644)
		if ro {
			mode, fmode = 0o555, 0o444
		}
		entries, _ := os.ReadDir(statedir)
		for _, e := range entries {
			os.Chmod(filepath.Join(statedir, e.Name()), fmode)
		}
		os.Chmod(statedir, mode)
	}
	before, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	readOnly(true)
	code, out := ferry("verify")
	failedAtState(t, "verify on a read-only disk", code, out, "not writable")
	if after, _ := os.ReadFile(state); !bytes.Equal(before, after) {
		t.Fatal("the read-only state changed")
	}
	code, out = ferry("delete", "--stage", "primary", "--confirm", "deadbeefdeadbeef")
	failedAtState(t, "delete on a read-only disk", code, out, "not writable")
	if left := siteIntact(t, dir, recs, "read-only"); left != len(recs) {
		t.Fatalf("%d replicas deleted with a read-only state", len(recs)-left)
	}
	readOnly(false)
	if code, out := ferry("verify"); code != 0 {
		t.Fatalf("verify once writable: exit %d\n%s", code, out)
	}
	integrityOK(t, state)
}
