package migrate

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A phase stopped early (Ctrl-C) leaves the bar at the real count; only a phase that
// counted every record fills it.
func TestBarFinishKeepsRealCount(t *testing.T) {
	var buf bytes.Buffer
	tr := BarProgress(&buf)("copy", 10, 0)
	tr.Add(3, 0)
	time.Sleep(120 * time.Millisecond) // past the bar's render throttle, as on a terminal
	tr.Add(1, 0)
	tr.Finish()
	out := buf.String()
	if strings.Contains(out, "100%") || strings.Contains(out, "10/10") {
		t.Errorf("an interrupted bar shows 100%%:\n%q", out)
	}
	if !strings.Contains(out, "4/10") {
		t.Errorf("an interrupted bar does not show its real count 4/10:\n%q", out)
	}
	tr.Finish() // a second Finish (defer after an explicit one) changes nothing
	if strings.Contains(buf.String(), "100%") {
		t.Errorf("a second Finish filled the bar:\n%q", buf.String())
	}

	buf.Reset()
	tr = BarProgress(&buf)("copy", 5, 0)
	tr.Add(5, 0)
	tr.Finish()
	if !strings.Contains(buf.String(), "100%") || !strings.Contains(buf.String(), "5/5") {
		t.Errorf("a complete bar does not show 100%%:\n%q", buf.String())
	}
}

// The log tracker's final line reports what was counted, not the total.
func TestLogFinishKeepsRealCount(t *testing.T) {
	var buf bytes.Buffer
	tr := LogProgress(slog.New(slog.NewTextHandler(&buf, nil)), time.Hour)("copy", 10, 0)
	tr.Add(4, 0)
	tr.Finish()
	if !regexp.MustCompile(`msg=done phase=copy records=4 .*total_records=10`).MatchString(buf.String()) {
		t.Errorf("final log line: %q", buf.String())
	}
}

// While ferry waits on a limit, the bar and the progress lines name it.
func TestProgressNamesTheLimit(t *testing.T) {
	var buf bytes.Buffer
	tr := BarProgress(&buf)("copy", 10, 1000)
	tr.(limitNoter).LimitWait("virginia limit 20 req/s")
	tr.Add(1, 100)
	time.Sleep(120 * time.Millisecond) // past the bar's render throttle
	tr.Add(1, 100)
	if !strings.Contains(buf.String(), "[waiting: virginia limit 20 req/s]") {
		t.Errorf("the bar does not name the limit:\n%q", buf.String())
	}
	tr.(limitNoter).LimitWait("")
	buf.Reset()
	time.Sleep(120 * time.Millisecond)
	tr.Add(1, 100)
	if strings.Contains(buf.String(), "waiting") {
		t.Errorf("the bar still names a limit:\n%q", buf.String())
	}
	tr.Finish()

	buf.Reset()
	lt := LogProgress(slog.New(slog.NewTextHandler(&buf, nil)), 20*time.Millisecond)("copy", 10, 0)
	lt.(limitNoter).LimitWait("virginia limit 20 req/s")
	lt.Add(1, 0)
	time.Sleep(100 * time.Millisecond)
	lt.Finish()
	if !strings.Contains(buf.String(), `waiting_on="virginia limit 20 req/s"`) {
		t.Errorf("the progress line does not name the limit:\n%s", buf.String())
	}
}
