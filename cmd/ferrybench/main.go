// Command ferrybench measures ferry against rclone and against a bare aws-sdk-go-v2
// GET-then-PUT loop (the limit on this machine), all copying the same data between
// the same two MinIO servers on loopback at the same concurrency (issue 7; DESIGN.md,
// "Performance targets"). `make bench` runs it.
//
//	go run ./cmd/ferrybench                     # 5,000 small records and 8 x 256 MiB, 3 runs
//	go run ./cmd/ferrybench -small-records 500 -large-count 2 -large-size 32MiB -runs 1 -out ''
//
// It starts two MinIO servers on 127.0.0.1 (random free ports, data in a temporary
// folder on /dev/shm when it can), generates each data set with ferry's generator
// (migrate/synth, written through ferry's S3 provider) into a bucket on the first, and
// then, -runs times and alternating the order, copies each data set into a fresh
// bucket on the second with:
//
//   - ferry: `ferry run --through verify` (plan, copy, verify) on a spec with the
//     source bucket as its only site, SQLite state in a fresh folder;
//   - rclone: `rclone copy --checksum --transfers C`, configured through the
//     environment;
//   - the bare loop: list, then C workers each GET an object and stream it into a PUT,
//     nothing hashed or checked (bare.go).
//
// Each is a child process: its wall time, CPU time (user+sys) and peak RSS come from
// its rusage (through a small go-between, see spawn.go); the servers' CPU time during
// the run is read from /proc and the S3 requests they answered from their metrics. A
// run counts only once the destination holds every object with its size. The table
// of medians goes to stdout and, between markers, into docs/benchmarks.md (-out) with
// the date, the machine, its load, the tool versions and the command.
//
// minio and rclone come from the tools folder (-tools; default $FERRY_TOOLS, else
// .tools/bin in the repository), where `make tools` and `make bench` install the
// pinned versions. ferry is built from the repository once per invocation.
//
// -profile DIR additionally runs ferry's migrate API and the bare loop in-process
// once per data set, writing CPU and allocation profiles into DIR and logging how long
// each of ferry's phases took and which S3 requests it made (not measured; with
// -runs 0 -warmup=false it does only that).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
)

// config is what the flags say.
type config struct {
	runs         int
	concurrency  int
	smallRecords int
	smallUsers   int
	largeCount   int
	largeSize    int64
	sets         string
	toolsDir     string
	dataDir      string
	out          string
	timeout      time.Duration
	warmup       bool
	profileDir   string
	split        bool // also run ferry as three commands
}

// bench is one invocation: the servers, the binaries, the samples.
type bench struct {
	cfg       config
	root      string // the repository
	work      string // temporary: the ferry binary, specs, state
	ferryBin  string
	rcloneBin string
	minioBin  string
	src, dst  *server
	sets      []*dataset
	samples   []sample
	env       environment
}

func main() {
	// The undocumented arguments ferrybench gives the children it starts.
	if len(os.Args) == 2 && os.Args[1] == bareChildArg {
		os.Exit(bareChildMain())
	}
	if len(os.Args) >= 2 && os.Args[1] == spawnChildArg {
		args := os.Args[2:]
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		os.Exit(spawnChildMain(args))
	}
	cfg := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "ferrybench:", err)
		os.Exit(1)
	}
}

func parseFlags() config {
	c := config{largeSize: 256 << 20}
	flag.IntVar(&c.runs, "runs", 3, "measured runs of each tool on each data set (alternating)")
	flag.IntVar(&c.concurrency, "concurrency", 32, "parallel transfers, the same for every tool")
	flag.IntVar(&c.smallRecords, "small-records", 5000, "records in the small data set (0.5 to 16 KiB each)")
	flag.IntVar(&c.smallUsers, "small-users", 1000, "users the small records belong to")
	flag.IntVar(&c.largeCount, "large-count", 8, "objects in the large data set")
	flag.Var(sizeFlag{&c.largeSize}, "large-size", "size of each large object (256MiB, 32MiB, 1GiB, ...)")
	flag.StringVar(&c.sets, "sets", "small,large", "data sets to run, comma-separated")
	flag.StringVar(&c.toolsDir, "tools", "", "folder holding minio and rclone (default $FERRY_TOOLS, else .tools/bin in the repository)")
	flag.StringVar(&c.dataDir, "data-dir", "", "where the servers keep their data (default /dev/shm when writable and memory allows, else the temp dir)")
	flag.StringVar(&c.out, "out", "docs/benchmarks.md", "markdown file to write the results into, relative to the repository ('' for none)")
	flag.DurationVar(&c.timeout, "timeout", 15*time.Minute, "limit for one tool's run on one data set")
	flag.BoolVar(&c.warmup, "warmup", true, "copy each data set once with the bare loop first, unmeasured")
	flag.BoolVar(&c.split, "split", false, "also run ferry as an operator does: plan, copy and verify as three commands (with -data-dir on disk: the operator's form of issue 15)")
	flag.StringVar(&c.profileDir, "profile", "", "also write CPU and allocation profiles of ferry and the bare loop, run in-process, into this folder")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./cmd/ferrybench [flags]\n\n"+
			"Copies the same data between two MinIO servers on loopback with ferry, rclone and a\n"+
			"bare GET-then-PUT loop, and reports records/s, MB/s, CPU, peak RSS and the ratios.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if c.split {
		tools = append(tools, toolSplit)
	}
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if c.runs < 0 || c.concurrency < 1 || c.smallRecords < 1 || c.largeCount < 1 || c.largeSize < 1 {
		fmt.Fprintln(os.Stderr, "ferrybench: -runs must be >= 0; -concurrency, -small-records, -large-count and -large-size >= 1")
		os.Exit(2)
	}
	return c
}

// sizeFlag is a byte count with an optional unit (KiB, MiB, GiB, KB, MB, GB).
type sizeFlag struct{ n *int64 }

func (s sizeFlag) String() string {
	if s.n == nil {
		return ""
	}
	return strings.ReplaceAll(humanize.IBytes(uint64(*s.n)), " ", "")
}

func (s sizeFlag) Set(v string) error {
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return err
	}
	*s.n = int64(n)
	return nil
}

func run(ctx context.Context, cfg config) error {
	b := &bench{cfg: cfg}
	var err error
	if b.root, err = repoRoot(); err != nil {
		return err
	}
	if err := b.findTools(); err != nil {
		return err
	}
	if b.work, err = os.MkdirTemp("", "ferrybench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)

	for _, name := range strings.Split(cfg.sets, ",") {
		switch strings.TrimSpace(name) {
		case "small":
			b.sets = append(b.sets, &dataset{name: "small", bucket: "src-small", recs: smallRecords(cfg.smallRecords, cfg.smallUsers)})
		case "large":
			b.sets = append(b.sets, &dataset{name: "large", bucket: "src-large", recs: largeRecords(cfg.largeCount, cfg.largeSize)})
		default:
			return fmt.Errorf("-sets: unknown data set %q (small, large)", name)
		}
	}

	logf("building ferry")
	b.ferryBin = filepath.Join(b.work, "ferry")
	build := exec.CommandContext(ctx, goTool(), "build", "-o", b.ferryBin, "./cmd/ferry")
	build.Dir, build.Stdout, build.Stderr = b.root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/ferry: %w", err)
	}

	dataDir := cfg.dataDir
	if dataDir == "" {
		dataDir = b.scratchDir()
	}
	data, err := os.MkdirTemp(dataDir, "ferrybench-minio-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(data)
	for _, s := range []struct {
		srv  **server
		name string
	}{{&b.src, "src"}, {&b.dst, "dst"}} {
		srv, err := startMinIO(b.minioBin, s.name, filepath.Join(data, s.name))
		if err != nil {
			return err
		}
		defer srv.stop()
		*s.srv = srv
	}
	logf("minio: source %s, destination %s, data in %s", b.src.Endpoint, b.dst.Endpoint, data)
	b.env = b.describe(ctx, data)

	for _, set := range b.sets {
		if err := b.generate(ctx, set); err != nil {
			return fmt.Errorf("generate %s: %w", set.name, err)
		}
	}
	if cfg.warmup {
		for _, set := range b.sets {
			if _, err := b.measure(ctx, set, toolBare, 0); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	err = b.measureAll(ctx)
	b.env.loadAfter = loadAvg()
	b.env.finished = time.Now()
	if err != nil {
		if len(b.samples) > 0 {
			fmt.Println("INCOMPLETE: what was measured before the failure (not written to the doc)")
			fmt.Println()
			fmt.Println(b.report())
		}
		return err
	}
	if cfg.runs > 0 {
		report := b.report()
		fmt.Println(report)
		if cfg.out != "" {
			out := cfg.out
			if !filepath.IsAbs(out) {
				out = filepath.Join(b.root, out)
			}
			if err := writeDoc(out, report); err != nil {
				return err
			}
			logf("wrote %s", out)
		}
	}
	if cfg.profileDir != "" {
		if err := b.profile(ctx, cfg.profileDir); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	return nil
}

// measureAll runs every tool on every data set, -runs times.
func (b *bench) measureAll(ctx context.Context) error {
	for run := 1; run <= b.cfg.runs; run++ {
		for _, set := range b.sets {
			// Alternate: each run starts with the next tool, so no tool always goes
			// first (or last) on a data set.
			for i := range tools {
				tool := tools[(i+run-1)%len(tools)]
				s, err := b.measure(ctx, set, tool, run)
				if err != nil {
					return err
				}
				logf("run %d/%d %-5s %-6s %7.2f s %9s records/s %7.1f MB/s  CPU %6.2f s  RSS %5.0f MiB  servers' CPU %6.2f s",
					run, b.cfg.runs, set.name, tool, s.wall.Seconds(), rate(s.recordsPerSec()), s.mbPerSec(),
					s.cpu.Seconds(), float64(s.maxRSS)/(1<<20), s.serverCPU.Seconds())
				b.samples = append(b.samples, s)
			}
		}
	}
	return nil
}

// findTools finds minio and rclone.
func (b *bench) findTools() error {
	dir := b.cfg.toolsDir
	if dir == "" {
		dir = os.Getenv("FERRY_TOOLS")
	}
	if dir == "" {
		dir = filepath.Join(b.root, ".tools", "bin")
	}
	var missing []string
	for _, t := range []struct {
		path *string
		name string
	}{{&b.minioBin, "minio"}, {&b.rcloneBin, "rclone"}} {
		p := filepath.Join(dir, t.name)
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, t.name)
			continue
		}
		*t.path = p
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not found in %s: `make tools` installs minio, and "+
			"`GOBIN=%s go install github.com/rclone/rclone@v1.76.0` rclone (`make bench` does both)",
			strings.Join(missing, " and "), dir, dir)
	}
	return nil
}

// repoRoot finds the repository: the nearest folder upwards holding ferry's go.mod.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/ferrymigrate/ferry\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("run ferrybench inside the ferry repository (no go.mod of github.com/ferrymigrate/ferry above " + wd + ")")
		}
	}
}

// goTool is the go command: $GO (as the Makefile sets it), else go on the PATH.
func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// scratchDir is /dev/shm when it is a writable folder with room to spare in memory
// (the servers fsync every object: on a disk shared with other work that would
// measure the disk), else "" (the temp dir).
func (b *bench) scratchDir() string {
	// The source data, one destination copy at a time, and ferry's or rclone's
	// memory while they copy the large objects: leave 4 GiB besides.
	var need int64 = 4 << 30
	for _, set := range b.sets {
		for _, r := range set.recs {
			need += 3 * r.Size
		}
	}
	var availKiB int64
	fmt.Sscanf(procField("/proc/meminfo", "MemAvailable"), "%d", &availKiB)
	if availKiB<<10 < need {
		logf("not enough memory available for the servers' data on /dev/shm (%s needed, %s available): using the temp dir",
			mib(need), mib(availKiB<<10))
		return ""
	}
	if f, err := os.CreateTemp("/dev/shm", ".ferrybench-probe-"); err == nil {
		f.Close()
		os.Remove(f.Name())
		return "/dev/shm"
	}
	return ""
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s ferrybench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
