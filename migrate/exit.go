package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrymigrate/ferry/checkpoints"
	"github.com/ferrymigrate/ferry/migrate/spec"
)

// Exit codes: a contract with CI jobs and auditors (DESIGN.md "The CLI contract").
const (
	ExitOK          = 0
	ExitRuntime     = 1   // I/O, a store unreachable after retries
	ExitUsage       = 2   // usage or spec error
	ExitIncomplete  = 3   // finished, but some records failed or are in conflict
	ExitVerify      = 4   // verification failed
	ExitRefused     = 5   // refused by a safety guard
	ExitInterrupted = 130 // interrupted; state saved, rerun resumes
)

// Error is an error with the exit code it maps to.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code.
func Errorf(code int, format string, a ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, a...)}
}

// Refused is a safety-guard refusal (exit 5).
func Refused(format string, a ...any) error { return Errorf(ExitRefused, format, a...) }

// ExitCode maps any error to its exit code, in one place.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var se *spec.Error
	var ses spec.Errors
	if errors.As(err, &se) || errors.As(err, &ses) {
		return ExitUsage
	}
	if errors.Is(err, checkpoints.ErrLocked) {
		return ExitRefused
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted
	}
	return ExitRuntime
}
