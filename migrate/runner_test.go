package migrate

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
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
