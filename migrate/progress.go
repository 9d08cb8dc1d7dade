package migrate

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
)

// Tracker receives a phase's progress.
type Tracker interface {
	Add(records, bytes int64)
	Finish()
}

// ProgressFactory starts a tracker for a phase with known totals (0: unknown).
type ProgressFactory func(phase string, records, bytes int64) Tracker

type nopTracker struct{}

func (nopTracker) Add(int64, int64) {}
func (nopTracker) Finish()          {}

// BarProgress draws progress bars (records and bytes, rate, ETA) on a terminal.
func BarProgress(w io.Writer) ProgressFactory {
	return func(phase string, records, bytes int64) Tracker {
		max := records
		if max <= 0 {
			max = -1 // spinner: total unknown (plan)
		}
		bar := progressbar.NewOptions64(max,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(fmt.Sprintf("%-7s", phase)),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("rec"),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
			progressbar.OptionFullWidth(),
		)
		return &barTracker{bar: bar, phase: phase, totalBytes: bytes, start: time.Now()}
	}
}

type barTracker struct {
	mu         sync.Mutex
	bar        *progressbar.ProgressBar
	phase      string
	bytes      int64
	totalBytes int64
	start      time.Time
	limit      string // the limit ferry waits on now, if any
}

func (t *barTracker) Add(records, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.bytes += bytes
	if bytes > 0 || t.totalBytes > 0 || t.limit != "" {
		t.describe()
	}
	_ = t.bar.Add64(records)
}

// describe sets the bar's text: phase, bytes and rate, and the limit being waited on.
func (t *barTracker) describe() {
	desc := fmt.Sprintf("%-7s", t.phase)
	if t.bytes > 0 || t.totalBytes > 0 {
		rate := float64(t.bytes) / time.Since(t.start).Seconds()
		desc += " " + humanize.IBytes(uint64(t.bytes))
		if t.totalBytes > 0 {
			desc += "/" + humanize.IBytes(uint64(t.totalBytes))
		}
		desc += fmt.Sprintf(" %s/s", humanize.IBytes(uint64(rate)))
	}
	if t.limit != "" {
		desc += " [waiting: " + t.limit + "]"
	}
	t.bar.Describe(desc)
}

// LimitWait names the limit ferry waits on ("" when none).
func (t *barTracker) LimitWait(desc string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.limit = desc
	t.describe()
}

// Finish ends the bar where the phase got to: full only when every record was
// counted. A phase stopped early (Ctrl-C, a fatal error) leaves the real count on
// screen instead of a bar jumping to 100 %.
func (t *barTracker) Finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bar.IsFinished() {
		return
	}
	if st := t.bar.State(); st.Max > 0 && st.CurrentNum < st.Max {
		_ = t.bar.RenderBlank() // the last Add may have been throttled
		_ = t.bar.Exit()
		return
	}
	_ = t.bar.Finish()
}

// LogProgress writes a log line every interval with the same figures as the bars:
// for CI and anything that is not a terminal.
func LogProgress(log *slog.Logger, interval time.Duration) ProgressFactory {
	return func(phase string, records, bytes int64) Tracker {
		t := &logTracker{log: log, phase: phase, totalRec: records, totalBytes: bytes, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
		go t.loop(interval)
		return t
	}
}

type logTracker struct {
	log                  *slog.Logger
	phase                string
	records, bytes       atomic.Int64
	totalRec, totalBytes int64
	start                time.Time
	stop, done           chan struct{}
	once                 sync.Once
	limit                atomic.Pointer[string] // the limit ferry waits on now, if any
}

// LimitWait names the limit ferry waits on ("" when none) in the next lines.
func (t *logTracker) LimitWait(desc string) { t.limit.Store(&desc) }

func (t *logTracker) Add(records, bytes int64) {
	t.records.Add(records)
	t.bytes.Add(bytes)
}

func (t *logTracker) line(final bool) {
	el := time.Since(t.start).Seconds()
	if el <= 0 {
		el = 1e-9
	}
	rec, by := t.records.Load(), t.bytes.Load()
	args := []any{"phase", t.phase, "records", rec, "bytes", by,
		"rate_rec_s", fmt.Sprintf("%.0f", float64(rec)/el), "rate", humanize.IBytes(uint64(float64(by)/el)) + "/s"}
	if t.totalRec > 0 {
		args = append(args, "total_records", t.totalRec)
		if rec > 0 && !final {
			eta := time.Duration(float64(t.totalRec-rec) / (float64(rec) / el) * float64(time.Second)).Round(time.Second)
			args = append(args, "eta", eta.String())
		}
	}
	if t.totalBytes > 0 {
		args = append(args, "total_bytes", t.totalBytes)
	}
	if l := t.limit.Load(); l != nil && *l != "" && !final {
		args = append(args, "waiting_on", *l)
	}
	msg := "progress"
	if final {
		msg = "done"
	}
	t.log.Info(msg, args...)
}

func (t *logTracker) loop(interval time.Duration) {
	defer close(t.done)
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tk.C:
			t.line(false)
		}
	}
}

func (t *logTracker) Finish() {
	t.once.Do(func() {
		close(t.stop)
		<-t.done
		t.line(true)
	})
}
