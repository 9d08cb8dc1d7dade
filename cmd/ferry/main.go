// Command ferry migrates user records out of legacy sites into a target cloud, proves
// every copy, deletes the originals in stages and issues a signed certificate.
//
// This package is thin: it parses flags, calls package migrate and prints.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ferrymigrate/ferry/migrate"
	"github.com/ferrymigrate/ferry/migrate/certificate"
	_ "github.com/ferrymigrate/ferry/providers/azblob"
	_ "github.com/ferrymigrate/ferry/providers/file"
	_ "github.com/ferrymigrate/ferry/providers/gs"
	_ "github.com/ferrymigrate/ferry/providers/oci"
	_ "github.com/ferrymigrate/ferry/providers/s3"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// globals are the global flags (DESIGN.md "The CLI contract").
type globals struct {
	config     string
	state      string
	dryRun     bool
	json       bool
	noProgress bool
	logFormat  string
	verbose    int
	// metricsAddr serves Prometheus metrics while a phase runs (metrics.go).
	metricsAddr string

	worker      bool
	workerLease time.Duration
	rangeSize   int

	stdout, stderr io.Writer
	stderrTTY      bool
	stdoutTTY      bool // status --watch clears the screen only on a terminal
	log            *slog.Logger
}

func main() {
	tuneGC()
	stop := cpuProfile(os.Args[1:])
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cpuProfile writes a CPU profile of this command into the folder FERRY_CPUPROFILE
// names, as <command>-<pid>.pprof (for `go tool pprof`), so that a slow phase can be
// looked at where it ran. It returns what stops the profile.
func cpuProfile(args []string) func() {
	dir := os.Getenv("FERRY_CPUPROFILE")
	if dir == "" {
		return func() {}
	}
	name := "ferry"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name = args[0]
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", name, os.Getpid())))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry: FERRY_CPUPROFILE:", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// gcPercent is ferry's GOGC unless the environment sets one. ferry's heap is mostly
// short-lived request and row garbage over a small live set (part buffers are
// pooled), and with the default 100 the collector took about a fifth of ferry's CPU
// copying small records; at 200 it takes half that, for a somewhat larger heap
// (docs/benchmarks.md: peak RSS still well under rclone's).
const gcPercent = 200

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// run executes the CLI until it is done or interrupted (SIGINT, SIGTERM) and returns
// the exit code; tests call it directly.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runContext(ctx, args, stdout, stderr)
}

// runContext is run until ctx ends, which interrupts the command as a signal does.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr, stdoutTTY: isTerminal(stdout), stderrTTY: isTerminal(stderr)}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	code := exitCode(err)
	if ctx.Err() != nil && code == migrate.ExitRuntime {
		code = migrate.ExitInterrupted
	}
	// Cobra rejects an unknown command before it parses flags: honour --json anyway.
	if !g.json && slices.Contains(args, "--json") {
		g.json = true
	}
	if g.json && !g.printedJSON(err) {
		writeJSON(stdout, envelope{Command: root.CalledAs(), OK: false, ExitCode: code, Error: &jsonError{Message: err.Error(), ExitCode: code}})
	} else if !g.json {
		fmt.Fprintf(stderr, "ferry: %v\n", err)
	}
	return code
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// usageError marks bad flags or arguments (exit 2).
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitCode maps any error to its exit code: the CLI's own usage errors and cobra's
// flag and command errors are 2, everything else as package migrate says.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ue usageError
	var fe *flagError
	if errors.As(err, &ue) || errors.As(err, &fe) || strings.HasPrefix(err.Error(), "unknown command") ||
		errors.Is(err, certificate.ErrKeyExists) {
		return migrate.ExitUsage
	}
	return migrate.ExitCode(err)
}

type flagError struct{ error }

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Migrate user records to a target cloud, prove every copy, delete the originals in stages, certify it",
		Long: `ferry moves every user record out of an organisation's own sites (data centers,
backup sites, other clouds) into a target cloud, proves each copy byte for byte,
deletes the originals in stages an operator controls, and issues a signed
certificate that anyone can check offline.

The phases, each resumable after any crash:
  ferry plan      list every site, reconcile replicas, print the plan digest
  ferry copy      copy planned records to the target, checksums verified
  ferry verify    prove every target copy and every replica due for deletion
  ferry delete    delete one stage's replicas (--confirm the scope digest)
  ferry report    write the manifest and the signed certificate`,
		Example: `  ferry init ./migration && cd ./migration
  ferry validate
  ferry plan
  ferry run --through verify
  ferry delete --stage canary --dry-run
  ferry delete --stage canary --confirm 3f9a1c2e
  ferry report --out ./certificate`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.setup()
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &flagError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&g.config, "config", "c", "ferry.yaml", "the migration spec")
	pf.StringVar(&g.state, "state", "", "checkpoint state DSN (a SQLite path or postgres://...); overrides the spec")
	pf.BoolVar(&g.dryRun, "dry-run", false, "write nothing anywhere and do not advance the state; say exactly what would happen")
	pf.BoolVar(&g.json, "json", false, "print one JSON document on stdout (errors included)")
	pf.BoolVar(&g.noProgress, "no-progress", false, "no progress bars; log a progress line every few seconds instead")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	pf.CountVarP(&g.verbose, "verbose", "v", "more logging (-v debug)")
	pf.StringVar(&g.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics while a phase runs (plan, copy, verify, delete, run; workers too)")

	root.AddCommand(
		newInitCmd(g), newValidateCmd(g), newPlanCmd(g), newCopyCmd(g), newVerifyCmd(g),
		newDeleteCmd(g), newReportCmd(g), newStatusCmd(g), newRunCmd(g), newKeysCmd(g),
		newDemoCmd(g), newGenerateCmd(g), newLimitsCmd(g), newAuditCmd(g),
	)
	for _, c := range root.Commands() {
		wrapArgs(c)
	}
	return root
}

// workerFlags lets a phase run as one of many workers sharing the state.
func (g *globals) workerFlags(c *cobra.Command) {
	c.Flags().BoolVar(&g.worker, "worker", false, "join other ferry processes working this phase on the same state (PostgreSQL across machines) instead of taking the migration lock")
	c.Flags().DurationVar(&g.workerLease, "lease", migrate.DefaultWorkerLease, "with --worker: how long a claimed range outlives this worker's last heartbeat")
	c.Flags().IntVar(&g.rangeSize, "range-size", migrate.DefaultRangeSize, "with --worker: records per claimed range (used by the worker that cuts the phase)")
}

// wrapArgs turns cobra's argument-count errors into usage errors (exit 2).
func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		orig := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := orig(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}

func (g *globals) setup() error {
	level := slog.LevelInfo
	if g.bars() {
		level = slog.LevelWarn // the bars say it; info lines would tear them
	}
	if g.verbose > 0 {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		g.log = slog.New(slog.NewTextHandler(g.stderr, opts))
	case "json":
		g.log = slog.New(slog.NewJSONHandler(g.stderr, opts))
	default:
		return usagef("--log-format must be text or json, not %q", g.logFormat)
	}
	return nil
}

// options builds migrate.Options from the global flags; progress goes to stderr as
// bars on a terminal, as log lines otherwise, never both.
func (g *globals) options() migrate.Options {
	o := migrate.Options{SpecPath: g.config, StateDSN: g.state, DryRun: g.dryRun, Logger: g.log,
		Worker: g.worker, WorkerLease: g.workerLease, RangeSize: g.rangeSize}
	switch {
	case g.bars():
		o.Progress = migrate.BarProgress(g.stderr)
	default:
		o.Progress = migrate.LogProgress(g.log, 5*time.Second)
	}
	return o
}

// bars reports whether progress is drawn as bars: on a terminal, unless --no-progress
// or --json.
func (g *globals) bars() bool { return g.stderrTTY && !g.noProgress && !g.json }

type envelope struct {
	Command  string     `json:"command"`
	OK       bool       `json:"ok"`
	ExitCode int        `json:"exit_code"`
	DryRun   bool       `json:"dry_run,omitempty"`
	Result   any        `json:"result,omitempty"`
	Error    *jsonError `json:"error,omitempty"`
}

type jsonError struct {
	Message  string `json:"message"`
	ExitCode int    `json:"exit_code"`
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// jsonDone is set once a command printed its JSON document (with its error, if any).
type jsonDone struct{ err error }

func (j jsonDone) Error() string { return j.err.Error() }
func (j jsonDone) Unwrap() error { return j.err }

func (g *globals) printedJSON(err error) bool {
	var d jsonDone
	return errors.As(err, &d)
}

// finish prints a command's result (JSON or text) and returns its error for the exit
// code. A result is printed even when err is set: a refused delete still shows its scope.
func (g *globals) finish(cmd *cobra.Command, result any, err error, text func(w io.Writer)) error {
	if g.json {
		code := exitCode(err)
		env := envelope{Command: cmd.CommandPath(), OK: err == nil, ExitCode: code, DryRun: g.dryRun, Result: result}
		if err != nil {
			env.Error = &jsonError{Message: err.Error(), ExitCode: code}
		}
		writeJSON(g.stdout, env)
		if err != nil {
			return jsonDone{err}
		}
		return nil
	}
	if text != nil && !isNil(result) {
		text(g.stdout)
	}
	return err
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// dirOf returns the folder of a file path.
func dirOf(p string) string { return filepath.Dir(p) }

// specDir returns the folder of the spec file.
func specDir(config string) (string, error) {
	abs, err := filepath.Abs(config)
	if err != nil {
		return "", err
	}
	return filepath.Dir(abs), nil
}
