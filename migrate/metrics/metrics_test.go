package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/providers"
	"github.com/ferrymigrate/ferry/providers/limit"
)

// Every kind of failure the pipeline meets has its own label value; wrapped errors
// keep theirs.
func TestKind(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "none"},
		{providers.ErrCredentials, "credentials"},
		{providers.ErrAccessDenied, "access_denied"},
		{fmt.Errorf("put: %w", providers.ErrNoBucket), "no_bucket"},
		{providers.ErrNoSpace, "no_space"},
		{providers.ErrReadOnly, "read_only"},
		{providers.ErrPermission, "permission"},
		{providers.ErrRetained, "retained"},
		{fmt.Errorf("read: %w", providers.ErrChecksum), "checksum"},
		{providers.ErrNotFound, "not_found"},
		{providers.ErrPrecondition, "changed"},
		{providers.ErrInvalidKey, "invalid_key"},
		{providers.ErrIncompleteList, "incomplete_list"},
		{providers.ErrNotSupported, "not_supported"},
		{&checkpoints.FencedError{}, "fenced"},
		{context.Canceled, "interrupted"},
		{context.DeadlineExceeded, "timeout"},
		{errors.New("connection reset"), "other"},
	} {
		if got := Kind(c.err); got != c.want {
			t.Errorf("Kind(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// A nil *Metrics does nothing, so the pipeline calls it unconditionally.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.Record("copy", "a", OutcomeDone, 1, nil)
	m.Records("plan", "a", 1, 1)
	m.Failure("copy", "a", providers.ErrNoBucket)
	m.Retries("copy", "a", 2)
	m.Takeover("copy")
	m.RangeLost("copy")
	m.ObserveRequest("a", "put", time.Second, nil)
	m.PhaseStarted("copy", 1, 1)
	m.PhaseProgress("copy", 1, 1)
	m.PhaseFinished("copy")
	m.Store("a", nil, nil)
	m.WatchState(nil)()
	m.Info("x")
	m.SetVersion("v")
}

// Records count by outcome; only done ones add bytes, only failed ones a failure of
// their kind.
func TestRecordCounts(t *testing.T) {
	m := New()
	m.Record("copy", "virginia", OutcomeDone, 100, nil)
	m.Record("copy", "virginia", OutcomeDone, 20, nil)
	m.Record("copy", "virginia", OutcomeSkipped, 7, nil)
	m.Record("copy", "virginia", OutcomeFailed, 9, fmt.Errorf("x: %w", providers.ErrPermission))
	m.Records("plan", "singapore", 3, 30)
	if got := testutil.ToFloat64(m.records.WithLabelValues("copy", "virginia", OutcomeDone)); got != 2 {
		t.Errorf("done: %v", got)
	}
	if got := testutil.ToFloat64(m.bytes.WithLabelValues("copy", "virginia")); got != 120 {
		t.Errorf("bytes: %v, want 120 (only done records' bytes)", got)
	}
	if got := testutil.ToFloat64(m.failures.WithLabelValues("copy", "virginia", "permission")); got != 1 {
		t.Errorf("failures: %v", got)
	}
	if got := testutil.ToFloat64(m.records.WithLabelValues("plan", "singapore", OutcomeDone)); got != 3 {
		t.Errorf("plan records: %v", got)
	}
	if got := testutil.ToFloat64(m.bytes.WithLabelValues("plan", "singapore")); got != 30 {
		t.Errorf("plan bytes: %v", got)
	}
	if n := testutil.CollectAndCount(m.failures); n != 1 {
		t.Errorf("%d failure series, want 1", n)
	}
}

// A limiter's caps and waits are read when scraped; the whole registry lints clean
// (names, units, help).
func TestLimiterAndLint(t *testing.T) {
	m := New()
	lim := limit.NewLimiter(nil)
	lim.Set(limit.Rate{RequestsPerSecond: 5, BytesPerSecond: 1 << 20})
	m.Store("target", nil, lim)
	m.ObserveRequest("target", "put", 30*time.Millisecond, nil)
	m.ObserveRequest("target", "stat", time.Millisecond, providers.ErrNotFound)
	m.PhaseStarted("copy", 10, 1000)
	want := `
# HELP ferry_limit_requests_per_second This process's share of the store's request cap in force (0: unlimited).
# TYPE ferry_limit_requests_per_second gauge
ferry_limit_requests_per_second{store="target"} 5
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ferry_limit_requests_per_second"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "ferry_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// The server serves /metrics and stops with Close.
func TestServer(t *testing.T) {
	m := New()
	srv, err := m.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + srv.Addr() + "/metrics"); err == nil {
		t.Fatal("still serving after Close")
	}
}

// sleepClock advances only when someone sleeps.
type sleepClock struct{ now time.Time }

func (c *sleepClock) Now() time.Time { return c.now }
func (c *sleepClock) Sleep(_ context.Context, d time.Duration) error {
	c.now = c.now.Add(d)
	return nil
}

// The time callers waited on a limit is served as it grows, by dimension.
func TestLimitWaits(t *testing.T) {
	m := New()
	lim := limit.NewLimiter(&sleepClock{now: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)})
	lim.Set(limit.Rate{RequestsPerSecond: 10})
	m.Store("virginia", nil, lim)
	ctx := context.Background()
	for range 20 {
		if err := lim.Wait(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	st := lim.Stats()
	if st.WaitedRequests <= 0 {
		t.Fatal("the limiter made no one wait")
	}
	want := fmt.Sprintf(`
# HELP ferry_limit_wait_seconds_total Time callers spent waiting for a limit's tokens (summed over callers), by store and dimension (requests, bytes).
# TYPE ferry_limit_wait_seconds_total counter
ferry_limit_wait_seconds_total{dimension="bytes",store="virginia"} 0
ferry_limit_wait_seconds_total{dimension="requests",store="virginia"} %v
`, st.WaitedRequests.Seconds())
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ferry_limit_wait_seconds_total"); err != nil {
		t.Error(err)
	}
}
