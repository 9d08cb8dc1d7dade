package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// Peak RSS needs a go-between. Go starts a child with vfork semantics (the child
// shares the parent's memory until it execs), and Linux then counts the parent's RSS
// at that moment into the child's ru_maxrss: a tool started by ferrybench, which
// holds the generated data, would report ferrybench's RSS whenever that is higher
// than its own peak. So every measured tool is started by a fresh, small ferrybench
// (`ferrybench spawn-child -- PROGRAM ARGS...`, an undocumented argument): it runs
// the tool with the same stdin, stdout, stderr and environment, waits for it and
// writes the tool's own figures as JSON on file descriptor 3. The floor this leaves
// in peak RSS is the go-between's RSS when it starts the tool, a few MiB.
const spawnChildArg = "spawn-child"

// usage is what the go-between reports of the tool it ran.
type usage struct {
	Wall     time.Duration `json:"wall_ns"`
	User     time.Duration `json:"user_ns"`
	Sys      time.Duration `json:"sys_ns"`
	MaxRSS   int64         `json:"maxrss_bytes"`
	ExitCode int           `json:"exit_code"`
	Error    string        `json:"error,omitempty"`
}

// spawnChildMain is the go-between: args are the tool's argv.
func spawnChildMain(args []string) int {
	report := os.NewFile(3, "usage")
	syscall.CloseOnExec(3) // the tool does not get it
	var u usage
	code := func() int {
		if len(args) == 0 {
			u.Error = "no program to run"
			return 2
		}
		// The tool dies with its go-between (ferrybench kills the go-between on a
		// timeout): Pdeathsig fires when the thread that started the tool exits.
		runtime.LockOSThread()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		start := time.Now()
		err := cmd.Run()
		u.Wall = time.Since(start)
		if cmd.ProcessState != nil {
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				u.User = time.Duration(ru.Utime.Nano())
				u.Sys = time.Duration(ru.Stime.Nano())
				u.MaxRSS = ru.Maxrss << 10 // KiB on Linux
			}
			u.ExitCode = cmd.ProcessState.ExitCode()
		}
		if err != nil {
			u.Error = err.Error()
			if u.ExitCode > 0 {
				return u.ExitCode
			}
			return 1
		}
		return 0
	}()
	if report != nil {
		json.NewEncoder(report).Encode(u)
		report.Close()
	}
	return code
}

// runMeasured runs cmd (not started; Path and Args name the tool) through the
// go-between and returns the tool's figures. cmd's environment, folder, output and
// context apply to the tool.
func runMeasured(cmd *exec.Cmd) (usage, error) {
	self, err := os.Executable()
	if err != nil {
		return usage{}, err
	}
	cmd.Args = append([]string{self, spawnChildArg, "--", cmd.Path}, cmd.Args[1:]...)
	cmd.Path = self
	r, w, err := os.Pipe()
	if err != nil {
		return usage{}, err
	}
	defer r.Close()
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return usage{}, err
	}
	var u usage
	derr := json.NewDecoder(r).Decode(&u) // until the go-between reports or dies
	err = cmd.Wait()
	switch {
	case derr != nil && err != nil:
		return u, err
	case derr != nil:
		return u, fmt.Errorf("no usage report from the go-between: %w", derr)
	case u.Error != "":
		return u, errors.New(u.Error)
	}
	return u, err
}
