package checkpoints

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// Self describes this process as a lock holder.
func Self(phase string) LockInfo {
	host, _ := os.Hostname()
	pid := os.Getpid()
	return LockInfo{Host: host, PID: pid, Start: ProcessStart(pid), Phase: phase}
}

// HolderAlive applies restic's stale-lock rule: a holder on this host is alive while a
// process with its pid and start time exists; a holder on another host is alive until
// its lease expires.
func HolderAlive(h LockInfo, now time.Time) bool {
	host, _ := os.Hostname()
	if h.Host == host {
		if h.PID <= 0 {
			return false
		}
		start := ProcessStart(h.PID)
		if start < 0 {
			return false // no such process
		}
		// A recycled pid has another start time.
		return h.Start == 0 || start == 0 || start == h.Start
	}
	return now.Before(h.LeaseTill)
}

// ProcessStart returns the start time of pid in clock ticks since boot (field 22 of
// /proc/PID/stat), 0 if it cannot be read but the process exists, -1 if there is no
// such process.
func ProcessStart(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if _, serr := os.Stat("/proc/self/stat"); serr != nil {
			return 0 // no procfs: cannot tell
		}
		return -1
	}
	s := string(b)
	// The command name (field 2) may contain spaces and parentheses: fields after it
	// start past the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0
	}
	if f[0] == "Z" || f[0] == "X" {
		return -1 // zombie or dead: the holder is gone
	}
	v, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return 0
	}
	return v
}
