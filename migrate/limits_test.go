package migrate_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/synth"
	"github.com/ferrymigrate/ferry/providers/s3"
	"github.com/ferrymigrate/ferry/providers/s3/s3test"
)

// limitsSpec: %[1]s the site's bucket (reached through %[3]s, a proxy), %[2]s the
// target's (at %[4]s), %[5]s the region, %[6]s the credentials.
const limitsSpec = `migration: limits-test
sources:
  - name: virginia
    role: primary
    url: "s3://%[1]s/users/"
    endpoint: %[3]q
    path_style: true
    region: %[5]s
    credentials: %[6]s
    limits: {requests_per_second: 30, bytes_per_second: 10MiB}
target:
  url: "s3://%[2]s/users/"
  endpoint: %[4]q
  path_style: true
  region: %[5]s
  credentials: %[6]s
records:
  user: '^(?P<user>[^/]+)/'
copy:
  concurrency: 2
`

// exchanges keeps what the proxy in front of a site saw.
type exchanges struct {
	mu  sync.Mutex
	all []s3test.Exchange
}

func (e *exchanges) add(x s3test.Exchange) {
	e.mu.Lock()
	e.all = append(e.all, x)
	e.mu.Unlock()
}

// between counts the requests to bucket that reached the proxy in [from, to), and
// the bytes of their responses.
func (e *exchanges) between(bucket string, from, to time.Time) (reqs int, bytes int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range e.all {
		if x.Bucket == bucket && !x.At.Before(from) && x.At.Before(to) {
			reqs++
			bytes += x.ResponseBytes
		}
	}
	return reqs, bytes
}

type limitsStatus struct {
	Workers []struct {
		Phase string `json:"phase"`
		Alive bool   `json:"alive"`
	} `json:"workers"`
	Limits []migrate.StoreLimit `json:"limits"`
}

// stateJSON runs ferry --json on a state and returns its result.
func stateJSON[T any](t *testing.T, bin, dir, state string, args ...string) T {
	t.Helper()
	var v T
	ferryJSON(t, bin, dir, &v, append([]string{"--state", state}, args...)...)
	return v
}

func siteLimit(ls []migrate.StoreLimit, store string) (migrate.StoreLimit, bool) {
	for _, l := range ls {
		if l.Store == store {
			return l, true
		}
	}
	return migrate.StoreLimit{}, false
}

// A site capped at N requests/s, and then (changed on the running migration) at B
// bytes/s, stays within 10 % of its caps with three workers sharing one PostgreSQL
// state, counted by a proxy in front of the site.
func TestLimitsSharedByWorkers(t *testing.T) {
	srv := s3test.Shared(t, s3test.MinIO)
	proxy := srv.Proxy(t)
	var seen exchanges
	defer proxy.Observe(seen.add)()
	bin := buildFerry(t)

	dir := t.TempDir()
	va, target := srv.Bucket(t, false), srv.Bucket(t, false)
	creds := fmt.Sprintf("{access_key_env: %s, secret_key_env: %s}", srv.AccessKeyEnv, srv.SecretKeyEnv)
	spec := fmt.Sprintf(limitsSpec, va, target, proxy.URL, srv.Endpoint, s3test.Region, creds)
	if err := os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	recs := synth.Records(synth.Options{Users: 300, RecordsPerUser: 4, MinSize: 4 << 10, MaxSize: 4 << 10, Seed: 16})
	st, err := s3.New(t.Context(), srv.Config(va, "users/"))
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Populate(t.Context(), st, recs, 16); err != nil {
		t.Fatal(err)
	}
	st.Close()

	pg := pgStateDSN(t)
	t.Logf("%s: populated", time.Now().Format(time.TimeOnly))
	together(t, 1, bin, dir, pg, "plan")
	t.Logf("%s: planned", time.Now().Format(time.TimeOnly))

	args := []string{"copy", "--worker", "--range-size", "16"}
	var waits []func() procResult
	for range 3 {
		_, wait := ferryProc(t, bin, dir, pg, args...)
		waits = append(waits, wait)
	}
	var stopped bool
	finish := func() []procResult {
		if stopped {
			return nil
		}
		stopped = true
		// Lift the caps so that the rest of the copy does not take long.
		stateJSON[migrate.LimitsResult](t, bin, dir, pg, "limits", "set", "--site", "virginia", "--rps", "unlimited", "--bps", "unlimited")
		t.Logf("%s: caps lifted", time.Now().Format(time.TimeOnly))
		var out []procResult
		for i, w := range waits {
			p := w()
			if p.code != 0 {
				t.Errorf("worker %d exited %d:\n%s", i, p.code, lastLines(p.log, 20))
			}
			out = append(out, p)
		}
		return out
	}
	defer finish()

	// Every worker has joined: from the next interval on, each takes a third.
	deadline := time.Now().Add(time.Minute)
	for {
		s := stateJSON[limitsStatus](t, bin, dir, pg, "status")
		alive := 0
		for _, w := range s.Workers {
			if w.Phase == "copy" && w.Alive {
				alive++
			}
		}
		if alive == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("three copy workers never ran together: %+v", s.Workers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s: three workers", time.Now().Format(time.TimeOnly))
	settle := 2*migrate.DefaultLimitsInterval + time.Second
	const window = 6 * time.Second
	measure := func() (reqPerSec, bytesPerSec float64) {
		time.Sleep(settle)
		from := time.Now()
		time.Sleep(window)
		n, b := seen.between(va, from, from.Add(window))
		return float64(n) / window.Seconds(), float64(b) / window.Seconds()
	}
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 0.1*want {
			t.Errorf("%s: %.1f/s at the site, want %.0f/s ± 10 %%", what, got, want)
		} else {
			t.Logf("%s: %.1f/s at the site (cap %.0f/s)", what, got, want)
		}
	}

	rps, _ := measure()
	near("requests under the spec's cap of 30 req/s", rps, 30)
	s := stateJSON[limitsStatus](t, bin, dir, pg, "status")
	if l, ok := siteLimit(s.Limits, "virginia"); !ok || l.RequestsPerSecond != 30 || l.Source != "spec" || l.Processes != 3 || l.Waiting == 0 {
		t.Errorf("status while capped: %+v", s.Limits)
	}

	// The operator changes the cap on the running migration: bytes now, not requests.
	const bps = 96 << 10
	set := stateJSON[migrate.LimitsResult](t, bin, dir, pg, "limits", "set", "--site", "virginia", "--rps", "unlimited", "--bps", "96KiB")
	if l, ok := siteLimit(set.Limits, "virginia"); !ok || l.RequestsPerSecond != 0 || l.BytesPerSecond != bps || l.Source != "override" {
		t.Fatalf("limits set answered %+v", set.Limits)
	}
	_, bytesPerSec := measure()
	near("bytes under the changed cap of 96 KiB/s", bytesPerSec, bps)
	s = stateJSON[limitsStatus](t, bin, dir, pg, "status")
	l, ok := siteLimit(s.Limits, "virginia")
	if !ok || l.BytesPerSecond != bps || l.Source != "override" || l.WaitedSeconds <= 0 {
		t.Errorf("status after the change: %+v", s.Limits)
	}

	var copied int64
	for _, p := range finish() {
		copied += result[struct {
			Copied int64 `json:"copied"`
		}](t, p).Copied
		// The log names the limit while ferry waits on it.
		if !strings.Contains(p.log, `"waiting on a limit"`) || !strings.Contains(p.log, "virginia limit 30 req/s (1/3 each)") {
			t.Errorf("no log line names the limit waited on:\n%s", lastLines(p.log, 10))
		}
	}
	t.Logf("%s: copied", time.Now().Format(time.TimeOnly))
	if copied != int64(len(recs)) {
		t.Errorf("the workers copied %d records, want %d", copied, len(recs))
	}
	// Once every process has finished, status still says how long they waited.
	s = stateJSON[limitsStatus](t, bin, dir, pg, "status")
	if l, ok := siteLimit(s.Limits, "virginia"); !ok || l.WaitedSeconds < 2*window.Seconds() || l.Processes != 0 {
		t.Errorf("status after the run: %+v", s.Limits)
	}
}
