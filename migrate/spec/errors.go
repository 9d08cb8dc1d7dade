package spec

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a spec. Every spec error is a usage error: the CLI exits 2.
//
// Error() reads "FILE:LINE:COLUMN: KEY: MSG", for example
//
//	ferry.yaml:12:5: sources[1].url: scheme must be s3://, oci:// or file://
//
// Line and Column are 1-based and omitted when unknown (0). Key is the path of the
// offending key ("sources[1].url", "delete.stages[0].sites[1]"), empty when the
// problem is not attached to one key. Messages never repeat a value that could be a
// secret (DESIGN.md I8): they name the key and the position instead.
type Error struct {
	File   string
	Line   int
	Column int
	Key    string
	Msg    string
	// Err is the underlying error, if any (for example the os error when the spec
	// file cannot be read), for errors.Is.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in one spec, sorted by position. Parse and Load
// return Errors when there are several problems and a single *Error when there is
// one; errors.As(err, &specErr) finds the first *Error in either case.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual errors (for errors.Is and errors.As).
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// maxErrors bounds how many problems one Parse reports.
const maxErrors = 100

// result turns collected problems into the error Parse returns: nil, one *Error,
// or Errors sorted by position (line, column, then order found).
func result(errs []*Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	out := make(Errors, len(errs))
	copy(out, errs)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	// Drop exact duplicates (the same message at the same place).
	dedup := out[:0]
	for _, e := range out {
		if n := len(dedup); n > 0 {
			p := dedup[n-1]
			if p.Line == e.Line && p.Column == e.Column && p.Key == e.Key && p.Msg == e.Msg {
				continue
			}
		}
		dedup = append(dedup, e)
	}
	if len(dedup) == 1 {
		return dedup[0]
	}
	return dedup
}
