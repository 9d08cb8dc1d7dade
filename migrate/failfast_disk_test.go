package migrate_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers/file"
)

// A full disk at a file target (every file ferry writes limited to 192 KiB by
// RLIMIT_FSIZE, records of 256 KiB and more, the state far below the limit): copy
// stops at the first write that fails with one message naming the target, exit 1,
// without retrying or failing a single record (issue 16 item 5). With space back
// the same copy completes.
func TestFailFastTargetDiskFull(t *testing.T) {
	bin := buildFerry(t)
	dir := t.TempDir()
	spec := strings.Replace(crashSpec, "  - {name: singapore, role: backup, url: file://./sites/singapore}\n  - {name: archive, role: backup, url: file://./sites/archive}\n", "", 1)
	spec = strings.Replace(spec, "    - {name: canary, sites: [singapore], sample: 20%}\n    - {name: backups, sites: [singapore, archive]}\n", "", 1)
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	recs := synth.Records(synth.Options{Users: 8, RecordsPerUser: 4, MinSize: 256 << 10, MaxSize: 300 << 10, Seed: 11})
	site := filepath.Join(dir, "sites", "virginia")
	os.MkdirAll(site, 0o755)
	s, err := file.New(site, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Populate(context.Background(), s, recs, 4); err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.MkdirAll(filepath.Join(dir, "target"), 0o755)
	if code, out := ferryLimited(t, bin, dir, 1<<40, "plan"); code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, out)
	}

	code, out := ferryLimited(t, bin, dir, 192<<10, "-v", "copy")
	if code != 1 {
		t.Fatalf("copy on a full disk: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"target: no space left", "file://./target", "copy stopped at the first such error"} {
		if !strings.Contains(out, want) {
			t.Errorf("copy on a full disk does not say %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "copy attempt failed") + strings.Count(out, "copy failed"); n != 0 {
		t.Errorf("%d per-record retries or failures logged, want none:\n%s", n, out)
	}
	var st struct {
		Records map[string]struct {
			N int64 `json:"count"`
		} `json:"records"`
	}
	ferryJSON(t, bin, dir, &st, "status")
	if st.Records["failed"].N != 0 || st.Records["planned"].N != int64(len(recs)) {
		t.Errorf("after the stop: %+v, want all %d records still planned, none failed", st.Records, len(recs))
	}
	if code, out := ferryLimited(t, bin, dir, 1<<40, "copy"); code != 0 {
		t.Fatalf("copy with space: exit %d\n%s", code, out)
	}
}
