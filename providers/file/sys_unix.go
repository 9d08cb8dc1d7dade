//go:build unix

package file

import (
	"io/fs"
	"os"
	"path"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func devIno(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}

// statAt lstats name in the open directory d: one system call, and no path
// resolution that could leave the root.
func statAt(d *os.File, name string) (attrs, error) {
	var st unix.Stat_t
	err := ignoringEINTR(func() error { return unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	if err != nil {
		return attrs{}, &os.PathError{Op: "fstatat", Path: name, Err: err}
	}
	var typ fs.FileMode
	switch uint32(st.Mode) & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		typ = fs.ModeDir
	case unix.S_IFLNK:
		typ = fs.ModeSymlink
	default:
		typ = fs.ModeIrregular
	}
	sec, nsec := st.Mtim.Unix()
	return attrs{typ: typ, size: st.Size, mtime: time.Unix(sec, nsec), ctime: statCtime(&st), dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// openNoFollow opens key for reading without following a symlink at its last
// segment (ELOOP); the directories above it are resolved inside the root.
// O_NONBLOCK keeps a FIFO planted at key from blocking the open; it is cleared again
// because the caller refuses anything but a regular file.
func openNoFollow(r *os.Root, key string) (*os.File, error) {
	d, base, err := openParent(r, key)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var fd int
	err = ignoringEINTR(func() error {
		var err error
		fd, err = unix.Openat(int(d.Fd()), base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: key, Err: err}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "openat", Path: key, Err: err}
	}
	return os.NewFile(uintptr(fd), path.Join(r.Name(), key)), nil
}

func renameAt(from *os.File, fromName string, to *os.File, toName string) error {
	err := ignoringEINTR(func() error { return unix.Renameat(int(from.Fd()), fromName, int(to.Fd()), toName) })
	if err != nil {
		return &os.LinkError{Op: "renameat", Old: fromName, New: toName, Err: err}
	}
	return nil
}

func linkAt(from *os.File, fromName string, to *os.File, toName string) error {
	err := ignoringEINTR(func() error { return unix.Linkat(int(from.Fd()), fromName, int(to.Fd()), toName, 0) })
	if err != nil {
		return &os.LinkError{Op: "linkat", Old: fromName, New: toName, Err: err}
	}
	return nil
}

func unlinkAt(d *os.File, name string) error {
	err := ignoringEINTR(func() error { return unix.Unlinkat(int(d.Fd()), name, 0) })
	if err != nil {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	return nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}
