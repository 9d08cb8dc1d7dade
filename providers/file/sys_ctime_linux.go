//go:build linux

package file

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// ctimeOf is the inode's status change time in nanoseconds: every write, rename or
// chmod sets it, and no user can set it back (utimes sets mtime and atime only).
func ctimeOf(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Nano()
	}
	return 0
}

func statCtime(st *unix.Stat_t) int64 { return st.Ctim.Nano() }
