package migrate

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers/limit"
)

const limitsYAML = `migration: test-migration
sources:
  - name: virginia
    role: primary
    url: file://./stores/virginia
    limits:
      requests_per_second: 10
      bytes_per_second: 1MiB
      schedule:
        - {days: mon-fri, hours: "08:00-20:00", zone: UTC, requests_per_second: 50}
  - {name: singapore, role: backup, url: file://./stores/singapore}
target:
  url: file://./stores/target
  limits: {bytes_per_second: 8MiB}
records:
  user: '^(?P<user>[^/]+)/'
`

// noter records what progress was told about limits.
type noter struct {
	nopTracker
	mu    sync.Mutex
	descs []string
}

func (n *noter) LimitWait(desc string) {
	n.mu.Lock()
	n.descs = append(n.descs, desc)
	n.mu.Unlock()
}

func (n *noter) last() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.descs) == 0 {
		return "(none)"
	}
	return n.descs[len(n.descs)-1]
}

func rateOf(t *testing.T, m *Migration, store string) limit.Rate {
	t.Helper()
	s := m.Target
	if store != "target" {
		s = m.Sites[store]
	}
	l, ok := limit.LimiterOf(s)
	if !ok {
		t.Fatalf("%s has no limiter", store)
	}
	return l.Rate()
}

// The caps in force follow the schedule (by the migration's clock), an operator's
// override and its removal, and the number of live workers sharing them.
func TestLimitsInForce(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, storeKinds[0], limitsYAML) // Monday 2026-06-01 12:00 UTC
	m := h.open()
	check := func(what, store string, rps, bps float64) {
		t.Helper()
		m.limiter.refresh(ctx)
		if got := rateOf(t, m, store); got.RequestsPerSecond != rps || got.BytesPerSecond != bps {
			t.Errorf("%s: %s is capped at %+v, want %v req/s, %v B/s", what, store, got, rps, bps)
		}
	}
	check("inside the window", "virginia", 50, 1<<20)
	check("no limits", "singapore", 0, 0)
	check("the target", "target", 0, 8<<20)
	h.advance(10 * time.Hour) // 22:00
	check("outside the window", "virginia", 10, 1<<20)

	rps := 7.0
	if _, err := m.SetLimit(ctx, "virginia", &rps, nil); err != nil {
		t.Fatal(err)
	}
	check("overridden requests, the spec's bytes", "virginia", 7, 1<<20)
	h.advance(-10 * time.Hour) // back in the window: the override still wins
	check("an override beats the window", "virginia", 7, 1<<20)
	var unlimited int64
	if _, err := m.SetLimit(ctx, "target", nil, &unlimited); err != nil {
		t.Fatal(err)
	}
	check("a lifted cap", "target", 0, 0)
	if _, err := m.SetLimit(ctx, "nowhere", &rps, nil); err == nil || ExitCode(err) != ExitUsage {
		t.Errorf("an override of an unknown site: %v", err)
	}
	ls, err := m.Limits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].Store != "virginia" || ls[0].Source != "override" || ls[0].RequestsPerSecond != 7 ||
		ls[1].Store != "target" || ls[1].Source != "override" || ls[1].BytesPerSecond != 0 {
		t.Errorf("Limits: %+v", ls)
	}
	if _, err := m.ClearLimit(ctx, ""); err != nil {
		t.Fatal(err)
	}
	check("cleared: the window again", "virginia", 50, 1<<20)
	check("cleared: the spec's target cap", "target", 0, 8<<20)

	// As one of three live copy workers, this process takes a third.
	m.Opts.Worker = true
	if err := m.join(ctx, "copy"); err != nil {
		t.Fatal(err)
	}
	self := checkpoints.Self("copy")
	for _, id := range []string{"w2", "w3"} {
		if err := m.State.Join(ctx, checkpoints.Worker{ID: id, Host: self.Host, PID: os.Getpid(), Start: self.Start, Phase: "copy"}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	check("one of three workers", "virginia", 50.0/3, float64(1<<20)/3)
	if err := m.State.Leave(ctx, "w3"); err != nil {
		t.Fatal(err)
	}
	check("one of two workers", "virginia", 25, 1<<19)
}

// Progress and the log name the limit while ferry waits on it, and say when it no
// longer does; status reports the time spent waiting.
func TestLimitsProgressAndStatus(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, storeKinds[0], limitsYAML)
	h.put("virginia", "alice/a", []byte("a"))
	m := h.open()
	n := &noter{}
	tr := m.trackLimits(n)
	rps := 20.0
	if _, err := m.SetLimit(ctx, "virginia", &rps, nil); err != nil {
		t.Fatal(err)
	}
	m.limiter.refresh(ctx)
	for range 10 { // 10 requests at 20/s: about half a second of waiting
		if _, err := m.Sites["virginia"].Stat(ctx, "alice/a"); err != nil {
			t.Fatal(err)
		}
	}
	m.limiter.refresh(ctx)
	if got := n.last(); got != "virginia limit 20 req/s" {
		t.Errorf("progress was told %q", got)
	}
	if !strings.Contains(h.logs.String(), `msg="waiting on a limit" limits="virginia limit 20 req/s"`) {
		t.Errorf("no log line names the limit:\n%s", h.logs.String())
	}
	m.limiter.refresh(ctx) // nothing waited since
	if got := n.last(); got != "" {
		t.Errorf("progress still says %q", got)
	}
	if !strings.Contains(h.logs.String(), "no longer waiting on a limit") {
		t.Errorf("the log does not say the wait ended:\n%s", h.logs.String())
	}
	ls, err := m.Limits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) == 0 || ls[0].Store != "virginia" || ls[0].WaitedSeconds < 0.3 || ls[0].Processes != 1 {
		t.Errorf("Limits while running: %+v", ls)
	}
	tr.Finish()
	if len(m.limiter.trackers) != 0 {
		t.Error("a finished tracker is still told about limits")
	}
	waited := ls[0].WaitedSeconds
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// A later process (status) sums what this one waited, and sees it finished.
	o := h.options(false)
	o.Offline, o.ReadOnlyState = true, true // as ferry status opens it
	st, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := st.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Limits) == 0 || res.Limits[0].WaitedSeconds < waited || res.Limits[0].Processes != 0 {
		t.Errorf("status after the run: %+v", res.Limits)
	}
}
