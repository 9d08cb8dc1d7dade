package spec

import (
	"strings"
	"testing"
	"time"
)

// limitsSpec puts a limits block under site a (after line 5) and under the target.
func limitsSpec(site, target string) string {
	return edit(map[int]string{
		5:  "    url: file:///srv/a\n" + indent(site, "    "),
		10: "  url: file:///srv/target\n" + indent(target, "  "),
	}, "")
}

func indent(s, by string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i := range lines {
		lines[i] = by + lines[i]
	}
	return strings.Join(lines, "\n")
}

func TestLimitsParse(t *testing.T) {
	s := mustParse(t, limitsSpec(`limits:
  requests_per_second: 200
  bytes_per_second: 50MiB
  schedule:
    - {days: mon-fri, hours: "08:00-20:00", zone: America/New_York, requests_per_second: 50, bytes_per_second: 10MiB}
    - {days: [sat, sun], window: "22:00-06:00", tz: Asia/Singapore, bytes_per_second: unlimited}
`, `limits: {requests_per_second: 0.5}
`))
	l := s.Sources[0].Limits
	if l.RequestsPerSecond != 200 || l.BytesPerSecond != 50<<20 || len(l.Schedule) != 2 {
		t.Fatalf("site limits: %+v", l)
	}
	w := l.Schedule[0]
	if w.Start != 8*60 || w.End != 20*60 || w.ZoneName != "America/New_York" || w.RequestsPerSecond != 50 || w.BytesPerSecond != 10<<20 {
		t.Errorf("window 0: %+v", w)
	}
	if !w.Days[time.Monday] || !w.Days[time.Friday] || w.Days[time.Saturday] || w.Days[time.Sunday] {
		t.Errorf("window 0 days: %v", w.Days)
	}
	// A value left out of a window is the one outside the windows; unlimited lifts it.
	w = l.Schedule[1]
	if w.RequestsPerSecond != 200 || w.BytesPerSecond != 0 || w.Start != 22*60 || w.End != 6*60 || w.Days[time.Monday] || !w.Days[time.Sunday] {
		t.Errorf("window 1 (window/tz aliases, inherited rps, unlimited bytes): %+v", w)
	}
	if got := s.Target.Limits; got.RequestsPerSecond != 0.5 || got.BytesPerSecond != 0 || len(got.Schedule) != 0 {
		t.Errorf("target limits: %+v", got)
	}
	if !s.Sources[1].Limits.IsZero() {
		t.Errorf("site b has no limits, got %+v", s.Sources[1].Limits)
	}
	if l.Rate.String() != "200 req/s, 50MiB/s" || (Rate{}).String() != "unlimited" {
		t.Errorf("Rate.String: %q", l.Rate.String())
	}
	// Limits tune a run: they are not part of what the migration is.
	if mustParse(t, base).Digest() != s.Digest() {
		t.Error("limits changed the spec digest")
	}
}

func TestLimitsAt(t *testing.T) {
	s := mustParse(t, limitsSpec(`limits:
  schedule:
    - {days: mon-thu, hours: "08:00-20:00", zone: America/New_York, requests_per_second: 200, bytes_per_second: 50MiB}
    - {days: fri, hours: "22:00-02:00", zone: UTC, requests_per_second: 5}
`, ""))
	l := s.Sources[0].Limits
	ny, _ := time.LoadLocation("America/New_York")
	for _, c := range []struct {
		at     time.Time
		window int
		rps    float64
	}{
		{time.Date(2026, 12, 7, 8, 0, 0, 0, ny), 0, 200},         // Monday 08:00 New York: in
		{time.Date(2026, 12, 7, 7, 59, 59, 0, ny), -1, 0},        // a second before: out, unlimited
		{time.Date(2026, 12, 7, 20, 0, 0, 0, ny), -1, 0},         // the end is excluded
		{time.Date(2026, 12, 5, 12, 0, 0, 0, ny), -1, 0},         // Saturday
		{time.Date(2026, 7, 6, 12, 30, 0, 0, time.UTC), 0, 200},  // 08:30 EDT in summer
		{time.Date(2026, 12, 7, 13, 30, 0, 0, time.UTC), 0, 200}, // 08:30 EST in winter
		{time.Date(2026, 12, 11, 23, 0, 0, 0, time.UTC), 1, 5},   // Friday 23:00 UTC
		{time.Date(2026, 12, 12, 1, 59, 0, 0, time.UTC), 1, 5},   // past midnight: Saturday 01:59 belongs to Friday's window
		{time.Date(2026, 12, 13, 1, 0, 0, 0, time.UTC), -1, 0},   // Sunday 01:00: Saturday has no window
	} {
		r, i := l.At(c.at)
		if i != c.window || r.RequestsPerSecond != c.rps {
			t.Errorf("At(%s) = %+v, window %d; want window %d, %v req/s", c.at, r, i, c.window, c.rps)
		}
	}
}

func TestLimitsErrors(t *testing.T) {
	for _, c := range []struct {
		name, site string
		line       int
		key, msg   string
	}{
		{"negative rps", "limits: {requests_per_second: -5}", 6, "sources[0].limits.requests_per_second", "must be more than 0"},
		{"zero rps", "limits: {requests_per_second: 0}", 6, "sources[0].limits.requests_per_second", "must be more than 0"},
		{"negative bytes", "limits: {bytes_per_second: -1MiB}", 6, "sources[0].limits.bytes_per_second", "must not be negative"},
		{"zero bytes", "limits: {bytes_per_second: 0}", 6, "sources[0].limits.bytes_per_second", "must be more than 0"},
		{"bad size", "limits: {bytes_per_second: fast}", 6, "sources[0].limits.bytes_per_second", "must be a size per second"},
		{"unknown key", "limits: {rps: 5}", 6, "sources[0].limits.rps", "unknown key"},
		{"bad zone", "limits:\n  schedule:\n    - {hours: \"08:00-20:00\", zone: America/Nowhere}", 8, "sources[0].limits.schedule[0].zone", "unknown time zone"},
		{"local zone", "limits:\n  schedule:\n    - {hours: \"08:00-20:00\", tz: Local}", 8, "sources[0].limits.schedule[0].tz", "IANA time zone"},
		{"no zone", "limits:\n  schedule:\n    - {hours: \"08:00-20:00\", requests_per_second: 5}", 8, "sources[0].limits.schedule[0].zone", "missing required key"},
		{"no hours", "limits:\n  schedule:\n    - {zone: UTC, requests_per_second: 5}", 8, "sources[0].limits.schedule[0].hours", "missing required key"},
		{"both names", "limits:\n  schedule:\n    - {hours: \"08:00-20:00\", window: \"08:00-20:00\", zone: UTC}", 8, "sources[0].limits.schedule[0].window", "same key"},
		{"bad hours", "limits:\n  schedule:\n    - {hours: \"8-20\", zone: UTC}", 8, "sources[0].limits.schedule[0].hours", "HH:MM-HH:MM"},
		{"25 o'clock", "limits:\n  schedule:\n    - {hours: \"08:00-25:00\", zone: UTC}", 8, "sources[0].limits.schedule[0].hours", "not a time of day"},
		{"empty window", "limits:\n  schedule:\n    - {hours: \"08:00-08:00\", zone: UTC}", 8, "sources[0].limits.schedule[0].hours", "same time"},
		{"bad days", "limits:\n  schedule:\n    - {days: weekdays, hours: \"08:00-20:00\", zone: UTC}", 8, "sources[0].limits.schedule[0].days", "must be days like"},
		{"window rps negative", "limits:\n  schedule:\n    - {hours: \"08:00-20:00\", zone: UTC, requests_per_second: -1}", 8, "sources[0].limits.schedule[0].requests_per_second", "must be more than 0"},
		{"overlap", "limits:\n  schedule:\n    - {days: mon-fri, hours: \"08:00-20:00\", zone: UTC}\n    - {days: fri, hours: \"19:00-21:00\", zone: UTC}", 9, "sources[0].limits.schedule[1]", "overlaps schedule[0]"},
		// 08:00-20:00 New York is 13:00-01:00 UTC in winter: 00:30 UTC overlaps.
		{"overlap across zones", "limits:\n  schedule:\n    - {hours: \"08:00-20:00\", zone: America/New_York}\n    - {hours: \"00:00-00:45\", zone: UTC}", 9, "sources[0].limits.schedule[1]", "overlaps schedule[0]"},
		{"overlap past midnight", "limits:\n  schedule:\n    - {days: fri, hours: \"22:00-02:00\", zone: UTC}\n    - {days: sat, hours: \"01:00-03:00\", zone: UTC}", 9, "sources[0].limits.schedule[1]", "overlaps schedule[0]"},
		{"schedule not a list", "limits: {schedule: {hours: \"08:00-20:00\"}}", 6, "sources[0].limits.schedule", "must be a list"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(limitsSpec(c.site, "")), specFile)
			if err == nil {
				t.Fatalf("no error for\n%s", limitsSpec(c.site, ""))
			}
			for _, e := range all(err) {
				if e.Key == c.key && strings.Contains(e.Msg, c.msg) {
					if e.Line != c.line {
						t.Errorf("%s at line %d, want %d", e, e.Line, c.line)
					}
					return
				}
			}
			t.Errorf("want %s: ...%s..., got %v", c.key, c.msg, err)
		})
	}
	// Adjacent windows, and the same hours on other days, are fine.
	mustParse(t, limitsSpec("limits:\n  schedule:\n    - {days: mon-fri, hours: \"08:00-20:00\", zone: UTC}\n    - {days: mon-thu, hours: \"20:00-08:00\", zone: UTC}\n    - {days: sat-sun, hours: \"00:00-24:00\", zone: UTC}", ""))
}

func TestParseRates(t *testing.T) {
	for in, want := range map[string]int64{"50MiB": 50 << 20, "50MiB/s": 50 << 20, "1048576": 1 << 20, "unlimited": 0, "10MB": 10e6} {
		if got, err := ParseByteRate(in); err != nil || got != want {
			t.Errorf("ParseByteRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "0", "x", ""} {
		if _, err := ParseByteRate(in); err == nil {
			t.Errorf("ParseByteRate(%q): no error", in)
		}
	}
	for in, want := range map[string]float64{"200": 200, "0.5": 0.5, "Unlimited": 0} {
		if got, err := ParseRequestRate(in); err != nil || got != want {
			t.Errorf("ParseRequestRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "0", "NaN", "Inf", "1e9", "many"} {
		if _, err := ParseRequestRate(in); err == nil {
			t.Errorf("ParseRequestRate(%q): no error", in)
		}
	}
}
