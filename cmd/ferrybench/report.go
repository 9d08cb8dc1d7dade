package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// environment is what the report says about the machine and the tools.
type environment struct {
	started, finished       time.Time
	cpus                    int
	memory, cpuModel        string
	kernel                  string
	loadBefore, loadAfter   string
	goVersion, ferryVersion string
	minio, rclone, sdk      string
	dataDir, workDir        string
	command                 string
}

// describe records the machine, the load and the tool versions at the start.
func (b *bench) describe(ctx context.Context, dataDir string) environment {
	e := environment{
		started:    time.Now(),
		cpus:       runtime.NumCPU(),
		memory:     meminfo(),
		cpuModel:   cpuModel(),
		kernel:     strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		loadBefore: loadAvg(),
		goVersion:  runtime.Version(),
		dataDir:    filepath.Dir(dataDir) + " (" + fsType(dataDir) + ")",
		workDir:    filepath.Dir(b.work) + " (" + fsType(b.work) + ")",
		command:    command(),
	}
	commit := output(ctx, b.root, "git", "rev-parse", "--short", "HEAD")
	if commit == "" {
		commit = "unknown commit"
	}
	if output(ctx, b.root, "git", "status", "--porcelain", "--untracked-files=no") != "" {
		commit += " with uncommitted changes"
	}
	e.ferryVersion = commit
	e.minio = moduleVersion(ctx, b.root, b.minioBin)
	e.rclone = moduleVersion(ctx, b.root, b.rcloneBin)
	e.sdk = "aws-sdk-go-v2/service/s3 (unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/aws/aws-sdk-go-v2/service/s3" {
				e.sdk = "aws-sdk-go-v2/service/s3 " + d.Version
			}
		}
	}
	return e
}

// command is how to run this again: `go run ./cmd/ferrybench` and the flags given.
func command() string {
	cmd := "go run ./cmd/ferrybench"
	flag.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		if v == "" || strings.ContainsAny(v, " '\"") {
			v = "'" + v + "'"
		}
		cmd += " -" + f.Name + " " + v
	})
	return cmd
}

// moduleVersion names a Go binary by its main module and version (`go version -m`).
func moduleVersion(ctx context.Context, dir, bin string) string {
	out := output(ctx, dir, goTool(), "version", "-m", bin)
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "mod" {
			return f[1] + " " + f[2]
		}
	}
	return filepath.Base(bin) + " (unknown version)"
}

func output(ctx context.Context, dir, name string, args ...string) string {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func meminfo() string {
	var kib int64
	fmt.Sscanf(procField("/proc/meminfo", "MemTotal"), "%d", &kib)
	return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
}

func cpuModel() string {
	if m := procField("/proc/cpuinfo", "model name"); m != "" {
		return m
	}
	return runtime.GOARCH
}

// procField returns the value of the first "name : value" line of a /proc file.
func procField(path, name string) string {
	sc := bufio.NewScanner(strings.NewReader(readFile(path)))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

// fsType is the file system type of the mount holding path (from /proc/self/mounts).
func fsType(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "?"
	}
	best, typ := "", "?"
	sc := bufio.NewScanner(strings.NewReader(readFile("/proc/self/mounts")))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		mnt := f[1]
		if (abs == mnt || strings.HasPrefix(abs, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) >= len(best) {
			best, typ = mnt, f[2]
		}
	}
	return typ
}

// stats are the medians of one tool's runs on one data set.
type stats struct {
	recordsPerSec, mbPerSec, cpu, rss, srvCPU, wall float64
}

func (b *bench) stats(set, tool string) (stats, bool) {
	var rs, mb, cpu, rss, srv, wall []float64
	for _, s := range b.samples {
		if s.set == set && s.tool == tool {
			rs = append(rs, s.recordsPerSec())
			mb = append(mb, s.mbPerSec())
			cpu = append(cpu, s.cpu.Seconds())
			rss = append(rss, float64(s.maxRSS)/(1<<20))
			srv = append(srv, s.serverCPU.Seconds())
			wall = append(wall, s.wall.Seconds())
		}
	}
	if len(rs) == 0 {
		return stats{}, false
	}
	return stats{median(rs), median(mb), median(cpu), median(rss), median(srv), median(wall)}, true
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// report is the markdown the run prints and writes into the doc.
func (b *bench) report() string {
	var w bytes.Buffer
	e := b.env
	fmt.Fprintf(&w, "Run on %s, %s to %s (%v).\n\n", e.started.Format("2006-01-02"), e.started.Format("15:04 MST"),
		e.finished.Format("15:04 MST"), e.finished.Sub(e.started).Round(time.Second))
	fmt.Fprintf(&w, "- Machine: %d CPUs (%s), %s memory, Linux %s.\n", e.cpus, e.cpuModel, e.memory, e.kernel)
	fmt.Fprintf(&w, "- Load average (1, 5, 15 min): %s before, %s after. The tools and both servers share these CPUs\n"+
		"  (the benchmark itself, two servers and a tool, adds up to 3 to the load).\n", e.loadBefore, e.loadAfter)
	fmt.Fprintf(&w, "- Versions: ferry %s (%s); rclone: %s; MinIO: %s; bare loop: %s.\n", e.ferryVersion, e.goVersion, e.rclone, e.minio, e.sdk)
	fmt.Fprintf(&w, "- Servers' data in %s; ferry's SQLite state in %s.\n", e.dataDir, e.workDir)
	fmt.Fprintf(&w, "- Concurrency %d for every tool; %d measured run(s) of each tool on each data set, alternating the order; medians.\n", b.cfg.concurrency, b.cfg.runs)
	fmt.Fprintf(&w, "- Command: `%s` (`make bench` runs the defaults).\n\n", e.command)

	fmt.Fprintln(&w, "| data | tool | records/s | MB/s | CPU s | peak RSS MiB | servers' CPU s | wall s |")
	fmt.Fprintln(&w, "|---|---|--:|--:|--:|--:|--:|--:|")
	for _, set := range b.sets {
		first := true
		name := func() string {
			if first {
				first = false
				return fmt.Sprintf("**%s**: %s", set.name, set.describe())
			}
			return ""
		}
		all := map[string]stats{}
		for _, tool := range tools {
			st, ok := b.stats(set.name, tool)
			if !ok {
				continue
			}
			all[tool] = st
			fmt.Fprintf(&w, "| %s | %s | %s | %.1f | %.2f | %.0f | %.2f | %.2f |\n", name(), toolTitle[tool],
				rate(st.recordsPerSec), st.mbPerSec, st.cpu, st.rss, st.srvCPU, st.wall)
		}
		for _, pair := range [][2]string{{toolFerry, toolRclone}, {toolFerry, toolBare}, {toolSplit, toolRclone}, {toolSplit, toolBare}} {
			f, okF := all[pair[0]]
			o, ok := all[pair[1]]
			if !okF || !ok {
				continue
			}
			label := map[string]string{toolFerry: "ferry", toolSplit: "ferry-split"}[pair[0]] + "/" + map[string]string{toolRclone: "rclone", toolBare: "limit"}[pair[1]]
			fmt.Fprintf(&w, "| %s | *%s* | *%s* | *%s* | *%s* | *%s* | *%s* | *%s* |\n", name(), label,
				ratio(f.recordsPerSec, o.recordsPerSec), ratio(f.mbPerSec, o.mbPerSec), ratio(f.cpu, o.cpu),
				ratio(f.rss, o.rss), ratio(f.srvCPU, o.srvCPU), ratio(f.wall, o.wall))
		}
	}
	fmt.Fprintln(&w)
	fmt.Fprintln(&w, "MB is 10^6 bytes. CPU s is the tool's own user+sys time (rusage of the child), servers' CPU s both MinIO")
	fmt.Fprintln(&w, "servers' during the run. Every run's destination was listed and held every object with its size.")
	fmt.Fprintln(&w)
	b.targets(&w)
	b.requestsTable(&w)
	b.runsTable(&w)
	return w.String()
}

func (set *dataset) describe() string {
	if set.name == "large" && len(set.recs) > 0 {
		return fmt.Sprintf("%d × %s", len(set.recs), mib(set.recs[0].Size))
	}
	users := map[string]bool{}
	for _, r := range set.recs {
		users[userOf(r.Key)] = true
	}
	return fmt.Sprintf("%d records of 0.5–16 KiB, %d users, %s", len(set.recs), len(users), mib(set.bytes))
}

// rate formats records/s with two significant decimals for the few large records.
func rate(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// targets lists issue 7's targets that this run measured, met or missed.
func (b *bench) targets(w *bytes.Buffer) {
	type target struct {
		set, other, what string
		min, max         float64 // ferry/other of the metric must be >= min or <= max (0: none)
		metric           func(stats) float64
	}
	rate := func(s stats) float64 { return s.recordsPerSec }
	rss := func(s stats) float64 { return s.rss }
	list := []target{
		{"small", toolRclone, "records/s ≥ 1.25x rclone's", 1.25, 0, rate},
		{"small", toolBare, "records/s ≥ 0.85x the bare loop's", 0.85, 0, rate},
		{"large", toolRclone, "MB/s ≥ 1.0x rclone's", 1.0, 0, rate},
		{"small", toolRclone, "peak RSS ≤ rclone's", 0, 1.0, rss},
		{"large", toolRclone, "peak RSS ≤ rclone's", 0, 1.0, rss},
	}
	fmt.Fprintln(w, "Targets (issue 7):")
	fmt.Fprintln(w)
	for _, t := range list {
		f, ok1 := b.stats(t.set, toolFerry)
		o, ok2 := b.stats(t.set, t.other)
		if !ok1 || !ok2 {
			continue
		}
		r := t.metric(f) / t.metric(o)
		met := (t.min == 0 || r >= t.min) && (t.max == 0 || r <= t.max)
		verdict := "**missed**"
		if met {
			verdict = "met"
		}
		fmt.Fprintf(w, "- %s: ferry %s: %.2fx, %s\n", t.set, t.what, r, verdict)
	}
	fmt.Fprintln(w)
}

// requestsTable lists the median number of S3 requests of each API a run of each
// tool made to each server.
func (b *bench) requestsTable(w *bytes.Buffer) {
	fmt.Fprintln(w, "S3 requests per run (medians), as the servers count them:")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| data | server and API | %s |\n", strings.Join(tools, " | "))
	fmt.Fprintf(w, "|---|---|%s\n", strings.Repeat("--:|", len(tools)))
	for _, set := range b.sets {
		var apis []string
		for _, s := range b.samples {
			for k := range s.requests {
				if s.set == set.name && !slices.Contains(apis, k) {
					apis = append(apis, k)
				}
			}
		}
		slices.SortFunc(apis, func(a, b string) int {
			// src before dst, then by API
			return strings.Compare(strings.Replace(a, "src ", "0", 1), strings.Replace(b, "src ", "0", 1))
		})
		label := set.name
		for _, api := range append(apis, "total") {
			fmt.Fprintf(w, "| %s | %s |", label, api)
			label = ""
			for _, tool := range tools {
				var v []float64
				for _, s := range b.samples {
					if s.set != set.name || s.tool != tool {
						continue
					}
					n := s.requests[api]
					if api == "total" {
						n = 0
						for _, c := range s.requests {
							n += c
						}
					}
					v = append(v, float64(n))
				}
				if len(v) == 0 {
					fmt.Fprint(w, " – |")
					continue
				}
				fmt.Fprintf(w, " %.0f |", median(v))
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
}

// runsTable lists every measured run.
func (b *bench) runsTable(w *bytes.Buffer) {
	fmt.Fprintln(w, "<details><summary>Every run</summary>")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | data | tool | wall s | records/s | MB/s | CPU s | peak RSS MiB | servers' CPU s |")
	fmt.Fprintln(w, "|--:|---|---|--:|--:|--:|--:|--:|--:|")
	for _, s := range b.samples {
		fmt.Fprintf(w, "| %d | %s | %s | %.2f | %s | %.1f | %.2f | %.0f | %.2f |\n", s.run, s.set, s.tool,
			s.wall.Seconds(), rate(s.recordsPerSec()), s.mbPerSec(), s.cpu.Seconds(), float64(s.maxRSS)/(1<<20), s.serverCPU.Seconds())
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "</details>")
}

// The doc keeps what is written around the generated part: only the text between
// these markers is replaced.
const (
	beginMarker = "<!-- ferrybench: begin (generated by `go run ./cmd/ferrybench`; replaced on every run) -->"
	endMarker   = "<!-- ferrybench: end -->"
)

// writeDoc writes the report between the markers of the file at path, creating it
// (with a title) if it does not exist.
func writeDoc(path, report string) error {
	block := beginMarker + "\n\n" + report + "\n" + endMarker + "\n"
	old, err := os.ReadFile(path)
	var doc string
	switch {
	case os.IsNotExist(err):
		doc = "# Benchmarks: ferry vs rclone vs a bare loop\n\n" +
			"`make bench` (or `go run ./cmd/ferrybench`, see its doc comment) copies the same data between two\n" +
			"MinIO servers on loopback with ferry, rclone and a bare aws-sdk-go-v2 GET-then-PUT loop at the\n" +
			"same concurrency, and writes the latest results here.\n\n" + block
	case err != nil:
		return err
	default:
		s := string(old)
		i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
		if i < 0 || j < i {
			return fmt.Errorf("%s has no %q ... %q markers: not overwriting it", path, beginMarker, endMarker)
		}
		doc = s[:i] + block + strings.TrimPrefix(s[j+len(endMarker):], "\n")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}
