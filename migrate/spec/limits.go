package spec

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Limits cap what ferry takes from one store (a site, or the target): requests per
// second and bytes per second, optionally by a schedule. They hold across every
// process working one migration (each takes its share) and may be overridden on a
// running migration with `ferry limits set` (README, "Limits").
//
//	limits:
//	  requests_per_second: 200      # outside every window; leave out (or "unlimited") for none
//	  bytes_per_second: 50MiB
//	  schedule:                     # first matching window wins
//	    - {days: mon-fri, hours: "08:00-20:00", zone: America/New_York,
//	       requests_per_second: 50, bytes_per_second: 10MiB}
//
// Decisions where DESIGN.md is silent:
//   - A value is a positive number (requests: 0.5, 200; bytes: a size like 50MiB
//     or a byte count) or "unlimited". Zero and negative values are errors: a zero
//     rate would stall the migration for good.
//   - A window's requests_per_second or bytes_per_second left out takes the value
//     outside the windows (so a window may cap one dimension only); write
//     "unlimited" to lift it inside the window.
//   - hours is "HH:MM-HH:MM" in the window's zone, start included, end excluded;
//     24:00 is the end of the day, and an end before the start runs past midnight
//     (the part after midnight belongs to the day the window started). days is a
//     list or a comma list of mon..sun and ranges (mon-fri, fri-mon), or "daily";
//     default every day. zone is an IANA time zone name (UTC allowed) and is
//     required: a window without one would mean different hours on every machine.
//   - window and tz are accepted as other names of hours and zone.
//   - Windows may not overlap, judged over a whole year in their zones (daylight
//     saving included): "first match wins" would otherwise hide a window.
type Limits struct {
	Rate
	Schedule []Window `json:"schedule,omitempty"`
}

// Rate is one pair of caps; zero means unlimited.
type Rate struct {
	RequestsPerSecond float64 `json:"requests_per_second,omitempty"`
	BytesPerSecond    int64   `json:"bytes_per_second,omitempty"`
}

// Unlimited reports whether neither dimension is capped.
func (r Rate) Unlimited() bool { return r.RequestsPerSecond <= 0 && r.BytesPerSecond <= 0 }

// String says the caps the way the README writes them: "200 req/s, 50MiB/s".
func (r Rate) String() string {
	var parts []string
	if r.RequestsPerSecond > 0 {
		parts = append(parts, strconv.FormatFloat(r.RequestsPerSecond, 'f', -1, 64)+" req/s")
	}
	if r.BytesPerSecond > 0 {
		parts = append(parts, formatSize(r.BytesPerSecond)+"/s")
	}
	if len(parts) == 0 {
		return "unlimited"
	}
	return strings.Join(parts, ", ")
}

// Window is one entry of a schedule.
type Window struct {
	Days  [7]bool        `json:"-"` // by time.Weekday
	Start int            `json:"-"` // minutes after midnight, in Zone
	End   int            `json:"-"` // minutes after midnight, 1..1440; <= Start: past midnight
	Zone  *time.Location `json:"-"`
	// DaysText, Hours and ZoneName are as written (DaysText "" = every day).
	DaysText string `json:"days,omitempty"`
	Hours    string `json:"hours"`
	ZoneName string `json:"zone"`
	// Rate is the window's caps, with values left out taken from outside the windows.
	Rate
}

func (w Window) String() string {
	d := w.DaysText
	if d == "" {
		d = "daily"
	}
	return d + " " + w.Hours + " " + w.ZoneName
}

// contains reports whether t falls in the window.
func (w Window) contains(t time.Time) bool {
	lt := t.In(w.Zone)
	m := lt.Hour()*60 + lt.Minute()
	wd := lt.Weekday()
	if w.Start < w.End {
		return w.Days[wd] && m >= w.Start && m < w.End
	}
	return w.Days[wd] && m >= w.Start || w.Days[(wd+6)%7] && m < w.End
}

// At returns the caps in force at t and the index of the window that set them (-1:
// outside every window).
func (l Limits) At(t time.Time) (Rate, int) {
	for i, w := range l.Schedule {
		if w.contains(t) {
			return w.Rate, i
		}
	}
	return l.Rate, -1
}

// IsZero reports whether no limit is set at all.
func (l Limits) IsZero() bool { return l.Unlimited() && len(l.Schedule) == 0 }

// ---- parsing ----

var (
	limitKeys  = []string{"requests_per_second", "bytes_per_second", "schedule"}
	windowKeys = []string{"days", "hours", "window", "zone", "tz", "requests_per_second", "bytes_per_second"}
)

// limits parses a store's limits mapping.
func (p *parser) limits(n *yaml.Node, path string) Limits {
	var l Limits
	m, ok := p.fields(n, path, limitKeys...)
	if !ok {
		return l
	}
	l.RequestsPerSecond, _ = p.requestRate(m, path)
	l.BytesPerSecond, _ = p.byteRate(m, path)
	if e, ok := m["schedule"]; ok {
		p.list(e.val, joinKey(path, "schedule"), func(i int, item *yaml.Node, ipath string) {
			w, ok := p.window(item, ipath, l.Rate)
			if !ok {
				return
			}
			for j, prev := range l.Schedule {
				if overlap(prev, w) {
					p.add(item, ipath, "overlaps schedule[%d] (%s): windows must not overlap", j, prev)
					return
				}
			}
			l.Schedule = append(l.Schedule, w)
		})
	}
	return l
}

// requestRate reads requests_per_second; set reports whether the key was there.
func (p *parser) requestRate(m map[string]entry, path string) (v float64, set bool) {
	e, ok := m["requests_per_second"]
	if !ok || isNull(e.val) {
		return 0, false
	}
	kp := joinKey(path, "requests_per_second")
	if p.flagged[e.val] {
		return 0, false
	}
	if e.val.Kind != yaml.ScalarNode {
		p.add(e.val, kp, "must be a number of requests per second or unlimited, not %s", kindName(e.val))
		return 0, false
	}
	v, err := ParseRequestRate(e.val.Value)
	if err != nil {
		p.add(e.val, kp, "%s", err.Error())
		return 0, false
	}
	return v, true
}

// byteRate reads bytes_per_second; set reports whether the key was there.
func (p *parser) byteRate(m map[string]entry, path string) (v int64, set bool) {
	e, ok := m["bytes_per_second"]
	if !ok || isNull(e.val) {
		return 0, false
	}
	kp := joinKey(path, "bytes_per_second")
	if p.flagged[e.val] {
		return 0, false
	}
	if e.val.Kind != yaml.ScalarNode {
		p.add(e.val, kp, "must be a size per second like 50MiB or unlimited, not %s", kindName(e.val))
		return 0, false
	}
	v, err := ParseByteRate(e.val.Value)
	if err != nil {
		p.add(e.val, kp, "%s", err.Error())
		return 0, false
	}
	return v, true
}

// MaxRequestRate bounds requests_per_second (beyond it "unlimited" is meant).
const MaxRequestRate = 1e6

// ParseRequestRate parses a requests_per_second value: a positive number or
// "unlimited" (0).
func ParseRequestRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "unlimited") {
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, errors.New("must be a number of requests per second (like 200 or 0.5) or unlimited")
	}
	if v <= 0 {
		return 0, errors.New("must be more than 0 (leave it out, or write unlimited, for no limit)")
	}
	if v > MaxRequestRate {
		return 0, fmt.Errorf("must be at most %g (write unlimited for no limit)", float64(MaxRequestRate))
	}
	return v, nil
}

// ParseByteRate parses a bytes_per_second value: a size (50MiB, 1048576, "50MiB/s")
// or "unlimited" (0).
func ParseByteRate(s string) (int64, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/s")
	if strings.EqualFold(s, "unlimited") {
		return 0, nil
	}
	if strings.HasPrefix(s, "-") {
		return 0, errors.New("must not be negative (leave it out, or write unlimited, for no limit)")
	}
	v, err := parseSize(s)
	if err != nil {
		return 0, errors.New("must be a size per second like 50MiB or 1048576, or unlimited")
	}
	if v <= 0 {
		return 0, errors.New("must be more than 0 (leave it out, or write unlimited, for no limit)")
	}
	return v, nil
}

// window parses one schedule entry; outside holds the caps outside every window.
func (p *parser) window(n *yaml.Node, path string, outside Rate) (Window, bool) {
	w := Window{}
	if isNull(n) {
		p.add(n, path, "must not be empty")
		return w, false
	}
	m, ok := p.fields(n, path, windowKeys...)
	if !ok {
		return w, false
	}
	good := true
	// pick returns the entry under name or its alias; it reports a missing key
	// (with what to write) and both names at once.
	pick := func(name, alias, example string) (entry, string, bool) {
		a, aok := m[name]
		b, bok := m[alias]
		switch {
		case aok && bok:
			p.add(b.key, joinKey(path, alias), "%s and %s are the same key: write one", alias, name)
			return entry{}, "", false
		case bok:
			return b, alias, true
		case !aok:
			p.add(n, joinKey(path, name), "missing required key (%s)", example)
		}
		return a, name, aok
	}
	if e, k, ok := pick("hours", "window", `like "08:00-20:00"`); !ok {
		good = false
	} else if v, ok := p.nonEmpty(e.val, joinKey(path, k)); !ok {
		good = false
	} else if start, end, err := parseHours(v); err != nil {
		p.add(e.val, joinKey(path, k), "%s", err.Error())
		good = false
	} else {
		w.Start, w.End, w.Hours = start, end, v
	}
	if e, k, ok := pick("zone", "tz", "an IANA time zone like America/New_York, or UTC"); !ok {
		good = false
	} else if v, ok := p.nonEmpty(e.val, joinKey(path, k)); !ok {
		good = false
	} else if loc, err := loadZone(v); err != nil {
		p.add(e.val, joinKey(path, k), "%s", err.Error())
		good = false
	} else {
		w.Zone, w.ZoneName = loc, v
	}
	for i := range w.Days {
		w.Days[i] = true
	}
	if e, ok := m["days"]; ok && !isNull(e.val) {
		kp := joinKey(path, "days")
		var text string
		if e.val.Kind == yaml.SequenceNode {
			items, _, ok := p.strList(e.val, kp)
			if !ok {
				good = false
			}
			text = strings.Join(items, ",")
		} else if v, ok := p.nonEmpty(e.val, kp); ok {
			text = v
		} else {
			good = false
		}
		if text != "" {
			days, err := parseDays(text)
			if err != nil {
				p.add(e.val, kp, "%s", err.Error())
				good = false
			} else {
				w.Days, w.DaysText = days, text
			}
		}
	}
	w.Rate = outside
	if v, set := p.requestRate(m, path); set {
		w.RequestsPerSecond = v
	} else if present(m, "requests_per_second") {
		good = false
	}
	if v, set := p.byteRate(m, path); set {
		w.BytesPerSecond = v
	} else if present(m, "bytes_per_second") {
		good = false
	}
	return w, good
}

var hoursRE = regexp.MustCompile(`^([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})$`)

// parseHours parses "HH:MM-HH:MM" into minutes after midnight.
func parseHours(v string) (start, end int, err error) {
	m := hoursRE.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, 0, errors.New(`must be hours like "08:00-20:00" (HH:MM-HH:MM, 24-hour clock)`)
	}
	clock := func(h, mm string, endOK bool) (int, error) {
		hi, _ := strconv.Atoi(h)
		mi, _ := strconv.Atoi(mm)
		if mi > 59 || hi > 24 || hi == 24 && (mi != 0 || !endOK) {
			return 0, fmt.Errorf("%s:%s is not a time of day (00:00 to 23:59; 24:00 only as an end)", h, mm)
		}
		return hi*60 + mi, nil
	}
	if start, err = clock(m[1], m[2], false); err != nil {
		return 0, 0, err
	}
	if end, err = clock(m[3], m[4], true); err != nil {
		return 0, 0, err
	}
	if end == 0 {
		end = 24 * 60 // "22:00-00:00" ends at midnight
	}
	if start == end {
		return 0, 0, errors.New("start and end are the same time: the window would be empty (use 00:00-24:00 for whole days)")
	}
	return start, end, nil
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// parseDays parses "mon-fri", "sat,sun", "fri-mon", "daily".
func parseDays(v string) ([7]bool, error) {
	var out [7]bool
	bad := fmt.Errorf("must be days like mon-fri, sat,sun or daily (mon tue wed thu fri sat sun)")
	for _, part := range strings.Split(strings.ToLower(v), ",") {
		part = strings.TrimSpace(part)
		if part == "daily" || part == "all" {
			for i := range out {
				out[i] = true
			}
			continue
		}
		a, b, isRange := strings.Cut(part, "-")
		from, ok := dayNames[strings.TrimSpace(a)]
		if !ok {
			return out, bad
		}
		to := from
		if isRange {
			if to, ok = dayNames[strings.TrimSpace(b)]; !ok {
				return out, bad
			}
		}
		for d := from; ; d = (d + 1) % 7 {
			out[d] = true
			if d == to {
				break
			}
		}
	}
	return out, nil
}

// loadZone loads an IANA zone; "Local" is refused (it differs between machines).
func loadZone(v string) (*time.Location, error) {
	if strings.EqualFold(v, "local") || v == "" {
		return nil, errors.New("must be an IANA time zone like America/New_York or UTC (Local would differ between machines)")
	}
	loc, err := time.LoadLocation(v)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q: use an IANA name like America/New_York, Europe/Berlin or UTC", v)
	}
	return loc, nil
}

// overlap reports whether two windows share any instant, judged day by day over a
// reference year in their own zones (daylight saving changes included).
func overlap(a, b Window) bool {
	ia, ib := a.instants(), b.instants()
	i, j := 0, 0
	for i < len(ia) && j < len(ib) {
		if ia[i][0].Before(ib[j][1]) && ib[j][0].Before(ia[i][1]) {
			return true
		}
		if ia[i][1].Before(ib[j][1]) {
			i++
		} else {
			j++
		}
	}
	return false
}

// instants lists the window's intervals over a reference year (and a week more, for
// windows past midnight and zones far apart), sorted.
func (w Window) instants() [][2]time.Time {
	var out [][2]time.Time
	for d := 0; d < 380; d++ {
		day := time.Date(2026, 1, 1+d, 0, 0, 0, 0, w.Zone)
		if !w.Days[day.Weekday()] {
			continue
		}
		start := time.Date(day.Year(), day.Month(), day.Day(), w.Start/60, w.Start%60, 0, 0, w.Zone)
		endDay := day
		if w.End <= w.Start {
			endDay = day.AddDate(0, 0, 1)
		}
		end := time.Date(endDay.Year(), endDay.Month(), endDay.Day(), 0, w.End, 0, 0, w.Zone)
		out = append(out, [2]time.Time{start, end})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0].Before(out[j][0]) })
	return out
}
