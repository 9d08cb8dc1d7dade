package migrate

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/checkpoints/clock"
)

// phaseFiles hold what the phases do to records. How a phase runs (one process under
// the lock, a worker on fenced ranges, a dry run) is the runner's alone (runner.go,
// runner_work.go): these files must not look at the mode.
var phaseFiles = []string{"plan.go", "planwork.go", "copy.go", "verify.go", "delete*.go"}

func TestPhasesDoNotTestTheirMode(t *testing.T) {
	fset := token.NewFileSet()
	n := 0
	for _, pat := range phaseFiles {
		files, err := filepath.Glob(pat)
		if err != nil || len(files) == 0 {
			t.Fatalf("no phase file matches %s (%v): keep phaseFiles current", pat, err)
		}
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			n++
			// A report of the mode (res.DryRun = pr.dry) is allowed: it is not a branch.
			reported := map[ast.Node]bool{}
			ast.Inspect(f, func(node ast.Node) bool {
				if as, ok := node.(*ast.AssignStmt); ok && len(as.Lhs) == 1 && len(as.Rhs) == 1 {
					if l, ok := as.Lhs[0].(*ast.SelectorExpr); ok && l.Sel.Name == "DryRun" {
						reported[as.Rhs[0]] = true
					}
				}
				sel, ok := node.(*ast.SelectorExpr)
				if !ok || reported[sel] {
					return true
				}
				bad := ""
				switch sel.Sel.Name {
				case "worker":
					bad = "the worker membership"
				case "dry":
					bad = "the run's dry-run flag"
				case "DryRun", "Worker":
					if x, ok := sel.X.(*ast.SelectorExpr); ok && x.Sel.Name == "Opts" {
						bad = "Options." + sel.Sel.Name
					}
				}
				if bad != "" {
					t.Errorf("%s: a phase looks at %s; the mode belongs to the runner (runner.go)", fset.Position(sel.Pos()), bad)
				}
				return true
			})
		}
	}
	if n < 8 {
		t.Fatalf("only %d phase files parsed", n)
	}
}

// The runner tells a phase of a claimed range only once the range's results were
// saved with it: a worker whose range was taken over while it worked does not count
// it as its own (a plan's merge relies on this: a merge taken over reports the plan
// the other worker merged, not its own).
func TestSharedTellsOnlyOfFinishedRanges(t *testing.T) {
	h := newHarness(t, storeKinds[1], fmt.Sprintf(sitesYAML, "fail"))
	ctx := context.Background()
	clk := clock.NewFake()
	state := filepath.Join(h.dir, "shared.db")
	open := func() *Migration {
		opts := h.options(false)
		// A long lease: the heartbeats (every third of it, in real time) stay out of
		// the test; the state's leases follow the fake clock.
		opts.StateDSN, opts.Worker, opts.Clock, opts.WorkerLease = state, true, clk, time.Minute
		m, err := Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		if err := m.join(ctx, "test"); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := open(), open()
	cut := func() ([]checkpoints.Range, error) { return []checkpoints.Range{{}}, nil }
	var aDone, bDone []checkpoints.Claim
	err := a.shared(ctx, "test", false, cut, func(context.Context, checkpoints.Claim) ([]checkpoints.Record, error) {
		// While a works, its lease runs out; b takes the range over and finishes it.
		clk.Advance(61 * time.Second)
		return nil, b.shared(ctx, "test", false, cut, func(context.Context, checkpoints.Claim) ([]checkpoints.Record, error) {
			return nil, nil
		}, func(c checkpoints.Claim) { bDone = append(bDone, c) })
	}, func(c checkpoints.Claim) { aDone = append(aDone, c) })
	if err != nil {
		t.Fatalf("a range lost to another worker is not a failure: %v", err)
	}
	if len(aDone) != 0 || len(bDone) != 1 || !bDone[0].Takeover {
		t.Fatalf("told a of %d ranges, b of %v; want a of none, b of the one it took over", len(aDone), bDone)
	}
	if !strings.Contains(h.logs.String(), "range lost to another worker") {
		t.Fatalf("a did not notice it lost the range:\n%s", h.logs.String())
	}
}
